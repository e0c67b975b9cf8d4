"""Break glass: give the platform an admin back when nobody can act as one any more (the last
admin's password forgotten, their account locked or disabled, a deny policy bound too widely).

The server refuses every change that would leave no admin (``grants.guard_admins``), but people
forget passwords and lose tokens. Whoever runs the control plane holds its database, and so
can always do this, as AWS's root user recovery needs the account's e-mail: ``cumulo
break-glass`` (on the server's machine, with its settings) reads the database directly, with no
server and no token, and:

- makes the user (``admin`` by default) if there is none, as a person;
- enables them and clears their sign-in lockout;
- binds the ``admin`` role to them everywhere;
- if a deny still stops them managing users or policies (a policy bound to them or to one of
  their groups), detaches that policy from them and takes them out of those groups, saying
  each change;
- makes a new token (shown once) and records all of it in the audit log
  (``access:BreakGlass``), so the next admin sees what was done.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cumulo.access import authz
from cumulo.access.models import Binding, Group, GroupMember, Policy, User
from cumulo.access.policy import Context
from cumulo.access.tokens import _add_token, _new_secret
from cumulo.db import utcnow

__all__ = ["Recovered", "break_glass"]

# What an admin must be able to do to repair the rest.
_ESSENTIAL = (("users:Manage", "user/*"), ("policies:Manage", "policy/*"),
              ("policies:List", "policy/*"), ("users:List", "user/*"))


@dataclass
class Recovered:
    user: str
    token: str
    token_name: str
    changes: list[str] = field(default_factory=list)


def _blocking(session: Session, user: User) -> str | None:
    """The reason an essential admin action is still refused to ``user``, or None."""
    policies, disabled = authz.policy_set_for(session, user.id)
    if disabled:
        return f"user {user.name} is disabled"
    for action, resource in _ESSENTIAL:
        decision = policies.decide(action, resource, Context(user=user.name))
        if not decision.allowed:
            return decision.reason
    return None


def break_glass(session: Session, user_name: str = "admin") -> Recovered:
    """Make ``user_name`` an admin that can act again; returns their new token and what was
    changed. Commits."""
    changes: list[str] = []
    user = session.scalar(select(User).where(User.name == user_name))
    if user is None:
        user = User(name=user_name, kind="person", is_admin=True)
        session.add(user)
        session.flush()
        changes.append(f"created user {user_name}")
    if user.kind != "person":
        user.kind = "person"
        changes.append(f"made {user_name} a person (was a service account)")
    if user.disabled_at is not None:
        user.disabled_at = None
        changes.append(f"enabled {user_name}")
    if user.failed_logins or user.locked_until is not None:
        user.failed_logins, user.locked_until = 0, None
        changes.append(f"cleared {user_name}'s sign-in lockout")
    has_admin = session.scalar(select(Binding.id).where(
        Binding.subject_kind == "user", Binding.subject_id == user.id,
        Binding.role == "admin", Binding.project_id.is_(None)))
    if has_admin is None:
        session.add(Binding(subject_kind="user", subject_id=user.id, role="admin",
                            created_by=user.id))
        changes.append(f"bound role admin to {user_name} everywhere")
    user.is_admin = True
    session.flush()
    if _blocking(session, user) is not None:
        changes += _detach_denies(session, user)
    secret = _new_secret()
    token_name = f"break-glass-{utcnow():%Y%m%dT%H%M%S}"
    _add_token(session, user, token_name, secret, created_by=user.id)
    session.commit()
    authz.changed()
    still = _blocking(session, user)
    if still is not None:  # only the platform's own denies are left: they do not block this
        raise RuntimeError(f"{user_name} is still refused after break-glass: {still}")
    return Recovered(user_name, secret, token_name, changes)


def _detach_denies(session: Session, user: User) -> list[str]:
    """Take away every custom policy bound to ``user`` and every group they are in (roles are
    not denies; custom policies may be): what is left is the admin role."""
    changes: list[str] = []
    own = session.execute(
        select(Binding, Policy.name).join(Policy, Binding.policy_id == Policy.id)
        .where(Binding.subject_kind == "user", Binding.subject_id == user.id)).all()
    for binding, policy_name in own:
        session.delete(binding)
        changes.append(f"detached policy {policy_name} from {user.name}")
    groups = session.execute(
        select(Group.id, Group.name).join(GroupMember, GroupMember.group_id == Group.id)
        .where(GroupMember.user_id == user.id)).all()
    for group_id, group_name in groups:
        session.execute(delete(GroupMember).where(GroupMember.group_id == group_id,
                                                  GroupMember.user_id == user.id))
        changes.append(f"took {user.name} out of group {group_name}")
    session.flush()
    return changes
