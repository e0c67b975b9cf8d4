// The registry's shapes as /api/v1/models answers them (ml/registry.py), and MLflow's REST API.
import { api, Query } from "../../api";

export interface Model {
  name: string;
  description: string;
  created_at: number | null;
  updated_at: number | null;
  latest_version: number | null;
  aliases: Record<string, string>;
  tags: Record<string, string>;
}

export interface Version {
  name: string;
  version: string;
  run_id: string | null;
  source: string | null;
  status: string | null;
  description: string;
  created_at: number | null;
  aliases: string[];
  approval: string;
  tags: Record<string, string>;
  lineage?: {
    run_id?: string;
    job?: string | null;
    code?: string | null;
    inputs?: Record<string, string>;
    hyperparameters?: Record<string, string>;
    metrics?: Record<string, number>;
  };
}

export interface AliasEvent {
  alias: string;
  version: string | null;
  previous_version: string | null;
  at: string;
  by: string | null;
}

export const modelPath = (name: string) => `/models/${encodeURIComponent(name)}`;

/** MLflow's own REST API, through Cumulo's /mlflow (the same sign-in). */
export function mlflow<T>(method: "GET" | "POST", path: string, body?: unknown,
                          signal?: AbortSignal, query?: Query): Promise<T> {
  return api<T>(method, `/mlflow/api/2.0/mlflow/${path}`, { json: body, signal, query });
}

export interface Run {
  info: { run_id: string; run_name?: string; experiment_id: string; status: string;
          start_time?: number; end_time?: number; artifact_uri?: string };
  data: { params?: { key: string; value: string }[]; metrics?: { key: string; value: number; step?: number }[];
          tags?: { key: string; value: string }[] };
}

export const params = (run: Run) => Object.fromEntries((run.data.params ?? []).map((p) => [p.key, p.value]));
export const metrics = (run: Run) => Object.fromEntries((run.data.metrics ?? []).map((m) => [m.key, m.value]));
export const tags = (run: Run) => Object.fromEntries((run.data.tags ?? []).map((t) => [t.key, t.value]));
