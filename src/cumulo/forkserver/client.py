"""The parent's side of a fork server: start it, ask it for processes, follow their ends.

>>> forks = ForkServer(["numpy"], env=child_env(), log_path=Path("forks.log"))  # doctest: +SKIP
>>> child = forks.start("cumulo.compute.runner:forked", {"spec": ...})          # doctest: +SKIP
>>> child.wait()                                                                  # doctest: +SKIP

A start is refused (``None``) until the server is ready and after it has died; the caller then
starts a fresh process instead, so a fork server only ever makes things faster.
"""

from __future__ import annotations

import array
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["ForkServer", "Forked", "process_alive"]

log = logging.getLogger("cumulo.forkserver")
ANSWER_TIMEOUT = 10.0  # seconds a start waits for the server to say the child's pid


class Forked:
    """A process the fork server forked, shaped like :class:`subprocess.Popen`: ``pid``,
    ``poll()``, ``wait()``, ``send_signal()``, ``terminate()``, ``kill()``, ``returncode``
    (minus the signal that ended it), and ``stdout`` when one was asked for.

    Its exit code comes from the fork server, which is its parent. Should the server die
    first, the child runs on unowned: ``lost`` is then True, and once the process is gone
    ``returncode`` is -1, its real code unknown."""

    def __init__(self, pid: int, stdout: IO[bytes] | None = None) -> None:
        self.pid = pid
        self.stdout = stdout
        self.returncode: int | None = None
        self.lost = False
        self._ended = threading.Event()
        try:
            import psutil

            self.started: float | None = psutil.Process(pid).create_time()
        except Exception:  # it ended already: its code is on its way
            self.started = None

    def _end(self, code: int) -> None:
        self.returncode = code
        self._ended.set()

    def _orphan(self) -> None:
        """The fork server died: this child's end will not be said; watch its pid instead."""
        if not self._ended.is_set():
            self.lost = True

    def poll(self) -> int | None:
        if self.returncode is None and self.lost and not process_alive(self.pid, self.started):
            self._end(-1)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"process {self.pid}", timeout or 0)
            # In slices: should the server die meanwhile, the end is watched by pid instead.
            self._ended.wait(0.05 if self.lost else min(left or 0.5, 0.5))
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def process_alive(pid: int | None, started: float | None) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` (a time.time(), as
    psutil gives it), not a zombie or a later process that reused the pid."""
    import psutil

    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 0.5
    except psutil.Error:
        return False


class ForkServer:
    """Starts ``python -m cumulo.forkserver.server`` with ``modules`` to preload, and forks
    processes from it. ``state`` is ``starting``, ``ready``, ``failed`` (``why`` says why) or
    ``stopped``. ``on_exit`` is called, from a reader thread, whenever a child ends and when the
    server itself does. With ``kill_orphans`` the server kills every process whose parent died
    and that would have gone to init: for children that keep their own orphans while they live
    (:mod:`cumulo.forkserver.reaper`), so that what one leaves when it is killed dies too.
    ``python``: the interpreter it runs in (an environment's; the control plane's by default):
    it preloads what of ``modules`` that environment has. ``log_path``: where the server's
    own output goes (None: this process's standard error, its log)."""

    def __init__(self, modules: Sequence[str], *, env: dict[str, str], log_path: Path | None,
                 cwd: Path | None = None, name: str = "fork server",
                 on_exit: Callable[[], None] | None = None,
                 answer_timeout: float = ANSWER_TIMEOUT, kill_orphans: bool = False,
                 python: str | None = None) -> None:
        self.name = name
        self.answer_timeout = answer_timeout
        self._on_exit = on_exit or (lambda: None)
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(OSError):  # room for a large request (a job's environment)
            self.control.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        with (open(log_path, "ab") if log_path is not None
              else contextlib.nullcontext(2)) as log_file:
            self.proc = subprocess.Popen(
                [python or sys.executable, "-m", "cumulo.forkserver.server",
                 str(theirs.fileno()),
                 ",".join(modules), *(["--kill-orphans"] if kill_orphans else [])],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=log_file, env=env, cwd=cwd, start_new_session=True)
        theirs.close()
        self.state = "starting"
        self.why: str | None = None
        self.modules: list[str] = []
        self.ready = threading.Event()
        self._got = threading.Condition()  # guards everything below, and state
        self._ids = itertools.count(1)
        self._waiting: set[int] = set()  # requests whose start waits for the answer
        self._answers: dict[int, int | str] = {}  # request id -> pid, or why it failed
        self._abandoned: set[int] = set()  # pids whose start gave up: their ends are not ours
        self._children: dict[int, Forked] = {}
        self._early: dict[int, int] = {}  # ends said before their start returned
        self._closed = False  # the server is gone: children registered now are orphans
        threading.Thread(target=self._read, daemon=True, name=f"{name}-reader").start()

    @property
    def usable(self) -> bool:
        return self.state == "ready"

    def _read(self) -> None:
        while True:
            try:
                data = self.control.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            try:
                message = json.loads(data)
            except ValueError:  # pragma: no cover - the server sends only JSON
                continue
            with self._got:
                if "ready" in message:
                    self.state, self.modules = "ready", list(message["modules"])
                    log.info("%s ready in %.2fs with %d modules preloaded", self.name,
                             message["ready"], len(self.modules))
                    self.ready.set()
                elif "exit" in message:
                    pid = int(message["exit"])
                    child = self._children.pop(pid, None)
                    if child is not None:
                        child._end(int(message["code"]))
                    elif pid in self._abandoned:
                        self._abandoned.discard(pid)
                    else:
                        self._early[pid] = int(message["code"])
                elif "pid" in message or "error" in message:
                    self._answer(message)
            if "exit" in message:
                self._on_exit()
        with self._got:
            self._closed = True
            if self.state not in ("stopped", "failed"):  # else why it failed is said already
                self.state, self.why = "failed", f"exited with code {self.proc.wait()}"
                log.warning("%s %s; processes start afresh instead", self.name, self.why)
            for child in self._children.values():
                child._orphan()
            self._children.clear()
            self._got.notify_all()
        self._on_exit()

    def _answer(self, message: dict[str, Any]) -> None:
        """A start's answer (called holding ``_got``): to the start that waits for it, or,
        when that start gave up, noted so that its child's end is not taken for another's."""
        if self.state == "starting":  # it could not become ready
            self.state, self.why = "failed", str(message.get("error"))
            log.warning("%s: %s", self.name, self.why)
        request_id = message.get("id")
        if request_id in self._waiting:
            self._answers[request_id] = (int(message["pid"]) if "pid" in message
                                         else str(message["error"]))
            self._got.notify_all()
        elif "pid" in message:
            self._abandoned.add(int(message["pid"]))  # it exits unrun: its go pipe is shut

    def start(self, entry: str, args: dict[str, Any] | None = None, *,
              env: dict[str, str] | None = None, stdout: int | None = None,
              stderr: int | None = None, fds: Sequence[int] = (),
              pipe_stdout: bool = False) -> Forked | None:
        """Fork a process that calls ``entry`` (``"module:function"``) with ``args`` and the
        descriptors ``fds`` (its own copies); ``stdout``/``stderr`` become its standard streams,
        or with ``pipe_stdout`` its stdout is a pipe read from :attr:`Forked.stdout`. ``env``
        is added to its environment before anything of it runs (the thread-pool variables
        size the preloaded pools). None if the server is not ready or could not do it: the
        caller starts the process afresh, and this one never runs."""
        if self.state != "ready":
            return None
        read_end = write_end = -1
        go_read, go_write = os.pipe()
        passed = [*fds, go_read]
        request: dict[str, Any] = {"id": next(self._ids), "entry": entry, "args": args or {},
                                   "env": env or {}, "go": len(passed) - 1}
        if pipe_stdout:
            read_end, write_end = os.pipe()
            stdout = write_end
        for stream, fd in (("stdout", stdout), ("stderr", stderr)):
            if fd is not None:
                request[stream] = len(passed)
                passed.append(fd)
        try:
            with self._got:
                self._waiting.add(request["id"])
            try:
                # Sent without the lock: the reader must be free to take answers meanwhile.
                self.control.sendmsg([json.dumps(request).encode()], [(
                    socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", passed).tobytes())])
                with self._got:
                    if not self._got.wait_for(
                            lambda: request["id"] in self._answers or self.state != "ready",
                            self.answer_timeout):
                        raise TimeoutError(f"no answer in {self.answer_timeout:g}s")
                    answer = self._answers.pop(request["id"], None)
                    if answer is None:
                        raise OSError(self.why or "it stopped")
                    if isinstance(answer, str):
                        raise OSError(answer)
                    child = Forked(answer, os.fdopen(read_end, "rb") if pipe_stdout else None)
                    read_end = -1
                    if answer in self._early:
                        child._end(self._early.pop(answer))
                    elif self._closed:  # the server died right after it answered
                        child._orphan()
                    else:
                        self._children[answer] = child
            finally:
                with self._got:
                    self._waiting.discard(request["id"])
                    late = self._answers.pop(request["id"], None)  # came as it gave up
                    if isinstance(late, int):
                        self._abandoned.add(late)
            with contextlib.suppress(OSError):  # it may have been killed already
                os.write(go_write, b"x")
            return child
        except (OSError, TimeoutError) as exc:
            log.warning("%s could not start %s (%s); starting a new process instead",
                        self.name, entry, exc)
            return None
        finally:
            for fd in (go_read, go_write, write_end, read_end):
                if fd >= 0:
                    os.close(fd)

    def describe(self) -> dict[str, Any]:
        return {"state": self.state, "pid": self.proc.pid, "modules": self.modules,
                "why": self.why}

    def stop(self) -> None:
        """Let the server go; the processes it started run on."""
        with self._got:
            self.state = "stopped"
        with contextlib.suppress(OSError):
            self.control.shutdown(socket.SHUT_RDWR)
        self.control.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
