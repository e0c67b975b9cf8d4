// Grants: who holds which role or policy, everywhere or in a project; a form to give one and a
// button to take one back. The Access page shows every grant; a user's and a group's page their own.
import { useState } from "react";
import { Link } from "react-router-dom";
import { get, post } from "../../api";
import { ErrorBox } from "../../components/ErrorBox";
import { useAction, useApi } from "../../hooks";
import { ConfirmButton, Table } from "../jobs/shared";
import { Binding, Grant, grantOf, pathOf, Policy, Project, Role, subjectName } from "./types";

export function GrantList({ bindings, canRevoke, onChange, withSubject = true, label = "Grants" }: {
  bindings: Binding[];
  canRevoke: boolean;
  onChange: () => void;
  withSubject?: boolean;
  label?: string;
}) {
  const head = [...(withSubject ? ["Who"] : []), "Role or policy", ...(canRevoke ? [<span className="sr-only">Actions</span>] : [])];
  return (
    <Table label={label} head={head} empty={bindings.length === 0 ? "Nothing given" : undefined}>
      {bindings.map((b) => (
        <tr key={b.id}>
          {withSubject && <td><SubjectLink binding={b} /></td>}
          <td>{b.given}</td>
          {canRevoke && (
            <td className="actions-cell">
              <ConfirmButton label="Revoke" title={`Take ${b.given} from ${b.subject}?`} confirm="Revoke" danger
                             className="link danger-link" onConfirm={async () => {
                               await post("/bindings/revoke", grantOf(b));
                               onChange();
                             }}>
                <p><strong>{b.subject}</strong> loses what <strong>{b.given}</strong> allowed, at once.</p>
              </ConfirmButton>
            </td>
          )}
        </tr>
      ))}
    </Table>
  );
}

function SubjectLink({ binding }: { binding: Binding }) {
  const kind = binding.subject.startsWith("group:") ? "groups" : "users";
  return <Link to={pathOf(kind, subjectName(binding))}>{binding.subject}</Link>;
}

interface Choices { roles: Role[]; policies: Policy[]; projects: Project[] }

/** Give a role or policy, everywhere or in a project: to `to` when given, else to the user or
 *  group named in the form. */
export function GrantForm({ to, onDone }: { to?: { user: string } | { group: string }; onDone: () => void }) {
  const choices = useApi<Choices>(async (signal) => {
    const [roles, policies, projects] = await Promise.all([
      get<Role[]>("/roles", undefined, signal),
      get<Policy[]>("/policies", undefined, signal),
      get<Project[]>("/projects", undefined, signal).catch(() => []),  // projects may not be listable
    ]);
    return { roles, policies, projects };
  }, []);
  const [kind, setKind] = useState<"user" | "group">("user");
  const [name, setName] = useState("");
  const [given, setGiven] = useState("");
  const [project, setProject] = useState("");
  const grant = useAction(async () => {
    const [what, which] = given.split(":");
    const body: Grant = { ...(to ?? { [kind]: name.trim() }), [what]: which, ...(project ? { project } : {}) };
    await post("/bindings", body);
    setGiven("");
    onDone();
  });
  const c = choices.data;
  return (
    <form className="panel iam-form" aria-label="Grant a role or policy"
          onSubmit={(event) => { event.preventDefault(); void grant.run(); }}>
      {!to && (
        <>
          <label>To{" "}
            <select value={kind} onChange={(e) => setKind(e.target.value as "user" | "group")}>
              <option value="user">user</option>
              <option value="group">group</option>
            </select>
          </label>
          <label>Name{" "}
            <input value={name} onChange={(e) => setName(e.target.value)} required autoComplete="off"
                   spellCheck={false} placeholder={kind === "user" ? "e.g. ana" : "e.g. sales"} />
          </label>
        </>
      )}
      <label>Role or policy{" "}
        <select value={given} onChange={(e) => setGiven(e.target.value)} required>
          <option value="" disabled>choose…</option>
          <optgroup label="Roles">
            {c?.roles.map((r) => <option key={r.name} value={`role:${r.name}`}>{r.name}</option>)}
          </optgroup>
          {!!c?.policies.length && (
            <optgroup label="Policies">
              {c.policies.map((p) => <option key={p.name} value={`policy:${p.name}`}>{p.name}</option>)}
            </optgroup>
          )}
        </select>
      </label>
      <label>Where{" "}
        <select value={project} onChange={(e) => setProject(e.target.value)}>
          <option value="">everywhere</option>
          {c?.projects.map((p) => <option key={p.name} value={p.name}>in project {p.name}</option>)}
        </select>
      </label>
      <button type="submit" className="primary" disabled={grant.busy || !given || (!to && !name.trim())}>
        {grant.busy ? "Granting…" : "Grant"}
      </button>
      <ErrorBox error={choices.error ?? grant.error} onClose={grant.error ? grant.clear : undefined} />
    </form>
  );
}
