// A query's outcome: what it cost, its rows a server-side page at a time (or as a chart), and
// downloads of every row as CSV or Parquet.

import { useEffect, useMemo, useState } from "react";
import { Link } from "react-router-dom";
import { get, url } from "../../api";
import { Chart, ChartKind, Series } from "../../components/Chart";
import { Empty, ErrorBox, Loading, State } from "../../components/ErrorBox";
import { Grid } from "../../components/Grid";
import { bytes, cell, dollars, number, seconds } from "../../format";
import { useApi } from "../../hooks";
import type { Column } from "./complete";
import { columnsOf, FirstPage, numericColumns, QueryOut, ResultsPage, Row, Written } from "./types";

export const PAGE_SIZES = [50, 100, 500, 1000];
const CHART_MAX = 2000;

const resultsPath = (id: string) => `/sql/queries/${encodeURIComponent(id)}/results`;

export function Stats({ query }: { query: QueryOut }) {
  return (
    <dl className="sql-stats">
      <div><dt>State</dt><dd><State state={query.state} /></dd></div>
      <div><dt>Rows</dt><dd>{number(query.rows)}</dd></div>
      <div><dt>Data scanned</dt><dd>{bytes(query.bytes_scanned)}</dd></div>
      <div><dt>Run time</dt><dd>{query.duration_ms === null ? "—" : seconds(query.duration_ms / 1000)}</dd></div>
      <div title="What Athena would charge for this scan: $5 per TB, 10 MB minimum">
        <dt>Cost</dt><dd>{dollars(query.cost_usd)}</dd>
      </div>
    </dl>
  );
}

export function Results({ query, first, written, pageSize, onPageSize }: {
  query: QueryOut;
  first?: FirstPage;
  written?: Written | null;
  pageSize: number;
  onPageSize: (size: number) => void;
}) {
  const [view, setView] = useState<"table" | "chart">("table");
  const total = query.rows ?? 0;
  const [offset, setOffset] = useState(0);
  // The first page came with the answer when the query was just run; any other is fetched.
  const page = useApi<ResultsPage | FirstPage>(
    (signal) => first && offset === 0 && first.rows.length >= Math.min(pageSize, total)
      ? Promise.resolve({ ...first, rows: first.rows.slice(0, pageSize) })
      : get<ResultsPage>(resultsPath(query.id), { offset, limit: pageSize }, signal),
    [query.id, offset, pageSize],
  );
  const rows = page.data?.rows ?? [];
  const [columns, setColumns] = useState<Column[]>(first?.columns ?? []);
  useEffect(() => {
    if (columns.length === 0 && rows.length) setColumns(columnsOf(rows));
  }, [columns.length, rows]);

  if (written) {
    return (
      <section aria-label="Results" className="sql-results">
        <Stats query={query} />
        <p className="sql-written" role="status">
          Wrote {number(written.rows_added ?? query.rows ?? 0)} rows to{" "}
          <Link to={`/tables/${written.table.replace(".", "/")}`}>{written.table}</Link>
          {written.version !== null && written.version !== undefined && <> (version {written.version})</>}.
        </p>
      </section>
    );
  }

  const download = (format: string) => url(resultsPath(query.id), { format });
  const last = Math.min(offset + rows.length, total);
  return (
    <section aria-label="Results" className="sql-results">
      <div className="sql-result-head">
        <Stats query={query} />
        <span className="spacer" />
        <div className="row">
          <div className="sql-toggle" role="group" aria-label="Show the results as">
            <button aria-pressed={view === "table"} onClick={() => setView("table")}>Table</button>
            <button aria-pressed={view === "chart"} onClick={() => setView("chart")}>Chart</button>
          </div>
          <a className="button" href={download("csv")} download>Download CSV</a>
          <a className="button" href={download("parquet")} download>Download Parquet</a>
        </div>
      </div>
      {page.error ? <ErrorBox error={page.error} /> : view === "chart" ? (
        <ChartView query={query} columns={columns} firstRows={offset === 0 ? rows : []} />
      ) : (
        <>
          <div aria-busy={page.loading} className={page.loading && page.data ? "sql-stale" : undefined}>
            {page.loading && !page.data ? <Loading what="Loading rows" />
              : <Grid columns={columns.map((c) => c.name)} rows={rows} empty="The query returned no rows" />}
          </div>
          <div className="row sql-pager">
            <span aria-live="polite">
              {total === 0 ? "No rows" : `Rows ${number(offset + 1)}–${number(last)} of ${number(total)}`}
            </span>
            <span className="spacer" />
            <label className="row">Rows per page
              <select value={pageSize} onChange={(e) => { setOffset(0); onPageSize(Number(e.target.value)); }}>
                {PAGE_SIZES.map((n) => <option key={n} value={n}>{n}</option>)}
              </select>
            </label>
            <button onClick={() => setOffset(Math.max(0, offset - pageSize))} disabled={offset === 0 || page.loading}
                    aria-label="Previous page">‹ Previous</button>
            <button onClick={() => setOffset(offset + pageSize)} disabled={last >= total || page.loading}
                    aria-label="Next page">Next ›</button>
          </div>
        </>
      )}
    </section>
  );
}

function ChartView({ query, columns, firstRows }: { query: QueryOut; columns: Column[]; firstRows: Row[] }) {
  const total = query.rows ?? 0;
  const have = firstRows.length >= Math.min(total, CHART_MAX);
  const loaded = useApi<Row[]>(
    (signal) => have ? Promise.resolve(firstRows.slice(0, CHART_MAX))
      : get<ResultsPage>(resultsPath(query.id), { offset: 0, limit: CHART_MAX }, signal).then((p) => p.rows),
    [query.id, have],
  );
  const rows = loaded.data ?? [];
  const numeric = useMemo(() => numericColumns(columns, rows), [columns, rows]);
  const names = columns.map((c) => c.name);
  const [x, setX] = useState<string>();
  const [ys, setYs] = useState<string[]>();
  const [kind, setKind] = useState<ChartKind>();

  const xName = x ?? names.find((n) => !numeric.has(n)) ?? names[0];
  const yNames = (ys ?? [names.find((n) => numeric.has(n) && n !== xName)].filter((n): n is string => !!n))
    .filter((n) => numeric.has(n));
  const xNumeric = numeric.has(xName);
  const chartKind = kind ?? (xNumeric ? "line" : "bar");

  if (loaded.error) return <ErrorBox error={loaded.error} />;
  if (loaded.loading && !loaded.data) return <Loading what="Loading rows to chart" />;
  if (total === 0) return <Empty>The query returned no rows to chart.</Empty>;
  if (numeric.size === 0) {
    return (
      <Empty>No numeric column to chart: the y axis needs numbers, e.g.{" "}
        <code>SELECT city, count(*) AS n FROM db.t GROUP BY city</code></Empty>
    );
  }

  const series: Series[] = yNames.map((y) => ({
    name: y,
    points: rows.filter((r) => typeof r[y] === "number")
      .map((r) => ({ x: xNumeric && typeof r[xName] === "number" ? r[xName] as number : cell(r[xName]), y: r[y] as number })),
  }));
  const repeats = new Set(rows.map((r) => cell(r[xName]))).size < rows.length;
  const toggleY = (name: string, on: boolean) => {
    const next = on ? [...yNames, name] : yNames.filter((n) => n !== name);
    setYs(names.filter((n) => next.includes(n)));
  };

  return (
    <div className="sql-chart">
      <div className="sql-chart-controls">
        <label>Chart type
          <select value={chartKind} onChange={(e) => setKind(e.target.value as ChartKind)}>
            <option value="bar">Bar</option>
            <option value="line">Line</option>
            <option value="scatter">Scatter</option>
          </select>
        </label>
        <label>X axis
          <select value={xName} onChange={(e) => setX(e.target.value)}>
            {names.map((n) => <option key={n} value={n}>{n}</option>)}
          </select>
        </label>
        <fieldset>
          <legend>Y axis</legend>
          {names.filter((n) => numeric.has(n)).map((n) => (
            <label key={n} className="check">
              <input type="checkbox" checked={yNames.includes(n)} onChange={(e) => toggleY(n, e.target.checked)} />
              {n}
            </label>
          ))}
        </fieldset>
      </div>
      {yNames.length === 0 ? <Empty>Choose one or more columns for the y axis.</Empty> : (
        <Chart series={series} kind={chartKind} height={320} xLabel={xName}
               yLabel={yNames.length === 1 ? yNames[0] : undefined}
               title={`${yNames.join(", ")} by ${xName}`} />
      )}
      {repeats && (
        <p className="muted">Some x values repeat: group the rows (<code>GROUP BY {xName}</code>) for one point per value.</p>
      )}
      {total > rows.length && (
        <p className="muted">Charting the first {number(rows.length)} of {number(total)} rows.</p>
      )}
    </div>
  );
}
