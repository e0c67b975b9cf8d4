// What the identity and access pages read and send: the shapes of /api/v1/users, groups, roles,
// policies, bindings, access/check, projects and audit (access/iam_api.py, access/audit_api.py).

export interface User {
  name: string;
  kind: "person" | "service";
  email: string | null;
  is_admin: boolean;
  disabled: boolean;
  has_password: boolean;
  groups: string[];
  roles: string[];
  tokens: number;
  created_at: string;
}

export interface Group {
  name: string;
  description: string;
  members: string[];
  roles: string[];
  created_at: string;
}

export interface Statement {
  sid?: string;
  effect: "allow" | "deny";
  actions: string[];
  resources: string[];
  conditions?: Record<string, unknown>;
}

export interface PolicyDocument { statements: Statement[] }

export interface Role { name: string; description: string; document: PolicyDocument }

export interface Policy {
  name: string;
  description: string;
  document: PolicyDocument;
  updated_at: string;
  created_at: string;
}

/** Who holds what: subject "user:ana" or "group:sales"; given "developer",
 *  "policy sales-read", either with " in project NAME". */
export interface Binding { id: number; subject: string; given: string }

/** A grant as POST /bindings and /bindings/revoke take it. */
export interface Grant {
  user?: string;
  group?: string;
  role?: string;
  policy?: string;
  project?: string;
}

/** The simulator's answer (POST /access/check). */
export interface Decision {
  user: string;
  action: string;
  resource: string;
  allowed: boolean;
  reason: string;
  source: string | null;
  statement: number | null;
  sid: string | null;
}

export const QUOTAS: [string, string][] = [
  ["cpus", "CPUs"], ["gpus", "GPUs"], ["memory_gb", "Memory (GB)"], ["endpoints", "Endpoints"],
  ["storage_gb", "Storage (GB)"],
];

export interface Project {
  name: string;
  description: string;
  quotas: Record<string, number>;
  created_at: string;
}

export interface AuditEvent {
  seq: number;
  at: string;
  user: string | null;
  action: string;
  resource: string;
  outcome: "allowed" | "denied" | "failed";
  source: string | null;
  request_id: string | null;
  details: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

export interface AuditPage { events: AuditEvent[]; next: number | null }

export interface Verified {
  ok: boolean;
  entries: number;
  first_bad: number | null;
  problem: string | null;
  where: "database" | "lake" | null;
  lake_entries: number | null;
}

/** The console's address of a user, group, policy or project (and the API's, under /api/v1). */
export const pathOf = (kind: "users" | "groups" | "policies" | "projects", name: string) =>
  `/${kind}/${encodeURIComponent(name)}`;

/** The grant a binding row names, to take it back. Names hold no spaces (the server's rules for
 *  users, groups, roles, policies and projects), so the row's words are its parts. */
export function grantOf(binding: Binding): Grant {
  const [kind, ...rest] = binding.subject.split(":");
  const name = rest.join(":");
  const match = /^(policy )?(\S+)(?: in project (\S+))?$/.exec(binding.given);
  if (!match) throw new Error(`cannot read the grant "${binding.given}"`);
  return {
    [kind === "group" ? "group" : "user"]: name,
    [match[1] ? "policy" : "role"]: match[2],
    ...(match[3] ? { project: match[3] } : {}),
  };
}

/** The subject's own part of a binding row: "ana" of "user:ana". */
export const subjectName = (binding: Binding) => binding.subject.split(":").slice(1).join(":");

export const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
