// Invoke: send a request body to the endpoint (through the control plane, with the sign-in
// cookie) and show the answer, its status, latency and the variant that answered.
import { useEffect, useId, useState } from "react";
import { ApiError, send } from "../../api";
import { ErrorBox } from "../../components/ErrorBox";
import { Endpoint, GENERIC_SAMPLE, samplePayload } from "./shared";

interface Answer {
  status: number;
  ms: number;
  variant: string | null;
  body: string;
}

export function InvokePanel({ endpoint }: { endpoint: Endpoint }) {
  const id = useId();
  const live = endpoint.variants.filter((v) => !v.shadow);
  const [pinned, setPinned] = useState("");
  const target = live.find((v) => v.name === pinned)
    ?? [...live].sort((a, b) => b.weight - a.weight)[0] ?? endpoint.variants[0];
  const [body, setBody] = useState("");
  const [edited, setEdited] = useState(false);
  const [sample, setSample] = useState<{ text: string; from: string | null }>();
  const [answer, setAnswer] = useState<Answer>();
  const [error, setError] = useState<{ error: unknown; ms: number }>();
  const [busy, setBusy] = useState(false);

  // The sample request from the target variant's signature, while the user has not typed.
  const key = target ? `${target.model}:${target.version}` : "";
  useEffect(() => {
    if (!target) return;
    const controller = new AbortController();
    samplePayload(target.model, target.version, controller.signal).then(
      (text) => setSample({ text: text ?? GENERIC_SAMPLE, from: text ? key : null }),
      (exc) => { if (exc?.name !== "AbortError") setSample({ text: GENERIC_SAMPLE, from: null }); });
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
  useEffect(() => {
    if (sample && !edited) setBody(sample.text);
  }, [sample, edited]);

  const invoke = async (event: React.FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    const started = performance.now();
    try {
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (pinned) headers["x-cumulo-variant"] = pinned;
      const response = await send("POST", `/endpoints/${encodeURIComponent(endpoint.name)}/invocations`, { body, headers });
      const text = await response.text();
      let pretty = text;
      try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch { /* not JSON: as it came */ }
      setAnswer({ status: response.status, ms: performance.now() - started, variant: response.headers.get("x-cumulo-variant"), body: pretty });
    } catch (exc) {
      setAnswer(undefined);
      setError({ error: exc, ms: performance.now() - started });
    } finally {
      setBusy(false);
    }
  };

  const ready = endpoint.state === "in_service" || endpoint.state === "updating";
  return (
    <section className="panel" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>Invoke</h2>
      <form onSubmit={invoke} aria-label="Invoke the endpoint" className="stack">
        <div className="row">
          <label htmlFor={`${id}-variant`}>Variant</label>
          <select id={`${id}-variant`} value={pinned} onChange={(e) => setPinned(e.target.value)}>
            <option value="">Any, by weight</option>
            {live.map((v) => <option key={v.name} value={v.name}>{v.name}</option>)}
          </select>
        </div>
        <div>
          <label htmlFor={`${id}-body`}>Request body (JSON)</label>
          <textarea id={`${id}-body`} className="ep-json" rows={8} spellCheck={false} value={body}
                    aria-describedby={`${id}-note`}
                    onChange={(e) => { setBody(e.target.value); setEdited(true); }} />
          <div id={`${id}-note`} className="muted ep-hint">
            {sample?.from ? `A sample row from the signature of ${sample.from}; ` : sample ? "The model has no column signature: send the columns it was trained on; " : ""}
            also takes <code>dataframe_split</code>, <code>instances</code> or <code>inputs</code>.
          </div>
        </div>
        <div className="row">
          <button type="submit" className="primary" disabled={busy || !body.trim()}>{busy ? "Sending…" : "Send"}</button>
          {edited && sample && (
            <button type="button" onClick={() => { setEdited(false); setBody(sample.text); }}>Reset to the sample</button>
          )}
          {!ready && <span className="muted">The endpoint answers once it is in service.</span>}
        </div>
      </form>
      {error && (
        <>
          <ErrorBox error={error.error} />
          <p className="muted">
            {error.error instanceof ApiError && error.error.status ? `${error.error.status} · ` : ""}{Math.round(error.ms)} ms
          </p>
        </>
      )}
      {answer && (
        <div className="stack" aria-live="polite">
          <p className="ep-answer-line" role="status">
            <span className="state state-ok">{answer.status}</span> {answer.ms < 10 ? answer.ms.toFixed(1) : Math.round(answer.ms)} ms
            {answer.variant ? <> · answered by <strong>{answer.variant}</strong></> : null}
          </p>
          <pre className="ep-response" aria-label="Response" tabIndex={0}>{answer.body}</pre>
        </div>
      )}
      <details className="ep-code">
        <summary>Call it from code</summary>
        <p className="muted">Through the control plane, with a token (<code>cumulo tokens create NAME</code>):</p>
        <pre tabIndex={0}>{`curl -X POST ${window.location.origin}/endpoints/${endpoint.name}/invocations \\
  -H "Authorization: Bearer $CUMULO_TOKEN" -H "Content-Type: application/json" \\
  -d '${body.replace(/\s*\n\s*/g, " ").replace(/'/g, "'\\''")}'`}</pre>
        <p className="muted">Or from the CLI: <code>cumulo endpoints invoke {endpoint.name} -d @request.json</code>;
          on this machine, the replicas answer directly at <code>{endpoint.url}/invocations</code>, with the same token{endpoint.public ? " (or none: the endpoint is public)" : ""}.</p>
      </details>
    </section>
  );
}
