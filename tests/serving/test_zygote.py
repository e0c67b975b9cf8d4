"""The serving fork server: replicas forked from a process that imported the stack once
(the shared :mod:`cumulo.forkserver`, with the local runtime's preload list and entry)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cumulo.config import child_env
from cumulo.forkserver import Forked, ForkServer
from cumulo.serving.runtimes.local import PRELOAD


def _server(log: Path) -> ForkServer:
    return ForkServer(PRELOAD, env=child_env(), log_path=log, name="serving fork server")


def _start(forks: ForkServer, listener: socket.socket, log: Path) -> Forked | None:
    """A replica, forked as the local runtime's Launcher forks one."""
    with open(log, "ab") as err:
        return forks.start("cumulo.serving.worker:forked",
                           {"config": str(log.parent / "replica.json")},
                           fds=[listener.fileno()], stderr=err.fileno(), pipe_stdout=True)


@pytest.fixture(scope="module")
def forks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    server = _server(tmp_path_factory.mktemp("zygote") / "zygote.log")
    deadline = time.monotonic() + 120
    while server.state == "starting":
        assert time.monotonic() < deadline, "the fork server did not get ready"
        time.sleep(0.05)
    assert server.state == "ready", server.why
    yield server
    server.stop()


def _config(folder: Path, model_dir: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "replica.json").write_text(json.dumps({
        "endpoint": "e", "stats_interval": 0.2, "public": True,
        "variants": [{"name": "v1", "model_dir": str(model_dir)}]}))
    return folder / "replicas.log"


def test_preloads_the_serving_stack(forks: ForkServer) -> None:
    assert {"mlflow.pyfunc", "pandas", "httptools", "cumulo.serving.http"} <= set(forks.modules)
    assert forks.describe()["state"] == "ready"


def test_forked_replica_serves_and_its_exit_code_comes_back(
        forks: ForkServer, model_dir: Path, tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    log = _config(tmp_path / "e", model_dir)
    t0 = time.monotonic()
    child = _start(forks, listener, log)
    assert child is not None and child.stdout is not None
    ready = json.loads(child.stdout.readline())
    started = time.monotonic() - t0
    assert ready["pid"] == child.pid and ready["ready"] < 5
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/invocations"
    answer = httpx.post(url, json={"instances": [{"x": 5.0, "y": 0.9}]})
    assert answer.status_code == 200 and answer.json() == {"predictions": [1]}
    print(f"forked replica ready in {started:.2f}s")
    # Its own session: a replica's signals do not reach the fork server.
    assert os.getsid(child.pid) == child.pid
    child.kill()
    assert child.wait(10) == -signal.SIGKILL
    child.stdout.close()
    listener.close()


def test_two_replicas_share_a_socket_and_stop_gracefully(forks: ForkServer, model_dir: Path,
                                                         tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    log = _config(tmp_path / "e", model_dir)
    a, b = _start(forks, listener, log), _start(forks, listener, log)
    assert a is not None and b is not None and a.pid != b.pid
    for child in (a, b):
        assert child.stdout is not None
        assert "ready" in json.loads(child.stdout.readline())
        child.terminate()
        # It stops accepting, answers what it holds, and exits 0.
        assert child.wait(30) == 0
        child.stdout.close()
    listener.close()


def test_a_replica_whose_model_fails_exits_1_with_the_traceback(
        forks: ForkServer, tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    log = _config(tmp_path / "e", tmp_path / "no-model")
    child = _start(forks, listener, log)
    assert child is not None and child.stdout is not None
    message = json.loads(child.stdout.readline())
    assert "no-model" in message["failed"]
    assert child.wait(30) == 1
    child.stdout.close()
    listener.close()


def test_after_the_fork_server_dies_starts_are_refused(model_dir: Path, tmp_path: Path) -> None:
    server = _server(tmp_path / "zygote.log")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        assert _start(server, listener, _config(tmp_path / "e", model_dir)) is None  # starting
        server.proc.kill()
        deadline = time.monotonic() + 30
        while server.state != "failed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "exited" in (server.why or "")
        assert _start(server, listener, tmp_path / "e" / "replicas.log") is None
    finally:
        server.stop()
        listener.close()
