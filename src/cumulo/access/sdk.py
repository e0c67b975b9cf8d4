"""SDK sub-client for tokens: ``client.tokens``."""

from __future__ import annotations

from typing import Any

from cumulo.client.transport import Transport

__all__ = ["TokensClient"]


class TokensClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, name: str, *, expires_in: str | None = None,
               user: str | None = None) -> dict[str, Any]:
        """A new token (``user``: for another user, a service account say, when the caller
        may manage them); the secret is in ``["token"]`` and is shown only this once."""
        return self._t.json(  # type: ignore[no-any-return]
            "POST", "/api/v1/tokens",
            json={"name": name, "expires_in": expires_in, "user": user}
        )

    def list(self, *, all_users: bool = False) -> list[dict[str, Any]]:
        body = self._t.json("GET", "/api/v1/tokens", params={"all": all_users})
        return body["tokens"]  # type: ignore[no-any-return]

    def revoke(self, ref: str | int) -> dict[str, Any]:
        """Revoke by id or name."""
        return self._t.json("DELETE", f"/api/v1/tokens/{ref}")  # type: ignore[no-any-return]
