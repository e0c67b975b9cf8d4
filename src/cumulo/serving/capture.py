"""Data capture: the requests replicas sampled, with their answers, appended to a lake table.

Replicas send what they capture with their stats (a local replica on its pipe, a Ray Serve
replica in its report). Each endpoint's runtime adds it to the endpoint's
:class:`CaptureBuffer`; :class:`Captures` appends every buffer to its table every
``INTERVAL`` seconds, one commit per endpoint, as the endpoint creator (the table is theirs).
A deleted endpoint's last records are still written. A table that is gone or refuses the
rows is logged; the endpoint keeps serving.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cumulo.db import utcnow
from cumulo.serving.models import Endpoint
from cumulo.storage.backends import Backend

__all__ = ["INTERVAL", "CaptureBuffer", "Captures", "write_capture"]

log = logging.getLogger("cumulo.serving")

INTERVAL = 2.0  # seconds between writes of captured requests to their tables


class CaptureBuffer:
    """One endpoint's captured requests not yet in its table (``table``: DB.TABLE, or None
    while capture is off)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.table: str | None = None
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            self._records.extend(records)

    def take(self) -> tuple[str, list[dict[str, Any]]] | None:
        """The table and the records for it, emptying the buffer; None if there are none,
        or no table to write them to."""
        with self._lock:
            if not self._records or self.table is None:
                return None
            records, self._records = self._records, []
            return self.table, records


class Captures:
    """Every endpoint's buffer, and the thread that writes them."""

    def __init__(self, sessions: sessionmaker[Session], storage: Backend | None, *,
                 interval: float = INTERVAL) -> None:
        self.sessions = sessions
        self.storage = storage
        self.interval = interval
        self._buffers: dict[str, CaptureBuffer] = {}
        self._leftover: list[tuple[str, str, list[dict[str, Any]]]] = []  # deleted endpoints'
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def buffer(self, name: str) -> CaptureBuffer:
        """The endpoint's buffer (made on first use)."""
        with self._lock:
            return self._buffers.setdefault(name, CaptureBuffer(name))

    def retire(self, name: str) -> None:
        """The endpoint is gone: write what it captured with the next flush, then forget it."""
        with self._lock:
            buffer = self._buffers.pop(name, None)
            taken = buffer.take() if buffer is not None else None
            if taken is not None:
                self._leftover.append((name, *taken))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="endpoint-capture")
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, once it has written what the replicas sent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()
        self.flush()  # what the replicas sent before they stopped

    def flush(self) -> None:
        """Append each endpoint's captured requests to its table, one commit each."""
        with self._lock:
            batches = [(name, *taken) for name, buffer in self._buffers.items()
                       if (taken := buffer.take()) is not None]
            batches += self._leftover
            self._leftover = []
        for name, table, records in batches:
            try:
                write_capture(self.sessions, self.storage, name, table, records)
            except Exception:  # the table is gone or refuses the rows: say so, keep serving
                log.exception("endpoint %s: writing %d captured requests to %s failed", name,
                              len(records), table)


def write_capture(sessions: sessionmaker[Session], storage: Backend | None, name: str,
                  table: str, records: list[dict[str, Any]]) -> None:
    """Append an endpoint's captured requests to ``table`` (made on first use), as the
    endpoint's creator."""
    import pyarrow as pa

    from cumulo.access.users import user_names
    from cumulo.lake import catalog, delta
    from cumulo.lake.refs import parse_ref
    from cumulo.principal import Principal

    assert storage is not None
    data = pa.table({
        "captured_at": pa.array([int(r["captured_at"] * 1e6) for r in records],
                                pa.timestamp("us", tz="UTC")),
        "endpoint": pa.array([name] * len(records), pa.string()),
        **{key: pa.array([r[key] for r in records], kind) for key, kind in (
            ("variant", pa.string()), ("status", pa.int32()),
            ("latency_ms", pa.float64()), ("model_latency_ms", pa.float64()),
            ("content_type", pa.string()), ("request", pa.string()),
            ("request_encoding", pa.string()), ("response", pa.string()))}})
    ref = parse_ref(table)
    with sessions() as session:
        endpoint = session.scalar(select(Endpoint).where(Endpoint.name == name))
        owner = endpoint.created_by if endpoint is not None else None
        user = user_names(session, [owner]).get(owner, "cumulo") if owner else "cumulo"
        # The table is the endpoint creator's (no one's, if they were deleted).
        owner_principal = Principal(owner, user, False, 0)  # type: ignore[arg-type]
        row = catalog.ensure_managed_table(session, owner_principal, ref)
        delta.write(catalog.location(storage, row), data.to_reader(), mode="append",
                    user=user, name=ref.name)
        row.updated_at = utcnow()
        session.commit()
