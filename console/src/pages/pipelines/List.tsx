// /pipelines: the stored pipelines, each with its last run, and the recent runs of all.
import { Link } from "react-router-dom";
import { get } from "../../api";
import { Empty, ErrorBox, Loading, PageHeader, State } from "../../components/ErrorBox";
import { seconds, when } from "../../format";
import { useApi } from "../../hooks";
import type { PipelineRow, RunOut } from "./model";

export default function PipelineList() {
  const pipelines = useApi((signal) => get<PipelineRow[]>("/pipelines", undefined, signal), []);
  const runs = useApi((signal) => get<RunOut[]>("/pipelines/-/runs", { limit: 100 }, signal), [], 5000);
  const last = new Map<string, RunOut>();
  for (const r of runs.data ?? []) if (!last.has(r.pipeline)) last.set(r.pipeline, r);

  return (
    <>
      <PageHeader title="Pipelines">
        <Link to="/pipelines/new" className="button primary">New pipeline</Link>
      </PageHeader>
      <ErrorBox error={pipelines.error} />
      {!pipelines.data && !pipelines.error && <Loading />}
      {pipelines.data?.length === 0 && (
        <Empty>
          No pipelines yet. Draw one with <Link to="/pipelines/new">New pipeline</Link>, or store one written in
          Python: <code>cumulo pipelines create examples/churn/pipeline.py</code>
        </Empty>
      )}
      {!!pipelines.data?.length && (
        <div className="grid-wrap">
          <table className="grid">
            <caption>{pipelines.data.length === 1 ? "1 pipeline" : `${pipelines.data.length} pipelines`}</caption>
            <thead>
              <tr><th scope="col">Name</th><th scope="col">Version</th><th scope="col" className="num">Steps</th>
                <th scope="col">Updated</th><th scope="col">Last run</th><th scope="col">Owner</th>
                <th scope="col">Description</th></tr>
            </thead>
            <tbody>
              {pipelines.data.map((p) => {
                const r = last.get(p.name);
                return (
                  <tr key={p.name}>
                    <td><Link to={`/pipelines/${p.name}`}>{p.name}</Link></td>
                    <td>{p.latest_version}</td>
                    <td className="num">{p.nodes}</td>
                    <td>{when(p.updated_at)}</td>
                    <td>{r ? <Link to={`/pipelines/${p.name}/runs/${r.id}`} aria-label={`last run of ${p.name}: ${r.state}`}>
                      <State state={r.state} /></Link> : <span className="muted">—</span>}</td>
                    <td>{p.created_by ?? "—"}</td>
                    <td title={p.description}>{p.description}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      <h2>Recent runs</h2>
      <ErrorBox error={runs.error} />
      {!runs.data && !runs.error && <Loading />}
      {runs.data?.length === 0 && <Empty>No runs yet: open a pipeline and press Run, or <code>cumulo pipelines run NAME</code>.</Empty>}
      {!!runs.data?.length && (
        <div className="grid-wrap">
          <table className="grid">
            <caption>Newest first</caption>
            <thead>
              <tr><th scope="col">Run</th><th scope="col">Pipeline</th><th scope="col">Version</th>
                <th scope="col">State</th><th scope="col">Trigger</th><th scope="col">Started</th>
                <th scope="col" className="num">Duration</th><th scope="col">By</th></tr>
            </thead>
            <tbody>
              {runs.data.slice(0, 25).map((r) => (
                <tr key={r.id}>
                  <td><Link className="mono" to={`/pipelines/${r.pipeline}/runs/${r.id}`}>{r.id}</Link></td>
                  <td>{r.pipeline}</td>
                  <td>{r.version}</td>
                  <td><State state={r.state} /></td>
                  <td>{r.trigger}</td>
                  <td>{when(r.started_at ?? r.created_at)}</td>
                  <td className="num">{seconds(r.duration_s)}</td>
                  <td>{r.created_by ?? "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
