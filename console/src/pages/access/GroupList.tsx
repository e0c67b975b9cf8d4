// Groups: give roles and policies to a group once, and to its members by putting them in it.
import { useState } from "react";
import { Link } from "react-router-dom";
import { del, get, post } from "../../api";
import { Notice } from "../../components/Dialogs";
import { ErrorBox, Loading, PageHeader } from "../../components/ErrorBox";
import { when } from "../../format";
import { useAction, useApi, useCan } from "../../hooks";
import { ConfirmButton, Table } from "../jobs/shared";
import { Group, pathOf, plural } from "./types";

export default function GroupList() {
  const groups = useApi((signal) => get<Group[]>("/groups", undefined, signal), []);
  const [manage] = useCan([["groups:Manage", "group/*"]]);
  const [notice, setNotice] = useState<React.ReactNode>();
  const list = groups.data;
  return (
    <div className="iam-page">
      <PageHeader title="Groups">
        <button type="button" onClick={groups.reload} disabled={groups.loading}>Refresh</button>
      </PageHeader>
      <p className="muted lead">A role or policy given to a group holds for each of its members.</p>
      {manage && <CreateGroup onDone={(name) => {
        setNotice(<>Created <Link to={pathOf("groups", name)}>{name}</Link>: add its members there</>);
        groups.reload();
      }} />}
      <Notice onClose={() => setNotice(undefined)}>{notice}</Notice>
      <ErrorBox error={groups.error} />
      {!list && groups.loading && <Loading what="Loading groups" />}
      {list && (
        <Table label="Groups" head={["Name", "Description", "Members", "Roles and policies", "Created",
                                    ...(manage ? [<span className="sr-only">Actions</span>] : [])]}
               empty={list.length === 0 ? "No groups yet" : undefined}>
          {list.map((g) => (
            <tr key={g.name}>
              <td><Link to={pathOf("groups", g.name)}>{g.name}</Link></td>
              <td className="muted">{g.description || "—"}</td>
              <td>{g.members.length ? g.members.map((m) => <span key={m} className="ops-chip">{m}</span>) : "none"}</td>
              <td>{g.roles.map((r) => <span key={r} className="ops-chip">{r}</span>)}</td>
              <td>{when(g.created_at)}</td>
              {manage && (
                <td className="actions-cell">
                  <DeleteGroup group={g} onDone={() => { setNotice(`Deleted ${g.name}`); groups.reload(); }} />
                </td>
              )}
            </tr>
          ))}
        </Table>
      )}
    </div>
  );
}

export function DeleteGroup({ group, onDone, className = "link danger-link" }: {
  group: Group; onDone: () => void; className?: string;
}) {
  return (
    <ConfirmButton label="Delete" title={`Delete group ${group.name}?`} confirm="Delete group" danger className={className}
                   onConfirm={async () => { await del(pathOf("groups", group.name)); onDone(); }}>
      <p>Its {plural(group.members.length, "member")} stay, but lose what the group was given
        ({group.roles.join(", ") || "nothing"}).</p>
    </ConfirmButton>
  );
}

function CreateGroup({ onDone }: { onDone: (name: string) => void }) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const create = useAction(async () => {
    const made = await post<Group>("/groups", { name: name.trim(), description: description.trim() });
    setName(""); setDescription("");
    onDone(made.name);
  });
  return (
    <form className="panel iam-form" aria-label="Create a group"
          onSubmit={(event) => { event.preventDefault(); void create.run(); }}>
      <label>Name{" "}
        <input value={name} onChange={(e) => setName(e.target.value)} required autoComplete="off" spellCheck={false}
               placeholder="e.g. sales" aria-invalid={create.error ? true : undefined} />
      </label>
      <label>Description{" "}
        <input value={description} onChange={(e) => setDescription(e.target.value)} placeholder="optional" />
      </label>
      <button type="submit" className="primary" disabled={create.busy || !name.trim()}>
        {create.busy ? "Creating…" : "Create group"}
      </button>
      <ErrorBox error={create.error} onClose={create.clear} />
    </form>
  );
}
