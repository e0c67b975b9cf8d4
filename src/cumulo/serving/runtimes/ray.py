"""Endpoints on a Ray cluster: a Ray Serve application (:mod:`cumulo.serving.rayserve`).

The control plane deploys and deletes the application with short Ray jobs, so it needs only
the cluster's job API. A thread watches the deploy job and the application; the manager's steps
read what it saw. Ray Serve scales the replicas, from the endpoint's settings. Each replica
reports its stats, captured requests and memory to the control plane (:meth:`RayRuntime.report`,
behind ``POST /api/v1/endpoints/NAME/reports``), as a local replica does on its pipe: metrics,
rollbacks, data capture and metering work as they do for local endpoints. A replica's time is
metered from a second before its first report to its last; one not heard from for
``REPLICA_LOST`` seconds has ended.

Each replica checks every invocation's Host header and token itself, as a local one does
(:mod:`cumulo.serving.gate`): it asks the control plane for the live tokens when it starts and
then waits on ``GET /api/v1/endpoints/NAME/tokens``, which answers as soon as the set changes.
Ray Serve's proxy listens on loopback when the cluster's head is on this machine and the
control plane listens on loopback too; else on every interface (the control plane, on another
machine, must reach it), where the tokens guard it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import shlex
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from cumulo.db import utcnow
from cumulo.serving.capture import CaptureBuffer
from cumulo.serving.gate import is_loopback
from cumulo.serving.metrics import SERVED
from cumulo.serving.models import Endpoint
from cumulo.serving.runtimes.base import HELD_RETRY_AFTER, Manager, RuntimeBase, held_message

__all__ = ["REPLICA_LOST", "RayRuntime"]

log = logging.getLogger("cumulo.serving")

REPLICA_LOST = 15.0  # a Ray Serve replica not heard from for this long has ended


@dataclass(eq=False)
class ServeReplica:
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


class RayRuntime(RuntimeBase):
    """An endpoint as a Ray Serve application on the cluster whose job API is at
    ``dashboard``."""

    @classmethod
    def open(cls, manager: Manager, session: Session, endpoint: Endpoint,
             capture: CaptureBuffer, cluster: Any) -> RayRuntime:
        from cumulo.compute.clusters import ray_python

        if endpoint.created_by is None:  # its replicas' token would have no user
            raise OSError("the user who created this endpoint was deleted; create it again")
        return cls(manager, endpoint, capture, session=session,
                   dashboard=str(cluster.endpoint or cluster.address), python=ray_python(cluster))

    def __init__(self, manager: Manager, endpoint: Endpoint, capture: CaptureBuffer, *,
                 dashboard: str, session: Session, python: str = "python") -> None:
        super().__init__(manager, endpoint, capture)
        self.dashboard = dashboard
        # The head's interpreter that has Cumulo (compute.clusters.ray_python): the deploy
        # jobs start it by name, not whichever `python` the head's PATH finds.
        self.python = shlex.quote(python)
        host = urlsplit(dashboard).hostname or "127.0.0.1"
        self.url = f"http://{host}:{endpoint.port}/{endpoint.name}"
        self.address = host  # the name the replicas answer under (their Host check)
        # Where Ray Serve's proxy listens (the module's docstring says why).
        self.serve_host = ("127.0.0.1" if is_loopback(host) and is_loopback(manager.host)
                           else "0.0.0.0")
        # Its Serve replicas, by the id each reports with; those gone, for their last reports.
        self.reporting: dict[str, ServeReplica] = {}
        self.ended: list[ServeReplica] = []
        self.deployed = ""  # the settings the last successful deploy was for
        self.job: str | None = None  # the deploy job under way
        self._deploying: list[dict[str, Any]] = []  # the variants it deploys
        self.app_state: dict[str, Any] = {}
        # The secret the deploys give the replicas; None while serving an application
        # another control plane deployed (adopted: only its replicas know theirs).
        self.secret: str | None = None
        self._retired_token: int | None = None  # revoked once the next deploy serves
        self._revoke: int | None = None  # that token, to revoke at the next step
        self._saved = ""  # the deployed settings as the row has them
        if self._adoptable(endpoint, session):
            assert endpoint.deployed is not None
            self.deployed = self.wanted = self._saved = endpoint.deployed
            self.variants = json.loads(endpoint.deployed)["variants"]
        else:
            self.secret = self._issue_token(endpoint, session)
        self._client: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watch_loop, daemon=True,
                                       name=f"ray-{endpoint.name}")
        self._watch.start()
        if endpoint.state != "failed":
            self.configure(endpoint)

    @staticmethod
    def _adoptable(endpoint: Endpoint, session: Session) -> bool:
        """Whether the endpoint's application, deployed by another control plane (or an
        earlier life of this one), serves on the cluster with replicas that can still report:
        its deployed settings are known and its token is live. Then it is adopted as it is
        (no deploy, no new token), and a later change of settings deploys with a new one."""
        from cumulo.access.models import Token

        if endpoint.deployed is None or endpoint.token_id is None or endpoint.state not in (
                "in_service", "updating"):
            return False
        token = session.get(Token, endpoint.token_id)
        return token is not None and token.revoked_at is None and (
            token.expires_at is None or token.expires_at > utcnow())

    @staticmethod
    def _issue_token(endpoint: Endpoint, session: Session, *, revoke: bool = True) -> str:
        """A new token of the endpoint's creator, which the replicas read the registry and
        report with; the endpoint's previous one is revoked (with ``revoke``)."""
        from cumulo.access.tokens import issue_token, revoke_token_id

        if endpoint.token_id is not None and revoke:
            revoke_token_id(session, endpoint.token_id)
        assert endpoint.created_by is not None
        token, secret = issue_token(session, endpoint.created_by, f"endpoint {endpoint.name}",
                                    expires_at=utcnow() + timedelta(days=3650))
        session.flush()
        endpoint.token_id = token.id
        return secret

    @property
    def client(self) -> Any:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.dashboard)
        return self._client

    def configure(self, endpoint: Endpoint) -> None:
        """Deploy the endpoint's settings with a Ray job, if they changed and no deploy is
        under way."""
        settings = {"endpoint": endpoint.name, "variants": endpoint.variants,
                    "max_batch_size": endpoint.max_batch_size,
                    "max_wait_ms": endpoint.max_wait_ms, "max_body": endpoint.max_body,
                    "min_replicas": endpoint.min_replicas,
                    "max_replicas": endpoint.max_replicas,
                    "target_in_flight": endpoint.target_in_flight,
                    "scale_in_cooldown": endpoint.scale_in_cooldown,
                    "capture_percent": endpoint.capture_percent,
                    "port": endpoint.port, "public": endpoint.public,
                    "address": self.address, "hosts": self.manager.served_names,
                    "host": self.serve_host,
                    # Held at zero by a budget: a small deployment in the model's place
                    # answers 503 (Serve's own scale-to-zero would start a replica for a
                    # request).
                    "held": None if endpoint.held is None else {
                        "message": held_message(endpoint.name, endpoint.held),
                        "retry_after": HELD_RETRY_AFTER}}
        wanted = json.dumps(settings, sort_keys=True)
        self.capture.table = endpoint.capture_table
        with self._lock:
            if wanted == self.wanted or self.job is not None:
                return
            if self.secret is None and not self._new_secret(endpoint):
                return  # the database did not answer: the next step tries again
            self.wanted = wanted
            try:
                self.job = self._submit_deploy(settings)
                self._deploying = endpoint.variants
            except Exception as exc:
                self.wanted = ""
                message = f"cannot reach the Ray cluster at {self.dashboard}: {exc}"
                if self.deployed:
                    self.update_error = message
                else:
                    self.error = message

    def _new_secret(self, endpoint: Endpoint) -> bool:
        """An adopted application's settings change: its deploy gives the replicas a new
        token; the one the running replicas hold is revoked once the new ones serve."""
        old = endpoint.token_id
        try:
            with self.manager.sessions() as session:
                # (sets the row's token_id, committed with the manager's step)
                secret = self._issue_token(endpoint, session, revoke=False)
                session.commit()
        except Exception:
            log.exception("endpoint %s: a token for its deploy could not be made", self.name)
            endpoint.token_id = old
            return False
        self._retired_token, self.secret = old, secret
        return True

    def _submit_deploy(self, settings: dict[str, Any]) -> str:
        # Its replicas call back through the public URLs (a load balancer's, best), the
        # first that answers.
        base = self.manager.settings.public_urls[0]
        env = {"MLFLOW_TRACKING_URI": f"{base}/mlflow",
               "MLFLOW_TRACKING_TOKEN": self.secret, "MLFLOW_DISABLE_TELEMETRY": "true"}
        payload = base64.b64encode(json.dumps(
            {**settings, "env": env,
             "bases": self.manager.settings.public_urls}).encode()).decode()
        return str(self.client.submit_job(
            entrypoint=f"{self.python} -m cumulo.serving.rayserve deploy --config {payload}",
            runtime_env={"env_vars": env}))

    def _watch_loop(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                job, wanted = self.job, self.wanted
            if job is not None and not self._watch_job(job, wanted):
                continue  # the job API did not answer: look again in a second
            if self.deployed:
                self._watch_app()

    def _watch_job(self, job: str, wanted: str) -> bool:
        """Take the deploy job's outcome, once it ended; False if its status is unknown."""
        try:
            status = str(self.client.get_job_status(job))
        except Exception:
            return False
        if not status.endswith(("SUCCEEDED", "FAILED", "STOPPED")):
            return True
        logs = ""
        if not status.endswith("SUCCEEDED"):
            with contextlib.suppress(Exception):
                logs = self.client.get_job_logs(job)[-4000:]
        with self._lock:
            self.job = None
            if status.endswith("SUCCEEDED"):
                self.deployed, self.variants = wanted, self._deploying
                self._revoke, self._retired_token = self._retired_token, None
            else:
                message = f"the Ray Serve deploy job {job} {status.lower()}:\n{logs}"
                if self.deployed:
                    self.update_error, self.wanted = message, ""
                else:
                    self.error = message
        self.manager.notify()
        return True

    def _watch_app(self) -> None:
        import httpx

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
        self._meter_replicas(session, endpoint)
        with self._lock:
            deployed, retired = self.deployed, self._revoke
            self._revoke = None
        if deployed and deployed != self._saved:  # for whoever takes it over
            endpoint.deployed = self._saved = deployed
        if retired is not None:  # the replicas that held it are replaced
            from cumulo.access.tokens import revoke_token_id

            revoke_token_id(session, retired)
        if not self._settle(endpoint, session):
            return
        if endpoint.state == "creating" and self.deployed:
            endpoint.state, endpoint.updated_at = "in_service", utcnow()
        if endpoint.state == "updating" and endpoint.rollout:
            self._shift(endpoint)

    def report(self, message: dict[str, Any]) -> bool:
        """A Serve replica's report (:mod:`cumulo.serving.rayserve`): its stats, its sampled
        requests, its memory."""
        now = time.time()
        key = str(message.get("replica", ""))[:64]
        with self._lock:
            replica = self.reporting.get(key)
            if replica is None:
                # Its time counts from one interval before its first report.
                replica = self.reporting[key] = ServeReplica(
                    key, message.get("pid"), message.get("node"), started=now,
                    seen=now, metered_until=now - 1.0)
            replica.seen = now
            replica.in_flight = int(message.get("in_flight", 0))
            replica.load = float(message.get("load", replica.in_flight))
            replica.memory = max(replica.memory, int(message.get("memory", 0)))
            replica.stats.append((now, message.get("variants") or {}))
        SERVED.add(self.name, message.get("variants") or {})
        if message.get("capture"):
            self.capture.add(message["capture"])
        return True

    def _meter_replicas(self, session: Session, endpoint: Endpoint, *,
                        everything: bool = False) -> None:
        """Usage records for the Serve replicas' time: those not heard from for
        REPLICA_LOST seconds (or all, with ``everything``) end at their last report."""
        now = time.time()
        with self._lock:
            lost = [r for r in self.reporting.values()
                    if everything or now - r.seen > REPLICA_LOST]
            for replica in lost:
                del self.reporting[replica.id]
            self.ended = [*self.ended[-9:], *lost]
            running = list(self.reporting.values())
        for replica in lost:
            self._meter(session, endpoint, replica, ended=True,
                        until=replica.seen if not everything else None)
        for replica in running:
            self._meter(session, endpoint, replica)

    def waiting(self) -> socket.socket | None:
        return None  # Ray Serve's proxy takes the requests

    def request_waits(self) -> None:
        pass

    def reports(self, since: float) -> list[dict[str, Any]]:
        with self._lock:
            replicas = [*self.reporting.values(), *self.ended]
        return [variants for r in replicas for at, variants in list(r.stats) if at > since]

    def describe(self) -> dict[str, Any]:
        deployments = self.app_state.get("deployments", {})
        with self._lock:
            by_pid = {r.pid: r for r in self.reporting.values()}
        replicas = []
        for name, deployment in deployments.items():
            if name != "replica":  # the held endpoint's refusal: no model, no replica of it
                continue
            for r in deployment.get("replicas") or []:
                seen = by_pid.get(r.get("pid"))
                replicas.append({
                    "pid": r.get("pid"), "ready": r.get("state") == "RUNNING",
                    "in_flight": seen.in_flight if seen else 0,
                    "load": seen.load if seen else 0.0,
                    "stopping": r.get("state") == "STOPPING", "forked": False,
                    "started_at": r.get("start_time_s"), "ray_state": r.get("state")})
        return {"replicas": replicas, "restarts": 0, "scaling": [],
                "ray": {"status": self.app_state.get("status"), "url": self.url}}

    def close(self, session: Session | None = None, endpoint: Endpoint | None = None, *,
              delete: bool = False) -> None:
        """Stop watching; with ``delete``, take the application off the cluster and revoke
        its token. (A control plane that stops leaves it serving on the cluster.)"""
        self._stop.set()
        if session is not None and endpoint is not None:
            self._meter_replicas(session, endpoint, everything=True)
        if not delete:
            return
        with contextlib.suppress(Exception):
            self.client.submit_job(
                entrypoint=f"{self.python} -m cumulo.serving.rayserve delete --name {self.name}")
        if session is not None and endpoint is not None and endpoint.token_id is not None:
            from cumulo.access.tokens import revoke_token_id

            revoke_token_id(session, endpoint.token_id)
