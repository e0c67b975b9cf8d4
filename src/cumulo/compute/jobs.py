"""Jobs: submission (with every check made up front), listing, cancelling, metrics, artifacts."""

from __future__ import annotations

import os
import re
import secrets
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cumulo.access import holders, projects
from cumulo.access.users import user_names
from cumulo.compute.clusters import get_cluster
from cumulo.compute.models import ACTIVE, FINISHED, CodeSnapshot, Job, JobArtifact, JobMetric
from cumulo.compute.spec import (
    MAX_DURATION,
    STREAM_PREFIX,
    InputRef,
    parse_env,
    parse_inputs,
)
from cumulo.db import utcnow
from cumulo.errors import Conflict, Forbidden, Invalid, NotFound
from cumulo.principal import Principal, require_each
from cumulo.storage.backends import Backend
from cumulo.units import parse_duration, parse_size

__all__ = ["SUBMISSION_GUARDS", "JobRequest", "Submission", "cancel_job", "default_group",
           "find_job", "get_job", "list_jobs", "record_metrics", "retry_job", "submit_job"]

MAX_RETRIES = 10
STATES = (*ACTIVE, *FINISHED)


@dataclass
class JobRequest:
    """A job as submitted; every field is checked by :func:`submit_job`."""

    cluster: str = "local"
    code: str | None = None  # a snapshot digest
    entry: str | None = None
    command: str | list[str] | None = None
    args: list[str] = field(default_factory=list)
    cpus: float = 1.0
    memory: str | int | None = None
    gpus: int = 0
    env: dict[str, str] | list[str] = field(default_factory=dict)
    inputs: dict[str, str] | list[str] = field(default_factory=dict)
    max_runtime: str | float | None = None
    retries: int = 0
    priority: int = 0
    tags: list[str] = field(default_factory=list)
    name: str | None = None
    project: str | None = None  # the project it belongs to (its quotas count it)
    # Its environment: a requirements file's text, or a named one, or "pyproject" (the code
    # folder's pyproject.toml and uv.lock); an interpreter; nothing of the server's packages.
    requirements: str | None = None
    requirements_file: str | None = None  # the file's name, for errors
    environment: str | None = None
    python: str | None = None
    isolated: bool = False
    image: str | None = None  # a container image: Podman or Docker, where one runs


def _new_id() -> str:
    return "job-" + secrets.token_hex(5)


def _check_entry(session: Session, req: JobRequest) -> tuple[str | None, list[str] | None]:
    if bool(req.entry) == bool(req.command):
        raise Invalid("give an entry point (--entry train.py) or a command (--command "
                      "'python -m pkg.mod'), not both and not neither")
    snapshot = None
    if req.code:
        snapshot = session.get(CodeSnapshot, req.code)
        if snapshot is None:
            raise NotFound(f"code snapshot {req.code[:12]} was not uploaded; the SDK and CLI "
                           "upload it before submitting")
    if req.entry:
        entry = os.path.normpath(req.entry).replace(os.sep, "/")
        if entry.startswith("../") or entry.startswith("/") or entry == "..":
            raise Invalid(f"entry point {req.entry!r} must be a path inside the code folder")
        if snapshot is None:
            raise Invalid("an entry point needs a code folder (--code ./src)")
        if entry not in snapshot.files:
            near = [f for f in snapshot.files if f.endswith(".py")][:5]
            raise Invalid(f"entry point {req.entry!r} is not in the code folder; it holds "
                          f"{', '.join(near) or 'no Python files'}"
                          f"{' ...' if len(snapshot.files) > 5 else ''}")
        return entry, None
    command = req.command if isinstance(req.command, list) else shlex.split(req.command or "")
    if not command:
        raise Invalid("--command is empty")
    return None, command


def _resolve_inputs(session: Session, storage: Backend, principal: Principal,
                    refs: list[InputRef], local: bool, job_name: str) -> dict[str, Any]:
    """Pin each input now: a table to its current (or named) version, files to their prefix,
    a stream to the consumer group the job reads it in. The submitter must be able to read
    each (the job reads as them). A table with masks or row filters for them is read through
    the lake's API, which applies them, never from its files."""
    from cumulo.lake.access import restricted
    from cumulo.lake.catalog import get_table, table_info
    from cumulo.lake.refs import parse_ref
    from cumulo.storage.service import blob_key, list_objects

    resolved: dict[str, Any] = {}
    for ref in refs:
        if ref.kind == "stream":
            resolved[ref.name] = _stream_input(session, principal, ref, job_name)
            continue
        if ref.kind == "table":
            try:
                table_ref = parse_ref(ref.ref)
                info = table_info(session, storage, table_ref)
            except (NotFound, Invalid) as exc:
                raise type(exc)(f"input {ref.name!r}: {exc.message}") from exc
            spec: dict[str, Any] = {"kind": "table", "table": f"{table_ref.database}."
                                    f"{table_ref.table}", "version": info.version}
            row = get_table(session, table_ref)
            principal.require("tables:Read", f"table/{table_ref.database}/{table_ref.table}")
            if (local and info.version is not None
                    and not restricted(session, principal.user_id, row.id)):
                path = storage.local_path(row.location)
                if path is not None:
                    spec["uri"] = str(path)
            resolved[ref.name] = spec
            continue
        bucket, _, prefix = ref.ref.partition("/")
        principal.require("files:List", f"bucket/{bucket}")
        principal.require("files:Get", f"bucket/{bucket}/{prefix}")
        try:
            page = list_objects(session, bucket, prefix=prefix, limit=1)
        except NotFound as exc:
            raise NotFound(f"input {ref.name!r}: {exc.message}") from exc
        if not page.objects:
            raise NotFound(f"input {ref.name!r}: nothing is stored under {ref.ref!r} "
                           "('cumulo files ls' shows what is)")
        # The job reads every object under the prefix: each is decided (a deny on some of
        # them, bucket/raw/secret/*, holds although the prefix raw/ is allowed).
        require_each(principal, "files:Get",
                     (f"bucket/{bucket}/{key}" for key in _keys_under(session, bucket, prefix)))
        spec = {"kind": "files", "bucket": bucket, "prefix": prefix}
        if local and (not prefix or prefix.endswith("/") or _exists(session, bucket, prefix)):
            # A folder, or one object: the job reads the stored files in place.
            path = storage.local_path(blob_key(bucket, prefix).rstrip("/"))
            if path is not None:
                spec["path"] = str(path)
        resolved[ref.name] = spec
    return resolved


_STREAM_OPTIONS = ("group", "from")
_STREAM_STARTS = ("TRIM_HORIZON", "LATEST")


def default_group(job_name: str) -> str:
    """The consumer group a job reads a stream input in unless it names one: one per job
    name, so a retried attempt, and the next job of that name, go on from its checkpoints."""
    return "job-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", job_name).strip("-") or "job")[:120]


def _stream_input(session: Session, principal: Principal, ref: InputRef,
                  job_name: str) -> dict[str, Any]:
    """``stream:NAME[?group=G&from=LATEST]``: the stream must exist and the submitter read
    it; the job reads it as a member of consumer group G (``cumulo.job.stream``)."""
    from urllib.parse import parse_qsl

    from cumulo.streams import groups
    from cumulo.streams.service import get_stream

    name, _, query = ref.ref.removeprefix(STREAM_PREFIX).partition("?")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=True)) \
            if query else {}
    except ValueError:
        raise Invalid(f"input {ref.name!r}: {ref.ref!r}: a stream's options are KEY=VALUE "
                      "joined by '&' (stream:clicks?group=etl&from=LATEST)",
                      details={"input": ref.name}) from None
    unknown = sorted(set(options) - set(_STREAM_OPTIONS))
    if unknown:
        raise Invalid(f"input {ref.name!r}: {ref.ref!r} has option(s) {', '.join(unknown)}; "
                      "a stream input takes group= and from= (stream:clicks?group=etl&"
                      "from=LATEST)", details={"input": ref.name})
    if not name:
        raise Invalid(f"input {ref.name!r}: name the stream, as in stream:clicks",
                      details={"input": ref.name})
    start = options.get("from", "TRIM_HORIZON").upper()
    if start not in _STREAM_STARTS:
        raise Invalid(f"input {ref.name!r}: from={options['from']!r}: a group starts at "
                      f"{' or '.join(_STREAM_STARTS)}", details={"input": ref.name})
    group = options.get("group") or default_group(job_name)
    try:
        groups.check_group_name(group)
        get_stream(session, name)
    except (NotFound, Invalid) as exc:
        raise type(exc)(f"input {ref.name!r}: {exc.message}", details={"input": ref.name}) \
            from exc
    principal.require("streams:Read", f"stream/{name}")
    return {"kind": "stream", "stream": name, "group": group, "start": start}


def _keys_under(session: Session, bucket: str, prefix: str) -> Iterator[str]:
    """Every key stored under ``prefix`` in ``bucket``, streamed from the database."""
    from cumulo.storage.models import Bucket, StoredObject

    query = (select(StoredObject.key).join(Bucket, Bucket.id == StoredObject.bucket_id)
             .where(Bucket.name == bucket))
    if prefix:
        query = query.where(StoredObject.key.startswith(prefix, autoescape=True))
    yield from session.scalars(query.execution_options(yield_per=10_000))


def _exists(session: Session, bucket: str, key: str) -> bool:
    from cumulo.storage.service import get_object

    try:
        get_object(session, bucket, key)
        return True
    except NotFound:
        return False


@dataclass(frozen=True)
class Submission:
    """Whose a job about to be queued is, for :data:`SUBMISSION_GUARDS`."""

    user: str
    project: str | None
    tags: tuple[str, ...]
    cluster: str


# Checks every job passes before it is queued, each raising to refuse it: added by the
# composer (server/app.py) for services that may stop new work (a budget's stop-new-jobs,
# cumulo.metering.watch.refuse_stopped_jobs), so compute needs to know nothing of them.
SUBMISSION_GUARDS: list[Callable[[Session, Submission], None]] = []


def submit_job(session: Session, storage: Backend, principal: Principal,
               req: JobRequest) -> Job:
    """Check everything a job needs, then queue it; nothing is written if a check fails."""
    project_id = projects.project_id_for(session, req.project)
    cluster = get_cluster(session, req.cluster)
    entry, command = _check_entry(session, req)
    if not req.cpus > 0:
        raise Invalid(f"--cpus must be more than zero, not {req.cpus}")
    if req.gpus < 0:
        raise Invalid(f"--gpus must not be negative, not {req.gpus}")
    memory = parse_size(req.memory, what="--memory") if req.memory is not None else None
    asks = [("CPUs", req.cpus, cluster.max_cpus), ("GPUs", req.gpus, cluster.max_gpus)]
    if memory is not None:
        asks.append(("bytes of memory", memory, cluster.max_memory))
    for what, want, most in asks:
        if want > most:
            raise Invalid(
                f"the job asks for {want:g} {what}, but cluster {cluster.name!r} can give at "
                f"most {most:g}; ask for less, or use a bigger cluster ('cumulo clusters ls')")
    if not 0 <= req.retries <= MAX_RETRIES:
        raise Invalid(f"--retries must be between 0 and {MAX_RETRIES}")
    if not -1000 <= req.priority <= 1000:
        raise Invalid("--priority must be between -1000 and 1000")
    for tag in req.tags:
        if not tag or len(tag) > 128 or any(c.isspace() for c in tag):
            raise Invalid(f"tag {tag!r} must be 1-128 characters without spaces")
    for guard in SUBMISSION_GUARDS:
        guard(session, Submission(principal.user_name, req.project, tuple(req.tags),
                                  cluster.name))
    env = parse_env(req.env)
    max_runtime = (parse_duration(req.max_runtime, what="--max-runtime", maximum=MAX_DURATION)
                   if req.max_runtime is not None else None)
    name = req.name or (entry or os.path.basename((command or ["job"])[0]))
    inputs = _resolve_inputs(session, storage, principal, parse_inputs(req.inputs),
                             local=cluster.type == "local", job_name=name)
    _enforce_quotas(session, project_id, name, float(req.cpus), int(req.gpus), memory)
    digest, label = environment_for(session, storage, principal, req, project_id,
                                    cluster_type=cluster.type)
    job = Job(
        id=_new_id(), name=name[:128], cluster=cluster.name, state="queued",
        priority=req.priority, tags=list(dict.fromkeys(req.tags)), code_digest=req.code,
        entry=entry, command=command, args=[str(a) for a in req.args], env=env, inputs=inputs,
        cpus=float(req.cpus), memory=memory, gpus=int(req.gpus), max_runtime_s=max_runtime,
        retries=req.retries, attempt=1, attempts=[], gpu_ids=[],
        created_by=principal.user_id, created_at=utcnow(), project_id=project_id,
        environment=digest, environment_label=label, image=req.image,
    )
    session.add(job)
    session.commit()
    return job


def environment_for(session: Session, storage: Backend, principal: Principal,
                    req: JobRequest, project_id: int | None, *,
                    cluster_type: str = "local") -> tuple[str | None, str | None]:
    """The environment a job asks for, resolved now (a requirement that cannot be met is
    refused before anything is queued): its digest and how it was asked, or (None, None) for
    the server's own."""
    from cumulo.compute.environments import containers, service, spec

    asked = [what for what, given in (("--requirements", req.requirements),
                                      ("--env", req.environment)) if given]
    if req.image:
        if asked or req.python or req.isolated:
            raise Invalid("--image brings its own Python and packages; give it alone, not "
                          "with --requirements, --env NAME, --python or --isolated (install "
                          "the packages into the image)")
        containers.refuse_or_engine(req.image, cluster_type=cluster_type)
        return None, f"image {req.image}"
    if len(asked) > 1:
        raise Invalid("give --requirements FILE or --env NAME|pyproject, not both")
    if not asked:
        if req.python or req.isolated:
            raise Invalid("--python and --isolated need --requirements FILE or --env "
                          "NAME|pyproject: they say how to build an environment")
        return None, None
    if cluster_type != "local" and (req.isolated or req.python):
        raise Invalid(f"a {cluster_type} cluster builds a job's environment over its own "
                      "interpreter (Ray's runtime_env): --isolated and --python cannot be "
                      "honoured there; leave them out, or run on a local cluster")
    if req.environment and req.environment not in ("pyproject",):
        if req.python or req.isolated:
            raise Invalid(f"environment {req.environment!r} was built with its own Python; "
                          "--python and --isolated go with --requirements or --env pyproject")
        require_each(principal, "envs:Read", [f"env/{req.environment}"])
        env = service.get_by_name(session, req.environment)
        if cluster_type != "local" and env.isolated:
            raise Invalid(f"environment {req.environment!r} is isolated; a {cluster_type} "
                          "cluster builds environments over its own interpreter and cannot "
                          "run it; use one made without --isolated")
        return env.digest, req.environment
    locked = None
    if req.environment == "pyproject":
        files = _project_files(session, storage, req.code)
        parsed, locked = spec.from_pyproject(files, python=req.python, isolated=req.isolated)
        label = "pyproject (uv.lock)" if locked else "pyproject"
    else:
        source = os.path.basename(req.requirements_file or "requirements.txt")
        parsed = spec.parse_requirements(req.requirements or "", source=source,
                                         python=req.python, isolated=req.isolated)
        label = source
    env = service.request(session, parsed, principal=principal, project_id=project_id,
                          locked=locked)
    return env.digest, label


def _project_files(session: Session, storage: Backend, code: str | None) -> dict[str, str]:
    """The code folder's pyproject.toml and uv.lock, read from its snapshot."""
    import tarfile

    from cumulo.compute.supervisor import snapshot_key

    if not code:
        raise Invalid("--env pyproject needs --code: the folder whose pyproject.toml (and "
                      "uv.lock) say what to install")
    snap = session.get(CodeSnapshot, code)
    wanted = [f for f in ("pyproject.toml", "uv.lock") if snap is not None and f in snap.files]
    found: dict[str, str] = {}
    if wanted:
        with storage.open(snapshot_key(code)) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name in wanted and member.isfile():
                    data = tar.extractfile(member)
                    if data is not None:
                        found[name] = data.read(4 << 20).decode(errors="replace")
    return found


def _enforce_quotas(session: Session, project_id: int | None, name: str, cpus: float,
                    gpus: int, memory: int | None) -> None:
    """Refuse, before it is queued, a job that would take its project past a quota (as
    SageMaker's ResourceLimitExceeded): a queued job counts, so a quota caps what a project can
    ask for at once, not only what runs."""
    asks = f"{cpus:g} CPU" + (f", {gpus} GPU" if gpus else "") + \
        (f", {projects.gigabytes(memory):g} GB" if memory else "")
    projects.enforce(session, project_id, {"cpus": cpus, "gpus": float(gpus),
                                           "memory_gb": projects.gigabytes(memory or 0)},
                     what=f"job {name} ({asks})")


def get_job(session: Session, job_id: str, principal: Principal | None = None) -> Job:
    """A job by id; with ``principal``, only one it may see (its own, or any for an admin)."""
    job = session.get(Job, job_id)
    if job is None or (principal is not None and not _may_read(session, principal, job)):
        raise NotFound(f"no job {job_id!r}; 'cumulo jobs ls' lists jobs", details={"job": job_id})
    return job


def _may_read(session: Session, principal: Principal, job: Job) -> bool:
    if job.created_by == principal.user_id:
        return True
    owner = user_names(session, {job.created_by}).get(job.created_by, "")
    return principal.can("jobs:Read", f"job/{job.id}", owner=owner)


def find_job(session: Session, job_id: str) -> Job | None:
    """A job by id, or None (for services following the jobs they submitted)."""
    return session.get(Job, job_id)


def list_jobs(session: Session, principal: Principal, *, state: str | None = None,
              cluster: str | None = None, tag: str | None = None,
              project: str | None = None, limit: int = 100) -> list[Job]:
    """Jobs, newest first: the caller's own, or everyone's for an admin (of one project with
    ``project``, where rights bound in it count)."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc())
    if project:
        query = query.where(Job.project_id == projects.project_id_for(session, project))
    if not principal.can("jobs:Read", "job/*", owner="", project=project):  # one's own only
        query = query.where(Job.created_by == principal.user_id)
    if state:
        states = state.split(",")
        bad = [s for s in states if s not in STATES and s != "active"]
        if bad:
            raise Invalid(f"unknown state {bad[0]!r}; states are {', '.join(STATES)} (or active)")
        wanted = [s for s in STATES if s in states or (s in ACTIVE and "active" in states)]
        query = query.where(Job.state.in_(wanted))
    if cluster:
        query = query.where(Job.cluster == cluster)
    rows = list(session.scalars(query.limit(limit if not tag else 100_000)))
    if tag:  # tags are a JSON list; filtered here the same way on SQLite and PostgreSQL
        rows = [j for j in rows if tag in j.tags][:limit]
    return rows


def cancel_job(session: Session, principal: Principal, job_id: str) -> Job:
    job = get_job(session, job_id, principal)
    if job.state in FINISHED:
        raise Conflict(f"job {job_id} already {job.state.replace('_', ' ')}")
    now = utcnow()
    # Conditional on the state, so a job the supervisor claims meanwhile is not marked
    # cancelled while it runs: then the request below stops it instead.
    session.execute(update(Job).where(Job.id == job_id, Job.state == "queued").values(
        state="cancelled", finished_at=now, reason="cancelled while queued"))
    session.execute(update(Job).where(Job.id == job_id, Job.cancel_requested_at.is_(None))
                    .values(cancel_requested_at=now))
    session.commit()
    session.refresh(job)
    return job


def retry_job(session: Session, principal: Principal, job_id: str) -> Job:
    """Queue a job that failed, was cancelled or timed out again, as its next attempt: the same
    id, spec and inputs, and the checkpoints its last attempt left."""
    job = get_job(session, job_id, principal)
    if job.state in ACTIVE:
        raise Conflict(f"job {job_id} is {job.state}; only a job that has ended can be retried "
                       f"(cancel it first: 'cumulo jobs cancel {job_id}')")
    if job.state == "succeeded":
        raise Conflict(f"job {job_id} succeeded; there is nothing to retry (submit it again to "
                       "run it anew)")
    try:
        get_cluster(session, job.cluster)
    except NotFound as exc:  # said now, not as a failure once queued
        raise Conflict(f"job {job_id} ran on cluster {job.cluster!r}, which was removed; submit "
                       "it again on another cluster") from exc
    # Queued again, it counts toward its project's quotas again.
    _enforce_quotas(session, job.project_id, job.name, job.cpus, job.gpus, job.memory)
    # Conditional on the attempt it ended with, so two retries at once make one attempt.
    retried = session.execute(  # type: ignore[attr-defined]
        update(Job).where(Job.id == job_id, Job.state == job.state, Job.attempt == job.attempt)
        .values(state="queued", attempt=job.attempt + 1, finished_at=None, starting_at=None,
                running_at=None, cancel_requested_at=None, pid=None, pid_started=None,
                backend_ref=None, gpu_ids=[])
    ).rowcount
    session.commit()
    if not retried:
        raise Conflict(f"job {job_id} was retried meanwhile")
    session.refresh(job)
    return job


def record_metrics(session: Session, principal: Principal, job_id: str,
                   metrics: list[dict[str, Any]]) -> int:
    job = get_job(session, job_id)
    if not principal.is_admin and principal.token_id != job.token_id \
            and principal.user_id != job.created_by:
        raise Forbidden(f"only job {job_id} itself or its owner may log its metrics")
    for m in metrics:
        key = str(m.get("key", ""))
        if not key or len(key) > 250:
            raise Invalid(f"metric name {key!r} must be 1-250 characters")
        session.add(JobMetric(
            job_id=job_id, key=key, value=float(m["value"]), step=int(m.get("step") or 0),
            timestamp=datetime.fromtimestamp(float(m["timestamp"]), tz=utcnow().tzinfo)
            if m.get("timestamp") else utcnow(),
        ))
    session.commit()
    return len(metrics)


def metrics_of(session: Session, job_id: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    query = select(JobMetric).where(JobMetric.job_id == job_id).order_by(JobMetric.key,
                                                                          JobMetric.step,
                                                                          JobMetric.id)
    for m in session.scalars(query):
        out.setdefault(m.key, []).append({"value": m.value, "step": m.step,
                                          "timestamp": m.timestamp})
    return out


def artifacts_of(session: Session, job_id: str) -> list[JobArtifact]:
    return list(session.scalars(select(JobArtifact).where(JobArtifact.job_id == job_id)
                                .order_by(JobArtifact.path)))


def count_active(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Job)
                          .where(Job.state.in_(ACTIVE))) or 0


def _active_sum(column: Any) -> projects.Meter:
    """A quota meter: ``column`` summed over the project's queued, starting and running jobs.
    A job that named no memory counts none toward ``memory_gb`` (it reserved none)."""
    def meter(session: Session, project_id: int) -> float:
        return float(session.scalar(select(func.coalesce(func.sum(column), 0)).where(
            Job.project_id == project_id, Job.state.in_(ACTIVE))) or 0)
    return meter


_memory_bytes = _active_sum(Job.memory)


def _memory_gb(session: Session, project_id: int) -> float:
    return projects.gigabytes(_memory_bytes(session, project_id))


def _job_project(session: Session, rest: str) -> str | None:
    job_id = rest.split("/", 1)[0]
    project_id = session.scalar(select(Job.project_id).where(Job.id == job_id))
    return projects.name_of(session, project_id)


holders.register("job", _job_project)
projects.register_meter("cpus", _active_sum(Job.cpus))
projects.register_meter("gpus", _active_sum(Job.gpus))
projects.register_meter("memory_gb", _memory_gb)
