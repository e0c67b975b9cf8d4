"""REST routes of access: who am I, and API tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.access import authz, keys, tokens
from cumulo.access.models import AccessKey, Project, Token
from cumulo.access.users import user_names
from cumulo.db import get_session, utcnow
from cumulo.permissions import allow, any_caller
from cumulo.principal import Principal, current_principal

__all__ = ["router"]

router = APIRouter(tags=["access"])
DbSession = Annotated[Session, Depends(get_session)]
Caller = Annotated[Principal, Depends(current_principal)]


class Me(BaseModel):
    user: str
    is_admin: bool
    token_id: int
    token_name: str
    via_job: bool = Field(description="the token is a job's own, made for one run")
    projects: list[str] = Field(
        default_factory=list, description="the projects the caller may work in: those they "
        "hold rights in, or every one for whoever may list projects")


class TokenIn(BaseModel):
    name: str
    user: str | None = Field(None, description="another user's (a service account's): for "
                                               "whoever may manage that user")
    expires_in: str | None = Field(None, description="e.g. 90s, 30m, 1h30m, 7d, 2w; none: never")


class TokenOut(BaseModel):
    id: int
    name: str
    user: str | None
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    state: str = Field(description="live, revoked or expired: whether it works now")


class NewToken(TokenOut):
    token: str = Field(description="the secret; shown this once and never again")


class TokenList(BaseModel):
    tokens: list[TokenOut]


def _out(token: Token, names: dict[int | None, str]) -> TokenOut:
    return TokenOut(
        id=token.id, name=token.name, user=names.get(token.user_id), prefix=token.prefix,
        created_at=token.created_at, expires_at=token.expires_at, revoked_at=token.revoked_at,
        last_used_at=token.last_used_at,
        state="revoked" if token.revoked_at is not None else "expired" if (
            token.expires_at is not None and _aware(token.expires_at) <= utcnow()) else "live",
    )


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive times: they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@router.get("/me",
            dependencies=[any_caller()], response_model=Me, summary="Who the token belongs to")
def me(caller: Caller, session: DbSession) -> Me:
    if caller.can("projects:List", "project/*"):
        names = sorted(session.scalars(select(Project.name)))
    else:
        names = sorted(authz.policy_set_for(session, caller.user_id)[0].projects)
    return Me(user=caller.user_name, is_admin=caller.is_admin, token_id=caller.token_id,
              token_name=caller.token_name, via_job=caller.via_job, projects=names)


class CanIn(BaseModel):
    checks: list[tuple[str, str]] = Field(
        max_length=500, description='[["tables:Write", "table/sales/orders"], ...]: what the '
        "console asks before it shows a button")
    project: str | None = Field(None, description=(
        "the project the console works in: what is made or listed (a resource with '*', or "
        "none: 'sql') is asked in it; a named resource is asked in its own project"))


# The kinds of resource a project holds (and SQL's queries): listing or making them is asked
# in the console's project.
_IN_PROJECTS = {"bucket", "database", "table", "job", "cluster", "endpoint", "pipeline",
                "query"}


class CanOut(BaseModel):
    allowed: list[bool]


@router.post("/me/can", dependencies=[any_caller()], response_model=CanOut,
             summary="Whether the caller may take these actions (for showing only what works)")
def can(body: CanIn, caller: Caller) -> CanOut:
    def within(resource: str) -> str | None:
        # What is made or listed in a project (a pattern of a kind projects hold, and the
        # routes that take ?project=: SQL, its queries, costs); a named resource is asked in
        # its own project, found by the decision point.
        kind = resource.split("/", 1)[0]
        if resource in ("sql", "*") or (kind in _IN_PROJECTS and "*" in resource):
            return body.project
        return None

    return CanOut(allowed=[caller.can(action, resource, project=within(resource))
                           for action, resource in body.checks])


@router.post("/tokens",
             dependencies=[allow("tokens:Manage", "token/*")],
             status_code=201, response_model=NewToken, summary="Create a token")
def create_token(body: TokenIn, session: DbSession, caller: Caller) -> NewToken:
    token, secret = tokens.create_token(session, caller, body.name, expires_in=body.expires_in,
                                        user_name=body.user)
    out = _out(token, user_names(session, {token.user_id}))
    return NewToken(**out.model_dump(), token=secret)


@router.get("/tokens",
            dependencies=[allow("tokens:Manage", "token/*")],
            response_model=TokenList, summary="List tokens")
def list_tokens(session: DbSession, caller: Caller, all: bool = False) -> TokenList:
    rows = tokens.list_tokens(session, caller, all_users=all)
    names = user_names(session, {t.user_id for t in rows})
    return TokenList(tokens=[_out(t, names) for t in rows])


@router.delete("/tokens/{ref}",
               dependencies=[allow("tokens:Manage", "token/{ref}")],
               response_model=TokenOut, summary="Revoke a token (id or name)")
def revoke_token(ref: str, session: DbSession, caller: Caller) -> TokenOut:
    token = tokens.revoke_token(session, caller, ref)
    return _out(token, user_names(session, {token.user_id}))


# --- S3 access keys ----------------------------------------------------------------------------


class KeyIn(BaseModel):
    name: str = Field("s3", description="a name to recognise it by")
    expires_in: str | None = Field(None, description="e.g. 30d; none: never")


class KeyOut(BaseModel):
    access_key_id: str
    name: str
    user: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    state: str


class NewKey(KeyOut):
    secret_access_key: str = Field(description="shown this once")


class KeyList(BaseModel):
    keys: list[KeyOut]


def _key_out(key: AccessKey, names: dict[int | None, str]) -> KeyOut:
    return KeyOut(access_key_id=key.access_key_id, name=key.name, user=names.get(key.user_id),
                  created_at=key.created_at, last_used_at=key.last_used_at,
                  revoked_at=key.revoked_at,
                  state="revoked" if key.revoked_at is not None else "active")


@router.post("/keys", dependencies=[allow("tokens:Manage", "key/*")], status_code=201,
             response_model=NewKey, summary="Create an S3 access key")
def create_key(body: KeyIn, session: DbSession, caller: Caller) -> NewKey:
    from cumulo.units import parse_duration

    seconds = int(parse_duration(body.expires_in, what="--expires-in")) if body.expires_in \
        else None
    key, secret = keys.create_key(session, caller, body.name, expires_in=seconds)
    out = _key_out(key, user_names(session, {key.user_id}))
    return NewKey(**out.model_dump(), secret_access_key=secret)


@router.get("/keys", dependencies=[allow("tokens:Manage", "key/*")], response_model=KeyList,
            summary="List S3 access keys (never their secrets)")
def list_keys(session: DbSession, caller: Caller, all: bool = False) -> KeyList:
    rows = keys.list_keys(session, caller, all_users=all)
    names = user_names(session, {k.user_id for k in rows})
    return KeyList(keys=[_key_out(k, names) for k in rows])


@router.delete("/keys/{key_id}", dependencies=[allow("tokens:Manage", "key/{key_id}")],
               response_model=KeyOut, summary="Revoke an S3 access key")
def revoke_key(key_id: str, session: DbSession, caller: Caller) -> KeyOut:
    key = keys.revoke_key(session, caller, key_id)
    return _key_out(key, user_names(session, {key.user_id}))
