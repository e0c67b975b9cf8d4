import { useId, useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { ApiError, del, get, post, upload } from "../../api";
import { ErrorBox, PageHeader } from "../../components/ErrorBox";
import { bytes } from "../../format";
import { useAction, useApi } from "../../hooks";
import { Progress } from "../../components/Dialogs";
import {
  Database, Format, FORMATS, formatOf, splitName, tableLink, tablePath, TableSummary, WriteOut,
} from "./types";

const NAME = /^[a-z_][a-z0-9_]{0,62}$/;
const FORMAT_LABELS: Record<Format, string> = {
  csv: "CSV", parquet: "Parquet", json: "JSON (an array of objects)", jsonl: "JSON Lines",
};
type Mode = "append" | "overwrite" | "merge";

/** A name the lake accepts, made from a file's name: "Orders 2026.csv" → "orders_2026". */
function tableNameOf(file: string): string {
  const stem = file.replace(/\.[^.]*$/, "").replace(/\.(csv|tsv|json|jsonl|ndjson|parquet)$/i, "");
  const name = stem.toLowerCase().replace(/[^a-z0-9_]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 63);
  return /^[a-z_]/.test(name) ? name : `t_${name}`.slice(0, 63);
}

/** Load a local file into a new or existing managed table, with upload progress. */
export function Load() {
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const ids = useId();
  const databases = useApi((signal) => get<Database[]>("/tables/databases", undefined, signal), []);
  const [file, setFile] = useState<File>();
  const [format, setFormat] = useState<Format | "">("");
  const [database, setDatabase] = useState(params.get("database") ?? "");
  const [table, setTable] = useState(params.get("table") ?? "");
  const [mode, setMode] = useState<Mode>("append");
  const [keys, setKeys] = useState("");
  const [partitionBy, setPartitionBy] = useState("");
  const [evolve, setEvolve] = useState(false);
  const [progress, setProgress] = useState<number>();
  const db = database.trim();
  const tables = useApi((signal) => NAME.test(db)
    ? get<TableSummary[]>("/tables", { database: db }, signal).catch(() => [] as TableSummary[])
    : Promise.resolve([] as TableSummary[]), [db]);

  const detected = file ? formatOf(file.name) : undefined;
  const chosen = format || detected;
  const dbExists = databases.data?.some((d) => d.name === db);
  const existing = tables.data?.find((t) => splitName(t.name)[1] === table.trim());

  const load = useAction(async () => {
    if (!file) throw new Error("Choose a file to load");
    if (!chosen) throw new Error(`Cannot tell the format of ${file.name} from its name: choose one`);
    const name = table.trim();
    let made = false;
    if (!dbExists) {
      made = await post("/tables/databases", { name: db }).then(() => true, (exc) => {
        if (!(exc instanceof ApiError && exc.status === 409)) throw exc;
        return false; // made meanwhile: fine, and not ours to remove
      });
    }
    const query = new URLSearchParams({ format: chosen, mode, filename: file.name });
    if (evolve) query.set("evolve", "true");
    for (const key of keys.split(",").map((k) => k.trim()).filter(Boolean)) query.append("keys", key);
    for (const col of partitionBy.split(",").map((c) => c.trim()).filter(Boolean)) query.append("partition_by", col);
    setProgress(0);
    try {
      const out = await upload(`${tablePath(db, name)}/data?${query}`, file, setProgress) as WriteOut;
      navigate(tableLink(db, name), { state: { loaded: out, file: file.name } });
    } catch (exc) {
      // A database made for this load goes again when the load fails: nothing half-made stays.
      if (made) await del(`/tables/databases/${encodeURIComponent(db)}`).catch(() => undefined);
      throw exc;
    } finally {
      setProgress(undefined);
    }
  });

  const pick = (picked: File | undefined) => {
    setFile(picked);
    setFormat("");
    if (picked && !table.trim()) setTable(tableNameOf(picked.name));
  };

  return (
    <>
      <nav className="breadcrumbs" aria-label="Breadcrumbs">
        <Link to="/tables">Tables</Link><span aria-hidden> / </span><span aria-current="page">Load data</span>
      </nav>
      <PageHeader title="Load data" />
      <p className="muted lead">
        A CSV, Parquet, JSON or JSON Lines file from this computer into a managed table: a new
        table, or a new version of an existing one. Every load is one commit: it lands whole or not at all.
      </p>
      <form className="panel load-form" aria-label="Load a file into a table"
            onSubmit={(e) => { e.preventDefault(); void load.run(); }}>
        <fieldset disabled={load.busy}>
          <div className="field">
            <label htmlFor={`${ids}file`}>File</label>
            <input id={`${ids}file`} type="file" required accept=".csv,.tsv,.parquet,.pq,.json,.jsonl,.ndjson,.gz"
                   onChange={(e) => pick(e.target.files?.[0])} />
            {file && <span className="muted hint">{bytes(file.size)}{detected ? `, ${FORMAT_LABELS[detected]} by its name` : ""}</span>}
          </div>
          <div className="field">
            <label htmlFor={`${ids}format`}>Format</label>
            <select id={`${ids}format`} value={format} onChange={(e) => setFormat(e.target.value as Format | "")}
                    aria-invalid={file && !chosen ? true : undefined}>
              <option value="">{detected ? `By the file's name (${FORMAT_LABELS[detected]})` : "By the file's name"}</option>
              {FORMATS.map((f) => <option key={f} value={f}>{FORMAT_LABELS[f]}</option>)}
            </select>
          </div>
          <div className="field">
            <label htmlFor={`${ids}db`}>Database</label>
            <input id={`${ids}db`} list={`${ids}dbs`} value={database} required autoComplete="off" spellCheck={false}
                   pattern="[a-z_][a-z0-9_]{0,62}" title="a-z, 0-9 and _, starting with a letter or _"
                   onChange={(e) => setDatabase(e.target.value)} placeholder="e.g. sales" />
            <datalist id={`${ids}dbs`}>{databases.data?.map((d) => <option key={d.name} value={d.name} />)}</datalist>
            {db && databases.data && (
              <span className="muted hint">{dbExists ? "existing database" : NAME.test(db) ? "a new database: created with the table" : ""}</span>
            )}
          </div>
          <div className="field">
            <label htmlFor={`${ids}table`}>Table</label>
            <input id={`${ids}table`} list={`${ids}tables`} value={table} required autoComplete="off" spellCheck={false}
                   pattern="[a-z_][a-z0-9_]{0,62}" title="a-z, 0-9 and _, starting with a letter or _"
                   onChange={(e) => setTable(e.target.value)} placeholder="e.g. orders" />
            <datalist id={`${ids}tables`}>
              {tables.data?.filter((t) => t.kind === "managed").map((t) => <option key={t.name} value={splitName(t.name)[1]} />)}
            </datalist>
            {table.trim() && tables.data && (
              <span className="muted hint">
                {existing ? (existing.kind === "managed" ? "existing table: a new version" : "an external table: loads go to managed tables only") : "a new table"}
              </span>
            )}
          </div>
          <fieldset className="modes">
            <legend>{existing ? "Into the existing table" : "If the table exists"}</legend>
            {([["append", "Append the rows"], ["overwrite", "Overwrite: replace every row"],
               ["merge", "Merge: update rows by key, add the rest"]] as [Mode, string][]).map(([value, label]) => (
              <label key={value} className="choice">
                <input type="radio" name="mode" value={value} checked={mode === value} onChange={() => setMode(value)} />
                {label}
              </label>
            ))}
            {mode === "merge" && (
              <div className="field">
                <label htmlFor={`${ids}keys`}>Key columns</label>
                <input id={`${ids}keys`} value={keys} required onChange={(e) => setKeys(e.target.value)} placeholder="e.g. id" />
              </div>
            )}
            <label className="choice">
              <input type="checkbox" checked={evolve} onChange={(e) => setEvolve(e.target.checked)} />
              Add columns the table does not have yet (evolve the schema)
            </label>
          </fieldset>
          {!existing && (
            <div className="field">
              <label htmlFor={`${ids}parts`}>Partition by</label>
              <input id={`${ids}parts`} value={partitionBy} onChange={(e) => setPartitionBy(e.target.value)}
                     placeholder="e.g. region, day" aria-describedby={`${ids}parts-hint`} />
              <span id={`${ids}parts-hint`} className="muted hint">optional, for a new table: columns whose values name folders</span>
            </div>
          )}
          <div className="row">
            <button type="submit" className="primary">{load.busy ? "Loading…" : "Load"}</button>
            <Link to={db && NAME.test(db) ? tableLink(db) : "/tables"}>Cancel</Link>
          </div>
        </fieldset>
        {progress !== undefined && file && (
          <div className="load-progress" aria-live="polite">
            <Progress fraction={progress} label={`Upload of ${file.name}`} />
            <span className="muted">
              {progress < 1 ? `Uploading ${file.name}: ${Math.round(progress * 100)}% of ${bytes(file.size)}`
                : "Uploaded; writing the table…"}
            </span>
          </div>
        )}
        <ErrorBox error={load.error} onClose={load.clear} />
        <p className="muted hint">
          From the CLI: <code>cumulo tables load {db || "sales"}.{table.trim() || "orders"} ./{file?.name ?? "orders.csv"}{mode !== "append" ? ` --mode ${mode}` : ""}</code>
        </p>
      </form>
    </>
  );
}
