"""Every process a job starts, found and ended, even one that left its process group.

A job's processes share its process group, but a process that calls setsid (``setsid sleep``,
a daemon's double fork) leaves it, and once its parent exits it is reparented to init: out of
the job's process tree, unmetered, and left running after the job. Linux's child subreaper
(``prctl(PR_SET_CHILD_SUBREAPER)``) keeps such orphans below the process that asked for it.

- The job's runner asks (:func:`become_subreaper`): while it lives, every process of the job is
  below it (:func:`descendants`), which is what the executor meters and signals; before it
  exits it ends and reaps them (:func:`end_descendants`), which also adds their CPU time to
  its children's (``RUSAGE_CHILDREN``), so its exit record counts them.
- The local cluster's fork server asks too, and kills whatever reaches it
  (:func:`kill_orphans`): only what a runner left when it died without ending it (SIGKILL)
  can, since a runner keeps its orphans while it lives.

Elsewhere than Linux there is no subreaper: :func:`become_subreaper` says False, and a
process that leaves the tree is found only while its parent lives.

Only the standard library here on Linux (psutil elsewhere): the runner imports this before a
job's code runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Collection, Iterable

__all__ = ["become_subreaper", "descendants", "end_descendants", "kill_orphans", "send",
           "wait_reaping"]

PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>


def become_subreaper() -> bool:
    """Make the orphans among this process's descendants its children, not init's. False
    where the platform cannot (not Linux, or a kernel before 3.4)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _children() -> dict[int, list[int]]:
    """Every process's children, by parent pid, as the system says now."""
    found: dict[int, list[int]] = {}
    if sys.platform.startswith("linux"):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
                # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
                ppid = int(stat.rpartition(b")")[2].split(None, 2)[1])
            except (OSError, ValueError, IndexError):
                continue  # it ended while we looked
            found.setdefault(ppid, []).append(int(name))
        return found
    import psutil

    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info.get("ppid")
        if ppid is not None:
            found.setdefault(int(ppid), []).append(proc.pid)
    return found


def _below(children: dict[int, list[int]], roots: Iterable[int]) -> list[int]:
    seen = set(roots)
    order: list[int] = []
    queue = list(seen)
    while queue:
        for child in children.get(queue.pop(), ()):
            if child not in seen:
                seen.add(child)
                order.append(child)
                queue.append(child)
    return order


def descendants(roots: Iterable[int]) -> list[int]:
    """The processes below any of ``roots`` (not the roots), each after its parent: one look
    at the process table, however many roots."""
    return _below(_children(), roots)


def send(pids: Iterable[int], sig: int) -> None:
    """Signal each of ``pids``, passing over those that have ended."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _reap_any() -> None:
    """Collect every child that has ended, without waiting."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_descendants(*, timeout: float = 5.0) -> int:
    """SIGKILL every process below this one and reap them, for a process about to exit: in a
    subreaper the orphans among them come back to it as they are killed, so none outlives
    it, and their CPU time joins its children's. Gives up after ``timeout`` (a process stuck
    in the kernel cannot die). Returns how many there were.

    It reaps any child: only for the last moments of a process, whose own child processes
    have been waited for already."""
    me = os.getpid()
    deadline = time.monotonic() + timeout
    ended: set[int] = set()
    while _has_children():  # (one system call; else one look at every process)
        below = descendants([me])
        if not below:
            return len(ended)
        ended.update(below)
        send(below, signal.SIGKILL)
        _reap_any()
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
    return len(ended)


def _has_children() -> bool:
    """Whether this process has a child, running or ended and not yet reaped."""
    if not hasattr(os, "waitid"):  # pragma: no cover - Windows
        return True
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def wait_reaping(pid: int) -> int:
    """Wait for the child ``pid`` and return its exit code (minus the signal that ended it),
    reaping meanwhile the orphans a subreaper is given, which would otherwise wait as zombies
    until it exits. For a process whose one child is ``pid``: any other's exit code is lost."""
    while True:
        try:
            done, status = os.wait()
        except ChildProcessError:
            return 0  # pragma: no cover - someone else reaped it
        except InterruptedError:  # pragma: no cover - retried by Python already
            continue
        if done == pid:
            return os.waitstatus_to_exitcode(status)


def kill_orphans(started: Collection[int]) -> int:
    """In a subreaper: SIGKILL each child that is not one of ``started`` (so an orphan it was
    given), with everything below it. Returns how many processes were signalled."""
    children = _children()
    orphans = [pid for pid in children.get(os.getpid(), ()) if pid not in started]
    if not orphans:
        return 0
    doomed = [*orphans, *_below(children, orphans)]
    send(doomed, signal.SIGKILL)
    return len(doomed)
