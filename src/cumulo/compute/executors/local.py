"""The local cluster: jobs as processes on this machine, started from a pool of warm workers.

A warm worker is ``python -m cumulo.compute.runner`` already started and waiting on its stdin;
handing it a job is one write. The pool keeps ``min_workers`` ready; a worker that finished a
job is replaced, so after a burst the pool holds up to ``max_workers``, and those above
``min_workers`` are let go once idle for ``idle_timeout``.

Python jobs whose code imports the ML stack go to a fork server instead (:mod:`cumulo.forkserver`),
once it is ready: a process that has imported that stack once and forks a child per job, so
that a training job does not spend its first seconds importing pandas, scikit-learn and MLflow.
Until it is ready, or if it dies, they go to the warm workers as before; so do jobs that import
none of it, which a fresh interpreter starts sooner than a fork of a large process.

Each job runs in a session (process group) of its own, writing straight to its log file: the
control plane never carries a job's output, and a restart of the control plane leaves running
jobs running, to be found again by pid and start time.

A job is all the processes below its runner, which keeps them there even when they leave its
process group (setsid, a double fork: see :mod:`cumulo.forkserver.reaper`). Each look at them
(a sample, a signal) remembers those it finds, so that they are still found, and ended, if the
runner is killed and they go to init; the fork server kills what reaches it that way itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from cumulo.compute.executors import Attempt, Found, Launch, Launched, ProcessExit, Resources
from cumulo.config import child_env
from cumulo.errors import Invalid
from cumulo.forkserver import Forked, ForkServer, parse_preload, process_alive, reaper

__all__ = ["AUTO", "LocalExecutor", "detect_resources", "uses_preloaded"]

log = logging.getLogger("cumulo.compute")

# What built-in training and typical training scripts import, in dependency order: the
# ``auto`` of the preload setting. Those not installed are skipped. torch is not among them:
# it doubles the memory the fork server holds and is imported by few jobs; name it with
# CUMULO_PRELOAD=auto,torch to preload it too.
AUTO = ("numpy", "pandas", "pyarrow", "pyarrow.parquet", "pyarrow.dataset", "deltalake",
        "sklearn", "sklearn.metrics", "sklearn.model_selection", "sklearn.ensemble",
        "sklearn.linear_model", "sklearn.preprocessing", "sklearn.pipeline", "scipy.stats",
        "lightgbm", "xgboost", "matplotlib.pyplot", "cloudpickle", "mlflow", "mlflow.sklearn",
        "mlflow.models", "cumulo.job", "cumulo.client", "cumulo.ml.tabular",
        "cumulo.pipelines.step",
        # A notebook's JupyterLab (cumulo.notebooks.lab, light itself: it routes notebooks'
        # jobs here), which would take seconds to import in a fresh interpreter.
        "jupyter_server.serverapp", "jupyterlab.labapp", "cumulo.notebooks.lab")
ENTRY = "cumulo.compute.runner:forked"  # what a forked job runs, preloaded with the rest
_ENTRY_MODULE = ENTRY.partition(":")[0]
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def detect_resources() -> tuple[float, int, int]:
    """This machine's CPUs, memory in bytes, and NVIDIA GPUs."""
    cpus = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count() or 1)
    memory = int(psutil.virtual_memory().total)
    return cpus, memory, _count_gpus()


def _count_gpus() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def _roots(modules: list[str]) -> list[str]:
    """What a job's code must import to gain from the preloaded modules: their top-level
    packages, but for Cumulo's own (every job imports ``cumulo.job``) a service's package
    (``cumulo.ml``, ``cumulo.pipelines``)."""
    roots: list[str] = []
    for name in modules:
        parts = name.split(".")
        root = ".".join(parts[:2]) if parts[0] == "cumulo" else parts[0]
        if root not in ("cumulo", "cumulo.job", "cumulo.client") and root not in roots:
            roots.append(root)
    return roots


def uses_preloaded(argv: list[str], workdir: str | None, modules: list[str],
                   max_bytes: int = 4 << 20) -> bool:
    """Whether a Python job's code imports any of ``modules`` (a static look at its ``-c``
    code, its ``-m`` module and the ``.py`` files of its code folder). A job that does not
    starts faster from a plain warm worker: forking the fork server and ending the child cost
    some tens of milliseconds more than a fresh interpreter (its memory is larger). A folder
    larger than ``max_bytes`` of Python is assumed to import them."""
    roots = _roots(modules)
    if not roots:
        return False
    names = "(?:" + "|".join(map(re.escape, roots)) + r")\b"
    pattern = re.compile(r"(?:^|;)\s*(?:from\s+" + names + r"|import\s+(?:[\w.]+(?:\s+as\s+\w+)?"
                         r"\s*,\s*)*" + names + ")", re.MULTILINE)
    if len(argv) >= 3 and argv[1] == "-c" and pattern.search(argv[2]):
        return True
    if len(argv) >= 3 and argv[1] == "-m" and pattern.search(f"import {argv[2]}"):
        return True
    if not workdir:
        return False
    seen = 0
    for path in Path(workdir).rglob("*.py"):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        seen += len(text)
        if seen > max_bytes or pattern.search(text):
            return True
    return False


@dataclass(eq=False)
class _Worker:
    proc: subprocess.Popen[bytes]
    idle_since: float


@dataclass
class _EnvPool:
    """Warm capacity for one environment's interpreter: workers, and a fork server that has
    preloaded what of the ML stack it holds; kept while jobs in it come, let go once idle."""

    python: str
    idle: deque[_Worker] = field(default_factory=deque)
    forks: ForkServer | None = None
    used: float = 0.0  # when a job in it last started or ended (time.monotonic())


@dataclass
class _Running:
    proc: subprocess.Popen[bytes] | Forked | None  # None when adopted after a restart
    pid: int
    started: float
    exit_file: Path
    python: str | None = None  # the environment's interpreter; None: the server's
    container: tuple[str, str] | None = None  # (engine, name) of a job run in an image
    # Every process met below the runner, by pid: found again, to be ended, should the runner
    # die first and they go to init.
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def processes(self) -> list[psutil.Process]:
        """The attempt's processes now: the runner while it lives, everything below it, and
        what was met below it before and lives on elsewhere, with everything below that."""
        top = self._top()
        alive = {pid: p for pid, p in self.seen.items() if _same(p)}
        roots = [*([top.pid] if top is not None else []), *alive]
        self.seen = {}
        if not roots:
            return []
        for pid in [*alive, *reaper.descendants(roots)]:
            proc = alive.get(pid) or _process(pid)
            if proc is not None:
                self.seen[pid] = proc
        return [*([top] if top is not None else []), *self.seen.values()]

    def _top(self) -> psutil.Process | None:
        if not process_alive(self.pid, self.started):
            return None
        return _process(self.pid)

    def end(self) -> None:
        """SIGKILL all of the attempt. The runner is stopped first, so that it can start
        nothing more while what is below it is killed (their orphans come back to it)."""
        top = self._top()
        if top is not None:
            with contextlib.suppress(psutil.Error):
                top.suspend()
        killed: set[int] = set()
        for _ in range(5):  # again while killing turns up more (a fork as it was signalled)
            below = [p for p in self.processes()
                     if p.pid != self.pid and p.pid not in killed and _same(p)]
            if not below:
                break
            killed.update(p.pid for p in below)
            _send(below, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if top is not None:
            _send([top], signal.SIGKILL)
        if self.container is not None:  # the engine's client is not the container
            from cumulo.compute.environments import containers

            containers.remove(*self.container)

    def ended(self) -> tuple[bool, int | None]:
        """Whether it has ended, and its exit code when that is known."""
        if self.proc is None:
            return (not process_alive(self.pid, self.started)), None
        code = self.proc.poll()
        if code is None:
            return False, None
        return True, None if isinstance(self.proc, Forked) and self.proc.lost else code


class LocalExecutor:
    """Starts, watches and stops a local cluster's job processes."""

    remote = False

    def __init__(self, name: str, *, home: Path, wake: threading.Event,
                 address: str | None = None, preload: str = "none") -> None:
        self.name = name
        self.home = home
        self._wake = wake
        self._idle: deque[_Worker] = deque()
        self._running: dict[str, _Running] = {}
        self.min_workers = 0
        self.max_workers = 1
        self.idle_timeout = 600.0
        self._worker_log = home / "workers.log"
        self.preload = parse_preload(preload, AUTO)
        self._forks: ForkServer | None = None
        self._fork_starts: deque[float] = deque(maxlen=3)
        # (code snapshot, -c/-m head, preloaded modules) -> whether its code imports them
        self._uses: dict[tuple[Any, ...], bool] = {}
        self._envs: dict[str, _EnvPool] = {}  # by interpreter: environments used recently
        self._refill: list[str] = []  # environments a job just ended in
        self._topup: list[str] = []  # environments a job just took the last idle worker of
        home.mkdir(parents=True, exist_ok=True)

    @classmethod
    def probe(cls, address: str | None, *, python: str | None = None) -> Found:
        if address:
            raise Invalid("--address is for ray clusters; a local cluster runs on this machine")
        if python:
            raise Invalid("--python is for ray clusters; a local cluster runs Cumulo's own")
        return Found(Resources(*detect_resources()))

    def configure(self, cluster: Any) -> None:
        self.min_workers, self.max_workers = cluster.min_workers, cluster.max_workers
        self.idle_timeout = cluster.idle_timeout_s

    # --- the warm pool ---------------------------------------------------------------------

    def _spawn(self, python: str | None = None) -> _Worker:
        with open(self._worker_log, "ab") as err:
            proc = subprocess.Popen(
                [python or sys.executable, "-m", "cumulo.compute.runner"], stdin=subprocess.PIPE,
                stdout=err, stderr=err, cwd=self.home, env=child_env(),
                start_new_session=True, close_fds=True,
            )
        return _Worker(proc, time.monotonic())

    def _keep_forks(self) -> None:
        """Start the fork server if one is wanted and none runs; a fork server that keeps
        dying (three times in ten minutes) is not started again until the next restart."""
        if not self.preload:
            return
        if self._forks is not None and self._forks.state in ("starting", "ready"):
            return
        now = time.monotonic()
        if len(self._fork_starts) == 3 and now - self._fork_starts[0] < 600:
            return
        if self._forks is not None:
            log.warning("fork server of cluster %s %s; starting another", self.name,
                        self._forks.why)
            self._forks.stop()
        self._fork_starts.append(now)
        self._forks = ForkServer([*self.preload, _ENTRY_MODULE], env=child_env(), cwd=self.home,
                                 log_path=self._worker_log, name=f"fork server ({self.name})",
                                 on_exit=self._wake.set, kill_orphans=True)

    @property
    def preloaded(self) -> list[str]:
        """The modules jobs start with, once the fork server is ready; else none."""
        if self._forks is None or not self._forks.usable:
            return []
        return [m for m in self._forks.modules if m != _ENTRY_MODULE]

    @property
    def idle(self) -> int:
        return len(self._idle) + sum(len(p.idle) for p in self._envs.values())

    def maintain(self, busy: int, *, ended: bool = False) -> None:
        """After a job ended, put a fresh worker in its place (up to ``max_workers``), in the
        environment it ran in; else top the pool up to ``min_workers`` idle, start one for
        each environment whose job just took its last idle worker (as ``min_workers`` does
        for the server's own: a worker started when the last job ended may still be starting
        when the next job comes), and let surplus idle ones go after the timeout (an
        environment's all go: it was not used)."""
        if ended:
            refill, self._refill = self._refill, []
            for python in refill or [None]:  # type: ignore[list-item]
                # Full: room is made only for an environment with no worker ready, from the
                # environment used longest ago.
                if busy + self.idle >= self.max_workers and (
                        self._ready_in(python) or not self._evict(keep=python)):
                    continue
                if python is None:
                    self._idle.append(self._spawn())
                else:
                    pool = self._envs.setdefault(python, _EnvPool(python))
                    pool.idle.append(self._spawn(python))
                    pool.used = time.monotonic()
                    self._keep_env_forks(pool)
            return
        self._tend_envs(busy)
        topup, self._topup = self._topup, []
        for python in topup:
            used = self._envs.get(python)
            if used is not None and not used.idle and busy + self.idle < self.max_workers:
                used.idle.append(self._spawn(python))
        self._keep_forks()
        alive = deque(w for w in self._idle if w.proc.poll() is None)
        for gone in set(self._idle) - set(alive):  # pragma: no cover - a worker died while idle
            log.warning("warm worker %s exited while idle (code %s)", gone.proc.pid,
                        gone.proc.returncode)
        self._idle = alive
        while len(self._idle) < self.min_workers and busy + len(self._idle) < self.max_workers:
            self._idle.append(self._spawn())
        now = time.monotonic()
        while len(self._idle) > self.min_workers and (
                now - self._idle[0].idle_since > self.idle_timeout
                or busy + len(self._idle) > self.max_workers):
            self._retire(self._idle.popleft())

    def _ready_in(self, python: str | None) -> bool:
        """Whether a worker of that environment (None: the server's own) is idle."""
        if python is None:
            return bool(self._idle)
        pool = self._envs.get(python)
        return pool is not None and bool(pool.idle)

    def _evict(self, *, keep: str | None) -> bool:
        """Let go of an idle worker of the environment used longest ago (not ``keep``'s), to
        make room for one where a job just ended: that is where the next job is likeliest.
        Without this, the idle workers of a few environments used once would hold the pool
        full until their idle timeout, and no other would start warm. False if none."""
        pools = [p for python, p in self._envs.items() if python != keep and p.idle]
        if not pools:
            return False
        oldest = min(pools, key=lambda p: p.used)
        self._retire(oldest.idle.popleft())
        return True

    def _keep_env_forks(self, pool: _EnvPool) -> None:
        """An environment used again gets a fork server of its own, preloading what of the
        ML stack it holds (its own versions), so that its next jobs start warm."""
        if not self.preload or (pool.forks is not None and pool.forks.state in ("starting",
                                                                             "ready")):
            return
        if pool.forks is not None:
            pool.forks.stop()
        pool.forks = ForkServer([*self.preload, _ENTRY_MODULE], env=child_env(), cwd=self.home,
                                log_path=self._worker_log, python=pool.python,
                                name=f"fork server ({self.name}, {Path(pool.python).parts[-3]})",
                                on_exit=self._wake.set, kill_orphans=True)

    def _tend_envs(self, busy: int) -> None:
        now = time.monotonic()
        for python, pool in list(self._envs.items()):
            pool.idle = deque(w for w in pool.idle if w.proc.poll() is None)
            running_here = any(r.python == python for r in self._running.values())
            if running_here or now - pool.used <= self.idle_timeout:
                continue
            while pool.idle:
                self._retire(pool.idle.popleft())
            if pool.forks is not None:
                pool.forks.stop()
            del self._envs[python]

    def _retire(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.proc.stdin.close()  # type: ignore[union-attr]  # EOF: the worker exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.proc.wait(2)
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()

    # --- jobs ------------------------------------------------------------------------------

    def launch(self, launch: Launch) -> Launched:
        """Make the attempt's folders, then hand it to the fork server, a warm worker or a
        fresh one."""
        workdir = launch.job_dir / "work"
        if launch.code is not None:
            shutil.copytree(launch.code, workdir)
        else:
            workdir.mkdir()
        (launch.job_dir / "output").mkdir()
        spec = {**launch.spec, "workdir": str(workdir), "log": str(launch.log)}
        proc: subprocess.Popen[bytes] | Forked | None = None
        pool = None
        forks = self._forks
        if launch.image is not None:
            return self._launch_container(launch, spec)
        if launch.python is not None:  # a job in an environment: that environment's capacity
            pool = self._envs.setdefault(launch.python, _EnvPool(launch.python))
            pool.used = time.monotonic()
            forks = pool.forks
        if forks is not None and forks.usable:
            from cumulo.compute.runner import runs_in_process

            if runs_in_process(spec) and self._uses_preloaded(spec, forks):
                # The runner sets the job's whole environment; the fork server needs only what
                # sizes the preloaded thread pools (the request stays small).
                threads = {k: v for k, v in spec.get("env", {}).items() if k in _THREAD_VARS}
                proc = forks.start(ENTRY, {"spec": spec}, env=threads)
        if proc is None:
            proc = self._hand_to_worker(spec, pool)
            if pool is not None and not pool.idle:
                self._topup.append(pool.python)
            threading.Thread(target=self._await, args=(proc,), daemon=True,
                             name=f"wait-{launch.job_id}").start()
        started = getattr(proc, "started", None)
        if started is None:
            try:
                started = psutil.Process(proc.pid).create_time()
            except psutil.Error:  # it has ended already: its code is on its way
                started = time.time()
        self._running[launch.job_id] = _Running(proc, proc.pid, started, launch.exit_file,
                                                python=launch.python)
        return Launched(pid=proc.pid, pid_started=started)

    def _launch_container(self, launch: Launch, spec: dict[str, Any]) -> Launched:
        """The runner inside ``ENGINE run IMAGE`` (:mod:`cumulo.compute.environments.
        containers`), its spec on stdin, as a warm worker's would come."""
        from cumulo.compute.environments import containers

        assert launch.image is not None
        engine = containers.refuse_or_engine(launch.image)
        name = containers.container_name(launch.job_id, launch.attempt)
        cmd = containers.run_command(engine, launch.image, name=name, job_dir=launch.job_dir,
                                     env=spec.get("env", {}), cpus=launch.cpus,
                                     memory=launch.memory, gpus=[])
        with open(self._worker_log, "ab") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=err, stderr=err,
                                    cwd=self.home, env=child_env(), start_new_session=True,
                                    close_fds=True)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(spec).encode() + b"\n")
        proc.stdin.close()
        threading.Thread(target=self._await, args=(proc,), daemon=True,
                         name=f"wait-{launch.job_id}").start()
        started = time.time()
        with contextlib.suppress(psutil.Error):
            started = psutil.Process(proc.pid).create_time()
        self._running[launch.job_id] = _Running(proc, proc.pid, started, launch.exit_file,
                                                container=(engine, name))
        return Launched(pid=proc.pid, pid_started=started)

    def _hand_to_worker(self, spec: dict[str, Any],
                        pool: _EnvPool | None = None) -> subprocess.Popen[bytes]:
        line = json.dumps(spec).encode() + b"\n"
        idle = self._idle if pool is None else pool.idle
        while True:
            worker = idle.popleft() if idle else self._spawn(pool.python if pool else None)
            try:
                assert worker.proc.stdin is not None
                worker.proc.stdin.write(line)
                worker.proc.stdin.close()
                return worker.proc
            except (BrokenPipeError, OSError):  # the worker died while idle: take another
                worker.proc.wait()

    def _uses_preloaded(self, spec: dict[str, Any], forks: ForkServer) -> bool:
        """Whether the job's code imports what the fork server preloaded. A code snapshot
        never changes, so its folder is read once per snapshot and command, not per job
        (every trial of a tuning study runs the same one)."""
        from cumulo.compute.runner import job_argv

        modules = [m for m in forks.modules if m != _ENTRY_MODULE]
        argv = job_argv(spec)
        # What is read: the folder, and the -c code or -m module (not the arguments after).
        head = tuple(argv[1:3]) if len(argv) > 2 and argv[1] in ("-c", "-m") else ()
        key = (spec.get("code"), head, tuple(modules))
        if spec.get("code") and key in self._uses:
            return self._uses[key]
        found = uses_preloaded(argv, spec.get("workdir"), modules)
        if spec.get("code"):
            if len(self._uses) > 1000:
                self._uses.clear()
            self._uses[key] = found
        return found

    def _await(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self._wake.set()

    def adopt(self, attempt: Attempt) -> bool:
        if attempt.pid is None:  # handed to no process yet: it never ran
            return False
        run = _Running(None, attempt.pid, attempt.pid_started or 0.0, attempt.exit_file)
        run.processes()  # remember them now, while they are below the runner
        self._running[attempt.job_id] = run
        return True

    def poll(self, job_id: str) -> ProcessExit | None:
        run = self._running.get(job_id)
        if run is None:
            return ProcessExit(None)
        ended, code = run.ended()
        if not ended:
            return None
        del self._running[job_id]
        if run.python is not None:
            self._refill.append(run.python)
        run.end()  # what the job left running goes with it
        record = _read_exit(run.exit_file)
        if record:
            return ProcessExit(int(record["exit_code"]), record=record)
        if code is not None and code < 0:
            return ProcessExit(128 - code, signal=-code)
        return ProcessExit(code)

    def running(self, job_id: str) -> bool:
        return job_id in self._running

    def signal(self, job_id: str, sig: int) -> None:
        """``sig`` to every process of the attempt, in its process group or not."""
        run = self._running.get(job_id)
        if run is None:
            return
        if sig == signal.SIGKILL:
            run.end()
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pid, sig)
        if run.container is not None:
            from cumulo.compute.environments import containers

            containers.send_signal(run.container[0], run.container[1], sig)
        # Those outside the group: a second signal could mean more to a process than one.
        _send([p for p in run.processes() if _group(p) != run.pid], sig)

    def sample(self, job_id: str) -> tuple[float, int] | None:
        """CPU-seconds and resident memory of all of the job's processes, now. The CPU time
        of a process that ended counts with the one that reaped it (its children's)."""
        run = self._running.get(job_id)
        if run is None:
            return None
        procs = run.processes()
        if not procs:
            return None
        cpu, rss = 0.0, 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                cpu += (times.user + times.system + getattr(times, "children_user", 0.0)
                        + getattr(times, "children_system", 0.0))
                rss += proc.memory_info().rss
        return cpu, rss

    def logs(self, backend_ref: str) -> str | None:
        return None  # the attempt writes its log file itself

    @property
    def busy(self) -> int:
        return len(self._running)

    def shutdown(self) -> None:
        """Let the idle workers go; running jobs keep running and are found again at start."""
        while self._idle:
            self._retire(self._idle.popleft())
        if self._forks is not None:
            self._forks.stop()
            self._forks = None
        for pool in self._envs.values():
            while pool.idle:
                self._retire(pool.idle.popleft())
            if pool.forks is not None:
                pool.forks.stop()
        self._envs.clear()


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _same(proc: psutil.Process) -> bool:
    """Whether ``proc`` still runs (its pid not taken by a later process)."""
    try:
        return bool(proc.is_running()) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


def _send(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def _read_exit(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None
