"""``client.costs``: what work used and cost."""

from __future__ import annotations

from typing import Any

from cumulo.client.transport import Transport
from cumulo.units import day_of

__all__ = ["CostsClient"]


def _day(text: str | None, what: str) -> str | None:
    # Usage is summed by day and the server reads days, so a time or a span back from now
    # goes as the day it falls on.
    if text is None:
        return None
    return day_of(text, what=what, start=what == "--since").isoformat()


class CostsClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def __call__(self, *, by: str = "day", since: str | None = None, until: str | None = None,
                 kind: str | None = None, project: str | None = None) -> dict[str, Any]:
        """Usage and cost summed ``by`` day, cluster, user, project, tag or kind (of one
        project's work with ``project``), from the day of
        ``since`` to the day of ``until`` (both counted): dates like ``2026-11-26``, times
        like ``2026-11-26T10:00:00Z``, or spans back from now like ``7d`` or ``1h30m``.
        Streams' figures add ``shard_hours`` and ``put_units`` to the groups that have any."""
        params = {k: v for k, v in {"by": by, "since": _day(since, "--since"),
                                    "until": _day(until, "--until"),
                                    "kind": kind, "project": project}.items()
                  if v is not None}
        return self._t.json("GET", "/api/v1/costs", params=params)  # type: ignore[no-any-return]
