// A run's steps under the canvas (state, time, job, the API's message), the form that starts a
// run with its parameters, and a pipeline's recent runs.
import { useState } from "react";
import { Link } from "react-router-dom";
import { get } from "../../api";
import { Empty, ErrorBox, Loading, State } from "../../components/ErrorBox";
import { seconds, when } from "../../format";
import { useApi } from "../../hooks";
import { type ParameterSpec, RUN_FINISHED, type RunOut, type StepOut } from "./model";

function stepSeconds(step: StepOut): number | null {
  if (step.seconds !== null && step.seconds !== undefined) return step.seconds;
  if (!step.started_at) return null;
  const end = step.finished_at ? Date.parse(step.finished_at) : Date.now();
  return (end - Date.parse(step.started_at)) / 1000;
}

export function RunPanel({ run, error, busy, onSelect, onCancel, onRetry, onClose }: {
  run: RunOut;
  error?: unknown;
  busy: boolean;
  onSelect: (node: string) => void;
  onCancel: () => void;
  onRetry: () => void;
  onClose: () => void;
}) {
  const finished = RUN_FINISHED.includes(run.state);
  const params = Object.entries(run.parameters ?? {});
  return (
    <section className="panel run-panel" aria-label="Run">
      <div className="row">
        <h2>Run <span className="mono">{run.id}</span></h2>
        <State state={run.state} />
        <span className="spacer" />
        {!finished && <button type="button" className="danger" disabled={busy} onClick={onCancel}>Cancel run</button>}
        {(run.state === "failed" || run.state === "cancelled") &&
          <button type="button" disabled={busy} onClick={onRetry}>Retry from the failed step</button>}
        <button type="button" onClick={onClose}>Close</button>
      </div>
      <p className="muted run-summary">
        version {run.version} · cluster {run.cluster} · {run.trigger}
        {run.retry_of && <> (retry of <Link to={`/pipelines/${run.pipeline}/runs/${run.retry_of}`}>{run.retry_of}</Link>)</>}
        {" "}· started {when(run.started_at ?? run.created_at)} · {seconds(run.duration_s)}
        {params.length > 0 && <> · <span className="mono">{params.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ")}</span></>}
      </p>
      {run.message && <ErrorBox error={run.message} />}
      <ErrorBox error={error} />
      <div className="grid-wrap">
        <table className="grid run-steps">
          <caption>Steps</caption>
          <thead>
            <tr><th scope="col">Step</th><th scope="col">Component</th><th scope="col">State</th>
              <th scope="col">Time</th><th scope="col">Job</th><th scope="col">Message</th></tr>
          </thead>
          <tbody>
            {(run.steps ?? []).map((step) => (
              <tr key={step.node}>
                <td><button type="button" className="link mono" onClick={() => onSelect(step.node)}>{step.node}</button></td>
                <td>{step.component}</td>
                <td><State state={step.state} /></td>
                <td className="num">{seconds(stepSeconds(step))}</td>
                <td>{step.job_id ? <Link to={`/jobs/${step.job_id}`}>{step.job_id}</Link>
                  : step.cached_from ? <>cached from <Link to={`/pipelines/${run.pipeline}/runs/${step.cached_from}`}>{step.cached_from}</Link></>
                  : "—"}</td>
                <td className="step-message">
                  {step.message ?? ""}
                  {step.log_tail && (
                    <details>
                      <summary>log</summary>
                      <pre>{step.log_tail}</pre>
                    </details>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

interface Cluster {
  name: string;
  type: string;
}

/** The run's parameters (the declared defaults filled in) and cluster, before it starts. */
export function RunDialog({ parameters, busy, onStart, onCancel }: {
  parameters: Record<string, ParameterSpec>;
  busy: boolean;
  onStart: (values: Record<string, string>, cluster: string) => void;
  onCancel: () => void;
}) {
  const clusters = useApi((signal) => get<Cluster[]>("/clusters", undefined, signal), []);
  const [values, setValues] = useState<Record<string, string>>(() => Object.fromEntries(
    Object.entries(parameters).map(([k, spec]) => [k, spec.default === undefined ? "" : String(spec.default)])));
  const [cluster, setCluster] = useState("local");
  return (
    <form className="panel run-dialog" role="dialog" aria-label="Run the pipeline"
          onSubmit={(e) => {
            e.preventDefault();
            onStart(Object.fromEntries(Object.entries(values).filter(([, v]) => v !== "")), cluster);
          }}>
      <h2>Run the pipeline</h2>
      {Object.entries(parameters).map(([name, spec]) => (
        <div className="field" key={name}>
          <label htmlFor={`run-param-${name}`}>{name} <span className="muted field-type">{spec.type}</span></label>
          {spec.type === "boolean" ? (
            <select id={`run-param-${name}`} value={values[name]} onChange={(e) => setValues({ ...values, [name]: e.target.value })}>
              {spec.default === undefined && <option value="">— choose —</option>}
              <option>true</option><option>false</option>
            </select>
          ) : (
            <input id={`run-param-${name}`} value={values[name]} required={spec.default === undefined}
                   inputMode={spec.type === "string" ? undefined : "decimal"}
                   onChange={(e) => setValues({ ...values, [name]: e.target.value })} />
          )}
        </div>
      ))}
      <div className="field">
        <label htmlFor="run-cluster">Cluster</label>
        <select id="run-cluster" value={cluster} onChange={(e) => setCluster(e.target.value)}>
          {(clusters.data ?? [{ name: "local", type: "local" }]).map((c) => (
            <option key={c.name} value={c.name}>{c.name} ({c.type})</option>
          ))}
        </select>
      </div>
      <div className="row">
        <button type="submit" className="primary" disabled={busy}>{busy ? "Starting…" : "Start run"}</button>
        <button type="button" onClick={onCancel}>Cancel</button>
      </div>
    </form>
  );
}

/** A pipeline's recent runs, each a link to the canvas with its states. */
export function RunHistory({ pipeline, current }: { pipeline: string; current?: string }) {
  const runs = useApi((signal) => get<RunOut[]>("/pipelines/-/runs", { pipeline, limit: 10 }, signal), [pipeline], 5000);
  return (
    <div className="run-history">
      <h3>Recent runs</h3>
      {runs.error && <ErrorBox error={runs.error} />}
      {!runs.data && !runs.error && <Loading />}
      {runs.data?.length === 0 && <Empty>No runs yet: press Run, or <code>cumulo pipelines run {pipeline}</code>.</Empty>}
      <ul className="plain">
        {runs.data?.map((r) => (
          <li key={r.id} className="row">
            <Link to={`/pipelines/${pipeline}/runs/${r.id}`} aria-current={r.id === current ? "page" : undefined}
                  className="mono">{r.id}</Link>
            <State state={r.state} />
            <span className="muted">v{r.version} · {when(r.created_at)}</span>
          </li>
        ))}
      </ul>
    </div>
  );
}
