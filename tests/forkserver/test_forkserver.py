"""The shared fork server (:mod:`cumulo.forkserver`), on its own: real processes, no mocks.

Jobs and replicas use it through their executors; their own tests (tests/compute/test_zygote.py,
tests/serving/test_zygote.py) run it end to end. These pin the contract those rely on.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from cumulo.config import child_env
from cumulo.forkserver import Forked, ForkServer, parse_preload

HERE = "tests.forkserver.test_forkserver"


def say(args: dict[str, Any], fds: list[int]) -> int:
    """An entry point: prints what the child sees, then exits with ``args["code"]``."""
    print(json.dumps({"args": args, "fds": len(fds), "pid": os.getpid(), "sid": os.getsid(0),
                      "env": os.environ.get("FORKED_VALUE"), "draw": random.random(),
                      "json_loaded": "json" in sys.modules}), flush=True)
    if args.get("sleep"):
        time.sleep(float(args["sleep"]))
    return int(args.get("code", 0))


def mark(args: dict[str, Any], fds: list[int]) -> int:
    """An entry point that leaves a file behind: whether it ran at all."""
    Path(args["path"]).write_text(str(os.getpid()))
    return 0


def fail(args: dict[str, Any], fds: list[int]) -> int:
    raise RuntimeError("the entry point failed")


def _ready(server: ForkServer) -> ForkServer:
    assert server.ready.wait(60), server.why
    assert server.state == "ready"
    return server


@pytest.fixture(scope="module")
def forks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    folder = tmp_path_factory.mktemp("forks")
    server = _ready(ForkServer(["json", HERE], env=child_env(), log_path=folder / "forks.log",
                               cwd=Path.cwd()))
    yield server
    server.stop()


def _line(child: Forked) -> dict[str, Any]:
    assert child.stdout is not None
    return json.loads(child.stdout.readline())  # type: ignore[no-any-return]


def _end(child: Forked, timeout: float = 10) -> int:
    """Wait for the child; close its stdout pipe."""
    code = child.wait(timeout)
    if child.stdout is not None:
        child.stdout.close()
    return code


def test_preload_grammar() -> None:
    assert parse_preload("auto,torch", ("numpy", "pandas")) == ["numpy", "pandas", "torch"]
    assert parse_preload("none") == [] and parse_preload(None) == []
    assert parse_preload(["a.b", " a.b ", "c"]) == ["a.b", "c"]
    with pytest.raises(ValueError, match="'x y' is not a module name"):
        parse_preload("x y")


def test_a_child_runs_the_entry_point_and_its_code_comes_back(forks: ForkServer) -> None:
    assert forks.modules == ["json", HERE]
    child = forks.start(f"{HERE}:say", {"code": 3}, env={"FORKED_VALUE": "yes"},
                        pipe_stdout=True)
    assert child is not None
    seen = _line(child)
    # Its own session (signals to its group never reach the server), the environment it was
    # given, and the preloaded modules already there.
    assert seen["pid"] == child.pid == seen["sid"]
    assert seen["env"] == "yes" and seen["json_loaded"] and seen["args"] == {"code": 3}
    assert _end(child) == 3 and child.poll() == 3 and not child.lost


def test_children_draw_fresh_random_numbers(forks: ForkServer) -> None:
    draws = set()
    for _ in range(3):
        child = forks.start(f"{HERE}:say", pipe_stdout=True)
        assert child is not None
        draws.add(_line(child)["draw"])
        assert _end(child) == 0
    assert len(draws) == 3


def test_signals_and_passed_descriptors(forks: ForkServer, tmp_path: Path) -> None:
    with open(tmp_path / "extra", "wb") as extra:
        child = forks.start(f"{HERE}:say", {"sleep": 60}, fds=[extra.fileno()],
                            pipe_stdout=True)
    assert child is not None
    assert _line(child)["fds"] == 1
    child.terminate()
    assert _end(child) == -signal.SIGTERM


def test_an_entry_that_raises_exits_1_with_its_traceback(forks: ForkServer,
                                                         tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    with open(log, "ab") as err:
        child = forks.start(f"{HERE}:fail", stderr=err.fileno())
    assert child is not None and child.wait(10) == 1
    assert "RuntimeError: the entry point failed" in log.read_text()


def test_bad_requests_are_refused_and_the_server_goes_on(forks: ForkServer) -> None:
    assert forks.start("no-colon") is None
    child = forks.start(f"{HERE}:say", pipe_stdout=True)
    assert child is not None and _end(child) == 0


def test_children_outlive_their_server(tmp_path: Path) -> None:
    server = _ready(ForkServer([HERE], env=child_env(), log_path=tmp_path / "forks.log",
                               cwd=Path.cwd()))
    try:
        child = server.start(f"{HERE}:say", {"sleep": 1.5}, pipe_stdout=True)
        assert child is not None and _line(child)["pid"] == child.pid
        server.proc.kill()
        deadline = time.monotonic() + 10
        while server.state != "failed":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert "exited" in (server.why or "")
        assert server.start(f"{HERE}:say") is None  # refused: callers start a fresh process
        # Its child runs on, unowned, and is followed by its pid until it ends.
        assert child.lost and child.poll() is None and psutil.pid_exists(child.pid)
        assert _end(child) == -1
    finally:
        server.stop()


def test_a_server_whose_preload_starts_a_thread_refuses_to_fork(tmp_path: Path) -> None:
    # Importing this module starts a thread (see _THREADED below): forking is unsafe then.
    server = ForkServer([f"{HERE}_threaded"], env=child_env(),
                        log_path=tmp_path / "forks.log", cwd=Path.cwd())
    try:
        deadline = time.monotonic() + 30
        while server.state == "starting":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert server.state == "failed" and "forking is unsafe" in (server.why or "")
    finally:
        server.stop()


def test_a_start_that_gives_up_never_runs_its_child_and_mixes_up_no_answers(
        tmp_path: Path) -> None:
    # The server is stopped (SIGSTOP) past the start's patience: the start gives up, and its
    # caller runs the process elsewhere. The late child must not run too, and the next start
    # must get its own child, not the late one.
    server = _ready(ForkServer([HERE], env=child_env(), log_path=tmp_path / "forks.log",
                               cwd=Path.cwd(), answer_timeout=0.5))
    try:
        os.kill(server.proc.pid, signal.SIGSTOP)
        assert server.start(f"{HERE}:mark", {"path": str(tmp_path / "late")}) is None
        os.kill(server.proc.pid, signal.SIGCONT)
        child = server.start(f"{HERE}:mark", {"path": str(tmp_path / "next")})
        assert child is not None and _end(child) == 0
        assert (tmp_path / "next").read_text() == str(child.pid)
        time.sleep(0.3)  # time enough for the late child to have run, had it been let go
        assert not (tmp_path / "late").exists()
        assert server.state == "ready"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


def test_a_wait_without_timeout_wakes_when_the_server_dies(tmp_path: Path) -> None:
    server = _ready(ForkServer([HERE], env=child_env(), log_path=tmp_path / "forks.log",
                               cwd=Path.cwd()))
    try:
        child = server.start(f"{HERE}:say", {"sleep": 0.5}, pipe_stdout=True)
        assert child is not None and _line(child)["pid"] == child.pid
        codes: list[int] = []
        waiter = threading.Thread(target=lambda: codes.append(child.wait()))
        waiter.start()
        server.proc.kill()  # its end will never be said: the waiter follows the pid
        waiter.join(10)
        assert codes == [-1] and child.lost
        assert child.stdout is not None
        child.stdout.close()
    finally:
        server.stop()
