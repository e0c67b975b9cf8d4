"""What each route needs: every route under ``/api/v1`` declares one permission, and the
server refuses a route that declares none (a test walks them all, tests/server/test_authz.py).

    @router.get("/tables/{database}/{table}", dependencies=[allow("tables:Read",
                "table/{database}/{table}")])

The resource is a template filled from the route's path parameters. A resource that belongs
to someone (a job) names a function that finds its owner, for statements that hold only for
one's own (``"conditions": {"owner": "self"}``): ``allow("jobs:Cancel", "job/{job_id}",
owner=job_owner)``; it answers None when there is no such resource, and the route then says
so (404) itself: nothing is told about a resource that does not exist. ``any_caller()`` declares
a route that every signed-in caller may use (``/me``). Finer checks that need what the route
reads (each table a SQL statement names, a job's owner) are asked inside the service with
``principal.require``: the same decision point (:mod:`cumulo.principal`).

Rights bound in a project (``cumulo access grant developer --user bob --project team-a``) hold
only on that project's resources. The decision point finds an existing resource's project
itself (each service registers how, :mod:`cumulo.access.holders`); a route that makes or lists
resources names the project the request names: ``project=body_project`` for
``{"project": "team-a"}`` in a JSON body, ``project=query_project`` for ``?project=team-a``. An
``owner`` function answers a :class:`Holder`, owner and project at once.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from cumulo.principal import current_principal, decision_ready

__all__ = ["PERMISSION_KEY", "Holder", "NamedProject", "Owner", "Permission", "allow",
           "any_caller", "body_project", "query_project"]

PERMISSION_KEY = "cumulo.permission"  # in the ASGI scope: (action or None, resource)


@dataclass(frozen=True)
class Holder:
    """Whose a resource is: its owner's user name ("" for none) and its project (None: the
    platform's own)."""

    owner: str = ""
    project: str | None = None


# A resource's holder, or None when there is no such resource.
Owner = Callable[[Request], "Holder | None"]
# The project a request names for what it makes or lists.
NamedProject = Callable[[Request], Awaitable["str | None"]]


async def query_project(request: Request) -> str | None:
    """The project named by ``?project=NAME`` (a listing of one project's resources)."""
    return request.query_params.get("project") or None


async def body_project(request: Request) -> str | None:
    """The project named by the JSON body's ``project`` field (a resource being made in it)."""
    if "json" not in request.headers.get("content-type", ""):
        return None
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None  # the route's own parsing says what is wrong
    project = body.get("project") if isinstance(body, dict) else None
    return project if isinstance(project, str) and project else None


class Permission:
    """A route's declared permission, as a FastAPI dependency."""

    def __init__(self, action: str | None, resource: str = "*", *,
                 owner: Owner | None = None, project: NamedProject | None = None) -> None:
        self.action = action
        self.resource = resource
        self.owner = owner
        self.project = project

    def action_for(self, request: Request) -> str | None:
        """The action this request needs: the declared one (a proxy's may depend on the
        request's method and path)."""
        return self.action

    def resource_for(self, path_params: dict[str, Any]) -> str:
        if "{" not in self.resource:
            return self.resource
        return self.resource.format_map(path_params)

    def resource_of(self, request: Request) -> str:
        """The resource this request acts on: the template filled from the path (a route
        whose resource the query names too overrides this)."""
        return self.resource_for(request.path_params)

    async def __call__(self, request: Request) -> None:
        principal = current_principal(request)
        resource = self.resource_of(request)
        action = self.action_for(request)
        request.scope[PERMISSION_KEY] = (action, resource)
        if action is None:
            return
        owner: str | None = None
        project: str | None = None
        if self.owner is not None:
            holder = await run_in_threadpool(self.owner, request)
            if holder is None:
                return  # no such resource: the route answers 404
            owner, project = holder.owner, holder.project
        if self.project is not None:
            project = await self.project(request)
        if decision_ready(principal):
            principal.require(action, resource, owner=owner, project=project)
        else:  # the caller's policies are looked up: off the event loop
            await run_in_threadpool(principal.require, action, resource, owner=owner,
                                    project=project)

    def __repr__(self) -> str:
        return f"Permission({self.action!r}, {self.resource!r})"


def allow(action: str, resource: str = "*", *, owner: Owner | None = None,
          project: NamedProject | None = None) -> Any:
    """The dependency that declares (and checks) ``action`` on ``resource``."""
    return Depends(Permission(action, resource, owner=owner, project=project))


def any_caller() -> Any:
    """The dependency that declares a route open to every signed-in caller."""
    return Depends(Permission(None))
