"""Every route says what permission it needs: a route added without one fails here."""

from __future__ import annotations

from fastapi.routing import APIRoute

from cumulo.access.actions import ACTIONS
from cumulo.permissions import Permission
from cumulo.server.app import ROUTERS
from cumulo.serving.api import invocations_router


def _declared(route: APIRoute) -> list[Permission]:
    return [d.dependency for d in route.dependencies if isinstance(d.dependency, Permission)]


def test_every_route_declares_one_permission_naming_a_real_action() -> None:
    routes = [r for router in (*ROUTERS, invocations_router) for r in router.routes
              if isinstance(r, APIRoute)]
    assert len(routes) > 120
    missing = [f"{sorted(r.methods)} {r.path}" for r in routes if len(_declared(r)) != 1]
    assert not missing, f"routes without exactly one allow(...)/any_caller(): {missing}"
    for route in routes:
        permission = _declared(route)[0]
        assert permission.action is None or permission.action in ACTIONS, (route.path,
                                                                           permission)
        # The resource template names only the route's own path parameters.
        params = {p.name for p in route.dependant.path_params}
        permission.resource_for({p: "x" for p in params})


def test_open_routes_are_few_and_known() -> None:
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    open_ = sorted(r.path for r in routes if _declared(r)[0].action is None)
    # who am I, what may I do, the server's state, one's own password
    assert open_ == ["/me", "/me/can", "/status", "/users/{name}"]
