"""Fixtures: real PostgreSQL, a real S3 stand-in, and real Cumulo servers on free ports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import Cumulo, Postgres, S3Server, postgres, s3_server, start_cumulo

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
