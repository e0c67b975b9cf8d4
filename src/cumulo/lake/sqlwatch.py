"""One DuckDB statement on a worker thread, stopped at its deadline or on a cancel.

DuckDB's ``interrupt()`` is seen only between chunks of execution. Work it does while planning
(folding a constant such as ``length(repeat('ab', 700000000))``), or inside one chunk of an
expression, does not see it, and an interrupt that lands before execution starts is dropped.
So the statement runs on a worker thread; its caller reads the result batches from a queue and
watches the clock. At the deadline (or a cancel) the connection is interrupted every 100 ms
until the worker ends; if it has not ended after ``STOP_GRACE_S``, the caller answers with the
timeout anyway and the statement is abandoned: its connection goes back retired once DuckDB
lets go. At most ``MAX_STRAGGLERS`` abandoned statements may still be running; past that, new
queries wait (``Unavailable``) rather than pile up on the CPUs.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import pyarrow as pa

from cumulo.errors import Conflict, Unavailable
from cumulo.units import format_duration

__all__ = ["MAX_STRAGGLERS", "STOP_GRACE_S", "QueryCancelled", "Watch", "check_capacity"]

STOP_GRACE_S = 2.0
MAX_STRAGGLERS = 4
_POLL_S = 0.05

_STRAGGLERS: set[Watch] = set()
_STRAGGLERS_LOCK = threading.Lock()


class QueryCancelled(Conflict):
    """Cancelled by a user, or stopped at its timeout."""


def check_capacity() -> None:
    """Unavailable while too many abandoned statements still hold the CPUs."""
    with _STRAGGLERS_LOCK:
        count = len(_STRAGGLERS)
    if count >= MAX_STRAGGLERS:
        raise Unavailable(f"{count} queries that ran past their timeouts are still being "
                          "stopped; try again in a minute", retry_after=30)


class Watch:
    """Runs ``start()`` (which returns a reader over the statement's result) and reads it on a
    worker thread; :meth:`reader` hands the batches to the caller until the deadline.

    ``after()`` runs on the worker once the result is read whole; its value is ``self.after``.
    ``finish(failed)`` runs on the worker last, whatever happened: it gives the connection
    back. ``interrupt()`` may be called from any thread, also after ``finish``.
    """

    def __init__(self, start: Callable[[], pa.RecordBatchReader], *, deadline: float,
                 timeout_s: float, interrupt: Callable[[], None],
                 cancelled: Callable[[], bool], finish: Callable[[bool], None],
                 after: Callable[[], Any] = lambda: None) -> None:
        self._start, self._after, self._finish = start, after, finish
        self._interrupt, self._cancelled = interrupt, cancelled
        self.deadline, self.timeout_s = deadline, timeout_s
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._done = threading.Event()
        self.after: Any = None
        self.failure: BaseException | None = None  # what ended it, as the caller saw it
        self._worker = threading.Thread(target=self._work, name="cumulo-sql", daemon=True)
        self._worker.start()

    # --- the worker ---------------------------------------------------------------------------

    def _work(self) -> None:
        message: tuple[str, Any] = ("end", None)
        reader = None
        try:
            reader = self._start()
            self._put(("schema", reader.schema))
            for batch in reader:
                if self._stop.is_set():
                    break
                self._put(("batch", batch))
            if not self._stop.is_set():
                message = ("end", self._after())
        except BaseException as exc:  # handed to the caller, who raises it
            message = ("error", exc)
        finally:
            if reader is not None:
                with contextlib.suppress(Exception):
                    reader.close()
            try:
                self._finish(message[0] != "end" or self._stop.is_set())
            finally:
                with _STRAGGLERS_LOCK:
                    self._done.set()
                    _STRAGGLERS.discard(self)
                self._put(message)

    def _put(self, item: tuple[str, Any]) -> None:
        while True:
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                if self._stop.is_set():
                    return  # nobody reads any more

    # --- the caller ---------------------------------------------------------------------------

    def reader(self) -> pa.RecordBatchReader:
        """The result, once DuckDB has planned it; raises what stopped it."""
        kind, value = self._next()
        if kind == "schema":
            return pa.RecordBatchReader.from_batches(value, self._batches())
        self._fail(kind, value)

    def _batches(self) -> Iterator[pa.RecordBatch]:
        while True:
            kind, value = self._next()
            if kind == "batch":
                yield value
            elif kind == "end":
                self.after = value
                return
            else:
                self._fail(kind, value)

    def _fail(self, kind: str, value: Any) -> NoReturn:
        error = value if kind == "error" else RuntimeError(f"unexpected {kind} from the worker")
        self.failure = error
        raise error

    def _next(self) -> tuple[str, Any]:
        while True:
            if self._cancelled():
                self._stop_now("the query was cancelled")
            if time.monotonic() >= self.deadline:
                self._stop_now(f"the query ran past its timeout of "
                               f"{format_duration(self.timeout_s)} and was stopped; narrow it, "
                               "or give it longer (--timeout, timeout_s)")
            with contextlib.suppress(queue.Empty):
                return self._queue.get(timeout=_POLL_S)

    def _stop_now(self, message: str) -> NoReturn:
        self.close()
        ends = time.monotonic() + STOP_GRACE_S
        while not self._done.is_set() and time.monotonic() < ends:
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_POLL_S)  # what it still makes is dropped
        with _STRAGGLERS_LOCK:
            abandoned = not self._done.is_set()
            if abandoned:
                _STRAGGLERS.add(self)
        if abandoned:
            message += ("; DuckDB could not interrupt it inside an expression, so its "
                        "connection was dropped and it ends in the background")
        error = QueryCancelled(message)
        self.failure = error
        raise error

    def close(self) -> None:
        """Stop the statement if it still runs (the caller is done or gives up)."""
        if self._done.is_set() or self._stop.is_set():
            return
        self._stop.set()
        threading.Thread(target=self._keep_interrupting, name="cumulo-sql-stop",
                         daemon=True).start()

    def _keep_interrupting(self) -> None:
        # An interrupt that lands while DuckDB plans is forgotten when execution starts.
        while not self._done.is_set():
            self._interrupt()
            self._done.wait(0.1)
