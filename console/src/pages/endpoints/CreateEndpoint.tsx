// Create an endpoint from a registered model version: name, replicas and the main settings with
// the API's defaults; checked here first, then by the API (its message shown as it says it).
import { useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { get, post } from "../../api";
import { ErrorBox, PageHeader } from "../../components/ErrorBox";
import { useAction, useApi } from "../../hooks";
import { ModelPicker } from "./ModelPicker";
import { Endpoint, NAME_HINT, NAME_RULE } from "./shared";

interface Cluster { name: string; type: string }

export interface Settings {
  min_replicas: string;
  max_replicas: string;
  target_in_flight: string;
  scale_in_cooldown: string;
  scale_to_zero_after: string;
  max_batch_size: string;
  max_wait_ms: string;
  capture_percent: string;
}

export const DEFAULTS: Settings = {
  min_replicas: "1", max_replicas: "1", target_in_flight: "8", scale_in_cooldown: "60",
  scale_to_zero_after: "300", max_batch_size: "64", max_wait_ms: "2", capture_percent: "0",
};

const FLAGS: Record<keyof Settings, string> = {
  min_replicas: "--min-replicas", max_replicas: "--max-replicas", target_in_flight: "--target-in-flight",
  scale_in_cooldown: "--scale-in-cooldown", scale_to_zero_after: "--scale-to-zero-after",
  max_batch_size: "--max-batch-size", max_wait_ms: "--max-wait-ms", capture_percent: "--capture-percent",
};

/** What is wrong with the settings, by field: the API's own rules, said before it is asked. */
export function checkSettings(s: Settings): Partial<Record<keyof Settings, string>> {
  const n = (key: keyof Settings) => (s[key].trim() === "" ? NaN : Number(s[key]));
  const errors: Partial<Record<keyof Settings, string>> = {};
  const min = n("min_replicas");
  const max = n("max_replicas");
  if (!Number.isInteger(min) || min < 0 || min > 64) errors.min_replicas = "A whole number, 0-64 (0 scales to zero when idle)";
  if (!Number.isInteger(max) || max < 1 || max > 64) errors.max_replicas = "A whole number, 1-64";
  else if (Number.isInteger(min) && max < min) errors.max_replicas = "At least the minimum replicas";
  if (!(n("target_in_flight") > 0)) errors.target_in_flight = "Above 0 (requests in flight per replica)";
  if (!(n("scale_in_cooldown") >= 0)) errors.scale_in_cooldown = "Seconds, 0 or more";
  if (!(n("scale_to_zero_after") >= 0)) errors.scale_to_zero_after = "Seconds, 0 or more";
  const batch = n("max_batch_size");
  if (!Number.isInteger(batch) || batch < 1 || batch > 100000) errors.max_batch_size = "A whole number, 1-100000 rows";
  const wait = n("max_wait_ms");
  if (!(wait >= 0 && wait <= 10000)) errors.max_wait_ms = "0-10000 ms";
  const capture = n("capture_percent");
  if (!(capture >= 0 && capture <= 100)) errors.capture_percent = "0-100 percent of requests";
  return errors;
}

export function settingsBody(s: Settings): Record<string, number> {
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, Number(v)]));
}

/** One labelled number input with its message. */
export function NumberField({ id, label, value, onChange, error, hint, step = "any", min }: {
  id: string;
  label: string;
  value: string;
  onChange: (value: string) => void;
  error?: string;
  hint?: string;
  step?: string;
  min?: number;
}) {
  const described = error ? `${id}-error` : hint ? `${id}-hint` : undefined;
  return (
    <div className="ep-field">
      <label htmlFor={id}>{label}</label>
      <input id={id} type="number" inputMode="decimal" step={step} min={min} value={value}
             aria-invalid={!!error} aria-describedby={described} onChange={(e) => onChange(e.target.value)} />
      {error ? <div id={`${id}-error`} className="ep-invalid">{error}</div>
        : hint ? <div id={`${id}-hint`} className="muted ep-hint">{hint}</div> : null}
    </div>
  );
}

/** The scaling, batching and capture settings: for create, and for an endpoint's settings. */
export function SettingsFields({ prefix, settings, onChange, errors, advanced = true }: {
  prefix: string;
  settings: Settings;
  onChange: (settings: Settings) => void;
  errors: Partial<Record<keyof Settings, string>>;
  advanced?: boolean;
}) {
  const field = (key: keyof Settings, label: string, hint?: string, step = "any") => (
    <NumberField id={`${prefix}-${key}`} label={label} value={settings[key]} step={step} min={0}
                 error={errors[key]} hint={hint} onChange={(value) => onChange({ ...settings, [key]: value })} />
  );
  const tuning = (
    <div className="ep-fields">
      {field("target_in_flight", "Target in-flight requests per replica", "The autoscaler adds replicas above this")}
      {field("scale_in_cooldown", "Scale-in cooldown (s)", "Seconds of lower load before removing a replica")}
      {Number(settings.min_replicas) === 0 && field("scale_to_zero_after", "Scale to zero after (s)", "Idle seconds before the last replica stops")}
      {field("max_batch_size", "Max batch size (rows)", "Requests arriving together share one model call", "1")}
      {field("max_wait_ms", "Max batch wait (ms)", "Longest a request waits for others to join it")}
      {field("capture_percent", "Data capture (%)", "Share of requests written with their answers to a lake table")}
    </div>
  );
  return (
    <>
      <div className="ep-fields">
        {field("min_replicas", "Min replicas", "0 scales to zero when idle", "1")}
        {field("max_replicas", "Max replicas", "The autoscaler stays at or below this", "1")}
      </div>
      {advanced ? <details className="ep-advanced" open={Object.keys(errors).some((k) => !k.endsWith("replicas"))}>
        <summary>Autoscaling, batching and data capture</summary>
        {tuning}
      </details> : tuning}
    </>
  );
}

export default function CreateEndpoint() {
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const [model, setModel] = useState(params.get("model") ?? "");
  const [reference, setReference] = useState(params.get("model") && params.get("version")
    ? `${params.get("model")}:${params.get("version")}` : "");
  const [name, setName] = useState("");
  const [named, setNamed] = useState(false);
  const [cluster, setCluster] = useState("");
  const [open, setOpen] = useState(false);
  const [settings, setSettings] = useState<Settings>(DEFAULTS);
  const [tried, setTried] = useState(false);
  const clusters = useApi((signal) => get<Cluster[]>("/clusters", undefined, signal), []);
  const create = useAction((body: unknown) => post<Endpoint>("/endpoints", body));

  const suggested = model.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 63);
  const shownName = named ? name : suggested;
  const errors = {
    name: !shownName ? "Name the endpoint" : !NAME_RULE.test(shownName) ? `The name must be ${NAME_HINT}` : undefined,
    model: !model ? "Choose a registered model" : !reference ? "Choose a version" : undefined,
    ...checkSettings(settings),
  };
  const invalid = Object.values(errors).some(Boolean);
  const shown = tried ? errors : { name: shownName && !NAME_RULE.test(shownName) ? errors.name : undefined };

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    setTried(true);
    if (invalid) return;
    const body = { name: shownName, model: reference, ...settingsBody(settings), cluster: cluster || null, public: open };
    const made = await create.run(body);
    if (made) navigate(`/endpoints/${encodeURIComponent(made.name)}`);
  };

  const flags = (Object.keys(FLAGS) as (keyof Settings)[])
    .filter((k) => settings[k] !== DEFAULTS[k] && !(k === "max_replicas" && settings[k] === settings.min_replicas))
    .map((k) => ` ${FLAGS[k]} ${settings[k]}`).join("");
  const command = `cumulo endpoints create ${shownName || "NAME"} --model ${reference || "MODEL:VERSION"}${flags}`
    + `${cluster ? ` --cluster ${cluster}` : ""}${open ? " --public" : ""} --wait`;

  return (
    <>
      <div className="breadcrumbs"><Link to="/endpoints">Endpoints</Link> / new</div>
      <PageHeader title="Create endpoint" />
      <form className="panel ep-form" aria-label="Create endpoint" noValidate onSubmit={submit}>
        <h2>Model</h2>
        <div className="ep-fields">
          <ModelPicker model={model} reference={reference} error={(shown as { model?: string }).model}
                       onModel={(m) => { setModel(m); }} onReference={setReference} />
        </div>
        <h2>Endpoint</h2>
        <div className="ep-fields">
          <div className="ep-field">
            <label htmlFor="ep-name">Endpoint name</label>
            <input id="ep-name" value={shownName} maxLength={63} autoComplete="off" spellCheck={false}
                   aria-invalid={!!shown.name} aria-describedby="ep-name-note"
                   onChange={(e) => { setName(e.target.value); setNamed(true); }} />
            {shown.name ? <div id="ep-name-note" className="ep-invalid">{shown.name}</div>
              : <div id="ep-name-note" className="muted ep-hint">{NAME_HINT}; part of its address</div>}
          </div>
          <div className="ep-field">
            <label htmlFor="ep-cluster">Runs on</label>
            <select id="ep-cluster" value={cluster} onChange={(e) => setCluster(e.target.value)}>
              <option value="">This machine (replicas as local processes)</option>
              {(clusters.data ?? []).filter((c) => c.type === "ray").map((c) => (
                <option key={c.name} value={c.name}>{`Ray cluster ${c.name} (Ray Serve)`}</option>
              ))}
            </select>
          </div>
        </div>
        <label style={{ display: "flex", gap: ".5rem", alignItems: "center", marginBottom: ".8rem" }}>
          <input id="ep-public" type="checkbox" checked={open} style={{ margin: 0 }}
                 onChange={(e) => setOpen(e.target.checked)} />
          Public address: its replicas take requests without a token (anyone who can reach the address may score rows)
        </label>
        <h2>Capacity</h2>
        <SettingsFields prefix="ep-new" settings={settings} onChange={setSettings}
                        errors={tried ? checkSettings(settings) : {}} />
        <ErrorBox error={create.error} onClose={create.clear} />
        {tried && invalid && <div className="ep-invalid" role="alert">Fix the fields marked above.</div>}
        <div className="row ep-form-actions">
          <button type="submit" className="primary" disabled={create.busy}>
            {create.busy ? "Creating…" : "Create endpoint"}
          </button>
          <Link to="/endpoints" className="button">Cancel</Link>
        </div>
        <p className="muted ep-cli">The same from a shell: <code>{command}</code></p>
      </form>
    </>
  );
}
