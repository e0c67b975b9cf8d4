"""Warm standby: a second home follows the backup folder a stream keeps current; promoted, it
serves what the first served, seconds behind it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from tests.services import CUMULO, base_env, start_cumulo


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CUMULO, *args], capture_output=True, text=True, timeout=120,
                          env=base_env(home))


def test_standby_follows_and_promotes(tmp_path: Path) -> None:
    primary_home = tmp_path / "primary" / ".cumulo"
    primary = start_cumulo(primary_home)
    c = primary.client()
    c.files.create_bucket("docs")
    c.files.upload(b"first", "docs/a.txt")
    target, standby = tmp_path / "stream", tmp_path / "standby"
    streamer = subprocess.Popen([CUMULO, "backup", "stream", "--to", str(target), "--home",
                                 str(primary_home), "--interval", "0.3", "--files-every", "1"],
                                env=base_env(primary_home), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    follower = None
    try:
        deadline = time.monotonic() + 60
        while not (target / "snapshots").is_dir() or not any((target / "snapshots").iterdir()):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with open(tmp_path / "follower.log", "wb") as log:
            follower = subprocess.Popen([CUMULO, "standby", "start", "--from", str(target),
                                         "--home", str(standby), "--interval", "0.3"],
                                        env=base_env(standby), stdout=log, stderr=log)
        c.files.upload(b"second", "docs/b.txt")
        deadline = time.monotonic() + 30
        while not (standby / "storage/buckets/docs/b.txt").is_file():
            assert time.monotonic() < deadline, "the standby did not catch up in 30 s"
            assert follower.poll() is None, (tmp_path / "follower.log").read_text()
            time.sleep(0.1)
        state = json.loads(_cli(standby, "standby", "status", "--home", str(standby),
                                "--json").stdout)
        assert state["standby"] and state["following_now"] and state["lag_seconds"] < 30
        # A second follower of the same home is refused.
        second = _cli(standby, "standby", "start", "--from", str(target), "--home",
                      str(standby))
        assert second.returncode == 1 and "already keeps" in second.stderr
        primary.stop(signal.SIGKILL)  # the disaster
        promoted = _cli(standby, "standby", "promote", "--home", str(standby), "--from",
                        str(target), "--json")
        assert promoted.returncode == 0, promoted.stderr
        follower.wait(30)
    finally:
        streamer.send_signal(signal.SIGTERM)
        streamer.wait(60)
        if follower is not None and follower.poll() is None:
            follower.kill()
            follower.wait()
    server = start_cumulo(standby)
    try:
        s = server.client()
        assert s.files.read_bytes("docs/a.txt") == b"first"
        assert s.files.read_bytes("docs/b.txt") == b"second"
    finally:
        server.stop()
