"""Environments as the rest of Cumulo uses them: asked for (resolved once per request), named,
listed, removed and pruned; and built on this machine by :class:`Builder`, one build at a time
per environment, in the background, metered.

An environment's row (its pins) is shared state; its folder under ``<home>/envs`` is this
machine's cache of it, rebuilt from the pins where it is missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from cumulo.access import holders, projects
from cumulo.compute.environments import build as builds
from cumulo.compute.environments.spec import EnvSpec
from cumulo.compute.models import ACTIVE, Environment, EnvironmentName, EnvironmentRequest, Job
from cumulo.db import utcnow
from cumulo.errors import Conflict, Invalid, NotFound
from cumulo.metering import usage
from cumulo.principal import Principal
from cumulo.storage.backends import Backend

__all__ = ["Builder", "EnvUse", "delete_name", "env_in_use", "find", "get_by_name",
           "list_environments", "log_key", "name_environment", "prune", "request"]

log = logging.getLogger("cumulo.compute")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
RESERVED = ("pyproject", "server", "model")  # what --env means besides a name


def log_key(digest: str) -> str:
    """Where an environment's last build log is kept in storage."""
    return f"envs/{digest}/build.log"


@functools.cache
def _base_fingerprint() -> str:
    from importlib import metadata

    body = dict(sorted(builds.base_packages().items()))
    with contextlib.suppress(metadata.PackageNotFoundError):
        body["cumulo"] = metadata.version("cumulo")
    body["python"] = sys.version.split()[0]
    return hashlib.sha256(json.dumps(body).encode()).hexdigest()


def request(session: Session, spec: EnvSpec, *, principal: Principal | None,
            project_id: int | None = None,
            locked: dict[str, str] | None = None) -> Environment:
    """The environment ``spec`` resolves to: found by the request's digest (a lookup), or
    resolved now (uv; raises with the failing line named) and recorded, not yet built."""
    key = hashlib.sha256(f"{spec.key()}:{_base_fingerprint()}".encode()).hexdigest()
    known = session.get(EnvironmentRequest, key)
    if known is not None:
        env = session.get(Environment, known.digest)
        if env is not None:
            return env
    python = builds.find_python(spec.python)
    lock = builds.resolve(spec, python, locked=locked)
    digest = builds.digest_of(lock, python, isolated=spec.isolated)
    env = session.get(Environment, digest)
    if env is None:
        env = Environment(
            digest=digest, python=python.version, interpreter=spec.python,
            isolated=spec.isolated, source=spec.source, requirements=spec.text, lock=lock,
            packages=len(builds.lock_entries(lock)), state="resolved",
            created_by=principal.user_id if principal else None, created_at=utcnow(),
            project_id=project_id)
        session.add(env)
        session.flush()
    if session.get(EnvironmentRequest, key) is None:
        session.add(EnvironmentRequest(key=key, digest=digest, created_at=utcnow()))
    session.commit()
    return env


def check_name(name: str) -> str:
    if not _NAME.match(name) or name in RESERVED:
        raise Invalid(f"environment name {name!r} must be 1-64 lowercase letters, digits, '_', "
                      "'.' or '-', starting with a letter or digit, and not "
                      f"{', '.join(RESERVED)}")
    return name


def get_by_name(session: Session, name: str) -> Environment:
    row = session.get(EnvironmentName, name)
    env = session.get(Environment, row.digest) if row is not None else None
    if env is None:
        raise NotFound(f"no environment {name!r}; 'cumulo envs ls' lists them, 'cumulo envs "
                       f"create {name} -r requirements.txt' makes it",
                       details={"environment": name})
    return env


def find(session: Session, ref: str) -> Environment:
    """An environment by name, or by its digest (or a prefix of at least 8 characters)."""
    row = session.get(EnvironmentName, ref)
    if row is not None:
        return get_by_name(session, ref)
    if re.fullmatch(r"[0-9a-f]{8,64}", ref):
        found = list(session.scalars(select(Environment).where(
            Environment.digest.startswith(ref)).limit(2)))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise Invalid(f"{ref!r} is the start of more than one environment's digest; give "
                          "more of it")
    raise NotFound(f"no environment {ref!r}; 'cumulo envs ls' lists them",
                   details={"environment": ref})


def names_of(session: Session, digests: list[str]) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for row in session.scalars(select(EnvironmentName).where(
            EnvironmentName.digest.in_(digests)).order_by(EnvironmentName.name)):
        names.setdefault(row.digest, []).append(row.name)
    return names


def name_environment(session: Session, name: str, env: Environment, *,
                     principal: Principal | None, project_id: int | None) -> EnvironmentName:
    """Give ``env`` the name (or move the name to it, when ``name`` exists)."""
    check_name(name)
    row = session.get(EnvironmentName, name)
    if row is None:
        row = EnvironmentName(name=name, digest=env.digest, created_at=utcnow(),
                              created_by=principal.user_id if principal else None,
                              project_id=project_id)
        session.add(row)
    else:
        row.digest = env.digest
    session.commit()
    return row


@dataclass
class EnvUse:
    jobs: int  # queued or running
    endpoints: list[str]


def env_in_use(session: Session, digest: str) -> EnvUse:
    jobs = session.scalar(select(func.count()).select_from(Job).where(
        Job.environment == digest, Job.state.in_(ACTIVE))) or 0
    endpoints: list[str] = []
    with contextlib.suppress(Exception):  # serving records the environments its variants use
        from cumulo.serving.models import Endpoint

        for endpoint in session.scalars(select(Endpoint)):
            if any(v.get("environment") == digest for v in endpoint.variants or []):
                endpoints.append(endpoint.name)
    return EnvUse(int(jobs), endpoints)


def delete_name(session: Session, name: str) -> None:
    """Remove a named environment; refused while a queued or running job, or an endpoint,
    uses it. Its build stays until pruned when other names or requests share it."""
    env = get_by_name(session, name)
    use = env_in_use(session, env.digest)
    if use.jobs or use.endpoints:
        users = ([f"{use.jobs} queued or running job(s)"] if use.jobs else []) + \
            ([f"endpoint(s) {', '.join(use.endpoints)}"] if use.endpoints else [])
        raise Conflict(f"environment {name!r} is in use by {' and '.join(users)}; wait for "
                       "them to end (or cancel them, or move the endpoints) and try again",
                       details={"environment": name, "jobs": use.jobs,
                                "endpoints": use.endpoints})
    session.execute(delete(EnvironmentName).where(EnvironmentName.name == name))
    session.commit()


def list_environments(session: Session, *, project: str | None = None) -> list[Environment]:
    query = select(Environment).order_by(Environment.created_at.desc())
    if project:
        query = query.where(Environment.project_id == projects.project_id_for(session, project))
    return list(session.scalars(query))


def jobs_using(session: Session, digests: list[str]) -> dict[str, int]:
    rows = session.execute(select(Job.environment, func.count()).where(
        Job.environment.in_(digests)).group_by(Job.environment))
    return {digest: int(n) for digest, n in rows if digest is not None}


def prune(session: Session, builder: Builder, *, unused_for: float,
          dry_run: bool = False) -> list[dict[str, object]]:
    """Environments not used for ``unused_for`` seconds and not in use now: their folders on
    this machine are removed, and those without a name are forgotten (a named one keeps its
    pins, and is built again on its next use). What was (or, ``dry_run``, would be) pruned."""
    cutoff = utcnow() - timedelta(seconds=unused_for)
    pruned: list[dict[str, object]] = []
    names = names_of(session, [e.digest for e in list_environments(session)])
    for env in list_environments(session):
        last = env.last_used_at or env.built_at or env.created_at
        if last is not None and last.replace(tzinfo=last.tzinfo or UTC) > cutoff:
            continue
        use = env_in_use(session, env.digest)
        if use.jobs or use.endpoints or builder.building(env.digest):
            continue
        pruned.append({"digest": env.digest, "names": names.get(env.digest, []),
                       "size": env.size, "last_used_at": last,
                       "forgotten": env.digest not in names})
        if dry_run:
            continue
        builder.remove(env.digest)
        if env.digest not in names:
            session.delete(env)
        else:
            env.state, env.size = "resolved", None
    if not dry_run:
        session.commit()
    return pruned


# --- building on this machine ------------------------------------------------------------------


class Builder:
    """Builds environments on this machine, one at a time (a build is CPU- and disk-heavy),
    in the background; at most one build of an environment at a time across the control
    planes that share this home (a lock file)."""

    def __init__(self, home: Path, sessions: sessionmaker[Session], storage: Backend,
                 prices: object) -> None:
        self.root = home / "envs"
        self.sessions = sessions
        self.storage = storage
        self.prices = prices
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cumulo-envs")
        self._building: dict[str, Future[str]] = {}  # each environment's last build here
        self._asked: dict[str, float] = {}  # when it was asked for (time.time())
        self._lock = threading.Lock()
        self.listeners: list[Callable[[str, str], None]] = []  # (digest, state) when one ends
        self._once: dict[str, list[Callable[[str, str], None]]] = {}  # for one build only
        self.root.mkdir(parents=True, exist_ok=True)
        builds.clean_partial(self.root)

    def path(self, digest: str) -> Path:
        return self.root / digest

    def ready(self, digest: str) -> bool:
        return (self.path(digest) / builds.MARKER).is_file()

    def python(self, digest: str) -> str:
        return str(self.path(digest) / "bin" / "python")

    def building(self, digest: str) -> bool:
        with self._lock:
            future = self._building.get(digest)
            return future is not None and not future.done()

    def ensure(self, digest: str, *, since: float | None = None) -> Future[str]:
        """Start building ``digest`` here unless it is built or being built; the future's
        result is ``ready`` or ``failed``. A build that failed is tried again, unless it was
        asked for at or after ``since`` (a Unix time): then its failure is the answer. A
        job passes the time it was submitted, so that it fails with the build it waited for
        rather than start another, and another (a new job, or ``envs create``, tries again)."""
        with self._lock:
            future = self._building.get(digest)
            if future is not None and not future.done():
                return future
            if self.ready(digest):
                done: Future[str] = Future()
                done.set_result("ready")
                return done
            if (future is not None and since is not None and future.result() == "failed"
                    and self._asked.get(digest, 0.0) >= since):
                return future
            future = self._pool.submit(self._build, digest)
            self._building[digest] = future
            self._asked[digest] = time.time()
            return future

    def on_ready(self, digest: str, call: Callable[[str, str], None]) -> None:
        """Call ``call(digest, state)`` once ``digest``'s next build ends."""
        with self._lock:
            self._once.setdefault(digest, []).append(call)

    def remove(self, digest: str) -> None:
        if self.building(digest):
            return
        path = self.path(digest)
        if path.exists():
            moved = self.root / f".tmp-rm-{digest[:16]}-0"
            with contextlib.suppress(OSError):
                path.rename(moved)
                path = moved
            shutil.rmtree(path, ignore_errors=True)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _build(self, digest: str) -> str:
        lock_path = self.root / f".lock-{digest[:32]}"
        with open(lock_path, "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # another control plane on this home may build it
            if self.ready(digest):
                return "ready"
            builds.clean_partial(self.root, building={digest})
            with self.sessions() as session:
                env = session.get(Environment, digest)
                if env is None:
                    return "failed"
                lock, isolated, wanted = env.lock, env.isolated, env.interpreter
                env.state, env.error = "building", None
                session.commit()
            started = datetime.now(UTC)
            state, error, built = "ready", None, None
            log_file = self.root / "logs" / f"{digest}.log"
            try:
                python = builds.find_python(wanted)
                built = builds.build(lock, python, self.path(digest), isolated=isolated,
                                     log_path=log_file, digest=digest)
            except builds.BuildFailed as exc:
                state, error = "failed", exc.message
            except Exception as exc:
                log.exception("building environment %s failed", digest[:12])
                state, error = "failed", f"building the environment failed: {exc}"
            self._keep_log(digest, log_file)
            with self.sessions() as session:
                env = session.get(Environment, digest)
                if env is not None:
                    env.state, env.error = state, error
                    if built is not None:
                        env.size, env.installed = built.size, built.installed
                        env.build_seconds, env.built_at = round(built.seconds, 3), utcnow()
                        usage.record(
                            session, self.prices, kind="environment",  # type: ignore[arg-type]
                            ref=digest[:12], cluster="local", user_id=env.created_by, tags=[],
                            started_at=started, ended_at=datetime.now(UTC),
                            cpu_seconds=built.cpu_seconds, memory_gb_seconds=0.0,
                            gpu_seconds=0.0, wall_seconds=built.seconds,
                            project=projects.name_of(session, env.project_id))
                    session.commit()
        if state == "ready":
            log.info("environment %s built in %.1fs", digest[:12],
                     built.seconds if built else 0.0)
        else:
            log.warning("environment %s failed to build: %s", digest[:12], error)
        with self._lock:
            once = self._once.pop(digest, [])
        for listener in [*once, *self.listeners]:
            try:
                listener(digest, state)
            except Exception:
                log.exception("after building environment %s", digest[:12])
        return state

    def _keep_log(self, digest: str, log_file: Path) -> None:
        """A copy in storage, for other control planes (and after this folder is pruned)."""
        import tempfile

        with contextlib.suppress(OSError):
            with tempfile.NamedTemporaryFile(dir=self.storage.spool_dir(), delete=False) as tmp:
                tmp.write(log_file.read_bytes())
            self.storage.commit(Path(tmp.name), log_key(digest))

    def build_log(self, digest: str) -> str | None:
        """The last build's log: this machine's copy, else the one kept in storage."""
        log_file = self.root / "logs" / f"{digest}.log"
        with contextlib.suppress(OSError):
            return log_file.read_text(errors="replace")
        with contextlib.suppress(Exception), self.storage.open(log_key(digest)) as f:
            return f.read().decode(errors="replace")
        return None


def touch(session: Session, digest: str) -> None:
    """Mark the environment used now (for ``envs ls`` and ``prune``)."""
    env = session.get(Environment, digest)
    if env is not None:
        env.last_used_at = utcnow()


def wait_ready(builder: Builder, digest: str, timeout: float) -> str:
    """Build ``digest`` here if needed and wait up to ``timeout`` seconds: its state."""
    future = builder.ensure(digest)
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    return future.result() if future.done() else "building"


def _env_project(session: Session, rest: str) -> str | None:
    row = session.get(EnvironmentName, rest)
    if row is None:
        return None
    return projects.name_of(session, row.project_id)


holders.register("env", _env_project)
