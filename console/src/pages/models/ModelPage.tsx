// One registered model: its versions with approval, one version's metrics and lineage,
// its aliases (set, remove) and every alias move.
import { useState } from "react";
import { Link, useParams, useSearchParams } from "react-router-dom";
import { ApiError, del, get, put } from "../../api";
import { Empty, ErrorBox, Loading, PageHeader, State } from "../../components/ErrorBox";
import { number, when } from "../../format";
import { useAction, useApi } from "../../hooks";
import { ConfirmButton, Table } from "../jobs/shared";
import { AliasEvent, Model, modelPath, Version } from "./types";

export default function ModelPage() {
  const { name = "" } = useParams();
  const [params, setParams] = useSearchParams();
  const base = modelPath(name);
  const model = useApi((signal) => get<Model>(base, undefined, signal), [name]);
  const versions = useApi((signal) => get<Version[]>(`${base}/versions`, undefined, signal), [name]);
  const history = useApi((signal) => get<AliasEvent[]>(`${base}/aliases/history`, undefined, signal), [name]);
  const reload = () => { model.reload(); versions.reload(); history.reload(); };

  const list = versions.data ?? [];
  const chosen = params.get("version") ?? (list.length ? list[list.length - 1].version : null);
  const choose = (v: string) => setParams({ version: v }, { replace: true });

  const crumbs = <nav className="breadcrumbs" aria-label="Breadcrumbs"><Link to="/models">Models</Link> / {name}</nav>;
  if (!model.data) {
    return <>{crumbs}<ErrorBox error={model.error} />{model.loading && <Loading what="Loading the model" />}</>;
  }
  const m = model.data;
  return (
    <>
      {crumbs}
      <PageHeader title={m.name}>
        <button type="button" onClick={reload}>Refresh</button>
      </PageHeader>
      {m.description && <p className="ops-intro">{m.description}</p>}
      {Object.keys(m.tags).length > 0 && (
        <p>{Object.entries(m.tags).map(([k, v]) => <span key={k} className="ops-chip">{k}={v}</span>)}</p>
      )}

      <div className="columns">
        <section className="panel ops-panel" aria-labelledby="model-aliases">
          <h2 id="model-aliases">Aliases</h2>
          <Aliases model={m} versions={list} onChange={reload} />
        </section>
        <section className="panel ops-panel" aria-labelledby="model-history">
          <h2 id="model-history">Alias history</h2>
          <ErrorBox error={history.error} />
          {history.data && history.data.length === 0 && <Empty>No alias has moved yet.</Empty>}
          {history.data && history.data.length > 0 && (
            <Table label="Alias history" head={["When", "Alias", "Change", "By"]}>
              {[...history.data].reverse().map((e, i) => (
                <tr key={i}>
                  <td>{when(e.at)}</td>
                  <td>{e.alias}</td>
                  <td>{e.version === null ? `removed (was v${e.previous_version})`
                    : e.previous_version ? `v${e.previous_version} → v${e.version}` : `set to v${e.version}`}</td>
                  <td>{e.by ?? "—"}</td>
                </tr>
              ))}
            </Table>
          )}
        </section>
      </div>

      <section className="panel ops-panel" aria-labelledby="model-versions">
        <h2 id="model-versions">Versions</h2>
        <ErrorBox error={versions.error} />
        {!versions.data && versions.loading && <Loading what="Loading versions" />}
        {versions.data && list.length === 0 && <Empty>No versions yet.</Empty>}
        {list.length > 0 && (
          <Table label="Versions" head={["Version", "Approval", "Aliases", "Created", "Status", "Source run", ""]}>
            {[...list].reverse().map((v) => (
              <tr key={v.version} className={v.version === chosen ? "ops-selected" : undefined}
                  aria-current={v.version === chosen ? "true" : undefined}>
                <td className="num">{v.version}</td>
                <td><State state={v.approval} /></td>
                <td>{aliasesOf(m, v.version).map((a) => <span key={a} className="ops-chip">{a}</span>)}</td>
                <td>{when(v.created_at)}</td>
                <td>{v.status === "READY" ? "ready" : v.status ?? "—"}</td>
                <td className="mono ops-small">{v.run_id ? v.run_id.slice(0, 12) : "—"}</td>
                <td>
                  <button type="button" className="link" onClick={() => choose(v.version)}
                          aria-label={`Show version ${v.version}`}>{v.version === chosen ? "Shown below" : "Show"}</button>
                </td>
              </tr>
            ))}
          </Table>
        )}
      </section>

      {chosen && <VersionPanel key={chosen} name={name} version={chosen} onChange={reload} />}
    </>
  );
}

// MLflow's version search leaves out aliases: the model's own list says which version has which.
const aliasesOf = (model: Model, version: string) =>
  Object.entries(model.aliases).filter(([, v]) => v === version).map(([a]) => a).sort();

function Aliases({ model, versions, onChange }: { model: Model; versions: Version[]; onChange: () => void }) {
  const [alias, setAlias] = useState("");
  const [version, setVersion] = useState("");
  const target = version || (versions.length ? versions[versions.length - 1].version : "");
  const setter = useAction(async () => {
    await put(`${modelPath(model.name)}/aliases/${encodeURIComponent(alias.trim())}`, { version: target });
    setAlias("");
    onChange();
    return true;
  });
  const entries = Object.entries(model.aliases).sort();
  return (
    <>
      {entries.length === 0 && <p className="muted">No aliases. An alias (like <code>champion</code>) names the version that
        endpoints and <code>models:/{model.name}@champion</code> load.</p>}
      {entries.length > 0 && (
        <ul className="alias-list">
          {entries.map(([a, v]) => (
            <li key={a} className="row">
              <strong>{a}</strong> <span className="muted">→</span> version {v}
              <span className="spacer" />
              <ConfirmButton label="Remove" title={`Remove alias ${a}?`} confirm="Remove alias" danger
                             className="link danger-link"
                             onConfirm={async () => { await del(`${modelPath(model.name)}/aliases/${encodeURIComponent(a)}`); onChange(); }}>
                <p>Whatever loads <code>models:/{model.name}@{a}</code> will no longer find it. Version {v} stays.</p>
              </ConfirmButton>
            </li>
          ))}
        </ul>
      )}
      <form className="row alias-form" aria-label="Set an alias"
            onSubmit={(e) => { e.preventDefault(); void setter.run(); }}>
        <label>Alias{" "}
          <input value={alias} onChange={(e) => setAlias(e.target.value)} placeholder="champion" size={14} required
                 pattern="[A-Za-z_][A-Za-z0-9_\-]{0,62}" title="letters, digits, _ or -, starting with a letter or _" />
        </label>
        <label>Version{" "}
          <select value={target} onChange={(e) => setVersion(e.target.value)} disabled={!versions.length}>
            {[...versions].reverse().map((v) => <option key={v.version} value={v.version}>{v.version}</option>)}
          </select>
        </label>
        <button type="submit" className="primary" disabled={setter.busy || !alias.trim() || !target}>
          {setter.busy ? "Setting…" : "Set alias"}
        </button>
      </form>
      <ErrorBox error={setter.error} onClose={setter.clear} />
    </>
  );
}

interface Trace {
  produced_by: { run: string; pipeline: string; step: string; component: string; at: string; read: { kind: string; name: string }[] }[];
  used_by: { run: string; pipeline: string; step: string; component: string; at: string }[];
  served_by?: { endpoint: string; variant: string; weight: number; state: string }[];
}

function VersionPanel({ name, version, onChange }: { name: string; version: string; onChange: () => void }) {
  const path = `${modelPath(name)}/versions/${encodeURIComponent(version)}`;
  const v = useApi((signal) => get<Version>(path, undefined, signal), [path]);
  const trace = useApi((signal) => get<Trace>(`/lineage/model/${encodeURIComponent(`${name}:${version}`)}`, undefined, signal)
    .catch((exc) => { if (exc instanceof ApiError && exc.status === 404) return undefined; throw exc; }), [name, version]);
  const approve = async (status: string) => { await put(`${path}/approval`, { status }); v.reload(); onChange(); };

  if (!v.data) return <section className="panel ops-panel"><ErrorBox error={v.error} />{v.loading && <Loading what={`Loading version ${version}`} />}</section>;
  const d = v.data;
  const lineage = d.lineage ?? {};
  const metrics = Object.entries(lineage.metrics ?? {}).sort();
  const hyper = Object.entries(lineage.hyperparameters ?? {}).sort();
  const inputs = Object.entries(lineage.inputs ?? {});
  const tags = Object.entries(d.tags).filter(([k]) => !k.startsWith("mlflow."));
  return (
    <section className="panel ops-panel" aria-labelledby="version-title">
      <div className="row">
        <h2 id="version-title">Version {d.version}</h2>
        <State state={d.approval} />
        {d.aliases.map((a) => <span key={a} className="ops-chip">{a}</span>)}
        <span className="spacer" />
        <Link className="button" to={`/endpoints/new?${new URLSearchParams({ model: name, version: d.version })}`}>
          Deploy to an endpoint</Link>
        {d.approval !== "approved" && (
          <ConfirmButton label="Approve" title={`Approve version ${d.version} of ${name}?`} confirm="Approve" className="primary"
                         onConfirm={() => approve("approved")}>
            <p>Marks the version as fit for production (<code>cumulo.approval = approved</code>). Deployments that ask for approved
              versions may then use it.</p>
          </ConfirmButton>
        )}
        {d.approval !== "rejected" && (
          <ConfirmButton label="Reject" title={`Reject version ${d.version} of ${name}?`} confirm="Reject" danger
                         onConfirm={() => approve("rejected")}>
            <p>Marks the version as not fit for production. It stays in the registry and can be approved later.</p>
          </ConfirmButton>
        )}
        {d.approval !== "pending" && (
          <ConfirmButton label="Reset to pending" title={`Set version ${d.version} back to pending?`} confirm="Set to pending"
                         onConfirm={() => approve("pending")} />
        )}
      </div>
      <ErrorBox error={v.error} />
      <div className="columns">
        <div>
          <h3>Source</h3>
          <dl className="props">
            <dt>Created</dt><dd>{when(d.created_at)}</dd>
            <dt>Status</dt><dd>{d.status ?? "—"}</dd>
            {d.description && <><dt>Description</dt><dd>{d.description}</dd></>}
            <dt>Run</dt><dd className="mono ops-small">{lineage.run_id ?? d.run_id ?? "—"}</dd>
            <dt>Training job</dt><dd>{lineage.job ? <Link to={`/jobs/${lineage.job}`}>{lineage.job}</Link>
              : <span className="muted">none recorded (registered from outside a job)</span>}</dd>
            {lineage.code && <><dt>Code</dt><dd className="mono" title={lineage.code}>{lineage.code.slice(0, 12)}</dd></>}
            {inputs.length > 0 && <><dt>Trained on</dt><dd>{inputs.map(([k, t]) => (
              <div key={k}><span className="mono">{k}</span> = <TableLink spec={t} /></div>))}</dd></>}
            <dt>Artifacts</dt><dd className="mono ops-small">{d.source ?? "—"}</dd>
            {tags.length > 0 && <><dt>Tags</dt><dd>{tags.map(([k, t]) => <span key={k} className="ops-chip">{k}={t}</span>)}</dd></>}
          </dl>
          <h3>Pipelines</h3>
          <ErrorBox error={trace.error} />
          <Pipelines trace={trace.data} loading={trace.loading} />
        </div>
        <div>
          <h3>Metrics</h3>
          {metrics.length === 0 ? <p className="muted">The run logged no metrics.</p> : (
            <Table label="Metrics" head={["Metric", "Value"]}>
              {metrics.map(([k, value]) => <tr key={k}><td>{k}</td><td className="num">{number(value, 6)}</td></tr>)}
            </Table>
          )}
          <h3>Hyperparameters</h3>
          {hyper.length === 0 ? <p className="muted">The run logged no parameters.</p> : (
            <Table label="Hyperparameters" head={["Parameter", "Value"]}>
              {hyper.map(([k, value]) => <tr key={k}><td>{k}</td><td className="mono">{value}</td></tr>)}
            </Table>
          )}
        </div>
      </div>
    </section>
  );
}

function TableLink({ spec }: { spec: string }) {
  const [table, at] = spec.split("@");
  const parts = table.split(".");
  if (parts.length !== 2) return <span className="mono">{spec}</span>;
  return <Link to={`/tables/${parts.map(encodeURIComponent).join("/")}`}>{table}{at ? <span className="muted">@{at}</span> : null}</Link>;
}

function Pipelines({ trace, loading }: { trace: Trace | undefined; loading: boolean }) {
  if (!trace) return loading ? <Loading what="Loading lineage" /> : null;
  const none = !trace.produced_by.length && !trace.used_by.length && !trace.served_by?.length;
  if (none) return <p className="muted">No pipeline made, used or serves this version.</p>;
  return (
    <ul className="lineage-list">
      {trace.produced_by.map((p, i) => (
        <li key={`p${i}`}>Made by step <strong>{p.step}</strong> ({p.component}) of pipeline{" "}
          <Link to={`/pipelines/${encodeURIComponent(p.pipeline)}`}>{p.pipeline}</Link>, {when(p.at)}
          {p.read.length > 0 && <>, from {p.read.map((r) => r.name).join(", ")}</>}</li>
      ))}
      {trace.used_by.map((u, i) => (
        <li key={`u${i}`}>Used by step <strong>{u.step}</strong> of pipeline{" "}
          <Link to={`/pipelines/${encodeURIComponent(u.pipeline)}`}>{u.pipeline}</Link>, {when(u.at)}</li>
      ))}
      {(trace.served_by ?? []).map((s) => (
        <li key={`s${s.endpoint}${s.variant}`}>Served by endpoint{" "}
          <Link to={`/endpoints/${encodeURIComponent(s.endpoint)}`}>{s.endpoint}</Link> (variant {s.variant}, weight {s.weight}){" "}
          <State state={s.state} /></li>
      ))}
    </ul>
  );
}
