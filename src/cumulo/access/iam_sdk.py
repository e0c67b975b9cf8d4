"""SDK sub-clients of identity and access: ``client.users``, ``client.groups``,
``client.roles``, ``client.policies``, ``client.access`` and ``client.projects``.

Each method is one call to ``/api/v1/...`` and returns the API's JSON (dicts and lists); an
error comes back as the server raised it (``NotFound``, ``Invalid``, ``Conflict``...).

>>> client.users.create("ana", email="ana@example.com", role="analyst")  # doctest: +SKIP
>>> client.access.check("ana", "tables:Read", "sales.orders")["allowed"]  # doctest: +SKIP
True
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from cumulo.client.transport import Transport
from cumulo.errors import NotFound
from cumulo.units import parse_time

__all__ = ["Access", "Groups", "Policies", "Projects", "Roles", "Users"]

Record = dict[str, Any]
_API = "/api/v1"


def _path(*parts: str) -> str:
    # A name is one path segment, whatever it holds: '../x' must not become another route.
    return "/".join((_API, *(quote(part, safe="") for part in parts)))


def _given(**fields: Any) -> dict[str, Any]:
    """The fields that were given: the API leaves the others as they are."""
    return {key: value for key, value in fields.items() if value is not None}


class Users:
    """People (who sign in) and service accounts (tokens only): ``client.users``."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list(self) -> builtins.list[Record]:
        return self._t.json("GET", _path("users"))  # type: ignore[no-any-return]

    ls = list

    def show(self, name: str) -> Record:
        return self._t.json("GET", _path("users", name))  # type: ignore[no-any-return]

    def create(self, name: str, *, kind: str = "person", email: str | None = None,
               password: str | None = None, role: str | None = None) -> Record:
        """A new user: ``kind`` is ``person`` or ``service``; ``password`` (a person's) is
        checked for strength; ``role`` is a built-in role given everywhere."""
        body = {"name": name, "kind": kind, **_given(email=email, password=password, role=role)}
        return self._t.json("POST", _path("users"), json=body)  # type: ignore[no-any-return]

    def update(self, name: str, *, email: str | None = None, password: str | None = None,
               disabled: bool | None = None, current_password: str | None = None) -> Record:
        """Change what is given; an email of ``""`` removes it. Changing one's own password
        takes the current one."""
        body = _given(email=email, password=password, disabled=disabled,
                      current_password=current_password)
        return self._t.json("PATCH", _path("users", name),  # type: ignore[no-any-return]
                            json=body)

    def disable(self, name: str) -> Record:
        """The user can no longer sign in, and their tokens stop working, until enabled."""
        return self.update(name, disabled=True)

    def enable(self, name: str) -> Record:
        return self.update(name, disabled=False)

    def passwd(self, name: str | None = None, *, password: str,
               current_password: str | None = None) -> Record:
        """Set a password: ``name``'s (which takes ``users:Manage``), or the caller's own
        (with ``current_password``, when they have one)."""
        if name is None:
            name = str(self._t.json("GET", _path("me"))["user"])
        return self.update(name, password=password, current_password=current_password)

    def delete(self, name: str) -> None:
        """Remove a user, their tokens and what was given to them."""
        self._t.request("DELETE", _path("users", name))


class Groups:
    """Groups of users, given roles and policies together: ``client.groups``."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list(self) -> builtins.list[Record]:
        return self._t.json("GET", _path("groups"))  # type: ignore[no-any-return]

    ls = list

    def show(self, name: str) -> Record:
        return self._t.json("GET", _path("groups", name))  # type: ignore[no-any-return]

    def create(self, name: str, *, description: str = "") -> Record:
        return self._t.json("POST", _path("groups"),  # type: ignore[no-any-return]
                            json={"name": name, "description": description})

    def add(self, group: str, *users: str) -> Record:
        """Add each user in turn; the group as it is after the last."""
        return self._members("PUT", group, users)

    def remove(self, group: str, *users: str) -> Record:
        """Take each user out in turn; the group as it is after the last."""
        return self._members("DELETE", group, users)

    def _members(self, method: str, group: str, users: tuple[str, ...]) -> Record:
        if not users:
            return self.show(group)
        answer: Record = {}
        for user in users:
            answer = self._t.json(method, _path("groups", group, "members", user))
        return answer

    def delete(self, name: str) -> None:
        self._t.request("DELETE", _path("groups", name))


class Roles:
    """The built-in roles, read only: ``client.roles``."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list(self) -> builtins.list[Record]:
        """Each role: ``name``, ``description``, ``document`` (its policy)."""
        return self._t.json("GET", _path("roles"))  # type: ignore[no-any-return]

    ls = list

    def show(self, name: str) -> Record:
        roles = self.list()
        for role in roles:
            if role["name"] == name:
                return role
        raise NotFound(f"no role {name!r}; the roles are "
                       f"{', '.join(r['name'] for r in roles)}", details={"role": name})


class Policies:
    """Custom policies: ``client.policies``. A document is a dict, or its JSON text::

        {"statements": [{"sid": "read", "effect": "allow", "actions": ["tables:Read"],
                         "resources": ["table/sales/*"]}]}
    """

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list(self) -> builtins.list[Record]:
        return self._t.json("GET", _path("policies"))  # type: ignore[no-any-return]

    ls = list

    def show(self, name: str) -> Record:
        return self._t.json("GET", _path("policies", name))  # type: ignore[no-any-return]

    def create(self, name: str, *, document: dict[str, Any] | str,
               description: str = "") -> Record:
        """A new policy; ``Invalid`` names the statement and field of a document at fault."""
        body = {"name": name, "description": description, "document": document}
        return self._t.json("POST", _path("policies"),  # type: ignore[no-any-return]
                            json=body)

    def update(self, name: str, *, document: dict[str, Any] | str,
               description: str | None = None) -> Record:
        """Replace the document (and the description, when given); it takes effect at once
        for everyone holding the policy."""
        body = {"document": document, **_given(description=description)}
        return self._t.json("PUT", _path("policies", name),  # type: ignore[no-any-return]
                            json=body)

    def delete(self, name: str) -> None:
        """Remove a policy, and take it from everyone who held it."""
        self._t.request("DELETE", _path("policies", name))


def _moment(value: str | datetime | None) -> str | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else parse_time(value, what="at")
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")


class Access:
    """Who has which role or policy, and the simulator: ``client.access``."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def grant(self, *, user: str | None = None, group: str | None = None,
              role: str | None = None, policy: str | None = None,
              project: str | None = None) -> Record:
        """Give one role or policy to one user or group, everywhere or in ``project``:
        ``{"id", "subject", "given"}``. Giving what is already held changes nothing."""
        body = _given(user=user, group=group, role=role, policy=policy, project=project)
        return self._t.json("POST", _path("bindings"), json=body)  # type: ignore[no-any-return]

    def revoke(self, *, user: str | None = None, group: str | None = None,
               role: str | None = None, policy: str | None = None,
               project: str | None = None) -> Record:
        """Take it back: ``{"removed": n}``; ``NotFound`` when it was not held."""
        body = _given(user=user, group=group, role=role, policy=policy, project=project)
        return self._t.json("POST", _path("bindings", "revoke"),  # type: ignore[no-any-return]
                            json=body)

    def list(self, *, user: str | None = None,
             group: str | None = None) -> builtins.list[Record]:
        """Every binding, or one user's or group's (given to them directly)."""
        return self._t.json("GET", _path("bindings"),  # type: ignore[no-any-return]
                            params=_given(user=user, group=group))

    ls = list

    def check(self, user: str, action: str, resource: str = "*", *,
              source_ip: str | None = None, owner: str | None = None,
              project: str | None = None, at: str | datetime | None = None) -> Record:
        """Would ``user`` be allowed ``action`` on ``resource`` (``table/sales/orders``, or
        the short ``sales.orders``)? ``{"allowed", "reason", "source", "statement", "sid",
        ...}``: which statement of which role or policy decided. ``at`` is a datetime or a
        time as text (``2026-06-10T12:00:00Z``, ``1h`` for an hour ago)."""
        body = {"user": user, "action": action, "resource": resource,
                **_given(source_ip=source_ip, owner=owner, project=project, at=_moment(at))}
        return self._t.json("POST", _path("access", "check"),  # type: ignore[no-any-return]
                            json=body)

    def actions(self) -> dict[str, str]:
        """Every action a policy can name, with what it allows."""
        return self._t.json("GET", _path("actions"))  # type: ignore[no-any-return]


class Projects:
    """Projects (workspaces) and their quotas: ``client.projects``. Quotas are ``cpus``,
    ``gpus``, ``memory_gb``, ``endpoints`` and ``storage_gb``."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list(self) -> builtins.list[Record]:
        return self._t.json("GET", _path("projects"))  # type: ignore[no-any-return]

    ls = list

    def show(self, name: str) -> Record:
        return self._t.json("GET", _path("projects", name))  # type: ignore[no-any-return]

    def create(self, name: str, *, description: str = "",
               quotas: Mapping[str, float | str] | None = None) -> Record:
        """A new project; ``quotas`` such as ``{"cpus": 8, "memory_gb": 64}``."""
        body = {"name": name, "description": description, "quotas": dict(quotas or {})}
        return self._t.json("POST", _path("projects"), json=body)  # type: ignore[no-any-return]

    def update(self, name: str, *, description: str | None = None,
               quotas: Mapping[str, float | str | None] | None = None) -> Record:
        """Change the description, and the quotas named (the others stay; a quota set to
        None is removed)."""
        body = _given(description=description,
                      quotas=None if quotas is None else dict(quotas))
        return self._t.json("PATCH", _path("projects", name),  # type: ignore[no-any-return]
                            json=body)

    def delete(self, name: str) -> None:
        """Remove a project and every role and policy given in it."""
        self._t.request("DELETE", _path("projects", name))
