"""Clusters: create, list, remove; the ``local`` cluster that exists from the first start."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cumulo.compute.models import ACTIVE, Cluster, Job
from cumulo.db import utcnow
from cumulo.errors import Conflict, Invalid, NotFound, Unavailable
from cumulo.principal import Principal

__all__ = ["DEFAULT_CLUSTER", "create_cluster", "delete_cluster", "ensure_local_cluster",
           "get_cluster", "list_clusters", "probe_ray"]

DEFAULT_CLUSTER = "local"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def ensure_local_cluster(session: Session) -> None:
    """The ``local`` cluster, sized to this machine, made on the first start."""
    if session.scalar(select(Cluster).where(Cluster.name == DEFAULT_CLUSTER)) is not None:
        return
    from cumulo.compute.local import detect_resources

    cpus, memory, gpus = detect_resources()
    session.add(Cluster(
        name=DEFAULT_CLUSTER, type="local", max_cpus=cpus, max_memory=memory, max_gpus=gpus,
        min_workers=1, max_workers=max(2, int(cpus) * 2), idle_timeout_s=600.0,
        created_at=utcnow(),
    ))
    session.commit()


def get_cluster(session: Session, name: str) -> Cluster:
    cluster = session.scalar(select(Cluster).where(Cluster.name == name))
    if cluster is None:
        names = ", ".join(session.scalars(select(Cluster.name).order_by(Cluster.name)))
        raise NotFound(f"no cluster {name!r}; clusters: {names or 'none'} "
                       "('cumulo clusters create' makes one)", details={"cluster": name})
    return cluster


def list_clusters(session: Session) -> list[Cluster]:
    return list(session.scalars(select(Cluster).order_by(Cluster.name)))


_PROBE = ("import json, ray; ray.init(logging_level='ERROR'); "
          "print('CUMULO_RESOURCES', json.dumps(ray.cluster_resources()))")


def probe_ray(address: str, timeout: float = 120.0) -> tuple[str, dict[str, float]]:
    """Find a Ray cluster's job API and read its total resources (CPU, memory, GPU).

    ``address`` is anything Ray's job client takes: the dashboard (``http://head:8265``),
    ``ray://head:10001``, ``head:6379`` or ``auto``. The resources come from a tiny Ray job,
    so they are what a job there would see.
    """
    try:
        from ray.job_submission import JobStatus, JobSubmissionClient
    except ImportError as exc:
        raise Invalid("Ray clusters need Ray: pip install 'cumulo[ray]'") from exc
    try:
        client = JobSubmissionClient(address)
        sid = client.submit_job(entrypoint=f'python -c "{_PROBE}"', entrypoint_num_cpus=0)
        deadline = time.monotonic() + timeout
        while not (status := client.get_job_status(sid)).is_terminal():
            if time.monotonic() > deadline:
                client.stop_job(sid)
                raise Unavailable(f"the Ray cluster at {address} did not run a probe job in "
                                  f"{timeout:.0f}s")
            time.sleep(0.2)
        logs = client.get_job_logs(sid)
        client.delete_job(sid)
    except Unavailable:
        raise
    except Exception as exc:
        raise Unavailable(f"cannot reach the Ray cluster at {address}: {exc}") from exc
    found = [line for line in logs.splitlines() if line.startswith("CUMULO_RESOURCES ")]
    if status != JobStatus.SUCCEEDED or not found:
        last = (logs.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"the Ray cluster at {address} could not run a probe job: {last}")
    return str(client.get_address()), json.loads(found[0].split(" ", 1)[1])


def create_cluster(session: Session, principal: Principal, name: str, *, type: str,
                   address: str | None = None, max_cpus: float | None = None,
                   max_memory: int | None = None, max_gpus: int | None = None,
                   min_workers: int = 0, max_workers: int | None = None,
                   idle_timeout_s: float = 600.0) -> Cluster:
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
    endpoint = None
    if type == "local":
        if address:
            raise Invalid("--address is for ray clusters; a local cluster runs on this machine")
        from cumulo.compute.local import detect_resources

        cpus, memory, gpus = detect_resources()
        for label, want, have in (("--max-cpus", max_cpus, cpus),
                                  ("--max-memory", max_memory, memory),
                                  ("--max-gpus", max_gpus, gpus)):
            if want is not None and want > have:
                raise Invalid(f"{label} {want} is more than this machine has ({have})")
    elif type == "ray":
        if not address:
            raise Invalid("a ray cluster needs --address (ray://host:10001 or auto)")
        endpoint, found = probe_ray(address)
        cpus, memory, gpus = found.get("CPU", 0.0), int(found.get("memory", 0)), \
            int(found.get("GPU", 0))
    else:
        raise Invalid(f"cluster type {type!r} is not known; use local or ray")
    cluster = Cluster(
        name=name, type=type, address=address, endpoint=endpoint,
        max_cpus=cpus if max_cpus is None else max_cpus,
        max_memory=memory if max_memory is None else max_memory,
        max_gpus=gpus if max_gpus is None else max_gpus,
        min_workers=min_workers,
        max_workers=max_workers if max_workers is not None else max(2, int(cpus) * 2, min_workers),
        idle_timeout_s=idle_timeout_s, created_by=principal.user_id, created_at=utcnow(),
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
