"""The decision point: may this caller take this action on this resource?

Every part asks through ``Principal.require`` / ``can`` (:mod:`cumulo.principal`), which the
server points here at start. A caller's rights are the statements of every role and policy
bound to them or to one of their groups (everywhere, or in one project); they are read from
the database once a second per user at most, and at once after a change made here
(:func:`changed`), as tokens are (:class:`cumulo.access.tokens.TokenCache`). A decision is
then pure (:mod:`cumulo.access.policy`): an explicit deny wins, else an allow, else no.

A job's token acts with its submitter's rights, never to manage credentials, buckets, people
or policies, nor to read the audit log. A refusal is written to the audit log with the
statement that decided, through ``on_denied``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from cumulo.access import holders
from cumulo.access.models import Binding, Group, GroupMember, Policy, Project, User
from cumulo.access.policy import Context, PolicySet, parse_policy
from cumulo.access.policy import Policy as Document
from cumulo.access.roles import role
from cumulo.principal import NOT_FOR_JOBS, Principal, request_project, source_address

__all__ = ["SYSTEM", "Authorizer", "changed", "policy_set_for", "worst_case"]

log = logging.getLogger("cumulo.access")

# Bumped by every change to bindings, groups, policies or users made in this process, so that
# the next decision reads them again; another process's change is felt within the ttl.
_generation = [0]
# Beyond NOT_FOR_JOBS: whole services a job's token never uses.
_NOT_FOR_JOBS_SERVICES = {"users", "groups", "policies", "projects", "audit", "access"}

# What no project holds but a project's members use, in the project a request names
# (X-Cumulo-Project): MLflow's experiments and registered models, running SQL, costs.
_USED_IN_A_PROJECT = {"experiment", "model", "sql", "query", "*"}

Denied = Callable[[Principal, str, str, str], None]  # principal, action, resource, why
# Denies that hold for everyone, admins included: the audit log's lake copy is written by the
# server alone (access/audit.py), never through the API or SQL.
SYSTEM = parse_policy({"statements": [{
    "sid": "audit-append-only", "effect": "deny",
    "actions": ["tables:Write", "tables:Drop", "tables:Create", "tables:Grant"],
    "resources": ["table/audit/*"]}, {
    "sid": "audit-database", "effect": "deny",
    "actions": ["tables:DropDatabase", "tables:CreateDatabase", "tables:Create"],
    "resources": ["database/audit"]}]}, name="system")


def changed() -> None:
    """Say that who-may-do-what changed: decisions in this process read it again at once."""
    _generation[0] += 1


@dataclass(frozen=True)
class _Rights:
    policies: PolicySet
    disabled: bool
    loaded_at: float
    generation: int


# Parsed documents by (policy, when it last changed): a user's rights are read again each
# second, and parsing a thousand policies each time would cost more than the reading.
_PARSED: dict[tuple[int, object], Document] = {}


def _parsed(policy: Policy) -> Document:
    key = (policy.id, policy.updated_at)
    found = _PARSED.get(key)
    if found is None:
        if len(_PARSED) > 20_000:
            _PARSED.clear()
        found = _PARSED[key] = parse_policy(policy.document, name=policy.name)
    return found


def worst_case(policy: Document) -> Document:
    """``policy`` as it stands when its conditions go against the user: each conditional
    deny applies, each conditional allow does not (for checks that must hold at any time and
    from any address: the last admin's rights)."""
    kept = tuple(replace(s, conditions=None) if s.effect == "deny" else s
                 for s in policy.statements
                 if s.conditions is None or s.effect == "deny")
    return replace(policy, statements=kept)


def policy_set_for(session: Session, user_id: int, *,
                   worst: bool = False) -> tuple[PolicySet, bool]:
    """A user's rights from the database: every role and policy bound to them or their groups
    (each labelled with where it came from), and whether the user is disabled; ``worst``:
    each as :func:`worst_case` reads it."""
    user = session.get(User, user_id)
    if user is None:
        return PolicySet([]), True
    groups = dict(session.execute(
        select(Group.id, Group.name).join(GroupMember, GroupMember.group_id == Group.id)
        .where(GroupMember.user_id == user_id)).all())
    rows = session.execute(
        select(Binding, Policy, Project.name)
        .outerjoin(Policy, Binding.policy_id == Policy.id)
        .outerjoin(Project, Binding.project_id == Project.id)
        .where(or_((Binding.subject_kind == "user") & (Binding.subject_id == user_id),
                   (Binding.subject_kind == "group") & Binding.subject_id.in_(groups or [-1])))
        .order_by(Binding.id)).all()
    entries: list[tuple[str, Document, str | None]] = [
        ("the platform (the audit log is append-only)", SYSTEM, None)]
    for binding, policy, project in rows:
        if binding.role is not None:
            label, parsed = f"role {binding.role}", role(binding.role)
        elif policy is not None:
            label, parsed = f"policy {policy.name}", _parsed(policy)
        else:
            continue
        if binding.subject_kind == "group":
            label += f" (group {groups.get(binding.subject_id, binding.subject_id)})"
        if project is not None:
            label += f" in project {project}"
        entries.append((label, worst_case(parsed) if worst else parsed, project))
    return PolicySet(entries), user.disabled_at is not None


class Authorizer:
    """The decider the server installs (``cumulo.principal.install_decider``)."""

    def __init__(self, sessions: sessionmaker[Session], *, ttl: float = 1.0,
                 on_denied: Denied | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self.on_denied = on_denied
        self.clock = clock
        self._rights: dict[int, _Rights] = {}
        self._loading: set[int] = set()
        self._lock = threading.Lock()
        # resource -> (its project, when read): for callers with rights bound in a project
        self._projects: dict[str, tuple[str | None, float]] = {}

    def ready(self, principal: Principal) -> bool:
        known = self._rights.get(principal.user_id)
        # rights bound in a project may need the resource's project: from the database
        return (known is not None and self._fresh(known)
                and not known.policies.in_projects)

    def _fresh(self, known: _Rights) -> bool:
        return (known.generation == _generation[0]
                and self.clock() - known.loaded_at < self.ttl)

    def rights(self, user_id: int) -> _Rights:
        known = self._rights.get(user_id)
        if known is not None and self._fresh(known):
            if self.clock() - known.loaded_at >= self.ttl / 2:
                self._look_ahead(user_id)
            return known
        return self._load(user_id)

    def _look_ahead(self, user_id: int) -> None:
        """Read a busy user's rights again in the background, half a ttl early, so that no
        request of theirs waits for it (as the token cache does)."""
        with self._lock:
            if user_id in self._loading:
                return
            self._loading.add(user_id)

        def load() -> None:
            try:
                self._load(user_id)
            except Exception:  # the database is away: the answer goes stale, then is asked
                log.warning("reading a user's rights ahead of time failed", exc_info=True)
            finally:
                with self._lock:
                    self._loading.discard(user_id)

        threading.Thread(target=load, name="cumulo-rights", daemon=True).start()

    def _load(self, user_id: int) -> _Rights:
        generation = _generation[0]
        with self.sessions() as session:
            policies, disabled = policy_set_for(session, user_id)
        fresh = _Rights(policies, disabled, self.clock(), generation)
        with self._lock:
            if len(self._rights) > 10_000:
                self._rights.clear()
            self._rights[user_id] = fresh
        return fresh

    def project_of(self, resource: str) -> str | None:
        """The resource's project (:mod:`cumulo.access.holders`), read at most once a ttl."""
        known = self._projects.get(resource)
        now = self.clock()
        if known is not None and now - known[1] < self.ttl:
            return known[0]
        with self.sessions() as session:
            project = holders.project_of(session, resource)
        with self._lock:
            if len(self._projects) > 50_000:
                self._projects.clear()
            self._projects[resource] = (project, now)
        return project

    def check(self, principal: Principal, action: str, resource: str, *,
              owner: str | None = None, project: str | None = None,
              quiet: bool = False) -> str | None:
        why = self._why_not(principal, action, resource, owner=owner, project=project)
        if why is not None and not quiet and self.on_denied is not None:
            self.on_denied(principal, action, resource, why)
        return why

    def _why_not(self, principal: Principal, action: str, resource: str, *,
                 owner: str | None, project: str | None) -> str | None:
        if principal.via_job and (action in NOT_FOR_JOBS
                                  or action.split(":", 1)[0] in _NOT_FOR_JOBS_SERVICES):
            return (f"a job's token cannot {NOT_FOR_JOBS.get(action, action)}; it acts only "
                    "for its job, while the job runs")
        if resource.startswith("table/audit/") and action in ("tables:Read", "tables:List"):
            # The audit log's lake copy is the audit log: reading it is audit:Read, whatever
            # rights on tables the caller has.
            action, resource = "audit:Read", "audit"
        rights = self.rights(principal.user_id)
        if rights.disabled:
            return f"user {principal.user_name} is disabled"
        if project is None and rights.policies.in_projects:
            project = self.project_of(resource)
            if project is None and resource.split("/", 1)[0] in _USED_IN_A_PROJECT:
                # MLflow's experiments and models, SQL and costs belong to no project: they
                # are used in the one the request works in.
                project = request_project.get()
        decision = rights.policies.decide(action, resource, Context(
            user=principal.user_name, source_ip=source_address.get(), owner=owner,
            project=project))
        if decision.allowed:
            return None
        if project is None and rights.policies.projects:
            held = ", ".join(sorted(rights.policies.projects))
            return (f"{decision.reason} (rights given in project {held} hold only on that "
                    "project's resources: name it with --project, or CUMULO_PROJECT)")
        return decision.reason
