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


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


def _start(sock: socket.socket, config: dict[str, Any], tmp: Path) -> subprocess.Popen[bytes]:
    path = tmp / f"config-{time.monotonic_ns()}.json"
    # Public: these tests call the replica without a token (test_replica_auth checks tokens).
    path.write_text(json.dumps({"public": True, **config}))
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
        # The two requests may fall in one stats window or two.
        requests = errors = 0
        while requests < 2:
            v1 = _line(proc.stdout)["variants"].get("v1", {})
            requests += v1.get("requests", 0)
            errors += v1.get("errors_4xx", 0)
        assert (requests, errors) == (2, 1)
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


def test_replica_reads_its_config_again_when_it_changes(model_dir: Path,
                                                       listener: socket.socket,
                                                       tmp_path: Path) -> None:
    """A traffic shift rewrites the config: the running replica loads the new variant and
    takes the new weights and batching without a restart; a variant it cannot load is
    reported, and it keeps serving what it had."""
    path = tmp_path / "replica.json"
    config = {"endpoint": "e", "stats_interval": 0.1, "generation": 1, "public": True,
              "variants": [{"name": "old", "model_dir": str(model_dir), "weight": 1}]}
    path.write_text(json.dumps(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cumulo.serving.worker", "--fd", str(listener.fileno()),
         "--config", str(path)], pass_fds=[listener.fileno()], stdout=subprocess.PIPE)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/invocations"
    body = {"instances": [{"x": 1.0, "y": 0.5}]}
    try:
        assert _line(proc.stdout)["generation"] == 1

        def rewrite(doc: dict[str, Any]) -> None:
            tmp = tmp_path / ".next.json"
            tmp.write_text(json.dumps(doc))
            tmp.replace(path)

        def until(check: Any) -> dict[str, Any]:
            while True:
                line = _line(proc.stdout)
                if check(line):
                    return line

        rewrite({**config, "generation": 2, "variants": [
            {"name": "old", "model_dir": str(model_dir), "weight": 0},
            {"name": "new", "model_dir": str(model_dir), "weight": 1}]})
        until(lambda line: line.get("generation") == 2)
        assert {httpx.post(url, json=body).headers["x-cumulo-variant"]
                for _ in range(5)} == {"new"}
        rewrite({**config, "generation": 3, "variants": [
            {"name": "new", "model_dir": str(model_dir), "weight": 1},
            {"name": "ghost", "model_dir": str(tmp_path / "missing"), "weight": 1}]})
        failed = until(lambda line: "reload_failed" in line)
        assert failed["generation"] == 3 and "missing" in failed["reload_failed"]
        assert httpx.post(url, json=body).headers["x-cumulo-variant"] == "new"
        assert _line(proc.stdout)["generation"] == 2  # still the last one it could load
    finally:
        _stop(proc)


def test_a_replica_whose_manager_is_gone_stops(model_dir: Path, listener: socket.socket,
                                               tmp_path: Path) -> None:
    """A control plane that crashed leaves no replica serving (and holding its port)."""
    proc = _start(listener, {"endpoint": "e", "stats_interval": 0.1,
                             "variants": [{"name": "v1", "model_dir": str(model_dir)}]},
                  tmp_path)
    try:
        assert "ready" in _line(proc.stdout)
        assert proc.stdout is not None
        proc.stdout.close()  # the manager's end of the pipe, as when it dies
        assert proc.wait(20) == 0
    finally:
        _stop(proc)
