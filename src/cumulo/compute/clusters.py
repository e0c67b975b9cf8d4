"""Clusters: create, list, remove; the ``local`` cluster that exists from the first start."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cumulo.access import holders, projects
from cumulo.compute.models import ACTIVE, Cluster, Job
from cumulo.db import utcnow
from cumulo.errors import Conflict, Invalid, NotFound
from cumulo.principal import Principal

__all__ = ["DEFAULT_CLUSTER", "create_cluster", "delete_cluster", "ensure_local_cluster",
           "get_cluster", "list_clusters", "ray_python"]

DEFAULT_CLUSTER = "local"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def ensure_local_cluster(session: Session) -> None:
    """The ``local`` cluster, sized to this machine, made on the first start."""
    if session.scalar(select(Cluster).where(Cluster.name == DEFAULT_CLUSTER)) is not None:
        return
    from cumulo.compute.executors.local import detect_resources

    cpus, memory, gpus = detect_resources()
    session.add(Cluster(
        name=DEFAULT_CLUSTER, type="local", max_cpus=cpus, max_memory=memory, max_gpus=gpus,
        min_workers=1, max_workers=max(2, int(cpus) * 2), idle_timeout_s=600.0,
        created_at=utcnow(),
    ))
    try:
        session.commit()
    except IntegrityError:  # another control plane made it at the same moment
        session.rollback()


def get_cluster(session: Session, name: str) -> Cluster:
    cluster = session.scalar(select(Cluster).where(Cluster.name == name))
    if cluster is None:
        names = ", ".join(session.scalars(select(Cluster.name).order_by(Cluster.name)))
        raise NotFound(f"no cluster {name!r}; clusters: {names or 'none'} "
                       "('cumulo clusters create' makes one)", details={"cluster": name})
    return cluster


def list_clusters(session: Session, *, project: str | None = None) -> list[Cluster]:
    """Every cluster, or those of one project."""
    query = select(Cluster).order_by(Cluster.name)
    if project:
        query = query.where(Cluster.project_id == projects.project_id_for(session, project))
    return list(session.scalars(query))


def ray_python(cluster: Cluster) -> str:
    """The interpreter on a Ray cluster's head that runs Cumulo: what its jobs' and
    endpoints' entrypoints start (``<python> -m cumulo.compute.runner ...``), so that they do
    not depend on which ``python`` the head's PATH finds. Named with ``--python`` when the
    cluster was registered, or else the one the probe found then; plain ``python`` for a
    cluster registered before Cumulo kept it."""
    if cluster.type != "ray":
        raise Invalid(f"cluster {cluster.name!r} is a {cluster.type} cluster, not a Ray one")
    return cluster.python or "python"


def create_cluster(session: Session, principal: Principal, name: str, *, type: str,
                   address: str | None = None, max_cpus: float | None = None,
                   max_memory: int | None = None, max_gpus: int | None = None,
                   min_workers: int = 0, max_workers: int | None = None,
                   idle_timeout_s: float = 600.0, python: str | None = None,
                   project: str | None = None) -> Cluster:
    """Register a cluster (in ``project``: rights bound there hold on it; its jobs may be
    any project's, and count toward their own)."""
    project_id = projects.project_id_for(session, project)
    if not _NAME.match(name):
        raise Invalid(f"cluster name {name!r} must be 1-63 lower-case letters, digits or '-', "
                      "starting with a letter or digit")
    if session.scalar(select(Cluster).where(Cluster.name == name)) is not None:
        raise Conflict(f"cluster {name!r} already exists; 'cumulo clusters rm {name}' first")
    for label, value in (("--max-cpus", max_cpus), ("--max-gpus", max_gpus)):
        if value is not None and value < 0:
            raise Invalid(f"{label} must not be negative")
    if min_workers < 0 or (max_workers is not None and max_workers < max(1, min_workers)):
        raise Invalid("workers: need 0 <= --min-workers <= --max-workers, and --max-workers >= 1")
    if python is not None and (not python.startswith("/") or "\n" in python):
        raise Invalid(f"--python {python!r} must be an absolute path to an interpreter on the "
                      "Ray head, like /opt/venv/bin/python")
    from cumulo.compute.executors import executor_class

    kind = executor_class(type)  # Invalid for a type no executor runs
    found = kind.probe(address, python=python)
    cpus, memory, gpus = found.resources.cpus, found.resources.memory, found.resources.gpus
    if not kind.remote:  # this machine cannot grow; a remote cluster may (autoscaling)
        for label, want, have in (("--max-cpus", max_cpus, cpus),
                                  ("--max-memory", max_memory, memory),
                                  ("--max-gpus", max_gpus, gpus)):
            if want is not None and want > have:
                raise Invalid(f"{label} {want} is more than this machine has ({have})")
    endpoint, python = found.endpoint, found.python
    cluster = Cluster(
        name=name, type=type, address=address, endpoint=endpoint, python=python,
        max_cpus=cpus if max_cpus is None else max_cpus,
        max_memory=memory if max_memory is None else max_memory,
        max_gpus=gpus if max_gpus is None else max_gpus,
        min_workers=min_workers,
        max_workers=max_workers if max_workers is not None else max(2, int(cpus) * 2, min_workers),
        idle_timeout_s=idle_timeout_s, created_by=principal.user_id, created_at=utcnow(),
        project_id=project_id,
    )
    session.add(cluster)
    session.commit()
    return cluster


def delete_cluster(session: Session, name: str) -> None:
    cluster = get_cluster(session, name)
    if name == DEFAULT_CLUSTER:
        raise Conflict("the local cluster is built in and cannot be removed")
    active = session.scalar(select(func.count()).select_from(Job)
                            .where(Job.cluster == name, Job.state.in_(ACTIVE)))
    if active:
        raise Conflict(f"cluster {name!r} has {active} queued or running job(s); cancel them "
                       "first ('cumulo jobs ls --cluster {name}')".replace("{name}", name))
    session.delete(cluster)
    session.commit()


def usage(session: Session, name: str) -> dict[str, Any]:
    """What the cluster's jobs hold now, and how many wait."""
    rows = session.execute(
        select(Job.state, func.count(), func.sum(Job.cpus), func.sum(Job.memory),
               func.sum(Job.gpus))
        .where(Job.cluster == name, Job.state.in_(ACTIVE)).group_by(Job.state)
    ).all()
    out = {"queued": 0, "running": 0, "cpus": 0.0, "memory": 0, "gpus": 0}
    for state, count, cpus, memory, gpus in rows:
        if state == "queued":
            out["queued"] += count
            continue
        out["running"] += count
        out["cpus"] += float(cpus or 0)
        out["memory"] += int(memory or 0)
        out["gpus"] += int(gpus or 0)
    return out


def _cluster_project(session: Session, rest: str) -> str | None:
    project_id = session.scalar(select(Cluster.project_id).where(Cluster.name == rest))
    return projects.name_of(session, project_id)


holders.register("cluster", _cluster_project)
