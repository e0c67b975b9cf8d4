// Notebooks: the shapes the notebooks API answers with (src/cumulo/notebooks/api.py).

export interface Notebook {
  name: string;
  owner: string;
  cluster: string;
  cpus: number;
  memory: number | null;  // bytes; none: no limit
  gpus: number;
  environment: string | null;
  idle_timeout: number;  // seconds
  state: string;  // starting | running | stopping | stopped | failed
  reason: string | null;  // why it stopped (or failed)
  stopped_at: string | null;
  url: string;  // "/notebooks/NAME/"
  job_id: string | null;
  project: string | null;
  shared_with: string[];
}

export const notebookPath = (name: string, rest = "") => `/notebooks/${encodeURIComponent(name)}${rest}`;

/** JupyterLab's own page, through Cumulo's proxy. */
export const labUrl = (n: Notebook) => `${n.url || `/notebooks/${encodeURIComponent(n.name)}/`}lab`;

export const NAME_RULE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const NAME_HINT = "1-63 lowercase letters, digits and '-'";

/** 7200 seconds as "2 h", 5400 as "1 h 30 min", 172800 as "2 d" (as the CLI's options read). */
export function durationText(seconds: number): string {
  const parts: string[] = [];
  let left = Math.round(seconds);
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]] as const) {
    if (left >= size) {
      parts.push(`${Math.floor(left / size)} ${unit}`);
      left %= size;
    }
  }
  return parts.join(" ") || "0 s";
}
