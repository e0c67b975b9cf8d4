"""Structured logs: one JSON object per line, each carrying the request id it belongs to."""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

__all__ = ["LOG_ROTATE_BYTES", "JsonFormatter", "add_log_file", "configure_logging", "request_id"]

LOG_ROTATE_BYTES = 256 * 1024 * 1024  # a log file over this moves to NAME.1 when it is opened

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cumulo_request_id", default=None
)

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is logged.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message", "asctime", "taskName", "color_message",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class GatheredStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes its lines in batches: at once from a warning up, else
    within ``interval`` seconds, from a thread of its own. A busy server's access log costs a
    write a tenth of a second rather than one per request."""

    def __init__(self, stream: Any, interval: float = 0.1) -> None:
        super().__init__(stream)
        self.interval = interval
        self.also: list[Any] = []  # more streams the same lines go to (add_log_file)
        self._lines: list[str] = []
        self._wake = threading.Event()
        self._start()
        os.register_at_fork(after_in_child=self._start)  # a forked child has no such thread

    def _start(self) -> None:
        self._lines = []  # in a child: the parent's, written by the parent
        threading.Thread(target=self._run, name="cumulo-log", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(line)
        if record.levelno >= logging.WARNING:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._lines:
                lines, self._lines = self._lines, []
                text = "".join(lines)
                for stream in (self.stream, *self.also):
                    try:
                        stream.write(text)
                        stream.flush()
                    except (OSError, ValueError):
                        pass  # the stream is gone: nothing to tell it with

    def _run(self) -> None:
        while not self._wake.wait(self.interval):
            self.flush()


def configure_logging(level: str = "info") -> None:
    """Send Cumulo's and uvicorn's logs to stderr as JSON lines."""
    handler = GatheredStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Cumulo writes its own access log line with the request id; uvicorn's would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True


def add_log_file(path: Path) -> None:
    """Also write the logs to ``path`` (the control plane's ``<home>/logs/server.log``, served
    by ``cumulo logs``), in batches as to stderr. A file over :data:`LOG_ROTATE_BYTES` moves
    to ``path.1`` first, replacing the one before."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists() and path.stat().st_size > LOG_ROTATE_BYTES:
        path.replace(path.with_name(path.name + ".1"))
    stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open while the server runs
    root = logging.getLogger()
    gathered = next((h for h in root.handlers if isinstance(h, GatheredStreamHandler)), None)
    if gathered is not None:  # the lines stderr gets, formatted once for both
        gathered.also.append(stream)
        return
    handler = GatheredStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
