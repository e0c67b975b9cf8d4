"""The endpoint manager: runs the endpoints this control plane owns, and keeps them running.

Each endpoint is run by one control plane, its ``owner`` (:mod:`cumulo.leases`): a control
plane claims endpoints no live control plane owns (new ones, or those of one whose lease ran
out: their replicas are started again here, a Ray Serve application adopted), and closes its
runtime of any endpoint another one owns. Every control plane knows where every endpoint's
replicas answer (its owner's address), so an invocation reaches them through any of them.

A thread in the control plane steps each endpoint it owns twice a second, and at once when told (a
new endpoint, a replica ready or gone). For each endpoint row it keeps a runtime
(:mod:`cumulo.serving.runtimes`: replica processes on this machine, or a Ray Serve
application), made when the endpoint appears and closed when it is deleted, and steps it: the
runtime starts, scales and replaces replicas, carries traffic shifts on, and records the
endpoint's state on the row. While a local endpoint has no replica (scaled to zero) the thread
also watches its socket, so that a request arriving then has a replica started at once.

It also keeps what all endpoints share: the launcher of local replica processes (the serving
fork server, and one per environment endpoints run in), the builder of environments (the
compute service's, :mod:`cumulo.serving.environments`), each model version's files
(:meth:`EndpointManager.fetch`), the writer of captured requests
(:mod:`cumulo.serving.capture`), and the live tokens every replica checks invocations against
(:mod:`cumulo.serving.allowed`, read by a thread of its own, so that a revoke reaches the
replicas within a second whatever the steps are doing); and it answers the routes' questions
(:meth:`~EndpointManager.runtime`, :meth:`~EndpointManager.metrics`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select as selectors_
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from cumulo.config import Settings
from cumulo.db import utcnow
from cumulo.forkserver import ForkServer
from cumulo.leases import ControlPlane, Membership, live_planes
from cumulo.ml.registry import MlflowServer, Registry
from cumulo.serving.allowed import SERVED_NAMES, AllowedTokens
from cumulo.serving.capture import Captures
from cumulo.serving.endpoints import endpoint_url
from cumulo.serving.metrics import summarize
from cumulo.serving.models import Endpoint
from cumulo.serving.runtimes import Runtime, open_runtime
from cumulo.serving.runtimes.local import Launcher
from cumulo.storage.backends import Backend

if TYPE_CHECKING:
    from cumulo.compute.environments.service import Builder

__all__ = ["EndpointManager", "owner_host", "summarize"]

log = logging.getLogger("cumulo.serving")


def owner_host(plane: ControlPlane) -> str:
    """Where an endpoint's replicas answer when ``plane`` runs them: its address."""
    return urlsplit(plane.url).hostname or plane.host


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


class EndpointManager:
    """Runs in the control plane: a thread that steps every endpoint twice a second, and at
    once when told (a new endpoint, a replica ready or gone)."""

    def __init__(self, settings: Settings, engine: Engine,
                 tracking: MlflowServer, storage: Backend | None = None, *,
                 envs: Builder | None = None, plane: Membership | None = None) -> None:
        self.settings = settings
        self.plane = plane  # None: the only control plane (tests of the manager alone)
        self.envs = envs  # builds the environments models run in (None: the server's only)
        self.host = "127.0.0.1" if settings.host in ("", "localhost") else settings.host
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.registry = Registry(tracking)
        self.root = settings.home / "serving"
        self.wake = _Waker()
        self.launcher = Launcher(self.root)
        self.captures = Captures(self.sessions, storage)
        self.allowed = AllowedTokens(self.sessions, self.root / "tokens",
                                     endpoints=lambda: list(self._runtimes),
                                     key=(lambda: plane.key) if plane is not None else None)
        # Names replicas answer under besides the address they are bound to (their Host
        # check): the host as the settings name it (a DNS name binds as its address), and the
        # public URL's.
        public = [urlsplit(u).hostname for u in settings.public_urls]
        self.served_names = [name for name in (self.host, *public, *SERVED_NAMES)
                             if name and name not in ("0.0.0.0", "::")]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._runtimes: dict[str, Runtime] = {}
        # Where the control plane forwards each endpoint's invocations, as of the last step.
        self._routes: dict[str, tuple[str, str, int]] = {}
        self._thread: threading.Thread | None = None

    @property
    def forks(self) -> ForkServer | None:
        """The serving fork server, if replicas are forked from one (setting serving_preload)."""
        return self.launcher.forks

    def start(self) -> None:
        if self.plane is not None:
            self.plane.on_fenced.append(self._drop_all)
        if self.settings.serving_preload:
            self.launcher.start_fork_server()
        self.allowed.start()  # before any replica: the first ones find the set
        self._thread = threading.Thread(target=self._run, daemon=True, name="endpoints")
        self._thread.start()
        self.captures.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(15)
        self.allowed.stop()
        self.captures.stop()
        with self._lock, self.sessions() as session:
            rows = {e.name: e for e in session.scalars(select(Endpoint))}
            for name, runtime in self._runtimes.items():
                runtime.close(session, rows.get(name))
            self._runtimes.clear()
            session.commit()
        self.launcher.stop()
        self.wake.close()

    def notify(self) -> None:
        self.wake.set()

    # --- what the routes ask -------------------------------------------------------------------

    def runtime(self, name: str) -> dict[str, Any]:
        runtime = self._runtimes.get(name)
        return runtime.describe() if runtime else {"replicas": [], "restarts": 0,
                                                   "scaling": []}

    def route(self, name: str) -> tuple[str, str, int] | None:
        """Where an endpoint's invocations go: its state, its replicas' invocation URL and its
        body limit, as of the last step (half a second at most), so that forwarding needs no
        database; None for one not stepped yet, or gone."""
        return self._routes.get(name)

    def report(self, name: str, message: dict[str, Any]) -> bool:
        """A replica's report over HTTP (Ray Serve's); False if the endpoint does not run
        here on a runtime whose replicas report so."""
        runtime = self._runtimes.get(name)
        return runtime is not None and runtime.report(message)

    def metrics(self, name: str, window: float = 60.0) -> dict[str, Any]:
        """Per variant over the last ``window`` seconds: requests a second, errors, and p50,
        p95 and p99 of the whole latency, the model's part and the rest (overhead)."""
        runtime = self._runtimes.get(name)
        reports = runtime.reports(time.time() - window) if runtime else []
        return summarize(reports, window)

    # --- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock, self.sessions() as session:
                    self._tick(session)
            except Exception:  # a bug here must not end the manager: log it, go on
                log.exception("endpoint manager step failed")
            with self._lock:
                watched = {sock: r for r in self._runtimes.values()
                           if (sock := r.waiting()) is not None}
            for sock in self.wake.wait(0.5, list(watched)):
                watched[sock].request_waits()  # a request waits: start a replica now

    def _tick(self, session: Session) -> None:
        self.launcher.tend()
        if self.plane is not None and not self.plane.valid():
            return  # the lease is not renewed: our endpoints may be another's now
        every = {e.name: e for e in session.scalars(select(Endpoint))}
        planes = {p.id: p for p in live_planes(session)} if self.plane is not None else {}
        rows = {name: e for name, e in every.items() if self._mine(session, e, planes)}
        for name in set(self._runtimes) - set(rows):
            if name in every:  # another control plane runs it now: stop ours, keep it
                self._runtimes.pop(name).close(session, None)
            else:
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
                runtime = self._open(session, endpoint)
            if runtime is None:
                continue
            try:
                runtime.step(endpoint, session)
            except Exception:  # one endpoint's trouble must not stop the others' steps
                log.exception("endpoint %s: its step failed; the others go on", name)
                session.expire(endpoint)  # what the step changed on it is not committed
        session.commit()
        routes = {name: self._route(session, e) for name, e in rows.items()
                  if name in self._runtimes}
        for name, endpoint in every.items():  # run elsewhere: at its owner's address
            owner = planes.get(endpoint.owner or "")
            if name in routes or endpoint.state == "deleting":
                continue
            if owner is not None:
                routes[name] = self._route(session, endpoint, host=owner_host(owner))
            elif endpoint.cluster is not None and name in self._routes:
                # On Ray Serve it answers whoever runs it: while its owner is taken over, its
                # invocations go on to the cluster.
                routes[name] = self._routes[name]
        self._routes = routes

    def _mine(self, session: Session, endpoint: Endpoint,
              planes: dict[str, ControlPlane]) -> bool:
        """Whether this control plane runs ``endpoint``: it owns it, or claims it now because
        no live control plane does (one claim naming the old owner: one of those that look at
        once gets it)."""
        if self.plane is None or endpoint.owner == self.plane.id:
            return True
        if endpoint.owner in planes:
            return False
        old = endpoint.owner
        claimed = session.execute(  # type: ignore[attr-defined]
            update(Endpoint).where(Endpoint.id == endpoint.id,
                                   Endpoint.owner.is_(None) if old is None
                                   else Endpoint.owner == old)
            .values(owner=self.plane.id)).rowcount
        session.commit()
        if claimed:
            session.refresh(endpoint)
            if old is not None:
                log.info("endpoint %s taken over from control plane %s", endpoint.name, old)
        return bool(claimed)

    def _drop_all(self) -> None:
        """Fenced: the endpoints we ran may be another control plane's now; their replicas
        here stop (the new owner starts its own), their rows stay."""
        with self._lock, self.sessions() as session:
            for runtime in self._runtimes.values():
                with contextlib.suppress(Exception):
                    runtime.close(session, None)
            self._runtimes.clear()
            self._routes = {}

    def _route(self, session: Session, endpoint: Endpoint, *,
               host: str | None = None) -> tuple[str, str, int]:
        host = host or self.host
        if endpoint.cluster is None:  # the replicas' own path for it
            url = f"http://{host}:{endpoint.port}/endpoints/{endpoint.name}/invocations"
        else:
            url = f"{endpoint_url(session, endpoint, host=host)}/invocations"
        return endpoint.state, url, endpoint.max_body

    def _open(self, session: Session, endpoint: Endpoint) -> Runtime | None:
        """The endpoint's new runtime; None, with the endpoint failed, if it cannot run."""
        self.allowed.refresh_logged([endpoint.name])  # its replicas find their token set
        try:
            runtime = open_runtime(self, session, endpoint,
                                   self.captures.buffer(endpoint.name))
        except OSError as exc:
            self.captures.retire(endpoint.name)
            endpoint.state, endpoint.updated_at = "failed", utcnow()
            endpoint.message = (f"cannot listen on port {endpoint.port}: {exc}"
                                if endpoint.cluster is None else str(exc))
            return None
        self._runtimes[endpoint.name] = runtime
        return runtime

    def _retire(self, runtime: Runtime, session: Session | None = None,
                endpoint: Endpoint | None = None) -> None:
        """Stop a deleted endpoint's replicas; what they captured is still written."""
        runtime.close(session, endpoint, delete=True)
        self.captures.retire(runtime.name)

    # --- models --------------------------------------------------------------------------------

    def fetch(self, model: str, version: str) -> Path:
        """The model version's files on this machine, fetched from the registry once (a
        version never changes, so the copy under ``<home>/serving/models/NAME/VERSION`` serves
        every replica and restart)."""
        dest = self.root / "models" / model / str(version)
        if (dest / "MLmodel").is_file():
            return dest
        tmp = dest.with_name(f".{dest.name}.{time.monotonic_ns()}")
        tmp.mkdir(parents=True)
        try:
            self.registry.download(model, str(version), tmp)
            found = next(tmp.rglob("MLmodel"), None)
            if found is None:
                raise FileNotFoundError(f"model {model} version {version} has no MLmodel file")
            shutil.rmtree(dest, ignore_errors=True)
            found.parent.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest
