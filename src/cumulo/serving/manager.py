"""The endpoint manager: runs each endpoint's replicas on this machine, and keeps them running.

For each endpoint it owns a listening socket on the endpoint's port and hands it to every
replica process (``cumulo.serving.worker``), which all accept from it. It fetches each
variant's model from the registry once (a version never changes, so the copy under
``<home>/serving/models/NAME/VERSION`` serves every replica and restart), starts the replicas,
reads their stats, replaces a replica that dies, and marks the endpoint failed, with the
replica's own traceback, when a model cannot load.

Autoscaling: every step, the endpoint wants ``ceil(load / target_in_flight)`` replicas, where
load is the requests in flight averaged over the replicas' last reports, kept between
``min_replicas`` and ``max_replicas``. It scales out at once and in only after the load has
stayed lower for ``scale_in_cooldown`` seconds. With ``min_replicas`` 0 it keeps one replica
until no request came for ``scale_to_zero_after`` seconds, then stops them all; the socket
stays open, so a request that arrives then waits in its queue while the manager, which watches
the socket, starts a replica. A stopping replica finishes the requests it has (it stops
accepting, then answers what it holds) while the others take new ones.

Metering: each replica's life is a usage record of kind ``endpoint`` (one vCPU reserved, and
its resident memory), written when it stops and every few minutes while it runs, so ``cumulo
costs`` shows what each endpoint cost and an endpoint scaled to zero costs nothing.
"""

from __future__ import annotations

import array
import contextlib
import copy
import json
import logging
import math
import os
import select as selectors_
import shutil
import signal
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

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from cumulo.config import Settings
from cumulo.db import utcnow
from cumulo.metering import usage
from cumulo.serving.models import Endpoint
from cumulo.storage.backends import Backend

__all__ = ["EndpointManager", "summarize"]

log = logging.getLogger("cumulo.serving")

METER_INTERVAL = 300.0  # seconds between usage records of a replica that keeps running
STOP_GRACE = 30.0  # seconds a stopping replica has to finish its requests before SIGKILL
MEMORY_SAMPLE = 10.0  # seconds between reads of a replica's resident memory, for metering
RAY_REPLICA_LOST = 15.0  # a Ray Serve replica not heard from for this long has ended


class _Waker:
    """An event the manager's loop waits on together with the endpoints' sockets (a pipe, so
    that ``select`` sees it)."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._w, b"x")

    def wait(self, timeout: float, sockets: list[socket.socket] | None = None) -> list[Any]:
        """Sleep until set, a socket has a connection waiting, or ``timeout``; the sockets
        that are readable."""
        watched: list[Any] = [self._r, *(sockets or [])]
        ready = selectors_.select(watched, [], [], timeout)[0]
        if self._r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._r, 4096)
        return [s for s in ready if s is not self._r]

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


class _Forked:
    """A replica forked by the fork server, with the part of Popen's interface the runtime
    uses. Its exit code comes from the fork server, which is its parent."""

    def __init__(self, pid: int, stdout: IO[bytes]) -> None:
        self.pid = pid
        self.stdout: IO[bytes] | None = stdout
        self.returncode: int | None = None
        self._ended = threading.Event()

    def ended(self, code: int) -> None:
        self.returncode = code
        self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"replica {self.pid}", timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def _signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


class _ForkServer:
    """The manager's side of :mod:`cumulo.serving.zygote`: starts it, asks it for replicas,
    and hands each replica its exit code. Starts are refused (None) until it is ready, and
    after it died; the manager then starts replicas as fresh processes."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cumulo.serving.zygote", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log_file, env=env, start_new_session=True)
        theirs.close()
        self.state = "starting"  # ready, failed (with why), stopped
        self.why: str | None = None
        self.modules: list[str] = []
        self._lock = threading.Lock()  # one start at a time: its answer is the next pid
        self._pids: deque[int | str] = deque()
        self._got = threading.Condition()
        self._children: dict[int, _Forked] = {}
        self._early: dict[int, int] = {}  # exits reported before their start returned
        self._reader = threading.Thread(target=self._read, daemon=True, name="serving-zygote")
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.control.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            message = json.loads(data)
            with self._got:
                if "ready" in message:
                    self.state, self.modules = "ready", list(message["modules"])
                    log.info("serving fork server ready in %.2fs", message["ready"])
                elif "pid" in message or "error" in message:
                    if self.state == "starting":  # it could not become ready
                        self.state, self.why = "failed", str(message["error"])
                    self._pids.append(message.get("pid") or str(message.get("error")))
                    self._got.notify_all()
                elif "exit" in message:
                    child = self._children.pop(message["exit"], None)
                    if child is None:
                        self._early[message["exit"]] = int(message["code"])
                    else:
                        child.ended(int(message["code"]))
        with self._got:  # it is gone: its children's codes are unknown
            if self.state != "stopped":
                self.state, self.why = "failed", f"exited with code {self.proc.wait()}"
                log.warning("serving fork server %s; replicas start as new processes",
                            self.why)
            for child in self._children.values():
                child.ended(-1)
            self._children.clear()
            self._got.notify_all()

    def start(self, listener: socket.socket, log_path: Path) -> _Forked | None:
        if self.state != "ready":
            return None
        read_end, write_end = os.pipe()
        try:
            with self._lock, open(log_path, "ab") as log_file:
                self.control.sendmsg(
                    [json.dumps({"config": str(log_path.parent / "replica.json")}).encode()],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                      array.array("i", [listener.fileno(), write_end,
                                        log_file.fileno()]).tobytes())])
                with self._got:
                    if not self._got.wait_for(lambda: self._pids or self.state != "ready", 10):
                        raise TimeoutError("the fork server did not answer in 10s")
                    if not self._pids:
                        raise OSError(f"the fork server {self.why}")
                    answer = self._pids.popleft()
                    if isinstance(answer, str):
                        raise OSError(answer)
                    child = _Forked(answer, os.fdopen(read_end, "rb"))
                    read_end = -1
                    if answer in self._early:
                        child.ended(self._early.pop(answer))
                    else:
                        self._children[answer] = child
                    return child
        except (OSError, TimeoutError) as exc:
            log.warning("serving fork server could not start a replica (%s); starting a "
                        "new process instead", exc)
            return None
        finally:
            os.close(write_end)
            if read_end >= 0:
                os.close(read_end)

    def describe(self) -> dict[str, Any]:
        return {"state": self.state, "pid": self.proc.pid, "modules": self.modules,
                "why": self.why}

    def stop(self) -> None:
        with self._got:
            self.state = "stopped"
        with contextlib.suppress(OSError):
            self.control.shutdown(socket.SHUT_RDWR)
        self.control.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass(eq=False)
class _Replica:
    proc: subprocess.Popen[bytes] | _Forked
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


@dataclass(eq=False)
class _RayReplica:
    """A Ray Serve replica, as its reports to the control plane describe it."""

    id: str
    pid: int | None
    node: str | None
    started: float  # its first report
    seen: float  # its last report
    metered_until: float
    in_flight: int = 0
    load: float = 0.0
    memory: int = 0  # its largest resident memory reported, in bytes
    stats: deque[tuple[float, dict[str, Any]]] = field(
        default_factory=lambda: deque(maxlen=240))


class _Runtime:
    """One endpoint's socket, models and replica processes."""

    def __init__(self, manager: EndpointManager, endpoint: Endpoint) -> None:
        self.manager = manager
        self.name = endpoint.name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it, an answer's body (a second write after
        # its headers) waits for the client's delayed ACK, 40 ms, on every request.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind((manager.host, endpoint.port))
        self.sock.listen(2048)
        self.replicas: list[_Replica] = []
        self.gone: list[_Replica] = []
        self.restarts = 0
        self.early_exits = 0  # replicas in a row that ended before they were ready
        self.variants = endpoint.variants
        now = time.time()
        self.last_request = now  # the last time a replica said it served a request
        self.low_since: float | None = None  # since when fewer replicas would do
        self.demand = False  # a connection waits while there are no replicas
        self.scaling: deque[dict[str, Any]] = deque(maxlen=20)  # recent scaling decisions
        self.config_path: Path | None = None
        self.error: str | None = None  # why the models could not be fetched at first
        self.update_error: str | None = None  # why a later configuration could not be served
        self.generation = 0  # of the replica config written last
        self.wanted = ""  # the settings (JSON) the config is being made or was made for
        self.capture_table: str | None = None
        self.capture: list[dict[str, Any]] = []  # captured requests not yet in the table
        self._fetch: threading.Thread | None = None
        self.configure(endpoint)

    # --- models and configuration ----------------------------------------------------------

    def configure(self, endpoint: Endpoint) -> None:
        """Make the replicas' config for the endpoint's settings, if they changed: fetch new
        models in a thread, then write the config, which running replicas read again."""
        settings = {"endpoint": endpoint.name, "variants": endpoint.variants,
                    "max_batch_size": endpoint.max_batch_size,
                    "max_wait_ms": endpoint.max_wait_ms, "max_body": endpoint.max_body,
                    "capture_percent": endpoint.capture_percent}
        wanted = json.dumps(settings, sort_keys=True)
        self.capture_table = endpoint.capture_table
        if wanted == self.wanted or (self._fetch is not None and self._fetch.is_alive()):
            return
        self.wanted = wanted
        self._fetch = threading.Thread(target=self._write_config, args=(settings, wanted),
                                       daemon=True, name=f"fetch-{endpoint.name}")
        self._fetch.start()

    def _write_config(self, settings: dict[str, Any], wanted: str) -> None:
        try:
            variants = settings["variants"]
            dirs = [self.manager.fetch(v["model"], v["version"]) for v in variants]
            generation = self.generation + 1
            config = {
                **settings, "stats_interval": 0.5, "generation": generation,
                "variants": [{"name": v["name"], "model_dir": str(d), "weight": v["weight"],
                              "shadow": v.get("shadow", False)}
                             for v, d in zip(variants, dirs, strict=True)]}
            folder = self.manager.root / "endpoints" / self.name
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "replica.json"
            tmp = folder / f".replica.json.{generation}"
            tmp.write_text(json.dumps(config, indent=1))
            tmp.replace(path)  # replicas see the whole new file or the old one
            self.variants, self.generation, self.config_path = variants, generation, path
        except Exception as exc:
            log.warning("endpoint %s: fetching its models failed: %s", self.name, exc)
            message = f"fetching the models failed: {exc}\n{traceback.format_exc()}"
            if self.config_path is None:
                self.error = message
            else:
                self.update_error = message
                self.wanted = ""  # try again when the settings change (a rollback, say)
        finally:
            self.manager.wake.set()

    def applied(self) -> bool:
        """Every serving replica runs the config of the endpoint's current settings."""
        if self._fetch is not None and self._fetch.is_alive():
            return False
        serving = [r for r in self.replicas if r.stopping is None]
        # With no replicas (scaled to zero), the next one reads the config as it is.
        return all(r.ready.is_set() and r.generation == self.generation for r in serving)

    # --- replicas ------------------------------------------------------------------------------

    def _spawn(self) -> _Replica:
        assert self.config_path is not None
        log_path = self.config_path.parent / "replicas.log"
        forks = self.manager.forks
        proc: subprocess.Popen[bytes] | _Forked | None = (
            forks.start(self.sock, log_path) if forks is not None else None)
        if proc is None:
            with open(log_path, "ab") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "cumulo.serving.worker", "--fd",
                     str(self.sock.fileno()), "--config", str(self.config_path)],
                    pass_fds=[self.sock.fileno()], stdout=subprocess.PIPE, stderr=err,
                    env=self.manager.worker_env, start_new_session=True)
        now = time.time()
        replica = _Replica(proc, now, metered_until=now, forked=isinstance(proc, _Forked))
        replica.reader = threading.Thread(target=self._read, args=(replica,), daemon=True,
                                          name=f"replica-{proc.pid}")
        replica.reader.start()
        return replica

    def _read(self, replica: _Replica) -> None:
        stream: IO[bytes] | None = replica.proc.stdout
        assert stream is not None
        for line in stream:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "generation" in message:
                replica.generation = int(message["generation"])
            if "reload_failed" in message:
                self.update_error = ("a replica could not load the new configuration:\n"
                                     + str(message["reload_failed"]))
                self.manager.wake.set()
            elif "ready" in message:
                log.info("endpoint %s: replica %s ready in %.2fs", self.name, replica.proc.pid,
                         message["ready"])
                replica.ready.set()
                # A new replica gets a whole idle period to take the request it may have
                # been started for.
                self.last_request = max(self.last_request, time.time())
                self.manager.wake.set()
            elif "failed" in message:
                replica.failed = str(message["failed"])
                self.manager.wake.set()
            elif "in_flight" in message:
                replica.in_flight = int(message["in_flight"])
                replica.load = float(message.get("load", replica.in_flight))
                variants = message.get("variants", {})
                replica.stats.append((time.time(), variants))
                if replica.in_flight or any(v.get("requests") for v in variants.values()):
                    self.last_request = time.time()
                if message.get("capture"):
                    with self.manager.capture_lock:
                        self.capture.extend(message["capture"])
        stream.close()
        replica.proc.wait()
        self.manager.wake.set()

    def step(self, endpoint: Endpoint, session: Session) -> None:
        """Move the endpoint towards its settings; record its state on the row."""
        if endpoint.state == "failed":
            return
        if self.error:
            self._fail(endpoint, session, self.error)
            return
        self.configure(endpoint)
        if self.config_path is None:
            return  # still fetching the models
        for replica in list(self.replicas):
            if replica.proc.poll() is not None and replica.reader is not None:
                replica.reader.join(2)  # what it said before it ended: its traceback, say
            if replica.failed:
                self._fail(endpoint, session,
                           "a replica could not load the model:\n" + replica.failed)
                return
            if replica.proc.poll() is not None:
                self.replicas.remove(replica)
                self.gone = [*self.gone[-9:], replica]  # its last reports still count
                self.manager.meter(session, endpoint, replica, ended=True)
                if replica.stopping is not None:
                    continue  # scaled in: it was told to stop
                if replica.ready.is_set():
                    self.restarts += 1
                    log.warning("endpoint %s: replica %s exited (code %s); replacing it",
                                self.name, replica.proc.pid, replica.proc.returncode)
                else:
                    self.early_exits += 1
                    if endpoint.state == "creating" or self.early_exits >= 3:
                        self._fail(endpoint, session, f"a replica exited with code "
                                   f"{replica.proc.returncode} before it was ready; see "
                                   f"{self.config_path.parent}/replicas.log")
                        return
            else:
                if replica.ready.is_set():
                    self.early_exits = 0
                if replica.stopping is not None and (
                        time.time() - replica.stopping > STOP_GRACE):
                    with contextlib.suppress(ProcessLookupError):
                        replica.proc.kill()
                self.manager.meter(session, endpoint, replica)
        self._scale(endpoint)
        if endpoint.state == "creating" and any(r.ready.is_set() for r in self.replicas):
            endpoint.state, endpoint.updated_at = "in_service", utcnow()
        if endpoint.state == "updating" and endpoint.rollout:
            self._shift(endpoint)

    def _shift(self, endpoint: Endpoint) -> None:
        """Carry a traffic shift one step further, or roll it back."""
        from cumulo.serving import rollout as rollouts

        state = copy.deepcopy(endpoint.rollout)
        assert state is not None
        metrics = None
        variants: list[dict[str, Any]] | None
        if state.get("step_started_at"):
            since = state["step_started_at"]
            window = max(1.0, time.time() - since)
            metrics = summarize(self.reports(since), window)["variants"].get(state["variant"])
        if self.update_error and state["state"] in ("shifting", "baking"):
            now = time.time()
            reason = self.update_error.strip().splitlines()[-1]
            state.update(state="rolling_back", reason=reason, error=self.update_error)
            state["log"].append({"at": now, "event": f"rolling back: {reason}"})
            action, variants = "rollback", [dict(v) for v in state["previous"]]
            self.update_error = None
        else:
            action, variants = rollouts.check(state, self.applied(), metrics)
        if action == "wait" and state == endpoint.rollout:
            return
        log.info("endpoint %s: traffic shift: %s", self.name, state["log"][-1]["event"])
        endpoint.rollout = state
        if variants is not None:
            endpoint.variants = variants
        if action == "ended":
            endpoint.state = "in_service"
        endpoint.updated_at = utcnow()
        self.configure(endpoint)

    def _scale(self, endpoint: Endpoint) -> None:
        now = time.time()
        serving = [r for r in self.replicas if r.stopping is None]
        load = sum(r.load for r in serving if r.ready.is_set())
        idle = now - self.last_request
        floor = endpoint.min_replicas
        if self.demand:  # a request waits: it counts as one, for the idle timer too
            self.last_request, idle = now, 0.0
        if floor == 0 and idle < endpoint.scale_to_zero_after:
            floor = 1
        if endpoint.state == "creating":
            floor = max(floor, 1)  # it answers once before it may scale to zero
        wanted = max(floor, min(endpoint.max_replicas, math.ceil(
            load / max(endpoint.target_in_flight, 1e-9) - 1e-6)))
        have = len(serving)
        if wanted > have:
            self.low_since = None
            if have == 0 and self.demand:
                reason = "a request arrived while scaled to zero"
            elif load:
                reason = f"{load:.1f} requests in flight"
            elif endpoint.state == "creating":
                reason = "created"
            elif endpoint.min_replicas == 0:  # kept until it has been idle long enough
                reason = (f"one replica until {endpoint.scale_to_zero_after:.0f}s "
                          "without requests")
            else:
                reason = f"minimum {endpoint.min_replicas} replicas"
            self._note(have, wanted, reason)
            for _ in range(wanted - have):
                self.replicas.append(self._spawn())
        elif wanted < have:
            if not all(r.ready.is_set() for r in serving):
                return  # not while one starts: it may be for a request that waits for it
            if wanted == 0:
                reason = f"idle for {idle:.0f}s"
            elif self.low_since is None:
                self.low_since = now
                return
            elif now - self.low_since < endpoint.scale_in_cooldown:
                return
            else:
                reason = (f"{load:.1f} requests in flight for "
                          f"{endpoint.scale_in_cooldown:.0f}s")
            self._note(have, wanted, reason)
            # The newest go first: the oldest have warmed their caches.
            for replica in sorted(serving, key=lambda r: r.started)[wanted:]:
                replica.stopping = now
                with contextlib.suppress(ProcessLookupError):
                    replica.proc.terminate()
            self.low_since = None
        else:
            self.low_since = None
        self.demand = False

    def _note(self, have: int, wanted: int, reason: str) -> None:
        if have or wanted:
            log.info("endpoint %s: %d -> %d replicas (%s)", self.name, have, wanted, reason)
        self.scaling.append({"at": time.time(), "from": have, "to": wanted, "reason": reason})

    def waiting(self) -> socket.socket | None:
        """The socket to watch for a connection that waits for a replica, if there are
        none now."""
        if self.config_path is None or self.error or self.demand:
            return None
        return None if any(r.stopping is None for r in self.replicas) else self.sock

    def _fail(self, endpoint: Endpoint, session: Session, message: str) -> None:
        self.stop_replicas(session, endpoint)
        endpoint.state, endpoint.message, endpoint.updated_at = "failed", message, utcnow()

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
                self.manager.meter(session, endpoint, replica, ended=True)
        self.replicas = []

    def close(self, session: Session | None = None, endpoint: Endpoint | None = None) -> None:
        self.stop_replicas(session, endpoint)
        self.sock.close()

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


class _RayRuntime(_Runtime):
    """An endpoint on a Ray cluster: a Ray Serve application (:mod:`cumulo.serving.rayserve`),
    deployed and deleted by short Ray jobs. A thread watches the deploy job and the
    application; the manager's steps read what it saw. Ray Serve scales the replicas. Each
    replica reports its stats, captured requests and memory to the control plane
    (:meth:`report`), as a local replica does on its pipe: metrics, rollbacks, data capture
    and metering work as they do for local endpoints."""

    def __init__(self, manager: EndpointManager, endpoint: Endpoint, cluster: Any,
                 session: Session) -> None:
        from urllib.parse import urlsplit

        from cumulo.access.tokens import issue_token, revoke_token_id

        self.manager = manager
        self.name = endpoint.name
        self.dashboard = str(cluster.endpoint or cluster.address)
        self.host = urlsplit(self.dashboard).hostname or "127.0.0.1"
        self.url = f"http://{self.host}:{endpoint.port}/{endpoint.name}"
        self.replicas, self.gone, self.restarts = [], [], 0
        # Its Serve replicas, by the id each reports with; those gone, for their last reports.
        self.reporting: dict[str, _RayReplica] = {}
        self.ended: list[_RayReplica] = []
        self.scaling = deque(maxlen=20)
        self.capture_table, self.capture = endpoint.capture_table, []
        self.error = self.update_error = None
        self.variants = endpoint.variants
        self.wanted = ""
        self.deployed = ""  # the settings the last successful deploy was for
        self.job: str | None = None  # the deploy job under way
        self.app_state: dict[str, Any] = {}
        self.sock = None  # type: ignore[assignment]
        # The replicas read the registry with a token of the endpoint's creator.
        if endpoint.token_id is not None:
            revoke_token_id(session, endpoint.token_id)
        from datetime import timedelta

        assert endpoint.created_by is not None
        token, self.secret = issue_token(session, endpoint.created_by,
                                         f"endpoint {endpoint.name}",
                                         expires_at=utcnow() + timedelta(days=3650))
        session.flush()
        endpoint.token_id = token.id
        self._client: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watch_loop, daemon=True,
                                       name=f"ray-{endpoint.name}")
        self._watch.start()
        if endpoint.state != "failed":
            self.configure(endpoint)

    @property
    def client(self) -> Any:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.dashboard)
        return self._client

    def configure(self, endpoint: Endpoint) -> None:
        settings = {"endpoint": endpoint.name, "variants": endpoint.variants,
                    "max_batch_size": endpoint.max_batch_size,
                    "max_wait_ms": endpoint.max_wait_ms, "max_body": endpoint.max_body,
                    "min_replicas": endpoint.min_replicas,
                    "max_replicas": endpoint.max_replicas,
                    "target_in_flight": endpoint.target_in_flight,
                    "scale_in_cooldown": endpoint.scale_in_cooldown,
                    "capture_percent": endpoint.capture_percent,
                    "port": endpoint.port}
        wanted = json.dumps(settings, sort_keys=True)
        self.capture_table = endpoint.capture_table
        with self._lock:
            if wanted == self.wanted or self.job is not None:
                return
            self.wanted = wanted
            base = self.manager.settings.public_url or self.manager.settings.url
            env = {"MLFLOW_TRACKING_URI": f"{base}/mlflow",
                   "MLFLOW_TRACKING_TOKEN": self.secret, "MLFLOW_DISABLE_TELEMETRY": "true"}
            import base64

            report_url = f"{base}/api/v1/endpoints/{endpoint.name}/reports"
            payload = base64.b64encode(json.dumps(
                {**settings, "env": env, "report_url": report_url}).encode()).decode()
            try:
                self.job = self.client.submit_job(
                    entrypoint=f"python -m cumulo.serving.rayserve deploy --config {payload}",
                    runtime_env={"env_vars": env})
                self._wanted_variants = endpoint.variants
            except Exception as exc:
                self.wanted = ""
                message = f"cannot reach the Ray cluster at {self.dashboard}: {exc}"
                if self.deployed:
                    self.update_error = message
                else:
                    self.error = message

    def _watch_loop(self) -> None:
        import httpx

        while not self._stop.wait(1.0):
            with self._lock:
                job, wanted = self.job, self.wanted
            if job is not None:
                try:
                    status = str(self.client.get_job_status(job))
                except Exception:
                    continue
                if status.endswith(("SUCCEEDED", "FAILED", "STOPPED")):
                    logs = ""
                    if not status.endswith("SUCCEEDED"):
                        with contextlib.suppress(Exception):
                            logs = self.client.get_job_logs(job)[-4000:]
                    with self._lock:
                        self.job = None
                        if status.endswith("SUCCEEDED"):
                            self.deployed, self.variants = wanted, self._wanted_variants
                        else:
                            message = f"the Ray Serve deploy job {job} {status.lower()}:\n{logs}"
                            if self.deployed:
                                self.update_error, self.wanted = message, ""
                            else:
                                self.error = message
                    self.manager.wake.set()
            if self.deployed:
                try:
                    apps = httpx.get(f"{self.dashboard}/api/serve/applications/",
                                     timeout=10).json().get("applications", {})
                    self.app_state = apps.get(self.name, {})
                except Exception:  # the dashboard is busy: keep what we saw
                    pass

    def applied(self) -> bool:
        with self._lock:
            return self.job is None and self.wanted != "" and self.wanted == self.deployed

    def step(self, endpoint: Endpoint, session: Session) -> None:
        self._meter(session, endpoint)
        if endpoint.state == "failed":
            return
        if self.error:
            self._fail(endpoint, session, self.error)
            return
        self.configure(endpoint)
        if endpoint.state == "creating" and self.deployed:
            endpoint.state, endpoint.updated_at = "in_service", utcnow()
        if endpoint.state == "updating" and endpoint.rollout:
            self._shift(endpoint)

    def report(self, message: dict[str, Any]) -> None:
        """A Serve replica's report (:mod:`cumulo.serving.rayserve`): its stats, its sampled
        requests, its memory."""
        now = time.time()
        key = str(message.get("replica", ""))[:64]
        with self._lock:
            replica = self.reporting.get(key)
            if replica is None:
                # Its time counts from one interval before its first report.
                replica = self.reporting[key] = _RayReplica(
                    key, message.get("pid"), message.get("node"), started=now,
                    seen=now, metered_until=now - 1.0)
            replica.seen = now
            replica.in_flight = int(message.get("in_flight", 0))
            replica.load = float(message.get("load", replica.in_flight))
            replica.memory = max(replica.memory, int(message.get("memory", 0)))
            replica.stats.append((now, message.get("variants") or {}))
        if message.get("capture"):
            with self.manager.capture_lock:
                self.capture.extend(message["capture"])

    def _meter(self, session: Session, endpoint: Endpoint, *, everything: bool = False) -> None:
        """Usage records for the Serve replicas' time: those not heard from for
        RAY_REPLICA_LOST seconds end at their last report."""
        now = time.time()
        with self._lock:
            lost = [r for r in self.reporting.values()
                    if everything or now - r.seen > RAY_REPLICA_LOST]
            for replica in lost:
                del self.reporting[replica.id]
            self.ended = [*self.ended[-9:], *lost]
            running = list(self.reporting.values())
        for replica in lost:
            self.manager.meter(session, endpoint, replica, ended=True,
                               until=replica.seen if not everything else None)
        for replica in running:
            self.manager.meter(session, endpoint, replica)

    def _fail(self, endpoint: Endpoint, session: Session, message: str) -> None:
        endpoint.state, endpoint.message, endpoint.updated_at = "failed", message, utcnow()

    def waiting(self) -> socket.socket | None:
        return None

    def reports(self, since: float) -> list[dict[str, Any]]:
        with self._lock:
            replicas = [*self.reporting.values(), *self.ended]
        return [variants for r in replicas for at, variants in list(r.stats) if at > since]

    def describe(self) -> dict[str, Any]:
        deployments = self.app_state.get("deployments", {})
        with self._lock:
            by_pid = {r.pid: r for r in self.reporting.values()}
        replicas = [{"pid": r.get("pid"), "ready": r.get("state") == "RUNNING",
                     "in_flight": by_pid[r.get("pid")].in_flight if r.get("pid") in by_pid
                     else 0,
                     "load": by_pid[r.get("pid")].load if r.get("pid") in by_pid else 0.0,
                     "stopping": r.get("state") == "STOPPING",
                     "forked": False, "started_at": r.get("start_time_s"),
                     "ray_state": r.get("state")}
                    for deployment in deployments.values()
                    for r in deployment.get("replicas") or []]
        return {"replicas": replicas, "restarts": 0, "scaling": [],
                "ray": {"status": self.app_state.get("status"), "url": self.url}}

    def close(self, session: Session | None = None, endpoint: Endpoint | None = None,
              *, delete: bool = False) -> None:
        """Stop watching; with ``delete``, take the application off the cluster and revoke
        its token. (A control plane that stops leaves it serving on the cluster.)"""
        self._stop.set()
        if session is not None and endpoint is not None:
            self._meter(session, endpoint, everything=True)
        if not delete:
            return
        with contextlib.suppress(Exception):
            self.client.submit_job(
                entrypoint=f"python -m cumulo.serving.rayserve delete --name {self.name}")
        if session is not None and endpoint is not None and endpoint.token_id is not None:
            from cumulo.access.tokens import revoke_token_id

            revoke_token_id(session, endpoint.token_id)


class EndpointManager:
    """Runs in the control plane: a thread that steps every endpoint twice a second, and at
    once when told (a new endpoint, a replica ready or gone)."""

    def __init__(self, settings: Settings, engine: Engine,
                 tracking_base: Callable[[], str], storage: Backend | None = None) -> None:
        self.settings = settings
        self.host = "127.0.0.1" if settings.host in ("", "localhost") else settings.host
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.tracking_base = tracking_base
        self.root = settings.home / "serving"
        self.wake = _Waker()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._runtimes: dict[str, _Runtime] = {}
        self._thread: threading.Thread | None = None
        self.storage = storage
        self.capture_lock = threading.Lock()
        self._leftover: list[tuple[str, str, list[dict[str, Any]]]] = []
        self._capturer: threading.Thread | None = None
        self.forks: _ForkServer | None = None
        self.worker_env = {k: v for k, v in os.environ.items()
                           if not k.startswith(("CUMULO_", "MLFLOW_"))}
        self.worker_env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1",
                                "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                                "MKL_NUM_THREADS": "1"})

    def start(self) -> None:
        if self.settings.serving_preload:
            self.forks = _ForkServer(self.worker_env, self.root / "zygote.log")
        self._thread = threading.Thread(target=self._run, daemon=True, name="endpoints")
        self._thread.start()
        self._capturer = threading.Thread(target=self._capture_loop, daemon=True,
                                          name="endpoint-capture")
        self._capturer.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(15)
        if self._capturer is not None:
            self._capturer.join(30)
        with self._lock, self.sessions() as session:
            rows = {e.name: e for e in session.scalars(select(Endpoint))}
            for name, runtime in self._runtimes.items():
                runtime.close(session, rows.get(name))
            self._runtimes.clear()
            session.commit()
        if self.forks is not None:
            self.forks.stop()
        self.wake.close()

    def notify(self) -> None:
        self.wake.set()

    def runtime(self, name: str) -> dict[str, Any]:
        runtime = self._runtimes.get(name)
        return runtime.describe() if runtime else {"replicas": [], "restarts": 0,
                                                   "scaling": []}

    def report(self, name: str, message: dict[str, Any]) -> bool:
        """A Ray Serve replica's report; False if the endpoint does not run on Ray here."""
        runtime = self._runtimes.get(name)
        if not isinstance(runtime, _RayRuntime):
            return False
        runtime.report(message)
        return True

    def metrics(self, name: str, window: float = 60.0) -> dict[str, Any]:
        """Per variant over the last ``window`` seconds: requests a second, errors, and p50,
        p95 and p99 of the whole latency, the model's part and the rest (overhead)."""
        runtime = self._runtimes.get(name)
        reports = runtime.reports(time.time() - window) if runtime else []
        return summarize(reports, window)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock, self.sessions() as session:
                    self._tick(session)
            except Exception:  # a bug here must not end the manager: log it, go on
                log.exception("endpoint manager step failed")
            with self._lock:
                watched = {r.sock: r for r in self._runtimes.values()
                           if r.waiting() is not None}
            for sock in self.wake.wait(0.5, list(watched)):
                watched[sock].demand = True  # a request waits: start a replica now

    def _tick(self, session: Session) -> None:
        rows = {e.name: e for e in session.scalars(select(Endpoint))}
        for name in set(self._runtimes) - set(rows):
            self._retire(self._runtimes.pop(name))
        for name, endpoint in rows.items():
            if endpoint.state == "deleting":
                runtime = self._runtimes.pop(name, None)
                if runtime is not None:
                    self._retire(runtime, session, endpoint)
                session.delete(endpoint)
                continue
            runtime = self._runtimes.get(name)
            if runtime is None:
                try:
                    runtime = self._runtimes[name] = self._runtime_for(session, endpoint)
                except OSError as exc:
                    endpoint.state, endpoint.updated_at = "failed", utcnow()
                    endpoint.message = (f"cannot listen on port {endpoint.port}: {exc}"
                                        if endpoint.cluster is None else str(exc))
                    continue
            runtime.step(endpoint, session)
        session.commit()

    # --- data capture ----------------------------------------------------------------------------

    CAPTURE_INTERVAL = 2.0  # seconds between writes of captured requests to their tables

    def _capture_loop(self) -> None:
        while not self._stop.wait(self.CAPTURE_INTERVAL):
            self.flush_capture()
        self.flush_capture()  # what the replicas sent before they stopped

    def flush_capture(self) -> None:
        """Append each endpoint's captured requests to its table, one commit each."""
        with self.capture_lock:
            batches = [(name, r.capture_table, r.capture) for name, r in
                       list(self._runtimes.items()) if r.capture and r.capture_table is not None]
            for name, _, _ in batches:
                self._runtimes[name].capture = []
            batches += self._leftover
            self._leftover = []
        for name, table, records in batches:
            try:
                self._write_capture(name, table, records)
            except Exception:  # the table is gone or refuses the rows: say so, keep serving
                log.exception("endpoint %s: writing %d captured requests to %s failed", name,
                              len(records), table)

    def _write_capture(self, name: str, table: str, records: list[dict[str, Any]]) -> None:
        import pyarrow as pa

        from cumulo.access.users import user_names
        from cumulo.lake import catalog, delta
        from cumulo.lake.refs import parse_ref
        from cumulo.principal import Principal

        assert self.storage is not None
        data = pa.table({
            "captured_at": pa.array([int(r["captured_at"] * 1e6) for r in records],
                                    pa.timestamp("us", tz="UTC")),
            "endpoint": pa.array([name] * len(records), pa.string()),
            **{key: pa.array([r[key] for r in records], kind) for key, kind in (
                ("variant", pa.string()), ("status", pa.int32()),
                ("latency_ms", pa.float64()), ("model_latency_ms", pa.float64()),
                ("content_type", pa.string()), ("request", pa.string()),
                ("request_encoding", pa.string()), ("response", pa.string()))}})
        ref = parse_ref(table)
        with self.sessions() as session:
            endpoint = session.scalar(select(Endpoint).where(Endpoint.name == name))
            owner = endpoint.created_by if endpoint is not None else None
            user = user_names(session, [owner]).get(owner, "cumulo") if owner else "cumulo"
            # The table is the endpoint creator's (no one's, if they were deleted).
            owner_principal = Principal(owner, user, False, 0)  # type: ignore[arg-type]
            row = catalog.ensure_managed_table(session, owner_principal, ref)
            delta.write(catalog.location(self.storage, row), data.to_reader(), mode="append",
                        user=user, name=ref.name)
            row.updated_at = utcnow()
            session.commit()

    def _runtime_for(self, session: Session, endpoint: Endpoint) -> _Runtime:
        if endpoint.cluster is None:
            return _Runtime(self, endpoint)
        from cumulo.compute.models import Cluster

        cluster = session.scalar(select(Cluster).where(Cluster.name == endpoint.cluster))
        if cluster is None or cluster.type != "ray":
            raise OSError(f"cluster {endpoint.cluster!r} is not a Ray cluster any more")
        if endpoint.created_by is None:  # its replicas' token would have no user
            raise OSError("the user who created this endpoint was deleted; create it again")
        return _RayRuntime(self, endpoint, cluster, session)

    def _retire(self, runtime: _Runtime, session: Session | None = None,
                endpoint: Endpoint | None = None) -> None:
        """Stop a deleted endpoint's replicas; what they captured is still written."""
        if isinstance(runtime, _RayRuntime):
            runtime.close(session, endpoint, delete=True)
        else:
            runtime.close(session, endpoint)
        with self.capture_lock:
            if runtime.capture and runtime.capture_table is not None:
                self._leftover.append((runtime.name, runtime.capture_table, runtime.capture))
            runtime.capture = []

    def meter(self, session: Session, endpoint: Endpoint | None,
              replica: _Replica | _RayReplica, *, ended: bool = False,
              until: float | None = None) -> None:
        """Add a usage record for the replica's time since its last one: when it ended (at
        ``until``, or now), and every METER_INTERVAL seconds while it runs."""
        now = time.time()
        if not ended:
            if isinstance(replica, _Replica) and replica.ready.is_set() and (
                    now - replica.sampled >= MEMORY_SAMPLE):
                replica.sampled = now
                with contextlib.suppress(Exception):
                    import psutil

                    replica.memory = max(replica.memory, int(
                        psutil.Process(replica.proc.pid).memory_info().rss))
            if now - replica.metered_until < METER_INTERVAL:
                return
        end = now if until is None else until
        wall = end - replica.metered_until
        if endpoint is None or wall <= 0:
            return
        from datetime import UTC, datetime

        usage.record(session, self.settings.prices, kind="endpoint", ref=endpoint.name,
                     cluster=endpoint.cluster or "local", user_id=endpoint.created_by,
                     tags=[], started_at=datetime.fromtimestamp(replica.metered_until, UTC),
                     ended_at=datetime.fromtimestamp(end, UTC), cpu_seconds=wall,
                     memory_gb_seconds=replica.memory / 1e9 * wall, gpu_seconds=0.0,
                     wall_seconds=wall)
        replica.metered_until = end

    # --- models --------------------------------------------------------------------------------

    def fetch(self, model: str, version: str) -> Path:
        """The model version's files on this machine, fetched from the registry once."""
        dest = self.root / "models" / model / str(version)
        if (dest / "MLmodel").is_file():
            return dest
        from mlflow import MlflowClient
        from mlflow.artifacts import download_artifacts

        base = self.tracking_base()
        uri = MlflowClient(tracking_uri=base, registry_uri=base).get_model_version_download_uri(
            model, str(version))
        tmp = dest.with_name(f".{dest.name}.{time.monotonic_ns()}")
        tmp.mkdir(parents=True)
        try:
            download_artifacts(artifact_uri=uri, dst_path=str(tmp), tracking_uri=base)
            found = next(tmp.rglob("MLmodel"), None)
            if found is None:
                raise FileNotFoundError(f"model {model} version {version} has no MLmodel file")
            shutil.rmtree(dest, ignore_errors=True)
            found.parent.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest


def summarize(reports: list[dict[str, Any]], window: float) -> dict[str, Any]:
    """Merge replicas' reports (:class:`cumulo.serving.stats.Window`) into per-variant rates
    and latency percentiles, in milliseconds."""
    from cumulo.serving.stats import percentile

    merged: dict[str, dict[str, Any]] = {}
    for report in reports:
        for variant, v in report.items():
            m = merged.setdefault(variant, {"requests": 0, "errors_4xx": 0, "errors_5xx": 0,
                                            "shadow": v.get("shadow", False),
                                            "latency": {}, "model": {}, "overhead": {}})
            for key in ("requests", "errors_4xx", "errors_5xx"):
                m[key] += v[key]
            for key in ("latency", "model", "overhead"):
                for bucket, count in v.get(key, {}).items():
                    m[key][int(bucket)] = m[key].get(int(bucket), 0) + count
    out: dict[str, Any] = {"window_s": window, "variants": {}}
    for variant, m in sorted(merged.items()):
        row: dict[str, Any] = {
            "shadow": m["shadow"], "requests": m["requests"],
            "requests_per_s": round(m["requests"] / window, 3),
            "errors_4xx": m["errors_4xx"], "errors_5xx": m["errors_5xx"]}
        for q in (0.5, 0.95, 0.99):
            for key, name in (("latency", "latency"), ("model", "model_latency"),
                              ("overhead", "overhead_latency")):
                value = percentile(m[key], q)
                row[f"{name}_p{int(q * 100)}_ms"] = None if value is None else round(
                    value * 1000, 3)
        out["variants"][variant] = row
    return out
