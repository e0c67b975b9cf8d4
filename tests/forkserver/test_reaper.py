"""Finding and ending every process below one (:mod:`cumulo.forkserver.reaper`), with real
processes: a subreaper's own, and a fork server's ``kill_orphans``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from cumulo.config import child_env
from cumulo.forkserver import ForkServer, reaper

HERE = "tests.forkserver.test_reaper"
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="a child subreaper is Linux's")

# fork, setsid, fork again; the middle one exits: the grandchild leaves the group and the tree.
DAEMON = """
import os
def daemon(argv):
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.setsid()
        pid = os.fork()
        if pid == 0:
            os.execvp(argv[0], argv)
        os.write(w, str(pid).encode())
        os._exit(0)
    os.waitpid(middle, 0)
    os.close(w)
    return int(os.read(r, 32))
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _python(code: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", DAEMON + code], capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_a_subreaper_keeps_what_leaves_its_tree_and_ends_it_counting_its_cpu() -> None:
    seen = _python("""
import json, resource, sys, tempfile, time
from cumulo.forkserver import reaper
burn = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.3: pass\\n" \\
       "open('burnt', 'w').close()\\ntime.sleep(1000)"
assert reaper.become_subreaper()
os.chdir(tempfile.mkdtemp())
sleeper = daemon(["sleep", "1000"])
burner = daemon([sys.executable, "-c", burn])
while not os.path.exists("burnt"):
    time.sleep(0.01)
os.unlink("burnt")
below = reaper.descendants([os.getpid()])
parents = [int(open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[1])
           for pid in (sleeper, burner)]
ended = reaper.end_descendants()
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"me": os.getpid(), "sleeper": sleeper, "burner": burner, "below": below,
                  "parents": parents, "ended": ended, "cpu": kids.ru_utime + kids.ru_stime,
                  "left": reaper.descendants([os.getpid()])}))
""")
    assert seen["parents"] == [seen["me"]] * 2  # given to the subreaper, not to init
    assert {seen["sleeper"], seen["burner"]} <= set(seen["below"])
    assert seen["ended"] >= 2 and seen["left"] == []
    assert seen["cpu"] >= 0.25  # the burner's CPU time counts among the subreaper's children's
    assert _gone(seen["sleeper"]) and _gone(seen["burner"])


def test_waiting_for_a_child_reaps_the_orphans_meanwhile() -> None:
    seen = _python("""
import json, subprocess, time
from cumulo.forkserver import reaper
reaper.become_subreaper()
child = subprocess.Popen(["sh", "-c", "(sleep 0.1 &); sleep 0.5; exit 3"])
code = reaper.wait_reaping(child.pid)
print(json.dumps({"code": code, "left": reaper.descendants([os.getpid()])}))
""")
    assert seen == {"code": 3, "left": []}  # no zombie waits for the end


def leave(args: dict[str, Any], fds: list[int]) -> int:
    """An entry point that leaves a daemonized sleep behind and dies without ending it."""
    scope: dict[str, Any] = {}
    exec(DAEMON, scope)
    Path(args["path"]).write_text(str(scope["daemon"](["sleep", "1000"])))
    os._exit(0)


@pytest.mark.parametrize("kill_orphans", [True, False])
def test_a_fork_server_kills_the_orphans_it_is_given_only_when_asked(
        tmp_path: Path, kill_orphans: bool) -> None:
    server = ForkServer([HERE], env=child_env(), log_path=tmp_path / "forks.log",
                        cwd=Path.cwd(), kill_orphans=kill_orphans)
    orphan = 0
    try:
        assert server.ready.wait(60), server.why
        child = server.start(f"{HERE}:leave", {"path": str(tmp_path / "pid")})
        assert child is not None and child.wait(10) == 0
        orphan = int((tmp_path / "pid").read_text())
        # Let go by its parent, the orphan goes to the fork server (when it is a subreaper),
        # which kills it; else to init, and runs on (the serving fork server's way).
        assert _gone(orphan, 1.5) == kill_orphans
        assert server._early == {}  # an orphan's end is not said as a child's
        again = server.start(f"{HERE}:leave", {"path": str(tmp_path / "pid")})
        assert again is not None and again.wait(10) == 0  # the server goes on
        assert _gone(int((tmp_path / "pid").read_text()), 1.5) == kill_orphans
    finally:
        server.stop()
        left = tmp_path / "pid"
        for pid in (orphan, int(left.read_text()) if left.exists() else 0):
            if pid and _alive(pid):
                os.kill(pid, 9)


def test_descendants_of_nothing_and_of_an_ended_process() -> None:
    assert reaper.descendants([]) == []
    done = subprocess.Popen(["true"])
    done.wait()
    assert reaper.descendants([done.pid]) == []
