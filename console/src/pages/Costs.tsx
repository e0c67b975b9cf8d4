// Cost explorer: use and cost by day, service, tag and cluster over a window, priced by the
// server's price sheets (AWS's on-demand list prices unless set otherwise, and your own
// hardware's), with the figures, the month-end forecast and the budgets.
import { Link, useSearchParams } from "react-router-dom";
import { can, get } from "../api";
import { Chart } from "../components/Chart";
import { Empty, ErrorBox, Loading, PageHeader } from "../components/ErrorBox";
import { dollars, number } from "../format";
import { useApi } from "../hooks";
import { AWS_LIST, isAwsList, Prices, Table } from "./jobs/shared";
import "./Costs.css";

interface Figures {
  cpu_seconds: number;
  memory_gb_seconds: number;
  gpu_seconds: number;
  wall_seconds: number;
  cost_usd: number;
  count: number;
  shard_hours?: number; // streams only: present when some stream was used
  put_units?: number;
  cloud_usd?: number; // both sheets, side by side
  own_usd?: number;
}
interface Forecast { month: string; spent_usd: number; daily_rate_usd: number; days_left: number; forecast_usd: number; method: string }
interface Forecasts extends Forecast { primary: string; sheets: Record<"cloud" | "own", Forecast> }
interface Budget {
  name: string; scope: string; period: string; amount: number; spent: number; percent: number;
  alerts: number[]; actions: { at: number; action: string }[]; acting: string[];
}
type Row = Figures & Record<string, string | number>;
interface Summary { by: string; since: string | null; until: string | null; rows: Row[]; total: Figures; prices: Prices }
interface Cluster { name: string; type: string }

/** What use would cost at AWS's on-demand list prices, whatever this server's price sheet. */
const awsCost = (f: Figures) => (f.cpu_seconds * AWS_LIST.vcpu_hour + f.memory_gb_seconds * AWS_LIST.gb_hour
  + f.gpu_seconds * AWS_LIST.gpu_hour) / 3600
  + (f.shard_hours ?? 0) * AWS_LIST.shard_hour + (f.put_units ?? 0) * AWS_LIST.million_put_units / 1e6;

const WINDOWS = [["7", "Last 7 days"], ["30", "Last 30 days"], ["90", "Last 90 days"]];
const GROUPS: [string, string][] = [["day", "Day"], ["kind", "Service"], ["tag", "Tag"], ["cluster", "Cluster"],
                                    ["user", "User"], ["item", "Job, endpoint, build or stream"],
                                    ["resource", "Resource (pipeline, notebook, bucket, table...)"]];
const SERVICE: Record<string, string> = { job: "Jobs", endpoint: "Endpoints", environment: "Environment builds", stream: "Streams",
                                          storage: "Storage", sql: "SQL" };
const hours = (s: number) => number(s / 3600, 3);

export default function Costs() {
  const [params, setParams] = useSearchParams();
  const days = WINDOWS.some(([d]) => d === params.get("days")) ? params.get("days")! : "7";
  const kind = params.get("kind") ?? "";
  const group = GROUPS.some(([g]) => g === params.get("by")) ? params.get("by")! : "day";
  const set = (key: string, value: string) => {
    const next = new URLSearchParams(params);
    if (value) next.set(key, value); else next.delete(key);
    setParams(next, { replace: true });
  };

  const data = useApi(async (signal) => {
    const one = (by: string) => get<Summary>("/costs", { by, since: `${days}d`, kind }, signal);
    const [day, service, tag, cluster, table, clusters] = await Promise.all([
      one("day"), one("kind"), one("tag"), one("cluster"),
      ["day", "kind", "tag", "cluster"].includes(group) ? Promise.resolve(undefined) : one(group),
      get<Cluster[]>("/clusters", undefined, signal),
    ]);
    // Forecast and budgets: shown to those who may read them, left out for the others (not
    // asked at all without the right, so the console never asks what the caller may not do).
    const [mayForecast, mayBudgets] = await can([["costs:Read", "*"], ["budgets:List", "budget/*"]], signal)
      .catch(() => [false, false]);
    const [forecast, budgets] = await Promise.all([
      mayForecast ? get<Forecasts>("/costs/forecast", undefined, signal).catch(() => undefined) : undefined,
      mayBudgets ? get<Budget[]>("/budgets", undefined, signal).catch(() => undefined) : undefined,
    ]);
    return { day, service, tag, cluster, table: table ?? { day, kind: service, tag, cluster }[group]!, clusters, forecast, budgets };
  }, [days, kind, group], 30000);

  const d = data.data;
  const prices = d?.day.prices;
  return (
    <>
      <PageHeader title="Costs">
        <button type="button" onClick={data.reload}>Refresh</button>
      </PageHeader>
      <p className="muted ops-intro">What your jobs, endpoints, streams, storage and SQL used, and what that use would cost at the price
        sheet's rates, and on your own hardware. Usage is recorded when a job attempt ends, every few minutes for each endpoint
        replica and stream, and every quarter of an hour for what storage holds.</p>
      <form className="ops-filters row" aria-label="Cost window" onSubmit={(e) => e.preventDefault()}>
        <fieldset className="cost-window">
          <legend className="ops-hidden">Window</legend>
          {WINDOWS.map(([value, label]) => (
            <label key={value} className={days === value ? "on" : undefined}>
              <input type="radio" name="days" value={value} checked={days === value}
                     onChange={() => set("days", value === "7" ? "" : value)} />{label}
            </label>
          ))}
        </fieldset>
        <label>Service{" "}
          <select value={kind} onChange={(e) => set("kind", e.target.value)}>
            <option value="">all</option>
            <option value="job">jobs</option>
            <option value="endpoint">endpoints</option>
            <option value="environment">environment builds</option>
            <option value="stream">streams</option>
            <option value="storage">storage</option>
            <option value="sql">SQL</option>
          </select>
        </label>
      </form>
      <ErrorBox error={data.error} />
      {!d && data.loading && <Loading what="Loading costs" />}
      {d && (
        <>
          <div className="cards">
            <div className="card">
              <div className="label">Cost, {WINDOWS.find(([v]) => v === days)![1].toLowerCase()}</div>
              <div className="value">{dollars(d.day.total.cost_usd)}</div>
              <div className="sub">{isAwsList(prices) ? "at AWS on-demand list prices" : "at this server's price sheet"}</div>
            </div>
            <div className="card"><div className="label">vCPU-hours used</div><div className="value">{hours(d.day.total.cpu_seconds)}</div>
              <div className="sub">{dollars(d.day.total.cpu_seconds / 3600 * (prices?.vcpu_hour ?? 0))}</div></div>
            <div className="card"><div className="label">Memory GB-hours</div><div className="value">{hours(d.day.total.memory_gb_seconds)}</div>
              <div className="sub">{dollars(d.day.total.memory_gb_seconds / 3600 * (prices?.gb_hour ?? 0))}</div></div>
            <div className="card"><div className="label">GPU-hours</div><div className="value">{hours(d.day.total.gpu_seconds)}</div>
              <div className="sub">{dollars(d.day.total.gpu_seconds / 3600 * (prices?.gpu_hour ?? 0))}</div></div>
            {!isAwsList(prices) && (
              <div className="card"><div className="label">At AWS on-demand prices</div>
                <div className="value">{dollars(awsCost(d.day.total))}</div>
                <div className="sub">the same use, at AWS's list prices (us-east-1)</div></div>
            )}
            {d.forecast && (
              <div className="card"><div className="label">Month-end forecast ({d.forecast.month})</div>
                <div className="value">{dollars(d.forecast.forecast_usd)}</div>
                <div className="sub">{dollars(d.forecast.spent_usd)} so far; own hardware {dollars(d.forecast.sheets.own.forecast_usd)}</div></div>
            )}
            <div className="card"><div className="label">On your own hardware</div>
              <div className="value">{dollars(d.day.total.own_usd ?? 0)}</div>
              <div className="sub">the machine's price over its life, plus power</div></div>
            <div className="card"><div className="label">Usage records</div><div className="value">{d.day.total.count}</div>
              <div className="sub">job attempts and replica periods</div></div>
          </div>
          <Basis prices={prices} clusters={d.clusters} used={d.cluster.rows.map((r) => String(r.cluster))} />
          {d.day.total.count === 0 ? (
            <Empty>Nothing was used in this window. Run a job (<code>cumulo jobs run --command "python train.py"</code>) or
              an endpoint, and its use shows here when it ends; <code>cumulo costs</code> prints the same figures.</Empty>
          ) : (
            <div className="cost-charts">
              <section className="panel ops-panel" aria-label="Cost by day">
                <Chart title="Cost by day (USD)" kind="bar" height={240}
                       series={[{ name: "cost", points: daysOf(d.day).map(([day, cost]) => ({ x: day.slice(5), y: cost })) }]} />
              </section>
              <section className="panel ops-panel" aria-label="Cost by service">
                <Chart title="Cost by service (USD)" kind="bar" height={240}
                       series={[{ name: "cost", points: d.service.rows.map((r) => ({ x: SERVICE[String(r.kind)] ?? String(r.kind), y: r.cost_usd })) }]} />
              </section>
              <section className="panel ops-panel" aria-label="Cost by tag">
                <Chart title="Cost by tag (USD)" kind="bar" height={240}
                       series={[{ name: "cost", points: top(d.tag.rows, "tag").map((r) => ({ x: String(r.tag), y: r.cost_usd })) }]} />
              </section>
              <section className="panel ops-panel" aria-label="Cost by cluster">
                <Chart title="Cost by cluster (USD)" kind="bar" height={240}
                       series={[{ name: "cost", points: d.cluster.rows.map((r) => ({ x: String(r.cluster), y: r.cost_usd })) }]} />
              </section>
            </div>
          )}
          <section className="panel ops-panel" aria-labelledby="cost-figures">
            <div className="row">
              <h2 id="cost-figures">Figures</h2>
              <span className="spacer" />
              <label>Group by{" "}
                <select value={group} onChange={(e) => set("by", e.target.value === "day" ? "" : e.target.value)}>
                  {GROUPS.map(([value, label]) => <option key={value} value={value}>{label}</option>)}
                </select>
              </label>
            </div>
            <FiguresTable summary={d.table} group={group} />
            <p className="muted ops-small">The same from a shell: <code>cumulo costs --by {group} --since {days}d{kind ? ` --kind ${kind}` : ""}</code>
              {" "}(<code>--csv FILE</code> for a spreadsheet)</p>
          </section>
          {d.forecast && <p className="muted ops-small">Forecast: {d.forecast.method}
            {" "}({dollars(d.forecast.daily_rate_usd)} a day, {number(d.forecast.days_left, 1)} days left).</p>}
          {d.budgets && <Budgets budgets={d.budgets} />}
        </>
      )}
    </>
  );
}

function Budgets({ budgets }: { budgets: Budget[] }) {
  return (
    <section className="panel ops-panel" aria-labelledby="cost-budgets">
      <h2 id="cost-budgets">Budgets</h2>
      <Table label="Budgets" head={["Budget", "Scope", "Period", "Amount", "Spent", "Used", "Alerts", "Actions", "In force"]}
             empty={budgets.length === 0 ? <>No budgets. Make one with <code>cumulo budgets create team-a --amount 50 --scope project:team-a --alert 50%,80%,100%</code></> : undefined}
             colSpan={9}>
        {budgets.map((b) => (
          <tr key={b.name} className={b.acting.length ? "budget-acting" : undefined}>
            <td>{b.name}</td>
            <td>{b.scope}</td>
            <td>{b.period}</td>
            <td className="num">{dollars(b.amount)}</td>
            <td className="num">{dollars(b.spent)}</td>
            <td className="num"><meter min={0} max={100} high={80} value={Math.min(b.percent, 100)} aria-label={`${b.name} used`} /> {number(b.percent, 1)}%</td>
            <td>{b.alerts.map((t) => `${t}%`).join(", ")}</td>
            <td>{b.actions.map((a) => `${a.at}%: ${a.action}`).join(", ") || "-"}</td>
            <td>{b.acting.join(", ") || "-"}</td>
          </tr>
        ))}
      </Table>
    </section>
  );
}

function Basis({ prices, clusters, used }: { prices?: Prices; clusters: Cluster[]; used: string[] }) {
  if (!prices) return null;
  const ran = clusters.filter((c) => used.includes(c.name));
  const where = (ran.length ? ran : clusters).map((c) => `${c.name} (${c.type === "local" ? "this machine" : `a ${c.type} cluster`})`);
  return (
    <section className="ops-note cost-basis" aria-label="How this is priced">
      {isAwsList(prices) ? (
        <>
          <strong>Cost at AWS on-demand prices.</strong> This work ran on {where.join(", ") || "your own clusters"}, not on AWS.
          Each figure is what the same use would cost at AWS's on-demand list prices in us-east-1: ${prices.vcpu_hour} per
          vCPU-hour and ${prices.gb_hour} per GB-hour (Fargate), ${prices.gpu_hour} per GPU-hour (a g5.xlarge's A10G); streams
          at ${prices.shard_hour ?? AWS_LIST.shard_hour} per shard-hour and ${prices.million_put_units ?? AWS_LIST.million_put_units} per
          million PUT payload units (Kinesis Data Streams, provisioned).
        </>
      ) : (
        <>
          <strong>Cost at this server's price sheet</strong> ({where.join(", ")}): ${prices.vcpu_hour} per vCPU-hour,
          ${prices.gb_hour} per GB-hour, ${prices.gpu_hour} per GPU-hour, ${prices.shard_hour ?? 0} per stream shard-hour,
          ${prices.million_put_units ?? 0} per million PUT payload units (the <code>[prices]</code> settings; the defaults are
          AWS's on-demand list prices).
        </>
      )}{" "}
      It prices what was used (CPU-seconds, and peak memory for the wall time), where a cloud bills what was reserved, so a
      cloud bill for the same work would be at least this.
    </section>
  );
}

function FiguresTable({ summary, group }: { summary: Summary; group: string }) {
  const label = GROUPS.find(([g]) => g === group)![1];
  const streams = summary.total.shard_hours !== undefined; // streams' columns, only when some were used
  const rows = group === "day" ? [...summary.rows].reverse() : [...summary.rows].sort((a, b) => b.cost_usd - a.cost_usd);
  const link = (key: string) => {
    if (group === "item" && key.startsWith("job ")) return <Link to={`/jobs/${key.slice(4)}`}>{key}</Link>;
    if (group === "item" && key.startsWith("endpoint ")) return <Link to={`/endpoints/${encodeURIComponent(key.slice(9))}`}>{key}</Link>;
    if (group === "item" && key.startsWith("stream ")) return <Link to={`/streams/${encodeURIComponent(key.slice(7))}`}>{key}</Link>;
    if (group === "kind") return SERVICE[key] ?? key;
    return key;
  };
  return (
    <Table label="Cost figures" head={[label, "Cost", "vCPU-hours", "GB-hours", "GPU-hours", "Wall hours",
                                      ...(streams ? ["Shard-hours", "PUT units"] : []), "Records"]}
           empty={rows.length === 0 ? "Nothing was used in this window" : undefined}>
      {rows.map((r) => (
        <tr key={String(r[group])}>
          <td>{link(String(r[group]))}</td>
          <td className="num">{dollars(r.cost_usd)}</td>
          <td className="num">{hours(r.cpu_seconds)}</td>
          <td className="num">{hours(r.memory_gb_seconds)}</td>
          <td className="num">{hours(r.gpu_seconds)}</td>
          <td className="num">{hours(r.wall_seconds)}</td>
          {streams && <><td className="num">{number(Number(r.shard_hours ?? 0))}</td>
            <td className="num">{number(Number(r.put_units ?? 0))}</td></>}
          <td className="num">{r.count}</td>
        </tr>
      ))}
      {rows.length > 0 && (
        <tr className="ops-total">
          <th scope="row">Total{group === "tag" ? " (a record with several tags counts under each)" : ""}</th>
          <td className="num">{dollars(summary.total.cost_usd)}</td>
          <td className="num">{hours(summary.total.cpu_seconds)}</td>
          <td className="num">{hours(summary.total.memory_gb_seconds)}</td>
          <td className="num">{hours(summary.total.gpu_seconds)}</td>
          <td className="num">{hours(summary.total.wall_seconds)}</td>
          {streams && <><td className="num">{number(summary.total.shard_hours ?? 0)}</td>
            <td className="num">{number(summary.total.put_units ?? 0)}</td></>}
          <td className="num">{summary.total.count}</td>
        </tr>
      )}
    </Table>
  );
}

/** Every day of the window, a day with no use as zero. */
function daysOf(summary: Summary): [string, number][] {
  const cost = new Map(summary.rows.map((r) => [String(r.day), r.cost_usd]));
  const known = [...cost.keys()].sort();
  const today = new Date().toISOString().slice(0, 10);
  const start = summary.since ?? known[0] ?? today;
  const end = [today, known[known.length - 1] ?? today].sort()[1];
  const out: [string, number][] = [];
  for (let t = Date.parse(`${start}T00:00:00Z`); t <= Date.parse(`${end}T00:00:00Z`) && out.length < 400; t += 86400000) {
    const day = new Date(t).toISOString().slice(0, 10);
    out.push([day, cost.get(day) ?? 0]);
  }
  return out;
}

/** The costliest groups, the rest summed, so a chart stays readable. */
function top(rows: Row[], key: string, most = 12): Row[] {
  const sorted = [...rows].sort((a, b) => b.cost_usd - a.cost_usd);
  if (sorted.length <= most) return sorted;
  const rest = sorted.slice(most - 1).reduce((sum, r) => sum + r.cost_usd, 0);
  return [...sorted.slice(0, most - 1), { [key]: "(others)", cost_usd: rest } as Row];
}
