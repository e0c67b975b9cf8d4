"""Replica processes: real MLflow models, one listening socket shared by the replicas."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scikit-learn model with a signature, saved as MLflow saves it."""
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "y": [0.5, 0.1, 0.3, 0.9, 0.2,
                                                                   0.7]})
    labels = [0, 0, 0, 1, 1, 1]
    model = LogisticRegression().fit(frame, labels)
    path = tmp_path_factory.mktemp("models") / "m"
    mlflow.sklearn.save_model(model, str(path), signature=infer_signature(frame, labels),
                              serialization_format="pickle")
    return path


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


def _start(sock: socket.socket, config: dict[str, Any], tmp: Path) -> subprocess.Popen[bytes]:
    path = tmp / f"config-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(config))
    return subprocess.Popen(
        [sys.executable, "-m", "cumulo.serving.worker", "--fd", str(sock.fileno()),
         "--config", str(path)], pass_fds=[sock.fileno()], stdout=subprocess.PIPE)


def _line(stream: IO[bytes] | None) -> dict[str, Any]:
    assert stream is not None
    return json.loads(stream.readline())  # type: ignore[no-any-return]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = _listener()
    yield sock
    sock.close()


def test_replica_serves_a_model(model_dir: Path, listener: socket.socket,
                                tmp_path: Path) -> None:
    proc = _start(listener, {"endpoint": "churn", "stats_interval": 0.2, "variants": [
        {"name": "v1", "model_dir": str(model_dir)}]}, tmp_path)
    try:
        ready = _line(proc.stdout)
        assert "ready" in ready and ready["pid"] == proc.pid
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        rows = {"dataframe_split": {"columns": ["x", "y"], "data": [[0.1, 0.2], [5.0, 0.9]]}}
        answer = httpx.post(f"{url}/invocations", json=rows)
        assert answer.status_code == 200 and answer.json() == {"predictions": [0, 1]}
        assert answer.headers["x-cumulo-variant"] == "v1"
        bad = httpx.post(f"{url}/endpoints/churn/invocations",
                         json={"dataframe_records": [{"x": 1.0}]})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "y"
        stats = _line(proc.stdout)
        while not stats["variants"]:
            stats = _line(proc.stdout)
        assert stats["variants"]["v1"]["requests"] == 2
        assert stats["variants"]["v1"]["errors_4xx"] == 1
    finally:
        _stop(proc)


def test_a_model_that_fails_to_load_says_why(listener: socket.socket, tmp_path: Path) -> None:
    proc = _start(listener, {"endpoint": "e", "variants": [
        {"name": "v1", "model_dir": str(tmp_path / "nothing-here")}]}, tmp_path)
    message = _line(proc.stdout)
    assert proc.wait(60) == 1
    _stop(proc)
    assert "Traceback" in message["failed"] and "nothing-here" in message["failed"]


def test_queued_connections_survive_a_killed_replica(model_dir: Path, listener: socket.socket,
                                                     tmp_path: Path) -> None:
    """Two replicas on one socket: killing one loses none of the connections still queued,
    and a request that waits while no replica runs is answered once one starts."""
    config = {"endpoint": "e", "variants": [{"name": "v1", "model_dir": str(model_dir)}]}
    first, second = _start(listener, config, tmp_path), _start(listener, config, tmp_path)
    try:
        _line(first.stdout), _line(second.stdout)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/invocations"
        body = {"instances": [{"x": 1.0, "y": 0.5}]}
        _stop(first)
        with httpx.Client() as client:  # new connections: only the survivor accepts them
            assert all(client.post(url, json=body).status_code == 200 for _ in range(20))
        _stop(second)
        # No replica: the connection waits in the socket's queue for the next one.
        import threading

        answers: list[int] = []
        waiter = threading.Thread(target=lambda: answers.append(
            httpx.post(url, json=body, timeout=60).status_code))
        waiter.start()
        time.sleep(0.5)
        third = _start(listener, config, tmp_path)
        waiter.join(60)
        assert answers == [200]
        _stop(third)
    finally:
        for proc in (first, second):
            _stop(proc)
