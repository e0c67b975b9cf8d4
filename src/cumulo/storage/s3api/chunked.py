"""``aws-chunked`` request bodies, decoded as they arrive (sans I/O: bytes in, payload out).

An SDK that streams an upload sends its body as chunks, each ``SIZE-IN-HEX[;chunk-signature=
SIG]\\r\\nDATA\\r\\n``, ending with a chunk of size 0 and, for the ``...-TRAILER`` kinds, trailing
headers (a checksum, ``x-amz-trailer-signature``) and an empty line. A signed chunk's signature
chains to the one before it (the first to the request's own), so a chunk changed, dropped or
reordered on the way fails. Payload is handed on as it comes; a chunk's signature is checked
when its last byte arrives, before any later byte is handed on, so a bad chunk stops the upload
(whose temporary file is then removed: nothing is stored).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cumulo.storage.s3api.sigv4 import SignatureError

__all__ = ["ChunkedDecoder"]

MAX_LINE = 4096  # a chunk header or trailer line


class ChunkedDecoder:
    """Feed it the body's bytes; it returns the payload's. ``sign_chunk(previous, sha256)``
    gives the signature a chunk must carry (None: chunks are not signed);
    ``sign_trailer(previous, sha256)`` the trailer's."""

    def __init__(self, seed: str | None = None,
                 sign_chunk: Callable[[str, str], str] | None = None,
                 sign_trailer: Callable[[str, str], str] | None = None) -> None:
        self.previous = seed or ""
        self.sign_chunk = sign_chunk
        self.sign_trailer = sign_trailer
        self.trailers: dict[str, str] = {}
        self.done = False
        self.decoded = 0  # payload bytes so far
        self._buffer = bytearray()
        self._state = "head"
        self._left = 0  # bytes of the current chunk's data still to come
        self._claimed = ""  # its signature
        self._digest = hashlib.sha256()
        self._trailer_lines: list[bytes] = []
        self._trailer_signed = False

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        while self._buffer and not self.done:
            if self._state == "head":
                if not self._head():
                    break
            elif self._state == "data":
                take = min(self._left, len(self._buffer))
                piece = bytes(self._buffer[:take])
                del self._buffer[:take]
                self._left -= take
                self._digest.update(piece)
                if self._left == 0:
                    self._end_chunk()
                    self._state = "crlf"
                out.append(piece)  # a bad signature raised above: this piece is not handed on
                self.decoded += len(piece)
            elif self._state == "crlf":
                if len(self._buffer) < 2:
                    break
                if self._buffer[:2] != b"\r\n":
                    raise _malformed("a chunk's data does not end with CRLF")
                del self._buffer[:2]
                self._state = "head"
            elif self._state == "trailer" and not self._trailer():
                break
        return out

    def finish(self) -> None:
        """The body ended: it must have ended with its last chunk (and trailers)."""
        if not self.done:
            raise SignatureError("IncompleteBody", "the request body ended before its last "
                                 "chunk: the upload was cut off, nothing was stored", 400)

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE:
                raise _malformed("a chunk header is too long")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[:end + 2]
        return line

    def _head(self) -> bool:
        line = self._line()
        if line is None:
            return False
        size_text, _, extension = line.decode("latin-1").partition(";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise _malformed(f"a chunk's size {size_text!r} is not hexadecimal") from None
        name, _, value = extension.partition("=")
        self._claimed = value.strip() if name.strip() == "chunk-signature" else ""
        if self.sign_chunk is not None and not self._claimed:
            raise SignatureError("SignatureDoesNotMatch", "a chunk of a signed streaming "
                                 "upload carries no chunk-signature")
        self._digest = hashlib.sha256()
        if size == 0:
            self._end_chunk()
            self._state = "trailer"
        else:
            self._left, self._state = size, "data"
        return True

    def _end_chunk(self) -> None:
        if self.sign_chunk is None:
            return
        expected = self.sign_chunk(self.previous, self._digest.hexdigest())
        if expected != self._claimed:
            raise SignatureError("SignatureDoesNotMatch", "a chunk's signature does not "
                                 "match its data: the upload was changed on its way")
        self.previous = expected

    def _trailer(self) -> bool:
        line = self._line()
        if line is None:
            return False
        if line:
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "x-amz-trailer-signature":
                self._check_trailer(value.strip())
            else:
                self._trailer_lines.append(line + b"\n")
                self.trailers[name.strip().lower()] = value.strip()
            return True
        self.done = True  # the empty line after the trailers
        if self.sign_trailer is not None and self.trailers and not self._trailer_signed:
            raise SignatureError("SignatureDoesNotMatch", "the trailing checksum of a signed "
                                 "upload carries no x-amz-trailer-signature")
        return True

    def _check_trailer(self, claimed: str) -> None:
        if self.sign_trailer is None:
            return
        digest = hashlib.sha256(b"".join(self._trailer_lines)).hexdigest()
        if self.sign_trailer(self.previous, digest) != claimed:
            raise SignatureError("SignatureDoesNotMatch",
                                 "the upload's trailing checksum's signature does not match")
        self._trailer_signed = True


def _malformed(why: str) -> SignatureError:
    return SignatureError("IncompleteBody", f"the aws-chunked body is malformed: {why}", 400)
