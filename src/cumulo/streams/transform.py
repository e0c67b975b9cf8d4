"""A delivery's transform: a user's function called on each record before it is written, in a
process of its own, so that user code never runs inside the control plane (a crash or a hang
of it fails that batch's records, not the server).

The function takes a record (the JSON object, as a ``dict``) and returns the row to write (a
``dict``), or ``None`` to drop the record. It is named ``module:function`` (a module the server
can import: installed beside it, or on its ``PYTHONPATH``) or ``file.py:function`` (the file's
text, sent by the CLI or SDK and kept with the delivery).

The process speaks JSON lines on its standard input and output: first ``{"spec", "source"}``,
answered ``{"ok": true}`` or ``{"error"}``; then a list of records a line, answered by a list of
``["ok", row-or-null]`` or ``["error", why]``, one per record. What the function prints goes to
the server's log (its standard error), never into the answers. The process gets none of the
server's environment but where Python and modules are (``PATH``, ``PYTHONPATH``) and the
locale: the server's secrets stay out of it.
"""

from __future__ import annotations

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

from cumulo.errors import Invalid

__all__ = ["Transform", "check_spec"]

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")
_FILE = re.compile(r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$")
TIMEOUT = 60.0  # seconds a batch may take in the transform
# What of the server's environment the function's process gets: where Python and the modules
# are, and the locale; nothing else.
_KEEP = frozenset({"PATH", "PYTHONPATH", "HOME", "LANG", "TZ", "TMPDIR", "VIRTUAL_ENV"})


def check_spec(spec: str, source: str | None) -> None:
    if source is not None and not _FILE.match(spec):
        raise Invalid(f"--transform {spec[:100]!r} is not FILE.py:FUNCTION",
                      details={"field": "transform"})
    if source is None and not _MODULE.match(spec):
        raise Invalid(f"--transform {spec[:100]!r} is not MODULE:FUNCTION (a module the server "
                      "imports, like mypackage.clean:fix) or FILE.py:FUNCTION (a local file, "
                      "sent with the delivery)", details={"field": "transform"})


class Transform:
    """The transform's process, started at first use and again after it died."""

    def __init__(self, spec: str, source: str | None = None, *,
                 timeout: float = TIMEOUT) -> None:
        check_spec(spec, source)
        self.spec = spec
        self.source = source
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process and load the function; Invalid (why) if it cannot be loaded."""
        self.close()
        # Not the server's environment: it holds the server's secrets (its admin token, its
        # database's and storage's credentials), and the function is a user's code.
        env = {k: v for k, v in os.environ.items() if k in _KEEP or k.startswith("LC_")}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "cumulo.streams.transform"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env={**env, "PYTHONUNBUFFERED": "1"})
        answer = self._ask({"spec": self.spec, "source": self.source})
        if not isinstance(answer, dict) or "error" in answer:
            self.close()
            why = answer.get("error") if isinstance(answer, dict) else "no answer"
            raise Invalid(f"--transform {self.spec}: {why}", details={"field": "transform"})

    def __call__(self, records: list[Any]) -> list[tuple[bool, Any]]:
        """Each record's row (``(True, row or None)``) or why the function failed on it
        (``(False, why)``). A process that died or hung fails the whole list, and is
        started again for the next one."""
        if self._proc is None or self._proc.poll() is not None:
            self.start()
        answer = self._ask(records)
        if not isinstance(answer, list) or len(answer) != len(records):
            code = self._proc.poll() if self._proc is not None else None
            self.close()
            why = (f"the transform's process ended (exit status {code})" if code is not None
                   else f"the transform gave no answer in {self.timeout:g} s")
            return [(False, why)] * len(records)
        return [(kind == "ok", value) for kind, value in answer]

    def _ask(self, message: Any) -> Any:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        timer = threading.Timer(self.timeout, proc.kill)
        timer.start()
        try:
            proc.stdin.write(json.dumps(message).encode() + b"\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
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
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


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


def main() -> None:
    # Answers go on a copy of the real standard output; what the user's code prints goes to
    # standard error.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    hello = json.loads(sys.stdin.buffer.readline() or "null")
    try:
        function = _load(hello["spec"], hello.get("source"))
    except Exception as exc:
        detail = str(exc) if isinstance(exc, LookupError) else traceback.format_exc(limit=3)
        _answer(out, {"error": detail.strip()[-1000:]})
        return
    _answer(out, {"ok": True})
    for line in sys.stdin.buffer:
        _answer(out, [_one(function, record) for record in json.loads(line)])


if __name__ == "__main__":
    main()
