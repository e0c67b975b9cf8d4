// The built-in roles: policies with well-known names, written in the same language as your own
// (read-only; a custom policy can start from one).
import { Link } from "react-router-dom";
import { get } from "../api";
import { ErrorBox, Loading, PageHeader } from "../components/ErrorBox";
import { useApi } from "../hooks";
import { Role } from "./access/types";
import "./access/Access.css";

export default function Roles() {
  const roles = useApi((signal) => get<Role[]>("/roles", undefined, signal), []);
  return (
    <div className="iam-page">
      <PageHeader title="Roles" />
      <p className="muted lead">Built-in roles only allow, so what is given adds up. Give one on
        the <Link to="/access">Access</Link> page; for anything else, write a <Link to="/policies">policy</Link>.</p>
      <ErrorBox error={roles.error} />
      {!roles.data && roles.loading && <Loading what="Loading roles" />}
      {roles.data?.map((r) => (
        <section key={r.name} className="panel iam-role" aria-label={`Role ${r.name}`}>
          <h2>{r.name}</h2>
          <p>{r.description}</p>
          <details>
            <summary>Document ({r.document.statements.length} statement{r.document.statements.length === 1 ? "" : "s"})</summary>
            <pre>{JSON.stringify(r.document, null, 2)}</pre>
          </details>
        </section>
      ))}
    </div>
  );
}
