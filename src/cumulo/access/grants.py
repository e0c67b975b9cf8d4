"""Who has what: custom policies, and bindings of roles and policies to users and groups,
everywhere or in one project; the policy simulator (``cumulo access check``).

Two rules hold after every change: some enabled user can still administer users and policies
(a change that would lock the last admin out is refused, before it is committed), and each
user's ``is_admin`` says whether they hold the admin role everywhere (directly or through a
group), for the code that only needs to know that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from cumulo.access import authz, holders
from cumulo.access.actions import ACTIONS, known
from cumulo.access.models import Binding, Group, GroupMember, Policy, Project, User
from cumulo.access.policy import Context, parse_policy
from cumulo.access.roles import ROLES
from cumulo.access.roles import role as role_of
from cumulo.db import utcnow
from cumulo.errors import Conflict, Invalid, NotFound
from cumulo.principal import Principal

__all__ = ["Check", "bind", "bindings", "bindings_of", "check", "create_policy",
           "delete_policy", "describe", "find_policy", "guard_admins", "list_policies",
           "resource_for", "roles", "subject_name", "unbind", "update_policy"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# What an administrator must keep being able to do, for the platform to stay administrable.
_ADMINISTER = (("users:Manage", "user/*"), ("policies:Manage", "policy/*"))


# --- policies -------------------------------------------------------------------------------

def find_policy(session: Session, name: str) -> Policy:
    policy = session.scalar(select(Policy).where(Policy.name == name))
    if policy is None:
        raise NotFound(f"no policy {name!r}; 'cumulo policies ls' lists them (built-in roles: "
                       f"{', '.join(ROLES)})", details={"policy": name})
    return policy


def list_policies(session: Session, caller: Principal) -> list[Policy]:
    caller.require("policies:List", "policy/*")
    return list(session.scalars(select(Policy).order_by(Policy.name)))


def create_policy(session: Session, caller: Principal, name: str, document: object, *,
                  description: str = "") -> Policy:
    if not _NAME.match(name):
        raise Invalid(f"policy name {name!r} must be 1-64 letters, digits, '.', '_' or '-'",
                      details={"field": "name"})
    caller.require("policies:Manage", f"policy/{name}")
    if name in ROLES:
        raise Conflict(f"{name!r} is a built-in role; name the policy otherwise")
    parsed = parse_policy(document, name=name)  # Invalid names the statement and field
    if session.scalar(select(Policy.id).where(Policy.name == name)) is not None:
        raise Conflict(f"there is already a policy {name!r}; 'cumulo policies update' "
                       "changes it", details={"policy": name})
    policy = Policy(name=name, description=description, document=parsed.document,
                    updated_at=utcnow(), created_by=caller.user_id)
    session.add(policy)
    session.commit()
    return policy


def update_policy(session: Session, caller: Principal, name: str, document: object, *,
                  description: str | None = None) -> Policy:
    policy = find_policy(session, name)
    caller.require("policies:Manage", f"policy/{name}")
    policy.document = parse_policy(document, name=name).document
    if description is not None:
        policy.description = description
    policy.updated_at = utcnow()
    session.flush()
    guard_admins(session, f"changing policy {name}")
    session.commit()
    authz.changed()
    return policy


def delete_policy(session: Session, caller: Principal, name: str) -> None:
    policy = find_policy(session, name)
    caller.require("policies:Manage", f"policy/{name}")
    session.delete(policy)  # its bindings go with it (ON DELETE CASCADE; and here for SQLite)
    session.execute(delete(Binding).where(Binding.policy_id == policy.id))
    session.flush()
    guard_admins(session, f"deleting policy {name}")
    session.commit()
    authz.changed()


# --- bindings -------------------------------------------------------------------------------

def _subject(session: Session, user: str | None, group: str | None) -> tuple[str, int]:
    if (user is None) == (group is None):
        raise Invalid("name one user or one group (--user or --group)",
                      details={"field": "subject"})
    if user is not None:
        found = session.scalar(select(User.id).where(User.name == user))
        if found is None:
            raise NotFound(f"no user {user!r}; 'cumulo users ls' lists them")
        return "user", found
    found = session.scalar(select(Group.id).where(Group.name == group))
    if found is None:
        raise NotFound(f"no group {group!r}; 'cumulo groups ls' lists them")
    return "group", found


def _project_id(session: Session, name: str | None) -> int | None:
    if name is None:
        return None
    found = session.scalar(select(Project.id).where(Project.name == name))
    if found is None:
        raise NotFound(f"no project {name!r}; 'cumulo projects ls' lists them")
    return found


def bind(session: Session, caller: Principal, *, subject: tuple[str, int] | None = None,
         user: str | None = None, group: str | None = None, role: str | None = None,
         policy: str | None = None, project: str | None = None,
         commit: bool = True) -> Binding:
    """Give a role or a policy to a user or a group, everywhere or in ``project``."""
    kind, subject_id = subject if subject is not None else _subject(session, user, group)
    if (role is None) == (policy is None):
        raise Invalid("give one role or one policy (--role or --policy)",
                      details={"field": "role"})
    caller.require("policies:Manage", f"policy/{role or policy}")
    policy_id = None
    if role is not None:
        role_of(role)  # NotFound lists the roles
    else:
        policy_id = find_policy(session, policy or "").id
    project_id = _project_id(session, project)
    existing = session.scalar(select(Binding).where(
        Binding.subject_kind == kind, Binding.subject_id == subject_id,
        Binding.role.is_(None) if role is None else Binding.role == role,
        Binding.policy_id.is_(None) if policy_id is None else Binding.policy_id == policy_id,
        Binding.project_id.is_(None) if project_id is None
        else Binding.project_id == project_id))
    if existing is not None:
        return existing
    binding = Binding(subject_kind=kind, subject_id=subject_id, role=role, policy_id=policy_id,
                      project_id=project_id, created_by=caller.user_id)
    session.add(binding)
    session.flush()
    guard_admins(session, f"giving {describe(session, binding)}")
    if commit:
        session.commit()
        authz.changed()
    return binding


def unbind(session: Session, caller: Principal, *, user: str | None = None,
           group: str | None = None, role: str | None = None, policy: str | None = None,
           project: str | None = None) -> int:
    """Take a role or policy back; how many bindings went (0 or 1)."""
    kind, subject_id = _subject(session, user, group)
    if (role is None) == (policy is None):
        raise Invalid("name one role or one policy (--role or --policy)")
    caller.require("policies:Manage", f"policy/{role or policy}")
    policy_id = find_policy(session, policy).id if policy is not None else None
    project_id = _project_id(session, project)
    found = session.scalars(select(Binding).where(
        Binding.subject_kind == kind, Binding.subject_id == subject_id,
        Binding.role == role if role is not None else Binding.policy_id == policy_id,
        Binding.project_id.is_(None) if project_id is None
        else Binding.project_id == project_id)).all()
    if not found:
        given = f"role {role}" if role else f"policy {policy}"
        where = f" in project {project}" if project else ""
        raise NotFound(f"{user or group} has no {given}{where}")
    for binding in found:
        session.delete(binding)
    session.flush()
    guard_admins(session, f"taking {role or policy} from {user or group}")
    session.commit()
    authz.changed()
    return len(found)


def bindings(session: Session, caller: Principal, *, user: str | None = None,
             group: str | None = None) -> list[Binding]:
    caller.require("policies:List", "policy/*")
    query = select(Binding).order_by(Binding.id)
    if user is not None or group is not None:
        kind, subject_id = _subject(session, user, group)
        query = query.where(Binding.subject_kind == kind, Binding.subject_id == subject_id)
    return list(session.scalars(query))


def bindings_of(session: Session, kind: str, subject_id: int) -> list[Binding]:
    return list(session.scalars(select(Binding).where(
        Binding.subject_kind == kind, Binding.subject_id == subject_id).order_by(Binding.id)))


def subject_name(session: Session, binding: Binding) -> str:
    """``user:alice`` or ``group:analysts``."""
    model = User if binding.subject_kind == "user" else Group
    name = session.scalar(select(model.name).where(model.id == binding.subject_id))
    return f"{binding.subject_kind}:{name or binding.subject_id}"


def describe(session: Session, binding: Binding) -> str:
    """``developer``, ``policy sales-read in project x``, for a user's or group's list."""
    if binding.role is not None:
        text = binding.role
    else:
        policy = session.get(Policy, binding.policy_id)
        text = f"policy {policy.name if policy else binding.policy_id}"
    if binding.project_id is not None:
        project = session.get(Project, binding.project_id)
        text += f" in project {project.name if project else binding.project_id}"
    return text


def guard_admins(session: Session, what: str) -> None:
    """Refuse (Conflict) a change, flushed but not committed, after which no enabled user
    could administer users and policies any more; else keep ``is_admin`` in step."""
    _sync_admin_flags(session)
    enabled = list(session.scalars(select(User).where(User.disabled_at.is_(None))
                                   .order_by(User.is_admin.desc(), User.id)))
    for user in enabled:  # conditions read against them: from anywhere, at any time
        policies, _ = authz.policy_set_for(session, user.id, worst=True)
        context = Context(user=user.name)
        if all(policies.decide(a, r, context).allowed for a, r in _ADMINISTER):
            return
    session.rollback()
    raise Conflict(f"{what} would leave no enabled user able to administer users and "
                   "policies (users:Manage and policies:Manage): the last admin would be "
                   "locked out. Give another user the admin role first",
                   details={"reason": "last_admin"})


def _sync_admin_flags(session: Session) -> None:
    admin_groups = select(Binding.subject_id).where(
        Binding.subject_kind == "group", Binding.role == "admin", Binding.project_id.is_(None))
    admins = select(User.id).where(or_(
        User.id.in_(select(Binding.subject_id).where(
            Binding.subject_kind == "user", Binding.role == "admin",
            Binding.project_id.is_(None))),
        User.id.in_(select(GroupMember.user_id).where(GroupMember.group_id.in_(admin_groups)))))
    ids = set(session.scalars(admins))
    session.execute(update(User).where(User.id.in_(ids or [-1])).values(is_admin=True))
    session.execute(update(User).where(User.id.not_in(ids or [-1])).values(is_admin=False))


# --- the simulator --------------------------------------------------------------------------

_SHORTHAND = {"tables": "table", "files": "bucket", "clusters": "cluster", "jobs": "job",
              "models": "model", "tracking": "experiment", "endpoints": "endpoint",
              "pipelines": "pipeline", "users": "user", "groups": "group",
              "policies": "policy", "projects": "project", "sql": "query"}


def resource_for(action: str, resource: str) -> str:
    """A resource as the simulator takes it: ``table/sales/orders`` as it is, or the short
    ``sales.orders`` for a ``tables:`` action, ``churn`` for ``endpoints:Invoke``..."""
    if "/" in resource or resource in ("*", "sql"):
        return resource
    kind = _SHORTHAND.get(action.split(":", 1)[0])
    if kind is None:
        return resource
    if kind == "table" and "." in resource:
        return "table/" + resource.replace(".", "/", 1)
    return f"{kind}/{resource}"


@dataclass(frozen=True)
class Check:
    user: str
    action: str
    resource: str
    allowed: bool
    reason: str
    source: str | None = None  # the role or policy whose statement decided
    statement: int | None = None
    sid: str | None = None


def check(session: Session, caller: Principal, user: str, action: str, resource: str, *,
          source_ip: str | None = None, owner: str | None = None, project: str | None = None,
          at: datetime | None = None) -> Check:
    """What the decision point answers ``user`` for ``action`` on ``resource``, and which
    statement decided (IAM's policy simulator)."""
    caller.require("access:Check", f"user/{user}")
    if action not in ACTIONS:
        hint = " (give one action, not a pattern)" if known(action) else ""
        raise Invalid(f"{action!r} is not an action{hint}; 'cumulo access actions' lists them",
                      details={"field": "action"})
    found = session.scalar(select(User).where(User.name == user))
    if found is None:
        raise NotFound(f"no user {user!r}; 'cumulo users ls' lists them")
    target = resource_for(action, resource)
    policies, disabled = authz.policy_set_for(session, found.id)
    if disabled:
        return Check(user, action, target, False, f"user {user} is disabled")
    if project is None:  # the resource's own, as the decision point would find it
        project = holders.project_of(session, target)
    context = Context(user=user, source_ip=source_ip, owner=owner, project=project,
                      **({"now": at} if at is not None else {}))
    decision = policies.decide(action, target, context)
    return Check(user, action, target, decision.allowed, decision.reason, decision.source,
                 decision.statement, decision.sid)


def roles() -> list[tuple[str, str, dict[str, object]]]:
    """The built-in roles: name, what it is for, its policy document."""
    return [(name, description, policy.document) for name, (description, policy)
            in ROLES.items()]
