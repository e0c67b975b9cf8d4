"""MLflow's tracking server, run by the control plane and reached through it under /mlflow.

MLflow runs as a child process of its own (``mlflow server`` on a private loopback port), started
on the first request to /mlflow, so a control plane that never tracks anything never pays for
it (MLflow takes seconds and a few hundred MB to start). Its runs and registered models live in
the metadata store (``<home>/mlflow.db`` beside SQLite's ``cumulo.db``, or the ``mlflow``
schema of the PostgreSQL database); its artifacts under the storage root's ``mlflow/``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import httpx

from cumulo.config import Settings, child_env
from cumulo.errors import Unavailable

__all__ = ["PREFIX", "TrackingServer"]

log = logging.getLogger("cumulo.ml")
PREFIX = "/mlflow"
START_TIMEOUT = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backend_store_uri(settings: Settings) -> str:
    """Where MLflow keeps runs and models: in Cumulo's metadata store, apart from its tables."""
    url = settings.database_url
    if url.startswith("sqlite"):
        return f"sqlite:///{settings.home / 'mlflow.db'}"
    base = "postgresql+psycopg://" + url.split("://", 1)[1]
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote('-csearch_path=mlflow')}"


def _create_schema(settings: Settings) -> None:
    if settings.database_url.startswith("sqlite"):
        return
    from sqlalchemy import text

    from cumulo.db import make_engine

    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE SCHEMA IF NOT EXISTS mlflow"))
    finally:
        engine.dispose()


def artifacts_destination(settings: Settings, storage_url: str) -> tuple[str, dict[str, str]]:
    """The storage root's ``mlflow/``, and what MLflow needs in its environment to reach it."""
    if storage_url.startswith("s3://"):
        s3 = settings.s3
        env = {k: v for k, v in {
            "MLFLOW_S3_ENDPOINT_URL": s3.endpoint_url, "AWS_ACCESS_KEY_ID": s3.access_key_id,
            "AWS_SECRET_ACCESS_KEY": s3.secret_access_key, "AWS_DEFAULT_REGION": s3.region,
        }.items() if v}
        return storage_url.rstrip("/") + "/mlflow", env
    return os.path.join(storage_url, "mlflow"), {}


class TrackingServer:
    """Starts MLflow on first use, restarts it if it dies, stops it with the control plane."""

    def __init__(self, settings: Settings, storage_url: str) -> None:
        self.settings = settings
        self.storage_url = storage_url
        self._proc: subprocess.Popen[bytes] | None = None
        self._base: str | None = None
        self._lock = threading.Lock()

    def ensure(self) -> str:
        """The running server's base URL (``http://127.0.0.1:PORT/mlflow``), starting it if
        need be."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None and self._base:
                return self._base
            if self._proc is not None:
                log.warning("MLflow exited with %s; starting it again", self._proc.returncode)
            return self._start()

    def _start(self) -> str:
        try:
            import mlflow  # noqa: F401
        except ImportError as exc:
            raise Unavailable("MLflow tracking needs MLflow: pip install 'cumulo[ml]'") from exc
        _create_schema(self.settings)
        port = _free_port()
        destination, extra_env = artifacts_destination(self.settings, self.storage_url)
        # MLflow's own job queue (huey workers) is not used: Cumulo runs the jobs.
        env = child_env({**extra_env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                        mlflow=True)
        logfile = self.settings.home / "mlflow.log"
        with open(logfile, "ab") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
                 "--port", str(port), "--workers", "1",
                 "--backend-store-uri", backend_store_uri(self.settings),
                 "--serve-artifacts", "--artifacts-destination", destination,
                 "--static-prefix", PREFIX],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        base = f"http://127.0.0.1:{port}{PREFIX}"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise Unavailable(f"MLflow's tracking server did not start (exit code "
                                  f"{self._proc.returncode}); see {logfile}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    self._base = base
                    log.info("MLflow tracking server up", extra={"port": port})
                    return base
            time.sleep(0.2)
        self.stop()
        raise Unavailable(f"MLflow's tracking server did not answer in {START_TIMEOUT:.0f}s; "
                          f"see {logfile}")

    def stop(self) -> None:
        proc, self._proc, self._base = self._proc, None, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
