"""HTTP transport of the SDK: base URL, token, and errors raised as Cumulo's own classes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from cumulo.errors import CumuloError, Unauthorized, Unavailable, error_from_payload

__all__ = ["Transport"]


class Transport:
    def __init__(self, url: str, token: str | None, *, token_source: str = "",
                 timeout: float = 60.0) -> None:
        self.url = url
        self._token_source = token_source
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=url, headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0), follow_redirects=False,
        )
        self._has_token = bool(token)

    def close(self) -> None:
        self._http.close()

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            payload: Any = response.json()
        except ValueError:
            payload = response.text
        error = error_from_payload(response.status_code, payload)
        if isinstance(error, Unauthorized) and not self._has_token:
            error = Unauthorized(
                f"{error.message}. No token was found: set CUMULO_TOKEN, or run "
                "'cumulo login --token TOKEN'"
            )
        raise error

    def _unreachable(self, exc: httpx.TransportError) -> CumuloError:
        if isinstance(exc, httpx.ConnectError):
            return Unavailable(
                f"cannot reach Cumulo at {self.url}: {exc}. Is it running? Start it with "
                "'cumulo up', or point CUMULO_URL at it"
            )
        return Unavailable(f"the connection to Cumulo at {self.url} failed: {exc}")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        self._raise_for(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response)
                yield response
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
