"""The local cluster: jobs as processes on this machine, started from a pool of warm workers.

A warm worker is ``python -m cumulo.compute.runner`` already started and waiting on its stdin;
handing it a job is one write. The pool keeps ``min_workers`` ready; a worker that finished a
job is replaced, so after a burst the pool holds up to ``max_workers``, and those above
``min_workers`` are let go once idle for ``idle_timeout``.

Python jobs whose code imports the ML stack go to the fork server instead, once it is ready
(``cumulo.compute.zygote``): a process that has imported that stack once and forks a child per
job, so that a training job does not spend its first seconds importing pandas, scikit-learn and
MLflow. Until it is ready, or if it dies, they go to the warm workers as before; so do jobs
that import none of it, which a fresh interpreter starts sooner than a fork of a large process.

Each job runs in a session (process group) of its own, writing straight to its log file: the
control plane never carries a job's output, and a restart of the control plane leaves running
jobs running, to be found again by pid and start time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
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

__all__ = ["LocalExecutor", "ProcessExit", "detect_resources", "process_alive"]

log = logging.getLogger("cumulo.compute")


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


def process_alive(pid: int | None, started: float | None) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` (not a reused pid)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 0.5
    except psutil.Error:
        return False


_NOT_INHERITED = {"PYTHONSTARTUP", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI",
                  "MLFLOW_TRACKING_TOKEN", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME",
                  "MLFLOW_RUN_ID"}


@dataclass
class ProcessExit:
    exit_code: int | None  # None: ended without telling us how
    signal: int | None = None
    record: dict[str, Any] = field(default_factory=dict)  # the runner's exit record, if any
    message: str | None = None  # what the cluster said about a failure, if anything


@dataclass(eq=False)
class _Worker:
    proc: subprocess.Popen[bytes]
    idle_since: float


@dataclass
class _Running:
    proc: subprocess.Popen[bytes] | None  # None when forked by the zygote or adopted
    pid: int
    started: float
    exit_file: Path
    zygote: _Zygote | None = None  # the fork server that is its parent, if any


class _Zygote:
    """The supervisor's side of a fork server (``cumulo.compute.zygote``)."""

    def __init__(self, modules: list[str], *, cwd: Path, env: dict[str, str],
                 log_path: Path, wake: threading.Event) -> None:
        self._wake = wake
        self.ready = threading.Event()
        self.dead = threading.Event()
        self.modules: list[str] = []
        self.exits: dict[int, int] = {}
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        with open(log_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cumulo.compute.zygote", ",".join(modules)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=cwd, env=env,
                start_new_session=True, close_fds=True)
        threading.Thread(target=self._read, daemon=True, name="zygote-reader").start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:  # pragma: no cover - the zygote writes only JSON lines
                continue
            if "exit" in message:
                self.exits[int(message["exit"])] = int(message["code"])
                self._wake.set()
            elif "ready" in message:
                self.modules = list(message.get("modules", []))
                log.info("fork server ready in %.1fs with %d modules preloaded",
                         message["ready"], len(self.modules))
                self.ready.set()
            else:
                if "error" in message:
                    log.warning("fork server: %s", message["error"])
                self._replies.put(message)
        self.dead.set()
        self._replies.put({"error": "the fork server exited"})
        self.proc.wait()
        self._wake.set()

    @property
    def usable(self) -> bool:
        return self.ready.is_set() and not self.dead.is_set()

    def fork(self, spec: dict[str, Any]) -> int | None:
        """Start a job as a child of the fork server; its pid, or None if that failed."""
        with self._lock:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps(spec).encode() + b"\n")
                self.proc.stdin.flush()
                reply = self._replies.get(timeout=30)
            except (OSError, queue.Empty) as exc:
                log.warning("fork server did not answer (%s): using a warm worker", exc)
                return None
        return int(reply["pid"]) if "pid" in reply else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]  # EOF: it exits, jobs run on
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class LocalExecutor:
    """Starts, watches and stops a local cluster's job processes."""

    def __init__(self, name: str, home: Path, *, wake: threading.Event) -> None:
        self.name = name
        self.home = home
        self._wake = wake
        self._idle: deque[_Worker] = deque()
        self._running: dict[str, _Running] = {}
        self.min_workers = 0
        self.max_workers = 1
        self.idle_timeout = 600.0
        self._worker_log = home / "workers.log"
        self.preload: list[str] = []
        self._zygote: _Zygote | None = None
        self._zygote_starts: deque[float] = deque(maxlen=3)
        # (code snapshot, -c/-m head, preloaded modules) -> whether its code imports them
        self._uses: dict[tuple[Any, ...], bool] = {}
        home.mkdir(parents=True, exist_ok=True)

    # --- the warm pool ---------------------------------------------------------------------

    def configure(self, *, min_workers: int, max_workers: int, idle_timeout: float,
                  preload: list[str] | None = None) -> None:
        self.min_workers, self.max_workers = min_workers, max_workers
        self.idle_timeout = idle_timeout
        if preload is not None:
            self.preload = preload

    @staticmethod
    def _worker_env() -> dict[str, str]:
        # Not the control plane's own settings, nor MLflow's (a job gets its own of both).
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("CUMULO_") and k not in _NOT_INHERITED}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn(self) -> _Worker:
        with open(self._worker_log, "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cumulo.compute.runner"], stdin=subprocess.PIPE,
                stdout=err, stderr=err, cwd=self.home, env=self._worker_env(),
                start_new_session=True, close_fds=True,
            )
        return _Worker(proc, time.monotonic())

    def _keep_zygote(self) -> None:
        """Start the fork server if one is wanted and none runs; a fork server that keeps
        dying (three times in ten minutes) is not started again until the next restart."""
        if not self.preload:
            return
        if self._zygote is not None and not self._zygote.dead.is_set():
            return
        now = time.monotonic()
        if len(self._zygote_starts) == 3 and now - self._zygote_starts[0] < 600:
            return
        if self._zygote is not None:
            log.warning("fork server exited (code %s); starting another",
                        self._zygote.proc.returncode)
        self._zygote_starts.append(now)
        self._zygote = _Zygote(self.preload, cwd=self.home, env=self._worker_env(),
                               log_path=self._worker_log, wake=self._wake)

    @property
    def preloaded(self) -> list[str]:
        """The modules jobs start with, once the fork server is ready; else none."""
        return self._zygote.modules if self._zygote and self._zygote.usable else []

    @property
    def idle(self) -> int:
        return len(self._idle)

    def maintain(self, busy: int) -> None:
        """Top the pool up to ``min_workers`` idle; let surplus idle ones go after the timeout."""
        self._keep_zygote()
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

    def _retire(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.proc.stdin.close()  # type: ignore[union-attr]  # EOF: the worker exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.proc.wait(2)
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()

    def replenish(self, busy: int) -> None:
        """After a job ends, put a fresh worker in its place (up to ``max_workers``)."""
        if busy + len(self._idle) < self.max_workers:
            self._idle.append(self._spawn())

    # --- jobs ------------------------------------------------------------------------------

    def launch(self, job_id: str, spec: dict[str, Any]) -> tuple[int, float]:
        """Hand a job to the fork server, a warm worker or a fresh one; return its pid and
        start time."""
        if self._zygote is not None and self._zygote.usable:
            from cumulo.compute.runner import runs_in_process

            if runs_in_process(spec) and self._uses_preloaded(spec):
                pid = self._zygote.fork(spec)
                if pid is not None:
                    try:
                        started = psutil.Process(pid).create_time()
                    except psutil.Error:  # it has ended already: the zygote has its code
                        started = time.time()
                    self._running[job_id] = _Running(None, pid, started,
                                                     Path(spec["exit_file"]), self._zygote)
                    return pid, started
        line = json.dumps(spec).encode() + b"\n"
        while True:
            worker = self._idle.popleft() if self._idle else self._spawn()
            try:
                assert worker.proc.stdin is not None
                worker.proc.stdin.write(line)
                worker.proc.stdin.close()
                break
            except (BrokenPipeError, OSError):  # the worker died while idle: take another
                worker.proc.wait()
        proc = worker.proc
        started = psutil.Process(proc.pid).create_time()
        self._running[job_id] = _Running(proc, proc.pid, started, Path(spec["exit_file"]))
        threading.Thread(target=self._await, args=(proc,), daemon=True,
                         name=f"wait-{job_id}").start()
        return proc.pid, started

    def _uses_preloaded(self, spec: dict[str, Any]) -> bool:
        """Whether the job's code imports what the fork server preloaded. A code snapshot
        never changes, so its folder is read once per snapshot and command, not per job
        (every trial of a tuning study runs the same one)."""
        from cumulo.compute.runner import job_argv
        from cumulo.compute.zygote import uses_preloaded

        assert self._zygote is not None
        argv = job_argv(spec)
        # What is read: the folder, and the -c code or -m module (not the arguments after).
        head = tuple(argv[1:3]) if len(argv) > 2 and argv[1] in ("-c", "-m") else ()
        key = (spec.get("code"), head, tuple(self._zygote.modules))
        if spec.get("code") and key in self._uses:
            return self._uses[key]
        found = uses_preloaded(argv, spec.get("workdir"), self._zygote.modules)
        if spec.get("code"):
            if len(self._uses) > 1000:
                self._uses.clear()
            self._uses[key] = found
        return found

    def _await(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self._wake.set()

    def adopt(self, job_id: str, pid: int, started: float, exit_file: Path) -> None:
        """Watch a job started before the control plane restarted."""
        self._running[job_id] = _Running(None, pid, started, exit_file)

    def poll(self, job_id: str) -> ProcessExit | None:
        run = self._running.get(job_id)
        if run is None:
            return ProcessExit(None)
        if run.proc is not None:
            code = run.proc.poll()
            if code is None:
                return None
        elif run.zygote is not None and run.pid in run.zygote.exits:
            code = run.zygote.exits.pop(run.pid)
        elif run.zygote is not None and not run.zygote.dead.is_set():
            return None  # running, or ended and about to be reported by the fork server
        elif process_alive(run.pid, run.started):
            return None
        else:
            code = None
        del self._running[job_id]
        record = _read_exit(run.exit_file)
        if record:
            return ProcessExit(int(record["exit_code"]), record=record)
        if code is not None and code < 0:
            return ProcessExit(128 - code, signal=-code)
        return ProcessExit(code)

    def signal(self, job_id: str, sig: int) -> None:
        run = self._running.get(job_id)
        if run is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pid, sig)

    def sample(self, job_id: str) -> tuple[float, int] | None:
        """CPU-seconds and resident memory of the job's whole process tree, now."""
        run = self._running.get(job_id)
        if run is None:
            return None
        try:
            root = psutil.Process(run.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None
        cpu, rss = 0.0, 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                cpu += times.user + times.system
                rss += proc.memory_info().rss
        return cpu, rss

    @property
    def busy(self) -> int:
        return len(self._running)

    def shutdown(self) -> None:
        """Let the idle workers go; running jobs keep running and are found again at start."""
        while self._idle:
            self._retire(self._idle.popleft())
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None


def _read_exit(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
