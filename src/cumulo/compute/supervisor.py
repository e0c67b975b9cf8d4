"""The job supervisor: a thread of the control plane that starts, watches and ends jobs.

Every decision is read from and written to the database, so a restart loses nothing, and
several control planes can share one database (:mod:`cumulo.leases`). Each job attempt is owned
by the control plane that started it. When an owner's lease runs out (it was killed, its machine
is gone), another control plane takes its jobs over within the lease's time: a job on a Ray
cluster is adopted (by its submission id); a local job is adopted by a control plane of the same
machine (by pid and start time, finishing those that ended meanwhile from the exit record the
runner left; from another home, its folder is linked here); a local job of another machine is
failed (and retried, by its ``--retries``): that machine is taken for gone. Jobs that never got
going go back in the queue.

Dispatch is by priority, then age, one cluster at a time; a job that does not fit yet holds back
the jobs behind it on its cluster, so a big job is never starved by a stream of small ones. What
a cluster holds is read under a lock of its row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: a
control plane that finds it locked dispatches elsewhere) and the claim moves the cluster's
dispatch epoch on where it still holds the value read, so two control planes never both fill
the same free capacity. A local cluster is each machine's own: what it holds counts the jobs of
the control planes on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from cumulo.access import projects
from cumulo.access.keys import job_key
from cumulo.access.tokens import issue_token, revoke_token_id
from cumulo.compute import checkpoints, logparts, snapshot
from cumulo.compute.clusters import ensure_local_cluster, list_clusters
from cumulo.compute.environments import service as environments
from cumulo.compute.executors import Attempt, Executor, Launch, ProcessExit, new_executor
from cumulo.compute.metrics import observe_end
from cumulo.compute.models import Cluster, Environment, Job, JobArtifact
from cumulo.config import Settings
from cumulo.db import utcnow
from cumulo.errors import CumuloError
from cumulo.jobenv import JobEnv
from cumulo.leases import ControlPlane, Membership, live_planes
from cumulo.metering import usage
from cumulo.storage.backends import Backend

__all__ = ["Supervisor", "exit_record_key", "snapshot_key"]

log = logging.getLogger("cumulo.compute")
LOG_TAIL_LINES = 30
LOG_TAIL_BYTES = 8192
TAKE_OVER_EVERY = 1.0  # seconds between looks for jobs whose control plane is gone


def snapshot_key(digest: str) -> str:
    return f"jobs/snapshots/{digest}.tar.gz"


def exit_record_key(job_id: str, attempt: int) -> str:
    """Where a remote job's runner leaves its exit record (through any control plane)."""
    return f"jobs/{job_id}/exits/attempt-{attempt}.json"


ACTIVE_STATES = ("starting", "running")


@dataclass
class _Live:
    """What the supervisor knows of a running job beyond its row."""

    outcome: str | None = None  # set when we stop it: cancelled, timed_out or failed
    reason: str | None = None
    kill_at: float | None = None
    cpu: float = 0.0
    peak: int = 0
    sampled_at: float = 0.0
    # How much of a local job's log is in storage (None: not known yet; asked of storage the
    # first time, for an attempt taken over), and when it was last shipped.
    shipped: int | None = None
    shipped_at: float = 0.0
    ship_failing: bool = False


@dataclass
class _Capacity:
    cpus: float = 0.0
    memory: int = 0
    workers: int = 0
    gpus: set[int] = field(default_factory=set)


class Supervisor:
    def __init__(self, settings: Settings, engine: Engine, storage: Backend,
                 plane: Membership) -> None:
        self.settings = settings
        self.storage = storage
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.root = settings.home / "compute"
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._executors: dict[str, tuple[str, Executor]] = {}  # cluster -> (type, executor)
        self._live: dict[str, _Live] = {}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Exits seen but not yet recorded (a storage or database error): tried again next step.
        self._exits: dict[str, ProcessExit] = {}
        # This control plane: it watches the attempts it started or took over.
        self.plane = plane
        self.host = socket.gethostname()
        # What owned jobs before control planes had ids (an upgrade finds them running).
        self._legacy_owner = f"{self.host}:{settings.home}"
        self._planes = 1  # live control planes, as of the last step
        self._looked_at = -TAKE_OVER_EVERY  # when jobs to take over were last looked for
        # Requests waiting for a job to end (long polls): woken after each step, which is when
        # a job's end is recorded, instead of each reading the database every few milliseconds.
        self._watchers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        # Called after each step, from the supervisor's thread (the pipeline orchestrator).
        self.listeners: list[Callable[[], None]] = []
        # Environments built on this machine, for jobs (and endpoints) that ask for one.
        self.envs = environments.Builder(settings.home, self.sessions, storage, settings.prices)
        self.envs.listeners.append(lambda digest, state: self.wake.set())

    # --- life --------------------------------------------------------------------------------

    @property
    def owner(self) -> str:
        return self.plane.id

    def start(self) -> None:
        self.plane.on_fenced.append(self._drop_all)
        with self.sessions() as session:
            ensure_local_cluster(session)
            self._sync(session)
            self._take_over(session)
        self._thread = threading.Thread(target=self._run, name="cumulo-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread:
            self._thread.join(15)
        for _, executor in self._executors.values():
            executor.shutdown()
        self.envs.shutdown()
        running = len(self._live)
        if running:
            log.info("%d job(s) still running; they are picked up again on the next start",
                     running)

    def notify(self) -> None:
        self.wake.set()

    def watch(self) -> asyncio.Event:
        """An event set after each of the supervisor's steps (from the caller's event loop)."""
        event = asyncio.Event()
        self._watchers.add((asyncio.get_running_loop(), event))
        return event

    def unwatch(self, event: asyncio.Event) -> None:
        self._watchers = {w for w in self._watchers if w[1] is not event}

    def _wake_watchers(self) -> None:
        for loop, event in list(self._watchers):
            with contextlib.suppress(RuntimeError):  # its loop has closed
                loop.call_soon_threadsafe(event.set)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wake.clear()
            try:
                with self._lock:
                    self._tick()
            except Exception:  # a bug here must not end the supervisor: log it, go on
                log.exception("job supervisor step failed")
            self._wake_watchers()
            for listener in self.listeners:
                listener()
            self.wake.wait(0.25 if self._live else 2.0)

    def executor(self, cluster: str) -> Executor | None:
        found = self._executors.get(cluster)
        return found[1] if found else None

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def log_file(self, job_id: str, attempt: int) -> Path:
        return self.job_dir(job_id) / f"attempt-{attempt}.log"

    def exit_file(self, job_id: str, attempt: int) -> Path:
        return self.job_dir(job_id) / f"attempt-{attempt}.exit.json"

    # --- one step ---------------------------------------------------------------------------

    def _sync(self, session: Session) -> dict[str, Cluster]:
        clusters = {c.name: c for c in list_clusters(session)}
        for name, cluster in clusters.items():
            kind, executor = self._executors.get(name, (None, None))
            if executor is None or kind != cluster.type:  # new, or made again as another type
                if executor is not None:
                    self._executors.pop(name)[1].shutdown()
                try:
                    executor = new_executor(cluster, home=self.root / "clusters" / name,
                                            wake=self.wake, preload=self.settings.preload)
                except CumuloError as exc:  # a row no executor here runs: its jobs wait
                    log.warning("cluster %s: %s", name, exc.message)
                    continue
                self._executors[name] = (cluster.type, executor)
            executor.configure(cluster)
        for name in set(self._executors) - set(clusters):
            self._executors.pop(name)[1].shutdown()
        return {name: c for name, c in clusters.items() if name in self._executors}

    def _tick(self) -> None:
        if not self.plane.valid():
            return  # the lease is not renewed: our jobs may be another's now; act on none
        with self.sessions() as session:
            clusters = self._sync(session)
            now = time.monotonic()
            if now - self._looked_at >= TAKE_OVER_EVERY:
                self._looked_at = now
                self._take_over(session)
            active = list(session.scalars(select(Job).where(
                Job.state.in_(ACTIVE_STATES), Job.owner == self.owner)))
            for job in active:
                try:
                    self._check(session, job)
                except Exception:  # one job's trouble must not hold up the others
                    log.exception("watching job %s failed", job.id)
                    session.rollback()
            self._dispatch(session, clusters)
            for _, executor in self._executors.values():
                executor.maintain(executor.busy)

    def _take_over(self, session: Session) -> None:
        """Claim the active jobs no live control plane owns (their owner's lease ran out, or
        they predate control planes' ids), one claim each, naming the old owner: of control
        planes that look at the same moment, exactly one gets each job."""
        live = [p.id for p in live_planes(session)]
        self._planes = max(1, len(live))
        orphans = list(session.scalars(select(Job).where(
            Job.state.in_(ACTIVE_STATES),
            or_(Job.owner.is_(None), Job.owner.not_in(live or [""])))))
        if not orphans:
            return
        owners = {p.id: p for p in session.scalars(select(ControlPlane).where(
            ControlPlane.id.in_([j.owner for j in orphans if j.owner])))}
        for job in orphans:
            old = job.owner
            claimed = session.execute(  # type: ignore[attr-defined]
                update(Job).where(Job.id == job.id, Job.state.in_(ACTIVE_STATES),
                                  Job.owner.is_(None) if old is None else Job.owner == old)
                .values(owner=self.owner)).rowcount
            session.commit()
            if not claimed:
                continue  # another control plane took it, or it ended
            session.refresh(job)
            try:
                self._adopt(session, job, owners.get(old or ""), old)
            except Exception:
                log.exception("taking job %s over failed", job.id)
                session.rollback()
            session.commit()

    def _adopt(self, session: Session, job: Job, previous: ControlPlane | None,
               old: str | None) -> None:
        executor = self.executor(job.cluster)
        if executor is None:
            self._end(session, job, "failed", reason=f"cluster {job.cluster!r} is gone")
            return
        here = (previous is not None and previous.host == self.host) or \
            old == self._legacy_owner
        if here and previous is not None and previous.home != str(self.settings.home):
            self._borrow_job_dir(job, Path(previous.home))
        attempt = Attempt(job.id, job.pid, job.pid_started, job.backend_ref,
                          self.exit_file(job.id, job.attempt))
        if executor.remote or here:
            # A Ray job runs on whatever control plane watches it; a local one of this machine
            # is watched from here as its own was (by pid, its records in its folder).
            if not executor.adopt(attempt):  # handed to no process yet: it never ran
                self._requeue(session, job, count_attempt=False)
                return
            self._live[job.id] = _Live()
            log.info("job %s taken over (its control plane %s stopped)", job.id, old)
            return
        gone = (f"its control plane {old} on {previous.host if previous else 'another machine'}"
                " stopped answering (its lease ran out)")
        log.warning("job %s: %s; its attempt is failed", job.id, gone)
        self._close_attempt(session, job, "failed", exit_code=None,
                            reason=f"{gone}: its machine is taken for gone", live=_Live())

    def _borrow_job_dir(self, job: Job, home: Path) -> None:
        """A job of this machine's control plane with another home: its folder (log, exit
        record, outputs) becomes this one's, linked, so that it is watched and kept as if it
        had started here."""
        theirs = home / "compute" / "jobs" / job.id
        mine = self.job_dir(job.id)
        if theirs.is_dir() and not mine.exists():
            mine.parent.mkdir(parents=True, exist_ok=True)
            mine.symlink_to(theirs, target_is_directory=True)

    def _drop_all(self) -> None:
        """Fenced: the jobs we watched may be another control plane's now. Local processes
        are stopped (they would run beside the retries); Ray jobs are only forgotten (the new
        owner adopts them)."""
        with self._lock:
            for job_id in list(self._live):
                for _, executor in self._executors.values():
                    if not executor.remote:
                        with contextlib.suppress(Exception):
                            executor.signal(job_id, signal.SIGKILL)
            self._live.clear()
            self._exits.clear()

    def _with_exit_record(self, job: Job, result: ProcessExit) -> ProcessExit:
        """A remote job's end, with the exit record its runner left in storage (through
        whichever control plane it reached): its exit code, CPU time and peak memory."""
        import json

        try:
            with self.storage.open(exit_record_key(job.id, job.attempt)) as found:
                record = json.loads(found.read())
        except (FileNotFoundError, ValueError):
            return result
        return ProcessExit(record.get("exit_code", result.exit_code), record=record)

    def _check(self, session: Session, job: Job) -> None:
        executor = self.executor(job.cluster)
        if executor is None:
            return
        live = self._live.setdefault(job.id, _Live())
        result = self._exits.pop(job.id, None) or executor.poll(job.id)
        if result is not None and executor.remote and not result.record:
            result = self._with_exit_record(job, result)
        if result is not None:
            try:
                self._finish(session, job, result, live)
            except Exception:
                self._exits[job.id] = result  # the exit is not lost: record it next step
                raise
            return
        now = time.monotonic()
        if job.state == "starting" and executor.running(job.id):
            if not self._still_mine(session, job):
                return
            job.state, job.running_at = "running", utcnow()
            session.commit()
        # A job with a memory limit is watched more closely, so it is stopped nearer the limit.
        if now - live.sampled_at >= (0.25 if job.memory else 1.0):
            live.sampled_at = now
            sample = executor.sample(job.id)
            if sample:
                live.cpu, live.peak = max(live.cpu, sample[0]), max(live.peak, sample[1])
                if job.memory and sample[1] > job.memory and live.outcome != "failed":
                    live.outcome, live.kill_at = "failed", now
                    live.reason = (f"out of memory: used {sample[1] / 2**20:.0f} MiB, over its "
                                   f"--memory of {job.memory / 2**20:.0f} MiB")
                    executor.signal(job.id, signal.SIGKILL)
        if not executor.remote:  # a Ray job's log is read from Ray, through any control plane
            self._ship_log(job, live, now)
        since = job.running_at or job.starting_at
        if live.outcome is None:
            if job.cancel_requested_at is not None:
                self._stop_job(executor, job, live, "cancelled", "cancelled")
            elif job.max_runtime_s and since and \
                    (utcnow() - since).total_seconds() > job.max_runtime_s:
                self._stop_job(executor, job, live, "timed_out",
                               f"ran past its --max-runtime of {job.max_runtime_s:g}s")
        elif live.kill_at is not None and now >= live.kill_at:
            live.kill_at = None
            executor.signal(job.id, signal.SIGKILL)

    def _ship_log(self, job: Job, live: _Live, now: float) -> None:
        """Put what the job wrote to its log since the last time into storage, at most about
        once a second, for the control planes that do not have the file
        (:mod:`cumulo.compute.logparts`). A storage failure is said once, and tried again."""
        if now - live.shipped_at < logparts.SHIP_EVERY_S:
            return
        path = self.log_file(job.id, job.attempt)
        try:
            size = path.stat().st_size
        except OSError:  # not made yet
            return
        if size <= (live.shipped or 0):
            return
        live.shipped_at = now
        try:
            if live.shipped is None:
                live.shipped = logparts.stored_end(self.storage, job.id, job.attempt)
            live.shipped = logparts.ship(self.storage, path, job.id, job.attempt,
                                         live.shipped, upto=size)
            live.ship_failing = False
        except Exception as exc:
            live.shipped = None  # where the stored parts end is asked of storage again
            if not live.ship_failing:
                log.warning("job %s: its live log could not be put into storage (only this "
                            "control plane shows it until it ends): %s", job.id, exc)
            live.ship_failing = True

    def _stop_job(self, executor: Executor, job: Job, live: _Live,
                  outcome: str, reason: str) -> None:
        """SIGTERM now, SIGKILL after the grace period if it is still there."""
        live.outcome, live.reason = outcome, reason
        live.kill_at = time.monotonic() + self.settings.job_grace_seconds
        executor.signal(job.id, signal.SIGTERM)

    # --- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, session: Session, clusters: dict[str, Cluster]) -> None:
        queued = list(session.scalars(
            select(Job).where(Job.state == "queued")
            .order_by(Job.priority.desc(), Job.created_at, Job.id)))
        waiting: dict[str, list[Job]] = {}
        for job in queued:
            cluster = clusters.get(job.cluster)
            if cluster is None:
                # Made after this step read the clusters (the next step sees it), or gone.
                if session.scalar(select(Cluster.id).where(Cluster.name == job.cluster)) is None:
                    self._end(session, job, "failed",
                              reason=f"cluster {job.cluster!r} was removed")
                    session.commit()
                continue
            if job.cancel_requested_at is not None:  # asked to stop between attempts
                self._end(session, job, "cancelled", reason="cancelled")
                session.commit()
                continue
            if job.environment and not self._env_ready(session, job, cluster):
                continue  # its environment is being built: it holds back no other job
            waiting.setdefault(cluster.name, []).append(job)
        for name, jobs in waiting.items():
            for job in self._claim(session, clusters[name], jobs):
                self._start(session, job, clusters[name])

    def _claim(self, session: Session, cluster: Cluster, jobs: list[Job]) -> list[Job]:
        """Claim the jobs that fit, in order, the first that does not fit holding back those
        behind it: under the cluster row's lock (skipped when another control plane holds it),
        and only if no one moved the cluster's dispatch epoch since it was read."""
        row = session.scalar(select(Cluster).where(Cluster.id == cluster.id)
                             .with_for_update(skip_locked=True)
                             .execution_options(populate_existing=True))
        if row is None:  # another control plane is dispatching on it now
            session.rollback()
            return []
        epoch = row.dispatch_epoch
        cap = self._held(session, cluster)
        chosen: list[tuple[Job, list[int]]] = []
        # With other control planes live, a fair share of the queue a step: the others take
        # the rest at their next step (a quarter of a second), so work spreads between them.
        share = -(-len(jobs) // self._planes)
        for job in jobs[:share]:
            free_gpus = sorted(set(range(cluster.max_gpus)) - cap.gpus)
            fits = (cap.cpus + job.cpus <= cluster.max_cpus + 1e-9
                    and cap.memory + (job.memory or 0) <= cluster.max_memory
                    and cap.workers < cluster.max_workers and len(free_gpus) >= job.gpus)
            if not fits:
                break
            gpu_ids = free_gpus[:job.gpus]
            cap.cpus += job.cpus
            cap.memory += job.memory or 0
            cap.workers += 1
            cap.gpus.update(gpu_ids)
            chosen.append((job, gpu_ids))
        if not chosen:
            session.rollback()
            return []
        moved = session.execute(  # type: ignore[attr-defined]
            update(Cluster).where(Cluster.id == cluster.id, Cluster.dispatch_epoch == epoch)
            .values(dispatch_epoch=epoch + 1)).rowcount
        if not moved:  # another control plane filled it meanwhile: look again next step
            session.rollback()
            return []
        claimed: list[Job] = []
        for job, gpu_ids in chosen:
            done = session.execute(  # type: ignore[attr-defined]
                update(Job).where(Job.id == job.id, Job.state == "queued")
                .values(state="starting", starting_at=utcnow(), gpu_ids=gpu_ids,
                        owner=self.owner)).rowcount
            if done:  # else cancelled meanwhile
                claimed.append(job)
        session.commit()
        return claimed

    def _held(self, session: Session, cluster: Cluster) -> _Capacity:
        """What the cluster's starting and running jobs hold. A local cluster is each
        machine's own: only the jobs of control planes on this machine count."""
        query = select(Job).where(Job.cluster == cluster.name, Job.state.in_(ACTIVE_STATES))
        if not self._executors[cluster.name][1].remote:
            mine = select(ControlPlane.id).where(ControlPlane.host == self.host)
            query = query.where(or_(Job.owner.in_(mine), Job.owner == self._legacy_owner))
        cap = _Capacity()
        for job in session.scalars(query.execution_options(populate_existing=True)):
            cap.cpus += job.cpus
            cap.memory += job.memory or 0
            cap.workers += 1
            cap.gpus.update(job.gpu_ids)
        return cap

    def _start(self, session: Session, job: Job, cluster: Cluster) -> None:
        session.refresh(job)
        try:
            self._launch(session, job, cluster)
        except Exception as exc:
            log.warning("job %s could not start: %s", job.id, exc)
            session.rollback()
            job = session.get(Job, job.id)  # type: ignore[assignment]
            self._live.pop(job.id, None)
            self._close_attempt(session, job, "failed", exit_code=None,
                                reason=f"could not start: {getattr(exc, 'message', exc)}",
                                live=_Live())
            session.commit()
            self._tidy(job)

    def _env_ready(self, session: Session, job: Job, cluster: Cluster) -> bool:
        """Whether the job's environment is ready for its cluster: built on this machine for
        a local one (a build is started if it is not), known by its pins for a remote one
        (which builds it there). A job whose environment failed to build, in a build asked
        for since the job was submitted, fails with why (it does not ask for another)."""
        digest = job.environment
        assert digest is not None
        executor = self._executors[cluster.name][1]
        if not executor.remote:
            submitted = job.created_at.replace(tzinfo=job.created_at.tzinfo or UTC)
            future = self.envs.ensure(digest, since=submitted.timestamp())
            if not future.done():
                return False
            if future.result() == "failed":
                env = session.get(Environment, digest)
                why = env.error if env is not None and env.error else "the build failed"
                self._end(session, job, "failed",
                          reason=f"its environment ({job.environment_label or digest[:12]}) "
                          f"could not be built: {why} (the build log: cumulo envs show "
                          f"{digest[:12]} --log)")
                session.commit()
                return False
        if job.env_ready_at is None:
            job.env_ready_at = utcnow()
            session.commit()
        return True

    def _code_dir(self, digest: str) -> Path:
        dest = self.root / "code" / digest
        if not dest.is_dir():
            with self.storage.open(snapshot_key(digest)) as source:
                snapshot.extract(source, dest)
        return dest

    def _launch(self, session: Session, job: Job, cluster: Cluster) -> None:
        executor = self._executors[cluster.name][1]
        jobdir = self.job_dir(job.id)
        for sub in ("work", "output", "inputs"):
            shutil.rmtree(jobdir / sub, ignore_errors=True)
        jobdir.mkdir(parents=True, exist_ok=True)
        code = self._code_dir(job.code_digest) if job.code_digest else None
        # A remote job makes its folders on its node, and fetches its checkpoints there.
        env = self._env(session, job, None if executor.remote else jobdir)
        # The job's token must be usable before the job can first call home with it (a fork
        # starts in milliseconds): committed now, not with the launch.
        session.commit()
        exit_file = self.exit_file(job.id, job.attempt)
        exit_file.unlink(missing_ok=True)
        if not executor.remote:
            self._restore_checkpoints(job)
        spec: dict[str, Any] = {"entry": job.entry, "command": job.command, "args": job.args,
                                "env": env, "exit_file": str(exit_file),
                                "code": job.code_digest}
        python, environment = None, None
        if job.environment:
            found = session.get(Environment, job.environment)
            if found is None:
                raise CumuloError(f"its environment {job.environment[:12]} was removed")
            found.last_used_at = utcnow()
            environment = {"digest": found.digest, "lock": found.lock, "python": found.python,
                           "isolated": found.isolated}
            if not executor.remote:
                python = self.envs.python(found.digest)
        launched = executor.launch(Launch(
            job.id, job.attempt, spec, jobdir, code, self.log_file(job.id, job.attempt),
            exit_file, cpus=job.cpus, memory=job.memory, gpus=job.gpus, python=python,
            environment=environment, image=job.image))
        job.pid, job.pid_started = launched.pid, launched.pid_started
        job.backend_ref = launched.backend_ref
        if launched.running:
            job.state, job.running_at = "running", utcnow()
        self._live[job.id] = _Live()
        session.commit()

    def _restore_checkpoints(self, job: Job) -> None:
        """Give the attempt the checkpoints the one before it left."""
        folder = self.job_dir(job.id) / "checkpoints"
        if job.attempts:
            count = checkpoints.restore(self.storage, job.id, folder,
                                        after=job.attempts[-1]["attempt"])
            if count:
                log.info("job %s attempt %d: %d checkpoint file(s) restored from storage",
                         job.id, job.attempt, count)
        folder.mkdir(exist_ok=True)

    def _env(self, session: Session, job: Job, jobdir: Path | None) -> dict[str, str]:
        threads = str(max(1, int(job.cpus)))
        # MLflow's usage telemetry would send each job's calls to a third party (and wait on a
        # network these machines may not have): off, unless the job's --env turns it on.
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "OPENBLAS_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1",
               "MLFLOW_DISABLE_TELEMETRY": "true", **job.env}
        # Every public URL, tried in turn by the job's SDK; MLflow's client takes one.
        urls = self.settings.public_urls
        url = ",".join(urls)
        secret = None
        if job.created_by is not None:
            lifetime = timedelta(seconds=(job.max_runtime_s or 7 * 86400) + 3600)
            token, secret = issue_token(session, job.created_by, f"job-{job.id}-{job.attempt}",
                                        expires_at=utcnow() + lifetime)
            session.flush()
            job.token_id = token.id
        env.update(JobEnv(job.id, job.attempt, url=url, token=secret, job_dir=jobdir,
                          inputs=job.inputs, code=job.code_digest or "").variables())
        project = projects.name_of(session, job.project_id)
        if project is not None:  # the CLI, SDK and MLflow in the job work in its project
            env["CUMULO_PROJECT"] = project
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in job.gpu_ids)
        if secret is not None:
            # MLflow in the job logs to Cumulo's tracking server, as the job's user.
            env.setdefault("MLFLOW_TRACKING_URI", urls[0] + "/mlflow")
            # Named too, so that one the control plane's own environment holds never leaks in.
            env.setdefault("MLFLOW_REGISTRY_URI", env["MLFLOW_TRACKING_URI"])
            env["MLFLOW_TRACKING_TOKEN"] = secret
            if not any(k.startswith(("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_ENDPOINT_URL"))
                       for k in job.env):
                # S3 clients in the job (boto3, the aws command, s3fs, rclone's env) reach
                # Cumulo's S3 API as the job: a key acting as its token, gone when it ends.
                # (A job given AWS credentials of its own keeps them.)
                key_id, key_secret = job_key(session, token)
                env.update(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=key_secret,
                           AWS_ENDPOINT_URL_S3=urls[0])
                env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        return env

    # --- endings ----------------------------------------------------------------------------

    def _still_mine(self, session: Session, job: Job) -> bool:
        """Whether the job is still this control plane's, its row locked until the commit
        (on PostgreSQL): one fenced while its step ran (its lease ran out and the job was
        taken over) must not record what the new owner records too."""
        owner = session.scalar(select(Job.owner).where(Job.id == job.id).with_for_update())
        if owner == self.owner:
            return True
        session.rollback()
        self._live.pop(job.id, None)
        log.warning("job %s is control plane %s's now; this one leaves it", job.id, owner)
        return False

    def _finish(self, session: Session, job: Job, result: ProcessExit, live: _Live) -> None:
        if not self._still_mine(session, job):
            return
        if live.outcome:
            state, reason = live.outcome, live.reason
        elif result.exit_code == 0:
            state, reason = "succeeded", None
        elif result.exit_code is None:
            state, reason = "failed", result.message or (
                "the job's process ended while the control plane was down, without leaving "
                "an exit status")
        elif result.signal:
            state, reason = "failed", f"killed by {signal.Signals(result.signal).name}"
        else:
            state, reason = "failed", f"exited with code {result.exit_code}"
        executor = self.executor(job.cluster)
        self._close_attempt(session, job, state, exit_code=result.exit_code, reason=reason,
                            live=live, record=result.record)
        session.commit()
        self._live.pop(job.id, None)
        self._tidy(job)
        if executor is not None:
            executor.maintain(executor.busy, ended=True)

    def _close_attempt(self, session: Session, job: Job, state: str, *, exit_code: int | None,
                       reason: str | None, live: _Live,
                       record: dict[str, Any] | None = None) -> None:
        """Price the attempt, keep its log and outputs, then end the job or queue it again."""
        record = record or {}
        now = utcnow()
        began = job.running_at or job.starting_at or now
        # It ended when the runner says, not when we noticed (perhaps after a restart).
        ended = min(now, _utc(record["finished_at"])) if record.get("finished_at") else now
        wall = max(0.0, (ended - began).total_seconds())
        cpu = max(float(record.get("cpu_seconds", 0.0)), live.cpu)
        peak = max(int(record.get("peak_memory_bytes", 0)), live.peak)
        gpu_seconds = job.gpus * wall
        memory_gb_seconds = peak / 1e9 * wall
        row = usage.record(session, self.settings.prices, kind="job", ref=job.id,
                           cluster=job.cluster, user_id=job.created_by, tags=job.tags,
                           started_at=began, ended_at=ended, cpu_seconds=cpu,
                           memory_gb_seconds=memory_gb_seconds, gpu_seconds=gpu_seconds,
                           wall_seconds=wall, project=projects.name_of(session, job.project_id))
        job.cpu_seconds += cpu
        job.peak_memory_bytes = max(job.peak_memory_bytes, peak)
        job.gpu_seconds += gpu_seconds
        job.wall_seconds += wall
        job.cost_usd += row.cost_usd
        tail = self._keep_log(job)
        self._keep_outputs(session, job)
        self._keep_checkpoints(job)
        if job.token_id is not None:
            revoke_token_id(session, job.token_id)
            job.token_id = None
        job.attempts = [*job.attempts, {
            "attempt": job.attempt, "state": state, "exit_code": exit_code, "reason": reason,
            "started_at": began.isoformat(), "finished_at": ended.isoformat(),
            "cpu_seconds": round(cpu, 3), "peak_memory_bytes": peak, "wall_seconds": round(wall, 3),
        }]
        job.exit_code, job.reason, job.log_tail = exit_code, reason, tail
        cancel_asked = session.scalar(select(Job.cancel_requested_at).where(Job.id == job.id))
        if state == "failed" and job.attempt <= job.retries and cancel_asked is None:
            log.info("job %s attempt %d failed (%s); retrying", job.id, job.attempt, reason)
            self._requeue(session, job, count_attempt=True)
            shutil.rmtree(self.job_dir(job.id) / "work", ignore_errors=True)
        else:
            job.state, job.finished_at = state, now
            job.pid = job.pid_started = None
            observe_end(cluster=job.cluster, state=state, seconds=job.wall_seconds)

    def _tidy(self, job: Job) -> None:
        """Once a job has ended (and that is committed), its log and outputs are in storage:
        nothing of it stays on this disk."""
        if job.state in ("succeeded", "failed", "cancelled", "timed_out"):
            folder = self.job_dir(job.id)
            if folder.is_symlink():  # taken over from another home of this machine
                shutil.rmtree(folder.resolve(), ignore_errors=True)
                folder.unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)

    def _requeue(self, session: Session, job: Job, *, count_attempt: bool) -> None:
        if count_attempt:
            job.attempt += 1
        if job.token_id is not None:
            revoke_token_id(session, job.token_id)
            job.token_id = None
        job.state = "queued"
        job.starting_at = job.running_at = None
        job.pid = job.pid_started = None
        job.backend_ref = None
        job.gpu_ids = []

    def _end(self, session: Session, job: Job, state: str, *, reason: str) -> None:
        job.state, job.reason, job.finished_at = state, reason, utcnow()
        observe_end(cluster=job.cluster, state=state, seconds=job.wall_seconds)

    def _store(self, path: Path, key: str, *, link: bool = True) -> None:
        """Put a file into storage and keep the original: if a later step fails, the next try
        finds everything where it was. A hard link where one can be made (and ``link``), else a
        copy."""
        tmp = self.storage.spool_dir() / f"keep-{os.getpid()}-{threading.get_ident()}-{path.name}"
        tmp.unlink(missing_ok=True)
        if link:
            try:
                os.link(path, tmp)
            except OSError:
                link = False
        if not link:
            shutil.copyfile(path, tmp)
        try:
            self.storage.commit(tmp, key)
        finally:
            tmp.unlink(missing_ok=True)

    def _keep_log(self, job: Job) -> str | None:
        """Put the attempt's log into storage, whole, in place of the parts shipped while it
        ran; return its last lines. A local job whose machine is gone keeps what was shipped."""
        path = self.log_file(job.id, job.attempt)
        executor = self.executor(job.cluster)
        remote = executor is not None and executor.remote
        if executor is not None and job.backend_ref and not path.is_file():
            text = executor.logs(job.backend_ref)
            if text is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        if not remote and not path.is_file():
            logparts.gather(self.storage, job.id, job.attempt, path)
        if not path.is_file():
            return None
        self._store(path, logparts.log_key(job.id, job.attempt))
        if not remote:
            # A reader that finds no part now finds the attempt ended (once committed), and
            # reads the whole log from where it was.
            logparts.drop(self.storage, job.id, job.attempt)
        return read_tail(path)

    def _keep_outputs(self, session: Session, job: Job) -> None:
        out = self.job_dir(job.id) / "output"
        if not out.is_dir():
            return  # a remote job sent its outputs itself
        files = {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*")) if p.is_file()}
        for rel, path in files.items():
            self._store(path, f"jobs/{job.id}/outputs/{rel}")
        # An earlier attempt's outputs that this one did not make again are gone now.
        for old in session.scalars(select(JobArtifact).where(JobArtifact.job_id == job.id)):
            if old.path not in files:
                self.storage.delete(f"jobs/{job.id}/outputs/{old.path}")
        session.execute(delete(JobArtifact).where(JobArtifact.job_id == job.id))
        session.add_all(JobArtifact(job_id=job.id, path=rel, size=path.stat().st_size)
                        for rel, path in files.items())

    def _keep_checkpoints(self, job: Job) -> None:
        """Put the checkpoint folder into storage, for the next attempt (or a retry)."""
        folder = self.job_dir(job.id) / "checkpoints"
        # The folder stays for the next attempt, which may rewrite a file in place: in local
        # storage a hard link would let it change (or tear) the stored copy too.
        link = self.storage.local_path(checkpoints.file_key(job.id, "x")) is None
        checkpoints.keep(self.storage, job.id, job.attempt, folder,
                         lambda path, key: self._store(path, key, link=link))


def read_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a file, reading only its end."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - LOG_TAIL_BYTES))
        data = f.read()
    text = data.decode("utf-8", "replace")
    kept = deque(text.splitlines(), maxlen=lines)
    return "\n".join(kept)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)
