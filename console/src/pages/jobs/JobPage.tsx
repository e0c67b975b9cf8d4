// One job: what it is, its live log, metrics as charts, use and cost, outputs, cancel and retry.
import { useEffect, useState } from "react";
import { Link, useParams } from "react-router-dom";
import { get, post, url } from "../../api";
import { Chart } from "../../components/Chart";
import { Empty, ErrorBox, Loading, PageHeader, State } from "../../components/ErrorBox";
import { bytes, dollars, number, seconds, when } from "../../format";
import { useApi } from "../../hooks";
import { LogView } from "./LogView";
import { ConfirmButton, duration, isActive, Job, priceBasis, Prices, Table, useNow } from "./shared";

type Metrics = Record<string, { value: number; step: number; timestamp: string }[]>;

export default function JobPage() {
  const { id = "" } = useParams();
  const [live, setLive] = useState(false);
  const job = useApi((signal) => get<Job>(`/jobs/${encodeURIComponent(id)}`, undefined, signal), [id],
                     live ? 2000 : undefined);
  const active = isActive(job.data);
  useEffect(() => setLive(active), [active]);

  if (!job.data) {
    return (
      <>
        <Crumbs id={id} />
        <ErrorBox error={job.error} />
        {job.loading && <Loading what="Loading the job" />}
      </>
    );
  }
  return <JobView job={job.data} error={job.error} reload={job.reload} />;
}

function Crumbs({ id }: { id: string }) {
  return <nav className="breadcrumbs" aria-label="Breadcrumbs"><Link to="/jobs">Jobs</Link> / {id}</nav>;
}

function JobView({ job, error, reload }: { job: Job; error: unknown; reload: () => void }) {
  const active = isActive(job);
  const now = useNow(active);
  const [attempt, setAttempt] = useState(job.attempt);
  useEffect(() => setAttempt(job.attempt), [job.attempt]);
  const ended = !active;
  const metrics = useApi((signal) => get<Metrics>(`/jobs/${job.id}/metrics`, undefined, signal),
                         [job.id, ended, job.attempt], active ? 3000 : undefined);
  const artifacts = useApi((signal) => get<{ path: string; size: number }[]>(`/jobs/${job.id}/artifacts`, undefined, signal),
                           [job.id, ended, job.attempt]);
  const prices = useApi((signal) => get<{ prices: Prices }>("/costs", { by: "kind", since: "1d" }, signal), []);

  const retryable = ["failed", "cancelled", "timed_out"].includes(job.state);
  return (
    <>
      <Crumbs id={job.id} />
      <PageHeader title={job.name}>
        <State state={job.state} />
        {active && (
          <ConfirmButton label="Cancel job" title={`Cancel ${job.name}?`} confirm="Cancel job" danger
                         onConfirm={async () => { await post(`/jobs/${job.id}/cancel`); reload(); }}>
            <p>The job is sent SIGTERM, then SIGKILL after the grace period. Its log, outputs and checkpoints so far are
              kept, and it can be retried from them.</p>
          </ConfirmButton>
        )}
        {retryable && (
          <ConfirmButton label="Retry" title={`Retry ${job.name}?`} confirm={`Run attempt ${job.attempt + 1}`}
                         className="primary"
                         onConfirm={async () => { await post(`/jobs/${job.id}/retry`); reload(); }}>
            <p>Attempt {job.attempt + 1} runs the same code, command and inputs (at the same table versions), starting
              from the checkpoints the last attempt left.</p>
          </ConfirmButton>
        )}
      </PageHeader>
      <ErrorBox error={error} />
      {job.reason && !active && (
        <div className={job.state === "succeeded" ? "ops-note" : "error"} role="note">
          <strong>{job.state.replace("_", " ")}:</strong> {job.reason}
        </div>
      )}

      <div className="columns">
        <section className="panel ops-panel" aria-labelledby="job-props">
          <h2 id="job-props">Properties</h2>
          <Properties job={job} now={now} />
        </section>
        <section className="panel ops-panel" aria-labelledby="job-usage">
          <h2 id="job-usage">Usage and cost</h2>
          <Usage job={job} now={now} prices={prices.data?.prices} />
        </section>
      </div>

      <section className="panel ops-panel" aria-labelledby="job-log">
        <div className="row">
          <h2 id="job-log">Log</h2>
          <span className="spacer" />
          {job.attempt > 1 && (
            <label>Attempt{" "}
              <select value={attempt} onChange={(e) => setAttempt(Number(e.target.value))}>
                {Array.from({ length: job.attempt }, (_, i) => i + 1).map((n) => (
                  <option key={n} value={n}>{n}{n === job.attempt ? " (latest)" : ""}</option>
                ))}
              </select>
            </label>
          )}
        </div>
        <LogView key={`${job.id}-${attempt}`} jobId={job.id} attempt={attempt}
                 follow={active && attempt === job.attempt} onEnd={reload} />
      </section>

      <section className="panel ops-panel" aria-labelledby="job-metrics">
        <h2 id="job-metrics">Metrics</h2>
        <ErrorBox error={metrics.error} />
        {!metrics.data && metrics.loading && <Loading what="Loading metrics" />}
        {metrics.data && Object.keys(metrics.data).length === 0 && (
          <Empty>No metrics {active ? "yet" : "were logged"}. Inside a job: <code>cumulo.job.log_metric("loss", 0.3, step=1)</code>{" "}
            or <code>mlflow.log_metric(...)</code>.</Empty>
        )}
        {metrics.data && Object.keys(metrics.data).length > 0 && (
          <div className="metric-charts">
            {Object.entries(metrics.data).map(([key, points]) => (
              <div key={key} className="metric-chart">
                <Chart title={key} kind="line" xLabel="step" height={200}
                       series={[{ name: key, points: points.map((p) => ({ x: p.step, y: p.value })) }]} />
                <div className="muted ops-small">last {number(points[points.length - 1]?.value)} at step {points[points.length - 1]?.step}
                  {" · "}{points.length} point{points.length === 1 ? "" : "s"}</div>
              </div>
            ))}
          </div>
        )}
      </section>

      <section className="panel ops-panel" aria-labelledby="job-artifacts">
        <h2 id="job-artifacts">Outputs</h2>
        <ErrorBox error={artifacts.error} />
        {artifacts.data && artifacts.data.length === 0 && (
          <Empty>{active ? "Outputs are kept when the job ends." : "The job left no outputs."} A job keeps what it writes
            to <code>cumulo.job.output_dir</code>.</Empty>
        )}
        {artifacts.data && artifacts.data.length > 0 && (
          <Table label="Outputs" head={["File", "Size"]}>
            {artifacts.data.map((a) => (
              <tr key={a.path}>
                <td><a href={url(`/jobs/${job.id}/artifacts/${a.path.split("/").map(encodeURIComponent).join("/")}`)}
                       download={a.path.split("/").pop()}>{a.path}</a></td>
                <td className="num">{bytes(a.size)}</td>
              </tr>
            ))}
          </Table>
        )}
      </section>

      {job.attempts.length > 0 && (
        <section className="panel ops-panel" aria-labelledby="job-attempts">
          <h2 id="job-attempts">Attempts</h2>
          <Table label="Attempts" head={["Attempt", "State", "Reason", "Started", "Ended", "Wall time", "CPU time", "Peak memory"]}>
            {job.attempts.map((a) => (
              <tr key={a.attempt}>
                <td className="num">{a.attempt}</td>
                <td><State state={a.state} /></td>
                <td>{a.reason ?? (a.exit_code === 0 ? "exited with code 0" : "—")}</td>
                <td>{when(a.started_at)}</td>
                <td>{when(a.finished_at)}</td>
                <td className="num">{seconds(a.wall_seconds)}</td>
                <td className="num">{seconds(a.cpu_seconds)}</td>
                <td className="num">{bytes(a.peak_memory_bytes)}</td>
              </tr>
            ))}
          </Table>
        </section>
      )}
    </>
  );
}

function Properties({ job, now }: { job: Job; now: number }) {
  const what = job.command ? job.command.join(" ") : job.entry ?? "—";
  const inputs = Object.entries(job.inputs);
  return (
    <dl className="props">
      <dt>ID</dt><dd className="mono">{job.id}</dd>
      <dt>State</dt><dd><State state={job.state} />{job.exit_code !== null && <span className="muted"> exit code {job.exit_code}</span>}</dd>
      <dt>Cluster</dt><dd>{job.cluster}{job.ray_job && <span className="muted"> (Ray job {job.ray_job})</span>}</dd>
      <dt>Runs</dt><dd><code className="ops-wrap">{what}{job.args.length ? " " + job.args.join(" ") : ""}</code></dd>
      {job.code && <><dt>Code</dt><dd className="mono" title={job.code}>{job.code.slice(0, 12)}</dd></>}
      {inputs.length > 0 && <><dt>Inputs</dt><dd>{inputs.map(([name, value]) => (
        <div key={name}><span className="mono">{name}</span> = {inputLabel(value)}</div>))}</dd></>}
      <dt>Resources</dt>
      <dd>{job.cpus} CPU{job.cpus === 1 ? "" : "s"}{job.memory ? `, ${bytes(job.memory)} memory` : ""}
        {job.gpus ? `, ${job.gpus} GPU${job.gpus === 1 ? "" : "s"}` : ""}</dd>
      <dt>Submitted</dt><dd>{when(job.created_at)}{job.created_by && ` by ${job.created_by}`}</dd>
      <dt>Started</dt><dd>{when(job.running_at ?? job.starting_at)}</dd>
      <dt>Ended</dt><dd>{when(job.finished_at)}</dd>
      <dt>Duration</dt><dd>{duration(job, now)}</dd>
      <dt>Attempt</dt><dd>{job.attempt}{job.retries ? ` (up to ${job.retries} automatic retr${job.retries === 1 ? "y" : "ies"})` : ""}</dd>
      {job.max_runtime_s && <><dt>Max runtime</dt><dd>{seconds(job.max_runtime_s)}</dd></>}
      {job.priority !== 0 && <><dt>Priority</dt><dd>{job.priority}</dd></>}
      {job.tags.length > 0 && <><dt>Tags</dt><dd>{job.tags.map((t) => <span key={t} className="ops-chip">{t}</span>)}</dd></>}
      {Object.keys(job.env).length > 0 && <><dt>Environment</dt><dd className="mono">{Object.entries(job.env).map(([k, v]) => (
        <div key={k}>{k}={v}</div>))}</dd></>}
    </dl>
  );
}

function inputLabel(value: unknown): string {
  if (typeof value === "string") return value;
  if (value && typeof value === "object") {
    const v = value as Record<string, unknown>;
    if (typeof v.table === "string") return v.version !== undefined ? `${v.table}@v${v.version}` : v.table;
    if (typeof v.bucket === "string") return `${v.bucket}/${typeof v.prefix === "string" ? v.prefix : ""}`;
  }
  return JSON.stringify(value);
}

function Usage({ job, now, prices }: { job: Job; now: number; prices?: Prices }) {
  const u = job.usage;
  const priced = job.attempts.length > 0;
  return (
    <>
      <dl className="props">
        <dt>Cost</dt>
        <dd><strong>{priced ? dollars(u.cost_usd) : "—"}</strong>{" "}
          <span className="muted">{priced ? priceBasis(prices) : "priced when the attempt ends"}</span></dd>
        <dt>Wall time</dt><dd>{priced ? seconds(u.wall_seconds) : duration(job, now)}</dd>
        <dt>CPU time</dt><dd>{priced ? seconds(u.cpu_seconds) : "—"}</dd>
        <dt>Peak memory</dt><dd>{priced ? bytes(u.peak_memory_bytes) : "—"}</dd>
        <dt>GPU time</dt><dd>{job.gpus ? seconds(u.gpu_seconds) : "none asked for"}</dd>
      </dl>
      {prices && (
        <p className="muted ops-small">
          Priced for what was used: CPU-seconds × ${prices.vcpu_hour}/vCPU-hour, peak GB × wall time ×{" "}
          ${prices.gb_hour}/GB-hour, GPU-seconds × ${prices.gpu_hour}/GPU-hour.{" "}
          <Link to="/costs">All costs</Link>
        </p>
      )}
    </>
  );
}
