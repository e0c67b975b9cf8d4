// The pipelines API's shapes, and the pure logic of the designer: a definition to a graph and
// back, ports, connection rules, parameter checks, the layered auto-layout and the view it opens at.
import { graphlib, layout as dagreLayout } from "@dagrejs/dagre";
import type { Edge, Node } from "@xyflow/react";

export interface PortDoc {
  name: string;
  type: string;
  description?: string;
  optional?: boolean;
}

export interface ParamDoc {
  name: string;
  type: "string" | "integer" | "number" | "boolean" | "string_list" | "object" | "requirements";
  description?: string;
  required: boolean;
  default?: unknown;
  choices?: unknown[];
  minimum?: number;
  maximum?: number;
}

export interface ComponentDoc {
  name: string;
  title: string;
  category: string;
  description: string;
  inputs: PortDoc[];
  outputs: PortDoc[];
  params: ParamDoc[];
}

export interface ParameterSpec {
  type: "string" | "integer" | "number" | "boolean";
  default?: unknown;
  description?: string;
}

export interface DefinitionNode {
  id: string;
  component: string;
  params: Record<string, unknown>;
  cache?: boolean;
  title?: string;
  position?: { x: number; y: number };
}

export interface Definition {
  name: string;
  description?: string;
  version?: number;
  parameters?: Record<string, ParameterSpec>;
  nodes: DefinitionNode[];
  edges: { from: string; to: string }[];
}

export interface PipelineOut {
  name: string;
  version: number;
  latest_version: number;
  description: string;
  source: string;
  definition: Definition;
  created: boolean;
  created_by: string | null;
  created_at: string;
  updated_at: string;
}

export interface PipelineRow {
  name: string;
  latest_version: number;
  description: string;
  nodes: number;
  created_by: string | null;
  updated_at: string;
}

export interface StepOut {
  node: string;
  component: string;
  state: string;
  job_id: string | null;
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown>;
  message: string | null;
  log_tail: string | null;
  cached_from: string | null;
  seconds: number | null;
  started_at: string | null;
  finished_at: string | null;
}

export interface RunOut {
  id: string;
  pipeline: string;
  version: number;
  state: string;
  parameters: Record<string, unknown>;
  cluster: string;
  trigger: string;
  retry_of: string | null;
  message: string | null;
  created_by: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  duration_s: number | null;
  definition?: Definition;
  steps?: StepOut[];
}

export interface Problem {
  path: string;
  message: string;
}

export const RUN_FINISHED = ["succeeded", "failed", "cancelled"];
export const AFTER = "after";
export const NODE_ID = /^[A-Za-z_][A-Za-z0-9_-]{0,62}$/;
export const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const PORT_TYPES = ["table", "model", "metrics", "endpoint", "signal"];
export const NODE_WIDTH = 220;

/** What a node carries: its definition's fields and the raw text of fields being typed (a
 *  run's states and the problems are shown beside it: StepNode's OverlayContext). */
export interface StepData extends Record<string, unknown> {
  component: string;
  params: Record<string, unknown>;
  cache: boolean;
  title?: string;
  /** Raw text of typed fields, by parameter, while it is not (yet) a valid value. */
  texts: Record<string, string>;
  /** What is wrong with each parameter, as typed. */
  errors: Record<string, string>;
}

export type StepNode = Node<StepData, "step">;

export function isRef(value: unknown): value is { $param: string } {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    && Object.keys(value).length === 1 && "$param" in value;
}

/** A node's inputs and outputs: its component's, or those a Python Script declares. */
export function portsOf(component: ComponentDoc | undefined,
                        params: Record<string, unknown>): { inputs: PortDoc[]; outputs: PortDoc[] } {
  if (!component) return { inputs: [], outputs: [] };
  if (component.name === "python_script") {
    const declared = (side: string): PortDoc[] => {
      const value = params[side];
      if (!value || typeof value !== "object" || Array.isArray(value)) return [];
      return Object.entries(value as Record<string, unknown>)
        .filter(([, type]) => typeof type === "string" && PORT_TYPES.includes(type))
        .map(([name, type]) => ({ name, type: String(type) }));
    };
    return { inputs: declared("inputs"), outputs: declared("outputs") };
  }
  return { inputs: component.inputs, outputs: component.outputs };
}

export function portType(library: Map<string, ComponentDoc>, node: StepNode | undefined,
                         handle: string | null | undefined, side: "in" | "out"): string | undefined {
  if (!node || !handle) return undefined;
  if (side === "in" && handle === AFTER) return "signal";
  const ports = portsOf(library.get(node.data.component), node.data.params);
  return (side === "in" ? ports.inputs : ports.outputs).find((p) => p.name === handle)?.type;
}

/** Why an edge from source.sourceHandle to target.targetHandle may not be drawn, or null. */
export function refusal(library: Map<string, ComponentDoc>, nodes: StepNode[], edges: Edge[],
                        c: { source: string; target: string; sourceHandle?: string | null; targetHandle?: string | null }):
  string | null {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const out = portType(library, byId.get(c.source), c.sourceHandle, "out");
  const into = portType(library, byId.get(c.target), c.targetHandle, "in");
  if (!out || !into) return "no such port";
  if (c.source === c.target) return "a step cannot feed itself";
  if (out !== into) return `${c.source}.${c.sourceHandle} is a ${out} and ${c.target}.${c.targetHandle} takes a ${into}`;
  if (c.targetHandle !== AFTER && edges.some((e) => e.target === c.target && e.targetHandle === c.targetHandle)) {
    return `${c.target}.${c.targetHandle} already takes an edge; an input takes one`;
  }
  if (edges.some((e) => e.source === c.source && e.target === c.target
                 && e.sourceHandle === c.sourceHandle && e.targetHandle === c.targetHandle)) {
    return "these ports are already joined";
  }
  if (reaches(edges, c.target, c.source)) return "that would make a cycle";
  return null;
}

function reaches(edges: Edge[], from: string, to: string): boolean {
  const seen = new Set<string>();
  const stack = [from];
  while (stack.length) {
    const at = stack.pop()!;
    if (at === to) return true;
    if (seen.has(at)) continue;
    seen.add(at);
    for (const e of edges) if (e.source === at) stack.push(e.target);
  }
  return false;
}

export function edgeId(from: string, to: string): string {
  return `${from}->${to}`;
}

export function makeEdge(source: string, sourceHandle: string, target: string, targetHandle: string,
                         type?: string): Edge {
  return {
    id: edgeId(`${source}.${sourceHandle}`, `${target}.${targetHandle}`), source, sourceHandle,
    target, targetHandle, className: `edge-${type ?? "table"}`,
  };
}

/** A new node id for a component: its name, then name_2, name_3... as the Python form does. */
export function newId(base: string, taken: Set<string>): string {
  let id = base;
  for (let n = 2; taken.has(id); n++) id = `${base}_${n}`;
  return id;
}

/** Room at the top right of a step for its "after" port, beside its inputs. */
export const AFTER_ROOM = 24;
const HEAD_HEIGHT = 54; // the title, the id and the border (StepNode.css)
const PORT_ROW = 18; // a row of port names, above or below them

/** How big a step is drawn, to lay it out before the canvas has measured it. */
export function nodeSize(inputs: number, outputs: number): { width: number; height: number } {
  return { width: NODE_WIDTH, height: HEAD_HEIGHT + (inputs ? PORT_ROW : 0) + (outputs ? PORT_ROW : 0) };
}

/** Layers top to bottom (dagre): each step below every step it takes input from, the steps
 *  of a layer side by side in the order that crosses fewest edges. Top-left corners. */
export function layout(nodes: { id: string; width: number; height: number }[],
                       edges: { source: string; target: string }[]): Map<string, { x: number; y: number }> {
  const graph = new graphlib.Graph();
  graph.setGraph({ rankdir: "TB", nodesep: 48, ranksep: 40, edgesep: 16 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) graph.setNode(n.id, { width: n.width, height: n.height });
  for (const e of edges) if (graph.hasNode(e.source) && graph.hasNode(e.target)) graph.setEdge(e.source, e.target);
  dagreLayout(graph);
  return new Map(nodes.map((n) => {
    const { x, y } = graph.node(n.id) as { x: number; y: number };
    return [n.id, { x: Math.round(x - n.width / 2), y: Math.round(y - n.height / 2) }];
  }));
}

/** The smallest zoom at which a step's text can be read (13 px titles at about 9 px). */
export const READABLE_ZOOM = 0.7;

/** The view a pipeline opens at: all of it when that can be read, up to full size; else as
 *  much as can be read, from its first steps (the top), the rest a scroll away. */
export function readableView(bounds: { x: number; y: number; width: number; height: number },
                             canvas: { width: number; height: number }, padding = 24): { x: number; y: number; zoom: number } {
  const room = { width: Math.max(canvas.width - 2 * padding, 1), height: Math.max(canvas.height - 2 * padding, 1) };
  const fit = Math.min(room.width / Math.max(bounds.width, 1), room.height / Math.max(bounds.height, 1), 1);
  const zoom = Math.max(fit, READABLE_ZOOM);
  const place = (size: number, space: number, at: number, start: number) => size * zoom <= space
    ? start + (space - size * zoom) / 2 - at * zoom // it fits: centred
    : start - at * zoom; // it does not: from its start
  return {
    x: place(bounds.width, room.width, bounds.x, padding),
    y: place(bounds.height, room.height, bounds.y, padding),
    zoom,
  };
}

/** A definition as the canvas's nodes and edges (positions from the definition, else laid out). */
export function toGraph(definition: Definition, library: Map<string, ComponentDoc>): { nodes: StepNode[]; edges: Edge[] } {
  const edges: Edge[] = [];
  const ids = new Set(definition.nodes.map((n) => n.id));
  for (const e of definition.edges ?? []) {
    const [source, sourceHandle] = split(e.from);
    const [target, targetHandle] = split(e.to);
    if (!ids.has(source) || !ids.has(target)) continue;
    const node = definition.nodes.find((n) => n.id === source)!;
    const type = portsOf(library.get(node.component), node.params).outputs.find((p) => p.name === sourceHandle)?.type;
    edges.push(makeEdge(source, sourceHandle, target, targetHandle, type));
  }
  const placed = definition.nodes.every((n) => n.position) ? new Map() : layout(definition.nodes.map((n) => {
    const ports = portsOf(library.get(n.component), n.params ?? {});
    return { id: n.id, ...nodeSize(ports.inputs.length, ports.outputs.length) };
  }), edges);
  const nodes: StepNode[] = definition.nodes.map((n) => ({
    id: n.id,
    type: "step",
    position: n.position ? { x: n.position.x, y: n.position.y } : placed.get(n.id)!,
    data: {
      component: n.component, params: { ...(n.params ?? {}) }, cache: n.cache ?? true,
      ...(n.title ? { title: n.title } : {}), texts: {}, errors: {},
    },
  }));
  return { nodes, edges };
}

function split(ref: string): [string, string] {
  const dot = ref.lastIndexOf(".");
  return [ref.slice(0, dot), ref.slice(dot + 1)];
}

/** The canvas as a definition: the export format, node positions kept where drawn. */
export function toDefinition(meta: { name: string; description: string; parameters: Record<string, ParameterSpec> },
                             nodes: StepNode[], edges: Edge[]): Definition {
  const definition: Definition = {
    name: meta.name,
    description: meta.description,
    parameters: meta.parameters,
    nodes: nodes.map((n) => {
      const out: DefinitionNode = { id: n.id, component: n.data.component, params: n.data.params, cache: n.data.cache };
      if (n.data.title) out.title = n.data.title;
      out.position = { x: Math.round(n.position.x), y: Math.round(n.position.y) };
      return out;
    }),
    edges: edges.map((e) => ({ from: `${e.source}.${e.sourceHandle}`, to: `${e.target}.${e.targetHandle}` })),
  };
  return definition;
}

/** The same value whatever the order of its keys: to tell whether the canvas changed. */
export function stableKey(value: unknown): string {
  return JSON.stringify(value, (_key, v) => v && typeof v === "object" && !Array.isArray(v)
    ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]]))
    : v);
}

const A: Record<string, string> = {
  string: "a string", integer: "an integer", number: "a number", boolean: "true or false",
  string_list: "a list of strings", object: "an object",
  requirements: "a list of requirements or a requirements file's text",
};

/** A field's text as the parameter's value, or what is wrong with it (as the server says it). */
export function parseField(param: ParamDoc, text: string): { value?: unknown; error?: string; empty?: boolean } {
  const trimmed = text.trim();
  if (trimmed === "" && param.type !== "string") {
    return param.required ? { error: `required: ${param.description ?? param.name}`, empty: true } : { empty: true };
  }
  if (param.type === "string" && text === "") {
    return param.required ? { error: `required: ${param.description ?? param.name}`, empty: true } : { empty: true };
  }
  let value: unknown = text;
  if (param.type === "integer" || param.type === "number") {
    const n = Number(trimmed);
    if (!Number.isFinite(n) || !/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(trimmed)) {
      return { error: `expected ${A[param.type]}, got '${trimmed}'` };
    }
    if (param.type === "integer" && !Number.isInteger(n)) return { error: `expected an integer, got ${trimmed}` };
    value = n;
  } else if (param.type === "string_list") {
    value = trimmed.split(",").map((s) => s.trim()).filter(Boolean);
  } else if (param.type === "requirements") {
    // One a line, as in a requirements file: a specifier may hold commas (pandas>=2,<3).
    value = trimmed.split("\n").map((s) => s.trim()).filter(Boolean);
  } else if (param.type === "object") {
    try {
      value = JSON.parse(trimmed);
    } catch (exc) {
      return { error: `not valid JSON: ${(exc as Error).message}` };
    }
    if (!value || typeof value !== "object" || Array.isArray(value)) {
      return { error: "expected an object, like {\"name\": \"value\"}" };
    }
  }
  const problem = checkValue(param, value);
  return problem ? { error: problem } : { value };
}

/** What is wrong with a value for a parameter, as components.Param.check says it; or null. */
export function checkValue(param: ParamDoc, value: unknown): string | null {
  if (param.choices && !param.choices.some((c) => c === value)) {
    return `expected one of ${param.choices.join(", ")}, got ${JSON.stringify(value)}`;
  }
  if (typeof value === "number") {
    if (param.minimum !== undefined && param.minimum !== null && value < param.minimum) {
      return `expected at least ${param.minimum}, got ${value}`;
    }
    if (param.maximum !== undefined && param.maximum !== null && value > param.maximum) {
      return `expected at most ${param.maximum}, got ${value}`;
    }
  }
  return null;
}

/** A parameter's value as its field's text. */
export function fieldText(param: ParamDoc, value: unknown): string {
  if (value === undefined || value === null) return "";
  if (param.type === "string_list" && Array.isArray(value)) return value.join(", ");
  if (param.type === "requirements" && Array.isArray(value)) return value.join("\n");
  if (param.type === "object") return JSON.stringify(value, null, 2);
  return String(value);
}

/** The problems of the canvas the designer can tell itself: fields typed wrong or left empty. */
export function localProblems(nodes: StepNode[], library: Map<string, ComponentDoc>): Problem[] {
  const out: Problem[] = [];
  nodes.forEach((n, i) => {
    const component = library.get(n.data.component);
    for (const [key, message] of Object.entries(n.data.errors)) {
      out.push({ path: `nodes[${i}] (${n.id}).params.${key}`, message });
    }
    for (const p of component?.params ?? []) {
      if (p.required && !(p.name in n.data.errors) && (n.data.params[p.name] === undefined || n.data.params[p.name] === "")) {
        out.push({ path: `nodes[${i}] (${n.id}).params.${p.name}`,
                   message: `${n.data.component} needs parameter '${p.name}' (${p.description ?? ""})` });
      }
    }
  });
  return out;
}

/** Which nodes and edges a problem's path points at: "nodes[2] (train).params.target",
 *  "node train", "edges[3].from", "edges: the pipeline has a cycle: a -> b -> a". */
export function problemTargets(problem: Problem, sent: Definition | undefined): { nodes: string[]; edge?: number } {
  const named = /^nodes\[\d+\] \(([^)]+)\)/.exec(problem.path) ?? /^node (\S+)/.exec(problem.path);
  if (named) return { nodes: [named[1]] };
  const indexed = /^nodes\[(\d+)\]/.exec(problem.path);
  if (indexed && sent) {
    const node = sent.nodes[Number(indexed[1])];
    return { nodes: node ? [node.id] : [] };
  }
  const edge = /^edges\[(\d+)\]/.exec(problem.path);
  if (edge && sent) {
    const e = sent.edges[Number(edge[1])];
    if (!e) return { nodes: [] };
    return { nodes: [split(e.from)[0], split(e.to)[0]], edge: Number(edge[1]) };
  }
  const cycle = /cycle: (.+)$/.exec(problem.message);
  if (cycle) return { nodes: cycle[1].split(" -> ").map((s) => s.trim()) };
  return { nodes: [] };
}

export const PORT_COLORS: Record<string, string> = {
  table: "#2f6fde", model: "#8e44ad", metrics: "#d97706", endpoint: "#0f8a5f", signal: "#667085",
};
