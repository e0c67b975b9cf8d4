// Traffic: the variants and their shares, a shift to a new model version (all at once, canary or
// linear, each step baked and watched), its progress and rollback, and editing weights directly.
import { useId, useState } from "react";
import { Link } from "react-router-dom";
import { patch, post } from "../../api";
import { ErrorBox, State } from "../../components/ErrorBox";
import { number } from "../../format";
import { useAction } from "../../hooks";
import { ModelPicker } from "./ModelPicker";
import { NumberField } from "./CreateEndpoint";
import { apiPath, Endpoint, Metrics, percent, Rollout, share, useNow } from "./shared";

export function VariantsTable({ endpoint, latest }: { endpoint: Endpoint; latest: Metrics | undefined }) {
  return (
    <div className="grid-wrap" tabIndex={0} role="region" aria-label="Variants">
      <table className="grid">
        <thead>
          <tr>
            <th scope="col">Variant</th><th scope="col">Model version</th><th scope="col" className="num">Weight</th>
            <th scope="col">Traffic</th><th scope="col" className="num">Requests/s</th>
            <th scope="col" className="num">p99</th><th scope="col" className="num">Errors</th>
          </tr>
        </thead>
        <tbody>
          {endpoint.variants.map((v) => {
            const m = latest?.variants[v.name];
            const part = share(v, endpoint.variants);
            return (
              <tr key={v.name}>
                <th scope="row" className="ep-row-head">{v.name}</th>
                <td><Link to={`/models/${encodeURIComponent(v.model)}`}>{v.model}</Link>:{v.version}</td>
                <td className="num">{number(v.weight)}</td>
                <td>
                  {v.shadow ? <span className="muted">shadow (copies)</span> : (
                    <span className="ep-share"><span className="ep-bar" aria-hidden="true"><span style={{ width: `${part}%` }} /></span>
                      {percent(part)}</span>
                  )}
                </td>
                <td className="num">{m ? number(m.requests_per_s, 3) : latest ? "0" : "—"}</td>
                <td className="num">{m?.latency_p99_ms != null ? `${number(m.latency_p99_ms, 3)} ms` : "—"}</td>
                <td className="num">{m ? m.errors_4xx + m.errors_5xx : latest ? "0" : "—"}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

const STRATEGIES: [string, string][] = [
  ["canary", "Canary: a share first, then all"],
  ["linear", "Linear: equal steps up to all"],
  ["all_at_once", "All at once"],
];

/** Start a traffic shift to a new model version (PATCH with `model`). */
export function ShiftForm({ endpoint, onDone }: { endpoint: Endpoint; onDone: (e: Endpoint) => void }) {
  const id = useId();
  const first = endpoint.variants.find((v) => !v.shadow) ?? endpoint.variants[0];
  const [model, setModel] = useState(first?.model ?? "");
  const [reference, setReference] = useState("");
  const [strategy, setStrategy] = useState("canary");
  const [canary, setCanary] = useState("10");
  const [step, setStep] = useState("25");
  const [bake, setBake] = useState("60");
  const [errorRate, setErrorRate] = useState("1");
  const [p99, setP99] = useState("");
  const [variant, setVariant] = useState("");
  const [tried, setTried] = useState(false);
  const action = useAction((body: unknown) => patch<Endpoint>(apiPath(endpoint.name), body));

  const errors: Record<string, string | undefined> = {
    model: !reference ? "Choose a model version" : undefined,
    canary: strategy === "canary" && !(Number(canary) > 0 && Number(canary) < 100) ? "Between 0 and 100, not either" : undefined,
    step: strategy === "linear" && !(Number(step) > 0 && Number(step) <= 50) ? "Above 0, at most 50" : undefined,
    bake: !(bake !== "" && Number(bake) >= 0 && Number(bake) <= 86400) ? "0-86400 seconds" : undefined,
    errorRate: errorRate !== "" && !(Number(errorRate) >= 0 && Number(errorRate) <= 100) ? "0-100 percent" : undefined,
    p99: p99 !== "" && !(Number(p99) > 0) ? "Above 0, or empty for no limit" : undefined,
  };
  const shown = tried ? errors : {};
  const steps = strategy === "canary" ? [Number(canary), 100] : strategy === "linear" && Number(step) > 0
    ? [...Array.from({ length: Math.ceil(100 / Number(step)) - 1 }, (_, i) => (i + 1) * Number(step)), 100] : [100];

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    setTried(true);
    if (Object.values(errors).some(Boolean)) return;
    const body: Record<string, unknown> = {
      model: reference, strategy, bake_s: Number(bake),
      max_error_rate: errorRate === "" ? null : Number(errorRate) / 100,
      max_p99_ms: p99 === "" ? null : Number(p99),
    };
    if (strategy === "canary") body.canary_percent = Number(canary);
    if (strategy === "linear") body.step_percent = Number(step);
    if (variant.trim()) body.variant = variant.trim();
    const updated = await action.run(body);
    if (updated) onDone(updated);
  };

  return (
    <form aria-label="Shift traffic to a new model" noValidate onSubmit={submit}>
      <div className="ep-fields">
        <ModelPicker model={model} reference={reference} onModel={setModel} onReference={setReference}
                     error={shown.model} exclude={endpoint.variants.map((v) => `${v.model}:${v.version}`)} />
        <div className="ep-field">
          <label htmlFor={`${id}-strategy`}>Strategy</label>
          <select id={`${id}-strategy`} value={strategy} onChange={(e) => setStrategy(e.target.value)}>
            {STRATEGIES.map(([value, label]) => <option key={value} value={value}>{label}</option>)}
          </select>
        </div>
        {strategy === "canary" && <NumberField id={`${id}-canary`} label="Canary traffic (%)" value={canary}
                                               onChange={setCanary} error={shown.canary} hint="The new version's share in the first step" />}
        {strategy === "linear" && <NumberField id={`${id}-step`} label="Step (%)" value={step} onChange={setStep}
                                               error={shown.step} hint="The share added at each step" />}
        <NumberField id={`${id}-bake`} label="Bake time per step (s)" value={bake} onChange={setBake} error={shown.bake}
                     hint="Watched this long before the next step" min={0} />
        <NumberField id={`${id}-errors`} label="Roll back above error rate (%)" value={errorRate} onChange={setErrorRate}
                     error={shown.errorRate} hint="5xx share of the new version's requests; empty: no limit" />
        <NumberField id={`${id}-p99`} label="Roll back above p99 latency (ms)" value={p99} onChange={setP99}
                     error={shown.p99} hint="Empty: no limit" />
        <div className="ep-field">
          <label htmlFor={`${id}-variant`}>New variant name (optional)</label>
          <input id={`${id}-variant`} value={variant} placeholder={reference ? reference.replace(/[:@]/, "-") : "NAME-VERSION"}
                 onChange={(e) => setVariant(e.target.value)} />
        </div>
      </div>
      <p className="muted">Steps: {steps.filter((s) => Number.isFinite(s)).map((s) => `${number(s)}%`).join(" → ")}, each baked
        {" "}{bake || 0} s; the old variants share the rest and are removed after the last step.</p>
      <ErrorBox error={action.error} onClose={action.clear} />
      <button type="submit" className="primary" disabled={action.busy}>{action.busy ? "Starting…" : "Start traffic shift"}</button>
    </form>
  );
}

/** Set the variants' weights at once (PATCH with `weights`). */
export function WeightsForm({ endpoint, onDone }: { endpoint: Endpoint; onDone: (e: Endpoint) => void }) {
  const id = useId();
  const [weights, setWeights] = useState<Record<string, string>>(
    Object.fromEntries(endpoint.variants.map((v) => [v.name, String(v.weight)])));
  const action = useAction((body: unknown) => patch<Endpoint>(apiPath(endpoint.name), body));
  const parsed = endpoint.variants.map((v) => ({ ...v, weight: Number(weights[v.name]) }));
  const bad = parsed.filter((v) => weights[v.name] === "" || !(v.weight >= 0)).map((v) => v.name);

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    if (bad.length) return;
    const updated = await action.run({ weights: Object.fromEntries(parsed.map((v) => [v.name, v.weight])) });
    if (updated) onDone(updated);
  };

  return (
    <form aria-label="Edit weights" noValidate onSubmit={submit}>
      <div className="ep-fields">
        {parsed.map((v, i) => (
          <NumberField key={v.name} id={`${id}-${i}`} label={`Weight of ${v.name}`} value={weights[v.name]} min={0}
                       onChange={(value) => setWeights({ ...weights, [v.name]: value })}
                       error={bad.includes(v.name) ? "A number, 0 or more" : undefined}
                       hint={v.shadow ? "shadow: gets copies" : bad.length ? undefined : `${percent(share(v, parsed))} of the traffic`} />
        ))}
      </div>
      <p className="muted">Each variant gets weight ÷ sum of weights of the traffic, at once (no baking).</p>
      <ErrorBox error={action.error} onClose={action.clear} />
      <button type="submit" className="primary" disabled={action.busy}>{action.busy ? "Saving…" : "Save weights"}</button>
    </form>
  );
}

/** The update panel: a shift to a new model, or new weights. */
export function UpdateTraffic({ endpoint, onDone, onClose }: {
  endpoint: Endpoint;
  onDone: (e: Endpoint) => void;
  onClose: () => void;
}) {
  const [mode, setMode] = useState<"shift" | "weights">("shift");
  return (
    <section className="panel ep-update" aria-labelledby="ep-update-title">
      <div className="row">
        <h2 id="ep-update-title">Update traffic</h2>
        <span className="spacer" />
        <button type="button" className="link" onClick={onClose}>Close</button>
      </div>
      <div className="tabs" role="tablist" aria-label="How to update">
        <button type="button" role="tab" aria-selected={mode === "shift"} onClick={() => setMode("shift")}>Shift to a new model version</button>
        <button type="button" role="tab" aria-selected={mode === "weights"} onClick={() => setMode("weights")}>Edit weights</button>
      </div>
      {mode === "shift" ? <ShiftForm endpoint={endpoint} onDone={onDone} /> : <WeightsForm endpoint={endpoint} onDone={onDone} />}
    </section>
  );
}

function fraction(r: Rollout, now: number): number {
  if (r.state === "done" || r.state === "finishing") return 1;
  const baked = r.state === "baking" && r.step_started_at && r.bake_s > 0
    ? Math.min(1, (now / 1000 - r.step_started_at) / r.bake_s) : 0;
  return Math.min(1, (r.step + baked) / Math.max(1, r.steps.length));
}

/** A traffic shift under way (or the last one): its steps, bake, log, and the rollback button. */
export function RolloutPanel({ endpoint, onDone }: { endpoint: Endpoint; onDone: (e: Endpoint) => void }) {
  const r = endpoint.rollout;
  const active = !!r && endpoint.state === "updating";
  const now = useNow(active);
  const rollback = useAction(() => post<Endpoint>(apiPath(endpoint.name, "/rollback")));
  if (!r) return null;
  const done = fraction(r, now);
  const current = r.steps[Math.min(r.step, r.steps.length - 1)];
  const bakeLeft = r.state === "baking" && r.step_started_at ? Math.max(0, r.bake_s - (now / 1000 - r.step_started_at)) : null;
  const label = `Traffic shift to ${r.variant}`;
  const log = (
    <ol className="ep-log">
      {r.log.map((entry, i) => (
        <li key={i}><time className="muted">{new Date(entry.at * 1000).toLocaleTimeString("en-GB")}</time> {entry.event}</li>
      ))}
    </ol>
  );
  if (!active) {
    return (
      <details className="ep-last-shift">
        <summary>Last traffic shift: {r.strategy.replace(/_/g, " ")} to {r.variant} — <State state={r.state} />
          {r.ended_at ? ` ${new Date(r.ended_at * 1000).toLocaleString("en-GB")}` : ""}</summary>
        {r.reason && <p>{r.reason}</p>}
        {log}
      </details>
    );
  }
  return (
    <section className="panel ep-rollout" aria-label={label}>
      <div className="row">
        <h2>{label}</h2>
        <State state={r.state} />
        <span className="spacer" />
        {(r.state === "shifting" || r.state === "baking") && (
          <button type="button" className="danger" disabled={rollback.busy}
                  onClick={async () => { const e = await rollback.run(); if (e) onDone(e); }}>
            {rollback.busy ? "Rolling back…" : "Roll back"}
          </button>
        )}
      </div>
      <p>
        {r.strategy.replace(/_/g, " ")} by {r.by ?? "—"}: step {Math.min(r.step + 1, r.steps.length)} of {r.steps.length},
        {" "}{r.variant} gets <strong>{number(current)}%</strong> of the traffic
        {bakeLeft !== null ? `; baking, ${Math.ceil(bakeLeft)} s left` : r.state === "shifting" ? "; replicas loading it" : ""}.
        {r.max_error_rate !== null || r.max_p99_ms !== null ? (
          <span className="muted"> Rolls back by itself above {[
            r.max_error_rate !== null ? `${number(r.max_error_rate * 100)}% errors` : "",
            r.max_p99_ms !== null ? `${number(r.max_p99_ms)} ms p99` : ""].filter(Boolean).join(" or ")}.</span>
        ) : null}
      </p>
      <div className="ep-steps" aria-hidden="true">
        {r.steps.map((s, i) => (
          <span key={i} className={i < r.step ? "ep-step past" : i === r.step ? "ep-step now" : "ep-step"}>{number(s)}%</span>
        ))}
      </div>
      <div className="progress" role="progressbar" aria-label="Shift progress" aria-valuemin={0} aria-valuemax={100}
           aria-valuenow={Math.round(done * 100)}>
        <div style={{ width: `${Math.round(done * 100)}%` }} />
      </div>
      {r.reason && <p className="ep-invalid">{r.reason}</p>}
      <ErrorBox error={rollback.error} onClose={rollback.clear} />
      {log}
    </section>
  );
}
