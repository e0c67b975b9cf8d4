"""Where jobs run: one :class:`Executor` per cluster, chosen by the cluster's type.

Modelled on ``storage/backends/``: a documented Protocol, one module per backend, imported
lazily when a cluster of that type exists. The supervisor (``compute/supervisor.py``) decides
what runs when and records everything in the database; an executor only starts, watches and
stops the processes of its cluster. Adding a backend (Kubernetes, say) is one module here and
one line in ``_BACKENDS``.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Attempt", "Executor", "Found", "Launch", "Launched", "ProcessExit", "Resources",
           "executor_class", "new_executor"]

_BACKENDS = {"local": "cumulo.compute.executors.local:LocalExecutor",
             "ray": "cumulo.compute.executors.ray:RayExecutor"}


@dataclass
class ProcessExit:
    """How an attempt's process ended."""

    exit_code: int | None  # None: ended without telling us how
    signal: int | None = None
    record: dict[str, Any] = field(default_factory=dict)  # the runner's exit record, if any
    message: str | None = None  # what the cluster said about a failure, if anything


@dataclass(frozen=True)
class Resources:
    cpus: float
    memory: int  # bytes
    gpus: int


@dataclass(frozen=True)
class Found:
    """What probing a cluster found, to register it."""

    resources: Resources
    endpoint: str | None = None  # the address it answers at, when that differs
    python: str | None = None  # the interpreter that runs Cumulo there


@dataclass
class Launch:
    """One attempt of a job, as the supervisor hands it to an executor."""

    job_id: str
    attempt: int
    spec: dict[str, Any]  # the runner's spec: entry/command/args/env/code/exit_file
    job_dir: Path  # this machine's folder for the job (work/, output/, checkpoints/)
    code: Path | None  # the job's code snapshot, extracted, if it has one
    log: Path  # where the attempt's output goes on this machine
    exit_file: Path
    cpus: float
    memory: int | None
    gpus: int
    # Its environment (None: the server's own): the interpreter of its build on this machine
    # (for executors that run jobs here), and what it is (for those that build it elsewhere,
    # as Ray does from the pins: digest, lock, python, isolated).
    python: str | None = None
    environment: dict[str, Any] | None = None
    image: str | None = None  # a container image to run the runner in (local clusters)


@dataclass(frozen=True)
class Launched:
    """What to record about a started attempt, to find it again after a restart."""

    pid: int | None = None
    pid_started: float | None = None
    backend_ref: str | None = None
    running: bool = True  # False: accepted, and waiting for the cluster to start it


@dataclass(frozen=True)
class Attempt:
    """A running attempt as the database recorded it, for :meth:`Executor.adopt`."""

    job_id: str
    pid: int | None
    pid_started: float | None
    backend_ref: str | None
    exit_file: Path


class Executor(Protocol):
    """Starts, watches and stops one cluster's jobs. Every method is called from the
    supervisor's thread."""

    name: str
    # Jobs run on other machines: they make their own folders there and send their outputs,
    # checkpoints and exit record home over HTTP (else they use ``Launch.job_dir`` here).
    remote: bool

    @classmethod
    def probe(cls, address: str | None, *, python: str | None = None) -> Found:
        """Check that a cluster of this type can be reached at ``address`` (with ``python``,
        where the cluster runs an interpreter of its own) and find what it has in all, to
        register it. Raises Invalid for settings this type does not take."""
        ...

    def configure(self, cluster: Any) -> None:
        """Apply the cluster's settings (its row); called each step."""
        ...

    def launch(self, launch: Launch) -> Launched:
        """Start an attempt. Raises when it cannot: the attempt then fails with the reason."""
        ...

    def adopt(self, attempt: Attempt) -> bool:
        """Watch an attempt started before the control plane restarted; False if there is
        nothing to watch (it was never handed to a process: queue it again)."""
        ...

    def poll(self, job_id: str) -> ProcessExit | None:
        """None while the attempt runs; how it ended once it has (it is forgotten then)."""
        ...

    def running(self, job_id: str) -> bool:
        """Whether the cluster runs the attempt now (not just accepted it)."""
        ...

    def signal(self, job_id: str, sig: int) -> None:
        """Send ``sig`` to the attempt (all of it: every process below its runner, in its
        process group or not); SIGKILL ends it."""
        ...

    def sample(self, job_id: str) -> tuple[float, int] | None:
        """CPU-seconds and resident memory of the attempt now, where the cluster says."""
        ...

    def logs(self, backend_ref: str) -> str | None:
        """The attempt's output as the cluster keeps it; None where the log is ``Launch.log``."""
        ...

    @property
    def busy(self) -> int:
        """Attempts running."""
        ...

    @property
    def idle(self) -> int:
        """Warm workers waiting for a job."""
        ...

    @property
    def preloaded(self) -> list[str]:
        """The modules Python jobs start with already imported."""
        ...

    def maintain(self, busy: int, *, ended: bool = False) -> None:
        """Each step, and at once after an attempt ``ended``: keep warm capacity ready."""
        ...

    def shutdown(self) -> None:
        """The control plane stops: let idle capacity go; running attempts run on."""
        ...


def executor_class(kind: str) -> type[Executor]:
    """The executor for clusters of type ``kind``, imported on first use."""
    from cumulo.errors import Invalid

    if kind not in _BACKENDS:
        raise Invalid(f"cluster type {kind!r} is not known; use {' or '.join(_BACKENDS)}")
    module, _, name = _BACKENDS[kind].partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def new_executor(cluster: Any, *, home: Path, wake: threading.Event, preload: str) -> Executor:
    """An executor for ``cluster`` (its row): ``home`` is its folder on this machine, ``wake``
    is set when one of its attempts ends, ``preload`` is the server's preload setting."""
    return executor_class(cluster.type)(cluster.name, home=home, wake=wake,  # type: ignore[call-arg]
                                        address=cluster.endpoint or cluster.address,
                                        preload=preload)
