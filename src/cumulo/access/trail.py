"""What goes to the audit log as requests are served: every refusal the decision point makes,
every request that changes something (any method but GET, HEAD and OPTIONS) and every sign-in,
with who, what, the resource, the source address, the request id and the outcome.

Entries are written by a thread of their own, in order, so a request never waits for the
audit log's writes (nor does the event loop, where a decision may be made). The queue is
bounded: past it, entries are counted as lost and the loss is logged, never silently.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from cumulo.access.audit import AuditLog, Outcome
from cumulo.logs import request_id
from cumulo.principal import Principal, source_address

__all__ = ["Trail"]

log = logging.getLogger("cumulo.audit")


class Trail:
    def __init__(self, audit: AuditLog, *, size: int = 10_000) -> None:
        self.audit = audit
        self.lost = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=size)
        self._thread = threading.Thread(target=self._run, name="cumulo-audit", daemon=True)
        self._thread.start()

    def denied(self, principal: Principal, action: str, resource: str, why: str) -> None:
        """The decision point's ``on_denied``."""
        self._put(user=principal.user_name, action=action, resource=resource,
                  outcome="denied", details={"why": why, "via_job": principal.via_job})

    def change(self, *, user: str, action: str, resource: str, status: int, method: str,
               path: str, source: str | None) -> None:
        """A request that changes something, once answered (a 403 is the refusal's entry)."""
        outcome: Outcome = "allowed" if status < 400 else "failed"
        self._put(user=user, action=action, resource=resource, outcome=outcome,
                  source=source, details={"method": method, "path": path, "status": status})

    def event(self, *, user: str | None, action: str, resource: str, outcome: Outcome,
              source: str | None, details: dict[str, Any]) -> None:
        """Anything else worth an entry: a sign-in, with its outcome."""
        self._put(user=user, action=action, resource=resource, outcome=outcome, source=source,
                  details=details)

    def _put(self, **entry: Any) -> None:
        entry.setdefault("source", source_address.get())
        entry["request_id"] = request_id.get()
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.lost += 1
            log.error("audit queue full: an entry was lost (%d so far)", self.lost,
                      extra={"entry": entry})

    def _run(self) -> None:
        while (entry := self._queue.get()) is not None:
            try:
                self.audit.record(**entry)
            except Exception:
                self.lost += 1
                log.exception("writing an audit entry failed", extra={"entry": entry})
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until what is queued is written (tests; shutting down)."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        done.wait(timeout)

    def stop(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=5)
