import { createContext, memo, useContext } from "react";
import { Handle, Position, type NodeProps } from "@xyflow/react";
import { AFTER, type ComponentDoc, portsOf, type StepNode } from "./model";

/** The component library, for nodes to find their ports and titles. */
export const LibraryContext = createContext<Map<string, ComponentDoc>>(new Map());

/** A step on the canvas: its component, its name, typed inputs left and outputs right, and
 *  the state of the run being shown. */
function StepNodeView({ id, data, selected }: NodeProps<StepNode>) {
  const library = useContext(LibraryContext);
  const component = library.get(data.component);
  const { inputs, outputs } = portsOf(component, data.params);
  const rows = Math.max(inputs.length, outputs.length);
  const classes = ["step-node"];
  if (data.state) classes.push(`step-${data.state}`);
  if (data.problem || Object.keys(data.errors).length) classes.push("step-problem");
  if (selected) classes.push("step-selected");
  return (
    <div className={classes.join(" ")} data-testid={`step-${id}`} aria-label={`step ${id}`}>
      <Handle type="target" position={Position.Top} id={AFTER} className="port port-signal port-after"
              title="after: runs only on a Condition's then/else branch" aria-label={`${id} input after (signal)`} />
      <div className="step-head">
        <span className="step-title">{data.title || component?.title || data.component}</span>
        {data.state && <span className={`step-badge badge-${data.state}`}>{data.state}</span>}
      </div>
      <div className="step-id mono">{id}</div>
      {rows > 0 && (
        <div className="step-ports">
          {Array.from({ length: rows }, (_, i) => {
            const input = inputs[i];
            const output = outputs[i];
            return (
              <div className="step-port-row" key={i}>
                <span className="port-label in">
                  {input && (
                    <>
                      <Handle type="target" position={Position.Left} id={input.name}
                              className={`port port-${input.type}`}
                              title={`input ${input.name}: ${input.type}${input.optional ? " (optional)" : ""}`}
                              aria-label={`${id} input ${input.name} (${input.type})`} />
                      {input.name}{input.optional ? "?" : ""}
                    </>
                  )}
                </span>
                <span className="port-label out">
                  {output && (
                    <>
                      {output.name}
                      <Handle type="source" position={Position.Right} id={output.name}
                              className={`port port-${output.type}`}
                              title={`output ${output.name}: ${output.type}`}
                              aria-label={`${id} output ${output.name} (${output.type})`} />
                    </>
                  )}
                </span>
              </div>
            );
          })}
        </div>
      )}
    </div>
  );
}

export const StepNodeMemo = memo(StepNodeView);
export const NODE_TYPES = { step: StepNodeMemo };
