// Endpoints: each with its state, variants and their traffic, replicas and live requests a second.
import { Link } from "react-router-dom";
import { get } from "../../api";
import { Empty, ErrorBox, Loading, PageHeader, State } from "../../components/ErrorBox";
import { number } from "../../format";
import { useApi } from "../../hooks";
import { apiPath, Endpoint, Metrics, percent, share } from "./shared";

export default function EndpointList() {
  const endpoints = useApi((signal) => get<Endpoint[]>("/endpoints", undefined, signal), [], 5000);
  const names = (endpoints.data ?? []).map((e) => e.name);
  const metrics = useApi(async (signal) => {
    const rows = await Promise.all(names.map((name) =>
      get<Metrics>(apiPath(name, "/metrics"), { window: 10 }, signal).catch(() => null)));
    return Object.fromEntries(rows.filter((m): m is Metrics => !!m).map((m) => [m.endpoint, m]));
  }, [names.join(",")], 5000);

  return (
    <div className="ep-page">
      <PageHeader title="Endpoints">
        <button type="button" onClick={endpoints.reload}>Refresh</button>
        <Link to="/endpoints/new" className="button primary">Create endpoint</Link>
      </PageHeader>
      <p className="muted ep-intro">Real-time endpoints serve registered models over HTTP: they scale with their
        load, split traffic between model versions, and shift it to a new version safely.</p>
      <ErrorBox error={endpoints.error} />
      {!endpoints.data && endpoints.loading && <Loading what="Loading endpoints" />}
      {endpoints.data && endpoints.data.length === 0 && (
        <Empty>No endpoints yet. <Link to="/endpoints/new">Create one</Link> from a registered model, or from a
          shell: <code>cumulo endpoints create churn --model churn:1 --wait</code></Empty>
      )}
      {endpoints.data && endpoints.data.length > 0 && (
        <div className="grid-wrap" tabIndex={0} role="region" aria-label="Endpoints">
          <table className="grid ep-table">
            <thead>
              <tr>
                <th scope="col">Name</th><th scope="col">State</th><th scope="col">Variants (traffic)</th>
                <th scope="col" className="num">Replicas</th><th scope="col" className="num">Requests/s</th>
                <th scope="col" className="num">p99 latency</th>
              </tr>
            </thead>
            <tbody>
              {endpoints.data.map((e) => {
                const m = metrics.data?.[e.name];
                const live = Object.values(m?.variants ?? {}).filter((v) => !v.shadow);
                const rate = m ? live.reduce((sum, v) => sum + v.requests_per_s, 0) : null;
                const p99s = live.map((v) => v.latency_p99_ms).filter((x): x is number => x !== null);
                const ready = e.replicas.filter((r) => r.ready).length;
                return (
                  <tr key={e.name}>
                    <td><Link to={`/endpoints/${encodeURIComponent(e.name)}`}>{e.name}</Link></td>
                    <td><State state={e.state} /></td>
                    <td className="ep-variants-cell">
                      {e.variants.map((v) => (
                        <span key={v.name} className="ep-chip" title={`${v.model} version ${v.version}`}>
                          {v.name === `${v.model}-${v.version}` ? "" : `${v.name} · `}{v.model}:{v.version} · {v.shadow ? "shadow" : percent(share(v, e.variants))}
                        </span>
                      ))}
                    </td>
                    <td className="num">{ready} <span className="muted">({e.min_replicas}–{e.max_replicas})</span></td>
                    <td className="num">{rate === null ? "—" : number(rate, 3)}</td>
                    <td className="num">{p99s.length ? `${number(Math.max(...p99s), 3)} ms` : "—"}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
