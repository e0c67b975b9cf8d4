"""A delivery's transform: a user's function called on each record before it is written, in a
process of its own, so that user code never runs inside the control plane (a crash or a hang
of it fails that batch's records, not the server).

The function takes a record (the JSON object, as a ``dict``) and returns the row to write (a
``dict``), or ``None`` to drop the record. It is named ``module:function`` (a module the server
can import: installed beside it, or on its ``PYTHONPATH``) or ``file.py:function`` (the file's
text, sent by the CLI or SDK and kept with the delivery).

The process is forked, as every process Cumulo starts, by a fork server (:mod:`cumulo.forkserver`):
the control plane's transform fork server (:class:`Forks`), started at the first transform and
again after it died. That server is started with none of the control plane's environment but
where Python and modules are (``PATH``, ``PYTHONPATH``) and the locale, so the server's secrets
(its admin token, its database's and storage's credentials) are in neither its memory nor its
children's: not the jobs' fork servers, whose environment is a job's. It preloads only this
module, so a fork takes milliseconds.

The process speaks JSON lines over two pipes of its own: first ``{"spec", "source"}``, answered
``{"ok": true}`` or ``{"error"}``; then a list of records a line, answered by a list of
``["ok", row-or-null]`` or ``["error", why]``, one per record. Its standard output and error are
the server's log (its standard error): what the function prints goes there, never into the
answers.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import subprocess
import sys
import threading
import traceback
import types
from collections.abc import Callable
from typing import IO, Any

from cumulo.errors import Invalid, Unavailable
from cumulo.forkserver import Forked, ForkServer

__all__ = ["FORKS", "Forks", "Transform", "check_spec", "forked"]

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")
_FILE = re.compile(r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$")
TIMEOUT = 60.0  # seconds a batch may take in the transform
READY_TIMEOUT = 30.0  # seconds a transform waits for its fork server to be ready
ENTRY = "cumulo.streams.transform:forked"
# What of the server's environment the transforms' fork server, and so each function's
# process, gets: where Python and the modules are, and the locale; nothing else.
_KEEP = frozenset({"PATH", "PYTHONPATH", "HOME", "LANG", "TZ", "TMPDIR", "VIRTUAL_ENV"})


def check_spec(spec: str, source: str | None) -> None:
    if source is not None and not _FILE.match(spec):
        raise Invalid(f"--transform {spec[:100]!r} is not FILE.py:FUNCTION",
                      details={"field": "transform"})
    if source is None and not _MODULE.match(spec):
        raise Invalid(f"--transform {spec[:100]!r} is not MODULE:FUNCTION (a module the server "
                      "imports, like mypackage.clean:fix) or FILE.py:FUNCTION (a local file, "
                      "sent with the delivery)", details={"field": "transform"})


def _environment() -> dict[str, str]:
    """The transforms' fork server's environment: not the server's, which holds its secrets."""
    env = {k: v for k, v in os.environ.items() if k in _KEEP or k.startswith("LC_")}
    return {**env, "PYTHONUNBUFFERED": "1"}  # its prints reach the log as they are made


class Forks:
    """The fork server a control plane's transforms are forked from: started at the first
    transform (most servers have none: no process is kept for nothing), and again when it
    died or failed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ForkServer | None = None

    def server(self) -> ForkServer:
        """The running fork server, ready; Unavailable if none could be started."""
        with self._lock:
            server = self._server
            if server is None or server.state in ("failed", "stopped"):
                if server is not None:
                    server.stop()
                # Its output (a failed start, a child's traceback) goes to the server's log.
                self._server = server = ForkServer(
                    [ENTRY.partition(":")[0]], env=_environment(), log_path=None,
                    name="transform fork server")
        if not server.ready.wait(READY_TIMEOUT) or not server.usable:
            raise Unavailable(f"the transforms' fork server is not ready "
                              f"({server.why or 'still starting'}); the batch is read again")
        return server

    def describe(self) -> dict[str, Any] | None:
        with self._lock:
            return self._server.describe() if self._server is not None else None

    def stop(self) -> None:
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop()


FORKS = Forks()  # this control plane's: the deliveries' and the API's check of a new one


class Transform:
    """The transform's process, started at first use and again after it died."""

    def __init__(self, spec: str, source: str | None = None, *,
                 timeout: float = TIMEOUT, forks: Forks = FORKS) -> None:
        check_spec(spec, source)
        self.spec = spec
        self.source = source
        self.timeout = timeout
        self.forks = forks
        self._proc: Forked | None = None
        self._requests: IO[bytes] | None = None  # what the process reads
        self._answers: IO[bytes] | None = None  # what it writes
        self._hung = False

    def start(self) -> None:
        """Start the process and load the function; Invalid (why) if it cannot be loaded,
        Unavailable if no process could be started."""
        self.close()
        server = self.forks.server()
        theirs_in, mine_out = os.pipe()
        mine_in, theirs_out = os.pipe()
        try:
            # Its standard output and error: the server's log (our standard error).
            proc = server.start(ENTRY, {}, fds=[theirs_in, theirs_out], stdout=2, stderr=2)
        finally:
            os.close(theirs_in)
            os.close(theirs_out)
        self._requests, self._answers = os.fdopen(mine_out, "wb"), os.fdopen(mine_in, "rb")
        if proc is None:
            self.close()
            raise Unavailable(f"the transforms' fork server could not start a process "
                              f"({server.why or server.state}); the batch is read again")
        self._proc = proc
        answer = self._ask({"spec": self.spec, "source": self.source})
        if not isinstance(answer, dict) or "error" in answer:
            why = answer.get("error") if isinstance(answer, dict) else self._why_failed()
            self.close()
            raise Invalid(f"--transform {self.spec}: {why}", details={"field": "transform"})

    def __call__(self, records: list[Any]) -> list[tuple[bool, Any]]:
        """Each record's row (``(True, row or None)``) or why the function failed on it
        (``(False, why)``). A process that died or hung fails the whole list, and is
        started again for the next one."""
        if self._proc is None or self._proc.poll() is not None:
            self.start()
        answer = self._ask(records)
        if not isinstance(answer, list) or len(answer) != len(records):
            why = self._why_failed()
            self.close()
            return [(False, why)] * len(records)
        return [(kind == "ok", value) for kind, value in answer]

    def _why_failed(self) -> str:
        if self._hung:
            return f"the transform gave no answer in {self.timeout:g} s"
        code = None
        if self._proc is not None:  # its end is said by the fork server, a moment after
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self._proc.wait(2.0)
        return ("the transform's process ended" +
                (f" (exit status {code})" if code is not None else ""))

    def _kill(self) -> None:
        self._hung = True
        if self._proc is not None:
            self._proc.kill()

    def _ask(self, message: Any) -> Any:
        assert self._requests is not None and self._answers is not None
        self._hung = False
        timer = threading.Timer(self.timeout, self._kill)
        timer.start()
        try:
            self._requests.write(json.dumps(message).encode() + b"\n")
            self._requests.flush()
            line = self._answers.readline()
        except (BrokenPipeError, OSError):
            return None
        finally:
            timer.cancel()
        try:
            return json.loads(line) if line else None
        except ValueError:
            return None

    def close(self) -> None:
        proc, self._proc = self._proc, None
        for pipe in (self._requests, self._answers):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._requests = self._answers = None
        if proc is not None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)


# --- the process ---------------------------------------------------------------------------------


def _load(spec: str, source: str | None) -> Callable[[Any], Any]:
    where, _, name = spec.rpartition(":")
    if source is not None:
        module = types.ModuleType(os.path.basename(where)[:-3])
        exec(compile(source, where, "exec"), module.__dict__)  # the user's own file
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise LookupError(f"module {where!r} cannot be imported by the server ({exc}): "
                              "install it beside Cumulo or put it on the server's PYTHONPATH, "
                              "or give a local file as FILE.py:FUNCTION") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise LookupError(f"{where} has no function {name!r}")
    return function  # type: ignore[no-any-return]


def _one(function: Callable[[Any], Any], record: Any) -> list[Any]:
    try:
        row = function(record)
    except Exception as exc:
        return ["error", f"the transform raised {type(exc).__name__}: {exc}"[:500]]
    if row is not None and not isinstance(row, dict):
        return ["error", f"the transform returned {type(row).__name__}, not a dict or None"]
    try:
        json.dumps(row)
    except (TypeError, ValueError) as exc:
        return ["error", f"the transform's row is not JSON: {exc}"[:500]]
    return ["ok", row]


def _answer(out: IO[bytes], message: Any) -> None:
    out.write(json.dumps(message).encode() + b"\n")
    out.flush()


def forked(args: dict[str, Any], fds: list[int]) -> int:
    """The fork server's entry point for a transform's process: it reads requests from the
    first descriptor and answers on the second (its standard streams are the log's)."""
    requests, out = os.fdopen(fds[0], "rb"), os.fdopen(fds[1], "wb")
    hello = json.loads(requests.readline() or "null")
    if not isinstance(hello, dict):
        return 0  # the delivery let it go before it said what to load
    try:
        function = _load(hello["spec"], hello.get("source"))
    except Exception as exc:
        detail = str(exc) if isinstance(exc, LookupError) else traceback.format_exc(limit=3)
        _answer(out, {"error": detail.strip()[-1000:]})
        return 0
    _answer(out, {"ok": True})
    for line in requests:
        _answer(out, [_one(function, record) for record in json.loads(line)])
    sys.stdout.flush()
    return 0
