"""One plain server for the modules here that need only a server (test_magic, test_runs,
test_tour): each names its own things on it (a database, buckets, pipelines, a model), so they
share it rather than each starting and stopping one, seconds apiece. Session scope: `make test`
sends each module to an xdist worker of its own choosing, and a worker that runs two of them
starts it once; it stops when that worker's session ends. test_notebooks starts its own: it
adds a user, grants rights, and kills and restarts its server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import Cumulo, start_cumulo


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    cumulo = start_cumulo(tmp_path_factory.mktemp("notebooks-shared") / ".cumulo")
    yield cumulo
    cumulo.stop()
