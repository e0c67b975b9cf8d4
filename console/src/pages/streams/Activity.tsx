// A stream's activity: its `show` document asked every 2 s and kept as a rolling window, from
// which the page draws throughput (the growth of each shard's records and bytes between two
// answers) and the lag of its consumer groups and deliveries.
import { useCallback, useEffect, useRef, useState } from "react";
import { get } from "../../api";
import { Chart, Series } from "../../components/Chart";
import { Stream, streamPath } from "./types";

export const EVERY_MS = 2000;
const KEEP_S = 300; // five minutes of samples

export interface Sample { t: number; doc: Stream }

/** The stream's document every EVERY_MS while the page is visible; the last KEEP_S seconds of
 *  answers are kept. `reload` asks at once (after a put, say). */
export function useStreamSamples(name: string) {
  const [samples, setSamples] = useState<Sample[]>([]);
  const [error, setError] = useState<unknown>();
  const [loading, setLoading] = useState(true);
  const poke = useRef<() => void>(() => undefined);
  useEffect(() => {
    setSamples([]);
    setError(undefined);
    setLoading(true);
    const controller = new AbortController();
    let timer = 0;
    let asking = false;
    let again = false;  // poked while an answer was awaited: ask once more right after it
    const tick = async () => {
      if (asking) { again = true; return; }
      window.clearTimeout(timer);
      asking = true;
      if (document.visibilityState === "visible") {
        try {
          const doc = await get<Stream>(streamPath(name), undefined, controller.signal);
          const t = Date.now();
          setSamples((old) => [...old.filter((s) => s.t > t - KEEP_S * 1000), { t, doc }]);
          setError(undefined);
        } catch (exc) {
          if ((exc as Error)?.name === "AbortError") return;
          setError(exc);
        } finally {
          if (!controller.signal.aborted) setLoading(false);
        }
      }
      asking = false;
      if (!controller.signal.aborted) timer = window.setTimeout(tick, again ? 0 : EVERY_MS);
      again = false;
    };
    poke.current = () => void tick();
    void tick();
    return () => { controller.abort(); window.clearTimeout(timer); };
  }, [name]);
  const reload = useCallback(() => poke.current(), []);
  return { samples, latest: samples.at(-1)?.doc, error, loading, reload };
}

export interface Rate { t: number; records: number; bytes: number; byShard: Record<string, number> }

/** Records and bytes a second between each two samples. A shard's counts only fall when
 *  retention drops a segment: that is no negative throughput, so each shard counts from 0. */
export function rates(samples: Sample[]): Rate[] {
  const out: Rate[] = [];
  for (let i = 1; i < samples.length; i++) {
    const before = new Map(samples[i - 1].doc.shards.map((s) => [s.shard_id, s]));
    const dt = (samples[i].t - samples[i - 1].t) / 1000;
    if (dt <= 0) continue;
    const rate: Rate = { t: samples[i].t, records: 0, bytes: 0, byShard: {} };
    for (const shard of samples[i].doc.shards) {
      const was = before.get(shard.shard_id);
      const records = Math.max(0, shard.records - (was?.records ?? 0)) / dt;
      rate.records += records;
      rate.bytes += Math.max(0, shard.bytes - (was?.bytes ?? 0)) / dt;
      rate.byShard[shard.shard_id] = records;
    }
    out.push(rate);
  }
  return out;
}

export function ThroughputCharts({ rates: points }: { rates: Rate[] }) {
  const records: Series[] = [{ name: "records/s", points: points.map((r) => ({ x: r.t, y: r.records })) }];
  const bytes: Series[] = [{ name: "bytes/s", points: points.map((r) => ({ x: r.t, y: r.bytes })) }];
  return (
    <div className="st-charts">
      <Chart title="Records per second" series={records} xTime yLabel="records/s" height={200} />
      <Chart title="Bytes per second" series={bytes} xTime yLabel="bytes/s" height={200} />
    </div>
  );
}

/** Whether any sample has a lag figure: a consumer group or a delivery. */
export function hasLag(samples: Sample[]): boolean {
  return samples.some((s) => (s.doc.groups?.length ?? 0) > 0
    || (s.doc.deliveries?.length ?? 0) > 0);
}

/** Records not yet read (checkpointed, delivered), and the age of the oldest of them, per
 *  consumer group and delivery. */
export function LagCharts({ samples }: { samples: Sample[] }) {
  const behind = new Map<string, { x: number; y: number }[]>();
  const age = new Map<string, { x: number; y: number }[]>();
  const add = (into: Map<string, { x: number; y: number }[]>, name: string, x: number, y: unknown) => {
    if (typeof y !== "number" || !Number.isFinite(y)) return;
    if (!into.has(name)) into.set(name, []);
    into.get(name)!.push({ x, y });
  };
  for (const { t, doc } of samples) {
    for (const g of doc.groups ?? []) {
      add(behind, `group ${g.group}`, t, g.behind);
      add(age, `group ${g.group}`, t, Math.max(0, ...g.shards.map((s) => s.millis_behind)) / 1000);
    }
    for (const d of doc.deliveries ?? []) {
      add(behind, `delivery ${d.name}`, t, d.behind);
      add(age, `delivery ${d.name}`, t, d.millis_behind / 1000);
    }
  }
  const series = (from: Map<string, { x: number; y: number }[]>): Series[] =>
    [...from].map(([name, points]) => ({ name, points }));
  return (
    <div className="st-charts">
      <Chart title="Records behind" series={series(behind)} xTime yLabel="records" height={200} />
      <Chart title="Oldest unread record" series={series(age)} xTime yLabel="seconds behind" height={200} />
    </div>
  );
}
