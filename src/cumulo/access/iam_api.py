"""REST routes of identity and access: users, groups, roles, policies, bindings, projects, and
the policy simulator. Each route declares its permission (:mod:`cumulo.permissions`); the
functions it calls ask again with the exact resource."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from cumulo.access import directory, grants, projects
from cumulo.access.actions import ACTIONS
from cumulo.access.models import Binding, Group, Policy, Project, User
from cumulo.db import get_session, utcnow
from cumulo.permissions import PERMISSION_KEY, allow, any_caller
from cumulo.principal import Principal, current_principal

__all__ = ["router"]

router = APIRouter(tags=["access"])
DbSession = Annotated[Session, Depends(get_session)]
Caller = Annotated[Principal, Depends(current_principal)]


class UserIn(BaseModel):
    name: str
    kind: str = Field("person", description="person (signs in) or service (tokens only)")
    email: str | None = None
    password: str | None = Field(None, description="for a person; checked for strength")
    role: str | None = Field(None, description="a built-in role to give everywhere")


class UserPatch(BaseModel):
    email: str | None = None
    password: str | None = None
    current_password: str | None = Field(
        None, description="changing one's own password: the current one (if there is one)")
    disabled: bool | None = None


class UserOut(BaseModel):
    name: str
    kind: str
    email: str | None
    is_admin: bool
    disabled: bool
    has_password: bool
    groups: list[str]
    roles: list[str] = Field(description="roles and policies given to the user directly")
    tokens: int = Field(description="live API tokens")
    created_at: datetime
    locked_until: datetime | None = Field(
        default=None, description="sign-in with a password is locked until then (after wrong "
                                  "passwords in a row); a new password set by an admin unlocks")


def _user(session: Session, user: User) -> UserOut:
    info = directory.user_info(session, user)
    return UserOut(name=user.name, kind=user.kind, email=user.email, is_admin=user.is_admin,
                   disabled=user.disabled_at is not None,
                   has_password=user.password_hash is not None, groups=info.groups,
                   roles=info.roles, tokens=info.tokens, created_at=user.created_at,
                   locked_until=(user.locked_until if user.locked_until is not None
                                 and user.locked_until > utcnow() else None))


@router.get("/users", dependencies=[allow("users:List", "user/*")], response_model=list[UserOut],
            summary="List users")
def list_users(session: DbSession, caller: Caller) -> list[UserOut]:
    return [_user(session, u) for u in directory.list_users(session, caller)]


@router.post("/users", dependencies=[allow("users:Manage", "user/*")], status_code=201,
             response_model=UserOut, summary="Create a user or service account")
def create_user(body: UserIn, session: DbSession, caller: Caller) -> UserOut:
    user = directory.create_user(session, caller, body.name, kind=body.kind, email=body.email,
                                 password=body.password, role=body.role)
    return _user(session, user)


@router.get("/users/{name}", dependencies=[allow("users:Read", "user/{name}")],
            response_model=UserOut, summary="Show a user")
def show_user(name: str, session: DbSession) -> UserOut:
    return _user(session, directory.find_user(session, name))


@router.patch("/users/{name}", dependencies=[any_caller()],
              response_model=UserOut,
              summary="Change a user's email or password, disable or enable them")
def update_user(name: str, body: UserPatch, session: DbSession, caller: Caller,
                request: Request) -> UserOut:
    # Open at the door: anyone may change their own password; anything else asks
    # users:Manage (access/directory.py)
    user = directory.update_user(session, caller, name, email=body.email,
                                 password=body.password, disabled=body.disabled,
                                 current_password=body.current_password)
    # For the audit log (server/middleware.py AuditChanges), which skips open routes: what
    # this change was, on whom.
    request.scope[PERMISSION_KEY] = ("users:Manage", f"user/{name}")
    return _user(session, user)


@router.delete("/users/{name}", dependencies=[allow("users:Manage", "user/{name}")],
               status_code=204, summary="Delete a user and their tokens")
def delete_user(name: str, session: DbSession, caller: Caller) -> Response:
    directory.delete_user(session, caller, name)
    return Response(status_code=204)


# --- groups --------------------------------------------------------------------------------

class GroupIn(BaseModel):
    name: str
    description: str = ""


class GroupOut(BaseModel):
    name: str
    description: str
    members: list[str]
    roles: list[str]
    created_at: datetime


def _group(session: Session, group: Group) -> GroupOut:
    roles = [grants.describe(session, b) for b in grants.bindings_of(session, "group", group.id)]
    return GroupOut(name=group.name, description=group.description,
                    members=directory.group_members(session, group), roles=roles,
                    created_at=group.created_at)


@router.get("/groups", dependencies=[allow("groups:List", "group/*")],
            response_model=list[GroupOut], summary="List groups")
def list_groups(session: DbSession, caller: Caller) -> list[GroupOut]:
    return [_group(session, g) for g in directory.list_groups(session, caller)]


@router.post("/groups", dependencies=[allow("groups:Manage", "group/*")], status_code=201,
             response_model=GroupOut, summary="Create a group")
def create_group(body: GroupIn, session: DbSession, caller: Caller) -> GroupOut:
    return _group(session, directory.create_group(session, caller, body.name,
                                                  description=body.description))


@router.get("/groups/{name}", dependencies=[allow("groups:Read", "group/{name}")],
            response_model=GroupOut, summary="Show a group")
def show_group(name: str, session: DbSession) -> GroupOut:
    return _group(session, directory.find_group(session, name))


@router.delete("/groups/{name}", dependencies=[allow("groups:Manage", "group/{name}")],
               status_code=204, summary="Delete a group")
def delete_group(name: str, session: DbSession, caller: Caller) -> Response:
    directory.delete_group(session, caller, name)
    return Response(status_code=204)


@router.put("/groups/{name}/members/{user}", dependencies=[allow("groups:Manage",
            "group/{name}")], response_model=GroupOut, summary="Add a user to a group")
def add_member(name: str, user: str, session: DbSession, caller: Caller) -> GroupOut:
    return _group(session, directory.add_member(session, caller, name, user))


@router.delete("/groups/{name}/members/{user}", dependencies=[allow("groups:Manage",
               "group/{name}")], response_model=GroupOut,
               summary="Remove a user from a group")
def remove_member(name: str, user: str, session: DbSession, caller: Caller) -> GroupOut:
    return _group(session, directory.remove_member(session, caller, name, user))


# --- roles and policies ---------------------------------------------------------------------

class RoleOut(BaseModel):
    name: str
    description: str
    document: dict[str, Any]


class PolicyIn(BaseModel):
    name: str
    description: str = ""
    document: Any = Field(description='{"statements": [{"effect": "allow", "actions": [...], '
                                      '"resources": [...], "conditions": {...}}]}')


class PolicyPatch(BaseModel):
    description: str | None = None
    document: Any


class PolicyOut(BaseModel):
    name: str
    description: str
    document: dict[str, Any]
    updated_at: datetime
    created_at: datetime


def _policy(policy: Policy) -> PolicyOut:
    return PolicyOut(name=policy.name, description=policy.description,
                     document=policy.document, updated_at=policy.updated_at,
                     created_at=policy.created_at)


@router.get("/roles", dependencies=[allow("policies:List", "policy/*")],
            response_model=list[RoleOut], summary="The built-in roles")
def list_roles() -> list[RoleOut]:
    return [RoleOut(name=n, description=d, document=doc) for n, d, doc in grants.roles()]


@router.get("/actions", dependencies=[allow("policies:List", "policy/*")],
            summary="Every action a policy can name")
def list_actions() -> dict[str, str]:
    return dict(ACTIONS)


@router.get("/policies", dependencies=[allow("policies:List", "policy/*")],
            response_model=list[PolicyOut], summary="List custom policies")
def list_policies(session: DbSession, caller: Caller) -> list[PolicyOut]:
    return [_policy(p) for p in grants.list_policies(session, caller)]


@router.post("/policies", dependencies=[allow("policies:Manage", "policy/*")],
             status_code=201, response_model=PolicyOut, summary="Create a policy")
def create_policy(body: PolicyIn, session: DbSession, caller: Caller) -> PolicyOut:
    return _policy(grants.create_policy(session, caller, body.name, body.document,
                                        description=body.description))


@router.get("/policies/{name}", dependencies=[allow("policies:Read", "policy/{name}")],
            response_model=PolicyOut, summary="Show a policy")
def show_policy(name: str, session: DbSession) -> PolicyOut:
    return _policy(grants.find_policy(session, name))


@router.put("/policies/{name}", dependencies=[allow("policies:Manage", "policy/{name}")],
            response_model=PolicyOut, summary="Replace a policy's document")
def update_policy(name: str, body: PolicyPatch, session: DbSession,
                  caller: Caller) -> PolicyOut:
    return _policy(grants.update_policy(session, caller, name, body.document,
                                        description=body.description))


@router.delete("/policies/{name}", dependencies=[allow("policies:Manage", "policy/{name}")],
               status_code=204, summary="Delete a policy (and take it from everyone)")
def delete_policy(name: str, session: DbSession, caller: Caller) -> Response:
    grants.delete_policy(session, caller, name)
    return Response(status_code=204)


# --- bindings and the simulator --------------------------------------------------------------

class BindingIn(BaseModel):
    user: str | None = None
    group: str | None = None
    role: str | None = None
    policy: str | None = None
    project: str | None = None


class BindingOut(BaseModel):
    id: int
    subject: str = Field(description="user:alice or group:analysts")
    given: str = Field(description="the role or policy, and its project if any")


def _binding(session: Session, binding: Binding) -> BindingOut:
    return BindingOut(id=binding.id, subject=grants.subject_name(session, binding),
                      given=grants.describe(session, binding))


@router.get("/bindings", dependencies=[allow("policies:List", "policy/*")],
            response_model=list[BindingOut], summary="Who has which role or policy")
def list_bindings(session: DbSession, caller: Caller, user: str | None = None,
                  group: str | None = None) -> list[BindingOut]:
    return [_binding(session, b) for b in grants.bindings(session, caller, user=user,
                                                          group=group)]


@router.post("/bindings", dependencies=[allow("policies:Manage", "policy/*")],
             status_code=201, response_model=BindingOut,
             summary="Give a role or policy to a user or group")
def grant(body: BindingIn, session: DbSession, caller: Caller) -> BindingOut:
    return _binding(session, grants.bind(session, caller, user=body.user, group=body.group,
                                         role=body.role, policy=body.policy,
                                         project=body.project))


@router.post("/bindings/revoke", dependencies=[allow("policies:Manage", "policy/*")],
             summary="Take a role or policy back")
def revoke(body: BindingIn, session: DbSession, caller: Caller) -> dict[str, int]:
    return {"removed": grants.unbind(session, caller, user=body.user, group=body.group,
                                     role=body.role, policy=body.policy,
                                     project=body.project)}


class CheckIn(BaseModel):
    user: str
    action: str
    resource: str = Field("*", description="table/sales/orders, or the short sales.orders")
    source_ip: str | None = None
    owner: str | None = None
    project: str | None = None
    at: datetime | None = None


class CheckOut(BaseModel):
    user: str
    action: str
    resource: str
    allowed: bool
    reason: str
    source: str | None
    statement: int | None
    sid: str | None


@router.post("/access/check", dependencies=[allow("access:Check", "user/*")],
             response_model=CheckOut, summary="Would this user be allowed? (the simulator)")
def check(body: CheckIn, session: DbSession, caller: Caller) -> CheckOut:
    result = grants.check(session, caller, body.user, body.action, body.resource,
                          source_ip=body.source_ip, owner=body.owner, project=body.project,
                          at=body.at)
    return CheckOut(**vars(result))


# --- projects -------------------------------------------------------------------------------

class ProjectIn(BaseModel):
    name: str
    description: str = ""
    quotas: dict[str, Any] = Field(default_factory=dict,
                                   description="cpus, gpus, memory_gb, endpoints, storage_gb")


class ProjectPatch(BaseModel):
    description: str | None = None
    quotas: dict[str, Any] | None = None


class ProjectOut(BaseModel):
    name: str
    description: str
    quotas: dict[str, float]
    created_at: datetime
    usage: dict[str, float] | None = Field(
        default=None, description="what the project uses now of each quota (show only)")
    holds: dict[str, int] | None = Field(
        default=None, description="how many of each kind of resource belong to it (show only)")


def _project(project: Project) -> ProjectOut:
    return ProjectOut(name=project.name, description=project.description,
                      quotas=project.quotas, created_at=project.created_at)


@router.get("/projects", dependencies=[allow("projects:List", "project/*")],
            response_model=list[ProjectOut], summary="List projects")
def list_projects(session: DbSession, caller: Caller) -> list[ProjectOut]:
    return [_project(p) for p in projects.list_projects(session, caller)]


@router.post("/projects", dependencies=[allow("projects:Manage", "project/*")],
             status_code=201, response_model=ProjectOut, summary="Create a project")
def create_project(body: ProjectIn, session: DbSession, caller: Caller) -> ProjectOut:
    return _project(projects.create_project(session, caller, body.name,
                                            description=body.description,
                                            quotas=body.quotas))


@router.get("/projects/{name}",
            dependencies=[allow("projects:Read", "project/{name}")],
            response_model=ProjectOut, summary="Show a project, its use of each quota and "
                                               "what belongs to it")
def show_project(name: str, session: DbSession) -> ProjectOut:
    project = projects.find_project(session, name)
    out = _project(project)
    out.usage = projects.usage(session, project.id)
    out.holds = projects.owned(session, project.id)
    return out


@router.patch("/projects/{name}", dependencies=[allow("projects:Manage", "project/{name}")],
              response_model=ProjectOut, summary="Change a project's description or quotas")
def update_project(name: str, body: ProjectPatch, session: DbSession,
                   caller: Caller) -> ProjectOut:
    return _project(projects.update_project(session, caller, name,
                                            description=body.description, quotas=body.quotas))


@router.delete("/projects/{name}", dependencies=[allow("projects:Manage", "project/{name}")],
               status_code=204, summary="Delete a project")
def delete_project(name: str, session: DbSession, caller: Caller) -> Response:
    projects.delete_project(session, caller, name)
    return Response(status_code=204)
