"""Notebooks: a JupyterLab server per notebook, run as a job of the compute service.

A notebook's run is a job (``python -m cumulo.notebooks.lab``): metered, listed in ``cumulo
jobs ls`` (tagged ``notebook:NAME``), its log kept, stopped by cancelling it. Start submits a
new job; stop cancels the current one. Once JupyterLab listens, the job reports its address and
the token Jupyter asks for, for this run only (:func:`report`); the proxy adds that token
itself, so nobody types one. The notebook's state is read from its job whenever it is looked
at (:func:`refresh`): nothing watches notebooks in the background.

Its files live in storage, in bucket ``notebooks``, in a folder per user (``notebooks/alice/``):
the job fills its working folder from there and writes each save through
(:mod:`cumulo.notebooks.contents`), so they survive stop and start and are in backups.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cumulo.access import holders, projects
from cumulo.access.users import acting_as, user_names
from cumulo.compute.clusters import get_cluster
from cumulo.compute.jobs import JobRequest, cancel_job, find_job, submit_job
from cumulo.compute.models import ACTIVE
from cumulo.db import utcnow
from cumulo.errors import Conflict, Forbidden, Invalid, NotFound
from cumulo.notebooks.models import Notebook, NotebookShare
from cumulo.principal import Principal
from cumulo.storage.backends import Backend
from cumulo.units import format_duration, parse_duration, parse_size

__all__ = ["BUCKET", "DEFAULT_IDLE", "Route", "create", "delete_notebook", "folder_of",
           "get", "list_notebooks", "refresh", "report", "route", "share", "start", "stop",
           "to_json", "unshare", "url_of"]

BUCKET = "notebooks"  # each user's notebook files, under <user>/
DEFAULT_IDLE = "1h"
MAX_IDLE = 30 * 86400.0
LAUNCHER = "cumulo.notebooks.lab"
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def url_of(name: str) -> str:
    return f"/notebooks/{name}/"


def folder_of(owner: str) -> str:
    """Where a user's notebook files live in storage (``bucket/prefix/``)."""
    return f"{BUCKET}/{owner}/"


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise Invalid(f"notebook name {name!r} must be 1-63 lowercase letters, digits or '-', "
                      "starting and ending with a letter or digit (it is part of its URL)",
                      details={"field": "name"})


def _find(session: Session, name: str) -> Notebook:
    found = session.scalar(select(Notebook).where(Notebook.name == name))
    if found is None:
        raise NotFound(f"no notebook {name!r}; 'cumulo notebooks ls' lists them",
                       details={"notebook": name})
    return found


def _owner_name(session: Session, nb: Notebook) -> str:
    return user_names(session, {nb.created_by}).get(nb.created_by, "")


def shared_with(session: Session, nb: Notebook) -> list[str]:
    ids = session.scalars(select(NotebookShare.user_id).where(NotebookShare.notebook_id == nb.id))
    return sorted(user_names(session, set(ids)).values())


# --- making and listing -----------------------------------------------------------------------

def create(session: Session, storage: Backend, principal: Principal, *, name: str,
           cluster: str = "local", cpus: float = 1.0, memory: str | int | None = None,
           gpus: int = 0, environment: str | None = None,
           idle_timeout: str | float = DEFAULT_IDLE, project: str | None = None) -> Notebook:
    """Check everything, then submit the notebook's first run; nothing is written if a check
    fails."""
    _check_name(name)
    idle = parse_duration(idle_timeout, what="--idle-timeout", maximum=MAX_IDLE)
    if session.scalar(select(Notebook.id).where(Notebook.name == name)) is not None:
        raise Conflict(f"there is already a notebook {name!r}; pick another name, or "
                       f"'cumulo notebooks start {name}'", details={"notebook": name})
    size = parse_size(memory, what="--memory") if memory is not None else None
    remote = _check_fits(session, cluster, cpus=cpus, memory=size, gpus=gpus)
    project_id = projects.project_id_for(session, project)
    nb = Notebook(name=name, cluster=cluster, cpus=float(cpus), memory=size, gpus=int(gpus),
                  environment=environment, idle_timeout_s=idle, state="starting",
                  created_by=principal.user_id, created_at=utcnow(), project_id=project_id)
    job = submit_job(session, storage, principal, _job_request(nb, principal.user_name,
                                                                project=project, remote=remote))
    nb.job_id, nb.started_at = job.id, utcnow()
    session.add(nb)
    try:
        session.commit()
    except IntegrityError as exc:  # made by another request meanwhile: its job goes
        session.rollback()
        cancel_job(session, principal, job.id)
        raise Conflict(f"there is already a notebook {name!r}",
                       details={"notebook": name}) from exc
    _ensure_bucket(session)  # before its job first writes a file: it starts in a second
    return nb


def _check_fits(session: Session, cluster_name: str, *, cpus: float, memory: int | None,
                gpus: int) -> bool:
    """Refuse what the cluster cannot give; whether the cluster is remote (Ray)."""
    cluster = get_cluster(session, cluster_name)  # NotFound names the clusters there are
    if not cpus > 0:
        raise Invalid(f"--cpus must be more than zero, not {cpus:g}", details={"field": "cpus"})
    if gpus < 0:
        raise Invalid(f"--gpus must not be negative, not {gpus}", details={"field": "gpus"})
    asks = [("--cpus", "CPUs", float(cpus), cluster.max_cpus),
            ("--gpus", "GPUs", float(gpus), float(cluster.max_gpus))]
    if memory is not None:
        asks.append(("--memory", "bytes of memory", float(memory), float(cluster.max_memory)))
    for option, what, want, most in asks:
        if want > most:
            raise Invalid(f"{option}: the notebook asks for {want:g} {what}, but cluster "
                          f"{cluster.name!r} has at most {most:g}; ask for less, or use a "
                          "bigger cluster ('cumulo clusters ls')",
                          details={"field": option.lstrip("-"), "cluster": cluster.name})
    return cluster.type != "local"


def _ensure_bucket(session: Session) -> None:
    """The bucket every user's notebook files go in: the platform's own, made once."""
    from cumulo.storage.models import Bucket

    if session.scalar(select(Bucket.id).where(Bucket.name == BUCKET)) is not None:
        return
    session.add(Bucket(name=BUCKET, created_at=utcnow(), created_by=None, project_id=None))
    try:
        session.commit()
    except IntegrityError:  # made by another request at the same moment
        session.rollback()


def _job_request(nb: Notebook, owner: str, *, project: str | None, remote: bool) -> JobRequest:
    return JobRequest(
        cluster=nb.cluster, name=f"notebook-{nb.name}",
        command=["python", "-m", LAUNCHER, "--name", nb.name, "--folder", folder_of(owner),
                 "--idle-timeout", f"{nb.idle_timeout_s:g}",
                 "--ip", "0.0.0.0" if remote else "127.0.0.1"],
        cpus=nb.cpus, memory=nb.memory, gpus=nb.gpus, environment=nb.environment,
        tags=["notebook", f"notebook:{nb.name}"], project=project)


def list_notebooks(session: Session, principal: Principal) -> list[Notebook]:
    """The caller's notebooks and those shared with them; everyone's for whoever may read
    any (an admin)."""
    query = select(Notebook).order_by(Notebook.name)
    if not principal.can("notebooks:Read", "notebook/*", owner=""):
        mine = select(NotebookShare.notebook_id).where(NotebookShare.user_id == principal.user_id)
        query = query.where((Notebook.created_by == principal.user_id) | Notebook.id.in_(mine))
    found = list(session.scalars(query))
    for nb in found:
        refresh(session, nb)
    return found


def get(session: Session, name: str) -> Notebook:
    """A notebook, its state read from its job."""
    nb = _find(session, name)
    refresh(session, nb)
    return nb


def refresh(session: Session, nb: Notebook) -> None:
    """Bring the notebook's state up to date with its job's: a run that ended says when and
    why (idle, stopped by someone, failed)."""
    if nb.state in ("stopped", "failed") or nb.job_id is None:
        return
    job = find_job(session, nb.job_id)
    if job is not None and job.state in ACTIVE:
        if nb.state != "stopping":
            state = "running" if job.state == "running" and nb.address else "starting"
            if state != nb.state:
                nb.state = state
                session.commit()
        return
    nb.stopped_at = (job.finished_at if job is not None else None) or utcnow()
    nb.address = nb.secret = None
    if job is None:
        nb.state, nb.reason = "stopped", f"its job {nb.job_id} is gone"
    elif job.state == "cancelled":
        nb.state = "stopped"
        nb.reason = f"stopped by {nb.stopped_by}" if nb.stopped_by else "its job was cancelled"
    elif job.state == "succeeded":
        # JupyterLab ended by itself: idle (it said so), or shut down from its File menu.
        nb.state = "stopped"
        if nb.reason != "shut down from JupyterLab":
            nb.reason = f"idle for {format_duration(nb.idle_timeout_s)}"
    elif job.state == "timed_out":
        nb.state, nb.reason = "stopped", f"failed: {job.reason}"
    else:
        nb.state = "failed"
        last = (job.log_tail or "").strip().splitlines()[-1:] or [""]
        nb.reason = f"failed: {job.reason or 'its job failed'}" + (
            f" ({last[0][:300]})" if last[0] else "") + f" ('cumulo jobs logs {job.id}')"
    session.commit()


def to_json(session: Session, nb: Notebook, *, owner: str | None = None) -> dict[str, Any]:
    return {
        "name": nb.name, "owner": owner if owner is not None else _owner_name(session, nb),
        "cluster": nb.cluster, "cpus": nb.cpus, "memory": nb.memory, "gpus": nb.gpus,
        "environment": nb.environment, "idle_timeout": nb.idle_timeout_s, "state": nb.state,
        "reason": nb.reason, "started_at": nb.started_at, "stopped_at": nb.stopped_at,
        "created_at": nb.created_at, "url": url_of(nb.name), "job_id": nb.job_id,
        "project": projects.name_of(session, nb.project_id),
        "shared_with": shared_with(session, nb),
    }


# --- stop, start, delete -----------------------------------------------------------------------

def stop(session: Session, principal: Principal, name: str) -> Notebook:
    nb = get(session, name)
    if nb.state in ("stopped", "failed"):
        raise Conflict(f"notebook {name!r} is already {nb.state} ({nb.reason}); "
                       f"'cumulo notebooks start {name}' starts it",
                       details={"notebook": name, "state": nb.state})
    if nb.state == "stopping":
        return nb
    assert nb.job_id is not None
    _cancel(session, nb.job_id)
    nb.state, nb.stopped_by = "stopping", principal.user_name
    session.commit()
    return nb


def _cancel(session: Session, job_id: str) -> None:
    job = find_job(session, job_id)
    if job is None or job.state not in ACTIVE:
        return
    # The notebook's rights decided already: its job is cancelled as its owner.
    owner = acting_as(session, job.created_by, what=f"job {job_id}")
    with contextlib.suppress(Conflict):  # it ended meanwhile
        cancel_job(session, owner, job_id)


def start(session: Session, storage: Backend, principal: Principal, name: str) -> Notebook:
    """A new run of a stopped notebook, as its owner (whose files it opens)."""
    nb = get(session, name)
    if nb.state in ("starting", "running"):
        raise Conflict(f"notebook {name!r} is already {nb.state}; open it at {url_of(name)} "
                       f"('cumulo notebooks open {name}')",
                       details={"notebook": name, "state": nb.state})
    if nb.state == "stopping":
        raise Conflict(f"notebook {name!r} is stopping; start it again once it has stopped",
                       details={"notebook": name, "state": nb.state})
    owner = acting_as(session, nb.created_by, what=f"notebook {name}")
    remote = _check_fits(session, nb.cluster, cpus=nb.cpus, memory=nb.memory, gpus=nb.gpus)
    job = submit_job(session, storage, owner, _job_request(
        nb, owner.user_name, project=projects.name_of(session, nb.project_id), remote=remote))
    nb.job_id, nb.state, nb.reason = job.id, "starting", None
    nb.address = nb.secret = nb.stopped_at = nb.stopped_by = None
    nb.started_at = utcnow()
    session.commit()
    return nb


def delete_notebook(session: Session, name: str) -> None:
    """Stop its run and forget it; its files stay in storage (``cumulo files ls notebooks/``)."""
    nb = _find(session, name)
    if nb.job_id is not None:
        _cancel(session, nb.job_id)
    session.execute(delete(NotebookShare).where(NotebookShare.notebook_id == nb.id))
    session.delete(nb)
    session.commit()


# --- sharing ------------------------------------------------------------------------------------

def _user_id(session: Session, user: str) -> int:
    from cumulo.access.models import User

    found = session.scalar(select(User.id).where(User.name == user))
    if found is None:
        raise NotFound(f"no user {user!r}; 'cumulo users ls' lists them", details={"user": user})
    return int(found)


def share(session: Session, name: str, user: str) -> Notebook:
    nb = _find(session, name)
    user_id = _user_id(session, user)
    if user_id == nb.created_by:
        raise Invalid(f"{user} owns notebook {name!r} already", details={"field": "with"})
    exists = session.get(NotebookShare, (nb.id, user_id))
    if exists is None:
        session.add(NotebookShare(notebook_id=nb.id, user_id=user_id, created_at=utcnow()))
        session.commit()
    return nb


def unshare(session: Session, name: str, user: str) -> Notebook:
    nb = _find(session, name)
    found = session.get(NotebookShare, (nb.id, _user_id(session, user)))
    if found is None:
        raise NotFound(f"notebook {name!r} is not shared with {user}",
                       details={"notebook": name, "user": user})
    session.delete(found)
    session.commit()
    return nb


# --- the running server -----------------------------------------------------------------------

def report(session: Session, principal: Principal, name: str, *, address: str | None,
           secret: str | None, ended: str | None) -> None:
    """What the notebook's job says of itself: where JupyterLab listens and the token it asks
    for (once it listens), or why it is about to end. Only the current run's own job token."""
    nb = _find(session, name)
    job = find_job(session, nb.job_id) if nb.job_id else None
    if job is None or job.token_id is None or job.token_id != principal.token_id:
        raise Forbidden(f"only the job that runs notebook {name!r} now may report its address",
                        details={"notebook": name})
    if ended is not None:
        if ended not in ("idle", "shutdown"):
            raise Invalid("ended is 'idle' or 'shutdown'", details={"field": "ended"})
        nb.reason = ("shut down from JupyterLab" if ended == "shutdown"
                     else f"idle for {format_duration(nb.idle_timeout_s)}")
        nb.address = nb.secret = None
    else:
        if not address or not secret:
            raise Invalid("give the address JupyterLab listens on and its token",
                          details={"field": "address"})
        nb.address, nb.secret = address, secret
        if nb.state == "starting":
            nb.state = "running"
    session.commit()


@dataclass(frozen=True)
class Route:
    """What the proxy needs of a notebook: where it is, and who may open it."""

    name: str
    state: str
    owner: str
    project: str | None
    shared_with: frozenset[int]
    address: str | None = None
    secret: str | None = None
    reason: str | None = None
    stopped_at: str | None = None
    waiting: str | None = None  # why a starting one is not up yet, where that is known


def route(session: Session, name: str) -> Route | None:
    """The notebook's route, its state brought up to date; None when there is no such one."""
    nb = session.scalar(select(Notebook).where(Notebook.name == name))
    if nb is None:
        return None
    refresh(session, nb)
    shares = frozenset(session.scalars(select(NotebookShare.user_id)
                                       .where(NotebookShare.notebook_id == nb.id)))
    running = nb.state == "running"
    waiting = None
    if nb.state == "starting" and nb.job_id is not None:
        job = find_job(session, nb.job_id)
        if job is not None and job.state == "queued":
            waiting = (f"its job {job.id} is queued: cluster {nb.cluster!r} has no room for "
                       f"{nb.cpus:g} CPU(s) now ('cumulo jobs ls --cluster {nb.cluster}')")
    return Route(name=nb.name, state=nb.state, owner=_owner_name(session, nb),
                 project=projects.name_of(session, nb.project_id), shared_with=shares,
                 address=nb.address if running else None, secret=nb.secret if running else None,
                 reason=nb.reason,
                 stopped_at=nb.stopped_at.isoformat(timespec="seconds") if nb.stopped_at
                 else None, waiting=waiting)


def _notebook_project(session: Session, rest: str) -> str | None:
    project_id = session.scalar(select(Notebook.project_id).where(Notebook.name == rest))
    return projects.name_of(session, project_id)


holders.register("notebook", _notebook_project)
