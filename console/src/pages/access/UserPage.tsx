// One user: their groups, what was given to them (with its project), their tokens; an admin
// grants and revokes, sets a password, disables or deletes them here.
import { useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { get, patch } from "../../api";
import { Notice } from "../../components/Dialogs";
import { ErrorBox, Loading, PageHeader } from "../../components/ErrorBox";
import { when } from "../../format";
import { useAction, useApi, useCan } from "../../hooks";
import { GrantForm, GrantList } from "./Grants";
import { Binding, pathOf, User } from "./types";
import { DeleteUser, Enabled } from "./UserList";

export default function UserPage() {
  const name = useParams().name!;
  const navigate = useNavigate();
  const user = useApi((signal) => get<User>(pathOf("users", name), undefined, signal), [name]);
  const [manage, listGrants, grant] = useCan([
    ["users:Manage", `user/${name}`], ["policies:List", "policy/*"], ["policies:Manage", "policy/*"]]);
  const bindings = useApi((signal) => listGrants
    ? get<Binding[]>("/bindings", { user: name }, signal) : Promise.resolve(undefined), [name, listGrants]);
  const [notice, setNotice] = useState<string>();
  const toggle = useAction(async (u: User) => {
    await patch(pathOf("users", u.name), { disabled: !u.disabled });
    setNotice(`${u.disabled ? "Enabled" : "Disabled"} ${u.name}`);
    user.reload();
  });
  const changed = () => { user.reload(); bindings.reload(); };
  const u = user.data;
  return (
    <div className="iam-page">
      <div className="breadcrumbs"><Link to="/users">Users</Link> / {name}</div>
      <PageHeader title={name}>
        {u && manage && (
          <>
            <button type="button" disabled={toggle.busy} onClick={() => void toggle.run(u)}>{u.disabled ? "Enable" : "Disable"}</button>
            <DeleteUser user={u} className="danger" onDone={() => navigate("/users")} />
          </>
        )}
      </PageHeader>
      <Notice onClose={() => setNotice(undefined)}>{notice}</Notice>
      <ErrorBox error={toggle.error} onClose={toggle.clear} />
      <ErrorBox error={user.error} />
      {!u && user.loading && <Loading what="Loading the user" />}
      {u && (
        <>
          <section className="panel" aria-label="About">
            <dl className="props">
              <dt>Kind</dt><dd>{u.kind === "service" ? "service account (tokens only)" : "person"}</dd>
              <dt>Email</dt><dd>{u.email ?? "—"}</dd>
              <dt>State</dt><dd><Enabled user={u} /></dd>
              <dt>Administrator</dt><dd>{u.is_admin ? "yes" : "no"}</dd>
              <dt>Password</dt><dd>{u.has_password ? "set" : "none"}</dd>
              <dt>Live tokens</dt><dd>{u.tokens}</dd>
              <dt>Created</dt><dd>{when(u.created_at)}</dd>
              <dt>Groups</dt>
              <dd>{u.groups.length ? u.groups.map((g) => <Link key={g} to={pathOf("groups", g)} className="ops-chip">{g}</Link>) : "none"}</dd>
            </dl>
          </section>
          <h2>Roles and policies</h2>
          <p className="muted">Given to {u.name} directly; what their groups hold shows on each group's page.</p>
          {bindings.data
            ? <GrantList bindings={bindings.data} canRevoke={grant} onChange={changed} withSubject={false}
                         label={`Given to ${u.name}`} />
            : <p>{u.roles.map((r) => <span key={r} className="ops-chip">{r}</span>)}{u.roles.length ? "" : "Nothing given"}</p>}
          <ErrorBox error={bindings.error} />
          {grant && <GrantForm to={{ user: u.name }} onDone={changed} />}
          {manage && u.kind === "person" && <SetPassword name={u.name} onDone={() => { setNotice(`Set a new password for ${u.name}`); user.reload(); }} />}
        </>
      )}
    </div>
  );
}

function SetPassword({ name, onDone }: { name: string; onDone: () => void }) {
  const [password, setPassword] = useState("");
  const save = useAction(async () => {
    await patch(pathOf("users", name), { password });
    setPassword("");
    onDone();
  });
  return (
    <>
      <h2>Password</h2>
      <form className="panel iam-form" aria-label="Set a password"
            onSubmit={(event) => { event.preventDefault(); void save.run(); }}>
        <label>New password{" "}
          <input type="password" value={password} onChange={(e) => setPassword(e.target.value)} required
                 autoComplete="new-password" aria-invalid={save.error ? true : undefined} />
        </label>
        <button type="submit" disabled={save.busy || !password}>{save.busy ? "Saving…" : "Set password"}</button>
        <span className="muted hint">It also unlocks an account locked after wrong passwords.</span>
        <ErrorBox error={save.error} onClose={save.clear} />
      </form>
    </>
  );
}
