"""Real services for the tests: PostgreSQL, an S3 stand-in, and Cumulo servers.

Each runs as a real process on a free loopback port and is stopped when the tests end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

VENV_BIN = Path(sys.executable).parent
CUMULO = str(VENV_BIN / "cumulo")
ADMIN_TOKEN = "cml_test-admin-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer in {timeout}s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- PostgreSQL --------------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                                                   reverse=True)), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed; 'make test' installs it")
    return found


@dataclass
class Postgres:
    port: int
    proc: subprocess.Popen[bytes]
    created: list[str] = field(default_factory=list)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def postgres(tmp: Path) -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster, run as the 'postgres' user when we are root."""
    # pytest's own temporary folders are private to root; the server needs one it can enter.
    tmp = Path(tempfile.mkdtemp(prefix="cumulo-pg-", dir=tmp if os.geteuid() else "/tmp"))
    data, sockets = tmp / "pgdata", tmp / "pgsock"
    data.mkdir()
    sockets.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (tmp, data, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    init = subprocess.run([*as_user, _pg_bin("initdb"), "-D", str(data), "-U", "postgres",
                           "--auth=trust", "--no-sync", "-E", "UTF8"], capture_output=True,
                          text=True)
    if init.returncode:
        raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
    port = free_port()
    log = tmp / "postgres.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*as_user, _pg_bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{log.read_text()}") from None
            time.sleep(0.1)
    pg = Postgres(port=port, proc=proc)
    # Ready to accept connections only once startup finishes: retry the first query.
    for _ in range(100):
        try:
            import psycopg

            psycopg.connect(pg.url("postgres")).close()
            break
        except Exception:
            time.sleep(0.1)
    try:
        yield pg
    finally:
        stop(proc, sig=signal.SIGINT)
        shutil.rmtree(tmp, ignore_errors=True)


# --- S3 stand-in -------------------------------------------------------------------------------


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        return {"CUMULO_S3_ENDPOINT_URL": self.endpoint, "CUMULO_S3_ACCESS_KEY_ID": "testing",
                "CUMULO_S3_SECRET_ACCESS_KEY": "testing", "CUMULO_S3_REGION": "us-east-1"}

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}/cumulo"


@contextmanager
def s3_server(tmp: Path) -> Iterator[S3Server]:
    """moto in server mode: an S3-compatible HTTP server on loopback, standing in for S3."""
    port = free_port()
    log = tmp / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for(endpoint + "/moto-api/", proc, log)
        yield S3Server(endpoint=endpoint, proc=proc)
    finally:
        stop(proc)


# --- Cumulo ------------------------------------------------------------------------------------


@dataclass
class Cumulo:
    url: str
    token: str
    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path
    clients: list[Any] = field(default_factory=list)

    def client(self, token: str | None = None):  # type: ignore[no-untyped-def]
        """An SDK client, closed when the server stops."""
        from cumulo import Client

        client = Client(self.url, token=token or self.token)
        self.clients.append(client)
        return client

    def cli(self, *args: str, input: bytes | None = None,
            token: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "CUMULO_URL": self.url, "CUMULO_TOKEN": token or self.token}
        return subprocess.run([CUMULO, *args], env=env, capture_output=True, text=input is None,
                              input=input, timeout=120, cwd=self.home.parent)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()
        stop(self.proc, sig=sig)

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def add_user(self, name: str, token: str, *, role: str = "developer",  # type: ignore[no-untyped-def]
                 project: str | None = None):
        """A second user with this very token (the API makes random ones), and an SDK client
        as them: added to the server's SQLite database as the API adds them. They hold
        ``role`` everywhere, or only in ``project`` (made if there is none) when one is given."""
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from cumulo.access.models import Binding, Project, User
        from cumulo.access.tokens import _add_token
        from cumulo.db import make_engine, utcnow

        engine = make_engine(f"sqlite:///{self.home / 'cumulo.db'}")
        with Session(engine) as session:
            user = User(name=name, is_admin=False, created_at=utcnow())
            session.add(user)
            session.flush()
            _add_token(session, user, name, token, created_by=user.id)
            project_id = None
            if project is not None:
                found = session.scalar(select(Project).where(Project.name == project))
                if found is None:
                    found = Project(name=project, description="", quotas={},
                                    created_at=utcnow())
                    session.add(found)
                    session.flush()
                project_id = found.id
            session.add(Binding(subject_kind="user", subject_id=user.id, role=role,
                                project_id=project_id, created_at=utcnow()))
            session.commit()
        engine.dispose()
        return self.client(token)


def base_env(home: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("CUMULO_")}
    # No fork servers unless a test asks for them: each would import the ML stack (or the
    # serving stack) for every server the tests start.
    return {**keep, "CUMULO_PRELOAD": "none", "CUMULO_SERVING_PRELOAD": "0",
            "CUMULO_HOME": str(home), "CUMULO_ADMIN_TOKEN": ADMIN_TOKEN,
            "CUMULO_CREDENTIALS": str(home.parent / "credentials.toml")}


def start_cumulo(home: Path, extra_env: dict[str, str] | None = None, *,
                 port: int | None = None) -> Cumulo:
    port = port or free_port()
    env = {**base_env(home), "CUMULO_PORT": str(port), **(extra_env or {})}
    home.mkdir(parents=True, exist_ok=True)
    log = home.parent / f"cumulo-{port}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([CUMULO, "up"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=home.parent)
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/healthz", proc, log)
    return Cumulo(url=url, token=ADMIN_TOKEN, home=home, env=env, proc=proc, log=log)


# --- Ray ---------------------------------------------------------------------------------------


@dataclass
class RayHead:
    client_address: str  # ray://127.0.0.1:PORT
    dashboard: str
    proc: subprocess.Popen[bytes]


@contextmanager
def ray_head(tmp: Path, cpus: int = 2) -> Iterator[RayHead]:
    """A real single-node Ray cluster (head only), stopped when the tests end."""
    gcs, dashboard, client = free_port(), free_port(), free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
           # Ray runs a job's entrypoint with the head's PATH: this venv's python, with Cumulo.
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = tmp / "ray-head.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "ray"), "start", "--head", "--block", f"--port={gcs}",
             f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
             f"--num-cpus={cpus}", "--num-gpus=0", "--include-dashboard=true",
             "--dashboard-host=127.0.0.1", "--disable-usage-stats"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        wait_for(url + "/api/version", proc, log, timeout=120)
        yield RayHead(client_address=f"ray://127.0.0.1:{client}", dashboard=url, proc=proc)
    finally:
        stop(proc, sig=signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def register_churn(server: Cumulo, name: str, experiment: str) -> str:
    """A logistic regression with a signature (tenure: long, spend: double; 1 = churns, for
    short tenure and low spend), logged and registered with MLflow's own client through the
    server's /mlflow as the next version of `name`. Returns the name."""
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    os.environ["MLFLOW_TRACKING_TOKEN"] = server.token
    mlflow.set_tracking_uri(f"{server.url}/mlflow")
    mlflow.set_registry_uri(f"{server.url}/mlflow")
    # This server's experiment: MLflow's client remembers the last one set in this process,
    # which may be another test server's.
    mlflow.set_experiment(experiment)
    frame = pd.DataFrame({"tenure": [1, 3, 5, 40, 50, 60], "spend": [20.0, 25, 30, 70, 80, 90]})
    labels = [1, 1, 1, 0, 0, 0]
    with mlflow.start_run():
        # Requirements named: MLflow would otherwise infer them in a subprocess (seconds).
        mlflow.sklearn.log_model(LogisticRegression().fit(frame, labels), name="model",
                                 registered_model_name=name, pip_requirements=["scikit-learn"],
                                 signature=infer_signature(frame, labels),
                                 serialization_format="pickle")
    return name
