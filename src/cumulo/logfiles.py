"""Serving a log file over HTTP: its lines from the start, those since a time, those that pass
a filter, and, when following, the new ones as they are written (``cumulo logs -f``,
``cumulo endpoints logs -f``).

Cumulo's own lines are JSON objects (:mod:`cumulo.logs`: ``ts``, ``level``, ``logger``,
``msg``, ``request_id``...); a line that is not (a traceback's, a model's own print) goes with
the JSON line before it, so a filter keeps or drops it with the line it belongs to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

__all__ = ["FOLLOW_POLL", "stamp", "stream_lines"]

FOLLOW_POLL = 0.25  # seconds between looks at a followed file
_CHUNK = 1 << 16


def stamp(at: datetime) -> str:
    """A time as the logs write it (``2026-12-04T23:05:27.123Z``): such strings compare in
    time order."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


async def stream_lines(path: Path, *, keep: Callable[[dict[str, Any]], bool] | None = None,
                       since: str | None = None, follow: bool = False,
                       still: Callable[[], bool] | None = None) -> AsyncIterator[bytes]:
    """The lines of ``path`` whose ``ts`` is at or after ``since`` and that ``keep`` keeps.
    With ``follow``, waits for more until the caller goes away (or ``still()`` says the
    writer is gone); a missing file is waited for too, else it is empty."""
    handle = None
    pending = b""
    kept = True  # whether the last JSON line was: lines that are not JSON go with it
    try:
        while True:
            if handle is None:
                try:
                    handle = open(path, "rb")  # noqa: SIM115 - held while followed
                except FileNotFoundError:
                    if not follow or (still is not None and not still()):
                        return
                    await asyncio.sleep(FOLLOW_POLL)
                    continue
            chunk = await run_in_threadpool(handle.read, _CHUNK)
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out = []
                for line in lines:
                    kept = _keeps(line, keep, since, kept)
                    if kept:
                        out.append(line)
                if out:
                    yield b"\n".join(out) + b"\n"
                continue
            if not follow or (still is not None and not still()):
                if pending and _keeps(pending, keep, since, kept):
                    yield pending + b"\n"
                return
            await asyncio.sleep(FOLLOW_POLL)
    finally:
        if handle is not None:
            handle.close()


def _keeps(line: bytes, keep: Callable[[dict[str, Any]], bool] | None, since: str | None,
           previous: bool) -> bool:
    if keep is None and since is None:
        return True
    if not line.startswith(b"{"):
        return previous
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return previous
    if not isinstance(record, dict):
        return previous
    if since is not None and str(record.get("ts", "")) < since:
        return False
    return keep is None or keep(record)
