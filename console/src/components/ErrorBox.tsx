import { ApiError } from "../api";

/** An error as the API said it, in the page: never a blank screen. */
export function ErrorBox({ error, onClose }: { error: unknown; onClose?: () => void }) {
  if (!error) return null;
  const message = error instanceof Error ? error.message : String(error);
  const code = error instanceof ApiError && error.status ? `${error.status} ${error.code}` : null;
  return (
    <div className="error" role="alert">
      {code && <strong className="error-code">{code}</strong>} <span className="error-message">{message}</span>
      {onClose && <button className="link" onClick={onClose} aria-label="Dismiss the error">✕</button>}
    </div>
  );
}

export function Loading({ what = "Loading" }: { what?: string }) {
  return <div className="loading" role="status">{what}…</div>;
}

export function Empty({ children }: { children: React.ReactNode }) {
  return <div className="empty">{children}</div>;
}

const STATES: Record<string, string> = {
  succeeded: "ok", ready: "ok", running: "info", healthy: "ok", approved: "ok", finished: "ok",
  queued: "wait", pending: "wait", starting: "wait", updating: "wait", shifting: "wait", none: "wait",
  cached: "ok", skipped: "muted", cancelled: "muted", deleted: "muted",
  in_service: "ok", creating: "wait", baking: "info", finishing: "wait", done: "ok", rolled_back: "muted",
  deleting: "muted", rolling_back: "bad",
  open: "ok", closed: "muted", active: "ok",
  failed: "bad", error: "bad", rejected: "bad", timed_out: "bad", unhealthy: "bad",
};

export function State({ state }: { state: string | null | undefined }) {
  const text = state ?? "—";
  return <span className={`state state-${STATES[text.toLowerCase()] ?? "muted"}`}>{text.replace(/_/g, " ")}</span>;
}

export function PageHeader({ title, children }: { title: string; children?: React.ReactNode }) {
  return (
    <div className="page-header">
      <h1>{title}</h1>
      <div className="actions">{children}</div>
    </div>
  );
}
