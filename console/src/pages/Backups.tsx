// Backups: the schedules that back the whole platform up (and drill each backup), their runs,
// the backups a schedule made, and what one holds, each thing of it restorable on its own.
// /backups?schedule=NAME&backup=ID: the address says what is open.
import { useEffect, useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { Check, get, post, del } from "../api";
import { Confirm, Notice } from "../components/Dialogs";
import { Empty, ErrorBox, Loading, PageHeader, State } from "../components/ErrorBox";
import { bytes, number, seconds, when } from "../format";
import { useApi, useCan } from "../hooks";
import { ConfirmButton, Table, useNow } from "./jobs/shared";
import "./Backups.css";

/** A backup or a drill, as it ran (dr/schedules.py run_doc). */
export interface BackupRun {
  id: number;
  kind: "backup" | "drill";
  schedule: string | null;
  trigger: string;
  target: string;
  state: string;
  backup_id: string | null;
  files: number | null;
  bytes: number | null;
  stored_bytes: number | null;
  pruned: number | null;
  rpo_seconds: number | null;
  rto_seconds: number | null;
  checked: string | null;
  error: string | null;
  started_at: string;
  finished_at: string | null;
  host: string;
}

interface Schedule {
  name: string;
  target: string;
  encrypted: boolean;
  cron: string;
  missed: string;
  keep_last: number;
  keep_daily: number;
  keep_weekly: number;
  drill: boolean;
  enabled: boolean;
  next_at: string | null;
  last_backup: BackupRun | null;
  last_drill: BackupRun | null;
  failing: boolean;
  created_at: string;
  created_by: string | null;
}

interface Backup { id: string; created_at: string; files: number; bytes: number; stored_bytes: number; seconds: number }

interface Contents {
  buckets: { name: string; objects: number; bytes: number }[];
  tables: { name: string; version: number }[];  // versions 0..version are in the backup (-1: not known)
  models: { name: string; versions: number[] }[];
  pipelines: { name: string; version: number }[];
}

interface BackupDetail extends Backup {
  databases: Record<string, number>;
  prefixes: Record<string, { files: number; bytes: number }>;
  contents: Contents;
}

type Kind = "bucket" | "table" | "model" | "pipeline";
/** One thing of a backup to put back, with the versions it may be put back at. */
interface Item { kind: Kind; name: string; versions?: number[] }

const schedulePath = (name: string, rest = "") => `/backups/schedules/${encodeURIComponent(name)}${rest}`;
const RUNS_EVERY_MS = 2000;   // while a backup or a drill runs
const IDLE_EVERY_MS = 15000;  // a schedule's cron time may start one

export default function Backups() {
  const [params, setParams] = useSearchParams();
  const schedules = useApi((signal) => get<Schedule[]>("/backups/schedules", undefined, signal), []);
  const [live, setLive] = useState(false);
  const runs = useApi((signal) => get<BackupRun[]>("/backups/runs", { limit: 50 }, signal), [],
                      live ? RUNS_EVERY_MS : IDLE_EVERY_MS);
  const [notice, setNotice] = useState<React.ReactNode>();
  const [creating, setCreating] = useState(false);
  const list = schedules.data;
  const [maySchedule, mayRestore] = useCan([["backups:Schedule", "backup/*"], ["backups:Restore", "backup/*"]]);
  // Asked once the schedules are known: each one's run and delete.
  const each = useCan((list ?? []).flatMap((s): Check[] => [
    ["backups:Run", `backup/${s.name}`], ["backups:Schedule", `backup/${s.name}`]]));

  const selected = list?.some((s) => s.name === params.get("schedule")) ? params.get("schedule")!
    : list?.[0]?.name;
  const select = (schedule: string | undefined, backup?: string) => {
    const next = new URLSearchParams();
    if (schedule) next.set("schedule", schedule);
    if (backup) next.set("backup", backup);
    setParams(next, { replace: true });
  };

  // A run that starts or ends changes the schedules' last runs and the backups listed.
  const running = (runs.data ?? []).filter((r) => r.state === "running");
  const moment = (runs.data ?? []).map((r) => `${r.id}:${r.state}`).join(",");
  useEffect(() => setLive(running.length > 0), [running.length, moment]);
  useEffect(() => { if (moment) schedules.reload(); }, [moment, schedules.reload]);

  return (
    <div className="backups-page">
      <PageHeader title="Backups">
        {maySchedule && <button type="button" className="primary" onClick={() => setCreating(true)}>New schedule</button>}
        <button type="button" onClick={() => { schedules.reload(); runs.reload(); }}
                disabled={schedules.loading}>Refresh</button>
      </PageHeader>
      <p className="muted lead">The whole platform at one moment (databases, buckets, tables, models, jobs' files),
        stored once per piece in a folder of the server or in S3; a drill restores a backup into a scratch
        home and checks it.</p>
      <Notice onClose={() => setNotice(undefined)}>{notice}</Notice>
      <ErrorBox error={schedules.error} />
      {!list && schedules.loading && <Loading what="Loading the schedules" />}
      {list && list.length === 0 && (
        <Empty>No backup schedules yet. {maySchedule ? <>Press New schedule, or </> : <>Ask an administrator, or </>}
          <code>cumulo backup schedule nightly --to /srv/backups --cron "0 2 * * *"</code></Empty>
      )}
      {list && list.length > 0 && (
        <Schedules list={list} selected={selected} running={running} mayRun={(i) => !!each[2 * i]}
                   mayDelete={(i) => !!each[2 * i + 1]}
                   onSelect={(name) => select(name)}
                   onStarted={(run, drill) => {
                     setNotice(`${drill ? "Backing up and drilling" : "Backing up"} ${run.schedule} now (run ${run.id})`);
                     setLive(true);
                     runs.reload();
                   }}
                   onDeleted={(name) => {
                     setNotice(`Deleted schedule ${name}; its backups stay in its target`);
                     if (name === selected) select(undefined);
                     schedules.reload();
                   }} />
      )}

      <h2>Runs</h2>
      <ErrorBox error={runs.error} />
      {!runs.data && !runs.error && <Loading what="Loading the runs" />}
      {runs.data && <Runs runs={runs.data} />}

      {selected && (
        <BackupList key={selected} schedule={selected} moment={moment} opened={params.get("backup") ?? undefined}
                  onOpen={(id) => select(selected, id)} mayRestore={mayRestore} onRestored={setNotice} />
      )}

      {creating && (
        <NewSchedule onClose={() => setCreating(false)} onDone={(made) => {
          setNotice(`Created schedule ${made.name}: next backup ${when(made.next_at)}`);
          select(made.name);
          schedules.reload();
        }} />
      )}
    </div>
  );
}

/** The schedule's failed run (its last backup's, else its last drill's), when it is failing. */
function failure(s: Schedule): BackupRun | undefined {
  if (!s.failing) return undefined;
  if (s.last_backup?.state === "failed") return s.last_backup;
  if (s.last_drill?.state === "failed") return s.last_drill;
  return undefined;
}

function Schedules({ list, selected, running, mayRun, mayDelete, onSelect, onStarted, onDeleted }: {
  list: Schedule[];
  selected: string | undefined;
  running: BackupRun[];
  mayRun: (index: number) => boolean;
  mayDelete: (index: number) => boolean;
  onSelect: (name: string) => void;
  onStarted: (run: BackupRun, drill: boolean) => void;
  onDeleted: (name: string) => void;
}) {
  const [error, setError] = useState<unknown>();
  const [starting, setStarting] = useState<string>();
  const start = async (name: string, drill: boolean) => {
    setStarting(name);
    setError(undefined);
    try {
      onStarted(await post<BackupRun>(schedulePath(name, "/run"), { drill }), drill);
    } catch (exc) {
      setError(exc);
    } finally {
      setStarting(undefined);
    }
  };
  return (
    <>
      <ErrorBox error={error} onClose={() => setError(undefined)} />
      <Table label="Backup schedules" head={["Schedule", "Target", "Cron", "Next run", "Last backup", "Last drill",
                                             <span className="sr-only">Actions</span>]}>
        {list.map((s, i) => {
          const busy = starting === s.name || running.some((r) => r.schedule === s.name);
          const failed = failure(s);
          return (
            <tr key={s.name} className={s.name === selected ? "ops-selected" : undefined}>
              <td>
                <button type="button" className="link backup-name" aria-pressed={s.name === selected}
                        onClick={() => onSelect(s.name)}>{s.name}</button>
                {s.failing && (
                  <details className="backup-failing">
                    <summary title={failed?.error ?? "its last run failed"}>failing</summary>
                    <p>{failed ? `${failed.kind} ${when(failed.finished_at)}: ${failed.error}` : "its last run failed"}</p>
                  </details>
                )}
              </td>
              <td className="backup-target"><span className="mono" title={s.target}>{s.target}</span>
                {s.encrypted && <span className="backup-sub">encrypted</span>}</td>
              <td><code>{s.cron}</code></td>
              <td className="backup-stack">{s.enabled ? when(s.next_at) : <span className="muted">disabled</span>}</td>
              <td className="backup-stack"><LastBackup run={s.last_backup} /></td>
              <td className="backup-stack"><LastDrill run={s.last_drill} drills={s.drill} /></td>
              <td className="actions-cell">
                {mayRun(i) && <>
                  <button type="button" disabled={busy} onClick={() => void start(s.name, false)}>Back up now</button>
                  <button type="button" disabled={busy} onClick={() => void start(s.name, true)}
                          title="Back up now, then restore that backup into a scratch home and check it">Drill now</button>
                </>}
                {mayDelete(i) && (
                  <ConfirmButton label="Delete" title={`Delete schedule ${s.name}?`} confirm="Delete schedule" danger
                                 onConfirm={async () => { await del(schedulePath(s.name)); onDeleted(s.name); }}>
                    <p>No more backups are made on this schedule. The backups already in <code>{s.target}</code> stay
                      there, and its runs stay listed.</p>
                  </ConfirmButton>
                )}
              </td>
            </tr>
          );
        })}
      </Table>
    </>
  );
}

function LastBackup({ run }: { run: BackupRun | null }) {
  if (!run) return <span className="muted">none yet</span>;
  return (
    <>
      <span className="row backup-cell"><State state={run.state} /><span>{when(run.finished_at ?? run.started_at)}</span></span>
      {run.state === "succeeded" && (
        <span className="backup-sub" title="new bytes this backup stored / the size of everything it holds">
          {bytes(run.stored_bytes)} new / {bytes(run.bytes)}</span>
      )}
    </>
  );
}

function LastDrill({ run, drills }: { run: BackupRun | null; drills: boolean }) {
  if (!run) return <span className="muted">{drills ? "none yet" : "not drilled"}</span>;
  return (
    <>
      <span className="row backup-cell" title={run.checked ? `checked ${run.checked}` : undefined}>
        <State state={run.state} /><span>{when(run.finished_at ?? run.started_at)}</span></span>
      {run.state === "succeeded" && (
        <span className="backup-sub">
          <span title="recovery point: how old the backup was when it was restored">RPO {seconds(run.rpo_seconds)}</span>
          {" · "}<span title="recovery time: how long the restore took">RTO {seconds(run.rto_seconds)}</span>
        </span>
      )}
    </>
  );
}

function took(run: BackupRun, now: number): string {
  const end = run.finished_at ? Date.parse(run.finished_at) : now;
  const s = Math.max(0, (end - Date.parse(run.started_at)) / 1000);
  return s < 1 ? "< 1 s" : seconds(s);
}

function outcome(run: BackupRun): React.ReactNode {
  if (run.error) return <span className="backup-error">{run.error}</span>;
  if (run.state === "running") return <span className="muted">{run.kind === "drill" ? "restoring and checking…" : "backing up…"}</span>;
  if (run.kind === "drill") {
    return <>RPO {seconds(run.rpo_seconds)} · RTO {seconds(run.rto_seconds)}{run.checked && <> · checked {run.checked}</>}</>;
  }
  return <>{number(run.files)} files · {bytes(run.stored_bytes)} new / {bytes(run.bytes)}
    {!!run.pruned && <> · pruned {run.pruned}</>}</>;
}

function Runs({ runs }: { runs: BackupRun[] }) {
  const now = useNow(runs.some((r) => r.state === "running"));
  return (
    <Table label="Backup runs" head={["Run", "Kind", "Schedule", "State", "Started", "Took", "Backup", "Result", "Trigger"]}
           empty={runs.length === 0 ? "No runs yet: press Back up now, or wait for a schedule's time" : undefined}>
      {runs.map((r) => (
        <tr key={r.id}>
          <td className="num">{r.id}</td>
          <td>{r.kind}</td>
          <td>{r.schedule ?? "—"}</td>
          <td><State state={r.state} /></td>
          <td>{when(r.started_at)}</td>
          <td className="num">{took(r, now)}</td>
          <td className="mono">{r.backup_id ?? "—"}</td>
          <td className="backup-outcome">{outcome(r)}</td>
          <td className="muted" title={`${r.trigger} · on ${r.host}`}>{r.trigger}</td>
        </tr>
      ))}
    </Table>
  );
}

/** The backups a schedule made, newest first; the one opened shows what it holds. */
function BackupList({ schedule, moment, opened, onOpen, mayRestore, onRestored }: {
  schedule: string;
  moment: string;
  opened: string | undefined;
  onOpen: (id: string | undefined) => void;
  mayRestore: boolean;
  onRestored: (notice: React.ReactNode) => void;
}) {
  const backups = useApi((signal) => get<Backup[]>(schedulePath(schedule, "/backups"), undefined, signal),
                         [schedule, moment]);
  const list = backups.data;
  return (
    <section aria-labelledby="backups-list">
      <h2 id="backups-list">Backups of {schedule}</h2>
      <ErrorBox error={backups.error} />
      {!list && backups.loading && <Loading what="Listing the backups" />}
      {list && (
        <Table label={`Backups of ${schedule}`} head={["Backup", "Made", "Files", "Size", "New bytes", "Took"]}
               empty={list.length === 0 ? "No backups yet: press Back up now" : undefined}>
          {list.map((b) => (
            <tr key={b.id} className={b.id === opened ? "ops-selected" : undefined}>
              <td><button type="button" className="link mono" aria-pressed={b.id === opened}
                          onClick={() => onOpen(b.id === opened ? undefined : b.id)}>{b.id}</button></td>
              <td>{when(b.created_at)}</td>
              <td className="num">{number(b.files)}</td>
              <td className="num">{bytes(b.bytes)}</td>
              <td className="num">{bytes(b.stored_bytes)}</td>
              <td className="num">{seconds(b.seconds)}</td>
            </tr>
          ))}
        </Table>
      )}
      {opened && list?.some((b) => b.id === opened) && (
        <BackupContents key={opened} schedule={schedule} id={opened} mayRestore={mayRestore} onRestored={onRestored} />
      )}
    </section>
  );
}

function BackupContents({ schedule, id, mayRestore, onRestored }: {
  schedule: string;
  id: string;
  mayRestore: boolean;
  onRestored: (notice: React.ReactNode) => void;
}) {
  const detail = useApi((signal) => get<BackupDetail>(schedulePath(schedule, `/backups/${encodeURIComponent(id)}`),
                                                      undefined, signal), [schedule, id]);
  const [restoring, setRestoring] = useState<Item>();
  const d = detail.data;
  const restore = (item: Item) => mayRestore && (
    <button type="button" className="link" onClick={() => setRestoring(item)}
            aria-label={`Restore ${item.kind} ${item.name}…`}>Restore…</button>
  );
  return (
    <section className="panel backup-contents" aria-label={`Backup ${id}`}>
      <h3>Backup <span className="mono">{id}</span></h3>
      <ErrorBox error={detail.error} />
      {!d && detail.loading && <Loading what="Reading what the backup holds" />}
      {d && (
        <>
          <dl className="props">
            <dt>Made</dt><dd>{when(d.created_at)} in {seconds(d.seconds)}</dd>
            <dt>Holds</dt><dd>{number(d.files)} files, {bytes(d.bytes)} ({bytes(d.stored_bytes)} new)</dd>
            <dt>Databases</dt>
            <dd>{Object.entries(d.databases).map(([name, size]) => (
              <span key={name} className="ops-chip">{name} {bytes(size)}</span>))}</dd>
            <dt>Files by area</dt>
            <dd>{Object.entries(d.prefixes).map(([prefix, p]) => (
              <span key={prefix} className="ops-chip">{prefix} {number(p.files)} · {bytes(p.bytes)}</span>))}</dd>
          </dl>
          <div className="backup-kinds">
            <Table label="Buckets in the backup" head={["Bucket", "Objects", "Size", <span className="sr-only">Actions</span>]}
                   empty={d.contents.buckets.length === 0 ? "No buckets" : undefined}>
              {d.contents.buckets.map((b) => (
                <tr key={b.name}>
                  <td>{b.name}</td><td className="num">{number(b.objects)}</td><td className="num">{bytes(b.bytes)}</td>
                  <td className="actions-cell">{restore({ kind: "bucket", name: b.name })}</td>
                </tr>
              ))}
            </Table>
            <Table label="Tables in the backup" head={["Table", "Versions", <span className="sr-only">Actions</span>]}
                   empty={d.contents.tables.length === 0 ? "No tables" : undefined}>
              {d.contents.tables.map((t) => (
                <tr key={t.name}>
                  <td>{t.name}</td><td>{t.version < 0 ? "—" : t.version === 0 ? "0" : `0 to ${t.version}`}</td>
                  <td className="actions-cell">
                    {restore({ kind: "table", name: t.name,
                               versions: t.version < 0 ? undefined : Array.from({ length: t.version + 1 }, (_, i) => i) })}
                  </td>
                </tr>
              ))}
            </Table>
            <Table label="Models in the backup" head={["Model", "Versions", <span className="sr-only">Actions</span>]}
                   empty={d.contents.models.length === 0 ? "No models" : undefined}>
              {d.contents.models.map((m) => (
                <tr key={m.name}>
                  <td>{m.name}</td><td>{m.versions.join(", ")}</td>
                  <td className="actions-cell">{restore({ kind: "model", name: m.name, versions: m.versions })}</td>
                </tr>
              ))}
            </Table>
            <Table label="Pipelines in the backup" head={["Pipeline", "Version", <span className="sr-only">Actions</span>]}
                   empty={d.contents.pipelines.length === 0 ? "No pipelines" : undefined}>
              {d.contents.pipelines.map((p) => (
                <tr key={p.name}>
                  <td>{p.name}</td><td>{p.version}</td>
                  <td className="actions-cell">{restore({ kind: "pipeline", name: p.name })}</td>
                </tr>
              ))}
            </Table>
          </div>
        </>
      )}
      {restoring && (
        <RestoreDialog schedule={schedule} backup={id} item={restoring} onClose={() => setRestoring(undefined)}
                       onDone={onRestored} />
      )}
    </section>
  );
}

/** The name a thing is restored as unless told: a bucket its own, a table `db.t_restored`, a
 *  pipeline `NAME-restored`, a model its own (a new version of it). */
function defaultName({ kind, name }: Item): string {
  if (kind === "table") return `${name}_restored`;
  if (kind === "pipeline") return `${name}-restored`;
  return name;
}

interface Restored {
  backup: string;
  from?: string;
  bucket?: string; restored?: number; unchanged?: number;
  table?: string; rows?: number;
  model?: string; version?: number | string | null;
  pipeline?: string;
}

/** What a restore put back, with a way to it. */
function said(out: Restored): React.ReactNode {
  const from = out.from ? <> from {out.from}</> : null;
  if (out.bucket !== undefined) {
    return <>Restored {number(out.restored ?? 0)} object(s) into bucket{" "}
      <Link to={`/files/${encodeURIComponent(out.bucket)}`}>{out.bucket}</Link>{from}
      {!!out.unchanged && <> ({number(out.unchanged)} already there)</>}, backup {out.backup}</>;
  }
  if (out.table !== undefined) {
    const [db, ...rest] = out.table.split(".");
    return <>Restored {out.rows !== undefined ? `${number(out.rows)} rows ` : ""}into table{" "}
      <Link to={`/tables/${encodeURIComponent(db)}/${encodeURIComponent(rest.join("."))}`}>{out.table}</Link>{from},
      backup {out.backup}</>;
  }
  if (out.model !== undefined) {
    return <>Restored model <Link to={`/models/${encodeURIComponent(out.model)}`}>{out.model}</Link>
      {out.version !== undefined && out.version !== null && <> version {out.version}</>}{from}, backup {out.backup}</>;
  }
  if (out.pipeline !== undefined) {
    return <>Restored pipeline <Link to={`/pipelines/${encodeURIComponent(out.pipeline)}`}>{out.pipeline}</Link>
      {out.version !== undefined && out.version !== null && <> version {out.version}</>}{from},
      backup {out.backup}</>;
  }
  return <>Restored from backup {out.backup}: <code>{JSON.stringify(out)}</code></>;
}

function RestoreDialog({ schedule, backup, item, onClose, onDone }: {
  schedule: string;
  backup: string;
  item: Item;
  onClose: () => void;
  onDone: (notice: React.ReactNode) => void;
}) {
  const [as, setAs] = useState(defaultName(item));
  const [version, setVersion] = useState(item.versions?.length ? String(item.versions[item.versions.length - 1]) : "");
  const [replace, setReplace] = useState(false);
  const run = () => {
    const body: Record<string, unknown> = { schedule, backup, [item.kind]: item.name };
    if (item.versions && version !== "") body.version = Number(version);
    if (replace) body.replace = true;
    else if (as.trim()) body.as = as.trim();
    return post<Restored>("/backups/restore", body);
  };
  return (
    <Confirm title={`Restore ${item.kind} ${item.name}`} confirm="Restore" danger={replace} run={run}
             onClose={onClose} onDone={(out) => onDone(said(out))}>
      <p className="muted">From backup <span className="mono">{backup}</span> of {schedule}, into the running
        platform, as you: nothing else is touched.</p>
      <div className="backup-fields">
        {item.versions && (
          <label>Version
            <select value={version} onChange={(e) => setVersion(e.target.value)}>
              {item.versions.map((v) => <option key={v} value={v}>{v}</option>)}
            </select>
          </label>
        )}
        <label>Restore as
          <input value={replace ? item.name : as} onChange={(e) => setAs(e.target.value)} disabled={replace}
                 autoComplete="off" spellCheck={false} aria-describedby="restore-as-hint" />
        </label>
        <span id="restore-as-hint" className="muted hint">{HINTS[item.kind]}</span>
        {item.kind === "table" && (
          <label className="check">
            <input type="checkbox" checked={replace} onChange={(e) => setReplace(e.target.checked)} />
            Replace the live table (its history keeps what it holds now)
          </label>
        )}
      </div>
    </Confirm>
  );
}

const HINTS: Record<Kind, string> = {
  bucket: "Made if missing; objects already there with the same bytes are left, others overwritten.",
  table: "database.table: a new table unless you replace the live one.",
  model: "The same name adds a new version of that model; another name makes a new model.",
  pipeline: "A new pipeline, or a new version of one with that name.",
};

/** A schedule's fields, as the API takes them. */
function NewSchedule({ onClose, onDone }: { onClose: () => void; onDone: (made: Schedule) => void }) {
  const [name, setName] = useState("");
  const [target, setTarget] = useState("");
  const [cron, setCron] = useState("0 2 * * *");
  const [keepLast, setKeepLast] = useState("0");
  const [keepDaily, setKeepDaily] = useState("7");
  const [keepWeekly, setKeepWeekly] = useState("4");
  const [drill, setDrill] = useState(true);
  const [keyFile, setKeyFile] = useState("");
  const count = (text: string) => (text.trim() === "" ? 0 : Number(text));
  const run = () => post<Schedule>("/backups/schedules", {
    name: name.trim(), target: target.trim(), cron: cron.trim(), key_file: keyFile.trim() || null,
    keep_last: count(keepLast), keep_daily: count(keepDaily), keep_weekly: count(keepWeekly), drill,
  });
  return (
    <Confirm title="New backup schedule" confirm="Create schedule" danger={false} run={run} onClose={onClose} onDone={onDone}>
      <div className="backup-fields">
        <label>Name
          <input value={name} onChange={(e) => setName(e.target.value)} required autoComplete="off" spellCheck={false}
                 placeholder="nightly" />
        </label>
        <label>Target folder
          <input value={target} onChange={(e) => setTarget(e.target.value)} required autoComplete="off" spellCheck={false}
                 placeholder="/srv/backups or s3://bucket/prefix" aria-describedby="schedule-target-hint" />
        </label>
        <span id="schedule-target-hint" className="muted hint">A folder of the server's machine (made if missing), or S3.</span>
        <label>Cron
          <input value={cron} onChange={(e) => setCron(e.target.value)} required autoComplete="off" spellCheck={false}
                 className="mono" aria-describedby="schedule-cron-hint" />
        </label>
        <span id="schedule-cron-hint" className="muted hint">minute hour day month weekday, in UTC:
          {" "}<code>0 2 * * *</code> is every day at 02:00, <code>0 */6 * * *</code> every six hours.</span>
        <div className="row backup-keep">
          <label>Keep daily <input type="number" min={0} value={keepDaily} onChange={(e) => setKeepDaily(e.target.value)} /></label>
          <label>Keep weekly <input type="number" min={0} value={keepWeekly} onChange={(e) => setKeepWeekly(e.target.value)} /></label>
          <label>Keep last <input type="number" min={0} value={keepLast} onChange={(e) => setKeepLast(e.target.value)} /></label>
        </div>
        <span className="muted hint">The newest backup of each of that many days and weeks, and the last ones;
          the others are pruned after each backup. All 0 keeps every backup.</span>
        <label className="check">
          <input type="checkbox" checked={drill} onChange={(e) => setDrill(e.target.checked)} />
          Drill each new backup (restore it into a scratch home and check it)
        </label>
        <label>Key file <span className="muted">(optional)</span>
          <input value={keyFile} onChange={(e) => setKeyFile(e.target.value)} autoComplete="off" spellCheck={false}
                 placeholder="/etc/cumulo/backup.key" aria-describedby="schedule-key-hint" />
        </label>
        <span id="schedule-key-hint" className="muted hint">Encrypts the backups: 32 random bytes on the server's
          machine (<code>head -c 32 /dev/urandom &gt; backup.key</code>), kept apart from the backups.</span>
      </div>
    </Confirm>
  );
}
