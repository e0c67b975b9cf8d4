"""Temporary files that a crashed server left, removed when a server next starts, and never
those that a live server may still be writing.

A folder of temporary files is *claimed* by each server that uses it, for as long as it runs:
a shared lock (``flock``) on a file in it. A server that starts and finds no other holder is
alone: everything temporary there was left by servers that have ended (killed mid-upload,
say), and it goes. A server that shares the folder with a live one (another control plane with
the same home or storage root) removes only what names an ended process of this machine
(:func:`marked`: ``upload-<pid>@<host>-…``), and leaves the rest to a start that is alone.

Here, the storage's spool folder (:meth:`Backend.spool_dir`), where everything is temporary:
uploads in flight (``upload-…``), files on their way into storage (``keep-…``,
``checkpoints-…``), a table load's downloads (``load-…/``), the crawler's copies (``tmp…``).
The lake sweeps its own folders with the same claim (:mod:`cumulo.lake.leftovers`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
from pathlib import Path

from cumulo.storage.backends import Backend

__all__ = ["LOCK_NAME", "claim", "ended_writer", "marked", "remove", "sweep_spool"]

log = logging.getLogger("cumulo.storage")

LOCK_NAME = ".in-use"  # the file each live server holds a shared lock on
# upload-<pid>@<host>-<random>: tempfile's random part has no "-"; a host name may.
_MARK = re.compile(r"^[a-z]+-(?P<pid>\d+)@(?P<host>.+)-[a-z0-9_]+(?:\.[^.]*)?$")
_held: list[int] = []  # this process's claims, kept open (and locked) until it exits


def marked(kind: str) -> str:
    """The start of a temporary file's name that says which process writes it, for
    ``tempfile.mkstemp(prefix=...)``: ``upload-4242@host-``."""
    return f"{kind}-{os.getpid()}@{socket.gethostname()}-"


def ended_writer(name: str) -> bool:
    """Whether ``name`` (made with :func:`marked`) names a process of this machine that has
    ended. A pid taken since by another process counts as live: the file then waits."""
    found = _MARK.match(name)
    if found is None or found["host"] != socket.gethostname():
        return False
    try:
        os.kill(int(found["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def claim(folder: Path) -> bool:
    """Hold ``folder`` for the rest of this process's life; True when no live process held
    it already (what is in it was left by processes that have ended). Where files cannot be
    locked (not POSIX), never True."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        alone = True
    except BlockingIOError:
        alone = False
    except OSError:  # a file system without locks: as if shared
        os.close(fd)
        return False
    fcntl.flock(fd, fcntl.LOCK_SH)  # from now on, one holder among any others
    _held.append(fd)
    return alone


def remove(path: Path) -> bool:
    """Remove a file or a folder; False if it was gone already or could not go."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("cannot remove the leftover %s: %s", path, exc.strerror)
        return False
    return True


def sweep_spool(storage: Backend) -> list[Path]:
    """Claim the storage's spool folder and remove what ended servers left in it (see the
    module's docstring); returns what was removed."""
    spool = storage.spool_dir()
    alone = claim(spool)
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(spool.iterdir()):
            if entry.name != LOCK_NAME and (alone or ended_writer(entry.name)) and remove(entry):
                removed.append(entry)
    if removed:
        log.info("removed %d temporary file(s) left in %s by a server that ended",
                 len(removed), spool)
    return removed
