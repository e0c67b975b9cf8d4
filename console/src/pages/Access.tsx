// Access: every grant of a role or policy to a user or group (everywhere or in a project), a
// form to give one, and the simulator: would this user be allowed, and which statement decides?
import { useState } from "react";
import { get, post } from "../api";
import { ErrorBox, Loading, PageHeader } from "../components/ErrorBox";
import { useAction, useApi, useCan } from "../hooks";
import { GrantForm, GrantList } from "./access/Grants";
import { Binding, Decision } from "./access/types";
import "./access/Access.css";

export default function Access() {
  const [list, manage, simulate] = useCan([
    ["policies:List", "policy/*"], ["policies:Manage", "policy/*"], ["access:Check", "user/*"]]);
  const bindings = useApi((signal) => list ? get<Binding[]>("/bindings", undefined, signal)
    : Promise.resolve(undefined), [list]);
  return (
    <div className="iam-page">
      <PageHeader title="Access">
        {list && <button type="button" onClick={bindings.reload} disabled={bindings.loading}>Refresh</button>}
      </PageHeader>
      <p className="muted lead">A user's rights are the statements of every role and policy given to them and to
        their groups, everywhere or in the project a resource belongs to. A deny wins; else the first allow; else no.</p>
      {simulate && <Simulator />}
      {list && (
        <section aria-label="Grants">
          <h2>Grants</h2>
          {manage && <GrantForm onDone={bindings.reload} />}
          <ErrorBox error={bindings.error} />
          {!bindings.data && bindings.loading && <Loading what="Loading grants" />}
          {bindings.data && <GrantList bindings={bindings.data} canRevoke={manage} onChange={bindings.reload} />}
        </section>
      )}
    </div>
  );
}

function Simulator() {
  const [user, setUser] = useState("");
  const [action, setAction] = useState("");
  const [resource, setResource] = useState("");
  const [project, setProject] = useState("");
  const actions = useApi((signal) => get<Record<string, string>>("/actions", undefined, signal)
    .catch(() => ({} as Record<string, string>)), []);
  const check = useAction(() => post<Decision>("/access/check", {
    user: user.trim(), action: action.trim(), resource: resource.trim() || "*", project: project.trim() || null,
  }));
  const [decision, setDecision] = useState<Decision>();
  return (
    <section aria-label="Simulator">
      <h2>Simulator</h2>
      <form className="panel iam-form" aria-label="Would this be allowed?"
            onSubmit={async (event) => { event.preventDefault(); setDecision(await check.run()); }}>
        <label>User{" "}
          <input value={user} onChange={(e) => setUser(e.target.value)} required autoComplete="off" spellCheck={false}
                 placeholder="e.g. ana" />
        </label>
        <label>Action{" "}
          <input value={action} onChange={(e) => setAction(e.target.value)} required list="iam-actions"
                 autoComplete="off" spellCheck={false} placeholder="e.g. tables:Read" />
        </label>
        <datalist id="iam-actions">
          {Object.entries(actions.data ?? {}).map(([name, what]) => <option key={name} value={name}>{what}</option>)}
        </datalist>
        <label>Resource{" "}
          <input value={resource} onChange={(e) => setResource(e.target.value)} autoComplete="off" spellCheck={false}
                 placeholder="e.g. table/sales/orders or sales.orders" />
        </label>
        <label>Project{" "}
          <input value={project} onChange={(e) => setProject(e.target.value)} autoComplete="off" spellCheck={false}
                 placeholder="the resource's, if any" />
        </label>
        <button type="submit" className="primary" disabled={check.busy || !user.trim() || !action.trim()}>
          {check.busy ? "Checking…" : "Check"}
        </button>
        <ErrorBox error={check.error} onClose={check.clear} />
      </form>
      {decision && !check.error && (
        <div className={`panel iam-decision ${decision.allowed ? "allow" : "deny"}`} role="status" aria-label="Decision">
          <span className={`state state-${decision.allowed ? "ok" : "bad"}`}>{decision.allowed ? "allow" : "deny"}</span>{" "}
          <code>{decision.action}</code> on <code>{decision.resource}</code> for <strong>{decision.user}</strong>
          <p>{decision.reason}</p>
        </div>
      )}
    </section>
  );
}
