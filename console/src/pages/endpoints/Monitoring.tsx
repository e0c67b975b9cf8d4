// An endpoint's Monitoring tab: its model monitors (cumulo monitors), each with its drift
// charts drawn from its runs: PSI per feature over time, the prediction distribution of the
// last run against the baseline's, and accuracy (or MAE/RMSE) over time when labels are joined.
import { useState } from "react";
import { Link } from "react-router-dom";
import { get, post } from "../../api";
import { Chart, Series } from "../../components/Chart";
import { ErrorBox, Loading, State } from "../../components/ErrorBox";
import { number, when } from "../../format";
import { useAction, useApi, useCan } from "../../hooks";

export interface Figure {
  feature: string;
  kind: string;
  rows: number;
  psi: number | null;
  ks: number | null;
  missing_rate: number | null;
  out_of_range_rate: number | null;
  unseen_rate: number | null;
  accuracy: number | null;
  mae: number | null;
  rmse: number | null;
  breached: string[];
  histogram: { bins: string[]; baseline: number[]; current: number[] | null } | null;
}

export interface MonitorRun {
  id: number;
  trigger: string;
  job: string | null;
  state: string;
  started_at: string;
  rows: number;
  breaches: string[];
  message: string | null;
  figures?: Figure[];
}

export interface Monitor {
  name: string;
  endpoint: string;
  baseline: string;
  schedule: string | null;
  thresholds: Record<string, number>;
  labels: string | null;
  report_table: string;
  next_at: string | null;
  message: string | null;
  last_run: MonitorRun | null;
}

const PREDICTION = "(prediction)";
const LABELS = "(labels)";
const monitorPath = (name: string) => `/api/v1/monitors/${encodeURIComponent(name)}`;

export function MonitoringTab({ endpoint }: { endpoint: string }) {
  const monitors = useApi((signal) => get<Monitor[]>("/api/v1/monitors", { endpoint }, signal), [endpoint], 15000);
  if (monitors.error || (monitors.loading && !monitors.data)) {
    return (
      <>
        <ErrorBox error={monitors.error} />
        {!monitors.error && <Loading what="Loading the monitors" />}
      </>
    );
  }
  const list = monitors.data ?? [];
  if (list.length === 0) {
    return (
      <section className="panel" aria-labelledby="ep-mon-none">
        <h2 id="ep-mon-none">No monitors yet</h2>
        <p className="muted">A monitor compares the requests this endpoint captured with the data its model was
          trained on, and alerts when they drift apart. Turn data capture on, then:</p>
        <pre className="mono">cumulo monitors create {endpoint}-drift --endpoint {endpoint} --baseline DB.TABLE@vN --schedule "0 * * * *"</pre>
        <p className="muted">See docs/monitoring.md.</p>
      </section>
    );
  }
  return <>{list.map((m) => <MonitorPanel key={m.name} monitor={m} onRun={monitors.reload} />)}</>;
}

// A run's job reads the window and computes the figures: follow the run until it has ended.
async function follow(name: string, started: MonitorRun, step: (r: MonitorRun) => void): Promise<MonitorRun> {
  let r = started;
  let pause = 200;
  const deadline = Date.now() + 600_000;
  while ((r.state === "running" || r.state === "recording") && Date.now() < deadline) {
    step(r);
    await new Promise((ok) => setTimeout(ok, pause));
    pause = Math.min(pause * 1.5, 2000);
    r = await get<MonitorRun>(`${monitorPath(name)}/runs/${r.id}`);
  }
  return r;
}

function MonitorPanel({ monitor: m, onRun }: { monitor: Monitor; onRun: () => void }) {
  const runs = useApi((signal) => get<MonitorRun[]>(`${monitorPath(m.name)}/runs`, { limit: 100 }, signal),
                      [m.name, m.last_run?.id], 15000);
  const [mayRun] = useCan([["monitors:Run", `monitor/${m.name}`]]);
  const [notice, setNotice] = useState<string>();
  const run = useAction(async () => follow(m.name, await post<MonitorRun>(`${monitorPath(m.name)}/runs`),
    (r) => setNotice(`Run ${r.id}: running${r.job ? ` (job ${r.job})` : ""}…`)));
  const title = `ep-mon-${m.name}`;
  const done = (runs.data ?? []).filter((r) => r.state === "succeeded" && r.figures && r.figures.length > 0);
  const latest = done[0];
  return (
    <section className="panel" aria-labelledby={title}>
      <div className="row">
        <h2 id={title}>{m.name}</h2>
        {m.last_run && <State state={m.last_run.state} />}
        <span className="spacer" />
        {mayRun && (
          <button type="button" disabled={run.busy} onClick={async () => {
            const r = await run.run();
            if (r) { setNotice(`Run ${r.id}: ${r.state}, ${number(r.rows)} rows${r.message ? ` (${r.message})` : ""}`); onRun(); }
          }}>{run.busy ? "Running…" : "Run now"}</button>
        )}
      </div>
      <p className="muted">Against <code>{m.baseline}</code> · {m.schedule ? <>on <code>{m.schedule}</code> (UTC){m.next_at ? `, next ${when(m.next_at)}` : ""}</> : "run by hand"}
        {" "}· thresholds {Object.entries(m.thresholds).map(([k, v]) => `${k} ${v}`).join(", ") || "none"}
        {" "}· figures in <Link to={`/tables/${m.report_table.split(".").map(encodeURIComponent).join("/")}`}>{m.report_table}</Link></p>
      {notice && <p role="status">{notice}</p>}
      <ErrorBox error={run.error ?? runs.error} onClose={run.clear} />
      {m.message && <div className="error" role="alert">{m.message}</div>}
      {latest?.breaches.length ? (
        <div className="error" role="alert"><strong>Past thresholds in run {latest.id}:</strong>
          <ul>{latest.breaches.map((b) => <li key={b}>{b}</li>)}</ul></div>
      ) : null}
      {done.length === 0 ? <p className="muted">No report yet: {mayRun ? "run it now, or wait for its schedule" : "wait for its schedule"}.</p> : (
        <DriftCharts runs={done} />
      )}
    </section>
  );
}

function over(runs: MonitorRun[], feature: string, value: (f: Figure) => number | null): Series["points"] {
  return [...runs].reverse().flatMap((r) => {
    const f = r.figures?.find((x) => x.feature === feature);
    const y = f ? value(f) : null;
    return y === null || y === undefined ? [] : [{ x: new Date(r.started_at).getTime() / 1000, y }];
  });
}

export function DriftCharts({ runs }: { runs: MonitorRun[] }) {
  const latest = runs[0];
  const features = (latest.figures ?? []).filter((f) => f.feature !== LABELS).map((f) => f.feature);
  const psi: Series[] = features.map((name) => ({ name, points: over(runs, name, (f) => f.psi) }));
  const prediction = latest.figures?.find((f) => f.feature === PREDICTION);
  const labeled = runs.some((r) => r.figures?.some((f) => f.feature === LABELS && (f.accuracy ?? f.mae) !== null));
  const quality: Series[] = labeled ? [
    { name: "accuracy", points: over(runs, LABELS, (f) => f.accuracy) },
    { name: "MAE", points: over(runs, LABELS, (f) => f.mae) },
    { name: "RMSE", points: over(runs, LABELS, (f) => f.rmse) },
  ].filter((s) => s.points.length > 0) : [];
  return (
    <>
      <div className="columns">
        <Chart title="PSI per feature, by run" series={psi} xTime yLabel="PSI" />
        {prediction?.histogram ? (
          <Chart title={`Predictions, run ${latest.id}: share per bin`} kind="bar" yLabel="share"
                 series={[
                   { name: "baseline", points: prediction.histogram.bins.map((b, i) => ({ x: b, y: prediction.histogram!.baseline[i] })) },
                   { name: "captured", points: prediction.histogram.bins.map((b, i) => ({ x: b, y: prediction.histogram!.current?.[i] ?? NaN })) },
                 ]} />
        ) : <p className="muted">No predictions to compare yet.</p>}
      </div>
      {quality.length > 0 && <Chart title="Model quality over time (labels joined)" series={quality} xTime yLabel="value" />}
      <div className="grid-wrap" tabIndex={0} role="region" aria-label={`Figures of run ${latest.id}`}>
        <table className="grid">
          <thead><tr><th scope="col">Feature</th><th scope="col">Kind</th><th scope="col" className="num">Rows</th>
            <th scope="col" className="num">PSI</th><th scope="col" className="num">KS</th><th scope="col" className="num">Missing</th>
            <th scope="col" className="num">Out of range</th><th scope="col" className="num">Unseen</th>
            <th scope="col" className="num">Accuracy</th><th scope="col">Past</th></tr></thead>
          <tbody>
            {(latest.figures ?? []).map((f) => (
              <tr key={f.feature}>
                <td className="mono">{f.feature}</td><td>{f.kind}</td><td className="num">{number(f.rows)}</td>
                <td className="num">{number(f.psi)}</td><td className="num">{number(f.ks)}</td>
                <td className="num">{number(f.missing_rate)}</td><td className="num">{number(f.out_of_range_rate)}</td>
                <td className="num">{number(f.unseen_rate)}</td><td className="num">{number(f.accuracy)}</td>
                <td>{f.breached.join(", ") || "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
