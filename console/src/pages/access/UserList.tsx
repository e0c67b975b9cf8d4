// Users: people (who sign in with a password) and service accounts (tokens only), with their
// groups, what was given to them directly and their live tokens; create, disable, delete.
import { useState } from "react";
import { Link } from "react-router-dom";
import { del, get, patch, post } from "../../api";
import { Notice } from "../../components/Dialogs";
import { ErrorBox, Loading, PageHeader } from "../../components/ErrorBox";
import { when } from "../../format";
import { useAction, useApi, useCan } from "../../hooks";
import { ConfirmButton, Table } from "../jobs/shared";
import { pathOf, plural, Role, User } from "./types";

export default function UserList() {
  const users = useApi((signal) => get<User[]>("/users", undefined, signal), []);
  const [manage] = useCan([["users:Manage", "user/*"]]);
  const [notice, setNotice] = useState<React.ReactNode>();
  const toggle = useAction(async (user: User) => {
    await patch(pathOf("users", user.name), { disabled: !user.disabled });
    setNotice(`${user.disabled ? "Enabled" : "Disabled"} ${user.name}`);
    users.reload();
  });
  const list = users.data;
  return (
    <div className="iam-page">
      <PageHeader title="Users">
        <button type="button" onClick={users.reload} disabled={users.loading}>Refresh</button>
      </PageHeader>
      <p className="muted lead">People sign in with a password or use API tokens; service accounts (CI, a scheduler)
        use tokens only. What a user may do comes from the roles and policies given to them and to their groups.</p>
      {manage && <CreateUser onDone={(name) => {
        setNotice(<>Created <Link to={pathOf("users", name)}>{name}</Link></>);
        users.reload();
      }} />}
      <Notice onClose={() => setNotice(undefined)}>{notice}</Notice>
      <ErrorBox error={toggle.error} onClose={toggle.clear} />
      <ErrorBox error={users.error} />
      {!list && users.loading && <Loading what="Loading users" />}
      {list && (
        <Table label="Users" head={["Name", "Kind", "Email", "Groups", "Roles and policies", "Tokens", "State", "Created",
                                   ...(manage ? [<span className="sr-only">Actions</span>] : [])]}>
          {list.map((u) => (
            <tr key={u.name}>
              <td><Link to={pathOf("users", u.name)}>{u.name}</Link></td>
              <td>{u.kind === "service" ? "service account" : "person"}</td>
              <td>{u.email ?? "—"}</td>
              <td>{u.groups.map((g) => <Link key={g} to={pathOf("groups", g)} className="ops-chip">{g}</Link>)}</td>
              <td>{u.roles.map((r) => <span key={r} className="ops-chip">{r}</span>)}</td>
              <td className="num">{u.tokens}</td>
              <td><Enabled user={u} /></td>
              <td>{when(u.created_at)}</td>
              {manage && (
                <td className="actions-cell">
                  <button type="button" className="link" disabled={toggle.busy} onClick={() => void toggle.run(u)}
                          aria-label={`${u.disabled ? "Enable" : "Disable"} ${u.name}`}>
                    {u.disabled ? "Enable" : "Disable"}
                  </button>
                  <DeleteUser user={u} onDone={() => { setNotice(`Deleted ${u.name}`); users.reload(); }} />
                </td>
              )}
            </tr>
          ))}
        </Table>
      )}
      {list && <p className="muted iam-count">{plural(list.length, "user")}</p>}
    </div>
  );
}

export function Enabled({ user }: { user: User }) {
  return <span className={`state state-${user.disabled ? "bad" : "ok"}`}>{user.disabled ? "disabled" : "enabled"}</span>;
}

export function DeleteUser({ user, onDone, className = "link danger-link" }: {
  user: User; onDone: () => void; className?: string;
}) {
  return (
    <ConfirmButton label="Delete" title={`Delete user ${user.name}?`} confirm="Delete user" danger className={className}
                   onConfirm={async () => { await del(pathOf("users", user.name)); onDone(); }}>
      <p><strong>{user.name}</strong> is removed with {plural(user.tokens, "token")} and everything given to them.
        To stop them for now and keep all that, disable them instead.</p>
    </ConfirmButton>
  );
}

function CreateUser({ onDone }: { onDone: (name: string) => void }) {
  const roles = useApi((signal) => get<Role[]>("/roles", undefined, signal).catch(() => [] as Role[]), []);
  const [name, setName] = useState("");
  const [kind, setKind] = useState<"person" | "service">("person");
  const [email, setEmail] = useState("");
  const [role, setRole] = useState("");
  const [password, setPassword] = useState("");
  const create = useAction(async () => {
    const made = await post<User>("/users", {
      name: name.trim(), kind, email: email.trim() || null, role: role || null,
      password: kind === "person" && password ? password : null,
    });
    setName(""); setEmail(""); setPassword(""); setRole("");
    onDone(made.name);
  });
  return (
    <form className="panel iam-form" aria-label="Create a user"
          onSubmit={(event) => { event.preventDefault(); void create.run(); }}>
      <label>Name{" "}
        <input value={name} onChange={(e) => setName(e.target.value)} required autoComplete="off" spellCheck={false}
               placeholder="e.g. ana" aria-invalid={create.error ? true : undefined} />
      </label>
      <label>Kind{" "}
        <select value={kind} onChange={(e) => setKind(e.target.value as "person" | "service")}>
          <option value="person">person</option>
          <option value="service">service account</option>
        </select>
      </label>
      <label>Email{" "}
        <input type="email" value={email} onChange={(e) => setEmail(e.target.value)} autoComplete="off" placeholder="optional" />
      </label>
      <label>Role{" "}
        <select value={role} onChange={(e) => setRole(e.target.value)}>
          <option value="">none</option>
          {roles.data?.map((r) => <option key={r.name} value={r.name}>{r.name}</option>)}
        </select>
      </label>
      {kind === "person" && (
        <label>Password{" "}
          <input type="password" value={password} onChange={(e) => setPassword(e.target.value)}
                 autoComplete="new-password" placeholder="optional; 12+ characters" />
        </label>
      )}
      <button type="submit" className="primary" disabled={create.busy || !name.trim()}>
        {create.busy ? "Creating…" : "Create user"}
      </button>
      <ErrorBox error={create.error} onClose={create.clear} />
    </form>
  );
}
