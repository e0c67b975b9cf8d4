// Home: what this Cumulo holds and is doing now, each card a way into its section.
import { Link } from "react-router-dom";
import { get } from "../api";
import { Empty, ErrorBox, Loading, PageHeader, State } from "../components/ErrorBox";
import { bytes, dollars, number, seconds, when } from "../format";
import { useApi } from "../hooks";
import { duration, isActive, isAwsList, Job, Prices, Table, useNow } from "./jobs/shared";
import { apiPath } from "./endpoints/shared";
import type { BackupRun } from "./Backups";
import "./Home.css";

/** Bytes stored by area; an area is null when the storage could not list it. */
interface StorageUse {
  buckets: number;
  tables: number | null;
  models: number | null;
  jobs: number | null;
  total: number;
  counted_at: string;
}
interface Status {
  version: string;
  storage: { kind: string; buckets: number; objects: number; bytes: number; used: StorageUse };
  compute: { clusters: number; running: number; queued: number };
  backups?: Backups | null;  // null for callers who may not list backups
  control_planes: Plane[];  // those sharing this Cumulo's database, live or lately
}
/** A control plane (a `cumulo up`): its lease, the starting or running jobs it owns and the
 * endpoints it runs. */
interface Plane {
  id: string;
  host: string;
  url: string;
  version: string;
  started_at: string;
  renewed_at: string;
  lease_expires_at: string;
  live: boolean;  // its lease is current: it runs what it owns
  this: boolean;  // the control plane that answered
  jobs: number;
  endpoints: number;  // endpoints it runs
}
/** The backup schedules' standing: each failing one's latest failed backup or drill. */
interface Backups {
  schedules: number;
  last_backup_at: string | null;
  last_drill: BackupRun | null;
  failing: { schedule: string; kind: string; error: string; at: string }[];
}
interface Endpoint {
  name: string;
  state: string;
  variants: { name: string; model: string; version: string | number; weight: number; shadow?: boolean }[];
  replicas: { ready?: boolean }[];
}
interface Traffic { replicas: number; in_flight: number; variants: Record<string, { requests: number; requests_per_s: number; errors_5xx: number }> }
interface Costs { total: { cost_usd: number; count: number }; prices: Prices }

// What "Storage used" adds up, in the order shown: the Files page's buckets, the lake's tables,
// MLflow's artifact store (models and runs' files), jobs' code, logs and outputs.
const AREAS: [Exclude<keyof StorageUse, "total" | "counted_at">, string][] = [
  ["tables", "tables"], ["buckets", "files"], ["models", "models"], ["jobs", "jobs"]];
const areas = (used: StorageUse) => AREAS.map(([key, label]) => {
  const n = used[key];
  return n === null ? `${label} not counted` : `${label} ${bytes(n)}`;
});

/** How long ago: "4 min ago", "3 h ago", "2 d ago". */
function ago(iso: string): string {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** How long ago, to the second within a minute (a lease is renewed every 2 s): "3 s ago". */
function agoExactly(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 60 ? `${s} s ago` : ago(iso);
}

const backupsOf = (schedule: string) => `/backups?schedule=${encodeURIComponent(schedule)}`;

const MOST_ENDPOINTS = 20; // endpoints whose traffic is asked for on each refresh
const live = (e: Endpoint) => e.variants.filter((v) => !v.shadow);
const share = (e: Endpoint, weight: number) => {
  const total = live(e).reduce((sum, v) => sum + v.weight, 0);
  return total ? `${Math.round((weight / total) * 100)}%` : "0%";
};

function drillText(b: Backups): string {
  const schedules = `${b.schedules} schedule${b.schedules === 1 ? "" : "s"}`;
  const d = b.last_drill;
  if (!d) return `${schedules} · no drill yet`;
  if (d.state !== "succeeded") return `${schedules} · last drill ${d.state}`;
  return `${schedules} · last drill RPO ${seconds(d.rpo_seconds)}, RTO ${seconds(d.rto_seconds)}`;
}

/** A control plane's lease: when it was last renewed, or, in red, when it ran out (its work
 *  is taken over by the live ones). */
function Lease({ plane }: { plane: Plane }) {
  return plane.live
    ? <span title={`Renewed at ${when(plane.renewed_at)}`}>renewed {agoExactly(plane.renewed_at)}</span>
    : <span className="home-lease-out" title={`Ran out at ${when(plane.lease_expires_at)}`}>
        lease ran out {ago(plane.lease_expires_at)}</span>;
}

const jobsText = (n: number) => `${n} job${n === 1 ? "" : "s"}`;
const endpointsText = (n: number) => `${n} endpoint${n === 1 ? "" : "s"}`;
const ThisOne = ({ plane }: { plane: Plane }) =>
  plane.this ? <span className="ops-chip" title="The control plane that answered">this one</span> : null;

/** The control planes sharing this Cumulo's database: one line for one, a table for several. */
function Planes({ planes }: { planes: Plane[] }) {
  const live = planes.filter((p) => p.live).length;
  const summary = <span className="muted ops-small">{live} of {planes.length} live</span>;
  if (planes.length === 1) {
    const [p] = planes;
    return (
      <section className="panel ops-panel home-planes home-planes-one" aria-labelledby="home-planes">
        <div className="row">
          <h2 id="home-planes">Control planes</h2>
          <span className="home-plane">
            <code title={p.id}>{p.id.slice(0, 8)}</code> {p.host} <span className="muted">{p.url}</span>
            {" "}Cumulo {p.version} <ThisOne plane={p} />· <Lease plane={p} /> · {jobsText(p.jobs)} · {endpointsText(p.endpoints)}
          </span>
          <span className="spacer" />{summary}
        </div>
      </section>
    );
  }
  return (
    <section className="panel ops-panel home-planes" aria-labelledby="home-planes">
      <div className="row"><h2 id="home-planes">Control planes</h2><span className="spacer" />{summary}</div>
      <Table label="Control planes" head={["Control plane", "Host", "URL", "Version", "Lease", "Jobs", "Endpoints"]}>
        {planes.map((p) => (
          <tr key={p.id}>
            <td><code title={p.id}>{p.id.slice(0, 8)}</code> <ThisOne plane={p} /></td>
            <td>{p.host}</td>
            <td className="home-plane-url">{p.url}</td>
            <td>{p.version}</td>
            <td><Lease plane={p} /></td>
            <td className="num">{p.jobs}</td>
            <td className="num">{p.endpoints}</td>
          </tr>
        ))}
      </Table>
    </section>
  );
}

export default function Home() {
  const home = useApi(async (signal) => {
    const [status, tables, jobs, endpoints, costs] = await Promise.all([
      get<Status>("/status", undefined, signal),
      get<unknown[]>("/tables", undefined, signal),
      get<Job[]>("/jobs", { limit: 8 }, signal),
      get<Endpoint[]>("/endpoints", undefined, signal),
      get<Costs>("/costs", { by: "kind", since: "7d" }, signal),
    ]);
    // Traffic of each endpoint over the last minute; one that cannot answer shows no rate.
    const traffic = await Promise.all(endpoints.slice(0, MOST_ENDPOINTS).map((e) =>
      get<Traffic>(apiPath(e.name, "/metrics"), { window: 60 }, signal).catch(() => undefined)));
    return { status, tables: tables.length, jobs, endpoints, costs,
             traffic: Object.fromEntries(endpoints.map((e, i) => [e.name, traffic[i]])) };
  }, [], 5000);
  const now = useNow(!!home.data?.jobs.some(isActive));

  if (!home.data) {
    return <><PageHeader title="Home" /><ErrorBox error={home.error} />{home.loading && <Loading />}</>;
  }
  const { status, tables, jobs, endpoints, costs, traffic } = home.data;
  const rate = (name: string) => {
    const t = traffic[name];
    const e = endpoints.find((x) => x.name === name);
    const shadows = new Set(e?.variants.filter((v) => v.shadow).map((v) => v.name));
    return t?.variants ? Object.entries(t.variants).filter(([v]) => !shadows.has(v))
      .reduce((sum, [, v]) => sum + v.requests_per_s, 0) : undefined;
  };
  const totalRate = endpoints.reduce((sum, e) => sum + (rate(e.name) ?? 0), 0);
  const serving = endpoints.filter((e) => e.state === "in_service" || e.state === "updating").length;
  return (
    <>
      <PageHeader title="Home">
        <span className="muted ops-small">Cumulo {status.version} · refreshes every 5 s</span>
      </PageHeader>
      <ErrorBox error={home.error} />
      {!!status.backups?.failing.length && (
        <div className="error home-backups" role="alert" aria-label="Backups failing">
          <strong>Backups failing</strong>
          <ul>
            {status.backups.failing.map((f) => (
              <li key={`${f.schedule} ${f.kind}`}>
                The last {f.kind} of schedule <Link to={backupsOf(f.schedule)}>{f.schedule}</Link> failed
                {f.at && <> {ago(f.at)}</>}: <span className="home-backups-error">{f.error || "no reason given"}</span>
              </li>
            ))}
          </ul>
        </div>
      )}
      <div className="cards home-cards">
        <Link className="card" to="/files" title={`Counted at ${when(status.storage.used.counted_at)}, at most every 30 s`}
              aria-label={`Storage: ${bytes(status.storage.used.total)} used (${areas(status.storage.used).join(", ")})`}>
          <div className="label">Storage used</div>
          <div className="value">{bytes(status.storage.used.total)}</div>
          <div className="sub home-areas">{areas(status.storage.used).map((a) => <span key={a}>{a}</span>)}</div>
        </Link>
        <Link className="card" to="/tables" aria-label={`Tables: ${tables}`}>
          <div className="label">Tables</div>
          <div className="value">{tables}</div>
          <div className="sub">in the lake catalog</div>
        </Link>
        <Link className="card" to="/jobs?state=active" aria-label={`Running jobs: ${status.compute.running}`}>
          <div className="label">Running jobs</div>
          <div className="value">{status.compute.running}</div>
          <div className="sub">{status.compute.queued} queued · {status.compute.clusters} cluster{status.compute.clusters === 1 ? "" : "s"}</div>
        </Link>
        <Link className="card" to="/endpoints" aria-label={`Endpoints: ${endpoints.length}`}>
          <div className="label">Endpoints</div>
          <div className="value">{endpoints.length}</div>
          <div className="sub">{serving} serving · {number(totalRate, 3)} requests/s</div>
        </Link>
        <Link className="card" to="/costs" aria-label={`Cost this week: ${dollars(costs.total.cost_usd)}`}>
          <div className="label">Cost, last 7 days</div>
          <div className="value">{dollars(costs.total.cost_usd)}</div>
          <div className="sub">{isAwsList(costs.prices) ? "at AWS on-demand list prices" : "at this server's price sheet"}</div>
        </Link>
        {!!status.backups?.schedules && (
          <Link className="card" to="/backups" title={status.backups.last_backup_at ? when(status.backups.last_backup_at) : undefined}
                aria-label={`Last backup: ${status.backups.last_backup_at ? ago(status.backups.last_backup_at) : "none yet"}`}>
            <div className="label">Last backup</div>
            <div className="value">{status.backups.last_backup_at ? ago(status.backups.last_backup_at) : "none yet"}</div>
            <div className="sub">{drillText(status.backups)}</div>
          </Link>
        )}
      </div>

      <div className="columns">
        <section className="panel ops-panel" aria-labelledby="home-jobs">
          <div className="row"><h2 id="home-jobs">Recent jobs</h2><span className="spacer" /><Link to="/jobs">All jobs</Link></div>
          {jobs.length === 0 ? (
            <Empty>No jobs yet: <code>cumulo jobs run --code ./src --entry train.py</code></Empty>
          ) : (
            <Table label="Recent jobs" head={["Job", "State", "Duration", "Submitted"]}>
              {jobs.map((job) => (
                <tr key={job.id}>
                  <td><Link to={`/jobs/${job.id}`}>{job.name}</Link></td>
                  <td><State state={job.state} /></td>
                  <td className="num">{duration(job, now)}</td>
                  <td>{when(job.created_at)}</td>
                </tr>
              ))}
            </Table>
          )}
        </section>
        <section className="panel ops-panel" aria-labelledby="home-endpoints">
          <div className="row"><h2 id="home-endpoints">Endpoints</h2><span className="spacer" /><Link to="/endpoints">All endpoints</Link></div>
          {endpoints.length === 0 ? (
            <Empty>No endpoints yet: <code>cumulo endpoints create churn --model churn@champion</code></Empty>
          ) : (
            <Table label="Endpoints" head={["Endpoint", "State", "Model", "Replicas", "Requests/s"]}>
              {endpoints.map((e) => {
                const r = rate(e.name);
                return (
                  <tr key={e.name}>
                    <td><Link to={`/endpoints/${encodeURIComponent(e.name)}`}>{e.name}</Link></td>
                    <td><State state={e.state} /></td>
                    <td>{live(e).map((v) => (
                      <span key={v.name} className="ops-chip">{v.model} v{v.version}{live(e).length > 1 ? ` · ${share(e, v.weight)}` : ""}</span>))}</td>
                    <td className="num">{traffic[e.name]?.replicas ?? e.replicas.filter((x) => x.ready).length}</td>
                    <td className="num">{r === undefined ? "—" : number(r, 3)}</td>
                  </tr>
                );
              })}
            </Table>
          )}
        </section>
      </div>
      {status.control_planes.length > 0 && <Planes planes={status.control_planes} />}
    </>
  );
}
