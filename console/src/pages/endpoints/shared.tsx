// Endpoints: the shapes the serving API answers with (src/cumulo/serving/api.py), and what the
// pages derive from them: traffic shares, model references, a sample request from a signature.
import { useEffect, useState } from "react";
import { get } from "../../api";

export interface Variant {
  name: string;
  model: string;
  version: string;
  weight: number;
  shadow: boolean;
}

export interface Replica {
  pid: number | null;
  ready: boolean;
  in_flight: number;
  load: number;
  stopping: boolean;
  forked: boolean;
  started_at: number | null;
  ray_state?: string;
}

export interface Scaling {
  at: number;
  from: number;
  to: number;
  reason: string;
}

export interface Rollout {
  variant: string;
  strategy: string;
  steps: number[];
  step: number;
  state: "shifting" | "baking" | "finishing" | "rolling_back" | "done" | "rolled_back" | string;
  bake_s: number;
  max_error_rate: number | null;
  max_p99_ms: number | null;
  previous: Variant[];
  new: { name: string; model: string; version: string };
  started_at: number;
  step_started_at: number | null;
  ended_at: number | null;
  reason: string | null;
  log: { at: number; event: string }[];
  by?: string;
}

export interface Endpoint {
  name: string;
  state: "creating" | "in_service" | "updating" | "failed" | "deleting" | string;
  url: string;
  variants: Variant[];
  min_replicas: number;
  max_replicas: number;
  target_in_flight: number;
  scale_in_cooldown: number;
  scale_to_zero_after: number;
  max_batch_size: number;
  max_wait_ms: number;
  max_body: number;
  capture_percent: number;
  public: boolean;
  capture_table: string | null;
  cluster: string | null;
  replicas: Replica[];
  restarts: number;
  scaling: Scaling[];
  rollout: Rollout | null;
  message: string | null;
  created_at: string;
  updated_at: string;
}

export interface VariantMetrics {
  shadow: boolean;
  requests: number;
  requests_per_s: number;
  errors_4xx: number;
  errors_5xx: number;
  latency_p50_ms: number | null;
  latency_p95_ms: number | null;
  latency_p99_ms: number | null;
  model_latency_p50_ms: number | null;
  model_latency_p95_ms: number | null;
  model_latency_p99_ms: number | null;
  overhead_latency_p50_ms: number | null;
  overhead_latency_p95_ms: number | null;
  overhead_latency_p99_ms: number | null;
}

export interface Metrics {
  endpoint: string;
  state: string;
  replicas: number;
  in_flight: number;
  window_s: number;
  variants: Record<string, VariantMetrics>;
}

export interface Model {
  name: string;
  description: string;
  latest_version: number | null;
  aliases: Record<string, string>;
  tags: Record<string, string>;
}

export interface ModelVersion {
  name: string;
  version: string;
  status: string;
  description: string;
  created_at: number | null;
  aliases: string[];
  approval: string;
}

/** The REST path of an endpoint (`/endpoints/NAME` alone would be its invocation route). */
export const apiPath = (name: string, rest = "") => `/api/v1/endpoints/${encodeURIComponent(name)}${rest}`;

export const NAME_RULE = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const NAME_HINT = "1-63 lower-case letters, digits or '-', starting with a letter or digit";

/** A variant's share of the live traffic, 0-100 (shadows get copies, not a share). */
export function share(variant: Variant, variants: Variant[]): number {
  if (variant.shadow) return 0;
  const total = variants.filter((v) => !v.shadow && v.weight > 0).reduce((sum, v) => sum + v.weight, 0);
  return total > 0 ? (100 * Math.max(0, variant.weight)) / total : 0;
}

export function percent(n: number): string {
  return `${Number(n.toFixed(n > 0 && n < 1 ? 2 : 1))}%`;
}

/** A sample request body for a model version, from its signature in its MLmodel file. */
export async function samplePayload(model: string, version: string, signal?: AbortSignal): Promise<string | null> {
  const text = await get<string>("/mlflow/model-versions/get-artifact", { name: model, version, path: "MLmodel" }, signal);
  const inputs = signatureInputs(typeof text === "string" ? text : "");
  return inputs ? JSON.stringify(sampleFor(inputs), null, 2) : null;
}

interface InputSpec {
  type: string;
  name?: string;
  "tensor-spec"?: { dtype: string; shape: number[] };
}

/** The signature's inputs from an MLmodel file (YAML). MLflow writes them as one JSON string,
 *  single-quoted and folded over lines by PyYAML: unfold it rather than ship a YAML parser. */
export function signatureInputs(mlmodel: string): InputSpec[] | null {
  const at = mlmodel.search(/^signature:\s*$/m);
  if (at < 0) return null;
  const block = mlmodel.slice(at);
  const single = block.match(/\n\s+inputs:\s*'((?:[^']|'')*)'/);
  const double = block.match(/\n\s+inputs:\s*"((?:[^"\\]|\\[\s\S])*)"/);
  let json: string | null = null;
  if (single) json = single[1].replace(/\n[ \t]*/g, " ").replace(/''/g, "'");
  else if (double) {
    try { json = JSON.parse(`"${double[1].replace(/\\\n[ \t]*/g, "").replace(/\n[ \t]*/g, " ")}"`); } catch { json = null; }
  }
  if (!json) return null;
  try {
    const parsed = JSON.parse(json);
    return Array.isArray(parsed) && parsed.length ? parsed as InputSpec[] : null;
  } catch {
    return null;
  }
}

function example(type: string): unknown {
  switch (type) {
    case "long": case "integer": return 1;
    case "double": case "float": return 1.5;
    case "boolean": return true;
    case "datetime": return "2025-01-01T00:00:00";
    case "binary": return "";
    default: return "text";
  }
}

function tensorExample(spec: { dtype: string; shape: number[] }): unknown {
  const value = /int/.test(spec.dtype) ? 1 : /str|object/.test(spec.dtype) ? "text" : /bool/.test(spec.dtype) ? true : 1.5;
  const dims = spec.shape.slice(1).map((n) => (n > 0 ? n : 1));
  const build = (level: number): unknown => level >= dims.length ? value : Array.from({ length: dims[level] }, () => build(level + 1));
  return [build(0)];
}

export function sampleFor(inputs: InputSpec[]): unknown {
  const tensor = inputs.find((i) => i.type === "tensor" && i["tensor-spec"]);
  if (tensor?.["tensor-spec"]) return { inputs: tensorExample(tensor["tensor-spec"]) };
  if (inputs.every((i) => i.name)) {
    return { dataframe_records: [Object.fromEntries(inputs.map((i) => [i.name, example(i.type)]))] };
  }
  return { inputs: [example(inputs[0].type)] };
}

/** What to send when the model's signature is unknown. */
export const GENERIC_SAMPLE = JSON.stringify({ dataframe_records: [{ feature: 1.0 }] }, null, 2);

/** The time now (ms), ticking every `everyMs` while `on`. */
export function useNow(on: boolean, everyMs = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!on) return;
    const timer = window.setInterval(() => setNow(Date.now()), everyMs);
    return () => window.clearInterval(timer);
  }, [on, everyMs]);
  return now;
}
