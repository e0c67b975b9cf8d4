// Recent queries, newest first: a click reopens one (its text, and its results while kept).

import { useState } from "react";
import { get } from "../../api";
import { Empty, ErrorBox, Loading, State } from "../../components/ErrorBox";
import { bytes, dollars, number, seconds, when } from "../../format";
import { useApi } from "../../hooks";
import type { QueryOut } from "./types";

export function History({ refresh, current, onOpen }: {
  refresh: number;
  current?: string;
  onOpen: (query: QueryOut) => void;
}) {
  const [limit, setLimit] = useState(50);
  const history = useApi((signal) => get<QueryOut[]>("/sql/queries", { limit }, signal), [limit, refresh], 5000);
  const queries = history.data ?? [];

  if (history.error) return <ErrorBox error={history.error} />;
  if (history.loading && !history.data) return <Loading what="Loading the history" />;
  if (queries.length === 0) {
    return (
      <Empty>No queries yet. Write one above and run it, or from a terminal:{" "}
        <code>cumulo sql "select 1"</code></Empty>
    );
  }
  return (
    <section aria-label="Query history">
      <div className="grid-wrap sql-history">
        <table className="grid">
          <thead>
            <tr>
              <th scope="col">Query</th><th scope="col">State</th><th scope="col">Started</th>
              <th scope="col" className="num">Run time</th><th scope="col" className="num">Rows</th>
              <th scope="col" className="num">Data scanned</th><th scope="col" className="num">Cost</th>
              <th scope="col">By</th>
            </tr>
          </thead>
          <tbody>
            {queries.map((q) => (
              <tr key={q.id} aria-current={q.id === current ? "true" : undefined}>
                <td className="sql-history-text">
                  <button className="link mono" onClick={() => onOpen(q)} title={q.sql}
                          aria-label={`Open query ${q.sql.replace(/\s+/g, " ")}`}>
                    {q.sql.replace(/\s+/g, " ")}
                  </button>
                  {q.error && <div className="sql-history-error" title={q.error}>{q.error.split("\n")[0]}</div>}
                </td>
                <td><State state={q.state} /></td>
                <td>{when(q.created_at)}</td>
                <td className="num">{q.duration_ms === null ? "—" : seconds(q.duration_ms / 1000)}</td>
                <td className="num">{number(q.rows)}</td>
                <td className="num">{bytes(q.bytes_scanned)}</td>
                <td className="num">{dollars(q.cost_usd)}</td>
                <td>{q.created_by ?? "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {queries.length >= limit && limit < 1000 && (
        <button className="sql-more" onClick={() => setLimit(Math.min(1000, limit + 50))}>Show older queries</button>
      )}
    </section>
  );
}
