"""A fork server for endpoint replicas: the serving stack imported once, each replica a fork.

A fresh replica process spends seconds importing MLflow, pandas and scikit-learn
before it loads its model; that is most of the time from ``endpoints create`` (or from zero
replicas) to the first answer. This process imports them once, when the endpoint manager
starts, then forks a replica per request in a few milliseconds.

It talks to the manager over a Unix ``SOCK_SEQPACKET`` socket (one message per packet, so file
descriptors travel with the message they belong to):

- in: ``{"config": PATH}`` with three descriptors attached: the endpoint's listening socket,
  the write end of the replica's stdout pipe, and its log file.
- out: ``{"ready": seconds, "modules": [...]}`` once; ``{"pid": N}`` for each replica;
  ``{"exit": N, "code": C}`` when one ends (minus the signal that ended it); ``{"error": ...}``
  when one could not be forked.

The child takes its own session, the pipe as stdout and the log as stderr, fresh random state,
and runs :func:`cumulo.serving.worker.main`, as a replica started by ``python -m`` would.
"""

from __future__ import annotations

import array
import contextlib
import gc
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

from cumulo.compute.zygote import _preload, _reap

__all__ = ["MODULES", "main"]

# What a replica imports before its model: its own stack, MLflow's pyfunc loader and the
# libraries of the usual models. Those not installed are skipped.
MODULES = ("numpy", "pandas", "pyarrow", "sklearn", "sklearn.linear_model", "sklearn.ensemble",
           "sklearn.pipeline", "sklearn.preprocessing", "skops.io", "lightgbm", "xgboost",
           "cloudpickle", "mlflow", "mlflow.pyfunc", "mlflow.sklearn", "mlflow.models",
           "uvloop", "httptools", "orjson", "cumulo.serving.worker", "cumulo.serving.replica",
           "cumulo.serving.http",
           "cumulo.serving.formats", "cumulo.serving.stats", "cumulo.ml.tabular")
MAX_FDS = 3


def _send(control: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        control.send(json.dumps(message).encode())


def _serve(control: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """Fork a replica per request. Returns (request, fds) in a child; None when the manager
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
        _reap(lambda message: _send(control, message))
        if control not in ready:
            continue
        fds = array.array("i")
        try:
            data, ancillary, _, _ = control.recvmsg(65536, socket.CMSG_SPACE(
                MAX_FDS * fds.itemsize))
        except InterruptedError:
            continue
        if not data:
            return None  # the manager let us go: the replicas we started run on
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
        try:
            request = json.loads(data)
            if len(fds) != MAX_FDS:
                raise ValueError(f"{len(fds)} descriptors came with it, not {MAX_FDS}")
            pid = os.fork()
        except (ValueError, OSError) as exc:
            for fd in fds:
                os.close(fd)
            _send(control, {"error": f"cannot start a replica: {exc}"})
            continue
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(wake_r)
            os.close(wake_w)
            return request, list(fds)
        for fd in fds:
            os.close(fd)
        _send(control, {"pid": pid})


def _child(control: socket.socket, request: dict[str, Any], fds: list[int]) -> int:
    listener, stdout, log = fds
    control.close()
    os.setsid()
    os.dup2(stdout, 1)
    os.dup2(log, 2)
    os.close(stdout)
    os.close(log)
    random.seed()  # else every replica would pick variants in the same order
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    from cumulo.serving import worker

    return worker.main(["--fd", str(listener), "--config", str(request["config"])])


def main() -> int:
    control = socket.socket(fileno=int(sys.argv[1]))
    t0 = time.perf_counter()
    loaded = _preload(MODULES)
    if threading.active_count() > 1:
        names = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        _send(control, {"error": f"preloading started Python threads {names}; forking is "
                                 "unsafe"})
        return 1
    gc.collect()
    gc.freeze()  # the preloaded objects stay put: replicas do not copy them by collecting
    _send(control, {"ready": round(time.perf_counter() - t0, 3), "modules": loaded})
    served = _serve(control)
    if served is None:
        return 0
    code = 1
    try:
        code = _child(control, *served)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
