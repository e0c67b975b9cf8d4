// What the jobs pages share with Home, Models and Costs: the job's shape, its time, money as
// the price sheet gives it, and a button that asks before it acts.
import { useEffect, useState } from "react";
import { Confirm } from "../../components/Dialogs";
import { seconds } from "../../format";
import "./shared.css";

/** A job as GET /api/v1/jobs answers it (compute/api.py JobOut). */
export interface Job {
  id: string;
  name: string;
  cluster: string;
  state: string;
  priority: number;
  tags: string[];
  code: string | null;
  entry: string | null;
  command: string[] | null;
  args: string[];
  env: Record<string, string>;
  inputs: Record<string, unknown>;
  cpus: number;
  memory: number | null;
  gpus: number;
  max_runtime_s: number | null;
  retries: number;
  attempt: number;
  attempts: Attempt[];
  created_at: string;
  created_by: string | null;
  starting_at: string | null;
  running_at: string | null;
  finished_at: string | null;
  exit_code: number | null;
  reason: string | null;
  log_tail: string | null;
  pid: number | null;
  ray_job: string | null;
  usage: { cpu_seconds: number; peak_memory_bytes: number; gpu_seconds: number;
           wall_seconds: number; cost_usd: number };
}

export interface Attempt {
  attempt: number;
  state: string;
  exit_code: number | null;
  reason: string | null;
  started_at: string;
  finished_at: string;
  cpu_seconds: number;
  peak_memory_bytes: number;
  wall_seconds: number;
}

export const ACTIVE = ["queued", "starting", "running"];
export const FINISHED = ["succeeded", "failed", "cancelled", "timed_out"];
export const STATES = [...ACTIVE, ...FINISHED];
export const isActive = (job: Job | undefined) => !!job && ACTIVE.includes(job.state);

/** Seconds the job has run: to its end, or to now while it runs. */
export function runSeconds(job: Job, now: number): number | null {
  const start = job.running_at ?? job.starting_at;
  if (!start) return null;
  const end = job.finished_at ? Date.parse(job.finished_at) : now;
  return Math.max(0, (end - Date.parse(start)) / 1000);
}

export function duration(job: Job, now: number): string {
  const s = runSeconds(job, now);
  if (s === null) return job.state === "queued" ? "waiting" : "—";
  return s < 1 ? "< 1 s" : seconds(s);
}

/** Now, once a second while `live` (for durations that grow). */
export function useNow(live: boolean): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!live) return;
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, [live]);
  return now;
}

/** The price sheet is AWS's on-demand list price in us-east-1 unless the server sets its own. */
export interface Prices {
  vcpu_hour: number; gb_hour: number; gpu_hour: number; currency: string;
  shard_hour?: number; million_put_units?: number; // streams (Kinesis provisioned mode)
}
export const AWS_LIST = { vcpu_hour: 0.04048, gb_hour: 0.004445, gpu_hour: 1.006, shard_hour: 0.015, million_put_units: 0.014 };
export const isAwsList = (p: Prices | undefined) => !!p && p.vcpu_hour === AWS_LIST.vcpu_hour
  && p.gb_hour === AWS_LIST.gb_hour && p.gpu_hour === AWS_LIST.gpu_hour
  && (p.shard_hour ?? AWS_LIST.shard_hour) === AWS_LIST.shard_hour
  && (p.million_put_units ?? AWS_LIST.million_put_units) === AWS_LIST.million_put_units;
export const priceBasis = (p: Prices | undefined) => !p ? "" : isAwsList(p)
  ? "at AWS on-demand list prices (us-east-1)" : "at this server's price sheet";

/** A button that asks first (in the shared Confirm dialog), then runs the action. */
export function ConfirmButton({ label, title, confirm, onConfirm, danger = false, disabled = false,
                                children, className }: {
  label: string;
  title: string;
  confirm: string;
  onConfirm: () => Promise<unknown>;
  danger?: boolean;
  disabled?: boolean;
  children?: React.ReactNode;
  className?: string;
}) {
  const [open, setOpen] = useState(false);
  return (
    <>
      <button type="button" className={className ?? (danger ? "danger" : undefined)} disabled={disabled}
              onClick={() => setOpen(true)}>{label}</button>
      {open && (
        <Confirm title={title} confirm={confirm} danger={danger} run={onConfirm} onClose={() => setOpen(false)}>
          {children}
        </Confirm>
      )}
    </>
  );
}

/** A plain table whose cells may be links and badges (the shared Grid shows text only). */
export function Table({ label, head, children, empty, colSpan }: {
  label: string;
  head: React.ReactNode[];
  children: React.ReactNode;
  empty?: React.ReactNode;
  colSpan?: number;
}) {
  return (
    <div className="grid-wrap" tabIndex={0}>
      <table className="grid" aria-label={label}>
        <thead><tr>{head.map((h, i) => <th key={i} scope="col">{h}</th>)}</tr></thead>
        <tbody>
          {children}
          {empty && <tr><td colSpan={colSpan ?? head.length} className="muted">{empty}</td></tr>}
        </tbody>
      </table>
    </div>
  );
}
