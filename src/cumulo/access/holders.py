"""Which project an existing resource belongs to, for decisions about callers whose rights are
bound in a project (``developer`` in project ``team-a``): each service registers how to find its
kind of resource's project (``register("bucket", bucket_project)``), and the decision point
(:mod:`cumulo.access.authz`) asks :func:`project_of` with the resource's name
(``bucket/raw/2026/a.csv``), so that neither routes nor services carry the project through
every check. Callers with no such rights never cause a lookup.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

__all__ = ["Locator", "kinds", "project_of", "register"]

# (session, the resource's name after its kind: "raw/2026/a.csv") -> the project's name, or
# None (none, or no such resource).
Locator = Callable[[Session, str], "str | None"]
_LOCATORS: dict[str, Locator] = {"project": lambda session, rest: rest.split("/", 1)[0] or None}


def register(kind: str, locator: Locator) -> None:
    """Find the project of resources named ``kind/...`` with ``locator``."""
    _LOCATORS[kind] = locator


def kinds() -> set[str]:
    return set(_LOCATORS)


def project_of(session: Session, resource: str) -> str | None:
    """The project of the resource named (``table/sales/orders``), None when it has none, is
    of a kind no service placed in projects, or names none (a pattern, ``job/*``, finds no
    such resource: an object's key may hold ``*``, so no name is taken for a pattern here)."""
    kind, _, rest = resource.partition("/")
    locator = _LOCATORS.get(kind)
    if locator is None or not rest:
        return None
    return locator(session, rest)
