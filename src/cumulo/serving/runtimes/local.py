"""Endpoints on this machine: replica processes sharing the endpoint's socket.

For each endpoint the runtime owns a listening socket on the endpoint's port and hands it to
every replica process (``cumulo.serving.worker``), which all accept from it. It has each
variant's model fetched (:meth:`cumulo.serving.manager.EndpointManager.fetch`), writes the
replicas' configuration (running replicas read it again when it changes), starts the replicas,
reads their stats, replaces a replica that dies, and fails the endpoint, with the replica's
own traceback, when a model cannot load.

Replicas start as forks of the serving fork server (:class:`Launcher`, on
:mod:`cumulo.forkserver`), which imported ``PRELOAD`` once when the control plane started;
until it is ready, or if it died, as new processes.

An endpoint whose models run in an environment of their own (:mod:`cumulo.serving.
environments`: the model's recorded requirements, or a named environment) has it resolved and
built in the fetch thread, while the endpoint stays ``creating`` and says so; its replicas then
start with that environment's interpreter: forked from the environment's own fork server
(started then, and kept while endpoints use it) once it is ready, as new processes until then.

The socket listens on the control plane's host (``host``: loopback unless ``cumulo up --host``
says otherwise). Each replica checks every invocation's Host header and token itself
(:mod:`cumulo.serving.gate`), against the live tokens the manager writes to one file for all
replicas (:mod:`cumulo.serving.allowed`); an endpoint created ``--public`` skips the token.

It scales the replicas as :func:`cumulo.serving.autoscaler.decide` says. The socket stays
open with no replicas, so a request that arrives then waits in its queue while the manager,
which watches the socket (:meth:`LocalRuntime.waiting`), has a replica started. A stopping
replica finishes the requests it has (it stops accepting, then answers what it holds) while
the others take new ones.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy.orm import Session

from cumulo.config import child_env
from cumulo.db import utcnow
from cumulo.errors import Conflict, CumuloError
from cumulo.forkserver import Forked, ForkServer
from cumulo.serving import autoscaler
from cumulo.serving.capture import CaptureBuffer
from cumulo.serving.environments import Choice
from cumulo.serving.metrics import SERVED, observe_scaling
from cumulo.serving.models import Endpoint
from cumulo.serving.runtimes.base import HELD_RETRY_AFTER, Manager, RuntimeBase, held_message

__all__ = ["PRELOAD", "Launcher", "LocalRuntime"]

log = logging.getLogger("cumulo.serving")

STOP_GRACE = 30.0  # seconds a stopping replica has to finish its requests before SIGKILL
ENV_FORKS_IDLE = 600.0  # seconds an environment's fork server outlives its last endpoint
MEMORY_SAMPLE = 10.0  # seconds between reads of a replica's resident memory, for metering
# What a replica imports before its model, preloaded by the serving fork server: its own
# stack, MLflow's pyfunc loader and the libraries of the usual models. Those not installed are
# skipped.
PRELOAD = ("numpy", "pandas", "pyarrow", "sklearn", "sklearn.linear_model", "sklearn.ensemble",
           "sklearn.pipeline", "sklearn.preprocessing", "skops.io", "lightgbm", "xgboost",
           "cloudpickle", "mlflow", "mlflow.pyfunc", "mlflow.sklearn", "mlflow.models",
           "uvloop", "httptools", "orjson", "cumulo.serving.worker", "cumulo.serving.replica",
           "cumulo.serving.http", "cumulo.serving.formats", "cumulo.serving.stats",
           "cumulo.ml.tabular")


class Launcher:
    """Starts replica processes, for every local endpoint: forked from the serving fork
    server when it is ready (:meth:`start_fork_server`), else as new processes. A replica in
    an environment of its own starts with that environment's interpreter, forked from the
    environment's fork server once it has one (:meth:`hold`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # A replica scores a request's batch in one thread: models must not start a pool each.
        self.env = child_env({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                              "MKL_NUM_THREADS": "1"})
        self.forks: ForkServer | None = None
        self.preload = False  # replicas fork from fork servers (setting serving_preload)
        self._lock = threading.Lock()
        self._env_forks: dict[str, ForkServer] = {}  # by an environment's interpreter
        self._holders: dict[str, int] = {}  # endpoints whose replicas run in it
        self._unheld: dict[str, float] = {}  # since when none has (time.monotonic())

    def start_fork_server(self) -> None:
        self.preload = True
        self.forks = ForkServer(PRELOAD, env=self.env, log_path=self.root / "zygote.log",
                                name="serving fork server")

    def launch(self, sock: socket.socket, config: Path, *,
               python: str | None = None) -> subprocess.Popen[bytes] | Forked:
        """A replica serving ``sock`` with the configuration at ``config``, in the
        environment of ``python`` (None: the server's); its stderr goes to ``replicas.log``
        beside it, its stdout (ready, failed, stats) to a pipe."""
        log_path = config.parent / "replicas.log"
        proc: subprocess.Popen[bytes] | Forked | None = None
        with self._lock:
            forks = self.forks if python is None else self._env_forks.get(python)
        if forks is not None and forks.usable:
            with open(log_path, "ab") as err:
                proc = forks.start("cumulo.serving.worker:forked",
                                   {"config": str(config)}, fds=[sock.fileno()],
                                   stderr=err.fileno(), pipe_stdout=True)
        if proc is None:
            with open(log_path, "ab") as err:
                proc = subprocess.Popen(
                    [python or sys.executable, "-m", "cumulo.serving.worker", "--fd",
                     str(sock.fileno()), "--config", str(config)],
                    pass_fds=[sock.fileno()], stdout=subprocess.PIPE, stderr=err,
                    env=self.env, start_new_session=True)
        return proc

    def hold(self, python: str) -> None:
        """An endpoint's replicas run in the environment of ``python``: it gets a fork server
        of its own (when replicas fork at all), kept until no endpoint has used it for
        ``ENV_FORKS_IDLE`` seconds, so that its replicas, and the next endpoint in it, start
        in well under a second."""
        with self._lock:
            self._holders[python] = self._holders.get(python, 0) + 1
            self._unheld.pop(python, None)
            forks = self._env_forks.get(python)
            if not self.preload or (forks is not None and forks.state in ("starting", "ready")):
                return
            if forks is not None:
                forks.stop()
            self._env_forks[python] = ForkServer(
                PRELOAD, env=self.env, log_path=self.root / "zygote.log", python=python,
                name=f"serving fork server (environment {Path(python).parts[-3][:12]})")

    def release(self, python: str) -> None:
        """One endpoint fewer runs in the environment of ``python``."""
        with self._lock:
            left = self._holders.get(python, 0) - 1
            if left > 0:
                self._holders[python] = left
                return
            self._holders.pop(python, None)
            self._unheld[python] = time.monotonic()

    def tend(self) -> None:
        """Let go of the fork servers of environments no endpoint has used for a while."""
        now = time.monotonic()
        with self._lock:
            idle = [p for p, since in self._unheld.items() if now - since > ENV_FORKS_IDLE]
            gone = [self._env_forks.pop(p) for p in idle if p in self._env_forks]
            for python in idle:
                del self._unheld[python]
        for forks in gone:
            forks.stop()

    def describe_envs(self) -> dict[str, Any]:
        """The environments' fork servers, by environment (a digest's first 12 characters)."""
        with self._lock:
            return {Path(p).parts[-3][:12]: f.describe() for p, f in self._env_forks.items()}

    def stop(self) -> None:
        with self._lock:
            servers = [self.forks, *self._env_forks.values()]
            self._env_forks.clear()
        for forks in servers:
            if forks is not None:
                forks.stop()


@dataclass(eq=False)
class Replica:
    proc: subprocess.Popen[bytes] | Forked
    started: float
    ready: threading.Event = field(default_factory=threading.Event)
    failed: str | None = None  # the replica's traceback, if its models did not load
    reader: threading.Thread | None = None  # reads its stdout: ready, failed, stats
    in_flight: int = 0
    load: float = 0.0  # requests in flight, averaged over its last report's interval
    generation: int = 0  # of the config it serves
    forked: bool = False  # by the fork server, not started afresh
    stopping: float | None = None  # when it was told to stop (scaled in)
    metered_until: float = 0.0  # the end of its last usage record (a time.time())
    memory: int = 0  # its largest resident memory seen, in bytes
    sampled: float = 0.0  # when its memory was read last
    # Its last two minutes of reports (per variant: requests, errors, latency histograms).
    stats: deque[tuple[float, dict[str, Any]]] = field(
        default_factory=lambda: deque(maxlen=240))


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it, an answer's body (a second write after
    # its headers) waits for the client's delayed ACK, 40 ms, on every request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


_REFUSE_READ = 65536  # bytes of a refused request read before the answer (best effort)


def refuse_waiting(sock: socket.socket, message: str, *, retry_after: int) -> int:
    """Answer every connection waiting on ``sock`` (at most its backlog) with 503, ``message``
    (JSON, as a replica's errors) and ``Retry-After``, then close it: for an endpoint that has
    no replica to answer and must not start one. The answers are written by a thread of their
    own, so that a slow client holds nobody up. How many connections were waiting."""
    taken = []
    sock.setblocking(False)
    try:
        while True:
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            taken.append(conn)
    finally:
        sock.setblocking(True)
    if not taken:
        return 0
    body = orjson.dumps({"error": {"code": "unavailable", "message": message}})
    answer = ("HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
              f"content-length: {len(body)}\r\nretry-after: {retry_after}\r\n"
              "connection: close\r\n\r\n").encode() + body

    def write() -> None:
        for conn in taken:
            with contextlib.suppress(OSError), conn:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    conn.recv(_REFUSE_READ)  # the request (or its head): read, not answered
                conn.sendall(answer)
                conn.shutdown(socket.SHUT_WR)

    threading.Thread(target=write, name="cumulo-held-refusals", daemon=True).start()
    return len(taken)


class LocalRuntime(RuntimeBase):
    """One endpoint's socket, models and replica processes."""

    def __init__(self, manager: Manager, endpoint: Endpoint, capture: CaptureBuffer) -> None:
        super().__init__(manager, endpoint, capture)
        self.sock = _listen(manager.host, endpoint.port)
        self.replicas: list[Replica] = []
        self.gone: list[Replica] = []
        self.restarts = 0
        self.early_exits = 0  # replicas in a row that ended before they were ready
        self.last_request = time.time()  # the last time a replica said it served a request
        self.low_since: float | None = None  # since when fewer replicas would do
        self.demand = False  # a connection waits while there are no replicas
        self.held: str | None = endpoint.held  # who holds it at zero (a budget), from its row
        self.scaling: deque[dict[str, Any]] = deque(maxlen=20)  # recent scaling decisions
        self.config_path: Path | None = None
        self.generation = 0  # of the replica config written last
        self._fetch: threading.Thread | None = None
        self.project_id = endpoint.project_id  # environments it resolves are the project's
        # Where each variant runs, by what decides it (_choice_key); the environment the
        # replicas run in (None: the server's) and its interpreter.
        self.choices: dict[tuple[Any, ...], Choice] = {}
        self.environment: str | None = None
        self.interpreter: str | None = None
        self.note: str | None = None  # what the endpoint waits for while it is created
        self._held: str | None = None  # the interpreter whose fork server is kept for it
        self._closed = False  # guarded by _hold, with _held: the fetch thread may hold late
        self._hold = threading.Lock()
        self.configure(endpoint)

    @classmethod
    def open(cls, manager: Manager, session: Session, endpoint: Endpoint,
             capture: CaptureBuffer, cluster: Any) -> LocalRuntime:
        return cls(manager, endpoint, capture)

    # --- models and configuration ----------------------------------------------------------

    def configure(self, endpoint: Endpoint) -> None:
        """Make the replicas' config for the endpoint's settings, if they changed: fetch new
        models in a thread, then write the config, which running replicas read again."""
        settings = {"endpoint": endpoint.name, "variants": endpoint.variants,
                    "max_batch_size": endpoint.max_batch_size,
                    "max_wait_ms": endpoint.max_wait_ms, "max_body": endpoint.max_body,
                    "capture_percent": endpoint.capture_percent, "public": endpoint.public}
        # The environment each variant runs in is recorded on the row as it is chosen
        # (_record): not a change of settings.
        asked = {**settings, "variants": [{k: v for k, v in variant.items()
                                           if k != "environment"}
                                          for variant in endpoint.variants]}
        wanted = json.dumps(asked, sort_keys=True)
        self.capture.table = endpoint.capture_table
        if wanted == self.wanted or (self._fetch is not None and self._fetch.is_alive()):
            return
        self.wanted = wanted
        self._fetch = threading.Thread(target=self._write_config, args=(settings, wanted),
                                       daemon=True, name=f"fetch-{endpoint.name}")
        self._fetch.start()

    def _environment(self, variants: list[dict[str, Any]],
                     dirs: list[Path]) -> tuple[str | None, str | None]:
        """The environment every variant runs in and its interpreter (None, None: the
        server's), chosen, resolved and built now (this is the fetch thread: it may take the
        build's time, while the endpoint says what it waits for)."""
        from cumulo.serving import environments

        def waiting(what: str) -> None:
            self.note = what
            self.manager.notify()

        def resolving(name: str) -> Callable[[str], None]:
            return lambda what: waiting(f"variant {name}: {what}")

        alongside = self.environment if self.config_path is not None else None
        chosen: dict[str, Choice] = {}
        with self.manager.sessions() as session:
            for variant, folder in zip(variants, dirs, strict=True):
                key = _choice_key(variant)
                if key not in self.choices:
                    named = variant.get("env") not in (None, environments.SERVER,
                                                       environments.MODEL)
                    self.choices[key] = environments.choose(
                        session, folder, env=variant.get("env"),
                        digest=variant.get("environment") if named else None,
                        alongside=alongside or next(
                            (c.digest for c in chosen.values() if c.digest), None),
                        project_id=self.project_id,
                        waiting=resolving(variant["name"]))
                chosen[variant["name"]] = self.choices[key]
        digest = environments.endpoint_environment(chosen)
        if self.config_path is not None and digest != self.environment:
            now = (f"environment {self.environment[:12]}" if self.environment
                   else "the server's environment")
            raise Conflict(f"the endpoint's replicas run in {now} and this configuration needs "
                           f"{environments.describe(next(iter(chosen.values())))}: an "
                           "endpoint's environment stays what it was created with; serve "
                           "the new model on a new endpoint")
        if digest is None:
            return None, None
        if self.manager.envs is None:
            raise Conflict("this control plane builds no environments; serve the model with "
                           "--env server")
        for name, choice in chosen.items():
            if choice.note:
                log.warning("endpoint %s, variant %s: %s", self.name, name, choice.note)
        python = environments.interpreter(self.manager.envs, self.manager.sessions, digest,
                                          waiting=waiting)
        with self._hold:
            if self._held is None and not self._closed:
                # Its replicas fork from the environment's own fork server once that is ready
                # (in a fraction of a second); it starts now, and is not waited for: on a busy
                # machine importing its whole preload takes longer than a first replica
                # started afresh.
                self.manager.launcher.hold(python)
                self._held = python
        return digest, python

    def _write_config(self, settings: dict[str, Any], wanted: str) -> None:
        try:
            variants = settings["variants"]
            dirs = [self.manager.fetch(v["model"], v["version"]) for v in variants]
            environment, interpreter = self._environment(variants, dirs)
            generation = self.generation + 1
            config = {
                **settings, "stats_interval": 0.5, "generation": generation,
                "tokens_file": str(self.manager.allowed.path_for(self.name)),
                "hosts": self.manager.served_names,
                "variants": [{"name": v["name"], "model_dir": str(d), "weight": v["weight"],
                              "shadow": v.get("shadow", False)}
                             for v, d in zip(variants, dirs, strict=True)]}
            folder = self.manager.root / "endpoints" / self.name
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "replica.json"
            tmp = folder / f".replica.json.{generation}"
            tmp.write_text(json.dumps(config, indent=1))
            tmp.replace(path)  # replicas see the whole new file or the old one
            self.environment, self.interpreter, self.note = environment, interpreter, None
            self.variants, self.generation, self.config_path = variants, generation, path
        except Exception as exc:
            if isinstance(exc, CumuloError):  # said for a person: no traceback
                log.warning("endpoint %s: %s", self.name, exc.message)
                message = exc.message
            else:
                log.warning("endpoint %s: fetching its models failed: %s", self.name, exc)
                message = f"fetching the models failed: {exc}\n{traceback.format_exc()}"
            if self.config_path is None:
                self.error = message
            else:
                self.update_error = message
                self.wanted = ""  # try again when the settings change (a rollback, say)
        finally:
            self.manager.notify()

    def applied(self) -> bool:
        """Every serving replica runs the config of the endpoint's current settings."""
        if self._fetch is not None and self._fetch.is_alive():
            return False
        serving = [r for r in self.replicas if r.stopping is None]
        # With no replicas (scaled to zero), the next one reads the config as it is.
        return all(r.ready.is_set() and r.generation == self.generation for r in serving)

    # --- replicas ------------------------------------------------------------------------------

    def _spawn(self) -> Replica:
        assert self.config_path is not None
        proc = self.manager.launcher.launch(self.sock, self.config_path,
                                            python=self.interpreter)
        now = time.time()
        replica = Replica(proc, now, metered_until=now, forked=isinstance(proc, Forked))
        replica.reader = threading.Thread(target=self._read, args=(replica,), daemon=True,
                                          name=f"replica-{proc.pid}")
        replica.reader.start()
        return replica

    def _read(self, replica: Replica) -> None:
        """Read what the replica says on its stdout, one JSON object a line, until it ends."""
        stream: IO[bytes] | None = replica.proc.stdout
        assert stream is not None
        for line in stream:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            self._heard(replica, message)
        stream.close()
        replica.proc.wait()
        self.manager.notify()

    def _heard(self, replica: Replica, message: dict[str, Any]) -> None:
        if "generation" in message:
            replica.generation = int(message["generation"])
        if "reload_failed" in message:
            self.update_error = ("a replica could not load the new configuration:\n"
                                 + str(message["reload_failed"]))
            self.manager.notify()
        elif "ready" in message:
            log.info("endpoint %s: replica %s ready in %.2fs", self.name, replica.proc.pid,
                     message["ready"])
            replica.ready.set()
            # A new replica gets a whole idle period to take the request it may have
            # been started for.
            self.last_request = max(self.last_request, time.time())
            self.manager.notify()
        elif "failed" in message:
            replica.failed = str(message["failed"])
            self.manager.notify()
        elif "in_flight" in message:
            replica.in_flight = int(message["in_flight"])
            replica.load = float(message.get("load", replica.in_flight))
            variants = message.get("variants", {})
            replica.stats.append((time.time(), variants))
            SERVED.add(self.name, variants)
            if replica.in_flight or any(v.get("requests") for v in variants.values()):
                self.last_request = time.time()
            if message.get("capture"):
                self.capture.add(message["capture"])

    def step(self, endpoint: Endpoint, session: Session) -> None:
        """Move the endpoint towards its settings; record its state on the row."""
        if not self._settle(endpoint, session):
            return
        self._record(endpoint)
        if self.config_path is None:  # still fetching the models, or building their environment
            if endpoint.state == "creating" and self.note and endpoint.message != self.note:
                endpoint.message, endpoint.updated_at = self.note, utcnow()
            return
        if not self._tend(endpoint, session):
            return  # it failed
        self._scale(endpoint)
        if endpoint.state == "creating" and any(r.ready.is_set() for r in self.replicas):
            endpoint.state, endpoint.updated_at = "in_service", utcnow()
            endpoint.message = None  # what it waited for
        if endpoint.state == "updating" and endpoint.rollout:
            self._shift(endpoint)

    def _record(self, endpoint: Endpoint) -> None:
        """Write on each variant the environment it runs in, once chosen (``environment``:
        a digest, or None for the server's), for show and for ``cumulo envs rm``."""
        variants, changed = [], False
        for variant in endpoint.variants:
            choice = self.choices.get(_choice_key(variant))
            if choice is not None and ("environment" not in variant
                                       or variant["environment"] != choice.digest):
                variant, changed = {**variant, "environment": choice.digest}, True
            variants.append(variant)
        if changed:
            endpoint.variants = variants

    def _tend(self, endpoint: Endpoint, session: Session) -> bool:
        """Look at each replica: count those that ended, meter those that run, kill those
        that take too long to stop. False if the endpoint failed."""
        for replica in list(self.replicas):
            if replica.proc.poll() is not None and replica.reader is not None:
                replica.reader.join(2)  # what it said before it ended: its traceback, say
            if replica.failed:
                self._fail(endpoint, session,
                           "a replica could not load the model:\n" + replica.failed)
                return False
            if replica.proc.poll() is not None:
                problem = self._ended(replica, endpoint, session)
                if problem is not None:
                    self._fail(endpoint, session, problem)
                    return False
                continue
            if replica.ready.is_set():
                self.early_exits = 0
            if replica.stopping is not None and time.time() - replica.stopping > STOP_GRACE:
                with contextlib.suppress(ProcessLookupError):
                    replica.proc.kill()
            self._sample_memory(replica)
            self._meter(session, endpoint, replica)
        return True

    def _ended(self, replica: Replica, endpoint: Endpoint, session: Session) -> str | None:
        """A replica ended: forget it (its last reports still count), meter it, and say why
        the endpoint fails, if it does."""
        assert self.config_path is not None
        self.replicas.remove(replica)
        self.gone = [*self.gone[-9:], replica]
        self._meter(session, endpoint, replica, ended=True)
        if replica.stopping is not None:
            return None  # scaled in: it was told to stop
        if replica.ready.is_set():
            self.restarts += 1
            log.warning("endpoint %s: replica %s exited (code %s); replacing it",
                        self.name, replica.proc.pid, replica.proc.returncode)
            return None
        self.early_exits += 1
        if endpoint.state == "creating" or self.early_exits >= 3:
            return (f"a replica exited with code {replica.proc.returncode} before it was "
                    f"ready; see {self.config_path.parent}/replicas.log")
        return None

    def _sample_memory(self, replica: Replica) -> None:
        now = time.time()
        if not replica.ready.is_set() or now - replica.sampled < MEMORY_SAMPLE:
            return
        replica.sampled = now
        with contextlib.suppress(Exception):
            import psutil

            replica.memory = max(replica.memory, int(
                psutil.Process(replica.proc.pid).memory_info().rss))

    def _scale(self, endpoint: Endpoint) -> None:
        """Start or stop replicas as the autoscaler decides."""
        self.held = endpoint.held
        now = time.time()
        serving = [r for r in self.replicas if r.stopping is None]
        ready = [r for r in serving if r.ready.is_set()]
        decision = autoscaler.decide(
            autoscaler.Policy.of(endpoint),
            autoscaler.Fleet(len(serving), len(ready), sum(r.load for r in ready)),
            last_request=self.last_request, demand=self.demand, low_since=self.low_since,
            now=now)
        # A replica's reader may have moved last_request on meanwhile.
        self.last_request = max(self.last_request, decision.last_request)
        self.low_since, self.demand = decision.low_since, False
        have = len(serving)
        if decision.reason is not None:
            self._note(have, decision.wanted, decision.reason)
        if decision.wanted > have:
            for _ in range(decision.wanted - have):
                self.replicas.append(self._spawn())
        elif decision.wanted < have:
            # The newest go first: the oldest have warmed their caches.
            for replica in sorted(serving, key=lambda r: r.started)[decision.wanted:]:
                replica.stopping = now
                with contextlib.suppress(ProcessLookupError):
                    replica.proc.terminate()

    def _note(self, have: int, wanted: int, reason: str) -> None:
        observe_scaling(self.name, have=have, wanted=wanted)
        if have or wanted:
            log.info("endpoint %s: %d -> %d replicas (%s)", self.name, have, wanted, reason)
        self.scaling.append({"at": time.time(), "from": have, "to": wanted, "reason": reason})

    def waiting(self) -> socket.socket | None:
        """The socket to watch for a connection that waits for a replica, if there are
        none now (held at zero: for connections to refuse)."""
        if self.config_path is None or self.error or (self.demand and self.held is None):
            return None
        return None if any(r.stopping is None for r in self.replicas) else self.sock

    def request_waits(self) -> None:
        if self.held is not None:
            refuse_waiting(self.sock, held_message(self.name, self.held),
                           retry_after=HELD_RETRY_AFTER)
            return
        self.demand = True  # the next step starts a replica

    def report(self, message: dict[str, Any]) -> bool:
        return False  # local replicas report on their pipes

    def _fail(self, endpoint: Endpoint, session: Session, message: str) -> None:
        self.stop_replicas(session, endpoint)
        super()._fail(endpoint, session, message)

    def stop_replicas(self, session: Session | None = None,
                      endpoint: Endpoint | None = None) -> None:
        for replica in self.replicas:
            with contextlib.suppress(ProcessLookupError):
                replica.proc.terminate()
        deadline = time.monotonic() + 5
        for replica in self.replicas:
            with contextlib.suppress(subprocess.TimeoutExpired):
                replica.proc.wait(max(0.0, deadline - time.monotonic()))
            if replica.proc.poll() is None:
                replica.proc.kill()
                replica.proc.wait()
            if session is not None and endpoint is not None:
                self._meter(session, endpoint, replica, ended=True)
        self.replicas = []

    def close(self, session: Session | None = None, endpoint: Endpoint | None = None, *,
              delete: bool = False) -> None:
        """Stop the replicas and close the socket (whether or not the endpoint is deleted:
        a local endpoint leaves nothing behind)."""
        self.stop_replicas(session, endpoint)
        self.sock.close()
        with self._hold:
            self._closed = True
            if self._held is not None:
                self.manager.launcher.release(self._held)
                self._held = None

    def reports(self, since: float) -> list[dict[str, Any]]:
        """What every replica, running or gone, reported after ``since`` (a time.time())."""
        return [variants for r in [*self.replicas, *self.gone] for at, variants in r.stats
                if at > since]

    def describe(self) -> dict[str, Any]:
        return {"replicas": [{"pid": r.proc.pid, "ready": r.ready.is_set(),
                              "in_flight": r.in_flight, "load": r.load,
                              "stopping": r.stopping is not None, "forked": r.forked,
                              "started_at": r.started}
                             for r in self.replicas if r.proc.poll() is None],
                "restarts": self.restarts, "scaling": list(self.scaling)}


def _choice_key(variant: dict[str, Any]) -> tuple[Any, ...]:
    """What decides where a variant runs: its model version and its env as asked (with a
    named environment's digest)."""
    env = variant.get("env")
    named = env not in (None, "server", "model")
    return (variant["name"], variant["model"], str(variant["version"]), env,
            variant.get("environment") if named else None)
