"""HTTP transport of the SDK: base URL, token, and errors raised as Cumulo's own classes."""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from cumulo.errors import (
    CumuloError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    error_from_payload,
)

__all__ = ["Consume", "Transport"]

Consume = Callable[[memoryview], None]
_BUFFER = 4 << 20
# A busy server answers 503 with Retry-After; a request that is safe to send again (it changes
# nothing, or its effect is the same however often it is made) is sent again, this many times,
# after the wait the server asks for (at most _LONGEST_WAIT seconds).
_RETRIES = 3
_LONGEST_WAIT = 10.0
_IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}


def _replayable(kwargs: dict[str, Any]) -> bool:
    """Whether the request's body can be sent twice (bytes or JSON, not a stream or a file)."""
    content = kwargs.get("content")
    return content is None or isinstance(content, bytes | str)


def _retry_after(response: httpx.Response) -> float | None:
    """How long a 503 asks to wait, or None when it does not ask."""
    value = response.headers.get("retry-after", "")
    if response.status_code != 503 or not value.strip().isdigit():
        return None
    return min(float(value), _LONGEST_WAIT)


class Transport:
    """HTTP to one Cumulo server. ``url`` may name several control planes of one Cumulo,
    separated by commas (``CUMULO_URL=http://a:8080,http://b:8080``; what a job gets where the
    server's ``public_url`` is such a list): a request that cannot connect (so nothing was
    sent) goes to the next, which is kept for the requests after it."""

    def __init__(self, url: str, token: str | None, *, token_source: str = "",
                 timeout: float = 60.0, project: str | None = None) -> None:
        self.urls = [u.strip().rstrip("/") for u in url.split(",") if u.strip()] or [url]
        self.url = self.urls[0]
        self.token = token  # for clients of the same server that are not this one (MLflow's)
        self._token_source = token_source
        headers = {"authorization": f"Bearer {token}"} if token else {}
        if project:
            headers["x-cumulo-project"] = project
        self._headers = headers
        self._timeout = timeout
        self._http = self._client(self.url)
        self._has_token = bool(token)

    def _client(self, url: str) -> httpx.Client:
        return httpx.Client(base_url=url, headers=self._headers,
                            timeout=httpx.Timeout(self._timeout, connect=5.0),
                            follow_redirects=False)

    def _next_url(self) -> bool:
        """Move on to the next control plane of the list; False when there is none."""
        if len(self.urls) < 2:
            return False
        at = self.urls.index(self.url)
        self.url = self.urls[(at + 1) % len(self.urls)]
        self._http.close()
        self._http = self._client(self.url)
        return True

    def close(self) -> None:
        self._http.close()

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            self._raise(response.status_code, response.content,
                        response.headers.get("retry-after"))

    def _raise(self, status: int, body: bytes, retry_after: str | None = None) -> None:
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = body.decode("utf-8", "replace")
        error = error_from_payload(status, payload)
        wait = (retry_after or "").strip()
        if isinstance(error, TooManyRequests) and error.retry_after is None and wait.isdigit():
            # Raised, not waited out as a 503 is: the wait is long, and the request may be a
            # sign-in, which is not for sending twice.
            error.retry_after = float(wait)
        if isinstance(error, Unauthorized) and not self._has_token:
            error = Unauthorized(
                f"{error.message}. No token was found for {self.url}: run 'cumulo login --url "
                f"{self.url}', pick a saved login with --profile or CUMULO_PROFILE ('cumulo "
                "profiles ls'), or set CUMULO_TOKEN"
            )
        elif isinstance(error, Unauthorized) and self._token_source.startswith("profile"):
            # Which saved login was refused: with several, the user cannot otherwise tell.
            error = Unauthorized(f"{error.message} (the token of {self._token_source})")
        raise error

    def _unreachable(self, exc: httpx.TransportError) -> CumuloError:
        if isinstance(exc, httpx.ConnectError):
            return Unavailable(
                f"cannot reach Cumulo at {self.url}: {exc}. Is it running? Start it with "
                "'cumulo up', or point CUMULO_URL at it"
            )
        return Unavailable(f"the connection to Cumulo at {self.url} failed: {exc}")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        again = _RETRIES if method.upper() in _IDEMPOTENT and _replayable(kwargs) else 0
        others = len(self.urls) - 1  # control planes still to try when one cannot be reached
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if others > 0 and _replayable(kwargs) and self._next_url():
                    others -= 1
                    continue  # nothing was sent: the next control plane
                raise self._unreachable(exc) from exc
            except httpx.TransportError as exc:
                raise self._unreachable(exc) from exc
            wait = _retry_after(response)
            if wait is None or again <= 0:
                break
            again -= 1
            time.sleep(wait)
        self._raise_for(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def fetch_into(self, path: str, consumers: list[Consume]) -> dict[str, str]:
        """GET a large body and hand it, in order, to each consumer; return the headers.

        Built for bulk downloads: the socket is read with ``readinto`` straight into a few
        4 MiB buffers, and each consumer (say, a hasher and a file writer) runs in a thread of
        its own on every buffer, so receiving, hashing and writing overlap.
        """
        url = httpx.URL(self.url).join(path)
        conn_cls = (http.client.HTTPSConnection if url.scheme == "https"
                    else http.client.HTTPConnection)
        conn = conn_cls(url.host, url.port, timeout=self._timeout)
        try:
            try:
                conn.request("GET", url.raw_path.decode(), headers=self._headers)
                response = conn.getresponse()
            except OSError as exc:
                raise self._unreachable(httpx.ConnectError(str(exc))) from exc
            if response.status >= 400:
                self._raise(response.status, response.read(), response.getheader("retry-after"))
            with _Fanout(consumers) as fanout:
                while True:
                    buf = fanout.free_buffer()
                    n = _fill(response, buf)
                    if not n:
                        break
                    fanout.publish(buf, n)
            return {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()

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


def _fill(response: http.client.HTTPResponse, buf: bytearray) -> int:
    """Read into ``buf`` until it is full or the body ends; returns the bytes read."""
    view = memoryview(buf)
    n = 0
    while n < len(buf):
        got = response.readinto(view[n:])
        if not got:
            break
        n += got
    return n


class _Fanout:
    """Hands filled buffers to each consumer's thread; a buffer is reused once all are done."""

    def __init__(self, consumers: list[Consume], buffers: int = 4) -> None:
        self._free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(buffers):
            self._free.put(bytearray(_BUFFER))
        self._queues: list[queue.Queue[tuple[bytearray, int] | None]] = [
            queue.Queue() for _ in consumers
        ]
        self._left: dict[int, int] = {}
        self._lock = threading.Lock()
        self._errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._run, args=(c, q), daemon=True)
            for c, q in zip(consumers, self._queues, strict=True)
        ]

    def __enter__(self) -> _Fanout:
        for t in self._threads:
            t.start()
        return self

    def _run(self, consume: Consume, items: queue.Queue[tuple[bytearray, int] | None]) -> None:
        while (item := items.get()) is not None:
            buf, n = item
            if not self._errors:
                try:
                    consume(memoryview(buf)[:n])
                except BaseException as exc:
                    self._errors.append(exc)
            with self._lock:
                self._left[id(buf)] -= 1
                if not self._left[id(buf)]:
                    self._free.put(buf)

    def free_buffer(self) -> bytearray:
        if self._errors:
            raise self._errors[0]
        return self._free.get()

    def publish(self, buf: bytearray, n: int) -> None:
        with self._lock:
            self._left[id(buf)] = len(self._queues)
        for q in self._queues:
            q.put((buf, n))

    def __exit__(self, *exc: object) -> None:
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join()
        if self._errors and exc[0] is None:
            raise self._errors[0]
