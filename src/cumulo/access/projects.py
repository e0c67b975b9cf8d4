"""Projects (workspaces): named groupings of work with members (roles bound in the project,
:mod:`cumulo.access.grants`) and quotas.

A resource belongs to at most one project (its ``project_id``, :class:`cumulo.db.InProject`),
named when it is made (``--project``); rights bound in the project hold on it. Each service
says how much of a quota its resources use in a project (:func:`register_meter`: jobs count
CPUs, GPUs and memory, endpoints count themselves, buckets and tables count bytes), and asks
:func:`enforce` before it adds more: past the quota, the work is refused with
:class:`~cumulo.errors.QuotaExceeded`, naming the quota, what is in use and what was asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Integer, delete, func, select
from sqlalchemy.orm import Session

from cumulo.access import authz
from cumulo.access.models import Binding, Project
from cumulo.db import Base
from cumulo.errors import Conflict, Invalid, NotFound, QuotaExceeded
from cumulo.principal import Principal

__all__ = ["QUOTAS", "Meter", "create_project", "delete_project", "enforce", "find_project",
           "gigabytes", "list_projects", "name_of", "names_of", "owned", "parse_quotas",
           "project_id_for", "register_meter", "update_project", "usage"]

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


# How much of a quota a service's resources use in a project: (session, project id) -> amount
# in the quota's unit (CPUs, GB, endpoints).
Meter = Callable[[Session, int], float]
_METERS: dict[str, list[Meter]] = {}
_GB = 1024 ** 3


def register_meter(quota: str, meter: Meter) -> None:
    """Count ``meter`` toward ``quota`` (a service calls this when it is imported)."""
    if quota not in QUOTAS:
        raise ValueError(f"{quota!r} is not a quota")
    if meter not in _METERS.setdefault(quota, []):
        _METERS[quota].append(meter)


def usage(session: Session, project_id: int) -> dict[str, float]:
    """What the project uses now of each quota that some service counts."""
    return {quota: round(sum(meter(session, project_id) for meter in meters), 6)
            for quota, meters in _METERS.items()}


def enforce(session: Session, project_id: int | None, adding: dict[str, float], *,
            what: str) -> None:
    """Refuse ``what`` ("job train (2 CPUs)") when adding ``adding`` (``{"cpus": 2}``) to what
    the project uses would pass one of its quotas. Nothing to check outside a project."""
    if project_id is None:
        return
    # The project's row stays locked (PostgreSQL) until the caller commits what it adds, so
    # that two submits at once cannot both pass a quota only one of them fits under.
    project = session.get(Project, project_id, with_for_update=True)
    if project is None:
        return
    for quota, amount in adding.items():
        limit = project.quotas.get(quota)
        if limit is None or amount <= 0:
            continue
        in_use = sum(meter(session, project_id) for meter in _METERS.get(quota, ()))
        if in_use + amount > float(limit) + 1e-9:
            unit = _UNITS[quota]
            raise QuotaExceeded(
                f"{what} would take project {project.name} past its {quota} quota: "
                f"{_fmt(in_use)} {unit} in use + {_fmt(amount)} asked > {_fmt(limit)}; wait "
                f"for work to finish, free some, or ask an admin to raise it ('cumulo projects "
                f"update {project.name} --quota {quota}=N')",
                details={"project": project.name, "quota": quota, "limit": float(limit),
                         "in_use": in_use, "asked": amount})


_UNITS = {"cpus": "CPUs", "gpus": "GPUs", "memory_gb": "GB of memory", "endpoints": "endpoints",
          "storage_gb": "GB stored"}


def _fmt(number: float) -> str:
    return f"{number:.3f}".rstrip("0").rstrip(".") if number % 1 else str(int(number))


def gigabytes(size: int | float) -> float:
    return float(size) / _GB


def project_id_for(session: Session, name: str | None) -> int | None:
    """The id of the project named (None for none); an unknown name is refused."""
    if not name:
        return None
    return find_project(session, name).id


def name_of(session: Session, project_id: int | None) -> str | None:
    """A project's name by id (None for none, or a project since deleted)."""
    if project_id is None:
        return None
    project = session.get(Project, project_id)
    return project.name if project is not None else None


def names_of(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    """Projects' names by id, in one query (for listings)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(Project.id, Project.name).where(Project.id.in_(wanted)))
    return {project_id: name for project_id, name in rows}


def owned(session: Session, project_id: int) -> dict[str, int]:
    """How many rows of each table belong to the project: every table with a ``project_id``
    column (:class:`cumulo.db.InProject`) is looked at, so a service added later is too."""
    counts: dict[str, int] = {}
    for table in Base.metadata.sorted_tables:
        column = table.columns.get("project_id")
        if column is None or table.name == "bindings" or not isinstance(column.type, Integer):
            continue
        count = session.scalar(select(func.count()).select_from(table)
                               .where(column == project_id)) or 0
        if count:
            counts[table.name] = int(count)
    return counts


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
    left = owned(session, project.id)
    if left:
        listed = ", ".join(f"{count} {table}" for table, count in sorted(left.items()))
        raise Conflict(f"project {name} still holds {listed}; delete them first (or "
                       "move them out) so that nothing is left without its project",
                       details={"project": name, "holds": left})
    session.execute(delete(Binding).where(Binding.project_id == project.id))
    session.delete(project)
    session.commit()
    authz.changed()
