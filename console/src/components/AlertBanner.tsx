// The alerts banner: budgets crossed, cost anomalies, monitors' drift, until dismissed. Polls
// /api/v1/alerts (every 30 s); shown to those who may list alerts, hidden for the others.
import { useState } from "react";
import { get, post } from "../api";
import { when } from "../format";
import { useApi, useCan } from "../hooks";
import "./AlertBanner.css";

export interface Alert {
  id: number;
  source: string;
  subject: string;
  severity: "info" | "warning" | "critical";
  message: string;
  created_at: string;
  delivery: string;
  last_error: string | null;
}

const SHOWN = 3;

export function AlertBanner() {
  // Asked first, so that a caller who may not list alerts is never refused by the banner.
  const [mayList] = useCan([["alerts:List", "alert/*"]]);
  const alerts = useApi((signal) => mayList
    ? get<Alert[]>("/alerts", { limit: 20 }, signal).catch(() => [] as Alert[])
    : Promise.resolve([] as Alert[]), [mayList], 30000);
  const [gone, setGone] = useState<number[]>([]);
  const open = (alerts.data ?? []).filter((a) => !gone.includes(a.id) && a.severity !== "info");
  if (open.length === 0) return null;
  const dismiss = (id?: number) => {
    setGone(id === undefined ? open.map((a) => a.id) : [...gone, id]);
    post("/alerts/dismiss", {}, id === undefined ? undefined : { id }).catch(() => alerts.reload());
  };
  return (
    <section className="alert-banner" role="status" aria-label="Alerts">
      {open.slice(0, SHOWN).map((a) => (
        <div key={a.id} className={`alert-line ${a.severity}`}>
          <strong>{a.severity === "critical" ? "Critical" : "Warning"}</strong>{" "}
          <span>{a.message}</span>{" "}
          <span className="muted">{a.source} · {when(a.created_at)}{a.delivery === "failed" ? " · webhook failed" : ""}</span>
          <button type="button" className="link" aria-label={`Dismiss alert ${a.id}`} onClick={() => dismiss(a.id)}>Dismiss</button>
        </div>
      ))}
      {open.length > SHOWN && (
        <div className="alert-line more">
          <span className="muted">and {open.length - SHOWN} more (<code>cumulo alerts ls</code>)</span>
          <button type="button" className="link" onClick={() => dismiss()}>Dismiss all</button>
        </div>
      )}
    </section>
  );
}
