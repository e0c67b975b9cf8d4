import { useState } from "react";
import { Link, useNavigate } from "react-router-dom";
import { del, get, post } from "../../api";
import { Empty, ErrorBox, Loading, PageHeader } from "../../components/ErrorBox";
import { number, when } from "../../format";
import { useAction, useApi, useCan } from "../../hooks";
import { Confirm, Notice } from "../../components/Dialogs";
import { Database, loadLink, splitName, tableLink, TableSummary } from "./types";

/** Databases and their tables; `database` narrows the list to one. */
export function Catalog({ database }: { database?: string }) {
  const navigate = useNavigate();
  const databases = useApi((signal) => get<Database[]>("/tables/databases", undefined, signal), []);
  const listing = useApi(async (signal) => ({
    database, tables: await get<TableSummary[]>("/tables", { database }, signal),
  }), [database]);
  // This database's tables only, not the last one's while they load.
  const tables = { ...listing, data: listing.data && listing.data.database === database ? listing.data.tables : undefined };
  const [filter, setFilter] = useState("");
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [dropping, setDropping] = useState(false);
  const [mayDrop, mayCreate] = useCan([["tables:DropDatabase", `database/${database ?? "*"}`],
                                       ["tables:CreateDatabase", "database/*"]]);
  const [notice, setNotice] = useState<string>();
  const create = useAction(async () => {
    const made = await post<Database>("/tables/databases", { name: name.trim(), description: description.trim() });
    setName("");
    setDescription("");
    databases.reload();
    navigate(tableLink(made.name));
  });

  const current = databases.data?.find((d) => d.name === database);
  const needle = filter.trim().toLowerCase();
  const shown = (tables.data ?? []).filter((t) => !needle || t.name.toLowerCase().includes(needle)
    || t.description.toLowerCase().includes(needle));
  const reload = () => { databases.reload(); tables.reload(); };

  return (
    <>
      {database && (
        <nav className="breadcrumbs" aria-label="Breadcrumbs">
          <Link to="/tables">Tables</Link><span aria-hidden> / </span><span aria-current="page">{database}</span>
        </nav>
      )}
      <PageHeader title={database ?? "Tables"}>
        <button type="button" onClick={reload} disabled={tables.loading}>Refresh</button>
        <Link className="button" to="/tables/-/crawl">Run crawler</Link>
        <Link className="button primary" to={loadLink(database)}>Load data</Link>
      </PageHeader>
      {!database && <p className="muted lead">Databases of versioned Delta tables, queried with SQL: the Glue catalog and Athena, on Cumulo.</p>}
      <Notice onClose={() => setNotice(undefined)}>{notice}</Notice>
      <div className="catalog">
        <section className="panel databases" aria-label="Databases">
          <h2>Databases</h2>
          <ErrorBox error={databases.error} />
          {databases.loading && !databases.data && <Loading />}
          {databases.data && (
            <ul className="db-list">
              <li><Link to="/tables" aria-current={database ? undefined : "page"}>All databases</Link></li>
              {databases.data.map((d) => (
                <li key={d.name}>
                  <Link to={tableLink(d.name)} aria-current={d.name === database ? "page" : undefined}>
                    <span>{d.name}</span><span className="count muted">{d.tables}</span>
                  </Link>
                </li>
              ))}
            </ul>
          )}
          {databases.data?.length === 0 && <p className="muted">No databases yet.</p>}
          {mayCreate && <form className="stack new-db" aria-label="Create a database"
                onSubmit={(event) => { event.preventDefault(); void create.run(); }}>
            <h3>New database</h3>
            <label htmlFor="db-name">Database name</label>
            <input id="db-name" value={name} onChange={(e) => setName(e.target.value)} required
                   pattern="[a-z_][a-z0-9_]{0,62}" title="a-z, 0-9 and _, starting with a letter or _"
                   placeholder="e.g. sales" autoComplete="off" spellCheck={false} />
            <label htmlFor="db-description">Description</label>
            <input id="db-description" placeholder="optional" value={description} onChange={(e) => setDescription(e.target.value)} />
            <ErrorBox error={create.error} onClose={create.clear} />
            <button type="submit" className="primary" disabled={create.busy || !name.trim()}>
              {create.busy ? "Creating…" : "Create database"}
            </button>
          </form>}
        </section>

        <section className="panel" aria-label={database ? `Tables in ${database}` : "All tables"}>
          {current && (
            <div className="db-summary">
              <dl className="props">
                <dt>Description</dt><dd>{current.description || <span className="muted">—</span>}</dd>
                <dt>Created</dt><dd>{when(current.created_at)}{current.created_by ? ` by ${current.created_by}` : ""}</dd>
                <dt>Tables</dt><dd>{number(current.tables)}</dd>
              </dl>
              {mayDrop && <button type="button" className="danger" onClick={() => setDropping(true)}>Drop database</button>}
            </div>
          )}
          <div className="row">
            <h2>{database ? `Tables in ${database}` : "All tables"}</h2>
            <span className="spacer" />
            <label htmlFor="table-filter" className="sr-only">Filter tables</label>
            <input id="table-filter" type="search" placeholder="Filter tables" value={filter}
                   onChange={(e) => setFilter(e.target.value)} />
          </div>
          <ErrorBox error={tables.error} />
          {tables.loading && !tables.data && <Loading what="Loading tables" />}
          {tables.data && tables.data.length === 0 && (
            <Empty>
              No tables {database ? `in ${database} ` : ""}yet. <Link to={loadLink(database)}>Load a file</Link>,
              {" "}<Link to="/tables/-/crawl">run the crawler</Link> over files in storage, or from the CLI:
              {" "}<code>cumulo tables load {database ?? "sales"}.orders ./orders.csv</code>
            </Empty>
          )}
          {tables.data && tables.data.length > 0 && (
            <div className="grid-wrap">
              <table className="grid">
                <caption>{shown.length} of {tables.data.length} table{tables.data.length === 1 ? "" : "s"}</caption>
                <thead>
                  <tr>
                    <th scope="col">Name</th><th scope="col">Kind</th><th scope="col">Format</th>
                    <th scope="col">Description</th><th scope="col">Updated</th>
                  </tr>
                </thead>
                <tbody>
                  {shown.map((t) => {
                    const [db, table] = splitName(t.name);
                    return (
                      <tr key={t.name}>
                        <td><Link to={tableLink(db, table)}>{database ? table : t.name}</Link></td>
                        <td><span className={`kind kind-${t.kind}`}>{t.kind}</span></td>
                        <td>{t.format}</td>
                        <td title={t.description}>{t.description || <span className="muted">—</span>}</td>
                        <td>{when(t.updated_at ?? t.created_at)}</td>
                      </tr>
                    );
                  })}
                  {shown.length === 0 && <tr><td colSpan={5} className="muted">No table matches “{filter}”</td></tr>}
                </tbody>
              </table>
            </div>
          )}
        </section>
      </div>
      {dropping && database && (
        <Confirm title={`Drop database ${database}?`} confirm="Drop database" onClose={() => setDropping(false)}
                 run={() => del(`/tables/databases/${encodeURIComponent(database)}`)}
                 onDone={() => { setNotice(`Dropped database ${database}`); databases.reload(); navigate("/tables"); }}>
          <p>Only an empty database can be dropped here; drop its tables first
            (or from the CLI: <code>cumulo tables drop-db {database} --cascade</code>).</p>
        </Confirm>
      )}
    </>
  );
}
