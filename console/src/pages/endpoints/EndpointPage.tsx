// One endpoint: its state, live metrics, variants and traffic, the invoke panel, its settings,
// replicas and scaling decisions; update traffic, roll back, delete. A second tab: its model
// monitors' drift charts (./Monitoring).
import { useEffect, useState } from "react";
import { Link, useNavigate, useParams, useSearchParams } from "react-router-dom";
import { del, get, patch } from "../../api";
import { ErrorBox, Loading, State } from "../../components/ErrorBox";
import { bytes, number, seconds, when } from "../../format";
import { useAction, useApi, useCan } from "../../hooks";
import { checkSettings, Settings, SettingsFields, settingsBody } from "./CreateEndpoint";
import { InvokePanel } from "./Invoke";
import { LiveCharts, Totals, useLiveMetrics, WINDOW_S } from "./LiveMetrics";
import { MonitoringTab } from "./Monitoring";
import { RolloutPanel, UpdateTraffic, VariantsTable } from "./Traffic";
import { Confirm } from "../../components/Dialogs";
import { apiPath, Endpoint } from "./shared";

const BUSY = ["creating", "updating", "deleting"];

export default function EndpointPage() {
  const { name = "" } = useParams();
  const navigate = useNavigate();
  const [params, setParams] = useSearchParams();
  const tab = params.get("tab") === "monitoring" ? "monitoring" : "overview";
  const [state, setState] = useState<string>();
  const endpoint = useApi((signal) => get<Endpoint>(apiPath(name), undefined, signal), [name],
                          state && BUSY.includes(state) ? 1500 : 5000);
  const e = endpoint.data?.name === name ? endpoint.data : undefined;
  useEffect(() => setState(e?.state), [e?.state]);
  const live = useLiveMetrics(name);
  const [updating, setUpdating] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const [mayUpdate, mayDelete] = useCan([["endpoints:Update", `endpoint/${name}`], ["endpoints:Delete", `endpoint/${name}`]]);

  const header = (
    <div className="breadcrumbs"><Link to="/endpoints">Endpoints</Link> / {name}</div>
  );
  if (!e) {
    return (
      <>
        {header}
        <ErrorBox error={endpoint.error} />
        {endpoint.loading && !endpoint.error && <Loading what="Loading the endpoint" />}
      </>
    );
  }
  const changed = () => endpoint.reload();

  return (
    <div className="ep-page">
      {header}
      <div className="page-header">
        <h1>{e.name}</h1>
        <State state={e.state} />
        <div className="actions">
          {mayUpdate && (
            <button type="button" onClick={() => setUpdating(!updating)} aria-expanded={updating}
                    disabled={e.state !== "in_service"}
                    title={e.state !== "in_service" ? "Once it is in service, and no shift is under way" : undefined}>
              Update traffic
            </button>
          )}
          {mayDelete && <button type="button" className="danger" onClick={() => setDeleting(true)}>Delete</button>}
        </div>
      </div>
      <ErrorBox error={endpoint.error} />
      {e.state === "creating" && (
        <div className="ep-notice" role="status">
          Starting {e.min_replicas || 1} replica{(e.min_replicas || 1) > 1 ? "s" : ""} and loading{" "}
          {e.variants.map((v) => `${v.model}:${v.version}`).join(", ")}… This page follows it.
        </div>
      )}
      {e.state === "failed" && (
        <div className="error" role="alert">
          <div><strong>The endpoint failed.</strong> Delete it, fix the model, and create it again.
            {e.message && <pre className="ep-traceback">{e.message}</pre>}</div>
        </div>
      )}
      {updating && e.state === "in_service" && (
        <UpdateTraffic endpoint={e} onClose={() => setUpdating(false)}
                       onDone={() => { setUpdating(false); changed(); }} />
      )}
      <RolloutPanel endpoint={e} onDone={changed} />

      <div className="tabs" role="tablist" aria-label="Endpoint views">
        {([["overview", "Overview"], ["monitoring", "Monitoring"]] as const).map(([id, label]) => (
          <button key={id} id={`ep-tab-${id}`} type="button" role="tab" aria-selected={tab === id}
                  aria-controls={`ep-panel-${id}`} tabIndex={tab === id ? 0 : -1}
                  onClick={() => setParams(id === "overview" ? {} : { tab: id }, { replace: true })}>{label}</button>
        ))}
      </div>
      {tab === "monitoring" ? (
        <div role="tabpanel" id="ep-panel-monitoring" aria-labelledby="ep-tab-monitoring">
          <MonitoringTab endpoint={e.name} />
        </div>
      ) : <div role="tabpanel" id="ep-panel-overview" aria-labelledby="ep-tab-overview">
      <Totals latest={live.latest} />
      <section className="panel" aria-labelledby="ep-live-title">
        <h2 id="ep-live-title">Live metrics</h2>
        <p className="muted ep-hint ep-live-note"><span className={`ep-live-dot${live.error ? "" : " on"}`} aria-hidden="true" />
          {" "}Asked every 2 s, each point over the last {WINDOW_S} s; kept while this page is open.</p>
        <ErrorBox error={live.error} />
        <LiveCharts samples={live.samples} variants={e.variants.map((v) => v.name)} />
      </section>

      <section className="panel" aria-labelledby="ep-variants-title">
        <h2 id="ep-variants-title">Variants</h2>
        <VariantsTable endpoint={e} latest={live.latest} />
      </section>

      <div className="columns">
        <InvokePanel endpoint={e} />
        <div>
          <SettingsPanel endpoint={e} onDone={changed} />
          <Replicas endpoint={e} />
        </div>
      </div>
      </div>}

      {deleting && (
        <Confirm title={`Delete endpoint ${e.name}?`} confirm="Delete" onClose={() => setDeleting(false)}
                 run={async () => { await del(apiPath(e.name)); navigate("/endpoints"); }}>
          <p>Its replicas stop and its address closes: requests to it fail from now on. The models stay in the
            registry{e.capture_table ? `, and the captured requests in ${e.capture_table}` : ""}.</p>
        </Confirm>
      )}
    </div>
  );
}

function Replicas({ endpoint: e }: { endpoint: Endpoint }) {
  const ready = e.replicas.filter((r) => r.ready).length;
  return (
    <section className="panel" aria-labelledby="ep-replicas-title">
      <h2 id="ep-replicas-title">Replicas <span className="muted ep-h2-note">{ready} ready · {e.min_replicas}–{e.max_replicas} · {e.restarts} restart{e.restarts === 1 ? "" : "s"}</span></h2>
      {e.replicas.length === 0 ? <p className="muted">{e.min_replicas === 0 ? "None running: scaled to zero. The next request starts one." : "None running yet."}</p> : (
        <div className="grid-wrap" tabIndex={0} role="region" aria-label="Replicas">
          <table className="grid">
            <thead><tr><th scope="col">Process</th><th scope="col">State</th><th scope="col" className="num">In flight</th>
              <th scope="col">Started</th></tr></thead>
            <tbody>
              {e.replicas.map((r, i) => (
                <tr key={r.pid ?? i}>
                  <td className="mono">{r.pid ?? "—"}{r.forked ? <span className="muted"> (forked)</span> : null}</td>
                  <td><State state={r.stopping ? "stopping" : r.ready ? "ready" : "starting"} /></td>
                  <td className="num">{r.in_flight}</td>
                  <td>{when(r.started_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <h3>Scaling</h3>
      {e.scaling.length === 0 ? <p className="muted">No scaling decisions yet.</p> : (
        <ol className="ep-log">
          {[...e.scaling].reverse().slice(0, 8).map((s, i) => (
            <li key={i}><time className="muted">{new Date(s.at * 1000).toLocaleTimeString("en-GB")}</time>{" "}
              {s.from} → {s.to} replicas: {s.reason}</li>
          ))}
        </ol>
      )}
    </section>
  );
}

function toSettings(e: Endpoint): Settings {
  return {
    min_replicas: String(e.min_replicas), max_replicas: String(e.max_replicas),
    target_in_flight: String(e.target_in_flight), scale_in_cooldown: String(e.scale_in_cooldown),
    scale_to_zero_after: String(e.scale_to_zero_after), max_batch_size: String(e.max_batch_size),
    max_wait_ms: String(e.max_wait_ms), capture_percent: String(e.capture_percent),
  };
}

function SettingsPanel({ endpoint: e, onDone }: { endpoint: Endpoint; onDone: () => void }) {
  const [editing, setEditing] = useState<Settings>();
  const save = useAction((body: unknown) => patch<Endpoint>(apiPath(e.name), body));
  const errors = editing ? checkSettings(editing) : {};
  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    if (!editing || Object.keys(errors).length) return;
    if (await save.run(settingsBody(editing))) { setEditing(undefined); onDone(); }
  };
  return (
    <section className="panel" aria-labelledby="ep-settings-title">
      <div className="row">
        <h2 id="ep-settings-title">Settings</h2>
        <span className="spacer" />
        {!editing && <button type="button" onClick={() => { save.clear(); setEditing(toSettings(e)); }}>Edit settings</button>}
      </div>
      {editing ? (
        <form aria-label="Edit settings" noValidate onSubmit={submit}>
          <SettingsFields prefix="ep-edit" settings={editing} onChange={setEditing} errors={errors} advanced={false} />
          <ErrorBox error={save.error} onClose={save.clear} />
          <div className="row">
            <button type="submit" className="primary" disabled={save.busy}>{save.busy ? "Saving…" : "Save settings"}</button>
            <button type="button" onClick={() => setEditing(undefined)}>Cancel</button>
          </div>
        </form>
      ) : (
        <dl className="props">
          <dt>Address</dt><dd className="mono">{e.url}/invocations</dd>
          <dt>Runs on</dt><dd>{e.cluster ? `Ray cluster ${e.cluster} (Ray Serve)` : "this machine"}</dd>
          <dt>Autoscaling</dt>
          <dd>{e.min_replicas}–{e.max_replicas} replicas at {number(e.target_in_flight)} in flight each; scale in
            after {seconds(e.scale_in_cooldown)}{e.min_replicas === 0 ? `, to zero after ${seconds(e.scale_to_zero_after)} idle` : ""}</dd>
          <dt>Batching</dt><dd>up to {e.max_batch_size} rows, waiting at most {number(e.max_wait_ms)} ms</dd>
          <dt>Largest body</dt><dd>{bytes(e.max_body)}</dd>
          <dt>Access</dt><dd>{e.public ? "public: anyone who reaches its address may invoke it" : "a token is needed, on its own address too"}</dd>
          <dt>Data capture</dt>
          <dd>{e.capture_percent ? <>{number(e.capture_percent)}% of requests to{" "}
            <Link to={`/tables/${(e.capture_table ?? "").split(".").map(encodeURIComponent).join("/")}`}>{e.capture_table}</Link></> : "off"}</dd>
          <dt>Created</dt><dd>{when(e.created_at)}</dd>
          <dt>Updated</dt><dd>{when(e.updated_at)}</dd>
        </dl>
      )}
    </section>
  );
}
