"""Every process a job starts is metered and ended with it, even one that left its process
group (setsid) and its parent (a daemon's double fork): issue 18.

The tests run twice: on warm workers, and forked from the fork server (preloading only
``json``, which the jobs import, so that they go there).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import psutil
import pytest

from tests.forkserver.test_reaper import DAEMON
from tests.services import Cumulo, start_cumulo

# A daemon's start (fork, setsid, fork again, the middle one exits): argv runs out of the
# job's process group, and out of its tree but for the runner's being a subreaper.
DAEMONS = DAEMON

# Leaves running: a daemonized sleep, `setsid sleep`, and a daemonized Python process that
# ignores SIGTERM, burns 1.2 s of CPU, says so in a file, then sleeps. Prints their pids,
# waits for the burn, prints "burnt", then sleeps argv[1] seconds.
ESCAPE = '''
import json, os, subprocess, sys, time
from daemons import daemon

BURN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
start = time.process_time()
while time.process_time() - start < 1.2:
    pass
open("burnt", "w").close()
time.sleep(1000)
"""
pids = [daemon(["sleep", "1000"]), subprocess.Popen(["setsid", "sleep", "1000"]).pid,
        daemon([sys.executable, "-c", BURN])]
print(json.dumps(pids), flush=True)
deadline = time.monotonic() + 60
while not os.path.exists("burnt") and time.monotonic() < deadline:
    time.sleep(0.02)
print("burnt", flush=True)
time.sleep(float(sys.argv[1]))
'''

# A daemonized process that holds 200 MiB, beside a job that holds next to nothing.
HOG = '''
import json, sys, time
from daemons import daemon

HOLD = "import time; held = b'x' * (200 << 20); time.sleep(1000)"
print(json.dumps([daemon([sys.executable, "-c", HOLD])]), flush=True)
time.sleep(60)
'''


class Setup(NamedTuple):
    server: Cumulo
    mode: str  # where its jobs run: "warm" (workers) or "forked" (from the fork server)


@pytest.fixture(scope="module", params=["warm", "forked"])
def setup(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    home = tmp_path_factory.mktemp(f"descendants-{request.param}") / ".cumulo"
    preload = "json" if request.param == "forked" else "none"
    server = start_cumulo(home, {"CUMULO_JOB_GRACE_SECONDS": "1", "CUMULO_PRELOAD": preload})
    if request.param == "forked":
        c = server.client()
        deadline = time.monotonic() + 60
        while c.clusters.show("local")["preloaded"] != ["json"]:
            assert time.monotonic() < deadline, "the fork server never became ready"
            time.sleep(0.1)
    yield Setup(server, request.param)
    server.stop()


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("escape") / "src"
    root.mkdir()
    for name, text in (("daemons.py", DAEMONS), ("escape.py", ESCAPE), ("hog.py", HOG)):
        (root / name).write_text(text.lstrip())
    return root


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _gone(pids: list[int], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while _alive(pid):
            assert time.monotonic() < deadline, f"process {pid} outlived its job"
            time.sleep(0.05)


def _left(job: Any) -> tuple[list[int], Iterator[str]]:
    """The pids of what the job left running, once the burn is done; its log, followed."""
    lines = job.logs(follow=True)
    pids = json.loads(next(lines))
    assert next(lines) == "burnt"
    assert all(_alive(pid) for pid in pids)
    return pids, lines


def _ran_where_expected(setup: Setup, pid: int) -> None:
    parent = " ".join(psutil.Process(pid).parent().cmdline())
    assert ("cumulo.forkserver.server" in parent) == (setup.mode == "forked"), parent


def test_what_a_job_leaves_running_ends_with_it_and_its_cpu_counts(setup: Setup,
                                                                     scripts: Path) -> None:
    job = setup.server.client().jobs.run("escape.py", code=scripts, args=["1"])
    pids, _ = _left(job)
    info = job.wait(30)
    assert info["state"] == "succeeded", info
    _gone(pids)
    # The runner killed and reaped the burner: its exit record counts the burner's 1.2 s.
    assert info["usage"]["cpu_seconds"] >= 1.0, info["usage"]


def test_a_cancelled_job_ends_all_its_processes(setup: Setup, scripts: Path) -> None:
    job = setup.server.client().jobs.run("escape.py", code=scripts, args=["60"])
    pids, lines = _left(job)
    runner = job.refresh()["pid"]
    _ran_where_expected(setup, runner)
    time.sleep(2.0)  # a sample after the burn: a cancelled job leaves no exit record
    job.cancel()
    assert list(lines) == []
    info = job.wait(30)
    assert info["state"] == "cancelled", info
    _gone([runner, *pids])  # the burner ignores SIGTERM: it goes after the 1 s grace
    assert info["usage"]["cpu_seconds"] >= 1.0, info["usage"]


def test_a_runner_killed_outright_takes_what_it_started(setup: Setup, scripts: Path) -> None:
    job = setup.server.client().jobs.run("escape.py", code=scripts, args=["60"])
    pids, _ = _left(job)
    runner = job.refresh()["pid"]
    if setup.mode == "warm":
        # A warm worker's orphans go to init when it dies: the executor knows them from a
        # sample. (The fork server is given them, and kills them, at once.)
        time.sleep(1.3)
    os.kill(runner, signal.SIGKILL)  # the runner alone, not its group: as the OOM killer would
    info = job.wait(30)
    assert info["state"] == "failed" and info["reason"] == "killed by SIGKILL", info
    _gone(pids)


def test_memory_below_the_runner_counts_against_the_limit(setup: Setup, scripts: Path) -> None:
    job = setup.server.client().jobs.run("hog.py", code=scripts, memory="100M")
    pids = json.loads(next(job.logs(follow=True)))
    info = job.wait(30)
    assert info["state"] == "failed" and info["reason"].startswith("out of memory"), info
    _gone(pids)


def test_after_a_restart_a_job_is_still_all_its_processes(tmp_path: Path, scripts: Path) -> None:
    home = tmp_path / ".cumulo"
    env = {"CUMULO_JOB_GRACE_SECONDS": "1"}
    first = start_cumulo(home, env)
    job = first.client().jobs.run("escape.py", code=scripts, args=["60"])
    pids, _ = _left(job)
    runner = job.refresh()["pid"]
    first.stop(signal.SIGKILL)
    assert all(_alive(pid) for pid in [runner, *pids])  # jobs outlive their control plane
    second = start_cumulo(home, env, port=int(first.url.rsplit(":", 1)[1]))
    try:
        job = second.client().jobs.get(job.id)
        time.sleep(2.0)  # a sample by the new control plane: the burn counts
        job.cancel()
        info = job.wait(30)
        assert info["state"] == "cancelled", info
        _gone([runner, *pids])
        assert info["usage"]["cpu_seconds"] >= 1.0, info["usage"]
    finally:
        second.stop()
