"""REST routes of environments: ``/api/v1/envs``.

Creating one resolves its requirements at once (a requirement that cannot be met is a 400
naming its line) and builds it in the background: the answer is 202 with the digest to follow
(``GET /envs/{digest}``) until it is ``ready`` or ``failed``. The name is given only once the
build succeeds, so a failed build leaves no name behind.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from cumulo.access import projects
from cumulo.access.users import user_names
from cumulo.compute.environments import service, spec
from cumulo.compute.models import Environment
from cumulo.db import get_session
from cumulo.permissions import allow, body_project, query_project
from cumulo.principal import Principal, current_principal
from cumulo.services import services
from cumulo.units import parse_duration

if TYPE_CHECKING:
    from cumulo.compute.environments.service import Builder

__all__ = ["router"]

router = APIRouter(prefix="/envs", tags=["environments"])
DbSession = Annotated[Session, Depends(get_session)]
Caller = Annotated[Principal, Depends(current_principal)]


def _builder(request: Request) -> Builder:
    return services(request).compute.envs


class EnvIn(BaseModel):
    name: str
    requirements: str = Field(description="a requirements file's text")
    requirements_file: str | None = Field(None, description="its name, for errors")
    python: str | None = Field(None, description="3.12, or an interpreter's path")
    isolated: bool = Field(False, description="nothing of the server's packages is visible")
    project: str | None = None


class EnvOut(BaseModel):
    digest: str
    names: list[str]
    state: str  # resolved | building | ready | failed
    built_here: bool  # its folder is on this control plane's machine
    python: str
    isolated: bool
    source: str
    packages: int
    installed: int | None  # into the environment; the rest are the server's own
    size: int | None
    error: str | None
    build_seconds: float | None
    created_at: datetime
    created_by: str | None
    built_at: datetime | None
    last_used_at: datetime | None
    jobs: int  # that ran or run in it
    project: str | None
    requirements: str | None = None
    lock: str | None = None
    log: str | None = None


def env_out(session: Session, builder: Builder, envs: list[Environment], *,
            full: bool = False, log: bool = False) -> list[EnvOut]:
    digests = [e.digest for e in envs]
    names = service.names_of(session, digests)
    used = service.jobs_using(session, digests)
    users = user_names(session, (e.created_by for e in envs))
    places = projects.names_of(session, (e.project_id for e in envs))
    out = []
    for e in envs:
        state = "building" if builder.building(e.digest) else e.state
        out.append(EnvOut(
            digest=e.digest, names=names.get(e.digest, []), state=state,
            built_here=builder.ready(e.digest), python=e.python, isolated=e.isolated,
            source=e.source, packages=e.packages, installed=e.installed, size=e.size,
            error=e.error, build_seconds=e.build_seconds, created_at=e.created_at,
            created_by=users.get(e.created_by), built_at=e.built_at,
            last_used_at=e.last_used_at, jobs=used.get(e.digest, 0),
            project=places.get(e.project_id) if e.project_id is not None else None,
            requirements=e.requirements if full else None, lock=e.lock if full else None,
            log=builder.build_log(e.digest) if log else None))
    return out


@router.post("", dependencies=[allow("envs:Create", "env/*", project=body_project)],
             status_code=202, response_model=EnvOut,
             summary="Create a named environment (resolved now, built in the background)")
def create_env(body: EnvIn, session: DbSession, caller: Caller, request: Request,
               response: Response) -> EnvOut:
    service.check_name(body.name)
    project_id = projects.project_id_for(session, body.project)
    parsed = spec.parse_requirements(
        body.requirements, source=body.requirements_file or "requirements.txt",
        python=body.python, isolated=body.isolated)
    env = service.request(session, parsed, principal=caller, project_id=project_id)
    builder = _builder(request)
    if builder.ready(env.digest):
        service.name_environment(session, body.name, env, principal=caller,
                                 project_id=project_id)
        response.status_code = 200
    else:
        digest, name, user = env.digest, body.name, caller

        def named(done: str, state: str) -> None:
            if done != digest or state != "ready":
                return
            with services(request).sessions() as s:
                found = s.get(Environment, digest)
                if found is not None:
                    service.name_environment(s, name, found, principal=user,
                                             project_id=project_id)

        builder.on_ready(env.digest, named)
        builder.ensure(env.digest)
    session.refresh(env)
    return env_out(session, builder, [env])[0]


@router.get("", dependencies=[allow("envs:List", "env/*", project=query_project)],
            response_model=list[EnvOut], summary="List environments")
def list_envs(session: DbSession, request: Request, project: str | None = None) -> list[EnvOut]:
    return env_out(session, _builder(request),
                   service.list_environments(session, project=project))


@router.get("/{ref}", dependencies=[allow("envs:Read", "env/{ref}")], response_model=EnvOut,
            summary="Show an environment (by name or digest): its packages and last build")
def get_env(ref: str, session: DbSession, request: Request, log: bool = False) -> EnvOut:
    return env_out(session, _builder(request), [service.find(session, ref)], full=True,
                   log=log)[0]


@router.delete("/{name}", dependencies=[allow("envs:Delete", "env/{name}")], status_code=204,
               summary="Remove a named environment (refused while something uses it)")
def delete_env(name: str, session: DbSession) -> Response:
    service.delete_name(session, name)
    return Response(status_code=204)


class PruneIn(BaseModel):
    unused: str = Field("30d", description="not used for this long, like 30d or 12h")
    dry_run: bool = False


@router.post("/prune", dependencies=[allow("envs:Delete", "env/*")],
             summary="Remove environments not used for a while (named ones keep their pins)")
def prune_envs(body: PruneIn, session: DbSession, request: Request) -> list[dict[str, Any]]:
    unused = parse_duration(body.unused, what="--unused")
    return service.prune(session, _builder(request), unused_for=unused, dry_run=body.dry_run)
