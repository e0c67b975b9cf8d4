"""Warm standby: a second home kept current from a backup folder, ready to serve.

``cumulo standby start --from TARGET --home DIR`` follows a backup folder that ``cumulo backup
stream`` (or scheduled ``backup create``) keeps current: every ``interval`` it takes the newest
moment there (:func:`cumulo.dr.stream.at_time`) and brings the home to it, writing only the
files that differ. ``cumulo standby promote --home DIR`` stops the follower, applies the last
moment once more, and leaves the home ready for ``cumulo up --home DIR``: the recovery time is
that of a server start, not of a restore.

The follower holds a lock on the home (``standby.lock``) and records what it applied
(``standby.json``); a server is never started on a home a follower holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from cumulo.dr.backup import restore_manifest
from cumulo.dr.repo import Repository
from cumulo.dr.stream import at_time, reconcile_restored
from cumulo.errors import Conflict

__all__ = ["apply_latest", "follow", "promote", "status"]

STATE = "standby.json"
LOCK = "standby.lock"
PROMOTE = "standby.promote"


def _lock(home: Path) -> IO[str]:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    held = open(home / LOCK, "w")  # noqa: SIM115 - held for the follower's life
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        held.close()
        raise Conflict(f"a standby follower already keeps {home} current ('cumulo standby "
                       f"promote --home {home}' stops it)") from exc
    return held


def apply_latest(repo: Repository, home: Path, *, applied: str | None = None) -> dict[str, Any]:
    """Bring ``home`` to the newest moment in ``repo`` (if not ``applied`` already): what was
    applied."""
    manifest = at_time(repo, datetime.now(UTC))
    if manifest["id"] == applied:
        return {"id": applied, "changed": False}
    done = restore_manifest(repo, manifest, home, sync=True)
    reconcile_restored(home, manifest)
    record = {"following": str(repo.root), "applied": manifest["id"],
              "moment": manifest["created_at"], "applied_at": datetime.now(UTC).isoformat(),
              "files_written": done.files,
              "problems": [f"{p.item}: {p.why}" for p in done.problems], "changed": True}
    tmp = home / f".{STATE}.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, home / STATE)
    return record


def follow(repo: Repository, home: Path, *, interval: float = 2.0,
           stop: threading.Event | None = None,
           say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Keep ``home`` current until ``stop`` is set or a promote is asked for; the last state."""
    stop = stop or threading.Event()
    held = _lock(home)
    try:
        (home / PROMOTE).unlink(missing_ok=True)
        applied: str | None = None
        last: dict[str, Any] = {}
        while True:
            record = apply_latest(repo, home, applied=applied)
            if record["changed"]:
                last = record
                applied = record["applied"]
                say(f"applied {record['moment']} ({record['files_written']} file(s) written)")
            if stop.is_set() or (home / PROMOTE).exists():
                return last
            stop.wait(interval)
    finally:
        held.close()


def promote(repo: Repository | None, home: Path, *, timeout: float = 60.0) -> dict[str, Any]:
    """Stop the follower (if one runs), apply the newest moment once more, and release the
    home for ``cumulo up``: its state."""
    (home / PROMOTE).touch()
    deadline = time.monotonic() + timeout
    while True:  # the follower sees the marker within its interval, applies, and lets go
        with contextlib.suppress(Conflict):
            held = _lock(home)
            break
        if time.monotonic() > deadline:
            raise Conflict(f"the follower of {home} did not stop in {timeout:.0f}s")
        time.sleep(0.1)
    try:
        record = apply_latest(repo, home) if repo is not None else status(home)
    finally:
        held.close()
        (home / PROMOTE).unlink(missing_ok=True)
        (home / LOCK).unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):
        state = json.loads((home / STATE).read_text())
        state["promoted_at"] = datetime.now(UTC).isoformat()
        (home / STATE).write_text(json.dumps(state))
    return record


def status(home: Path) -> dict[str, Any]:
    """What the standby applied last, and how far behind its source that moment is."""
    try:
        state: dict[str, Any] = json.loads((home / STATE).read_text())
    except FileNotFoundError:
        return {"standby": False}
    lag = (datetime.now(UTC) - datetime.fromisoformat(state["moment"])).total_seconds()
    held = True
    with contextlib.suppress(Conflict):
        _lock(home).close()
        held = False
    return {**state, "standby": True, "following_now": held, "lag_seconds": round(lag, 1)}
