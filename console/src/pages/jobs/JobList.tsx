// Jobs: every job, newest first, with filters kept in the address (?state=&cluster=&tag=&q=).
import { Link, useSearchParams } from "react-router-dom";
import { get } from "../../api";
import { Empty, ErrorBox, Loading, PageHeader, State } from "../../components/ErrorBox";
import { dollars, when } from "../../format";
import { useApi } from "../../hooks";
import { duration, isActive, Job, STATES, Table, useNow } from "./shared";

interface Cluster { name: string }

export default function JobList() {
  const [params, setParams] = useSearchParams();
  const state = params.get("state") ?? "";
  const cluster = params.get("cluster") ?? "";
  const tag = params.get("tag") ?? "";
  const text = params.get("q") ?? "";
  const set = (key: string, value: string) => {
    const next = new URLSearchParams(params);
    if (value) next.set(key, value); else next.delete(key);
    setParams(next, { replace: true });
  };

  const clusters = useApi((signal) => get<Cluster[]>("/clusters", undefined, signal), []);
  const jobs = useApi((signal) => get<Job[]>("/jobs", { state, cluster, tag: tag.trim(), limit: 200 }, signal),
                      [state, cluster, tag], 5000);
  const now = useNow(!!jobs.data?.some(isActive));
  const needle = text.trim().toLowerCase();
  const shown = (jobs.data ?? []).filter((job) => !needle || [job.name, job.id, job.created_by ?? "",
    ...job.tags, ...(job.command ?? []), job.entry ?? ""].some((s) => s.toLowerCase().includes(needle)));
  const filtered = !!(state || cluster || tag || text);

  return (
    <>
      <PageHeader title="Jobs">
        <button type="button" onClick={jobs.reload}>Refresh</button>
      </PageHeader>
      <p className="muted ops-intro">Training and processing jobs on your clusters: each runs your code with the
        CPUs, memory and GPUs it asks for, keeps its log, metrics and outputs, and is priced when it ends.</p>
      <form className="ops-filters row" role="search" aria-label="Filter jobs" onSubmit={(e) => e.preventDefault()}>
        <label>State{" "}
          <select value={state} onChange={(e) => set("state", e.target.value)}>
            <option value="">any</option>
            <option value="active">active</option>
            {STATES.map((s) => <option key={s} value={s}>{s.replace("_", " ")}</option>)}
            <option value="failed,timed_out">failed or timed out</option>
          </select>
        </label>
        <label>Cluster{" "}
          <select value={cluster} onChange={(e) => set("cluster", e.target.value)}>
            <option value="">any</option>
            {(clusters.data ?? []).map((c) => <option key={c.name} value={c.name}>{c.name}</option>)}
            {cluster && !clusters.data?.some((c) => c.name === cluster) && <option value={cluster}>{cluster}</option>}
          </select>
        </label>
        <label>Tag{" "}
          <input type="text" value={tag} size={12} placeholder="e.g. train" onChange={(e) => set("tag", e.target.value)} />
        </label>
        <label>Search{" "}
          <input type="search" value={text} size={18} placeholder="name, id, user, command"
                 onChange={(e) => set("q", e.target.value)} />
        </label>
        {filtered && <button type="button" className="link" onClick={() => setParams({}, { replace: true })}>Clear filters</button>}
      </form>
      <ErrorBox error={jobs.error} />
      {!jobs.data && jobs.loading && <Loading what="Loading jobs" />}
      {jobs.data && jobs.data.length === 0 && !filtered && (
        <Empty>No jobs yet. Submit one from a shell:{" "}
          <code>cumulo jobs run --code ./src --entry train.py</code>, or from Python with{" "}
          <code>client.jobs.run(...)</code>.</Empty>
      )}
      {jobs.data && (jobs.data.length > 0 || filtered) && (
        <Table label="Jobs" head={["Name", "State", "Cluster", "Submitted", "Duration", "Cost", "Attempt", "Tags", "By"]}
               empty={shown.length === 0 ? "No jobs match these filters" : undefined}>
          {shown.map((job) => (
            <tr key={job.id}>
              <td>
                <Link to={`/jobs/${job.id}`}>{job.name}</Link>
                <div className="muted mono ops-small">{job.id}</div>
              </td>
              <td><State state={job.state} /></td>
              <td>{job.cluster}</td>
              <td>{when(job.created_at)}</td>
              <td className="num">{duration(job, now)}</td>
              <td className="num">{job.usage.cost_usd ? dollars(job.usage.cost_usd) : "—"}</td>
              <td className="num">{job.attempt}{job.retries ? ` of ${job.retries + 1}` : ""}</td>
              <td>{job.tags.map((t) => <span key={t} className="ops-chip">{t}</span>)}</td>
              <td>{job.created_by ?? "—"}</td>
            </tr>
          ))}
        </Table>
      )}
      {jobs.data && jobs.data.length >= 200 && <p className="muted">Showing the newest 200 jobs; filter to see older ones.</p>}
    </>
  );
}
