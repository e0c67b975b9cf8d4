import { useState } from "react";
import { Link, useLocation, useNavigate, useSearchParams } from "react-router-dom";
import { del, get, patch } from "../../api";
import { ErrorBox, Loading, PageHeader } from "../../components/ErrorBox";
import { bytes, number, when } from "../../format";
import { useAction, useApi, useCan } from "../../hooks";
import { Confirm, Notice } from "../../components/Dialogs";
import { History } from "./History";
import { Sample } from "./Sample";
import { loadLink, sqlLink, TableInfo, tableLink, tablePath, WriteOut } from "./types";

const TABS = [["schema", "Schema"], ["sample", "Sample"], ["history", "History"]] as const;
type Tab = (typeof TABS)[number][0];

/** One table: its schema, a sample of its rows at a version, its history. */
export function TablePage({ database, table }: { database: string; table: string }) {
  const navigate = useNavigate();
  const location = useLocation();
  const [params, setParams] = useSearchParams();
  const info = useApi((signal) => get<TableInfo>(tablePath(database, table), undefined, signal), [database, table]);
  const [dropping, setDropping] = useState(false);
  const [mayDrop] = useCan([["tables:Drop", `table/${database}/${table}`]]);
  const loaded = (location.state as { loaded?: WriteOut; file?: string } | null)?.loaded;
  const loadedFrom = (location.state as { file?: string } | null)?.file;
  const [notice, setNotice] = useState<string | undefined>(loaded
    ? `Loaded ${number(loaded.rows_added ?? 0)} row${loaded.rows_added === 1 ? "" : "s"} from ${loadedFrom ?? "the file"} into ${loaded.table}: version ${loaded.version}`
    : undefined);

  const data = info.data;
  const managed = data?.kind === "managed";
  const tabs = TABS.filter(([id]) => id !== "history" || managed);
  const asked = params.get("tab") as Tab | null;
  const tab: Tab = tabs.some(([id]) => id === asked) ? asked! : "schema";
  const choose = (id: Tab, extra: Record<string, string> = {}) =>
    setParams({ ...(id === "schema" ? {} : { tab: id }), ...extra }, { replace: true });
  const version = params.get("version");

  const moveTab = (event: React.KeyboardEvent, index: number) => {
    const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
    if (!step) return;
    const next = tabs[(index + step + tabs.length) % tabs.length][0];
    choose(next);
    document.getElementById(`tab-${next}`)?.focus();
  };

  return (
    <>
      <nav className="breadcrumbs" aria-label="Breadcrumbs">
        <Link to="/tables">Tables</Link><span aria-hidden> / </span>
        <Link to={tableLink(database)}>{database}</Link><span aria-hidden> / </span>
        <span aria-current="page">{table}</span>
      </nav>
      <PageHeader title={`${database}.${table}`}>
        <button type="button" onClick={info.reload} disabled={info.loading}>Refresh</button>
        {managed && <Link className="button" to={loadLink(database, table)}>Load data</Link>}
        <Link className="button primary" to={sqlLink(database, table)}>Query in SQL</Link>
        {data && mayDrop && <button type="button" className="danger" onClick={() => setDropping(true)}>Drop table</button>}
      </PageHeader>
      <Notice onClose={() => setNotice(undefined)}>{notice}</Notice>
      <ErrorBox error={info.error} />
      {info.loading && !data && <Loading what="Loading the table" />}
      {data && (
        <>
          <div className="cards" aria-label="Summary">
            <Card label="Kind" value={data.kind} sub={data.kind === "external" ? `${data.format} files in storage` : "Delta table"} />
            <Card label="Version" value={data.version === null ? "—" : `v${data.version}`} sub={when(data.updated_at ?? data.created_at)} />
            <Card label="Rows" value={number(data.rows)} sub={data.columns.length + " columns"} />
            <Card label="Size" value={bytes(data.bytes)} sub={data.files === null ? undefined : `${number(data.files)} file${data.files === 1 ? "" : "s"}`} />
          </div>
          <div className="tabs" role="tablist" aria-label="Table views">
            {tabs.map(([id, label], index) => (
              <button key={id} id={`tab-${id}`} type="button" role="tab" aria-selected={tab === id}
                      aria-controls={`panel-${id}`} tabIndex={tab === id ? 0 : -1}
                      onClick={() => choose(id)} onKeyDown={(e) => moveTab(e, index)}>{label}</button>
            ))}
          </div>
          <div role="tabpanel" id={`panel-${tab}`} aria-labelledby={`tab-${tab}`}>
            {tab === "schema" && <Schema info={data} database={database} table={table} onSaved={info.reload} />}
            {tab === "sample" && (
              <Sample info={data} database={database} table={table}
                      version={version === null ? null : Number(version)}
                      onVersion={(v) => choose("sample", v === null ? {} : { version: String(v) })} />
            )}
            {tab === "history" && managed && (
              <History info={data} database={database} table={table}
                       onChanged={(text) => { setNotice(text); info.reload(); }}
                       onView={(v) => choose("sample", { version: String(v) })} />
            )}
          </div>
        </>
      )}
      {dropping && (
        <Confirm title={`Drop table ${database}.${table}?`} confirm="Drop table" onClose={() => setDropping(false)}
                 run={() => del(tablePath(database, table))}
                 onDone={() => navigate(tableLink(database))}>
          {managed
            ? <p>The table and its data, every version of it, are deleted for good.</p>
            : <p>The table leaves the catalog; its files stay in storage at <code>{data?.location}</code>.</p>}
        </Confirm>
      )}
    </>
  );
}

function Card({ label, value, sub }: { label: string; value: string; sub?: string }) {
  return (
    <div className="card">
      <div className="label">{label}</div>
      <div className="value">{value}</div>
      {sub && <div className="sub">{sub}</div>}
    </div>
  );
}

function Schema({ info, database, table, onSaved }: {
  info: TableInfo; database: string; table: string; onSaved: () => void;
}) {
  const [editing, setEditing] = useState(false);
  const tags = Object.entries(info.tags ?? {});
  const partitions = new Set(info.partition_columns);
  return (
    <div className="schema">
      <div className="grid-wrap">
        <table className="grid">
          <caption>{info.columns.length} column{info.columns.length === 1 ? "" : "s"}</caption>
          <thead>
            <tr><th scope="col" className="num">#</th><th scope="col">Column</th><th scope="col">Type</th>
              <th scope="col">Nullable</th><th scope="col">Partition key</th></tr>
          </thead>
          <tbody>
            {info.columns.map((c, i) => (
              <tr key={c.name}>
                <td className="num muted">{i + 1}</td>
                <td className="mono">{c.name}</td>
                <td className="mono">{c.type}</td>
                <td>{c.nullable ? "yes" : "no"}</td>
                <td>{partitions.has(c.name) ? <span className="kind kind-partition">partition</span> : ""}</td>
              </tr>
            ))}
            {info.columns.length === 0 && <tr><td colSpan={5} className="muted">No columns yet: load data into the table.</td></tr>}
          </tbody>
        </table>
      </div>
      <section className="panel table-props" aria-label="Properties">
        <div className="row">
          <h2>Properties</h2>
          <span className="spacer" />
          {!editing && <button type="button" onClick={() => setEditing(true)}>Edit description and tags</button>}
        </div>
        {editing
          ? <EditProps info={info} database={database} table={table} onDone={(saved) => { setEditing(false); if (saved) onSaved(); }} />
          : (
            <dl className="props">
              <dt>Description</dt><dd>{info.description || <span className="muted">—</span>}</dd>
              <dt>Tags</dt>
              <dd>{tags.length ? tags.map(([k, v]) => <span key={k} className="tag">{k}={String(v)}</span>) : <span className="muted">—</span>}</dd>
              <dt>Kind</dt><dd>{info.kind}</dd>
              <dt>Format</dt><dd>{info.format}</dd>
              <dt>Partitioned by</dt><dd>{info.partition_columns.length ? info.partition_columns.join(", ") : <span className="muted">not partitioned</span>}</dd>
              <dt>Location</dt><dd className="mono">{info.location}</dd>
              <dt>Created</dt><dd>{when(info.created_at)}</dd>
              <dt>Updated</dt><dd>{when(info.updated_at)}</dd>
              <dt>CLI</dt><dd className="mono">cumulo tables show {info.name}</dd>
            </dl>
          )}
      </section>
    </div>
  );
}

function EditProps({ info, database, table, onDone }: {
  info: TableInfo; database: string; table: string; onDone: (saved: boolean) => void;
}) {
  const [description, setDescription] = useState(info.description);
  const [tags, setTags] = useState(Object.entries(info.tags ?? {}).map(([k, v]) => `${k}=${String(v)}`).join("\n"));
  const save = useAction(async () => {
    const parsed: Record<string, string> = {};
    for (const line of tags.split("\n").map((l) => l.trim()).filter(Boolean)) {
      const eq = line.indexOf("=");
      if (eq <= 0) throw new Error(`Tag “${line}” is not KEY=VALUE`);
      parsed[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
    }
    await patch(tablePath(database, table), { description, tags: parsed });
    onDone(true);
  });
  return (
    <form className="stack edit-props" onSubmit={(e) => { e.preventDefault(); void save.run(); }}>
      <label htmlFor="table-description">Description</label>
      <textarea id="table-description" rows={2} value={description} onChange={(e) => setDescription(e.target.value)} />
      <label htmlFor="table-tags">Tags <span className="muted">(one KEY=VALUE a line)</span></label>
      <textarea id="table-tags" rows={3} value={tags} onChange={(e) => setTags(e.target.value)} className="mono" />
      <ErrorBox error={save.error} />
      <div className="row">
        <button type="submit" className="primary" disabled={save.busy}>{save.busy ? "Saving…" : "Save"}</button>
        <button type="button" onClick={() => onDone(false)}>Cancel</button>
      </div>
    </form>
  );
}
