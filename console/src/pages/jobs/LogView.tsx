// A job attempt's log: read whole once it has ended, streamed live while it runs
// (GET /jobs/{id}/logs?follow=true answers plain text that grows until the attempt ends).
import { useEffect, useLayoutEffect, useRef, useState } from "react";
import { send, url } from "../../api";
import { ErrorBox } from "../../components/ErrorBox";

const KEEP = 2_000_000; // characters kept on the page; the download has the whole log

export function LogView({ jobId, attempt, follow, onEnd }: {
  jobId: string;
  attempt: number;
  follow: boolean;
  onEnd?: () => void;
}) {
  const [text, setText] = useState("");
  const [cut, setCut] = useState(false);
  const [phase, setPhase] = useState<"loading" | "live" | "done">("loading");
  const [error, setError] = useState<unknown>();
  const [stuck, setStuck] = useState(true);
  const box = useRef<HTMLPreElement>(null);
  // Whether to follow is decided when the attempt's log is first opened: a job that ends while
  // it is shown ends the stream, which is not restarted.
  const followAtStart = useRef(follow);
  const onEndRef = useRef(onEnd);
  onEndRef.current = onEnd;

  useEffect(() => {
    const controller = new AbortController();
    const decoder = new TextDecoder();
    let offset = 0;
    const live = followAtStart.current;
    setText(""); setCut(false); setError(undefined); setPhase("loading");
    const append = (piece: string) => {
      if (!piece) return;
      setText((before) => {
        const next = before + piece;
        if (next.length <= KEEP) return next;
        setCut(true);
        const from = next.indexOf("\n", next.length - KEEP);
        return next.slice(from < 0 ? next.length - KEEP : from + 1);
      });
    };
    (async () => {
      for (let failures = 0; ; ) {
        try {
          const response = await send("GET", `/jobs/${jobId}/logs`, {
            query: { attempt, follow: live || undefined, offset: offset || undefined },
            headers: { accept: "text/plain" }, signal: controller.signal,
          });
          if (live) setPhase("live");
          const reader = response.body!.getReader();
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            offset += value.length;
            failures = 0;
            append(decoder.decode(value, { stream: true }));
          }
          append(decoder.decode());
          setPhase("done");
          if (live) onEndRef.current?.();
          return;
        } catch (exc) {
          if (controller.signal.aborted) return;
          // A dropped stream picks up where it stopped; a refusal is shown as the API said it.
          if (!live || ++failures > 4 || (exc as { status?: number }).status) {
            setError(exc);
            setPhase("done");
            return;
          }
          await new Promise((resolve) => window.setTimeout(resolve, 1000 * failures));
          if (controller.signal.aborted) return;
        }
      }
    })();
    return () => controller.abort();
  }, [jobId, attempt]);

  // Keep the newest line in view, unless the reader has scrolled up to read.
  useLayoutEffect(() => {
    const el = box.current;
    if (el && stuck) el.scrollTop = el.scrollHeight;
  }, [text, stuck]);
  const onScroll = () => {
    const el = box.current;
    if (el) setStuck(el.scrollHeight - el.scrollTop - el.clientHeight < 24);
  };

  return (
    <div className="job-log">
      <div className="row job-log-bar">
        <span className={`live-dot ${phase === "live" ? "on" : ""}`} aria-hidden="true" />
        <span role="status" className="muted">
          {phase === "loading" ? "Opening the log…" : phase === "live" ? "Following live" : "Complete"}
        </span>
        <span className="spacer" />
        {!stuck && phase === "live" && (
          <button type="button" className="link" onClick={() => setStuck(true)}>Follow the end ↓</button>
        )}
        <a href={url(`/jobs/${jobId}/logs`, { attempt })} download={`${jobId}-attempt-${attempt}.log`}>Download</a>
      </div>
      <ErrorBox error={error} />
      {cut && <p className="muted ops-small">Only the last {KEEP.toLocaleString("en-US")} characters are shown; download the whole log.</p>}
      <pre ref={box} className="job-log-text" role="log" aria-live="off" aria-label={`Log of attempt ${attempt}`}
           tabIndex={0} onScroll={onScroll}>
        {text || (phase === "done" && !error ? <span className="muted">(the log is empty)</span>
          : phase === "live" ? <span className="muted">(waiting for the first line…)</span> : null)}
      </pre>
    </div>
  );
}
