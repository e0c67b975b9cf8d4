import { useState } from "react";
import { Link } from "react-router-dom";
import { get, post } from "../../api";
import { ErrorBox, Loading } from "../../components/ErrorBox";
import { Grid } from "../../components/Grid";
import { useAction, useApi } from "../../hooks";
import { sqlLink, TableInfo, tablePath } from "./types";

type Row = Record<string, unknown>;
const LIMITS = [20, 100, 500];

/** The first rows of a table, at a version: a managed table's are read directly (no query is
 *  recorded); an external table's come from a SQL query the user asks for. */
export function Sample({ info, database, table, version, onVersion }: {
  info: TableInfo; database: string; table: string; version: number | null;
  onVersion: (version: number | null) => void;
}) {
  if (info.kind !== "managed") return <ExternalSample info={info} database={database} table={table} />;
  return <ManagedSample info={info} database={database} table={table} version={version} onVersion={onVersion} />;
}

function ManagedSample({ info, database, table, version, onVersion }: {
  info: TableInfo; database: string; table: string; version: number | null;
  onVersion: (version: number | null) => void;
}) {
  const [limit, setLimit] = useState(100);
  // The rows with the version they were read at, so a caption never names another one.
  const rows = useApi(async (signal) => ({
    version,
    rows: await get<Row[]>(`${tablePath(database, table)}/data`, { format: "json", limit, version }, signal),
  }), [database, table, version, limit, info.version]);
  const latest = info.version ?? 0;
  const versions = Array.from({ length: Math.min(latest + 1, 500) }, (_, i) => latest - i);
  const shown = rows.data?.rows;
  const columns = shown?.length ? Object.keys(shown[0]) : info.columns.map((c) => c.name);
  const at = rows.data ? rows.data.version ?? latest : latest;
  return (
    <div className="stack">
      <div className="row sample-tools">
        <label htmlFor="sample-version">Version</label>
        <select id="sample-version" value={version === null ? "" : String(version)}
                onChange={(e) => onVersion(e.target.value === "" ? null : Number(e.target.value))}>
          <option value="">latest (v{latest})</option>
          {versions.map((v) => <option key={v} value={v}>v{v}</option>)}
        </select>
        <label htmlFor="sample-limit">Rows</label>
        <select id="sample-limit" value={limit} onChange={(e) => setLimit(Number(e.target.value))}>
          {LIMITS.map((n) => <option key={n} value={n}>{n}</option>)}
        </select>
        <span className="spacer" />
        <Link to={sqlLink(database, table)}>Query in SQL</Link>
      </div>
      <ErrorBox error={rows.error} />
      {rows.loading && !rows.data && <Loading what="Reading rows" />}
      {shown && (
        <div className={rows.loading ? "stale" : undefined} aria-busy={rows.loading}>
          <Grid columns={columns} rows={shown}
                caption={`First ${shown.length} row${shown.length === 1 ? "" : "s"} of ${database}.${table} at version ${at}`}
                empty="The table holds no rows at this version" />
        </div>
      )}
    </div>
  );
}

interface SqlResult {
  state: string;
  error: string | null;
  columns: { name: string; type: string }[];
  page: Row[];
}

function ExternalSample({ info, database, table }: { info: TableInfo; database: string; table: string }) {
  const [result, setResult] = useState<SqlResult>();
  const sql = `SELECT * FROM ${database}.${table} LIMIT 100`;
  const preview = useAction(async () => {
    const answer = await post<SqlResult>("/sql", { sql, page_size: 100 });
    if (answer.state !== "succeeded") throw new Error(answer.error ?? `the query ${answer.state}`);
    setResult(answer);
  });
  return (
    <div className="stack">
      <p>
        An external table over the {info.format} files at <code>{info.location}</code>: it has no versions.
        A preview runs <code>{sql}</code>, recorded in the SQL history like any query.
      </p>
      <div className="row">
        <button type="button" className="primary" onClick={() => void preview.run()} disabled={preview.busy}>
          {preview.busy ? "Running…" : result ? "Preview again" : "Preview 100 rows"}
        </button>
        <Link to={sqlLink(database, table)}>Query in SQL</Link>
      </div>
      <ErrorBox error={preview.error} />
      {result && <Grid columns={result.columns.map((c) => c.name)} rows={result.page}
                       caption={`First ${result.page.length} rows of ${database}.${table}`} />}
    </div>
  );
}
