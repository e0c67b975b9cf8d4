// One stream: its figures now, throughput and lag charts, its shards with their lineage,
// consumer groups and deliveries (when the server tells them), a form to put a record, and the
// live tail.
import { useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { del, post } from "../../api";
import { Confirm } from "../../components/Dialogs";
import { ErrorBox, Loading, State } from "../../components/ErrorBox";
import { bytes, number, seconds, when } from "../../format";
import { useAction, useCan } from "../../hooks";
import { EVERY_MS, hasLag, LagCharts, Rate, rates, ThroughputCharts, useStreamSamples } from "./Activity";
import { LiveTail } from "./LiveTail";
import { DeleteWarning } from "./StreamList";
import { ConsumerGroup, Delivery, keyShare, retentionText, shortKey, Stream, StreamShard, streamPath } from "./types";

export default function StreamPage() {
  const { name = "" } = useParams();
  const navigate = useNavigate();
  const live = useStreamSamples(name);
  const [deleting, setDeleting] = useState(false);
  const [mayWrite, mayDelete] = useCan([["streams:Write", `stream/${name}`], ["streams:Delete", `stream/${name}`]]);
  const s = live.latest?.name === name ? live.latest : undefined;
  const header = <div className="breadcrumbs"><Link to="/streams">Streams</Link> / {name}</div>;
  if (!s) {
    return (
      <>
        {header}
        <ErrorBox error={live.error} />
        {live.loading && !live.error && <Loading what="Loading the stream" />}
      </>
    );
  }
  const flow = rates(live.samples);
  const now = flow.at(-1);

  return (
    <div className="st-page">
      {header}
      <div className="page-header">
        <h1>{s.name}</h1>
        <State state={s.status.toLowerCase()} />
        <div className="actions">
          {mayDelete && <button type="button" className="danger" onClick={() => setDeleting(true)}>Delete</button>}
        </div>
      </div>
      <ErrorBox error={live.error} />
      <Figures stream={s} now={now} />

      <section className="panel" aria-labelledby="st-flow-title">
        <h2 id="st-flow-title">Throughput</h2>
        <p className="muted st-small st-note"><span className={`live-dot${live.error ? "" : " on"}`} aria-hidden="true" />
          {" "}The records and bytes the stream gained between its figures asked every {EVERY_MS / 1000} s; kept
          for 5 minutes while this page is open.</p>
        <ThroughputCharts rates={flow} />
      </section>

      {hasLag(live.samples) && (
        <section className="panel" aria-labelledby="st-lag-title">
          <h2 id="st-lag-title">Lag</h2>
          <p className="muted st-small st-note">Records each consumer group has not checkpointed, and each delivery has
            not written to its table yet.</p>
          <LagCharts samples={live.samples} />
        </section>
      )}

      <Shards stream={s} now={now} />
      {s.groups !== undefined && <Groups groups={s.groups} stream={s.name} />}
      {s.deliveries !== undefined && <Deliveries deliveries={s.deliveries} stream={s.name} />}
      {mayWrite && <PutRecord stream={s.name} onPut={live.reload} />}
      <LiveTail name={s.name} closed={s.shards.filter((shard) => !shard.open).map((shard) => shard.shard_id)} />

      {deleting && (
        <Confirm title={`Delete stream ${s.name}?`} confirm="Delete stream" onClose={() => setDeleting(false)}
                 run={async () => { await del(streamPath(s.name)); navigate("/streams"); }}>
          <DeleteWarning stream={s} />
        </Confirm>
      )}
    </div>
  );
}

function Figures({ stream: s, now }: { stream: Stream; now: Rate | undefined }) {
  const open = s.shards.filter((shard) => shard.open).length;
  return (
    <div className="cards" aria-label="Now">
      <div className="card"><div className="label">Shards</div>
        <div className="value">{open}</div>
        <div className="sub">open{s.shards.length > open ? `, ${s.shards.length - open} closed` : ""}</div></div>
      <div className="card"><div className="label">Records kept</div>
        <div className="value" aria-label="Records kept">{number(s.records)}</div>
        <div className="sub">{bytes(s.bytes)}</div></div>
      <div className="card"><div className="label">Records/s</div>
        <div className="value" aria-label="Records per second now">{now ? number(now.records, 3) : "—"}</div>
        <div className="sub">{now ? `${bytes(Math.round(now.bytes))}/s` : "measuring…"}</div></div>
      <div className="card"><div className="label">Retention</div>
        <div className="value">{retentionText(s.retention_hours)}</div>
        <div className="sub">created {when(s.created_at)}</div></div>
    </div>
  );
}

/** A shard's parents, each on its line: a split's one, or a merge's two. */
function Lineage({ shard }: { shard: StreamShard }) {
  if (!shard.parent) return <>—</>;
  const merged = shard.adjacent_parent !== null;
  return (
    <span title={merged ? `merge of ${shard.parent} and ${shard.adjacent_parent}` : `split of ${shard.parent}`}>
      <div>{shard.parent}</div>
      {merged && <div>+ {shard.adjacent_parent}</div>}
      <div className="muted st-small">{merged ? "merge" : "split"}</div>
    </span>
  );
}

const sequence = (text: string | null) => (text === null || text.startsWith("-") ? "—" : text);

function Shards({ stream: s, now }: { stream: Stream; now: Rate | undefined }) {
  return (
    <section className="panel" aria-labelledby="st-shards-title">
      <h2 id="st-shards-title">Shards</h2>
      <p className="muted st-small st-note">A record goes to the open shard whose hash-key range holds the MD5 of its
        partition key. A split or merge closes shards: their records stay readable until retention, and readers
        finish them before their children.</p>
      <div className="grid-wrap" tabIndex={0}>
        <table className="grid st-shards" aria-label="Shards">
          <thead>
            <tr>
              <th scope="col">Shard</th><th scope="col">State</th><th scope="col">Parent</th>
              <th scope="col">Hash keys</th><th scope="col">Sequence numbers</th>
              <th scope="col" className="num">Records</th><th scope="col" className="num">Size</th>
              <th scope="col" className="num">Records/s</th>
            </tr>
          </thead>
          <tbody>
            {s.shards.map((shard) => {
              const range = `${shard.hash_key_range.start} – ${shard.hash_key_range.end}`;
              const first = sequence(shard.starting_sequence_number);
              const last = shard.open ? "open" : sequence(shard.ending_sequence_number);
              return (
                <tr key={shard.shard_id}>
                  <th scope="row" className="mono st-row-head">{shard.shard_id}</th>
                  <td><State state={shard.open ? "open" : "closed"} /></td>
                  <td className="mono"><Lineage shard={shard} /></td>
                  <td className="mono" title={range}>
                    <div>{shortKey(shard.hash_key_range.start)} – {shortKey(shard.hash_key_range.end)}</div>
                    <div className="muted st-small">{keyShare(shard.hash_key_range)} of the keys</div>
                  </td>
                  <td className="mono" title={`starting ${first}, ending ${last}`}>
                    <div>{first}</div>
                    <div className={shard.open ? "muted st-small" : undefined}>{shard.open ? "to come" : last}</div>
                  </td>
                  <td className="num">{number(shard.records)}</td>
                  <td className="num">{bytes(shard.bytes)}</td>
                  <td className="num">{now && shard.shard_id in now.byShard ? number(now.byShard[shard.shard_id], 3) : "—"}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function Groups({ groups, stream }: { groups: ConsumerGroup[]; stream: string }) {
  return (
    <section className="panel" aria-labelledby="st-groups-title">
      <h2 id="st-groups-title">Consumer groups</h2>
      {groups.length === 0 ? (
        <p className="muted">None yet. A group reads each shard with one member at a time, from its checkpoint:{" "}
          <code>{`client.streams.consume("${stream}", group="sessionizer")`}</code></p>
      ) : groups.map((g) => (
        <div key={g.group} className="st-group">
          <h3>{g.group} <span className="muted st-h-note">{g.members.length} member{g.members.length === 1 ? "" : "s"}
            {" "}· {number(g.behind)} record{g.behind === 1 ? "" : "s"} behind</span></h3>
          <div className="grid-wrap" tabIndex={0}>
            <table className="grid" aria-label={`Consumer group ${g.group}`}>
              <thead>
                <tr><th scope="col">Shard</th><th scope="col">Held by</th><th scope="col">Checkpoint</th>
                  <th scope="col" className="num">Behind</th><th scope="col" className="num">Oldest unread</th></tr>
              </thead>
              <tbody>
                {g.shards.map((shard) => {
                  const holder = g.members.find((m) => m.member === shard.owner);
                  return (
                    <tr key={shard.shard_id}>
                      <td className="mono">{shard.shard_id}</td>
                      <td>{shard.owner ? (holder?.label || shard.owner) : <span className="muted">no one</span>}</td>
                      <td className="mono" title={shard.checkpoint ?? undefined}>{shard.checkpoint ?? "—"}</td>
                      <td className="num">{number(shard.behind)}</td>
                      <td className="num">{shard.behind ? seconds(shard.millis_behind / 1000) : "—"}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        </div>
      ))}
    </section>
  );
}

/** A delivery's table as a link to its page in Tables (database.table). */
function TableLink({ target }: { target: string }) {
  const [database, table] = target.split(".", 2);
  if (!table) return <>{target}</>;
  return <Link to={`/tables/${encodeURIComponent(database)}/${encodeURIComponent(table)}`}>{target}</Link>;
}

function Deliveries({ deliveries, stream }: { deliveries: Delivery[]; stream: string }) {
  return (
    <section className="panel" aria-labelledby="st-deliveries-title">
      <h2 id="st-deliveries-title">Deliveries</h2>
      {deliveries.length === 0 ? (
        <p className="muted">None yet. A delivery writes the stream into a lake table in batches, exactly once:{" "}
          <code>{`cumulo streams deliver ${stream} --to-table web.${stream}`}</code></p>
      ) : (
        <div className="grid-wrap" tabIndex={0}>
          <table className="grid" aria-label="Deliveries">
            <thead>
              <tr><th scope="col">Name</th><th scope="col">Table</th><th scope="col">State</th>
                <th scope="col">Batches</th><th scope="col" className="num">Written</th>
                <th scope="col" className="num">Failed</th><th scope="col" className="num">Behind</th>
                <th scope="col" className="num">Oldest unwritten</th><th scope="col">Last batch</th></tr>
            </thead>
            <tbody>
              {deliveries.map((d) => (
                <tr key={d.name}>
                  <td>{d.name}</td>
                  <td>{d.table ? <TableLink target={d.table} /> : "—"}</td>
                  <td><State state={d.state} /></td>
                  <td className="muted" title={d.transform ? `each record through ${d.transform}` : undefined}>
                    {d.buffer ?? "—"}{d.partition_by ? `, by ${d.partition_by}` : ""}{d.transform ? ", transformed" : ""}
                  </td>
                  <td className="num">{number(d.records)}</td>
                  <td className="num" title={d.errors_table ? `in ${d.errors_table}` : undefined}>{number(d.failed)}</td>
                  <td className="num">{number(d.behind)}</td>
                  <td className="num">{d.behind ? seconds(d.millis_behind / 1000) : "—"}</td>
                  <td>{when(d.delivered_at)}{typeof d.table_version === "number" ? ` (version ${d.table_version})` : ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {deliveries.filter((d) => d.error).map((d) => (
        <div key={d.name} className="error" role="alert"><strong>{d.name}:</strong> <span className="error-message">{d.error}</span></div>
      ))}
    </section>
  );
}

interface PutResult { failed: number; records: ({ shard_id: string; sequence_number: string } | { error: string })[] }

function PutRecord({ stream, onPut }: { stream: string; onPut: () => void }) {
  const [key, setKey] = useState("");
  const [data, setData] = useState("");
  const [lines, setLines] = useState(false);
  const [result, setResult] = useState<PutResult>();
  const put = useAction(async () => {
    const texts = lines ? data.split("\n").filter((line) => line.trim() !== "") : [data];
    const answer = await post<PutResult>(streamPath(stream, "/records"), {
      records: texts.map((text) => ({ partition_key: key, data: text })) });
    setResult(answer);
    onPut();
  });
  const written = result?.records.filter((r): r is { shard_id: string; sequence_number: string } => "shard_id" in r) ?? [];
  const errors = result?.records.flatMap((r, i) => ("error" in r ? [`record ${i + 1}: ${r.error}`] : [])) ?? [];
  return (
    <section className="panel" aria-labelledby="st-put-title">
      <h2 id="st-put-title">Put a record</h2>
      <form className="st-put" aria-label="Put a record"
            onSubmit={(event) => { event.preventDefault(); setResult(undefined); void put.run(); }}>
        <label htmlFor="st-key">Partition key</label>
        <input id="st-key" value={key} onChange={(e) => setKey(e.target.value)} required autoComplete="off"
               spellCheck={false} placeholder="e.g. user-1" />
        <label htmlFor="st-data">Data</label>
        <textarea id="st-data" value={data} onChange={(e) => setData(e.target.value)} rows={3} spellCheck={false}
                  placeholder='{"page": "/pricing"}' />
        <label className="st-check">
          <input type="checkbox" checked={lines} onChange={(e) => setLines(e.target.checked)} />
          One record a line (up to 500)
        </label>
        <div className="row">
          <button type="submit" className="primary" disabled={put.busy || !key}>{put.busy ? "Putting…" : "Put"}</button>
          {written.length === 1 && (
            <span role="status" className="muted">Written to {written[0].shard_id} as {written[0].sequence_number}</span>
          )}
          {written.length > 1 && <span role="status" className="muted">{written.length} records written</span>}
        </div>
      </form>
      <ErrorBox error={put.error} onClose={put.clear} />
      {errors.length > 0 && <ErrorBox error={errors.join("\n")} />}
    </section>
  );
}
