"""SDK sub-client of the audit log: ``client.audit``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cumulo.client.transport import Transport
from cumulo.units import parse_time

__all__ = ["AuditClient"]


def _time(value: str | datetime | None, what: str) -> str | None:
    """A time as the ISO text the API reads: a datetime (naive: UTC), or text in
    :func:`cumulo.units.parse_time`'s grammar (``1h`` counts back from this machine's clock)."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else parse_time(value, what=what)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")


class AuditClient:
    """``client.audit.list(user="ana", since="1h")``; ``client.audit.verify()``."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list(self, *, user: str | None = None, action: str | None = None,
             outcome: str | None = None, since: str | datetime | None = None,
             until: str | datetime | None = None, limit: int = 100,
             before: int | None = None) -> dict[str, Any]:
        """A page of entries, newest first: ``{"events": [...], "next": seq or None}``; pass
        ``before=page["next"]`` for the next one. ``action`` may be a glob (``tables:*``);
        ``since`` and ``until`` take a datetime, a date, an ISO time, or ``1h``, ``7d``."""
        params = {"user": user, "action": action, "outcome": outcome,
                  "since": _time(since, "since"), "until": _time(until, "until"),
                  "limit": limit, "before": before}
        return self._t.json(  # type: ignore[no-any-return]
            "GET", "/api/v1/audit/events",
            params={k: v for k, v in params.items() if v is not None})

    def verify(self, *, timeout_s: float = 600) -> dict[str, Any]:
        """Check the hash chain and the lake copy: ``{"ok", "entries", "first_bad",
        "problem", "where", "lake_entries"}``. It reads every entry: a long log takes a
        while."""
        return self._t.json(  # type: ignore[no-any-return]
            "POST", "/api/v1/audit/verify", timeout=timeout_s)
