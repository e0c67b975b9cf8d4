"""How large a request's head may be, on every socket Cumulo serves: the control plane
(:mod:`cumulo.server.protocol`) and each replica (:mod:`cumulo.serving.http`).

Both parse with httptools, which hands a request's target and headers over in pieces: the
callbacks count them and raise :class:`TooLong` past a limit, and the protocol answers its
status (414 for the target, 431 for the headers) and closes the connection, before anything
else reads the request.
"""

from __future__ import annotations

__all__ = ["MAX_HEADER_BYTES", "MAX_HEADER_FIELDS", "MAX_URL", "TooLong", "headers_too_long",
           "url_too_long"]

MAX_URL = 8 << 10  # bytes of a request's target, as most servers take
MAX_HEADER_BYTES = 64 << 10  # the request's head: its header fields together
MAX_HEADER_FIELDS = 100


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
