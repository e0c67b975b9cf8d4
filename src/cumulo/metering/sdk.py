"""``client.costs``: what work used and cost."""

from __future__ import annotations

from typing import Any

from cumulo.client.transport import Transport

__all__ = ["CostsClient"]


class CostsClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def __call__(self, *, by: str = "day", since: str | None = None, until: str | None = None,
                 kind: str | None = None) -> dict[str, Any]:
        """Usage and cost summed ``by`` day, cluster, user, tag or kind; dates like
        2026-11-26, or ``since="7d"`` for the last seven days."""
        params = {k: v for k, v in {"by": by, "since": since, "until": until,
                                    "kind": kind}.items() if v is not None}
        return self._t.json("GET", "/api/v1/costs", params=params)  # type: ignore[no-any-return]
