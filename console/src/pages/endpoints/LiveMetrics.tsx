// Live metrics: the endpoint's figures asked every 2 s, kept in memory as a rolling window, drawn
// per variant: requests a second, errors, and latency percentiles.
import { useEffect, useState } from "react";
import { get } from "../../api";
import { Chart, Series } from "../../components/Chart";
import { number } from "../../format";
import { apiPath, Metrics } from "./shared";

export const EVERY_MS = 2000;
export const WINDOW_S = 10; // each sample sums the last 10 s: steady lines, quick to follow
const KEEP = 150; // samples: 5 minutes

export interface Sample {
  t: number;
  m: Metrics;
}

/** The endpoint's metrics every EVERY_MS while the page is visible, the latest KEEP kept. */
export function useLiveMetrics(name: string) {
  const [samples, setSamples] = useState<Sample[]>([]);
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    setSamples([]);
    const controller = new AbortController();
    let timer = 0;
    const tick = async () => {
      if (document.visibilityState === "visible") {
        try {
          const m = await get<Metrics>(apiPath(name, "/metrics"), { window: WINDOW_S }, controller.signal);
          setSamples((old) => [...old.slice(-(KEEP - 1)), { t: Date.now(), m }]);
          setError(undefined);
        } catch (exc) {
          if ((exc as Error)?.name === "AbortError") return;
          setError(exc);
        }
      }
      if (!controller.signal.aborted) timer = window.setTimeout(tick, EVERY_MS);
    };
    tick();
    return () => { controller.abort(); window.clearTimeout(timer); };
  }, [name]);
  return { samples, latest: samples.at(-1)?.m, error };
}

/** The three charts; `variants` are the endpoint's own (drawn at 0 while they serve nothing). */
export function LiveCharts({ samples, variants }: { samples: Sample[]; variants: string[] }) {
  const names = [...new Set([...variants, ...samples.flatMap((s) => Object.keys(s.m.variants))])];
  const requests: Series[] = names.map((name) => ({
    name,
    points: samples.map((s) => ({ x: s.t, y: s.m.variants[name]?.requests_per_s ?? 0 })),
  }));
  const errors: Series[] = names.flatMap((name) => (["4xx", "5xx"] as const).map((kind) => ({
    name: `${name} ${kind}`,
    points: samples.map((s) => ({ x: s.t, y: s.m.variants[name]?.[`errors_${kind}`] ?? 0 })),
  })));
  const latency: Series[] = names.flatMap((name) => (["50", "95", "99"] as const).map((q) => ({
    name: `${name} p${q}`,
    points: samples.flatMap((s) => {
      const value = s.m.variants[name]?.[`latency_p${q}_ms`];
      return value === null || value === undefined ? [] : [{ x: s.t, y: value }];
    }),
  })));
  return (
    <div className="ep-charts">
      <Chart title="Requests per second" series={requests} xTime yLabel="requests/s" height={200} />
      <Chart title={`Errors (last ${WINDOW_S} s)`} series={errors} xTime yLabel="requests" height={200} />
      <Chart title="Latency percentiles" series={latency} xTime yLabel="ms" height={200} />
    </div>
  );
}

/** The figures now, over all live (not shadow) variants. */
export function Totals({ latest }: { latest: Metrics | undefined }) {
  const live = Object.values(latest?.variants ?? {}).filter((v) => !v.shadow);
  const rate = live.reduce((sum, v) => sum + v.requests_per_s, 0);
  const requests = live.reduce((sum, v) => sum + v.requests, 0);
  const errors = live.reduce((sum, v) => sum + v.errors_4xx + v.errors_5xx, 0);
  const worst = (key: "latency_p50_ms" | "latency_p99_ms") => {
    const values = live.map((v) => v[key]).filter((x): x is number => x !== null);
    return values.length ? `${number(Math.max(...values), 3)} ms` : "—";
  };
  const dash = (text: string) => (latest ? text : "—");
  return (
    <div className="cards ep-cards" aria-label="Now">
      <div className="card"><div className="label">Requests/s</div>
        <div className="value" aria-label="Requests per second now">{dash(number(rate, 3))}</div>
        <div className="sub">{dash(`${requests} in the last ${WINDOW_S} s`)}</div></div>
      <div className="card"><div className="label">Errors</div>
        <div className="value">{dash(String(errors))}</div>
        <div className="sub">{latest && requests ? `${number((100 * errors) / requests, 3)}% of requests` : `last ${WINDOW_S} s`}</div></div>
      <div className="card"><div className="label">Latency p50 / p99</div>
        <div className="value ep-small-value">{dash(worst("latency_p50_ms"))} / {dash(worst("latency_p99_ms"))}</div>
        <div className="sub">slowest variant</div></div>
      <div className="card"><div className="label">Replicas ready</div>
        <div className="value">{dash(String(latest?.replicas ?? 0))}</div>
        <div className="sub">{dash(`${latest?.in_flight ?? 0} requests in flight`)}</div></div>
    </div>
  );
}
