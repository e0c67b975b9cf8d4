"""The endpoint manager: runs each endpoint's replicas on this machine, and keeps them running.

For each endpoint it owns a listening socket on the endpoint's port and hands it to every
replica process (``cumulo.serving.worker``), which all accept from it. It fetches each
variant's model from the registry once (a version never changes, so the copy under
``<home>/serving/models/NAME/VERSION`` serves every replica and restart), starts the replicas,
reads their stats, replaces a replica that dies, and marks the endpoint failed, with the
replica's own traceback, when a model cannot load.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
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
from cumulo.serving.models import Endpoint

__all__ = ["EndpointManager", "summarize"]

log = logging.getLogger("cumulo.serving")


@dataclass(eq=False)
class _Replica:
    proc: subprocess.Popen[bytes]
    started: float
    ready: threading.Event = field(default_factory=threading.Event)
    failed: str | None = None  # the replica's traceback, if its models did not load
    reader: threading.Thread | None = None  # reads its stdout: ready, failed, stats
    in_flight: int = 0
    # Its last two minutes of reports (per variant: requests, errors, latency histograms).
    stats: deque[tuple[float, dict[str, Any]]] = field(
        default_factory=lambda: deque(maxlen=240))


class _Runtime:
    """One endpoint's socket, models and replica processes."""

    def __init__(self, manager: EndpointManager, endpoint: Endpoint) -> None:
        self.manager = manager
        self.name = endpoint.name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((manager.host, endpoint.port))
        self.sock.listen(2048)
        self.replicas: list[_Replica] = []
        self.gone: list[_Replica] = []
        self.restarts = 0
        self.early_exits = 0  # replicas in a row that ended before they were ready
        self.variants = endpoint.variants
        self.config_path: Path | None = None
        self.error: str | None = None  # why the models could not be fetched
        self._fetch = threading.Thread(target=self._fetch_models, args=(endpoint,),
                                       daemon=True, name=f"fetch-{endpoint.name}")
        self._fetch.start()

    # --- models --------------------------------------------------------------------------------

    def _fetch_models(self, endpoint: Endpoint) -> None:
        try:
            dirs = [self.manager.fetch(v["model"], v["version"]) for v in self.variants]
            config = {
                "endpoint": endpoint.name, "max_batch_size": endpoint.max_batch_size,
                "max_wait_ms": endpoint.max_wait_ms, "max_body": endpoint.max_body,
                "stats_interval": 0.5,
                "variants": [{"name": v["name"], "model_dir": str(d), "weight": v["weight"],
                              "shadow": v.get("shadow", False)}
                             for v, d in zip(self.variants, dirs, strict=True)]}
            folder = self.manager.root / "endpoints" / endpoint.name
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "replica.json"
            path.write_text(json.dumps(config, indent=1))
            self.config_path = path
        except Exception as exc:
            log.warning("endpoint %s: fetching its models failed: %s", self.name, exc)
            self.error = f"fetching the models failed: {exc}\n{traceback.format_exc()}"
        finally:
            self.manager.wake.set()

    # --- replicas ------------------------------------------------------------------------------

    def _spawn(self) -> _Replica:
        assert self.config_path is not None
        log_path = self.config_path.parent / "replicas.log"
        with open(log_path, "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cumulo.serving.worker", "--fd",
                 str(self.sock.fileno()), "--config", str(self.config_path)],
                pass_fds=[self.sock.fileno()], stdout=subprocess.PIPE, stderr=err,
                env=self.manager.worker_env, start_new_session=True)
        replica = _Replica(proc, time.time())
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
            if "ready" in message:
                log.info("endpoint %s: replica %s ready in %.2fs", self.name, replica.proc.pid,
                         message["ready"])
                replica.ready.set()
                self.manager.wake.set()
            elif "failed" in message:
                replica.failed = str(message["failed"])
                self.manager.wake.set()
            elif "in_flight" in message:
                replica.in_flight = int(message["in_flight"])
                replica.stats.append((time.time(), message.get("variants", {})))
        stream.close()
        replica.proc.wait()
        self.manager.wake.set()

    def step(self, endpoint: Endpoint) -> None:
        """Move the endpoint towards its settings; record its state on the row."""
        if endpoint.state == "failed":
            return
        if self.error:
            self._fail(endpoint, self.error)
            return
        if self.config_path is None:
            return  # still fetching the models
        for replica in list(self.replicas):
            if replica.proc.poll() is not None and replica.reader is not None:
                replica.reader.join(2)  # what it said before it ended: its traceback, say
            if replica.failed:
                self._fail(endpoint, "a replica could not load the model:\n" + replica.failed)
                return
            if replica.proc.poll() is not None:
                self.replicas.remove(replica)
                self.gone = [*self.gone[-9:], replica]  # its last reports still count
                if replica.ready.is_set():
                    self.restarts += 1
                    log.warning("endpoint %s: replica %s exited (code %s); replacing it",
                                self.name, replica.proc.pid, replica.proc.returncode)
                else:
                    self.early_exits += 1
                    if endpoint.state == "creating" or self.early_exits >= 3:
                        self._fail(endpoint, f"a replica exited with code "
                                   f"{replica.proc.returncode} before it was ready; see "
                                   f"{self.config_path.parent}/replicas.log")
                        return
            elif replica.ready.is_set():
                self.early_exits = 0
        while len(self.replicas) < max(1, endpoint.min_replicas):
            self.replicas.append(self._spawn())
        if endpoint.state == "creating" and any(r.ready.is_set() for r in self.replicas):
            endpoint.state, endpoint.updated_at = "in_service", utcnow()

    def _fail(self, endpoint: Endpoint, message: str) -> None:
        self.stop_replicas()
        endpoint.state, endpoint.message, endpoint.updated_at = "failed", message, utcnow()

    def stop_replicas(self) -> None:
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
        self.replicas = []

    def close(self) -> None:
        self.stop_replicas()
        self.sock.close()

    def reports(self, since: float) -> list[dict[str, Any]]:
        """What every replica, running or gone, reported after ``since`` (a time.time())."""
        return [variants for r in [*self.replicas, *self.gone] for at, variants in r.stats
                if at > since]

    def describe(self) -> dict[str, Any]:
        return {"replicas": [{"pid": r.proc.pid, "ready": r.ready.is_set(),
                              "in_flight": r.in_flight, "started_at": r.started}
                             for r in self.replicas if r.proc.poll() is None],
                "restarts": self.restarts}


class EndpointManager:
    """Runs in the control plane: a thread that steps every endpoint twice a second, and at
    once when told (a new endpoint, a replica ready or gone)."""

    def __init__(self, settings: Settings, engine: Engine,
                 tracking_base: Callable[[], str]) -> None:
        self.settings = settings
        self.host = "127.0.0.1" if settings.host in ("", "localhost") else settings.host
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.tracking_base = tracking_base
        self.root = settings.home / "serving"
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._runtimes: dict[str, _Runtime] = {}
        self._thread: threading.Thread | None = None
        self.worker_env = {k: v for k, v in os.environ.items()
                           if not k.startswith(("CUMULO_", "MLFLOW_"))}
        self.worker_env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1",
                                "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                                "MKL_NUM_THREADS": "1"})

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="endpoints")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(15)
        with self._lock:
            for runtime in self._runtimes.values():
                runtime.close()
            self._runtimes.clear()

    def notify(self) -> None:
        self.wake.set()

    def runtime(self, name: str) -> dict[str, Any]:
        runtime = self._runtimes.get(name)
        return runtime.describe() if runtime else {"replicas": [], "restarts": 0}

    def metrics(self, name: str, window: float = 60.0) -> dict[str, Any]:
        """Per variant over the last ``window`` seconds: requests a second, errors, and p50,
        p95 and p99 of the whole latency, the model's part and the rest (overhead)."""
        runtime = self._runtimes.get(name)
        reports = runtime.reports(time.time() - window) if runtime else []
        return summarize(reports, window)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wake.clear()
            try:
                with self._lock, self.sessions() as session:
                    self._tick(session)
            except Exception:  # a bug here must not end the manager: log it, go on
                log.exception("endpoint manager step failed")
            self.wake.wait(0.5)

    def _tick(self, session: Session) -> None:
        rows = {e.name: e for e in session.scalars(select(Endpoint))}
        for name in set(self._runtimes) - set(rows):
            self._runtimes.pop(name).close()
        for name, endpoint in rows.items():
            if endpoint.state == "deleting":
                runtime = self._runtimes.pop(name, None)
                if runtime is not None:
                    runtime.close()
                session.delete(endpoint)
                continue
            runtime = self._runtimes.get(name)
            if runtime is None:
                try:
                    runtime = self._runtimes[name] = _Runtime(self, endpoint)
                except OSError as exc:
                    endpoint.state, endpoint.updated_at = "failed", utcnow()
                    endpoint.message = f"cannot listen on port {endpoint.port}: {exc}"
                    continue
            runtime.step(endpoint)
        session.commit()

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
