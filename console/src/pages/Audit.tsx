// The audit log: every refusal and every change, newest first, filtered by user, action,
// outcome and time, a page at a time; "Verify chain" checks its hashes and its copy in the lake.
import { useState } from "react";
import { useSearchParams } from "react-router-dom";
import { get, post } from "../api";
import { ErrorBox, Loading, PageHeader } from "../components/ErrorBox";
import { number, when } from "../format";
import { useAction, useApi, useCan } from "../hooks";
import { Table } from "./jobs/shared";
import { AuditPage, Verified } from "./access/types";
import "./access/Access.css";

const FILTERS = ["user", "action", "outcome", "since"] as const;
const PAGE = 50;

export default function Audit() {
  const [params, setParams] = useSearchParams();
  const query = Object.fromEntries(FILTERS.map((f) => [f, params.get(f) ?? ""]));
  const before = params.get("before") ?? "";
  const events = useApi((signal) => get<AuditPage>("/audit/events", { ...query, before, limit: PAGE }, signal),
                        [params.toString()]);
  const [verify] = useCan([["audit:Verify", "audit"]]);
  const go = (next: Record<string, string>) => {
    const kept = new URLSearchParams();
    for (const [key, value] of Object.entries(next)) if (value) kept.set(key, value);
    setParams(kept);
  };
  const list = events.data?.events;
  return (
    <div className="iam-page">
      <PageHeader title="Audit log">
        <button type="button" onClick={events.reload} disabled={events.loading}>Refresh</button>
      </PageHeader>
      <p className="muted lead">Every refusal, and every change of users, groups, policies and grants, in a hash
        chain: each entry's hash covers the one before it, so an entry changed or removed later shows.</p>
      {verify && <Verify />}
      <Filters key={params.toString()} initial={query} onApply={(filters) => go(filters)} />
      <ErrorBox error={events.error} />
      {!list && events.loading && <Loading what="Loading the audit log" />}
      {list && (
        <>
          <Table label="Audit entries" head={["#", "When", "User", "Action", "Resource", "Outcome", "From", "Details"]}
                 empty={list.length === 0 ? "No entries match" : undefined}>
            {list.map((e) => (
              <tr key={e.seq}>
                <td className="num">{e.seq}</td>
                <td>{when(e.at)}</td>
                <td>{e.user ?? <span className="muted">—</span>}</td>
                <td><code>{e.action}</code></td>
                <td><code>{e.resource}</code></td>
                <td><span className={`state state-${e.outcome === "allowed" ? "ok" : e.outcome === "denied" ? "bad" : "wait"}`}>
                  {e.outcome}</span></td>
                <td>{e.source ?? "—"}</td>
                <td className="iam-details" title={JSON.stringify(e.details)}>
                  {Object.keys(e.details).length ? JSON.stringify(e.details) : "—"}</td>
              </tr>
            ))}
          </Table>
          <div className="row iam-paging">
            <button type="button" disabled={!before} onClick={() => go(query)}>Newest</button>
            <button type="button" disabled={events.data?.next == null}
                    onClick={() => go({ ...query, before: String(events.data?.next) })}>Older</button>
            <span className="muted">{list.length ? `entries ${number(list[list.length - 1].seq)}–${number(list[0].seq)}` : ""}</span>
          </div>
        </>
      )}
    </div>
  );
}

function Filters({ initial, onApply }: { initial: Record<string, string>; onApply: (f: Record<string, string>) => void }) {
  const [f, setF] = useState(initial);
  const field = (key: string) => ({ value: f[key], onChange: (e: React.ChangeEvent<HTMLInputElement | HTMLSelectElement>) =>
    setF({ ...f, [key]: e.target.value }) });
  return (
    <form className="ops-filters row" aria-label="Filter the audit log"
          onSubmit={(event) => { event.preventDefault(); onApply(Object.fromEntries(Object.entries(f).map(([k, v]) => [k, v.trim()]))); }}>
      <label>User <input {...field("user")} autoComplete="off" spellCheck={false} placeholder="any" /></label>
      <label>Action <input {...field("action")} autoComplete="off" spellCheck={false} placeholder="e.g. tables:*" /></label>
      <label>Outcome{" "}
        <select {...field("outcome")}>
          <option value="">any</option>
          <option value="allowed">allowed</option>
          <option value="denied">denied</option>
          <option value="failed">failed</option>
        </select>
      </label>
      <label>Since <input {...field("since")} autoComplete="off" spellCheck={false} placeholder="1h, 7d or 2026-11-01" /></label>
      <button type="submit">Filter</button>
    </form>
  );
}

function Verify() {
  const run = useAction(() => post<Verified>("/audit/verify"));
  const [report, setReport] = useState<Verified>();
  return (
    <section className="panel" aria-label="Verify the chain">
      <div className="row">
        <button type="button" disabled={run.busy} onClick={async () => setReport(await run.run())}>
          {run.busy ? "Verifying…" : "Verify chain"}</button>
        <span className="muted hint">Recomputes every entry's hash, and compares the log with its copy in the lake
          (<code>audit.events</code>).</span>
      </div>
      <ErrorBox error={run.error} onClose={run.clear} />
      {report && !run.error && (
        <div role="status" aria-label="Verification" className="iam-report">
          <span className={`state state-${report.ok ? "ok" : "bad"}`}>{report.ok ? "intact" : "broken"}</span>{" "}
          {number(report.entries)} entries checked
          {report.lake_entries !== null && `, ${number(report.lake_entries)} compared with audit.events`}.
          {!report.ok && <p><strong>Entry {report.first_bad ?? "?"}</strong>{report.where && ` (${report.where})`}: {report.problem}</p>}
        </div>
      )}
    </section>
  );
}
