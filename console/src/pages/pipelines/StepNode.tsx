import { createContext, memo, useContext } from "react";
import { Handle, Position, type NodeProps } from "@xyflow/react";
import { AFTER, AFTER_ROOM, type ComponentDoc, type PortDoc, portsOf, type StepNode } from "./model";
import "./StepNode.css";

/** The component library, for nodes to find their ports and titles. */
export const LibraryContext = createContext<Map<string, ComponentDoc>>(new Map());

/** What the canvas shows on its steps: the state of the run drawn, the steps a problem names.
 *  Given beside the nodes, not in them: a node given anew (each time a run is polled) would
 *  lose what React Flow measured of it, and its edges with it. */
export interface Overlay {
  states: Map<string, string>;
  problems: Set<string>;
}
export const OverlayContext = createContext<Overlay>({ states: new Map(), problems: new Set() });

/** Where the i-th of n ports sits along an edge of the step, short of `room` at its right:
 *  the middle of its share, as its name is drawn in the row beside it. */
const slot = (i: number, n: number, room = 0) => `calc((100% - ${room}px) * ${(i + 0.5) / n})`;

function PortNames({ ports, className }: { ports: PortDoc[]; className: string }) {
  return (
    <div className={className} aria-hidden="true">
      {ports.map((p) => <span key={p.name} title={p.name}>{p.name}{p.optional ? "?" : ""}</span>)}
    </div>
  );
}

/** A step on the canvas: its component and its name, typed inputs along its top and outputs
 *  along its bottom (the pipeline reads top to bottom), and the state of the run being shown. */
function StepNodeView({ id, data, selected }: NodeProps<StepNode>) {
  const library = useContext(LibraryContext);
  const overlay = useContext(OverlayContext);
  const state = overlay.states.get(id);
  const component = library.get(data.component);
  const { inputs, outputs } = portsOf(component, data.params);
  const classes = ["step-node"];
  if (state) classes.push(`step-${state}`);
  if (overlay.problems.has(id) || Object.keys(data.errors).length) classes.push("step-problem");
  if (selected) classes.push("step-selected");
  return (
    <div className={classes.join(" ")} data-testid={`step-${id}`} aria-label={`step ${id}`}>
      <Handle type="target" position={Position.Top} id={AFTER} className="port port-signal port-after"
              style={{ left: `calc(100% - ${AFTER_ROOM / 2}px)` }}
              title="after: runs only on a Condition's then/else branch" aria-label={`${id} input after (signal)`} />
      {inputs.map((input, i) => (
        <Handle key={input.name} type="target" position={Position.Top} id={input.name}
                className={`port port-${input.type}`} style={{ left: slot(i, inputs.length, AFTER_ROOM) }}
                title={`input ${input.name}: ${input.type}${input.optional ? " (optional)" : ""}`}
                aria-label={`${id} input ${input.name} (${input.type})`} />
      ))}
      {inputs.length > 0 && <PortNames ports={inputs} className="step-ins" />}
      <div className="step-head">
        <span className="step-title">{data.title || component?.title || data.component}</span>
        {state && <span className={`step-badge badge-${state}`}>{state}</span>}
      </div>
      <div className="step-id mono">{id}</div>
      {outputs.length > 0 && <PortNames ports={outputs} className="step-outs" />}
      {outputs.map((output, i) => (
        <Handle key={output.name} type="source" position={Position.Bottom} id={output.name}
                className={`port port-${output.type}`} style={{ left: slot(i, outputs.length) }}
                title={`output ${output.name}: ${output.type}`}
                aria-label={`${id} output ${output.name} (${output.type})`} />
      ))}
    </div>
  );
}

export const StepNodeMemo = memo(StepNodeView);
export const NODE_TYPES = { step: StepNodeMemo };
