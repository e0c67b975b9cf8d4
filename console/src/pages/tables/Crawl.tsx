import { useState } from "react";
import { Link } from "react-router-dom";
import { get, post } from "../../api";
import { ErrorBox, PageHeader } from "../../components/ErrorBox";
import { Grid } from "../../components/Grid";
import { number } from "../../format";
import { useAction, useApi } from "../../hooks";
import { Bucket } from "../files/paths";
import { CrawlReport, Database, splitName, tableLink } from "./types";

/** The crawler: files under a bucket's prefix become external tables of a database. */
export function Crawl() {
  const buckets = useApi((signal) => get<{ buckets: Bucket[] }>("/files/buckets", undefined, signal), []);
  const databases = useApi((signal) => get<Database[]>("/tables/databases", undefined, signal), []);
  const [bucket, setBucket] = useState("");
  const [prefix, setPrefix] = useState("");
  const [database, setDatabase] = useState("");
  const [policy, setPolicy] = useState<"log" | "update">("log");
  const [report, setReport] = useState<CrawlReport>();
  const chosenBucket = bucket || buckets.data?.buckets[0]?.name || "";
  const path = `${chosenBucket}/${prefix.trim().replace(/^\/+/, "")}`;
  const crawl = useAction(async () => {
    setReport(undefined);
    setReport(await post<CrawlReport>("/tables/crawl", { path, database: database.trim(), policy }));
    databases.reload();
  });

  return (
    <>
      <nav className="breadcrumbs" aria-label="Breadcrumbs">
        <Link to="/tables">Tables</Link><span aria-hidden> / </span><span aria-current="page">Crawler</span>
      </nav>
      <PageHeader title="Run crawler" />
      <p className="muted lead">
        Like a Glue crawler: scan the files under a prefix, infer their schemas, and register them as
        external tables (the files stay where they are). Hive-style folders such as <code>year=2026/</code> become partitions.
      </p>
      <form className="panel load-form" aria-label="Crawl files into tables"
            onSubmit={(e) => { e.preventDefault(); void crawl.run(); }}>
        <fieldset disabled={crawl.busy}>
          <div className="field">
            <label htmlFor="crawl-bucket">Bucket</label>
            <select id="crawl-bucket" value={chosenBucket} onChange={(e) => setBucket(e.target.value)} required>
              {buckets.data?.buckets.map((b) => <option key={b.name} value={b.name}>{b.name}</option>)}
            </select>
            {buckets.data?.buckets.length === 0 && (
              <span className="muted hint">No buckets yet: <Link to="/files">upload files</Link> first.</span>
            )}
          </div>
          <ErrorBox error={buckets.error} />
          <div className="field">
            <label htmlFor="crawl-prefix">Prefix</label>
            <input id="crawl-prefix" value={prefix} onChange={(e) => setPrefix(e.target.value)} aria-describedby="crawl-prefix-hint"
                   placeholder="e.g. raw/" spellCheck={false} autoComplete="off" />
            <span id="crawl-prefix-hint" className="muted hint">a folder; empty for the whole bucket</span>
          </div>
          <div className="field">
            <label htmlFor="crawl-db">Database</label>
            <input id="crawl-db" list="crawl-dbs" aria-describedby="crawl-db-hint" value={database} required onChange={(e) => setDatabase(e.target.value)}
                   pattern="[a-z_][a-z0-9_]{0,62}" title="a-z, 0-9 and _, starting with a letter or _"
                   placeholder="e.g. raw" spellCheck={false} autoComplete="off" />
            <datalist id="crawl-dbs">{databases.data?.map((d) => <option key={d.name} value={d.name} />)}</datalist>
            <span id="crawl-db-hint" className="muted hint">created when it does not exist</span>
          </div>
          <fieldset className="modes">
            <legend>When a table's files changed schema since the last run</legend>
            <label className="choice">
              <input type="radio" name="policy" checked={policy === "log"} onChange={() => setPolicy("log")} />
              Log the change, keep the catalog's schema
            </label>
            <label className="choice">
              <input type="radio" name="policy" checked={policy === "update"} onChange={() => setPolicy("update")} />
              Update the catalog's schema
            </label>
          </fieldset>
          <div className="row">
            <button type="submit" className="primary" disabled={!chosenBucket}>{crawl.busy ? "Crawling…" : "Run crawler"}</button>
            <span className="muted mono">cumulo crawl {path} --db {database.trim() || "DB"}{policy === "update" ? " --policy update" : ""}</span>
          </div>
        </fieldset>
        <ErrorBox error={crawl.error} onClose={crawl.clear} />
      </form>
      {report && <Report report={report} />}
    </>
  );
}

function TableLinks({ names }: { names: string[] }) {
  return (
    <ul className="table-links">
      {names.map((name) => {
        const [db, table] = splitName(name);
        return <li key={name}><Link to={tableLink(db, table)}>{name}</Link></li>;
      })}
    </ul>
  );
}

function Report({ report }: { report: CrawlReport }) {
  const groups: [string, string[]][] = [["Created", report.created], ["Updated", report.updated], ["Unchanged", report.unchanged]];
  return (
    <section className="panel crawl-report" aria-label="Crawler report" aria-live="polite">
      <h2>Crawled {report.path}</h2>
      <p>
        {number(report.files)} file{report.files === 1 ? "" : "s"} scanned into <Link to={tableLink(report.database)}>{report.database}</Link>:
        {" "}{report.created.length} table{report.created.length === 1 ? "" : "s"} created, {report.updated.length} updated,
        {" "}{report.unchanged.length} unchanged{report.skipped.length ? `, ${report.skipped.length} file(s) skipped` : ""}.
      </p>
      <div className="columns">
        {groups.filter(([, names]) => names.length).map(([label, names]) => (
          <div key={label}>
            <h3>{label}</h3>
            <TableLinks names={names} />
          </div>
        ))}
      </div>
      {report.schema_changes.length > 0 && (
        <>
          <h3>Schema changes</h3>
          <Grid rows={report.schema_changes} />
        </>
      )}
      {report.skipped.length > 0 && (
        <>
          <h3>Skipped</h3>
          <Grid rows={report.skipped} />
        </>
      )}
    </section>
  );
}
