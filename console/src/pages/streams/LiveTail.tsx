// A stream's live tail: the newest records as they arrive, from LATEST on every open shard,
// through the records route's long poll (GET /streams/{name}/records?wait=), following a closed
// shard's children once it is read to its end, as `cumulo streams tail` does.
import { useEffect, useRef, useState } from "react";
import { ApiError, get } from "../../api";
import { ErrorBox } from "../../components/ErrorBox";
import { bytes, number } from "../../format";
import { clock, compareSequences, dataText, RecordsPage, Stream, streamPath } from "./types";

export const KEEP = 200; // records shown, the newest
const LANES = 3; // long polls at once: a browser keeps only 6 connections to a host
const LONG_WAIT = 20; // seconds a lane with one shard waits for records (the API's most)
const SHORT_WAIT = 1; // a lane going round several shards waits this long on each
const PAGE = 500; // records a read

export interface TailRecord {
  shard: string;
  sequence: string;
  arrived: number;
  partitionKey: string;
  text: string;
  size: number;
  binary: boolean;
}

/** Where each followed shard is read from next: an iterator once the first read gave one. */
interface Cursor { iterator?: string; from: "LATEST" | "TRIM_HORIZON" }

type Phase = "opening" | "live" | "paused" | "stopped";

const newestFirst = (a: TailRecord, b: TailRecord) =>
  b.arrived - a.arrived || compareSequences(b.sequence, a.sequence);

const sleep = (ms: number, signal: AbortSignal) => new Promise<void>((resolve) => {
  const timer = window.setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { window.clearTimeout(timer); resolve(); }, { once: true });
});

/** Follow the stream while not paused. Pausing keeps each shard's place, so resuming shows what
 *  came meanwhile (unless its iterator expired: then that shard starts again from LATEST).
 *  `closed` names the shards the page has seen closed (by a split or merge): a long poll on one
 *  is cut short, since the server's wait does not end when its shard closes, and it is read
 *  without waiting to its end, from where the tail goes on into its children. */
export function useTail(name: string, paused: boolean, closed: string[] = []) {
  const [records, setRecords] = useState<TailRecord[]>([]);
  const [received, setReceived] = useState(0);
  const [phase, setPhase] = useState<Phase>("opening");
  const [following, setFollowing] = useState(0);
  const [error, setError] = useState<unknown>();
  const [gap, setGap] = useState(false);
  const cursors = useRef<Map<string, Cursor> | null>(null);
  const followed = useRef(new Set<string>()); // every shard followed, done ones too
  const closedNow = useRef(new Set<string>());
  const polls = useRef(new Map<string, AbortController>()); // each shard's read in flight
  const closedKey = closed.join(",");
  useEffect(() => {
    closedNow.current = new Set(closed);
    for (const shard of closed) polls.current.get(shard)?.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [closedKey]);

  useEffect(() => { // another stream: start afresh
    cursors.current = null;
    followed.current = new Set();
    setRecords([]); setReceived(0); setGap(false); setError(undefined); setPhase("opening");
  }, [name]);

  useEffect(() => {
    if (paused) { setPhase((p) => (p === "stopped" ? p : "paused")); return; }
    const controller = new AbortController();
    const { signal } = controller;
    const stop = (exc: unknown) => { setError(exc); setPhase("stopped"); controller.abort(); };
    // Live once each shard followed has its place (an iterator): a record put from then on shows.
    const placed = () => [...cursors.current?.values() ?? []].every((c) => c.iterator);
    setPhase((p) => (p === "stopped" ? p : cursors.current && placed() ? "live" : "opening"));
    const add = (page: RecordsPage) => {
      if (!page.records.length) return;
      const fresh = page.records.map((r): TailRecord => {
        const data = dataText(r.data_base64);
        return { shard: page.shard_id, sequence: r.sequence_number, arrived: r.arrived,
                 partitionKey: r.partition_key, text: data.text, size: data.size, binary: data.binary };
      });
      setReceived((n) => n + fresh.length);
      setRecords((old) => [...fresh, ...old].sort(newestFirst).slice(0, KEEP));
    };

    const lanes: string[][] = [];
    const place = (shard: string) => {
      followed.current.add(shard);
      if (lanes.length < LANES) { lanes.push([shard]); void lane(lanes.at(-1)!); return; }
      lanes.reduce((a, b) => (b.length < a.length ? b : a)).push(shard);
    };
    const count = () => setFollowing(lanes.reduce((n, l) => n + l.length, 0));

    // One long poll at a time per lane; a lane with several shards goes round them.
    const lane = async (mine: string[]) => {
      let failures = 0;
      for (let turn = 0; mine.length && !signal.aborted; turn++) {
        const shard = mine[turn % mine.length];
        const cursor = cursors.current!.get(shard)!;
        // The first read answers at once, with the shard's place; the next ones wait for records.
        const wait = !cursor.iterator || closedNow.current.has(shard) ? 0
          : mine.length === 1 ? LONG_WAIT : SHORT_WAIT;
        const poll = new AbortController();
        const cut = () => poll.abort();
        signal.addEventListener("abort", cut, { once: true });
        polls.current.set(shard, poll);
        let page: RecordsPage;
        try {
          page = await get<RecordsPage>(streamPath(name, "/records"), cursor.iterator
            ? { iterator: cursor.iterator, wait, limit: PAGE }
            : { shard, from: cursor.from, wait, limit: PAGE }, poll.signal);
        } catch (exc) {
          if (signal.aborted) return;
          if (poll.signal.aborted) continue;  // its shard closed: read it again at once
          if (exc instanceof ApiError && exc.code === "expired_iterator") {
            cursors.current!.set(shard, { from: "LATEST" });  // kept too long (paused): skip ahead
            setGap(true);
            continue;
          }
          if (exc instanceof ApiError && (exc.status === 404 || exc.status === 403)) { stop(exc); return; }
          setError(exc);
          await sleep(Math.min(10_000, 1000 * 2 ** failures++), signal);
          continue;
        } finally {
          signal.removeEventListener("abort", cut);
          if (polls.current.get(shard) === poll) polls.current.delete(shard);
        }
        failures = 0;
        setError(undefined);
        add(page);
        if (page.iterator) {
          cursor.iterator = page.iterator;
          if (placed()) setPhase((p) => (p === "opening" ? "live" : p));
        } else { // a closed shard read to its end: its children go on, from their start
          cursors.current!.delete(shard);
          mine.splice(mine.indexOf(shard), 1);
          for (const child of page.child_shards) {
            if (followed.current.has(child)) continue;  // a merge's child: its other parent's
            cursors.current!.set(child, { from: "TRIM_HORIZON" });
            place(child);
          }
          count();
        }
      }
      if (!mine.length) lanes.splice(lanes.indexOf(mine), 1);  // a later child starts a new one
    };

    (async () => {
      if (!cursors.current) {
        let doc: Stream;
        try {
          doc = await get<Stream>(streamPath(name), undefined, signal);
        } catch (exc) {
          if (!signal.aborted) stop(exc);
          return;
        }
        cursors.current = new Map(doc.shards.filter((s) => s.open).map((s) => [s.shard_id, { from: "LATEST" }]));
      }
      for (const shard of cursors.current.keys()) place(shard);
      count();
    })();
    return () => controller.abort();
  }, [name, paused]);

  return { records, received, phase, following, error, gap, clear: () => setRecords([]) };
}

export function LiveTail({ name, closed }: { name: string; closed: string[] }) {
  const [paused, setPaused] = useState(false);
  const tail = useTail(name, paused, closed);
  const status = tail.phase === "opening" ? "Opening the tail…"
    : tail.phase === "paused" ? "Paused"
    : tail.phase === "stopped" ? "Stopped"
    : `Following ${tail.following} shard${tail.following === 1 ? "" : "s"} live`;
  return (
    <section className="panel" aria-labelledby="st-tail-title">
      <div className="row">
        <h2 id="st-tail-title">Live tail</h2>
        <span className={`live-dot ${tail.phase === "live" && !tail.error ? "on" : ""}`} aria-hidden="true" />
        <span role="status" className="muted">{status}</span>
        <span className="spacer" />
        <span className="muted st-small">{number(tail.received)} received</span>
        <button type="button" onClick={() => setPaused(!paused)} disabled={tail.phase === "stopped"}>
          {paused ? "Resume" : "Pause"}
        </button>
        <button type="button" onClick={tail.clear} disabled={tail.records.length === 0}>Clear</button>
      </div>
      <p className="muted st-small st-note">Records put from now on, the newest first; the last {KEEP} are kept.
        Paused, it keeps its place: resuming shows what came meanwhile.</p>
      <ErrorBox error={tail.error} />
      {tail.gap && <p className="muted st-small">Some shards were paused past their iterator's 5 minutes: they went on from the newest record.</p>}
      <div className="grid-wrap st-tail" tabIndex={0}>
        <table className="grid" aria-label="Records">
          <thead>
            <tr>
              <th scope="col">Arrived</th><th scope="col">Partition key</th><th scope="col">Data</th>
              <th scope="col" className="num">Size</th><th scope="col">Shard</th><th scope="col">Sequence number</th>
            </tr>
          </thead>
          <tbody>
            {tail.records.length === 0 && (
              <tr><td colSpan={6} className="muted">
                {tail.phase === "live" ? "Waiting for records…" : tail.phase === "paused" ? "No records yet" : "—"}
              </td></tr>
            )}
            {tail.records.map((r) => (
              <tr key={`${r.shard}/${r.sequence}`}>
                <td className="mono">{clock(r.arrived)}</td>
                <td className="mono" title={r.partitionKey}>{r.partitionKey}</td>
                <td className={`mono st-data${r.binary ? " muted" : ""}`} title={r.text.length > 80 ? r.text.slice(0, 4000) : undefined}>
                  {r.text.length > 300 ? `${r.text.slice(0, 300)}…` : r.text}
                </td>
                <td className="num">{bytes(r.size)}</td>
                <td className="mono">{r.shard}</td>
                <td className="mono" title={r.sequence}>{r.sequence}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
