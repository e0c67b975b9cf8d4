"""SDK sub-client for tokens: ``client.tokens``."""

from __future__ import annotations

from typing import Any

from cumulo.client.transport import Transport

__all__ = ["KeysClient", "TokensClient"]


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


class KeysClient:
    """S3 access keys: ``client.keys.create()`` gives an id and secret for boto3, the aws
    command or rclone, with the caller's rights."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, name: str = "s3", *, expires_in: str | None = None) -> dict[str, Any]:
        """A new key: ``["access_key_id"]`` and ``["secret_access_key"]``, the secret shown
        only this once."""
        return self._t.json(  # type: ignore[no-any-return]
            "POST", "/api/v1/keys", json={"name": name, "expires_in": expires_in})

    def list(self, *, all_users: bool = False) -> list[dict[str, Any]]:
        body = self._t.json("GET", "/api/v1/keys", params={"all": all_users})
        return body["keys"]  # type: ignore[no-any-return]

    def revoke(self, access_key_id: str) -> dict[str, Any]:
        return self._t.json("DELETE", f"/api/v1/keys/{access_key_id}")  # type: ignore[no-any-return]
