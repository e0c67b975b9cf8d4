"""A fork server for the local cluster: the ML stack imported once, each job a fork of it.

Importing pandas, scikit-learn, LightGBM and MLflow costs a fresh Python process about five
CPU-seconds, which on a laptop is more than many training jobs spend training. This process
pays it once, while the cluster is idle, then waits on its stdin; for each job the supervisor
sends, it forks a child that already has every one of those modules loaded, and that child runs
the job exactly as a warm worker would (``cumulo.compute.runner``).

The line protocol, one JSON object per line:

- in: a job's spec, as a warm worker gets it.
- out: ``{"ready": seconds, "modules": [...]}`` once the imports are done; ``{"pid": N}`` for
  each spec, the job's process; ``{"exit": N, "code": C}`` when a job's process ends (its exit
  code, or minus the signal that ended it); ``{"error": "..."}`` when a job could not be forked.

Forking is safe only from a process with one thread. Python threads are checked after the
imports (none may be running); the native ones that libraries start at import (OpenBLAS's
pool, jemalloc's background threads) register their own fork handlers. The imports are made,
never used: no thread pool, runtime or connection exists here for a child to inherit broken.
In the child: its own session (so cancelling a job signals its whole process group), default
signal handlers, fresh random state, and thread pools sized to the job's CPUs.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import importlib.util
import json
import os
import re
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["AUTO", "parse_preload", "uses_preloaded"]

# What built-in training and typical training scripts import, in dependency order. Those not
# installed are skipped. torch is not among them: it doubles the memory the server holds and
# is imported by few jobs; name it with CUMULO_PRELOAD=auto,torch to preload it too.
AUTO = ("numpy", "pandas", "pyarrow", "pyarrow.parquet", "pyarrow.dataset", "deltalake",
        "sklearn", "sklearn.metrics", "sklearn.model_selection", "sklearn.ensemble",
        "sklearn.linear_model", "sklearn.preprocessing", "sklearn.pipeline", "scipy.stats",
        "lightgbm", "xgboost", "matplotlib.pyplot", "cloudpickle", "mlflow", "mlflow.sklearn",
        "mlflow.models", "cumulo.job", "cumulo.client", "cumulo.ml.tabular",
        "cumulo.pipelines.step")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def parse_preload(value: str | list[str] | None) -> list[str]:
    """The modules a ``preload`` setting names: ``auto`` (the ML stack), ``none``, or a comma
    list of module names that may include ``auto``. Raises ValueError naming a bad entry."""
    if value is None:
        return []
    items = value if isinstance(value, list) else value.split(",")
    out: list[str] = []
    for raw in items:
        item = str(raw).strip()
        if item in ("", "none"):
            continue
        if item == "auto":
            out.extend(m for m in AUTO if m not in out)
        elif _MODULE.match(item):
            if item not in out:
                out.append(item)
        else:
            raise ValueError(f"preload entry {item!r} is not a module name; use 'auto', "
                             "'none' or module names separated by commas (auto,torch)")
    return out


def _roots(modules: list[str]) -> list[str]:
    """What a job's code must import to gain from the preloaded modules: their top-level
    packages, but for Cumulo's own (every job imports ``cumulo.job``) a service's package
    (``cumulo.ml``, ``cumulo.pipelines``)."""
    roots: list[str] = []
    for name in modules:
        parts = name.split(".")
        root = ".".join(parts[:2]) if parts[0] == "cumulo" else parts[0]
        if root not in ("cumulo", "cumulo.job", "cumulo.client") and root not in roots:
            roots.append(root)
    return roots


def uses_preloaded(argv: list[str], workdir: str | None, modules: list[str],
                   max_bytes: int = 4 << 20) -> bool:
    """Whether a Python job's code imports any of ``modules`` (a static look at its ``-c``
    code, its ``-m`` module and the ``.py`` files of its code folder). A job that does not
    starts faster from a plain warm worker: forking the fork server and ending the child cost
    some tens of milliseconds more than a fresh interpreter (its memory is larger). A folder
    larger than ``max_bytes`` of Python is assumed to import them."""
    roots = _roots(modules)
    if not roots:
        return False
    names = "(?:" + "|".join(map(re.escape, roots)) + r")\b"
    pattern = re.compile(r"(?:^|;)\s*(?:from\s+" + names + r"|import\s+(?:[\w.]+(?:\s+as\s+\w+)?"
                         r"\s*,\s*)*" + names + ")", re.MULTILINE)
    if len(argv) >= 3 and argv[1] == "-c" and pattern.search(argv[2]):
        return True
    if len(argv) >= 3 and argv[1] == "-m" and pattern.search(f"import {argv[2]}"):
        return True
    if not workdir:
        return False
    seen = 0
    for path in Path(workdir).rglob("*.py"):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        seen += len(text)
        if seen > max_bytes or pattern.search(text):
            return True
    return False


def _send(message: dict[str, Any]) -> None:
    os.write(1, json.dumps(message).encode() + b"\n")  # one write: lines never interleave


def _preload(modules: list[str] | tuple[str, ...]) -> list[str]:
    """Import what is installed of ``modules``; the names imported (shared with the serving
    fork server)."""
    loaded = []
    for name in modules:
        try:
            if importlib.util.find_spec(name.split(".")[0]) is None:
                continue
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # a broken optional package: the jobs that need it will say
            print(f"cumulo zygote: not preloading {name}: {exc!r}", file=sys.stderr)
    return loaded


def _reap(send: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Collect ended children, saying each one's exit code (with ``send``, else on stdout)."""
    send = send or _send
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def _serve() -> dict[str, Any] | None:
    """Fork a child per spec read from stdin. Returns the spec in a child; None at EOF."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # the wake-up fd does the work
    buffer = b""
    while True:
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select([0, wake_r], [], [])
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        _reap()
        if 0 not in ready:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            return None  # the supervisor let us go: the jobs we started run on
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            try:
                spec = json.loads(line)
            except ValueError as exc:
                _send({"error": f"not a job spec: {exc}"})
                continue
            try:
                pid = os.fork()
            except OSError as exc:
                _send({"error": f"cannot fork: {exc}"})
                continue
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.close(wake_r)
                os.close(wake_w)
                return spec  # type: ignore[no-any-return]
            _send({"pid": pid})


_pools: Any = None  # threadpoolctl's view of the preloaded libraries, found before forking


def _find_pools() -> None:
    """Find the preloaded libraries' thread pools once: looking costs tens of milliseconds
    (every loaded library is inspected), too much to repeat in each job."""
    global _pools
    if "numpy" not in sys.modules:
        return
    try:
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]
    except ImportError:
        return  # it comes with scikit-learn; without it, the pools stay as loaded
    _pools = ThreadpoolController()


def _limit_threads(env: dict[str, str]) -> None:
    """Size the preloaded libraries' thread pools to the job: they read OMP_NUM_THREADS and
    friends when they were loaded, here, not in the job."""
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


def _child(spec: dict[str, Any]) -> int:
    os.setsid()
    if not spec.get("log"):  # stdout is the supervisor's pipe: the job must not write to it
        spec["log"] = os.devnull
    # The preloaded objects stay frozen: collecting them would write to every page they are
    # on, copying the fork server's memory into the job's.
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # else every job would draw the same numbers
    from cumulo.compute import runner

    _limit_threads(spec.get("env", {}))
    argv = runner.job_argv(spec)
    if len(argv) >= 3 and argv[1] == "-m":
        sys.modules.pop(argv[2], None)  # runpy runs it afresh as __main__, without a warning
    runner._spec = spec
    return runner._run(spec)


def main() -> int:
    modules = parse_preload(sys.argv[1] if len(sys.argv) > 1 else "auto")
    t0 = time.perf_counter()
    loaded = _preload(modules)
    import cumulo.compute.runner  # noqa: F401 - the child runs the job with it
    _find_pools()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # its first call costs 20 ms of set-up: not per job

    if threading.active_count() > 1:
        names = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        _send({"error": f"preloading started Python threads {names}; forking is unsafe"})
        return 1
    gc.collect()
    gc.freeze()  # the preloaded objects stay put: children do not copy them by collecting
    _send({"ready": round(time.perf_counter() - t0, 3), "modules": loaded})
    spec = _serve()
    if spec is None:
        return 0
    code = _child(spec)
    _exit(code)
    return code  # pragma: no cover - _exit does not return


def _exit(code: int) -> None:
    """End the job's process as an interpreter exit would, less the teardown: tearing down
    thousands of preloaded modules would touch, and so copy, all of the fork server's memory
    (tens of milliseconds per job) for a process about to end anyway."""
    with contextlib.suppress(Exception):
        threading._shutdown()  # type: ignore[attr-defined]  # wait for non-daemon threads
    atexit._run_exitfuncs()  # the job's handlers, then the runner's exit record
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
