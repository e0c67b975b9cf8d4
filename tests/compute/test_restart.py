"""The queue lives in the database: a control plane killed with SIGKILL loses nothing."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil

from tests.services import start_cumulo


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_sigkill_and_restart(tmp_path: Path, code: Path) -> None:
    (code / "die_first.py").write_text(
        "import time, cumulo.job as job\n"
        "print('attempt', job.attempt, flush=True)\n"
        "if job.attempt == 1:\n    time.sleep(60)\n")
    home = tmp_path / ".cumulo"
    server = start_cumulo(home, {"CUMULO_JOB_GRACE_SECONDS": "1"})
    port = int(server.url.rsplit(":", 1)[1])
    c = server.client()
    done = c.jobs.run("ok.py", code=code)
    assert done.wait(60)["state"] == "succeeded"
    c.clusters.create("serial", max_workers=1, max_cpus=1)
    survivor = c.jobs.run("sleep.py", code=code, args=["4"], cluster="serial")
    queued = c.jobs.run("ok.py", code=code, cluster="serial")
    victim = c.jobs.run("die_first.py", code=code, retries=1)
    assert next(survivor.logs(follow=True)) == "sleeping"
    assert next(victim.logs(follow=True)) == "attempt 1"
    assert queued.refresh()["state"] == "queued"

    victim_pid, survivor_pid = victim.refresh()["pid"], survivor.refresh()["pid"]
    server.stop(signal.SIGKILL)
    time.sleep(0.2)
    assert _alive(victim_pid) and _alive(survivor_pid)  # jobs outlive their control plane
    os.killpg(victim_pid, signal.SIGKILL)  # this one dies while nobody watches

    server = start_cumulo(home, {"CUMULO_JOB_GRACE_SECONDS": "1"}, port=port)
    try:
        c = server.client()
        done = c.jobs.get(done.id)
        assert done.state == "succeeded" and done.artifacts()
        survived = c.jobs.get(survivor.id).wait(60)
        assert survived["state"] == "succeeded" and survived["attempt"] == 1
        assert list(c.jobs.get(survivor.id).logs()) == ["sleeping", "woke"]
        retried = c.jobs.get(victim.id).wait(60)
        assert retried["state"] == "succeeded" and retried["attempt"] == 2
        first = retried["attempts"][0]
        assert first["state"] == "failed"
        assert "while the control plane was down" in first["reason"]
        assert c.jobs.get(queued.id).wait(60)["state"] == "succeeded"
        assert not _alive(survivor_pid)
    finally:
        server.stop()
