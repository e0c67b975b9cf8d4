import { useState } from "react";
import { get, post } from "../../api";
import { Chart } from "../../components/Chart";
import { Empty, ErrorBox, Loading } from "../../components/ErrorBox";
import { Grid } from "../../components/Grid";
import { number, when } from "../../format";
import { useAction, useApi } from "../../hooks";
import { Confirm } from "../../components/Dialogs";
import { Diff, TableInfo, tablePath, Version, WriteOut } from "./types";

const CHARTED = 30; // the newest versions whose row counts are asked for, one request each

/** Run `work` on each item, `width` at a time. */
async function pool<T>(items: T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(Array.from({ length: Math.min(width, queue.length) }, async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await work(item);
  }));
}

function operation(v: Version): string {
  const mode = v.parameters?.mode;
  return `${v.operation ?? "—"}${typeof mode === "string" ? ` (${mode.toLowerCase()})` : ""}`;
}

/** A managed table's versions: what each did, rows over versions, restore, compare. */
export function History({ info, database, table, onChanged, onView }: {
  info: TableInfo; database: string; table: string;
  onChanged: (notice: string) => void; onView: (version: number) => void;
}) {
  const path = tablePath(database, table);
  const history = useApi((signal) => get<Version[]>(`${path}/history`, { limit: 500 }, signal),
                         [path, info.version]);
  // The table's row count at each version: its own facts at that version (exact, whatever
  // the operation was), rather than a sum of rows added and removed.
  const rows = useApi(async (signal) => {
    const out: Record<number, number | null> = {};
    if (!history.data) return undefined;
    const wanted = (history.data ?? []).slice(0, CHARTED).map((v) => v.version);
    await pool(wanted, 4, async (version) => {
      try {
        out[version] = (await get<TableInfo>(path, { version }, signal)).rows;
      } catch (exc) {
        if ((exc as Error).name === "AbortError") throw exc;
        out[version] = null; // e.g. a version whose files vacuum removed
      }
    });
    return out;
  }, [history.data]);
  const [restoring, setRestoring] = useState<number>();

  if (history.error) return <ErrorBox error={history.error} />;
  if (!history.data) return <Loading what="Loading the history" />;
  const versions = history.data;
  if (versions.length === 0) return <Empty>No versions yet: load data into the table.</Empty>;
  const current = info.version ?? versions[0].version;
  const points = [...versions].reverse()
    .filter((v) => typeof rows.data?.[v.version] === "number")
    .map((v) => ({ x: `v${v.version}`, y: rows.data![v.version] as number }));

  return (
    <div className="stack history">
      <section className="panel" aria-label="Rows over versions">
        {!rows.data ? <Loading what="Counting rows" /> : (
          <Chart title="Rows at each version" series={[{ name: "rows", points }]} kind="line"
                 xLabel="version" yLabel="rows" height={200} />
        )}
        {versions.length > CHARTED && <p className="muted hint">The newest {CHARTED} versions.</p>}
      </section>
      <div className="grid-wrap">
        <table className="grid">
          <caption>{versions.length} version{versions.length === 1 ? "" : "s"}, newest first</caption>
          <thead>
            <tr>
              <th scope="col" className="num">Version</th><th scope="col">Time</th><th scope="col">Operation</th>
              <th scope="col" className="num">Rows added</th><th scope="col" className="num">Removed</th>
              <th scope="col" className="num">Updated</th><th scope="col" className="num">Rows</th>
              <th scope="col">User</th><th scope="col"><span className="sr-only">Actions</span></th>
            </tr>
          </thead>
          <tbody>
            {versions.map((v) => (
              <tr key={v.version}>
                <td className="num">v{v.version}{v.version === current ? <span className="kind kind-current">current</span> : null}</td>
                <td>{when(v.timestamp)}</td>
                <td title={JSON.stringify(v.parameters)}>{operation(v)}</td>
                <td className="num">{number(v.rows_added)}</td>
                <td className="num">{number(v.rows_removed)}</td>
                <td className="num">{number(v.rows_updated)}</td>
                <td className="num">{rows.data && v.version in rows.data ? number(rows.data[v.version]) : ""}</td>
                <td>{v.user ?? "—"}</td>
                <td className="actions-cell">
                  <button type="button" className="link" onClick={() => onView(v.version)}
                          aria-label={`View rows at version ${v.version}`}>Rows</button>
                  {v.version !== current && (
                    <button type="button" className="link" onClick={() => setRestoring(v.version)}
                            aria-label={`Restore version ${v.version}`}>Restore</button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <Compare key={current} path={path} versions={versions.map((v) => v.version)} current={current} />
      {restoring !== undefined && (
        <Confirm title={`Restore ${database}.${table} to version ${restoring}?`} confirm="Restore" danger={false}
                 onClose={() => setRestoring(undefined)}
                 run={() => post<WriteOut>(`${path}/restore`, { version: restoring })}
                 onDone={(out) => onChanged(`Restored ${out.table} to version ${restoring}: it is now version ${out.version}`)}>
          <p>A new version is made equal to version {restoring}. Nothing is lost: the history keeps
            every version, and you can restore the current one (v{current}) later.</p>
        </Confirm>
      )}
    </div>
  );
}

function Compare({ path, versions, current }: { path: string; versions: number[]; current: number }) {
  const older = versions.find((v) => v < current);
  const [from, setFrom] = useState(older ?? current);
  const [to, setTo] = useState(current);
  const [keys, setKeys] = useState("");
  const [diff, setDiff] = useState<Diff>();
  const compare = useAction(async () => {
    const query = new URLSearchParams({ from: String(from), to: String(to) });
    for (const key of keys.split(",").map((k) => k.trim()).filter(Boolean)) query.append("keys", key);
    setDiff(await get<Diff>(`${path}/diff?${query}`));
  });
  if (versions.length < 2) return null;
  const schemaChanges = diff ? diff.schema.added.length + diff.schema.removed.length + diff.schema.changed.length : 0;
  return (
    <section className="panel compare" aria-label="Compare versions">
      <h2>Compare versions</h2>
      <form className="row" onSubmit={(e) => { e.preventDefault(); void compare.run(); }}>
        <label htmlFor="diff-from">From</label>
        <select id="diff-from" value={from} onChange={(e) => setFrom(Number(e.target.value))}>
          {versions.map((v) => <option key={v} value={v}>v{v}</option>)}
        </select>
        <label htmlFor="diff-to">to</label>
        <select id="diff-to" value={to} onChange={(e) => setTo(Number(e.target.value))}>
          {versions.map((v) => <option key={v} value={v}>v{v}</option>)}
        </select>
        <label htmlFor="diff-keys">Key columns</label>
        <input id="diff-keys" value={keys} onChange={(e) => setKeys(e.target.value)} placeholder="e.g. id (optional)" />
        <button type="submit" disabled={compare.busy}>{compare.busy ? "Comparing…" : "Compare"}</button>
      </form>
      <ErrorBox error={compare.error} />
      {diff && (
        <div className="stack diff" aria-live="polite">
          <p>
            From v{diff.from} to v{diff.to}: <strong>{number(diff.rows_added)}</strong> rows added,
            {" "}<strong>{number(diff.rows_removed)}</strong> removed
            {diff.rows_changed !== null && <>, <strong>{number(diff.rows_changed)}</strong> changed</>}
            {diff.keys.length === 0 && <span className="muted"> (whole rows compared; give key columns to see changed rows)</span>}.
            {" "}{schemaChanges === 0 ? "The schema is the same." : ""}
          </p>
          {schemaChanges > 0 && (
            <ul className="schema-changes">
              {diff.schema.added.map((c) => <li key={`a${c}`}>column <code>{c}</code> added</li>)}
              {diff.schema.removed.map((c) => <li key={`r${c}`}>column <code>{c}</code> removed</li>)}
              {diff.schema.changed.map((c) => <li key={`c${c.column}`}>column <code>{c.column}</code>: {c.from} → {c.to}</li>)}
            </ul>
          )}
          {(["added", "removed", "changed"] as const).map((label) => {
            const sample = diff[`sample_${label}`];
            return sample.length ? <Grid key={label} rows={sample} caption={`Rows ${label} (a sample)`} /> : null;
          })}
        </div>
      )}
    </section>
  );
}

