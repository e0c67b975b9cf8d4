import { useCallback, useEffect, useRef, useState } from "react";
import { upload } from "../../api";
import { ErrorBox } from "../../components/ErrorBox";
import { bytes } from "../../format";
import { Progress } from "../../components/Dialogs";
import { LeaveGuard } from "../../components/LeaveGuard";
import { objectPath } from "./paths";

export interface Upload {
  id: number;
  bucket: string;
  key: string;
  size: number;
  fraction: number;
  state: "waiting" | "uploading" | "done" | "failed" | "stopped";
  error?: unknown;
}

interface Job {
  id: number;
  bucket: string;
  key: string;
  file: File;
  stop: AbortController;
}

/** A file and where under the current prefix it goes ("a.csv", or "folder/sub/a.csv"). */
export interface Picked {
  file: File;
  path: string;
}

const PARALLEL = 3;
let nextId = 1;

/** A queue of uploads, three at a time, each with its progress; `onDrained` runs when the
 *  queue empties after at least one upload landed (to list the bucket again). */
export function useUploads(onDrained: () => void) {
  const [items, setItems] = useState<Upload[]>([]);
  const queue = useRef<Job[]>([]);
  const running = useRef(0);
  const landed = useRef(0);
  const drained = useRef(onDrained);
  drained.current = onDrained;

  const update = (id: number, patch: Partial<Upload>) =>
    setItems((list) => list.map((item) => (item.id === id ? { ...item, ...patch } : item)));
  const inFlight = useRef(new Map<number, Job>());

  const pump = useCallback(() => {
    while (running.current < PARALLEL && queue.current.length) {
      const job = queue.current.shift()!;
      running.current += 1;
      inFlight.current.set(job.id, job);
      update(job.id, { state: "uploading" });
      upload(objectPath(job.bucket, job.key), job.file, (fraction) => update(job.id, { fraction }),
             job.file.type || "application/octet-stream", job.stop.signal)
        .then(() => { landed.current += 1; update(job.id, { state: "done", fraction: 1 }); },
              (error) => update(job.id, error?.name === "AbortError" ? { state: "stopped" } : { state: "failed", error }))
        .finally(() => {
          inFlight.current.delete(job.id);
          running.current -= 1;
          if (running.current === 0 && queue.current.length === 0 && landed.current) {
            landed.current = 0;
            drained.current();
          }
          pump();
        });
    }
  }, []);

  const add = useCallback((bucket: string, prefix: string, picked: Picked[]) => {
    const jobs = picked.map(({ file, path }) => ({ id: nextId++, bucket, key: prefix + path, file, stop: new AbortController() }));
    setItems((list) => [
      ...list,
      ...jobs.map((job): Upload => ({ id: job.id, bucket, key: job.key, size: job.file.size, fraction: 0, state: "waiting" })),
    ]);
    queue.current.push(...jobs);
    pump();
  }, [pump]);

  /** Stop one upload, waiting or under way (none when `id` is not given: all of them). */
  const stop = useCallback((id?: number) => {
    const waiting = queue.current.filter((job) => id === undefined || job.id === id);
    queue.current = queue.current.filter((job) => !waiting.includes(job));
    waiting.forEach((job) => update(job.id, { state: "stopped" }));
    for (const job of inFlight.current.values()) if (id === undefined || job.id === id) job.stop.abort();
  }, []);
  // Leaving the bucket stops what it was sending: no upload goes on unseen.
  useEffect(() => () => stop(), [stop]);

  const clearFinished = () => setItems((list) => list.filter((item) => item.state === "uploading" || item.state === "waiting"));
  const active = items.filter((item) => item.state === "uploading" || item.state === "waiting").length;
  return { items, add, clearFinished, stop, active };
}

const STATE_TEXT: Record<Upload["state"], string> = {
  waiting: "Waiting", uploading: "Uploading", done: "Uploaded", failed: "Failed", stopped: "Stopped",
};

export function UploadList({ items, onClear, onStop }: { items: Upload[]; onClear: () => void; onStop: (id: number) => void }) {
  if (items.length === 0) return null;
  const done = items.filter((item) => item.state === "done").length;
  const failed = items.filter((item) => item.state === "failed").length;
  const active = items.filter((item) => item.state === "uploading" || item.state === "waiting").length;
  return (
    <section className="panel uploads" aria-label="Uploads">
      <div className="row">
        <h2>Uploads</h2>
        <span className="muted" aria-live="polite">
          {done} of {items.length} uploaded{failed ? `, ${failed} failed` : ""}{active ? "…" : ""}
        </span>
        <span className="spacer" />
        <button type="button" onClick={onClear} disabled={active === items.length}>Clear finished</button>
      </div>
      <ul>
        {items.map((item) => (
          <li key={item.id} className={`upload upload-${item.state}`}>
            <div className="upload-line">
              <span className="upload-key mono" title={`${item.bucket}/${item.key}`}>{item.key}</span>
              <span className="muted">{bytes(item.size)}</span>
              <span className={`upload-state state state-${item.state === "done" ? "ok" : item.state === "failed" ? "bad" : "info"}`}>
                {STATE_TEXT[item.state]}{item.state === "uploading" ? ` ${Math.round(item.fraction * 100)}%` : ""}
              </span>
              {(item.state === "uploading" || item.state === "waiting") && (
                <button type="button" className="link" onClick={() => onStop(item.id)}
                        aria-label={`Stop the upload of ${item.key}`}>Stop</button>
              )}
            </div>
            <Progress fraction={item.fraction} label={`Upload of ${item.key}`} />
            {item.state === "failed" && <ErrorBox error={item.error} />}
          </li>
        ))}
      </ul>
    </section>
  );
}

/** While uploads are under way, leaving the bucket (for another page, or closing the tab)
 *  asks first: leaving stops them. Folders of the same bucket keep them going. */
export function UploadsGuard({ bucket, active }: { bucket: string; active: number }) {
  const inside = `/files/${encodeURIComponent(bucket)}`;
  return (
    <LeaveGuard when={active > 0} stays={(path) => path === inside || path.startsWith(inside + "/")}
                title="Stop the uploads?" confirm="Leave and stop them">
      <p>{active} upload{active === 1 ? " is" : "s are"} still under way; leaving this bucket stops {active === 1 ? "it" : "them"}.
        What has landed stays.</p>
    </LeaveGuard>
  );
}

/** What a drop holds: files, and the files inside dropped folders with their relative paths. */
export async function droppedFiles(transfer: DataTransfer): Promise<Picked[]> {
  // Entries must be taken while the drop event runs; the list is empty afterwards.
  const entries = [...transfer.items]
    .map((item) => (item.kind === "file" ? item.webkitGetAsEntry?.() : null))
    .filter((entry): entry is FileSystemEntry => !!entry);
  if (entries.length === 0) return [...transfer.files].map((file) => ({ file, path: file.name }));
  const out: Picked[] = [];
  const walk = async (entry: FileSystemEntry, base: string): Promise<void> => {
    if (entry.isFile) {
      const file = await new Promise<File>((resolve, reject) => (entry as FileSystemFileEntry).file(resolve, reject));
      out.push({ file, path: base + file.name });
    } else if (entry.isDirectory) {
      const reader = (entry as FileSystemDirectoryEntry).createReader();
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
        if (batch.length === 0) break;
        for (const child of batch) await walk(child, `${base}${entry.name}/`);
      }
    }
  };
  for (const entry of entries) await walk(entry, "");
  return out;
}

/** Files from an <input type=file>: a folder input gives each file's path inside the folder. */
export function pickedFiles(list: FileList | null): Picked[] {
  return [...(list ?? [])].map((file) => ({ file, path: file.webkitRelativePath || file.name }));
}
