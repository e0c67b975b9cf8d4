"""Fixtures: real PostgreSQL, a real S3 stand-in, and real Cumulo servers on free ports."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.services import (
    Cumulo,
    Postgres,
    S3Server,
    free_port,
    postgres,
    s3_server,
    start_cumulo,
)

# `make test` runs the suite on two xdist workers (`-n 2 --dist loadfile`), a module at a time
# on one worker, so module fixtures (a server, a trained model) are made once. Some modules go
# together: the console's share a package's browser and server, and two Ray heads on one
# machine collide (session folders, worker ports). (xdist's own "loadgroup" marks do not work
# with pytest 9: xdist renames the items by a field pytest no longer reads.)
_TOGETHER = {"tests/compute/test_ray.py": "ray", "tests/serving/test_rayserve.py": "ray",
             "tests/compute/test_ray_control_planes.py": "ray"}
# The longest units start first: the Ray unit on one worker, the others in turn on the other
# (xdist otherwise starts the units with the most tests first, which left these one-test
# modules of several minutes for the end, where one worker ran them alone while the other had
# nothing left).
_FIRST = ["ray", "tests/test_readme_tour.py", "tests/server/test_openapi_fuzz.py",
          "tests/notebooks/test_tour.py"]


def _unit(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return "console" if module.startswith("tests/console/") else _TOGETHER.get(module, module)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Together(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            first = next((unit for unit in _FIRST if unit in self.workqueue), None)
            if first is not None:
                self.workqueue.move_to_end(first, last=False)
            super()._assign_work_unit(node)

    return Together(config, log)


@pytest.fixture(autouse=True, scope="module")
def _mlflow_client_forgets_each_module() -> Iterator[None]:
    """MLflow's client keeps its tracking and registry URIs and its experiment for the whole
    process, in globals and in os.environ (where servers started later would inherit them).
    A module that points them at its server must not leave them pointing at a stopped one for
    the next module, which on an xdist worker may be any module."""
    yield
    if "mlflow" in sys.modules:
        from mlflow.tracking import _model_registry, _tracking_service, fluent

        _tracking_service.utils._tracking_uri = None
        _model_registry.utils._registry_uri = None
        fluent._active_experiment_id = None
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID",
                 "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_TOKEN"):
        os.environ.pop(name, None)


# Every metadata x storage combination the storage tests run against.
BACKENDS = ["sqlite+local", "postgres+local", "sqlite+s3", "postgres+s3"]


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    with postgres(tmp_path_factory.mktemp("pg")) as server:
        yield server


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


def backend_env(kind: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment that points a server at the metadata and storage backends named by kind."""
    db, storage = kind.split("+")
    env: dict[str, str] = {}
    name = "t" + uuid.uuid4().hex[:10]
    if db == "postgres":
        env["CUMULO_DATABASE_URL"] = request.getfixturevalue("pg").create_database(name)
    if storage == "s3":
        s3: S3Server = request.getfixturevalue("s3")
        env.update(s3.env(), CUMULO_STORAGE_URL=s3.create_bucket(name))
    return env


@contextmanager
def two_control_planes(request: pytest.FixtureRequest, root: Path,
                       extra_env: dict[str, str] | None = None) -> Iterator[tuple[Cumulo, Cumulo]]:
    """Two control planes, each with a home and a port of its own, on one fresh PostgreSQL
    database and S3 bucket: several machines' Cumulo, on this one. The first is SIGKILLed at
    the end (a test may have killed it already), the second stopped. Both have the two's URLs
    as their public URL (as docs/deployment.md says, without a load balancer): what jobs and
    replicas call back through, in turn."""
    ports = free_port(), free_port()
    env = {**backend_env("postgres+s3", request),
           "CUMULO_PUBLIC_URL": ",".join(f"http://127.0.0.1:{p}" for p in ports),
           **(extra_env or {})}
    a = start_cumulo(root / "a" / ".cumulo", env, port=ports[0])
    try:
        b = start_cumulo(root / "b" / ".cumulo", env, port=ports[1])
    except BaseException:
        a.stop(signal.SIGKILL)
        raise
    try:
        yield a, b
    finally:
        a.stop(signal.SIGKILL)
        b.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    """A running Cumulo server per module and backend combination."""
    home = tmp_path_factory.mktemp("cumulo") / ".cumulo"
    cumulo = start_cumulo(home, backend_env(request.param, request))
    yield cumulo
    cumulo.stop()


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    """A running Cumulo server on the embedded defaults (SQLite, local folder)."""
    home = tmp_path_factory.mktemp("cumulo") / ".cumulo"
    cumulo = start_cumulo(home)
    yield cumulo
    cumulo.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / ".cumulo"
