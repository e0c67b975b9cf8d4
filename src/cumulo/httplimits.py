"""How large a request may be, on every socket Cumulo serves: the control plane
(:mod:`cumulo.server.protocol`, :mod:`cumulo.server.middleware`) and each replica
(:mod:`cumulo.serving.http`).

Heads: both servers parse with httptools, which hands a request's target and headers over in
pieces: the callbacks count them and raise :class:`TooLong` past a limit, and the protocol
answers its status (414 for the target, 431 for the headers) and closes the connection, before
anything else reads the request.

Bodies: on the control plane every body is read within ``MAX_BODY`` as it arrives, before
authentication or parsing sees it (413 past it). A route that streams a body to storage lifts
that limit for its request with :func:`lift_body_limit`, once it knows its caller: uploads,
job code and outputs, MLflow's artifacts; an endpoint's invocations take the endpoint's own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BODY_LIMIT_KEY", "MAX_BODY", "MAX_HEADER_BYTES", "MAX_HEADER_FIELDS", "MAX_URL",
           "HeadCounter", "TooLong", "headers_too_long", "lift_body_limit", "limit_passed",
           "url_too_long"]

MAX_URL = 8 << 10  # bytes of a request's target, as most servers take
MAX_HEADER_BYTES = 64 << 10  # the request's head: its header fields together
MAX_HEADER_FIELDS = 100
MAX_BODY = 16 << 20  # a request body that is not streamed to storage (JSON, forms)
BODY_LIMIT_KEY = "cumulo.body_limit"  # in the ASGI scope: {"limit": bytes or None}


class TooLong(Exception):
    """A request's head past a limit; ``status`` is the answer it gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def url_too_long() -> TooLong:
    return TooLong(414, f"the request's target is over {MAX_URL} bytes")


def headers_too_long() -> TooLong:
    return TooLong(431, f"the request's headers are over {MAX_HEADER_BYTES} bytes or "
                        f"{MAX_HEADER_FIELDS} fields")


def lift_body_limit(request: Any, limit: int | None = None) -> None:
    """Let this request's body be read up to ``limit`` bytes (None: as much as comes), for a
    route that streams it somewhere, once it knows who is calling."""
    state = request.scope.get(BODY_LIMIT_KEY)
    if state is not None:
        state["limit"] = limit


class HeadCounter:
    """One connection's count of the request head being read, fed by its parser's callbacks;
    each method raises :class:`TooLong` once a limit is passed."""

    __slots__ = ("done", "fields", "header_bytes", "held")

    def __init__(self) -> None:
        self.done, self.held, self.header_bytes, self.fields = True, 0, 0, 0

    def begin(self) -> None:
        """A request starts (``on_message_begin``)."""
        self.done, self.held, self.header_bytes, self.fields = False, 0, 0, 0

    def url(self, length: int) -> None:
        """The target so far is ``length`` bytes (``on_url``)."""
        if length > MAX_URL:
            raise url_too_long()

    def header(self, name: bytes, value: bytes) -> None:
        """One whole header field (``on_header``)."""
        self.header_bytes += len(name) + len(value)
        self.fields += 1
        if self.header_bytes > MAX_HEADER_BYTES or self.fields > MAX_HEADER_FIELDS:
            raise headers_too_long()

    def received(self, size: int) -> None:
        """``size`` bytes were fed while the head is still incomplete: the parser holds a
        header until the next begins, so what it holds is counted here."""
        if not self.done:
            self.held += size
            if self.held > MAX_HEADER_BYTES:
                raise headers_too_long()

    def complete(self) -> None:
        """The head has been read (``on_headers_complete``)."""
        self.done = True


def limit_passed(exc: BaseException) -> TooLong | None:
    """The limit an error from the parser came from, if it did (httptools wraps what a
    callback raises)."""
    if isinstance(exc, TooLong):
        return exc
    return exc.__context__ if isinstance(exc.__context__, TooLong) else None
