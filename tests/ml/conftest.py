"""A server whose MLflow the ML tests share (MLflow takes seconds to start)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import Cumulo, start_cumulo


@pytest.fixture(scope="package")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    server = start_cumulo(tmp_path_factory.mktemp("ml") / ".cumulo")
    yield server
    server.stop()
