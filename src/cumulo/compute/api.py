"""REST routes of compute: ``/api/v1/clusters`` and ``/api/v1/jobs``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, field_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cumulo.access import projects
from cumulo.access.users import user_names
from cumulo.compute import checkpoints, logparts
from cumulo.compute import clusters as cluster_service
from cumulo.compute import jobs as job_service
from cumulo.compute.models import FINISHED, CodeSnapshot, Job, JobArtifact
from cumulo.compute.spec import MAX_DURATION
from cumulo.db import get_session, utcnow
from cumulo.errors import Conflict, Forbidden, Invalid, NotFound
from cumulo.permissions import Holder, allow, body_project, query_project
from cumulo.principal import Principal, current_principal
from cumulo.services import services
from cumulo.storage.backends import Backend, request_backend
from cumulo.storage.transfer import CHUNK, spool_body
from cumulo.units import parse_duration, parse_size

if TYPE_CHECKING:
    from cumulo.compute.supervisor import Supervisor

__all__ = ["clusters_router", "jobs_router"]

clusters_router = APIRouter(prefix="/clusters", tags=["clusters"])
jobs_router = APIRouter(prefix="/jobs", tags=["jobs"])
DbSession = Annotated[Session, Depends(get_session)]
_T = TypeVar("_T")
Caller = Annotated[Principal, Depends(current_principal)]
Storage = Annotated[Backend, Depends(request_backend)]
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
# A file offset a seek takes; past it the log stream broke off with "cannot fit 'int' into an
# offset-sized integer" after its 200 was sent.
_MAX_OFFSET = 2**63 - 1
# More GPUs or workers than any cluster has, and within the 32-bit integer columns that hold
# them (past 2**63 a cluster was an OverflowError, a 500).
_MAX_COUNT = 1_000_000
_LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z, the last a datetime holds


def job_owner(request: Request) -> Holder | None:
    """Who submitted the route's job (for rights on one's own jobs) and its project; None: no
    such job."""
    with services(request).sessions() as session:
        job = job_service.find_job(session, request.path_params["job_id"])
        if job is None:
            return None
        return Holder(user_names(session, {job.created_by}).get(job.created_by, ""),
                      projects.name_of(session, job.project_id))


def _supervisor(request: Request) -> Supervisor:
    return services(request).compute


# --- clusters ----------------------------------------------------------------------------------


class ClusterIn(BaseModel):
    name: str
    type: str = "local"
    address: str | None = None
    max_cpus: float | None = Field(None, allow_inf_nan=False)
    max_memory: str | int | None = Field(None, description="bytes, or a size like 8G")
    max_gpus: int | None = Field(None, ge=0, le=_MAX_COUNT)
    min_workers: int = Field(0, ge=0, le=_MAX_COUNT)
    max_workers: int | None = Field(None, ge=1, le=_MAX_COUNT)
    idle_timeout: str | float = Field("10m", description="like 90s, 10m or 1h")
    python: str | None = Field(None, description="ray: the head's interpreter that runs "
                               "Cumulo (default: the one its PATH finds, kept as its path)")
    project: str | None = Field(None, description="the project it belongs to")


class ClusterOut(BaseModel):
    name: str
    type: str
    address: str | None
    endpoint: str | None = Field(None, description="a ray cluster's job API, found from address")
    python: str | None = Field(None, description="a ray cluster's interpreter for Cumulo")
    max_cpus: float
    max_memory: int
    max_gpus: int
    min_workers: int
    max_workers: int
    idle_timeout_s: float
    in_use: dict[str, Any]
    workers: dict[str, int]
    preloaded: list[str] = Field(
        default_factory=list,
        description="modules a Python job on this cluster starts with already imported (the "
                    "fork server's, once it is ready; the server's preload setting)")
    created_at: datetime
    project: str | None = None


def _cluster_out(session: Session, request: Request, cluster: Any) -> ClusterOut:
    executor = _supervisor(request).executor(cluster.name)
    in_use = cluster_service.usage(session, cluster.name)
    return ClusterOut(
        name=cluster.name, type=cluster.type, address=cluster.address, endpoint=cluster.endpoint,
        python=cluster.python,
        max_cpus=cluster.max_cpus, max_memory=cluster.max_memory, max_gpus=cluster.max_gpus,
        min_workers=cluster.min_workers, max_workers=cluster.max_workers,
        idle_timeout_s=cluster.idle_timeout_s, in_use=in_use,
        workers={"busy": in_use["running"], "idle": executor.idle if executor else 0},
        preloaded=executor.preloaded if executor else [],
        created_at=cluster.created_at, project=projects.name_of(session, cluster.project_id),
    )


@clusters_router.get("",
    dependencies=[allow("clusters:List", "cluster/*", project=query_project)],
    response_model=list[ClusterOut], summary="List clusters (of one project, with ?project=)")
def list_clusters(session: DbSession, request: Request,
                  project: str | None = None) -> list[ClusterOut]:
    return [_cluster_out(session, request, c)
            for c in cluster_service.list_clusters(session, project=project)]


@clusters_router.post("",
    dependencies=[allow("clusters:Create", "cluster/*", project=body_project)],
    status_code=201, response_model=ClusterOut, summary="Create a cluster")
def create_cluster(body: ClusterIn, session: DbSession, caller: Caller,
                   request: Request) -> ClusterOut:
    cluster = cluster_service.create_cluster(
        session, caller, body.name, type=body.type, address=body.address,
        max_cpus=body.max_cpus,
        max_memory=(parse_size(body.max_memory, what="--max-memory")
                    if body.max_memory is not None else None),
        max_gpus=body.max_gpus, min_workers=body.min_workers, max_workers=body.max_workers,
        idle_timeout_s=parse_duration(body.idle_timeout, what="--idle-timeout",
                                      maximum=MAX_DURATION),
        python=body.python, project=body.project,
    )
    _supervisor(request).notify()
    return _cluster_out(session, request, cluster)


@clusters_router.get("/{name}",
    dependencies=[allow("clusters:Read", "cluster/{name}")],
    response_model=ClusterOut, summary="Show a cluster")
def show_cluster(name: str, session: DbSession, request: Request) -> ClusterOut:
    return _cluster_out(session, request, cluster_service.get_cluster(session, name))


@clusters_router.delete("/{name}",
    dependencies=[allow("clusters:Delete", "cluster/{name}")],
    summary="Remove a cluster")
def delete_cluster(name: str, session: DbSession, request: Request) -> dict[str, str]:
    cluster_service.delete_cluster(session, name)
    _supervisor(request).notify()
    return {"deleted": name}


# --- code snapshots ----------------------------------------------------------------------------


def _digest(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise Invalid("a code snapshot is named by the SHA-256 of its files: 64 hex digits")
    return digest


@jobs_router.get("/code/{digest}",
                 dependencies=[allow("jobs:Submit", "job/*", project=query_project)],
                 summary="Whether a code snapshot is already uploaded")
def code_exists(digest: str, session: DbSession) -> dict[str, Any]:
    snap = session.get(CodeSnapshot, _digest(digest))
    if snap is None:
        raise NotFound(f"code snapshot {digest[:12]} is not uploaded")
    return {"digest": snap.digest, "files": len(snap.files), "size": snap.size}


def _raw_body(what: str, *media_types: str) -> dict[str, Any]:
    """The OpenAPI request body of a route that streams its raw body (FastAPI sees none):
    declared, so that a client generated from the document sends one."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"description": what, "required": True,
                            "content": {kind: binary for kind in media_types}}}


_CODE_BODY = _raw_body("the snapshot's files as a tar, gzipped or not; the path names their "
                       "digest: the SHA-256 of each file's path, SHA-256 and executable bit "
                       "(compute/snapshot.py, digest_of)",
                       "application/gzip", "application/octet-stream")
_FILE_BODY = _raw_body("the file's bytes", "application/octet-stream")


@jobs_router.put("/code/{digest}",
                 dependencies=[allow("jobs:Submit", "job/*", project=query_project)],
                 status_code=201, summary="Upload a code snapshot (a tar.gz)",
                 openapi_extra=_CODE_BODY)
async def upload_code(digest: str, request: Request, session: DbSession,
                      storage: Storage) -> dict[str, Any]:
    from cumulo.compute import snapshot
    from cumulo.compute.supervisor import snapshot_key

    _digest(digest)
    tmp, _, _ = await spool_body(request, storage.spool_dir())
    try:
        files, size = await run_in_threadpool(snapshot.verify, tmp, digest)

        def store() -> None:
            if session.get(CodeSnapshot, digest) is None:
                storage.commit(tmp, snapshot_key(digest))  # the same bytes, whoever wins
                session.add(CodeSnapshot(digest=digest, files=files, size=size,
                                         created_at=utcnow()))
                try:
                    session.commit()
                except IntegrityError:  # the same snapshot, uploaded at the same moment
                    session.rollback()

        await run_in_threadpool(store)
    finally:
        tmp.unlink(missing_ok=True)
    return {"digest": digest, "files": len(files), "size": size}


# --- jobs --------------------------------------------------------------------------------------


class JobIn(BaseModel):
    cluster: str = "local"
    code: str | None = Field(None, description="digest of an uploaded code snapshot")
    entry: str | None = None
    command: str | list[str] | None = None
    args: list[str] = []
    cpus: float = 1.0
    memory: str | int | None = None
    gpus: int = 0
    env: dict[str, str] = {}
    inputs: dict[str, str] = Field({}, description="name -> db.table[@vN] or bucket/prefix")
    max_runtime: str | float | None = None
    retries: int = 0
    priority: int = 0
    tags: list[str] = []
    name: str | None = None
    project: str | None = Field(None, description="the project it belongs to (its quotas "
                                "count it)")
    requirements: str | None = Field(None, description="a requirements file's text: the job "
                                     "runs in an environment built from it")
    requirements_file: str | None = Field(None, description="that file's name, for errors")
    environment: str | None = Field(None, description="a named environment, or 'pyproject' "
                                    "(the code folder's pyproject.toml and uv.lock)")
    python: str | None = Field(None, description="the environment's Python: 3.12 or a path")
    isolated: bool = Field(False, description="nothing of the server's packages in it")
    image: str | None = Field(None, description="a container image (Podman or Docker)")


class JobOut(BaseModel):
    id: str
    name: str
    cluster: str
    state: str
    priority: int
    tags: list[str]
    code: str | None
    entry: str | None
    command: list[str] | None
    args: list[str]
    env: dict[str, str]
    inputs: dict[str, Any]
    cpus: float
    memory: int | None
    gpus: int
    max_runtime_s: float | None
    retries: int
    attempt: int
    attempts: list[dict[str, Any]]
    created_at: datetime
    created_by: str | None
    starting_at: datetime | None
    running_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    reason: str | None
    log_tail: str | None
    pid: int | None = Field(None, description="the running attempt's process (local clusters)")
    ray_job: str | None = Field(None, description="the latest attempt's Ray submission id")
    usage: dict[str, float | int]
    project: str | None = None
    environment: str | None = Field(None, description="the digest of its environment; None: "
                                    "the server's own")
    environment_label: str | None = None
    env_ready_at: datetime | None = None
    image: str | None = Field(None, description="the container image it runs in")


def jobs_out(session: Session, jobs: list[Job]) -> list[JobOut]:
    """Jobs as answered, their submitters' and projects' names read in one query each."""
    names = user_names(session, (j.created_by for j in jobs))
    places = projects.names_of(session, (j.project_id for j in jobs))
    return [job_out(j, names, places) for j in jobs]


def job_out(job: Job, names: dict[int | None, str],
            places: dict[int, str] | None = None) -> JobOut:
    return JobOut(
        id=job.id, name=job.name, cluster=job.cluster, state=job.state, priority=job.priority,
        tags=job.tags, code=job.code_digest, entry=job.entry, command=job.command,
        args=job.args, env=job.env, inputs=job.inputs, cpus=job.cpus, memory=job.memory,
        gpus=job.gpus, max_runtime_s=job.max_runtime_s, retries=job.retries,
        attempt=job.attempt, attempts=job.attempts, created_at=job.created_at,
        created_by=names.get(job.created_by), starting_at=job.starting_at,
        running_at=job.running_at, finished_at=job.finished_at, exit_code=job.exit_code,
        reason=job.reason, log_tail=job.log_tail, pid=job.pid, ray_job=job.backend_ref,
        usage={"cpu_seconds": round(job.cpu_seconds, 3),
               "peak_memory_bytes": job.peak_memory_bytes,
               "gpu_seconds": round(job.gpu_seconds, 3),
               "wall_seconds": round(job.wall_seconds, 3), "cost_usd": job.cost_usd},
        project=(places or {}).get(job.project_id) if job.project_id is not None else None,
        environment=job.environment, environment_label=job.environment_label,
        env_ready_at=job.env_ready_at, image=job.image,
    )


@jobs_router.post("",
                  dependencies=[allow("jobs:Submit", "job/*", project=body_project)],
                  status_code=201, response_model=JobOut, summary="Submit a job")
def submit_job(body: JobIn, session: DbSession, storage: Storage, caller: Caller,
               request: Request) -> JobOut:
    job = job_service.submit_job(session, storage, caller,
                                 job_service.JobRequest(**body.model_dump()))
    _supervisor(request).notify()
    return jobs_out(session, [job])[0]


@jobs_router.get("",
                 dependencies=[allow("jobs:List", "job/*", project=query_project)],
                 response_model=list[JobOut],
                 summary="List jobs, newest first (of one project, with ?project=)")
async def list_jobs(request: Request, caller: Caller, state: str | None = None,
                    cluster: str | None = None, tag: str | None = None,
                    project: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
                    ids: Annotated[str | None, Query(description=(
                        "only these jobs, in this order: ids separated by commas"))] = None,
                    wait: Annotated[float, Query(ge=0, le=60, description=(
                        "with ids: seconds to wait for one of them to end before answering"
                        ))] = 0) -> list[JobOut]:
    sessions = services(request).sessions
    wanted = [i for i in (ids or "").split(",") if i]
    if wait > 0 and not wanted:
        raise Invalid("wait needs ids: the jobs to wait for, e.g. ?ids=job-1,job-2&wait=10")

    def read() -> list[JobOut]:
        with sessions() as session:
            if wanted:
                jobs = [job_service.get_job(session, i, caller) for i in wanted]
                place = projects.project_id_for(session, project)
                if project and any(j.project_id != place for j in jobs):
                    # The request was decided in that project: it answers for its jobs only.
                    other = next(j.id for j in jobs if j.project_id != place)
                    raise NotFound(f"no job {other!r} in project {project}",
                                   details={"job": other})
            else:
                jobs = job_service.list_jobs(session, caller, state=state, cluster=cluster,
                                             tag=tag, project=project, limit=limit)
            return jobs_out(session, jobs)

    return await _long_poll(request, read, lambda out: any(j.state in FINISHED for j in out),
                            wait)


@jobs_router.get("/{job_id}",
                 dependencies=[allow("jobs:Read", "job/{job_id}", owner=job_owner)],
                 response_model=JobOut, summary="Show a job")
async def show_job(job_id: str, request: Request, caller: Caller,
                   wait: Annotated[float, Query(ge=0, le=60, description=(
                       "seconds to wait for the job to end before answering"))] = 0) -> JobOut:
    sessions = services(request).sessions

    def read() -> JobOut:
        with sessions() as session:
            return jobs_out(session, [job_service.get_job(session, job_id, caller)])[0]

    return await _long_poll(request, read, lambda out: out.state in FINISHED, wait)


async def _long_poll(request: Request, read: Callable[[], _T], done: Callable[[_T], bool],
                     wait: float) -> _T:
    """``read()`` now, or once ``done(read())`` holds, within ``wait`` seconds, holding no
    thread while it waits. It reads again after each step of the supervisor (which records
    jobs' ends), and at least every second (an end recorded by another control plane sharing
    the database). Watching starts before the first read, so an end in between is not missed.
    """
    if wait <= 0:
        return await run_in_threadpool(read)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    supervisor = _supervisor(request)
    changed = supervisor.watch()
    try:
        out = await run_in_threadpool(read)
        while not done(out) and (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=min(left, 1.0))
            changed.clear()
            out = await run_in_threadpool(read)
    finally:
        supervisor.unwatch(changed)
    return out


@jobs_router.post("/{job_id}/cancel",
                  dependencies=[allow("jobs:Cancel", "job/{job_id}", owner=job_owner)],
                  response_model=JobOut, summary="Cancel a job")
def cancel_job(job_id: str, session: DbSession, caller: Caller, request: Request) -> JobOut:
    job = job_service.cancel_job(session, caller, job_id)
    _supervisor(request).notify()
    return jobs_out(session, [job])[0]


@jobs_router.post("/{job_id}/retry",
                  dependencies=[allow("jobs:Retry", "job/{job_id}", owner=job_owner)],
                  response_model=JobOut,
                  summary="Run a job that failed, was cancelled or timed out again, as its next "
                          "attempt (with its checkpoints)")
def retry_job(job_id: str, session: DbSession, caller: Caller, request: Request) -> JobOut:
    job = job_service.retry_job(session, caller, job_id)
    _supervisor(request).notify()
    return jobs_out(session, [job])[0]


class MetricIn(BaseModel):
    key: str
    value: float = Field(description="any number but NaN, which the metrics cannot hold")
    step: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    timestamp: float | None = Field(None, ge=0, le=_LAST_SECOND,
                                    description="seconds since 1970, up to the year 9999")

    @field_validator("value")
    @classmethod
    def _not_nan(cls, value: float) -> float:
        if math.isnan(value):  # stored as NULL, against the column's NOT NULL: a 500
            raise ValueError("a metric value must be a number, not NaN")
        return value


class MetricsIn(BaseModel):
    metrics: list[MetricIn]


@jobs_router.post("/{job_id}/metrics",
                  dependencies=[allow("jobs:Write", "job/{job_id}", owner=job_owner)],
                  summary="Record metrics (from inside the job)")
def post_metrics(job_id: str, body: MetricsIn, session: DbSession,
                 caller: Caller) -> dict[str, int]:
    count = job_service.record_metrics(session, caller, job_id,
                                       [m.model_dump() for m in body.metrics])
    return {"recorded": count}


@jobs_router.get("/{job_id}/metrics",
                 dependencies=[allow("jobs:Read", "job/{job_id}", owner=job_owner)],
                 summary="A job's metrics, by name, in step order")
def get_metrics(job_id: str, session: DbSession,
                caller: Caller) -> dict[str, list[dict[str, Any]]]:
    job_service.get_job(session, job_id, caller)
    return job_service.metrics_of(session, job_id)


@jobs_router.get("/{job_id}/artifacts",
                 dependencies=[allow("jobs:Read", "job/{job_id}", owner=job_owner)],
                 summary="Files the job left in its output folder")
def list_artifacts(job_id: str, session: DbSession, caller: Caller) -> list[dict[str, Any]]:
    job_service.get_job(session, job_id, caller)
    return [{"path": a.path, "size": a.size} for a in job_service.artifacts_of(session, job_id)]


def _file_response(reader: Any) -> StreamingResponse:
    """A stored file, streamed in chunks (closed when sent, or when the client goes)."""
    def body() -> Iterator[bytes]:
        with reader:
            while chunk := reader.read(CHUNK):
                yield chunk

    return StreamingResponse(body(), media_type="application/octet-stream")


_BINARY = {"content": {"application/octet-stream": {"schema": {"type": "string",
                                                               "format": "binary"}}}}


@jobs_router.get("/{job_id}/artifacts/{path:path}",
                 dependencies=[allow("jobs:Read", "job/{job_id}", owner=job_owner)],
                 summary="Download one artifact",
                 response_class=StreamingResponse, responses={200: _BINARY})
def get_artifact(job_id: str, path: str, session: DbSession, storage: Storage,
                 caller: Caller) -> StreamingResponse:
    job_service.get_job(session, job_id, caller)
    if session.get(JobArtifact, (job_id, path)) is None:
        raise NotFound(f"job {job_id} has no artifact {path!r} ('cumulo jobs show {job_id}' "
                       "lists them)")
    return _file_response(storage.open(f"jobs/{job_id}/outputs/{path}"))


@jobs_router.put("/{job_id}/outputs/{path:path}",
                 dependencies=[allow("jobs:Write", "job/{job_id}", owner=job_owner)],
                 status_code=201,
                 summary="Send an output file home (from a job on a remote cluster)",
                 openapi_extra=_FILE_BODY)
async def put_output(job_id: str, path: str, request: Request, session: DbSession,
                     storage: Storage, caller: Caller) -> dict[str, Any]:
    job = await run_in_threadpool(job_service.get_job, session, job_id)
    if job.token_id is None or caller.token_id != job.token_id:
        raise Forbidden(f"only job {job_id} itself sends its outputs, while it runs")
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or "" in parts:
        raise Invalid(f"output path {path!r} must be relative, without '..'")
    tmp, size, _ = await spool_body(request, storage.spool_dir())
    try:
        if path == ".cumulo/exit.json":  # the runner's exit record, read when Ray says done
            from cumulo.compute.supervisor import exit_record_key

            # In storage: the control plane that watches the job may not be this one.
            await run_in_threadpool(storage.commit, tmp,
                                    exit_record_key(job_id, job.attempt))
            return {"path": path, "size": size}

        def store() -> None:
            storage.commit(tmp, f"jobs/{job_id}/outputs/{path}")
            session.merge(JobArtifact(job_id=job_id, path=path, size=size))
            session.commit()

        await run_in_threadpool(store)
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": path, "size": size}


# --- checkpoints: what a job on a remote cluster sends, and any job's stored ones ----------------


class CheckpointsIn(BaseModel):
    files: dict[str, int] = Field(description="path -> size: the whole checkpoint folder, "
                                              "its files sent already")


def _job_itself(session: Session, job_id: str, caller: Principal) -> Job:
    job = job_service.get_job(session, job_id)
    if job.token_id is None or caller.token_id != job.token_id:
        raise Forbidden(f"only job {job_id} itself sends its checkpoints, while it runs")
    return job


@jobs_router.get("/{job_id}/checkpoints",
                 dependencies=[allow("jobs:Read", "job/{job_id}", owner=job_owner)],
                 summary="The checkpoint files kept for the next attempt")
def list_checkpoints(job_id: str, session: DbSession, storage: Storage,
                     caller: Caller) -> list[dict[str, Any]]:
    job_service.get_job(session, job_id, caller)
    files = checkpoints.read_manifest(storage, job_id)
    return [{"path": rel, "size": size} for rel, size in sorted(files.items())]


@jobs_router.get("/{job_id}/checkpoints/{path:path}",
                 dependencies=[allow("jobs:Read", "job/{job_id}", owner=job_owner)],
                 summary="Download one checkpoint file",
                 response_class=StreamingResponse, responses={200: _BINARY})
def get_checkpoint(job_id: str, path: str, session: DbSession, storage: Storage,
                   caller: Caller) -> StreamingResponse:
    job_service.get_job(session, job_id, caller)
    if path not in checkpoints.read_manifest(storage, job_id):
        raise NotFound(f"job {job_id} has no checkpoint {path!r}")
    return _file_response(storage.open(checkpoints.file_key(job_id, path)))


@jobs_router.put("/{job_id}/checkpoints/{path:path}",
                 dependencies=[allow("jobs:Write", "job/{job_id}", owner=job_owner)],
                 status_code=201,
                 summary="Send a checkpoint file home (from a job on a remote cluster)",
                 openapi_extra=_FILE_BODY)
async def put_checkpoint(job_id: str, path: str, request: Request, session: DbSession,
                         storage: Storage, caller: Caller) -> dict[str, Any]:
    await run_in_threadpool(_job_itself, session, job_id, caller)
    checkpoints.check_path(path)
    tmp, size, _ = await spool_body(request, storage.spool_dir())
    try:
        await run_in_threadpool(storage.commit, tmp, checkpoints.file_key(job_id, path))
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": path, "size": size}


@jobs_router.post("/{job_id}/checkpoints",
                  dependencies=[allow("jobs:Write", "job/{job_id}", owner=job_owner)],
                  summary="Name the checkpoint folder's files, once "
                                                   "sent (from a job on a remote cluster)")
def commit_checkpoints(job_id: str, body: CheckpointsIn, session: DbSession, storage: Storage,
                       caller: Caller) -> dict[str, int]:
    _job_itself(session, job_id, caller)
    for rel in body.files:
        checkpoints.check_path(rel)
    checkpoints.write_manifest(storage, job_id, body.files)
    return {"files": len(body.files)}


@jobs_router.get("/{job_id}/logs",
                 dependencies=[allow("jobs:Read", "job/{job_id}", owner=job_owner)],
                 summary="A job's output; follow=true streams it live",
                 response_class=StreamingResponse,
                 responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def job_logs(job_id: str, request: Request, session: DbSession, storage: Storage,
                   caller: Caller, attempt: int | None = None, follow: bool = False,
                   offset: Annotated[int, Query(ge=0, le=_MAX_OFFSET)] = 0) -> StreamingResponse:
    job = await run_in_threadpool(job_service.get_job, session, job_id, caller)
    number = attempt or job.attempt
    if not 1 <= number <= job.attempt:
        raise Invalid(f"job {job_id} has attempts 1 to {job.attempt}, not {number}")
    supervisor = _supervisor(request)
    sessions = services(request).sessions
    return StreamingResponse(
        _log_stream(supervisor, sessions, storage, job_id, number, follow, offset),
        media_type="text/plain; charset=utf-8",
        headers={"X-Job-Attempt": str(number)},
    )


def _attempt_over(sessions: Any, job_id: str, attempt: int) -> bool:
    with sessions() as s:
        job = s.get(Job, job_id)
        return job is None or job.state in FINISHED or job.attempt != attempt


async def _log_stream(supervisor: Any, sessions: Any, storage: Backend, job_id: str,
                      attempt: int, follow: bool, offset: int) -> AsyncIterator[bytes]:
    """:func:`_log_chunks`, ended cleanly whatever happens. The answer is chunked and its 200
    already sent: an exception here would cut the connection, and a follower (``jobs run
    --wait``, ``jobs logs -f``) would fail on a job that went well. It ends with a line that
    says what went wrong instead; the server's log has the traceback."""
    last = b"\n"
    try:
        async for chunk in _log_chunks(supervisor, sessions, storage, job_id, attempt, follow,
                                       offset):
            last = chunk[-1:] or last
            yield chunk
    except Exception as exc:
        logging.getLogger("cumulo.compute").exception("streaming the log of job %s failed",
                                                      job_id)
        yield (b"" if last == b"\n" else b"\n") + \
            f"(cumulo: the log stopped here: {type(exc).__name__}: {exc})\n".encode()


async def _log_chunks(supervisor: Any, sessions: Any, storage: Backend, job_id: str,
                      attempt: int, follow: bool, offset: int) -> AsyncIterator[bytes]:
    """The attempt's log from ``offset``. While the job runs: from the live file on the control
    plane that runs it; through any other, from the parts it ships to storage about every
    second (:mod:`cumulo.compute.logparts`), or from Ray for a Ray job. After: the whole log
    from storage. Memory stays at one chunk whatever the log's size, and a follower waiting
    for more holds no worker thread, so many can follow at once."""
    key = logparts.log_key(job_id, attempt)
    path = supervisor.log_file(job_id, attempt)
    sent = offset
    remote: bool | None = None
    parts: logparts.PartReader | None = None
    try:
        while True:
            over = await run_in_threadpool(_attempt_over, sessions, job_id, attempt)
            stored = await run_in_threadpool(_open_stored, storage, key, sent) if over else None
            if stored is not None:
                async with contextlib.aclosing(_drain(stored)) as chunks:
                    async for chunk in chunks:
                        yield chunk
                return
            try:
                live = open(path, "rb")  # noqa: SIM115 - read while it grows, closed there
            except FileNotFoundError:
                live = None
            if live is not None:  # this control plane runs it
                async with contextlib.aclosing(
                        _read_live(live, sent, follow, sessions, job_id, attempt)) as chunks:
                    async for chunk in chunks:
                        yield chunk
                return
            if remote is None:
                remote = await run_in_threadpool(_runs_remotely, supervisor, sessions, job_id)
            if remote:
                for chunk in await run_in_threadpool(_ray_log, supervisor, sessions, job_id,
                                                     attempt, sent):
                    sent += len(chunk)
                    yield chunk
            else:  # a local job of another control plane: what it shipped so far
                parts = parts or logparts.PartReader(storage, job_id, attempt, sent)
                while chunk := await run_in_threadpool(parts.read, CHUNK):
                    sent += len(chunk)
                    yield chunk
            if over or not follow:
                return
            await asyncio.sleep(0.5)
    finally:
        if parts is not None:
            parts.close()


def _open_stored(storage: Backend, key: str, offset: int) -> BinaryIO | None:
    try:
        return storage.open(key, offset=offset)
    except (NotFound, OSError):
        return None


async def _drain(reader: BinaryIO) -> AsyncGenerator[bytes, None]:
    try:
        while chunk := await run_in_threadpool(reader.read, CHUNK):
            yield chunk
    finally:
        reader.close()


async def _read_live(live: BinaryIO, offset: int, follow: bool, sessions: Any, job_id: str,
                     attempt: int) -> AsyncGenerator[bytes, None]:
    """The live log file from ``offset``; followed, until its writer is gone."""
    with live:
        live.seek(offset)
        while True:
            chunk = await run_in_threadpool(live.read, CHUNK)
            if chunk:
                yield chunk
                continue
            if not follow:
                return
            if await run_in_threadpool(_attempt_over, sessions, job_id, attempt):
                # The writer is gone: what is left is all there is.
                while chunk := await run_in_threadpool(live.read, CHUNK):
                    yield chunk
                return
            await asyncio.sleep(0.2)


def _runs_remotely(supervisor: Any, sessions: Any, job_id: str) -> bool:
    with sessions() as s:
        job = s.get(Job, job_id)
        cluster = job.cluster if job is not None else None
    executor = supervisor.executor(cluster) if cluster is not None else None
    return executor is not None and bool(executor.remote)


def _ray_log(supervisor: Any, sessions: Any, job_id: str, attempt: int,
             offset: int) -> list[bytes]:
    """A running Ray job's log as Ray holds it, from ``offset`` (Ray serves it whole)."""
    with sessions() as s:
        job = s.get(Job, job_id)
        if job is None or job.attempt != attempt or not job.backend_ref:
            return []
        executor = supervisor.executor(job.cluster)
        ref = job.backend_ref
    text = executor.logs(ref) if executor is not None else None
    data = (text or "").encode()[offset:]
    return [data] if data else []


@jobs_router.head("/{job_id}", include_in_schema=False,
                  dependencies=[allow("jobs:Read", "job/{job_id}", owner=job_owner)])
def head_job(job_id: str, session: DbSession, caller: Caller) -> Response:
    job_service.get_job(session, job_id, caller)
    return Response()


@jobs_router.delete("/{job_id}",
    dependencies=[allow("jobs:Delete", "job/{job_id}", owner=job_owner)],
    summary="Forget a finished job (its logs and outputs too)")
def delete_job(job_id: str, session: DbSession, storage: Storage,
               caller: Caller) -> dict[str, str]:
    job = job_service.get_job(session, job_id, caller)
    if job.state not in FINISHED:
        raise Conflict(f"job {job_id} is {job.state}; cancel it first")
    storage.delete_prefix(f"jobs/{job_id}/")
    session.delete(job)
    session.commit()
    return {"deleted": job_id}

