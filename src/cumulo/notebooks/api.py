"""``/api/v1/notebooks``: create, list, show, stop, start, delete and share notebooks; and the
route a notebook's own job reports its address on."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.access import projects
from cumulo.access.users import user_names
from cumulo.db import get_session
from cumulo.notebooks import proxy, service
from cumulo.notebooks.models import Notebook, NotebookShare
from cumulo.permissions import Holder, allow, body_project, query_project
from cumulo.principal import Principal, current_principal
from cumulo.services import Running, services

__all__ = ["holder", "router"]

router = APIRouter(prefix="/notebooks", tags=["notebooks"])
DbSession = Annotated[Session, Depends(get_session)]
Caller = Annotated[Principal, Depends(current_principal)]


def holder(request: Request, *, shared: bool = False) -> Holder | None:
    """Whose the route's notebook is, and its project; None: no such notebook. With
    ``shared``, a user the owner shares it with counts as its owner (to read and open it)."""
    name = request.path_params["name"]
    with services(request).sessions() as session:
        nb = session.scalar(select(Notebook).where(Notebook.name == name))
        if nb is None:
            return None
        owner = user_names(session, {nb.created_by}).get(nb.created_by, "")
        caller: Principal | None = getattr(request.state, "principal", None)
        if shared and caller is not None and session.get(
                NotebookShare, (nb.id, caller.user_id)) is not None:
            owner = caller.user_name
        return Holder(owner, projects.name_of(session, nb.project_id))


def _readable(request: Request) -> Holder | None:
    return holder(request, shared=True)


class NotebookIn(BaseModel):
    name: str
    cluster: str = "local"
    cpus: float = 1.0
    memory: str | int | None = Field(None, description="bytes, or 512M, 4G ...; none: no limit")
    gpus: int = 0
    environment: str | None = Field(None, description="a named environment (cumulo envs)")
    idle_timeout: str | float = Field(service.DEFAULT_IDLE,
                                      description="seconds, or 30m, 1h ...: stopped once idle "
                                      "this long")
    project: str | None = None


class ShareIn(BaseModel):
    user: str


class ReportIn(BaseModel):
    address: str | None = None
    secret: str | None = None
    ended: str | None = Field(None, description="idle or shutdown: why JupyterLab ends")


@router.get("", dependencies=[allow("notebooks:List", "notebook/*", project=query_project)],
            summary="Notebooks: one's own and those shared with one (everyone's for an admin)")
def list_(session: DbSession, caller: Caller) -> list[dict[str, Any]]:
    found = service.list_notebooks(session, caller)
    names = user_names(session, {nb.created_by for nb in found})
    return [service.to_json(session, nb, owner=names.get(nb.created_by, "")) for nb in found]


@router.post("", status_code=201,
             dependencies=[allow("notebooks:Create", "notebook/*", project=body_project)],
             summary="Create a notebook: a JupyterLab server, started as a job")
def create(body: NotebookIn, session: DbSession, caller: Caller,
           running: Running) -> dict[str, Any]:
    nb = service.create(session, running.storage, caller, name=body.name, cluster=body.cluster,
                        cpus=body.cpus, memory=body.memory, gpus=body.gpus,
                        environment=body.environment, idle_timeout=body.idle_timeout,
                        project=body.project)
    proxy.forget(body.name)  # its URL may have been asked for before it existed
    running.compute.notify()  # its job is dispatched now, not at the supervisor's next look
    return service.to_json(session, nb)


@router.get("/{name}", dependencies=[allow("notebooks:Read", "notebook/{name}",
                                           owner=_readable)],
            summary="A notebook: its state, and when and why it stopped")
def show(name: str, session: DbSession) -> dict[str, Any]:
    return service.to_json(session, service.get(session, name))


@router.delete("/{name}", dependencies=[allow("notebooks:Delete", "notebook/{name}",
                                              owner=holder)],
               summary="Delete a notebook (its files stay in storage)")
def delete(name: str, session: DbSession, running: Running) -> dict[str, str]:
    service.delete_notebook(session, name)
    proxy.forget(name)
    running.compute.notify()
    return {"deleted": name}


@router.post("/{name}/stop", dependencies=[allow("notebooks:Stop", "notebook/{name}",
                                                 owner=holder)],
             summary="Stop a notebook: its job is cancelled; its files stay")
def stop(name: str, session: DbSession, caller: Caller, running: Running) -> dict[str, Any]:
    nb = service.stop(session, caller, name)
    proxy.forget(name)
    running.compute.notify()
    return service.to_json(session, nb)


@router.post("/{name}/start", dependencies=[allow("notebooks:Start", "notebook/{name}",
                                                  owner=holder)],
             summary="Start a stopped notebook again: a new job")
def start(name: str, session: DbSession, caller: Caller, running: Running) -> dict[str, Any]:
    nb = service.start(session, running.storage, caller, name)
    proxy.forget(name)
    running.compute.notify()
    return service.to_json(session, nb)


@router.post("/{name}/shares", dependencies=[allow("notebooks:Share", "notebook/{name}",
                                                   owner=holder)],
             summary="Share a notebook with a user: they may open it too")
def share(name: str, body: ShareIn, session: DbSession) -> dict[str, Any]:
    return service.to_json(session, service.share(session, name, body.user))


@router.delete("/{name}/shares/{user}", dependencies=[allow("notebooks:Share", "notebook/{name}",
                                                            owner=holder)],
               summary="Stop sharing a notebook with a user")
def unshare(name: str, user: str, session: DbSession) -> dict[str, Any]:
    return service.to_json(session, service.unshare(session, name, user))


# The notebook's job, with its own token (its owner's rights; and the service checks that it
# is the current run's job's token): reporting where it listens is part of starting it.
@router.post("/{name}/report", dependencies=[allow("notebooks:Start", "notebook/{name}",
                                                   owner=holder)], include_in_schema=False)
def report(name: str, body: ReportIn, session: DbSession, caller: Caller) -> dict[str, str]:
    service.report(session, caller, name, address=body.address, secret=body.secret,
                   ended=body.ended)
    proxy.forget(name)
    return {"reported": name}
