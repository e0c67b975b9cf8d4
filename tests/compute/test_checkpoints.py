"""Checkpoints and retries: a job's checkpoint folder outlives its attempts, so a retried job
resumes where the last attempt stopped (after a crash, a cancel, or a control-plane restart)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from cumulo.errors import Conflict, NotFound
from tests.conftest import backend_env
from tests.services import Cumulo, start_cumulo


def _result(job: Any, tmp: Path) -> dict[str, Any]:
    job.download(tmp)
    result: dict[str, Any] = json.loads((tmp / "result.json").read_text())
    return result


def _start_epoch(lines: list[str]) -> int:
    first = next(line for line in lines if "starts at epoch" in line)
    return int(first.rsplit(" ", 1)[1])


def test_a_killed_attempt_resumes_from_its_checkpoint(compute: Cumulo, code: Path,
                                                      tmp_path: Path) -> None:
    c = compute.client()
    job = c.jobs.run("resume.py", code=code, args=["2", "0"], retries=1, tags=["ckpt-killed"])
    plain = c.jobs.run("resume.py", code=code, args=["0", "0"])  # the same, uninterrupted
    info = job.wait(120)
    assert info["state"] == "succeeded", info["log_tail"]
    assert info["attempt"] == 2
    first, second = info["attempts"]
    assert first["state"] == "failed" and first["reason"] == "exited with code 1"
    one, two = list(job.logs(attempt=1)), list(job.logs(attempt=2))
    assert one == ["attempt 1 starts at epoch 1", "epoch 1 saved", "epoch 2 saved"]
    assert _start_epoch(two) == 3  # not from scratch
    # Each epoch ran once: 1 and 2 in attempt 1, the rest in attempt 2.
    assert [p["step"] for p in job.metrics()["loss"]] == [1, 2, 3, 4, 5, 6]
    result = _result(job, tmp_path / "job")
    assert result["history"] == [[1, 1], [2, 1], [3, 2], [4, 2], [5, 2], [6, 2]]
    assert plain.wait(120)["state"] == "succeeded"
    reference = _result(plain, tmp_path / "plain")
    # Model and optimizer state came back whole: the same weights as the uninterrupted run.
    assert (result["weight"], result["bias"]) == (reference["weight"], reference["bias"])
    assert abs(result["weight"] - 3) < 0.1 and abs(result["bias"] - 1) < 0.1
    # The last two checkpoints are kept with the job.
    assert [k["path"] for k in job.checkpoints()] == ["ckpt-5.pt", "ckpt-6.pt"]
    # Each attempt is priced once; the job's use is their sum.
    assert info["usage"]["wall_seconds"] == pytest.approx(
        first["wall_seconds"] + second["wall_seconds"], abs=0.01)
    row = next(r for r in c.costs(by="tag")["rows"] if r["tag"] == "ckpt-killed")
    assert row["count"] == 2
    assert row["cost_usd"] == pytest.approx(info["usage"]["cost_usd"], abs=1e-6)


def test_cancel_then_retry_resumes(compute: Cumulo, code: Path, tmp_path: Path) -> None:
    c = compute.client()
    job = c.jobs.run("resume.py", code=code, args=["0", "0.5"], tags=["ckpt-cancelled"])
    lines = job.logs(follow=True)
    assert next(line for line in lines if line == "epoch 2 saved")
    job.cancel()
    info = job.wait(60)
    assert info["state"] == "cancelled"
    kept = [k["path"] for k in job.checkpoints()]
    assert "ckpt-2.pt" in kept and len(kept) == 2
    retried = c.jobs.retry(job.id)
    assert retried.id == job.id and retried.info["attempt"] == 2
    assert retried.info["state"] in ("queued", "starting", "running")
    info = retried.wait(120)
    assert info["state"] == "succeeded", info["log_tail"]
    assert [a["state"] for a in info["attempts"]] == ["cancelled", "succeeded"]
    start = _start_epoch(list(job.logs()))
    assert start == int(kept[-1].removeprefix("ckpt-").removesuffix(".pt")) + 1 and start >= 3
    result = _result(job, tmp_path)
    assert [epoch for epoch, _ in result["history"]] == [1, 2, 3, 4, 5, 6]
    assert {attempt for epoch, attempt in result["history"] if epoch >= start} == {2}
    row = next(r for r in c.costs(by="tag")["rows"] if r["tag"] == "ckpt-cancelled")
    assert row["count"] == 2  # the cancelled attempt is priced too, once
    assert row["cost_usd"] == pytest.approx(info["usage"]["cost_usd"], abs=1e-6)


def test_retry_refusals_change_nothing(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    with pytest.raises(NotFound, match="no job 'job-nope'"):
        c.jobs.retry("job-nope")
    done = c.jobs.run("ok.py", code=code)
    assert done.wait(60)["state"] == "succeeded"
    with pytest.raises(Conflict, match="succeeded; there is nothing to retry"):
        done.retry()
    running = c.jobs.run("sleep.py", code=code, args=["30"])
    assert next(running.logs(follow=True)) == "sleeping"
    # Its first line can come before the supervisor has marked it running: either is refused.
    with pytest.raises(Conflict, match=r"is (starting|running); only a job that has ended"):
        running.retry()
    running.cancel()
    c.clusters.create("brief", max_workers=1, max_cpus=1)
    gone = c.jobs.run("fail.py", code=code, cluster="brief")
    assert gone.wait(60)["state"] == "failed"
    c.clusters.delete("brief")
    with pytest.raises(Conflict, match="cluster 'brief', which was removed"):
        gone.retry()
    for job, state in ((done, "succeeded"), (gone, "failed")):
        info = job.refresh()
        assert info["state"] == state and info["attempt"] == 1 and len(info["attempts"]) == 1
    assert running.wait(30)["state"] == "cancelled"


def test_retry_cli(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    flaky = c.jobs.run("flaky.py", code=code)  # fails in attempt 1, succeeds after
    assert flaky.wait(60)["state"] == "failed"
    out = compute.cli("jobs", "retry", flaky.id, "--wait")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["attempt 2"]
    assert f"job {flaky.id} succeeded" in out.stderr
    refused = compute.cli("jobs", "retry", flaky.id)
    assert refused.returncode == 1 and "succeeded; there is nothing to retry" in refused.stderr
    failing = c.jobs.run("fail.py", code=code)
    failing.wait(60)
    again = compute.cli("jobs", "retry", failing.id, "--wait")
    assert again.returncode == 3 and "line 49" in again.stdout
    quiet = compute.cli("jobs", "retry", failing.id)
    assert quiet.returncode == 0 and quiet.stdout.strip() == f"job {failing.id}: attempt 3 queued"
    info = c.jobs.get(failing.id).wait(60)
    assert info["attempt"] == 3 and [a["attempt"] for a in info["attempts"]] == [1, 2, 3]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.parametrize("storage", ["local", "s3"])
def test_resume_after_a_control_plane_restart(tmp_path: Path, code: Path, storage: str,
                                              request: pytest.FixtureRequest) -> None:
    """The attempt dies while nobody watches; the control plane, started again, retries it
    from the checkpoints on its disk. Then, cancelled and retried, from storage."""
    home = tmp_path / ".cumulo"
    env = {"CUMULO_JOB_GRACE_SECONDS": "1", **backend_env(f"sqlite+{storage}", request)}
    server = start_cumulo(home, env)
    port = int(server.url.rsplit(":", 1)[1])
    try:
        c = server.client()
        never = c.jobs.run("flaky.py", code=code)  # no checkpoints: none to restore
        assert never.wait(60)["state"] == "failed"
        assert never.checkpoints() == []
        assert c.jobs.retry(never.id).wait(60)["state"] == "succeeded"
        job = c.jobs.run("resume.py", code=code, args=["0", "0.5"], retries=1)
        assert next(line for line in job.logs(follow=True) if line == "epoch 2 saved")
        pid = job.refresh()["pid"]
        server.stop(signal.SIGKILL)
        os.killpg(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
        server = start_cumulo(home, env, port=port)
        c = server.client()
        job = c.jobs.get(job.id)
        deadline = time.monotonic() + 30
        while job.refresh()["attempt"] != 2 or job.state == "queued":
            assert time.monotonic() < deadline, job.info
            time.sleep(0.1)
        assert "while the control plane was down" in job.info["attempts"][0]["reason"]
        lines = job.logs(follow=True, attempt=2)
        assert _start_epoch(lines) >= 3
        assert next(line for line in lines if line.startswith("epoch"))
        job.cancel()
        assert job.wait(60)["state"] == "cancelled"
        # The job ended and its folder left this disk: the retry's checkpoints come from storage.
        assert not (home / "compute" / "jobs" / job.id).exists()
        kept = job.checkpoints()
        job.retry()
        info = job.wait(120)
        assert info["state"] == "succeeded", info["log_tail"]
        assert [a["state"] for a in info["attempts"]] == ["failed", "cancelled", "succeeded"]
        step = int(re.sub(r"\D", "", kept[-1]["path"]))
        assert _start_epoch(list(job.logs())) == step + 1
        restored = [line for line in server.log_lines() if "restored from storage" in line]
        assert len(restored) == 1 and f"{job.id} attempt 3: 2 checkpoint file(s)" in restored[0]
    finally:
        server.stop()


def test_a_copy_left_by_an_older_attempt_is_not_used(tmp_path: Path) -> None:
    """Two control planes share a queue: attempt 1 ran here, attempt 2 elsewhere. When
    attempt 3 comes back here, the folder on this disk is attempt 1's: storage has newer."""
    from cumulo.compute import checkpoints
    from cumulo.storage.backends.local import LocalBackend

    storage = LocalBackend(tmp_path / "storage")
    storage.check()

    def store(path: Path, key: str) -> None:
        tmp = storage.spool_dir() / "upload"
        tmp.write_bytes(path.read_bytes())
        storage.commit(tmp, key)

    here, there = tmp_path / "here" / "checkpoints", tmp_path / "there" / "checkpoints"
    here.mkdir(parents=True)
    (here / "ckpt-1.pt").write_text("one")
    checkpoints.keep(storage, "job-1", 1, here, store)
    assert checkpoints.restore(storage, "job-1", there, after=1) == 1  # attempt 2, elsewhere
    (there / "ckpt-2.pt").write_text("two")
    (there / "ckpt-1.pt").unlink()
    checkpoints.keep(storage, "job-1", 2, there, store)
    assert checkpoints.read_manifest(storage, "job-1") == {"ckpt-2.pt": 3}
    assert checkpoints.restore(storage, "job-1", there, after=2) is None  # its own: kept
    assert checkpoints.restore(storage, "job-1", here, after=2) == 1  # stale here: fetched
    assert sorted(p.name for p in here.iterdir()) == ["ckpt-2.pt"]
    assert not (storage.root / "jobs" / "job-1" / "checkpoints" / "ckpt-1.pt").exists()
