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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from cumulo.principal import current_principal, decision_ready

__all__ = ["PERMISSION_KEY", "Owner", "Permission", "allow", "any_caller"]

PERMISSION_KEY = "cumulo.permission"  # in the ASGI scope: (action or None, resource)
# A resource's owner's user name ("" for none), or None when there is no such resource.
Owner = Callable[[Request], "str | None"]


class Permission:
    """A route's declared permission, as a FastAPI dependency."""

    def __init__(self, action: str | None, resource: str = "*", *,
                 owner: Owner | None = None) -> None:
        self.action = action
        self.resource = resource
        self.owner = owner

    def action_for(self, request: Request) -> str | None:
        """The action this request needs: the declared one (a proxy's may depend on the
        request's method and path)."""
        return self.action

    def resource_for(self, path_params: dict[str, Any]) -> str:
        if "{" not in self.resource:
            return self.resource
        return self.resource.format_map(path_params)

    async def __call__(self, request: Request) -> None:
        principal = current_principal(request)
        resource = self.resource_for(request.path_params)
        action = self.action_for(request)
        request.scope[PERMISSION_KEY] = (action, resource)
        if action is None:
            return
        if self.owner is not None:
            owner = await run_in_threadpool(self.owner, request)
            if owner is None:
                return  # no such resource: the route answers 404
            await run_in_threadpool(principal.require, action, resource, owner=owner)
        elif decision_ready(principal):
            principal.require(action, resource)
        else:  # the caller's policies are looked up: off the event loop
            await run_in_threadpool(principal.require, action, resource)

    def __repr__(self) -> str:
        return f"Permission({self.action!r}, {self.resource!r})"


def allow(action: str, resource: str = "*", *, owner: Owner | None = None) -> Any:
    """The dependency that declares (and checks) ``action`` on ``resource``."""
    return Depends(Permission(action, resource, owner=owner))


def any_caller() -> Any:
    """The dependency that declares a route open to every signed-in caller."""
    return Depends(Permission(None))
