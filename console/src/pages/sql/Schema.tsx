// The catalog as the SQL page sees it (databases, tables, columns fetched as needed), and the
// sidebar that browses it: a click puts a table's or a column's name into the query.

import { useCallback, useMemo, useRef, useState } from "react";
import { get } from "../../api";
import { Empty, ErrorBox, Loading } from "../../components/ErrorBox";
import { useApi } from "../../hooks";
import { ident } from "./complete";
import type { Catalog, Column } from "./complete";

interface DatabaseOut {
  name: string;
  tables: number;
}

interface TableSummary {
  name: string; // db.table
  kind: string;
  format: string;
}

interface TableInfo {
  columns: { name: string; type: string }[];
}

type ColumnState = Column[] | "loading" | Error;

export interface CatalogState extends Catalog {
  want: (tables: string[]) => void;
  version: number;
  list: DatabaseOut[];
  kinds: Map<string, string>;
  state: (table: string) => ColumnState | undefined;
  loading: boolean;
  error: unknown;
  reload: () => void;
}

export function useCatalog(): CatalogState {
  const loaded = useApi(async (signal) => {
    const [databases, tables] = await Promise.all([
      get<DatabaseOut[]>("/tables/databases", undefined, signal),
      get<TableSummary[]>("/tables", undefined, signal),
    ]);
    return { databases, tables };
  }, []);
  const columns = useRef(new Map<string, ColumnState>());
  const [version, setVersion] = useState(0);

  const want = useCallback((names: string[]) => {
    for (const name of names) {
      if (columns.current.has(name)) continue;
      columns.current.set(name, "loading");
      const [db, table] = name.split(".");
      get<TableInfo>(`/tables/${encodeURIComponent(db)}/${encodeURIComponent(table)}`).then(
        (info) => columns.current.set(name, info.columns.map((c) => ({ name: c.name, type: c.type }))),
        (exc) => columns.current.set(name, exc instanceof Error ? exc : new Error(String(exc))),
      ).finally(() => setVersion((v) => v + 1));
    }
  }, []);

  const { reload: reloadList } = loaded;
  const reload = useCallback(() => {
    columns.current.clear();
    setVersion((v) => v + 1);
    reloadList();
  }, [reloadList]);

  const data = loaded.data;
  return useMemo(() => {
    const tables = (data?.tables ?? []).map((t) => t.name);
    return {
      databases: (data?.databases ?? []).map((d) => d.name),
      tables,
      list: data?.databases ?? [],
      kinds: new Map((data?.tables ?? []).map((t) => [t.name, `${t.kind} · ${t.format}`])),
      columns: (table: string) => {
        const found = columns.current.get(table.toLowerCase());
        return Array.isArray(found) ? found : undefined;
      },
      state: (table: string) => columns.current.get(table),
      want, version, reload,
      loading: loaded.loading && !data,
      error: loaded.error,
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [data, version, loaded.loading, loaded.error, want, reload]);
}

export function SchemaBrowser({ catalog, onInsert, onPreview }: {
  catalog: CatalogState;
  onInsert: (text: string) => void;
  onPreview: (table: string) => void;
}) {
  const [filter, setFilter] = useState("");
  const [openTables, setOpenTables] = useState<Set<string>>(new Set());
  const [closedDbs, setClosedDbs] = useState<Set<string>>(new Set());
  const toggle = (set: Set<string>, key: string) => {
    const next = new Set(set);
    if (next.has(key)) next.delete(key); else next.add(key);
    return next;
  };
  const needle = filter.trim().toLowerCase();

  const body = () => {
    if (catalog.loading) return <Loading what="Loading tables" />;
    if (catalog.error) return <ErrorBox error={catalog.error} />;
    if (catalog.list.length === 0) {
      return (
        <Empty>No tables yet. Load a file into one:<br />
          <code>cumulo tables load sales.orders orders.csv</code></Empty>
      );
    }
    const shown = catalog.list.map((db) => ({
      db: db.name,
      tables: catalog.tables.filter((t) => t.startsWith(db.name + ".")
                                     && (!needle || t.toLowerCase().includes(needle))),
    })).filter((d) => !needle || d.tables.length > 0 || d.db.toLowerCase().includes(needle));
    if (shown.length === 0) return <p className="muted">No table matches “{filter}”.</p>;
    return (
      <ul className="sql-tree">
        {shown.map(({ db, tables }) => {
          const open = !closedDbs.has(db) || !!needle;
          return (
            <li key={db}>
              <button className="tree-db" aria-expanded={open} onClick={() => setClosedDbs(toggle(closedDbs, db))}>
                <span className="caret" aria-hidden="true">{open ? "▾" : "▸"}</span>{db}
              </button>
              {open && (
                <ul>
                  {tables.length === 0 && <li className="muted tree-none">no tables</li>}
                  {tables.map((table) => (
                    <TableNode key={table} table={table} catalog={catalog} open={openTables.has(table)}
                               onToggle={() => {
                                 if (!openTables.has(table)) catalog.want([table.toLowerCase()]);
                                 setOpenTables(toggle(openTables, table));
                               }}
                               onInsert={onInsert} onPreview={onPreview} />
                  ))}
                </ul>
              )}
            </li>
          );
        })}
      </ul>
    );
  };

  return (
    <section className="panel sql-schema" aria-labelledby="sql-schema-title">
      <div className="row sql-schema-head">
        <h2 id="sql-schema-title">Tables</h2>
        <span className="spacer" />
        <button className="link" onClick={catalog.reload} aria-label="Reload the tables" title="Reload">↻</button>
      </div>
      <input type="search" value={filter} onChange={(e) => setFilter(e.target.value)}
             placeholder="Filter tables" aria-label="Filter tables" className="sql-filter" />
      {body()}
    </section>
  );
}

function TableNode({ table, catalog, open, onToggle, onInsert, onPreview }: {
  table: string;
  catalog: CatalogState;
  open: boolean;
  onToggle: () => void;
  onInsert: (text: string) => void;
  onPreview: (table: string) => void;
}) {
  const short = table.slice(table.indexOf(".") + 1);
  const state = catalog.state(table.toLowerCase());
  return (
    <li>
      <div className="tree-table">
        <button className="tree-toggle" aria-expanded={open} aria-label={`Columns of ${table}`} onClick={onToggle}>
          {open ? "▾" : "▸"}
        </button>
        <button className="tree-name" title={`Insert ${table} (${catalog.kinds.get(table) ?? "table"})`}
                onClick={() => onInsert(table)}>{short}</button>
        <button className="link tree-preview" aria-label={`Preview ${table}`} title="Preview: the first 100 rows"
                onClick={() => onPreview(table)}>▶</button>
      </div>
      {open && (
        <ul className="tree-columns">
          {state === "loading" || state === undefined ? <li><Loading what="Loading columns" /></li>
            : state instanceof Error ? <li><ErrorBox error={state} /></li>
              : state.map((c) => (
                <li key={c.name}>
                  <button className="tree-name" title={`Insert ${c.name}`} onClick={() => onInsert(ident(c.name))}>
                    {c.name}
                  </button>
                  <span className="tree-type">{c.type}</span>
                </li>
              ))}
        </ul>
      )}
    </li>
  );
}
