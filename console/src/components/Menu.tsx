// The menu on the left: each service's section, then administration's. An entry shows only when
// the signed-in caller may open its page (what the page lists with), asked once at sign-in.
import { NavLink } from "react-router-dom";
import { can, Check } from "../api";
import "./Menu.css";

/** A menu entry, shown when the caller may take one of `needs`. */
interface Entry { to: string; label: string; needs?: Check[] }

const SERVICES: Entry[] = [
  { to: "/", label: "Home" },
  { to: "/files", label: "Files", needs: [["files:ListBuckets", "bucket/*"]] },
  { to: "/tables", label: "Tables", needs: [["tables:List", "database/*"]] },
  { to: "/sql", label: "SQL", needs: [["sql:Run", "sql"]] },
  { to: "/jobs", label: "Jobs", needs: [["jobs:List", "job/*"]] },
  { to: "/models", label: "Models", needs: [["models:List", "model/*"]] },
  { to: "/endpoints", label: "Endpoints", needs: [["endpoints:List", "endpoint/*"]] },
  { to: "/pipelines", label: "Pipelines", needs: [["pipelines:List", "pipeline/*"]] },
  { to: "/streams", label: "Streams", needs: [["streams:List", "stream/*"]] },
  { to: "/notebooks", label: "Notebooks", needs: [["notebooks:List", "notebook/*"]] },
  { to: "/costs", label: "Costs", needs: [["costs:Read", "*"]] },
];

const ADMINISTRATION: Entry[] = [
  { to: "/users", label: "Users", needs: [["users:List", "user/*"]] },
  { to: "/groups", label: "Groups", needs: [["groups:List", "group/*"]] },
  { to: "/roles", label: "Roles", needs: [["policies:List", "policy/*"]] },
  { to: "/policies", label: "Policies", needs: [["policies:List", "policy/*"]] },
  { to: "/access", label: "Access", needs: [["policies:List", "policy/*"], ["access:Check", "user/*"]] },
  { to: "/projects", label: "Projects", needs: [["projects:List", "project/*"]] },
  { to: "/audit", label: "Audit log", needs: [["audit:Read", "audit"]] },
  { to: "/backups", label: "Backups", needs: [["backups:List", "backup/*"]] },
];

/** The addresses of the entries the caller may open. */
export async function allowedEntries(): Promise<Set<string>> {
  const entries = [...SERVICES, ...ADMINISTRATION];
  const allowed = await can(entries.flatMap((e) => e.needs ?? []));
  const shown = new Set<string>();
  let at = 0;
  for (const { to, needs = [] } of entries) {
    if (needs.length === 0 || allowed.slice(at, at + needs.length).some(Boolean)) shown.add(to);
    at += needs.length;
  }
  return shown;
}

export function Menu({ shown, open }: { shown: Set<string>; open: boolean }) {
  const admin = ADMINISTRATION.filter((e) => shown.has(e.to));
  return (
    <nav className={open ? "sidebar open" : "sidebar"} aria-label="Services">
      {SERVICES.filter((e) => shown.has(e.to)).map(({ to, label }) => (
        <NavLink key={to} to={to} end={to === "/"}>{label}</NavLink>
      ))}
      {admin.length > 0 && <div className="menu-heading" aria-hidden>Administration</div>}
      {admin.map(({ to, label }) => <NavLink key={to} to={to}>{label}</NavLink>)}
    </nav>
  );
}
