"""Continuous protection: with ``cumulo backup stream`` running, a server killed with SIGKILL
during a stream of writes loses at most a few seconds of what it committed, and a restore at a
time returns the platform as it was then, consistent."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.services import CUMULO, base_env, start_cumulo


def test_kill_9_during_writes_loses_at_most_seconds(tmp_path: Path) -> None:
    home = tmp_path / "src" / ".cumulo"
    server = start_cumulo(home)
    c = server.client()
    c.files.create_bucket("events")
    target = tmp_path / "stream"
    follower = subprocess.Popen([CUMULO, "backup", "stream", "--to", str(target), "--home",
                                 str(home), "--interval", "0.5", "--files-every", "1"],
                                env=base_env(home), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    committed: list[tuple[int, float]] = []  # (n, when the server said it was stored)
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 60
        while not (target / "snapshots").is_dir() or not any((target / "snapshots").iterdir()):
            assert time.monotonic() < deadline and follower.poll() is None
            time.sleep(0.1)

        def write() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    c.files.upload(f"event {n}".encode(), f"events/{n:06d}.txt")
                except Exception:  # the server was killed mid-request
                    return
                committed.append((n, time.time()))
                time.sleep(0.05)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        time.sleep(6)
        server.stop(signal.SIGKILL)
        killed_at = time.time()
        stop.set()
        writer.join(10)
        time.sleep(2)  # the follower takes its last points
    finally:
        follower.send_signal(signal.SIGTERM)
        _, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert len(committed) > 20
    restored = tmp_path / "restored"
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    out = subprocess.run([CUMULO, "backup", "restore", "--at", at, "--to", str(target),
                          "--to-home", str(restored), "--json"], capture_output=True,
                         text=True, env=base_env(restored), timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["problems"] == []
    again = start_cumulo(restored)
    try:
        keys = {o.key for o in again.client().files.list("events").objects}
        have = sorted(int(k.split(".")[0]) for k in keys)
        # What it restored is whole: no gaps, every object's bytes as its catalog says.
        assert have == list(range(1, len(have) + 1))
        for n in have[-3:]:
            assert again.client().files.read_bytes(f"events/{n:06d}.txt") == f"event {n}".encode()
        # RPO: the last write restored was committed at most 5 s before the kill.
        last_kept = dict(committed)[have[-1]] if have else 0.0
        lost_window = killed_at - last_kept
        assert lost_window <= 5.0, f"{lost_window:.1f}s of committed writes lost"
    finally:
        again.stop()
    # A time before the stream's first backup is refused, naming the oldest.
    early = subprocess.run([CUMULO, "backup", "restore", "--at", "2020-01-01T00:00:00Z",
                            "--to", str(target), "--to-home", str(tmp_path / "early")],
                           capture_output=True, text=True, env=base_env(restored), timeout=60)
    assert early.returncode == 1 and "is as old as" in early.stderr
