"""Projects (workspaces): named groupings of work with members (roles bound in the project,
:mod:`cumulo.access.grants`) and quotas."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cumulo.access import authz
from cumulo.access.models import Binding, Project
from cumulo.errors import Conflict, Invalid, NotFound
from cumulo.principal import Principal

__all__ = ["QUOTAS", "create_project", "delete_project", "find_project", "list_projects",
           "parse_quotas", "update_project"]

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
# quota -> what it counts
QUOTAS = {"cpus": "CPUs running at once", "gpus": "GPUs running at once",
          "memory_gb": "memory of running work, GB", "endpoints": "endpoints",
          "storage_gb": "stored data, GB"}


def parse_quotas(raw: dict[str, Any]) -> dict[str, float]:
    """Quotas as given (``{"cpus": 8, "memory_gb": "64"}``), checked; a value of None drops
    that quota."""
    quotas: dict[str, float] = {}
    for key, value in raw.items():
        if key not in QUOTAS:
            raise Invalid(f"{key!r} is not a quota; the quotas are {', '.join(QUOTAS)}",
                          details={"field": key})
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise Invalid(f"quota {key}={value!r} is not a number ({QUOTAS[key]})",
                          details={"field": key}) from exc
        if number < 0:
            raise Invalid(f"quota {key}={value!r} is negative", details={"field": key})
        quotas[key] = number
    return quotas


def find_project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise NotFound(f"no project {name!r}; 'cumulo projects ls' lists them",
                       details={"project": name})
    return project


def list_projects(session: Session, caller: Principal) -> list[Project]:
    caller.require("projects:List", "project/*")
    return list(session.scalars(select(Project).order_by(Project.name)))


def create_project(session: Session, caller: Principal, name: str, *, description: str = "",
                   quotas: dict[str, Any] | None = None) -> Project:
    if not _NAME.match(name):
        raise Invalid(f"project name {name!r} must be 1-64 lower-case letters, digits or '-', "
                      "starting with a letter", details={"field": "name"})
    caller.require("projects:Manage", f"project/{name}")
    if session.scalar(select(Project.id).where(Project.name == name)) is not None:
        raise Conflict(f"there is already a project {name!r}", details={"project": name})
    project = Project(name=name, description=description,
                      quotas=parse_quotas(quotas or {}), created_by=caller.user_id)
    session.add(project)
    session.commit()
    return project


def update_project(session: Session, caller: Principal, name: str, *,
                   description: str | None = None,
                   quotas: dict[str, Any] | None = None) -> Project:
    project = find_project(session, name)
    caller.require("projects:Manage", f"project/{name}")
    if description is not None:
        project.description = description
    if quotas is not None:
        parse_quotas(quotas)  # an unknown name is refused, even one given to drop
        merged = {**project.quotas, **quotas}
        project.quotas = parse_quotas({k: v for k, v in merged.items() if v is not None})
    session.commit()
    return project


def delete_project(session: Session, caller: Principal, name: str) -> None:
    project = find_project(session, name)
    caller.require("projects:Manage", f"project/{name}")
    session.execute(delete(Binding).where(Binding.project_id == project.id))
    session.delete(project)
    session.commit()
    authz.changed()
