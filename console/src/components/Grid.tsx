import { cell } from "../format";

/** Rows as a table; `columns` names them in order (the rows' own keys when left out). */
export function Grid({ columns, rows, caption, empty = "No rows" }: {
  columns?: string[];
  rows: Record<string, unknown>[] | unknown[][];
  caption?: string;
  empty?: string;
}) {
  const names = columns ?? (rows.length && !Array.isArray(rows[0]) ? Object.keys(rows[0] as object) : []);
  return (
    <div className="grid-wrap" tabIndex={0} aria-label={caption ?? "rows"}>
      <table className="grid">
        {caption && <caption>{caption}</caption>}
        <thead>
          <tr>{names.map((name) => <th key={name} scope="col">{name}</th>)}</tr>
        </thead>
        <tbody>
          {rows.length === 0 && (
            <tr><td colSpan={Math.max(1, names.length)} className="muted">{empty}</td></tr>
          )}
          {rows.map((row, i) => (
            <tr key={i}>
              {names.map((name, j) => {
                const value = Array.isArray(row) ? row[j] : (row as Record<string, unknown>)[name];
                const text = cell(value);
                return <td key={name} className={typeof value === "number" ? "num" : undefined}
                           title={text.length > 60 ? text : undefined}>{text}</td>;
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
