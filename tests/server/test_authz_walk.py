"""Every operation of the API, called as each built-in role: refused (403) exactly when the
decision point says the role may not take the operation's declared action on its resource.
A real server; one service account per role, with a token an admin made for it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi.routing import APIRoute

from cumulo.access.authz import SYSTEM
from cumulo.access.policy import Context, PolicySet
from cumulo.access.roles import ROLES, role
from cumulo.permissions import Permission
from cumulo.server.app import API_PREFIX, ROUTERS
from tests.services import Cumulo

_DUMMY = "zz-nope"
# Open at the door, decided inside with the exact resource: one's own password is one's own
# business; anyone else's asks users:Manage.
_INSIDE = {("PATCH", "/api/v1/users/{name}"): ("users:Manage", "user/{name}")}


@pytest.fixture(scope="module")
def tokens(local_server: Cumulo) -> Iterator[dict[str, str]]:
    admin = local_server.client()
    made = {}
    for name in ROLES:
        admin.transport.json("POST", "/api/v1/users",
                             json={"name": f"walk-{name}", "kind": "service", "role": name})
        made[name] = admin.tokens.create("walk", user=f"walk-{name}")["token"]
    yield made


def _operations() -> list[tuple[str, str, Permission]]:
    found = []
    for router in ROUTERS:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            permission = next(d.dependency for d in route.dependencies
                              if isinstance(d.dependency, Permission))
            for method in sorted(route.methods):
                found.append((method, API_PREFIX + route.path, permission))
    return found


def _url(path: str) -> tuple[str, dict[str, str]]:
    params = {name: _DUMMY for name in re.findall(r"{(\w+)(?::path)?}", path)}
    return re.sub(r"{(\w+)(?::path)?}", _DUMMY, path), params


def test_every_operation_is_refused_exactly_when_the_role_may_not(
        local_server: Cumulo, tokens: dict[str, str]) -> None:
    operations = _operations()
    assert len(operations) > 120
    wrong = []
    with httpx.Client(base_url=local_server.url, timeout=30) as http:
        for role_name, token in tokens.items():
            rights = PolicySet([("system", SYSTEM, None), (f"role {role_name}",
                                                           role(role_name), None)])
            for method, path, permission in operations:
                url, params = _url(path)
                body = {} if method in ("POST", "PUT", "PATCH") else None
                answer = http.request(method, url, json=body, headers={
                    "Authorization": f"Bearer {token}"})
                inside = _INSIDE.get((method, path))
                if inside is not None:
                    expect_refused = not rights.decide(
                        inside[0], inside[1].format_map(params),
                        Context(user=f"walk-{role_name}")).allowed
                elif permission.action is None or permission.owner is not None:
                    # open to any caller; or one's-own rights on a resource that does not
                    # exist (the route says 404, nothing is decided)
                    expect_refused = False
                else:
                    resource = permission.resource_for(params)
                    expect_refused = not rights.decide(
                        permission.action, resource, Context(user=f"walk-{role_name}")).allowed
                if (answer.status_code == 403) != expect_refused:
                    wrong.append(f"{role_name}: {method} {path} -> {answer.status_code} "
                                 f"({permission.action}): {answer.text[:120]}")
    assert not wrong, "\n".join(wrong)
