// One group: its members (add, remove) and what it was given (grant, revoke).
import { useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { del, get, put } from "../../api";
import { ErrorBox, Loading, PageHeader } from "../../components/ErrorBox";
import { when } from "../../format";
import { useAction, useApi, useCan } from "../../hooks";
import { ConfirmButton, Table } from "../jobs/shared";
import { GrantForm, GrantList } from "./Grants";
import { DeleteGroup } from "./GroupList";
import { Binding, Group, pathOf, User } from "./types";

export default function GroupPage() {
  const name = useParams().name!;
  const navigate = useNavigate();
  const group = useApi((signal) => get<Group>(pathOf("groups", name), undefined, signal), [name]);
  const [manage, listGrants, grant] = useCan([
    ["groups:Manage", `group/${name}`], ["policies:List", "policy/*"], ["policies:Manage", "policy/*"]]);
  const bindings = useApi((signal) => listGrants
    ? get<Binding[]>("/bindings", { group: name }, signal) : Promise.resolve(undefined), [name, listGrants]);
  const changed = () => { group.reload(); bindings.reload(); };
  const g = group.data;
  const members = `${pathOf("groups", name)}/members`;
  return (
    <div className="iam-page">
      <div className="breadcrumbs"><Link to="/groups">Groups</Link> / {name}</div>
      <PageHeader title={name}>
        {g && manage && <DeleteGroup group={g} className="danger" onDone={() => navigate("/groups")} />}
      </PageHeader>
      <ErrorBox error={group.error} />
      {!g && group.loading && <Loading what="Loading the group" />}
      {g && (
        <>
          <p className="muted lead">{g.description || "No description."} Created {when(g.created_at)}.</p>
          <h2>Members</h2>
          <Table label="Members" head={["User", ...(manage ? [<span className="sr-only">Actions</span>] : [])]}
                 empty={g.members.length === 0 ? "No members yet" : undefined}>
            {g.members.map((m) => (
              <tr key={m}>
                <td><Link to={pathOf("users", m)}>{m}</Link></td>
                {manage && (
                  <td className="actions-cell">
                    <ConfirmButton label="Remove" title={`Remove ${m} from ${name}?`} confirm="Remove" danger
                                   className="link danger-link"
                                   onConfirm={async () => { await del(`${members}/${encodeURIComponent(m)}`); changed(); }}>
                      <p>{m} stays a user, but no longer holds what {name} was given.</p>
                    </ConfirmButton>
                  </td>
                )}
              </tr>
            ))}
          </Table>
          {manage && <AddMember group={g} onDone={changed} />}
          <h2>Roles and policies</h2>
          {bindings.data
            ? <GrantList bindings={bindings.data} canRevoke={grant} onChange={changed} withSubject={false}
                         label={`Given to ${name}`} />
            : <p>{g.roles.map((r) => <span key={r} className="ops-chip">{r}</span>)}{g.roles.length ? "" : "Nothing given"}</p>}
          <ErrorBox error={bindings.error} />
          {grant && <GrantForm to={{ group: name }} onDone={changed} />}
        </>
      )}
    </div>
  );
}

function AddMember({ group, onDone }: { group: Group; onDone: () => void }) {
  const users = useApi((signal) => get<User[]>("/users", undefined, signal).catch(() => [] as User[]), []);
  const [user, setUser] = useState("");
  const add = useAction(async () => {
    await put(`${pathOf("groups", group.name)}/members/${encodeURIComponent(user.trim())}`);
    setUser("");
    onDone();
  });
  const others = (users.data ?? []).filter((u) => !group.members.includes(u.name));
  return (
    <form className="panel iam-form" aria-label="Add a member"
          onSubmit={(event) => { event.preventDefault(); void add.run(); }}>
      <label>User{" "}
        <input value={user} onChange={(e) => setUser(e.target.value)} list="group-candidates" required
               autoComplete="off" spellCheck={false} placeholder="user name" />
      </label>
      <datalist id="group-candidates">{others.map((u) => <option key={u.name} value={u.name} />)}</datalist>
      <button type="submit" disabled={add.busy || !user.trim()}>{add.busy ? "Adding…" : "Add member"}</button>
      <ErrorBox error={add.error} onClose={add.clear} />
    </form>
  );
}
