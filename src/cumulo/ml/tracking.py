"""MLflow's tracking server, run by the control plane and reached through it under /mlflow.

MLflow runs as a child process of its own (``mlflow server``), started on the first request to
/mlflow, so a control plane that never tracks anything never pays for it (MLflow takes seconds
and a few hundred MB to start). Its runs and registered models live in the metadata store
(``<home>/mlflow.db`` beside SQLite's ``cumulo.db``, or the ``mlflow`` schema of the PostgreSQL
database); its artifacts under the storage root's ``mlflow/``.

MLflow checks no tokens, so nothing but the control plane may reach it: it listens on a Unix
socket inside the home (a folder only its owner can open), not on a port, and every other
client (jobs, the stock MLflow client, a browser) comes through ``/mlflow``, which checks the
caller's token. It dies with the control plane, however that ends: the child holds the read end
of a pipe whose only writer is the control plane, and when the pipe closes it stops its whole
process group. A group left by a crash anyway is stopped at the next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from cumulo.config import Settings, child_env
from cumulo.errors import Unavailable
from cumulo.forkserver import process_alive

__all__ = ["BASE", "PREFIX", "TrackingServer"]

log = logging.getLogger("cumulo.ml")
PREFIX = "/mlflow"
# The host is MLflow's business only: the socket decides where a request goes, and "localhost"
# passes MLflow's own Host check.
BASE = "http://localhost" + PREFIX
START_TIMEOUT = 120.0
_SOCKET_MAX = 100  # a Unix socket's path must fit in 108 bytes
_STOP_GRACE = 5.0


def socket_path(home: Path) -> Path:
    """Where MLflow listens: in the home (mode 0700), or in a private temporary folder when
    the home's path is too long for a socket's."""
    path = home / "mlflow.sock"
    if len(os.fsencode(path)) <= _SOCKET_MAX:
        return path
    return Path(tempfile.mkdtemp(prefix="cumulo-mlflow-")) / "mlflow.sock"


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
        self.socket = socket_path(settings.home)
        self._pidfile = settings.home / "mlflow.pid"
        self._proc: subprocess.Popen[bytes] | None = None
        self._lifeline: int | None = None  # the pipe's write end: closed, MLflow stops
        self._up = False
        self._lock = threading.Lock()
        reap_orphans(self._pidfile)  # one a crash left: it would hold the socket's name
        self._http = httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)),
                                  timeout=httpx.Timeout(60.0, connect=10.0))

    def transport(self) -> httpx.AsyncHTTPTransport:
        """For an async client that talks to MLflow (the /mlflow proxy's)."""
        return httpx.AsyncHTTPTransport(uds=str(self.socket))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call to MLflow's REST API (``path`` after /mlflow/), starting MLflow if need be."""
        self.ensure()
        return self._http.request(method, f"{BASE}/{path.lstrip('/')}", **kwargs)

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """``request``, with the answer's body read as it comes (``iter_bytes``)."""
        self.ensure()
        with self._http.stream(method, f"{BASE}/{path.lstrip('/')}", **kwargs) as response:
            yield response

    def ensure(self) -> str:
        """The running server's base URL (``http://localhost/mlflow``, reached over
        :attr:`socket`), starting it if need be."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None and self._up:
                return BASE
            if self._proc is not None:
                log.warning("MLflow exited with %s; starting it again", self._proc.returncode)
                self._release()
            return self._start()

    def _start(self) -> str:
        try:
            import mlflow  # noqa: F401
        except ImportError as exc:
            raise Unavailable("MLflow tracking needs MLflow: pip install 'cumulo[ml]'") from exc
        reap_orphans(self._pidfile)
        _create_schema(self.settings)
        destination, extra_env = artifacts_destination(self.settings, self.storage_url)
        # MLflow's own job queue (huey workers) is not used: Cumulo runs the jobs.
        env = child_env({**extra_env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                        mlflow=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        logfile = self.settings.home / "mlflow.log"
        read, self._lifeline = os.pipe()
        try:
            with open(logfile, "ab") as out:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "cumulo.ml.tracking", str(read),
                     # --host/--port are there for MLflow's own checks; uvicorn binds --uds only
                     "--host", "127.0.0.1", "--port", "0", "--workers", "1",
                     "--uvicorn-opts", f"--uds {self.socket}",
                     "--backend-store-uri", backend_store_uri(self.settings),
                     "--serve-artifacts", "--artifacts-destination", destination,
                     "--static-prefix", PREFIX],
                    env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    pass_fds=(read,),
                )
        finally:
            os.close(read)
        self._pidfile.write_text(f"{self._proc.pid} {os.getpid()}\n")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._release()
                raise Unavailable(f"MLflow's tracking server did not start (exit code "
                                  f"{code}); see {logfile}")
            with contextlib.suppress(httpx.TransportError):
                if self._http.get(f"{BASE}/health", timeout=1).status_code == 200:
                    self._up = True
                    log.info("MLflow tracking server up", extra={"socket": str(self.socket)})
                    return BASE
            time.sleep(0.2)
        self._stop()
        raise Unavailable(f"MLflow's tracking server did not answer in {START_TIMEOUT:.0f}s; "
                          f"see {logfile}")

    def _release(self) -> None:
        if self._lifeline is not None:
            os.close(self._lifeline)
        self._proc, self._lifeline, self._up = None, None, False

    def stop(self) -> None:
        with self._lock:
            self._stop()
        self._http.close()

    def _stop(self) -> None:
        proc = self._proc
        self._release()  # the child sees the pipe close and stops its group too
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
        self._pidfile.unlink(missing_ok=True)


def _group_members(pgid: int) -> list[int]:
    """The live processes of a process group (Linux's /proc; none found elsewhere)."""
    members = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = entry.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.parent.name))
    return members


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def reap_orphans(pidfile: Path) -> list[int]:
    """Stop an MLflow left running by a control plane that died without stopping it (one
    killed before its child could see the pipe close): the group named in ``pidfile``, when
    the control plane that started it is gone and the group is still MLflow's. Returns the
    pids stopped."""
    try:
        pgid, owner = (int(x) for x in pidfile.read_text().split())
    except (OSError, ValueError):
        return []
    if owner != os.getpid() and process_alive(owner, None) and "cumulo" in _cmdline(owner):
        return []  # another control plane on this home, still running
    members = [pid for pid in _group_members(pgid)
               if any(name in _cmdline(pid) for name in ("mlflow", "cumulo.ml.tracking"))]
    for pid in members:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if members:
        log.warning("stopped an MLflow left running by an earlier control plane",
                    extra={"pids": members})
    pidfile.unlink(missing_ok=True)
    return members


def _watch_lifeline(fd: int) -> None:
    """In the child: wait for the control plane's end of the pipe to close, then stop this
    whole process group (MLflow's uvicorn with it), by force if it lingers."""
    with contextlib.suppress(OSError):
        while os.read(fd, 4096):
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(0, signal.SIGTERM)
    time.sleep(_STOP_GRACE)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> None:
    """``python -m cumulo.ml.tracking FD MLFLOW-SERVER-ARGS...``: ``mlflow server``, tied to
    the control plane by the pipe whose read end is FD."""
    threading.Thread(target=_watch_lifeline, args=(int(argv[0]),), daemon=True).start()
    from mlflow.cli import cli

    cli.main(args=["server", *argv[1:]], prog_name="mlflow")


if __name__ == "__main__":
    main(sys.argv[1:])
