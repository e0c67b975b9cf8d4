// Streams: each with its shards, retention, records and bytes kept; create one, delete one.
import { useState } from "react";
import { Link } from "react-router-dom";
import { Check, del, get, post } from "../../api";
import { Confirm, Notice } from "../../components/Dialogs";
import { Empty, ErrorBox, Loading, PageHeader, State } from "../../components/ErrorBox";
import { bytes, number } from "../../format";
import { useAction, useApi, useCan } from "../../hooks";
import { MAX_SHARDS, NAME_HINT, NAME_RULE, retentionText, Stream, streamPath } from "./types";

const detail = (name: string) => `/streams/${encodeURIComponent(name)}`;

export default function StreamList() {
  const streams = useApi((signal) => get<Stream[]>("/streams", undefined, signal), [], 5000);
  const [deleting, setDeleting] = useState<Stream>();
  const [notice, setNotice] = useState<React.ReactNode>();
  const list = streams.data;
  // Asked once the streams are known: one question for the page, each stream's delete in it.
  const [mayCreate, ...mayDelete] = useCan(list ? [["streams:Create", "stream/*"],
    ...list.map((s): Check => ["streams:Delete", `stream/${s.name}`])] : []);

  return (
    <div className="st-page">
      <PageHeader title="Streams">
        <button type="button" onClick={streams.reload} disabled={streams.loading}>Refresh</button>
      </PageHeader>
      <p className="muted lead">Data streams like Kinesis's: records go to shards by their partition key and are kept
        for the stream's retention. Put and read them here, from the SDK and CLI, or with AWS's Kinesis clients.</p>
      {mayCreate && (
        <CreateStream onCreated={(made) => {
          setNotice(<>Created stream <Link to={detail(made.name)}>{made.name}</Link></>);
          streams.reload();
        }} />
      )}
      <Notice onClose={() => setNotice(undefined)}>{notice}</Notice>
      <ErrorBox error={streams.error} />
      {!list && streams.loading && <Loading what="Loading streams" />}
      {list && list.length === 0 && (
        <Empty>No streams yet.{mayCreate ? " Create one above, or" : " Create one"} from a shell:{" "}
          <code>cumulo streams create clicks --shards 2</code></Empty>
      )}
      {list && list.length > 0 && (
        <div className="grid-wrap" tabIndex={0}>
          <table className="grid" aria-label="Streams">
            <thead>
              <tr>
                <th scope="col">Name</th><th scope="col">Status</th><th scope="col" className="num">Shards</th>
                <th scope="col" className="num">Retention</th><th scope="col" className="num">Records</th>
                <th scope="col" className="num">Size</th><th scope="col"><span className="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {list.map((s, i) => {
                const open = s.shards.filter((shard) => shard.open).length;
                return (
                  <tr key={s.name}>
                    <td><Link to={detail(s.name)}>{s.name}</Link></td>
                    <td><State state={s.status.toLowerCase()} /></td>
                    <td className="num" title={`${open} open, ${s.shards.length - open} closed`}>
                      {open}{s.shards.length > open && <span className="muted"> (+{s.shards.length - open} closed)</span>}
                    </td>
                    <td className="num">{retentionText(s.retention_hours)}</td>
                    <td className="num">{number(s.records)}</td>
                    <td className="num">{bytes(s.bytes)}</td>
                    <td className="actions-cell">
                      {mayDelete[i] && (
                        <button type="button" className="link danger" onClick={() => setDeleting(s)}
                                aria-label={`Delete stream ${s.name}`}>Delete</button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {deleting && (
        <Confirm title={`Delete stream ${deleting.name}?`} confirm="Delete stream"
                 run={() => del(streamPath(deleting.name))} onClose={() => setDeleting(undefined)}
                 onDone={() => { setNotice(`Deleted stream ${deleting.name}`); streams.reload(); }}>
          <DeleteWarning stream={deleting} />
        </Confirm>
      )}
    </div>
  );
}

/** What deleting a stream loses. */
export function DeleteWarning({ stream }: { stream: Stream }) {
  return (
    <p>Its {stream.shards.length} shard{stream.shards.length === 1 ? "" : "s"} and the{" "}
      {number(stream.records)} record{stream.records === 1 ? "" : "s"} kept ({bytes(stream.bytes)}) are deleted for
      good; readers of <strong>{stream.name}</strong> get an error from now on.</p>
  );
}

function CreateStream({ onCreated }: { onCreated: (made: Stream) => void }) {
  const [name, setName] = useState("");
  const [shards, setShards] = useState("1");
  const [retention, setRetention] = useState("24h");
  const create = useAction(async () => {
    const made = await post<Stream>("/streams", { name: name.trim(), shards: Number(shards),
                                                  retention: retention.trim() });
    setName("");
    onCreated(made);
  });
  const count = Number(shards);
  const invalid = name.trim() !== "" && !NAME_RULE.test(name.trim()) ? `The name must be ${NAME_HINT}`
    : !Number.isInteger(count) || count < 1 || count > MAX_SHARDS ? `Shards: a whole number, 1-${MAX_SHARDS}` : undefined;
  return (
    <form className="panel st-form" aria-label="Create a stream"
          onSubmit={(event) => { event.preventDefault(); if (!invalid) void create.run(); }}>
      <label>Stream name
        <input value={name} onChange={(e) => setName(e.target.value)} required autoComplete="off"
               spellCheck={false} placeholder="e.g. clicks" maxLength={128} aria-invalid={!!invalid && invalid.startsWith("The name")} />
      </label>
      <label>Shards
        <input type="number" min={1} max={MAX_SHARDS} step={1} value={shards} className="st-number"
               onChange={(e) => setShards(e.target.value)} required />
      </label>
      <label>Retention
        <input value={retention} onChange={(e) => setRetention(e.target.value)} required className="st-number"
               list="st-retentions" autoComplete="off" spellCheck={false} />
      </label>
      <datalist id="st-retentions">
        {["24h", "48h", "7d", "30d", "365d"].map((r) => <option key={r} value={r} />)}
      </datalist>
      <button type="submit" className="primary" disabled={create.busy || !name.trim() || !!invalid}>
        {create.busy ? "Creating…" : "Create stream"}
      </button>
      <span className={invalid ? "hint st-invalid" : "muted hint"} role={invalid ? "alert" : undefined}>
        {invalid ?? `${NAME_HINT}; retention 24h to 365d`}</span>
      <ErrorBox error={create.error} onClose={create.clear} />
    </form>
  );
}
