"""The directory: users (people, and service accounts for automation) and groups.

Each function takes the caller and asks the decision point first (``users:Manage`` on
``user/alice``...), changes rows, and commits; a change that would leave no enabled admin
able to administer is refused (:func:`cumulo.access.grants.guard_admins`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cumulo.access import authz, grants
from cumulo.access.models import Binding, Group, GroupMember, Token, User
from cumulo.access.passwords import set_password, verify_password
from cumulo.access.tokens import disable_user, enable_user, forget_cached
from cumulo.db import utcnow
from cumulo.errors import Conflict, Forbidden, Invalid, NotFound
from cumulo.principal import Principal

__all__ = ["KINDS", "UserInfo", "add_member", "create_group", "create_user", "delete_group",
           "delete_user", "find_group", "find_user", "group_members", "list_groups",
           "list_users", "remove_member", "update_user", "user_info"]

KINDS = ("person", "service")
_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{1,60}$")


def _valid_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise Invalid(f"{what} name {name!r} must be 1-64 lower-case letters, digits, '.', '_' "
                      f"or '-', starting with a letter, e.g. 'alice' or 'data-science'",
                      details={"field": "name"})
    return name


def find_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"no user {name!r}; 'cumulo users ls' lists them",
                       details={"user": name})
    return user


def find_group(session: Session, name: str) -> Group:
    group = session.scalar(select(Group).where(Group.name == name))
    if group is None:
        raise NotFound(f"no group {name!r}; 'cumulo groups ls' lists them",
                       details={"group": name})
    return group


@dataclass(frozen=True)
class UserInfo:
    user: User
    groups: list[str]
    roles: list[str]  # "developer", "developer in project x", "policy sales-read"
    tokens: int


def user_info(session: Session, user: User) -> UserInfo:
    groups = list(session.scalars(
        select(Group.name).join(GroupMember, GroupMember.group_id == Group.id)
        .where(GroupMember.user_id == user.id).order_by(Group.name)))
    roles = [grants.describe(session, b) for b in session.scalars(
        select(Binding).where(Binding.subject_kind == "user", Binding.subject_id == user.id)
        .order_by(Binding.id))]
    tokens = session.scalar(select(func.count()).select_from(Token).where(
        Token.user_id == user.id, Token.kind == "user", Token.revoked_at.is_(None))) or 0
    return UserInfo(user, groups, roles, tokens)


def list_users(session: Session, caller: Principal) -> list[User]:
    caller.require("users:List", "user/*")
    return list(session.scalars(select(User).order_by(User.name)))


def create_user(session: Session, caller: Principal, name: str, *, kind: str = "person",
                email: str | None = None, password: str | None = None,
                role: str | None = None) -> User:
    """A new user; ``role`` (a built-in role) is given everywhere when named."""
    _valid_name(name, "user")
    caller.require("users:Manage", f"user/{name}")
    if kind not in KINDS:
        raise Invalid(f"kind {kind!r} is not one of {', '.join(KINDS)}: a person signs in, a "
                      "service account only uses tokens", details={"field": "kind"})
    if email is not None and not _EMAIL.match(email):
        raise Invalid(f"email {email!r} is not an address like 'alice@example.com'",
                      details={"field": "email"})
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise Conflict(f"there is already a user {name!r}", details={"user": name})
    user = User(name=name, kind=kind, email=email, is_admin=False, created_by=caller.user_id)
    if password is not None:
        set_password(user, password)  # checks strength (and refuses a service account)
    session.add(user)
    try:
        session.flush()
        if role is not None:
            grants.bind(session, caller, subject=("user", user.id), role=role, commit=False)
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"there is already a user {name!r}") from exc
    authz.changed()
    return user


def update_user(session: Session, caller: Principal, name: str, *,
                email: str | None = None, password: str | None = None,
                disabled: bool | None = None, current_password: str | None = None) -> User:
    """Change a user. Anyone may change their own password, with their current one (a token
    alone, perhaps leaked, must not be enough to take the account over); the rest, and
    another's password, asks users:Manage."""
    self_service = name == caller.user_name and disabled is None and email is None
    if not self_service:  # asked first: nothing is said of who exists to others
        caller.require("users:Manage", f"user/{name}")
    user = find_user(session, name)
    if self_service and password is not None and not caller.can("users:Manage",
                                                                 f"user/{name}"):
        if caller.via_job:
            raise Forbidden("a job's token cannot change passwords; it acts only for its job")
        if user.password_hash is None:  # a token alone must not add a way to sign in
            raise Forbidden(f"{name} has no password: an admin sets the first one "
                            f"('cumulo users passwd {name}')")
        if not verify_password(user.password_hash, current_password or ""):
            raise Forbidden("changing your own password needs your current one "
                            "('current_password'; 'cumulo users passwd' asks for it)",
                            details={"field": "current_password"})
    if email is not None:
        if email and not _EMAIL.match(email):
            raise Invalid(f"email {email!r} is not an address like 'alice@example.com'",
                          details={"field": "email"})
        user.email = email or None
    if password is not None:
        set_password(user, password)
    if disabled is True:
        if user.id == caller.user_id:
            raise Conflict("you cannot disable yourself; another admin can")
        if user.disabled_at is None:
            user.disabled_at = utcnow()
            session.flush()
            grants.guard_admins(session, f"disabling {name}")
        disable_user(session, user)
    elif disabled is False:
        enable_user(session, user)
    session.commit()
    authz.changed()
    return user


def delete_user(session: Session, caller: Principal, name: str) -> None:
    user = find_user(session, name)
    caller.require("users:Manage", f"user/{name}")
    if user.id == caller.user_id:
        raise Conflict("you cannot delete yourself; another admin can")
    session.execute(delete(Binding).where(Binding.subject_kind == "user",
                                          Binding.subject_id == user.id))
    session.delete(user)
    session.flush()
    grants.guard_admins(session, f"deleting {name}")
    session.commit()
    forget_cached()  # their tokens went with them
    authz.changed()


# --- groups --------------------------------------------------------------------------------

def list_groups(session: Session, caller: Principal) -> list[Group]:
    caller.require("groups:List", "group/*")
    return list(session.scalars(select(Group).order_by(Group.name)))


def group_members(session: Session, group: Group) -> list[str]:
    return list(session.scalars(
        select(User.name).join(GroupMember, GroupMember.user_id == User.id)
        .where(GroupMember.group_id == group.id).order_by(User.name)))


def create_group(session: Session, caller: Principal, name: str, *,
                 description: str = "") -> Group:
    _valid_name(name, "group")
    caller.require("groups:Manage", f"group/{name}")
    if session.scalar(select(Group.id).where(Group.name == name)) is not None:
        raise Conflict(f"there is already a group {name!r}", details={"group": name})
    group = Group(name=name, description=description, created_by=caller.user_id)
    session.add(group)
    session.commit()
    return group


def delete_group(session: Session, caller: Principal, name: str) -> None:
    group = find_group(session, name)
    caller.require("groups:Manage", f"group/{name}")
    session.execute(delete(Binding).where(Binding.subject_kind == "group",
                                          Binding.subject_id == group.id))
    session.delete(group)
    session.flush()
    grants.guard_admins(session, f"deleting group {name}")
    session.commit()
    authz.changed()


def add_member(session: Session, caller: Principal, group_name: str, user_name: str) -> Group:
    group = find_group(session, group_name)
    caller.require("groups:Manage", f"group/{group_name}")
    user = find_user(session, user_name)
    if session.get(GroupMember, (group.id, user.id)) is None:
        session.add(GroupMember(group_id=group.id, user_id=user.id))
        session.flush()
        grants.guard_admins(session, f"adding {user_name} to {group_name}")
        session.commit()
        authz.changed()
    return group


def remove_member(session: Session, caller: Principal, group_name: str,
                  user_name: str) -> Group:
    group = find_group(session, group_name)
    caller.require("groups:Manage", f"group/{group_name}")
    user = find_user(session, user_name)
    member = session.get(GroupMember, (group.id, user.id))
    if member is None:
        raise NotFound(f"{user_name} is not a member of {group_name}")
    session.delete(member)
    session.flush()
    grants.guard_admins(session, f"removing {user_name} from {group_name}")
    session.commit()
    authz.changed()
    return group
