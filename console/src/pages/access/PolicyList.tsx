// Custom policies: JSON documents of statements that allow or deny actions on resources.
import { useState } from "react";
import { Link } from "react-router-dom";
import { del, get } from "../../api";
import { Notice } from "../../components/Dialogs";
import { ErrorBox, Loading, PageHeader } from "../../components/ErrorBox";
import { when } from "../../format";
import { useApi, useCan } from "../../hooks";
import { ConfirmButton, Table } from "../jobs/shared";
import { pathOf, Policy } from "./types";

export default function PolicyList() {
  const policies = useApi((signal) => get<Policy[]>("/policies", undefined, signal), []);
  const [manage] = useCan([["policies:Manage", "policy/*"]]);
  const [notice, setNotice] = useState<string>();
  const list = policies.data;
  return (
    <div className="iam-page">
      <PageHeader title="Policies">
        <button type="button" onClick={policies.reload} disabled={policies.loading}>Refresh</button>
        {manage && <Link to="/policies/-/new" className="button primary">Create policy</Link>}
      </PageHeader>
      <p className="muted lead">Your own rules, in the language of the <Link to="/roles">built-in roles</Link>: an
        explicit deny wins, else the first matching allow. A change applies at once to everyone who holds the policy.</p>
      <Notice onClose={() => setNotice(undefined)}>{notice}</Notice>
      <ErrorBox error={policies.error} />
      {!list && policies.loading && <Loading what="Loading policies" />}
      {list && (
        <Table label="Policies" head={["Name", "Description", "Statements", "Updated",
                                      ...(manage ? [<span className="sr-only">Actions</span>] : [])]}
               empty={list.length === 0 ? "No policies yet" : undefined}>
          {list.map((p) => (
            <tr key={p.name}>
              <td><Link to={pathOf("policies", p.name)}>{p.name}</Link></td>
              <td className="muted">{p.description || "—"}</td>
              <td className="num">{p.document.statements.length}</td>
              <td>{when(p.updated_at)}</td>
              {manage && (
                <td className="actions-cell">
                  <DeletePolicy name={p.name} onDone={() => { setNotice(`Deleted ${p.name}`); policies.reload(); }} />
                </td>
              )}
            </tr>
          ))}
        </Table>
      )}
    </div>
  );
}

export function DeletePolicy({ name, onDone, className = "link danger-link" }: {
  name: string; onDone: () => void; className?: string;
}) {
  return (
    <ConfirmButton label="Delete" title={`Delete policy ${name}?`} confirm="Delete policy" danger className={className}
                   onConfirm={async () => { await del(pathOf("policies", name)); onDone(); }}>
      <p>Everyone who holds <strong>{name}</strong> loses what it allowed, and stops being refused what it denied.</p>
    </ConfirmButton>
  );
}
