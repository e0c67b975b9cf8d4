// The designer's side panel: a selected step's parameters (validated as typed), its name and
// inputs; a selected connection; or, with nothing selected, the pipeline's parameters.
import { useId, useRef, useState } from "react";
import type { Edge } from "@xyflow/react";
import {
  AFTER, type ComponentDoc, fieldText, isRef, NODE_ID, type ParamDoc, type ParameterSpec, parseField,
  portsOf, PORT_COLORS, refusal, type StepData, type StepNode,
} from "./model";

export interface FieldChange {
  value?: unknown;
  unset?: boolean;
  text?: string;
  error?: string;
}

const FITS: Record<string, string[]> = {
  string: ["string"], integer: ["integer"], number: ["number", "integer"], boolean: ["boolean"],
};

function ParamField({ param, data, parameters, serverMessage, onChange }: {
  param: ParamDoc;
  data: StepData;
  parameters: Record<string, ParameterSpec>;
  serverMessage?: string;
  onChange: (change: FieldChange) => void;
}) {
  const id = useId();
  const value = data.params[param.name];
  const error = data.errors[param.name] ?? serverMessage;
  const bindable = Object.entries(parameters).filter(([, spec]) => (FITS[param.type] ?? []).includes(spec.type));
  const bound = isRef(value) ? value.$param : "";
  const text = data.texts[param.name] ?? (bound ? "" : fieldText(param, value));
  const describedBy = `${id}-help` + (error ? ` ${id}-error` : "");
  const common = {
    id, "aria-invalid": error ? true : undefined, "aria-describedby": describedBy,
    "aria-required": param.required || undefined,
  } as const;
  const typed = (next: string) => {
    const parsed = parseField(param, next);
    if (parsed.empty && !parsed.error) onChange({ unset: true });
    else onChange({ value: parsed.value, text: next, error: parsed.error });
  };
  let input: React.ReactNode;
  if (bound) {
    input = <input {...common} value={`pipeline parameter ${bound}`} readOnly />;
  } else if (param.type === "boolean") {
    input = (
      <input {...common} type="checkbox" checked={value === true}
             onChange={(e) => onChange({ value: e.target.checked })} />
    );
  } else if (param.choices) {
    input = (
      <select {...common} value={value === undefined ? "" : String(value)}
              onChange={(e) => {
                const choice = param.choices!.find((c) => String(c) === e.target.value);
                onChange(choice === undefined ? { unset: true } : { value: choice });
              }}>
        {(!param.required || value === undefined) && <option value="">{param.required ? "— choose —" : "— default —"}</option>}
        {param.choices.map((c) => <option key={String(c)} value={String(c)}>{String(c)}</option>)}
      </select>
    );
  } else if (param.type === "object" || param.type === "requirements" || param.name === "code"
             || param.name === "query") {
    input = (
      <textarea {...common} className="mono" rows={param.name === "code" ? 8 : 3} value={text}
                spellCheck={false} onChange={(e) => typed(e.target.value)} />
    );
  } else {
    const numeric = param.type === "integer" || param.type === "number";
    input = (
      <input {...common} type="text" inputMode={numeric ? "decimal" : undefined} value={text}
             spellCheck={false} onChange={(e) => typed(e.target.value)} />
    );
  }
  const range = [param.minimum !== undefined ? `≥ ${param.minimum}` : "", param.maximum !== undefined ? `≤ ${param.maximum}` : ""]
    .filter(Boolean).join(", ");
  const label = (
    <label htmlFor={id}>
      {param.name}{param.required && <span className="required" aria-hidden="true"> *</span>}
      <span className="muted field-type"> {param.type === "string_list" ? "comma-separated" : param.type === "requirements" ? "one a line" : param.type}{range && ` ${range}`}</span>
    </label>
  );
  return (
    <div className="field">
      {param.type === "boolean" && !bound ? <div className="check">{input}{label}</div> : <>{label}{input}</>}
      {bindable.length > 0 && (
        <select className="bind" aria-label={`${param.name}: value from`} value={bound}
                onChange={(e) => onChange(e.target.value ? { value: { $param: e.target.value } } : { unset: true })}>
          <option value="">this value</option>
          {bindable.map(([name]) => <option key={name} value={name}>pipeline parameter {name}</option>)}
        </select>
      )}
      <div id={`${id}-help`} className="muted field-help">
        {param.description}{param.default !== undefined && param.default !== null
          && ` (default ${JSON.stringify(param.default)})`}
      </div>
      {error && <div id={`${id}-error`} className="field-error">{error}</div>}
    </div>
  );
}

/** A selected step: its name, its parameters by type, what feeds its inputs. */
export function NodePanel({ node, nodes, edges, library, parameters, problems, onParam, onRename, onCache,
                            onConnectInput, onDelete }: {
  node: StepNode;
  nodes: StepNode[];
  edges: Edge[];
  library: Map<string, ComponentDoc>;
  parameters: Record<string, ParameterSpec>;
  problems: Record<string, string>;
  onParam: (param: string, change: FieldChange) => void;
  onRename: (to: string) => void;
  onCache: (cache: boolean) => void;
  onConnectInput: (port: string, from: string) => void;
  onDelete: () => void;
}) {
  const component = library.get(node.data.component);
  const [draft, setDraft] = useState(node.id);
  const last = useRef(node.id);
  if (last.current !== node.id) {
    last.current = node.id;
    if (draft !== node.id) setDraft(node.id);
  }
  const nameError = !NODE_ID.test(draft)
    ? "a letter or '_', then letters, digits, '_' or '-'"
    : draft !== node.id && nodes.some((n) => n.id === draft) ? `a step is already called ${draft}` : null;
  const { inputs } = portsOf(component, node.data.params);
  return (
    <section className="side-panel" aria-label={`Step ${node.id}`}>
      <h2>{component?.title ?? node.data.component}</h2>
      <p className="muted">{component?.description}</p>
      <div className="field">
        <label htmlFor="step-name">Step name</label>
        <input id="step-name" value={draft} spellCheck={false} aria-invalid={nameError ? true : undefined}
               aria-describedby={nameError ? "step-name-error" : undefined}
               onChange={(e) => {
                 const next = e.target.value;
                 setDraft(next);
                 if (NODE_ID.test(next) && !nodes.some((n) => n.id === next)) onRename(next);
               }} />
        {nameError && <div id="step-name-error" className="field-error">{nameError}</div>}
      </div>
      <h3>Parameters</h3>
      {component?.params.length === 0 && <p className="muted">None.</p>}
      {component?.params.map((p) => (
        <ParamField key={p.name} param={p} data={node.data} parameters={parameters}
                    serverMessage={problems[p.name]} onChange={(change) => onParam(p.name, change)} />
      ))}
      <div className="field">
        <div className="check">
          <input id="step-cache" type="checkbox" checked={node.data.cache} onChange={(e) => onCache(e.target.checked)} />
          <label htmlFor="step-cache">Reuse cached outputs</label>
        </div>
        <div className="muted field-help">when its code, parameters and inputs are unchanged</div>
      </div>
      <h3>Inputs</h3>
      {[...inputs, { name: AFTER, type: "signal", optional: true }].map((port) => {
        const current = edges.find((e) => e.target === node.id && e.targetHandle === port.name);
        const currentRef = current ? `${current.source}.${current.sourceHandle}` : "";
        const others = edges.filter((e) => e !== current);
        const choices = nodes.flatMap((n) => portsOf(library.get(n.data.component), n.data.params).outputs
          .filter((o) => o.type === port.type)
          .filter((o) => `${n.id}.${o.name}` === currentRef || refusal(library, nodes, others, {
            source: n.id, sourceHandle: o.name, target: node.id, targetHandle: port.name }) === null)
          .map((o) => `${n.id}.${o.name}`));
        return (
          <div className="field" key={port.name}>
            <label htmlFor={`input-${port.name}`}>
              <i className="dot" style={{ background: PORT_COLORS[port.type] }} />{port.name}
              <span className="muted field-type"> {port.type}{port.optional ? ", optional" : ""}</span>
            </label>
            <select id={`input-${port.name}`} value={currentRef} onChange={(e) => onConnectInput(port.name, e.target.value)}>
              <option value="">— not connected —</option>
              {choices.map((c) => <option key={c} value={c}>{c}</option>)}
            </select>
            {problems[`input:${port.name}`] && <div className="field-error">{problems[`input:${port.name}`]}</div>}
          </div>
        );
      })}
      <div className="row panel-actions">
        <button type="button" className="danger" onClick={onDelete}>Delete step</button>
      </div>
    </section>
  );
}

/** A selected connection. */
export function EdgePanel({ edge, onDelete }: { edge: Edge; onDelete: () => void }) {
  return (
    <section className="side-panel" aria-label="Connection">
      <h2>Connection</h2>
      <p className="mono">{edge.source}.{edge.sourceHandle} → {edge.target}.{edge.targetHandle}</p>
      <button type="button" className="danger" onClick={onDelete}>Delete connection</button>
    </section>
  );
}

const PARAM_TYPES: ParameterSpec["type"][] = ["string", "number", "integer", "boolean"];

function parseDefault(type: ParameterSpec["type"], text: string): { value?: unknown; error?: string } {
  if (text.trim() === "") return {};
  if (type === "string") return { value: text };
  if (type === "boolean") return text === "true" ? { value: true } : text === "false" ? { value: false } : { error: "true or false" };
  const n = Number(text.trim());
  if (!Number.isFinite(n)) return { error: `expected a number, got '${text}'` };
  if (type === "integer" && !Number.isInteger(n)) return { error: `expected an integer, got ${text}` };
  return { value: n };
}

/** Nothing selected: the pipeline's parameters (values given when it runs). */
export function PipelinePanel({ parameters, onChange, errors, setErrors, children }: {
  parameters: Record<string, ParameterSpec>;
  onChange: (next: Record<string, ParameterSpec>) => void;
  errors: Record<string, string>;
  setErrors: (next: Record<string, string>) => void;
  children?: React.ReactNode;
}) {
  const [name, setName] = useState("");
  const [texts, setTexts] = useState<Record<string, string>>({});
  const nameError = name && !NODE_ID.test(name) ? "letters, digits, '_' or '-'"
    : name in parameters ? `${name} exists` : null;
  return (
    <section className="side-panel" aria-label="Pipeline">
      <h2>Pipeline parameters</h2>
      <p className="muted">Values given when it runs; a step's parameter takes one with “value from”.</p>
      {Object.keys(parameters).length === 0 && <p className="muted">None yet.</p>}
      {Object.entries(parameters).map(([pname, spec]) => (
        <fieldset key={pname} className="parameter">
          <legend className="mono">{pname}</legend>
          <div className="row">
            <select aria-label={`${pname} type`} value={spec.type}
                    onChange={(e) => {
                      onChange({ ...parameters, [pname]: { type: e.target.value as ParameterSpec["type"] } });
                      setTexts({ ...texts, [pname]: "" });
                      setErrors(without(errors, pname));  // the default was cleared with the type
                    }}>
              {PARAM_TYPES.map((t) => <option key={t}>{t}</option>)}
            </select>
            <input aria-label={`${pname} default`} placeholder="default" className="grow"
                   aria-invalid={errors[pname] ? true : undefined}
                   value={texts[pname] ?? (spec.default === undefined ? "" : String(spec.default))}
                   onChange={(e) => {
                     setTexts({ ...texts, [pname]: e.target.value });
                     const parsed = parseDefault(spec.type, e.target.value);
                     const rest = { ...errors };
                     delete rest[pname];
                     setErrors(parsed.error ? { ...rest, [pname]: parsed.error } : rest);
                     if (!parsed.error) {
                       const next: ParameterSpec = { type: spec.type };
                       if (parsed.value !== undefined) next.default = parsed.value;
                       if (spec.description) next.description = spec.description;
                       onChange({ ...parameters, [pname]: next });
                     }
                   }} />
            <button type="button" className="link" aria-label={`Remove parameter ${pname}`}
                    onClick={() => {
                      onChange(without(parameters, pname));
                      setErrors(without(errors, pname));
                      setTexts(without(texts, pname));
                    }}>✕</button>
          </div>
          {errors[pname] && <div className="field-error">{errors[pname]}</div>}
        </fieldset>
      ))}
      <form className="row" onSubmit={(e) => {
        e.preventDefault();
        if (!name || nameError) return;
        onChange({ ...parameters, [name]: { type: "string" } });
        setName("");
      }}>
        <input aria-label="New parameter's name" placeholder="name" value={name} className="grow"
               aria-invalid={nameError ? true : undefined} onChange={(e) => setName(e.target.value)} />
        <button type="submit" disabled={!name || !!nameError}>Add parameter</button>
      </form>
      {nameError && <div className="field-error">{nameError}</div>}
      {children}
    </section>
  );
}

/** A copy of `record` without `key`. */
function without<T>(record: Record<string, T>, key: string): Record<string, T> {
  const rest = { ...record };
  delete rest[key];
  return rest;
}
