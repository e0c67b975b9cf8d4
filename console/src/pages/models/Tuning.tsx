// Tuning studies (`cumulo tune`): each is an MLflow run tagged cumulo.tuning, with the study's
// settings as params, its trials in trials.json once it ends, and one nested run per trial.
import { useEffect, useState } from "react";
import { Link, useParams } from "react-router-dom";
import { get, send } from "../../api";
import { Empty, ErrorBox, Loading, PageHeader, State } from "../../components/ErrorBox";
import { number, seconds, when } from "../../format";
import { useApi } from "../../hooks";
import { Table } from "../jobs/shared";
import { HistoryChart } from "./HistoryChart";
import { metrics, mlflow, modelPath, params, Run, tags, Version } from "./types";

interface Experiment { experiment_id: string; name: string }
interface Trial {
  number: number;
  params: Record<string, unknown>;
  state: string;
  value: number | null;
  job: string | null;
  run_id: string | null;
  seconds: number | null;
  reason?: string | null;
}

const TUNING = "tags.`cumulo.tuning` = 'true'";
const statusText = (s: string) => s.toLowerCase();
const studyPath = (id: string) => `/models/-/tuning/${id}`;

export function StudyList() {
  const studies = useApi(async (signal) => {
    const found = await mlflow<{ experiments?: Experiment[] }>("POST", "experiments/search", { max_results: 1000 }, signal);
    const experiments = found.experiments ?? [];
    if (!experiments.length) return { experiments, runs: [] as Run[] };
    const runs = await mlflow<{ runs?: Run[] }>("POST", "runs/search", {
      experiment_ids: experiments.map((e) => e.experiment_id), filter: TUNING,
      order_by: ["attributes.start_time DESC"], max_results: 500,
    }, signal);
    return { experiments, runs: runs.runs ?? [] };
  }, [], 10000);
  const names = Object.fromEntries((studies.data?.experiments ?? []).map((e) => [e.experiment_id, e.name]));
  return (
    <>
      <ErrorBox error={studies.error} />
      {!studies.data && studies.loading && <Loading what="Loading tuning studies (MLflow starts on first use, a few seconds)" />}
      {studies.data && studies.data.runs.length === 0 && (
        <Empty>No tuning studies yet. Run one:{" "}
          <code>cumulo tune --name churn --table shop.customers --target churned --space '{"{"}"num_leaves": {"{"}"low": 8, "high": 128{"}}"}' --objective roc_auc --max-trials 16</code>
        </Empty>
      )}
      {studies.data && studies.data.runs.length > 0 && (
        <Table label="Tuning studies" head={["Study", "Objective", "Strategy", "Trials", "Best", "Status", "Started", "Duration"]}>
          {studies.data.runs.map((run) => {
            const p = params(run);
            const objective = p.objective ?? tags(run)["cumulo.objective"] ?? "";
            const best = metrics(run)[`best_${objective}`];
            const end = run.info.end_time ?? (run.info.status === "RUNNING" ? Date.now() : undefined);
            return (
              <tr key={run.info.run_id}>
                <td><Link to={studyPath(run.info.run_id)}>{names[run.info.experiment_id] ?? run.info.run_name}</Link>
                  <div className="muted mono ops-small">{run.info.run_id.slice(0, 12)}</div></td>
                <td>{objective} {p.direction && <span className="muted">({p.direction})</span>}</td>
                <td>{p.strategy ?? "—"}</td>
                <td className="num">{p.max_trials ?? "—"}{p.max_parallel ? <span className="muted"> · {p.max_parallel} at once</span> : null}</td>
                <td className="num">{best === undefined ? "—" : number(best, 5)}</td>
                <td><State state={statusText(run.info.status)} /></td>
                <td>{when(run.info.start_time)}</td>
                <td className="num">{run.info.start_time && end ? seconds((end - run.info.start_time) / 1000) : "—"}</td>
              </tr>
            );
          })}
        </Table>
      )}
    </>
  );
}

async function loadTrials(run: Run, signal: AbortSignal): Promise<{ trials: Trial[]; from: string }> {
  // trials.json is written when the study ends; until then the trials' own runs say how it goes.
  const listed = await mlflow<{ files?: { path: string }[] }>("GET", "artifacts/list", undefined, signal,
                                                              { run_id: run.info.run_id });
  if ((listed.files ?? []).some((f) => f.path === "trials.json")) {
    const response = await send("GET", "/mlflow/get-artifact", {
      query: { run_id: run.info.run_id, path: "trials.json" }, signal, headers: { accept: "*/*" } });
    const trials = JSON.parse(await response.text()) as Trial[];
    if (Array.isArray(trials)) return { trials, from: "trials.json" };
  }
  const objective = params(run).objective ?? tags(run)["cumulo.objective"];
  const children = await mlflow<{ runs?: Run[] }>("POST", "runs/search", {
    experiment_ids: [run.info.experiment_id],
    filter: `tags.\`mlflow.parentRunId\` = '${run.info.run_id}'`,
    order_by: ["attributes.start_time ASC"], max_results: 1000,
  }, signal);
  const state: Record<string, string> = { FINISHED: "complete", RUNNING: "running", FAILED: "failed", KILLED: "stopped", SCHEDULED: "queued" };
  const trials = (children.runs ?? []).map((child, i): Trial => {
    const value = metrics(child)[objective];
    const start = child.info.start_time;
    return {
      number: i, params: params(child), state: state[child.info.status] ?? statusText(child.info.status),
      value: value ?? null, job: tags(child)["cumulo.job_id"] ?? null, run_id: child.info.run_id,
      seconds: start && child.info.end_time ? (child.info.end_time - start) / 1000 : null,
    };
  });
  return { trials, from: "runs" };
}

const TRIAL_STATE: Record<string, string> = { complete: "ok", pruned: "muted", failed: "bad", running: "info", stopped: "muted", queued: "wait" };

export function StudyPage() {
  const { runId = "" } = useParams();
  // The study's run is asked again every 5 s while it runs, so its end (and the model it
  // registers) shows without a reload.
  const [live, setLive] = useState(true);
  const run = useApi((signal) => mlflow<{ run: Run }>("GET", "runs/get", undefined, signal, { run_id: runId }).then((r) => r.run),
                     [runId], live ? 5000 : undefined);
  const running = run.data?.info.status === "RUNNING";
  useEffect(() => { if (run.data) setLive(running); }, [run.data, running]);
  const trials = useApi((signal) => run.data ? loadTrials(run.data, signal) : Promise.resolve(undefined),
                        [run.data?.info.run_id, run.data?.info.status], running ? 5000 : undefined);
  const p = run.data ? params(run.data) : {};
  const t = run.data ? tags(run.data) : {};
  const objective = p.objective ?? t["cumulo.objective"] ?? "objective";
  const direction = (p.direction === "minimize" ? "minimize" : "maximize") as "maximize" | "minimize";
  const study = run.data ? (run.data.info.run_name ?? "").replace(/^tune /, "") : "";
  // The best trial's model, registered as a version tagged with the study's run (when one was).
  const versions = useApi(async (signal) => {
    if (!study) return [];
    const models = await get<{ name: string }[]>("/models", undefined, signal);
    if (!models.some((m) => m.name === study)) return [];
    return get<Version[]>(`${modelPath(study)}/versions`, undefined, signal);
  }, [study, run.data?.info.status]);
  const registered = (versions.data ?? []).find((v) => v.tags["cumulo.tuning_run"] === runId);

  const crumbs = (
    <nav className="breadcrumbs" aria-label="Breadcrumbs">
      <Link to="/models">Models</Link> / <Link to="/models/-/tuning">Tuning</Link> / {study || runId}
    </nav>
  );
  if (!run.data) return <>{crumbs}<ErrorBox error={run.error} />{run.loading && <Loading what="Loading the study" />}</>;

  const list = trials.data?.trials ?? [];
  const complete = list.filter((x) => x.state === "complete" && typeof x.value === "number");
  const best = complete.reduce<Trial | undefined>((b, x) => !b || (direction === "maximize" ? x.value! > b.value! : x.value! < b.value!) ? x : b, undefined);
  const keys = [...new Set(list.flatMap((x) => Object.keys(x.params)))];
  const space = parseSpace(p.search_space);
  const info = run.data.info;
  return (
    <>
      {crumbs}
      <PageHeader title={`Tuning ${study}`}>
        <State state={statusText(info.status)} />
      </PageHeader>
      <div className="cards">
        <div className="card"><div className="label">Best {objective}</div>
          <div className="value">{best ? number(best.value, 5) : "—"}</div>
          <div className="sub">{best ? `trial ${best.number}` : "no trial completed yet"}</div></div>
        <div className="card"><div className="label">Trials</div>
          <div className="value">{list.length}{p.max_trials ? <span className="muted"> / {p.max_trials}</span> : null}</div>
          <div className="sub">{complete.length} complete · {list.filter((x) => x.state === "pruned").length} pruned ·{" "}
            {list.filter((x) => x.state === "failed").length} failed</div></div>
        <div className="card"><div className="label">Strategy</div><div className="value">{p.strategy ?? "—"}</div>
          <div className="sub">{p.max_parallel ?? 1} at once{p.early_stopping === "True" ? ", early stopping" : ""}</div></div>
        <div className="card"><div className="label">Model</div>
          <div className="value">{registered ? <Link to={`${modelPath(study)}?version=${registered.version}`}>{study} v{registered.version}</Link> : "—"}</div>
          <div className="sub">{registered ? "the best trial's model" : info.status === "RUNNING" ? "registered when the study ends" : "none registered"}</div></div>
      </div>

      <section className="panel ops-panel study-history" aria-label="Optimization history">
        <ErrorBox error={trials.error} />
        {!trials.data && trials.loading && <Loading what="Loading trials" />}
        {trials.data && (
          <HistoryChart objective={objective} direction={direction}
                        points={complete.map((x) => ({ trial: x.number, value: x.value! }))} />
        )}
      </section>

      <section className="panel ops-panel" aria-labelledby="study-trials">
        <h2 id="study-trials">Trials</h2>
        {trials.data && list.length === 0 && <Empty>No trial has started yet.</Empty>}
        {list.length > 0 && (
          <Table label="Trials" head={["Trial", "State", objective, ...keys, "Time", "Job", "Note"]}>
            {list.map((x) => (
              <tr key={x.number} className={x === best ? "ops-selected" : undefined}>
                <td className="num">{x.number}{x === best && <span className="best-mark"> ★ best</span>}</td>
                <td><span className={`state state-${TRIAL_STATE[x.state] ?? "muted"}`}>{x.state}</span></td>
                <td className="num">{x.value === null ? "—" : number(x.value, 6)}</td>
                {keys.map((k) => <td key={k} className={typeof x.params[k] === "number" ? "num" : undefined}>{show(x.params[k])}</td>)}
                <td className="num">{x.seconds === null ? "—" : seconds(x.seconds)}</td>
                <td>{x.job ? <Link to={`/jobs/${x.job}`}>{x.job}</Link> : "—"}</td>
                <td className="muted" title={x.reason ?? undefined}>{x.reason ?? ""}</td>
              </tr>
            ))}
          </Table>
        )}
      </section>

      <div className="columns">
        <section className="panel ops-panel" aria-labelledby="study-settings">
          <h2 id="study-settings">Settings</h2>
          <dl className="props">
            <dt>Objective</dt><dd>{objective} ({direction})</dd>
            <dt>Strategy</dt><dd>{p.strategy ?? "—"}</dd>
            <dt>Most trials</dt><dd>{p.max_trials ?? "—"}</dd>
            <dt>At once</dt><dd>{p.max_parallel ?? "—"}</dd>
            <dt>Early stopping</dt><dd>{p.early_stopping === "True" ? "yes (median pruner)" : "no"}</dd>
            <dt>Started</dt><dd>{when(info.start_time)}</dd>
            <dt>Ended</dt><dd>{when(info.end_time)}</dd>
            <dt>MLflow run</dt><dd className="mono ops-small">{info.run_id}</dd>
          </dl>
        </section>
        <section className="panel ops-panel" aria-labelledby="study-space">
          <h2 id="study-space">Search space</h2>
          {space.length === 0 ? <p className="muted">Not recorded.</p> : (
            <Table label="Search space" head={["Hyperparameter", "Range or choices", "Best"]}>
              {space.map(([k, v]) => <tr key={k}><td>{k}</td><td className="mono">{v}</td>
                <td>{best ? show(best.params[k]) : p[`best.${k}`] ?? "—"}</td></tr>)}
            </Table>
          )}
        </section>
      </div>
    </>
  );
}

function show(value: unknown): string {
  if (value === undefined || value === null) return "—";
  if (typeof value === "number") return number(value, 5);
  return String(value);
}

function parseSpace(text: string | undefined): [string, string][] {
  if (!text) return [];
  try {
    const space = JSON.parse(text) as Record<string, unknown>;
    return Object.entries(space).map(([k, v]) => {
      if (Array.isArray(v)) return [k, `one of ${v.map(String).join(", ")}`];
      if (v && typeof v === "object") {
        const r = v as Record<string, unknown>;
        if (Array.isArray(r.choices)) return [k, `one of ${r.choices.map(String).join(", ")}`];
        return [k, `${r.low} to ${r.high}${r.log ? ", log scale" : ""}${r.step ? `, step ${r.step}` : ""}`];
      }
      return [k, String(v)];
    });
  } catch {
    return [["search_space", text]];
  }
}
