"""The fork server process: ``python -m cumulo.forkserver.server FD MODULES [--kill-orphans]``.

Importing pandas, scikit-learn, LightGBM and MLflow costs a fresh Python process seconds, more
than many jobs spend working and most of an endpoint replica's start. This process imports the
modules its caller names once, then forks a child per request in a few milliseconds; the child
already has them loaded and calls the entry point the request names.

It talks to its parent (:class:`cumulo.forkserver.client.ForkServer`) over the Unix
``SOCK_SEQPACKET`` socket ``FD`` (one message per packet, so that file descriptors travel with
the message they belong to):

- in: ``{"id": n, "entry": "package.module:function", "args": {...}, "env": {...}, "go": i,
  "stdout": i, "stderr": i}`` with descriptors attached; ``go``, ``stdout`` and ``stderr``
  index them, the rest go to the entry point, which is called as ``function(args, fds)`` and
  returns the exit code.
- out: ``{"ready": seconds, "modules": [...]}`` once; ``{"id": n, "pid": N}`` for each
  request; ``{"exit": N, "code": C}`` when a child ends (minus the signal that ended it);
  ``{"id": n, "error": "..."}`` for a request that could not be forked.

A child waits for one byte on its ``go`` pipe before it runs anything: the parent writes it
once it has taken the child's pid. A parent that gave up on the answer (it came too late)
closes the pipe instead, and the child exits unrun, so that what the parent starts elsewhere
in its place never runs twice.

Fork safety, in one place. Forking is safe only from a process with one thread: Python threads
are checked after the imports (none may run); the native pools that libraries start at import
(OpenBLAS, jemalloc) register their own fork handlers. The imports are made, never used: no
pool, runtime or connection exists here for a child to inherit broken. The preloaded objects
are frozen out of the garbage collector, so that children do not copy the server's memory by
collecting it. Each child gets its own session (a signal to its group reaches all it started
and never this server), default signal handlers, fresh random state, the environment the
request gives, and the preloaded libraries' thread pools sized to it.

With ``--kill-orphans`` the server is a child subreaper (:mod:`cumulo.forkserver.reaper`): a
process whose parent died is given to it rather than to init, and it kills it, with all below
it. That is for children that keep their own orphans while they live (the job runner): what
reaches the server then is what a child left behind when it died without ending it. Only the
ends of the children it started are said, never an orphan's.

When the parent closes the socket the server exits; the children it started run on.
"""

from __future__ import annotations

import array
import atexit
import contextlib
import gc
import importlib
import json
import os
import random
import select
import signal
import socket
import sys
import threading
import time
from typing import Any

from cumulo.forkserver import reaper
from cumulo.forkserver.preload import import_modules

__all__ = ["main"]

MAX_MESSAGE = 1 << 20
MAX_FDS = 16

_pools: Any = None  # threadpoolctl's view of the preloaded libraries, found before forking
_started: set[int] = set()  # the children this server forked and has not reaped yet


def _send(control: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        control.send(json.dumps(message).encode())


def _reap(control: socket.socket) -> None:
    """Collect ended children, saying the exit code of each one this server started."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in _started:  # else an orphan it was given: nobody asked for it
            _started.discard(pid)
            _send(control, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def _receive(control: socket.socket) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    data, ancillary, _, _ = control.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(
        MAX_FDS * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


def _serve(control: socket.socket, *, kill_orphans: bool = False,
           ) -> tuple[dict[str, Any], list[int]] | None:
    """Fork a child per request. Returns (request, fds) in a child; None when the parent
    closes the socket."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # the wake-up fd does the work
    watched: list[Any] = [control, wake_r]
    while True:
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select(watched, [], [])
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        _reap(control)
        if kill_orphans and wake_r in ready:  # a death is when orphans arrive
            reaper.kill_orphans(_started)
        if control not in ready:
            continue
        try:
            data, fds = _receive(control)
        except InterruptedError:
            continue
        except OSError:
            return None
        if not data:
            return None  # the parent let us go: the children we started run on
        request_id = None
        try:
            request = json.loads(data)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            request_id = request.get("id")
            if ":" not in str(request.get("entry", "")):
                raise ValueError("a request names its entry point as 'module:function'")
            pid = os.fork()
        except (ValueError, OSError) as exc:
            for fd in fds:
                os.close(fd)
            _send(control, {"id": request_id, "error": f"cannot start a process: {exc}"})
            continue
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(wake_r)
            os.close(wake_w)
            return request, fds
        _started.add(pid)
        for fd in fds:
            os.close(fd)
        _send(control, {"id": request_id, "pid": pid})


def _find_pools() -> None:
    """Find the preloaded libraries' thread pools once: looking costs tens of milliseconds
    (every loaded library is inspected), too much to repeat in each child."""
    global _pools
    if "numpy" not in sys.modules:
        return
    try:
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]
    except ImportError:
        return  # it comes with scikit-learn; without it, the pools stay as loaded
    _pools = ThreadpoolController()


def _limit_threads(env: dict[str, str]) -> None:
    """Size the preloaded libraries' thread pools to the child: they read OMP_NUM_THREADS and
    friends when they were loaded, here, not in the child."""
    if _pools is None:
        return
    omp = env.get("OMP_NUM_THREADS")
    blas = env.get("OPENBLAS_NUM_THREADS") or env.get("MKL_NUM_THREADS") or omp
    try:
        if blas and blas.isdigit():
            _pools.limit(limits=int(blas), user_api="blas")
        if omp and omp.isdigit():
            _pools.limit(limits=int(omp), user_api="openmp")
    except Exception as exc:  # pragma: no cover - a library threadpoolctl cannot drive
        print(f"cumulo: could not size thread pools: {exc!r}", file=sys.stderr)


def _child(control: socket.socket, request: dict[str, Any], fds: list[int]) -> int:
    control.close()
    os.setsid()
    taken = set()
    if request.get("go") is not None:
        taken.add(go := int(request["go"]))
        try:
            word = os.read(fds[go], 1)
        except OSError:
            word = b""
        if not word:  # the parent gave up on this start: run nothing
            os._exit(0)
    for stream, target in (("stdout", 1), ("stderr", 2)):
        index = request.get(stream)
        if index is not None:
            os.dup2(fds[int(index)], target)
            taken.add(int(index))
    for index in taken:
        os.close(fds[index])
    passed = [fd for i, fd in enumerate(fds) if i not in taken]
    env = {str(k): str(v) for k, v in (request.get("env") or {}).items()}
    os.environ.update(env)
    random.seed()  # else every child would draw the same numbers
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    _limit_threads(env)
    module, _, function = str(request["entry"]).partition(":")
    entry = getattr(importlib.import_module(module), function)
    return int(entry(request.get("args") or {}, passed))


def _exit(code: int) -> None:
    """End the child as an interpreter exit would, less the teardown: tearing down thousands
    of preloaded modules would touch, and so copy, all of the server's memory (tens of
    milliseconds) for a process about to end anyway."""
    with contextlib.suppress(Exception):
        threading._shutdown()  # type: ignore[attr-defined]  # wait for non-daemon threads
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    control = socket.socket(fileno=int(argv[0]))
    modules = [m for m in (argv[1] if len(argv) > 1 else "").split(",") if m]
    kill_orphans = "--kill-orphans" in argv[2:] and reaper.become_subreaper()
    t0 = time.perf_counter()
    loaded = import_modules(modules)
    _find_pools()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # its first call costs 20 ms of set-up: not per child
    if threading.active_count() > 1:
        names = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        _send(control, {"error": f"preloading started Python threads {names}; forking is "
                                 "unsafe"})
        return 1
    gc.collect()
    gc.freeze()
    _send(control, {"ready": round(time.perf_counter() - t0, 3), "modules": loaded})
    served = _serve(control, kill_orphans=kill_orphans)
    if served is None:
        return 0
    code = 1
    try:
        code = _child(control, *served)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    _exit(code)
    return code  # pragma: no cover - _exit does not return


if __name__ == "__main__":
    sys.exit(main())
