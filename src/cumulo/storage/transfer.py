"""Streaming bodies in and out of the server in bounded memory."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from anyio import to_thread
from starlette.requests import ClientDisconnect, Request

from cumulo.errors import Invalid, Unavailable

__all__ = ["CHUNK", "read_range", "spool_body"]

CHUNK = 1 << 20
# Small socket reads are gathered into one write: fewer system calls, the same bytes.
_WRITE_BATCH = 4 << 20


async def spool_body(request: Request, spool_dir: Path) -> tuple[Path, int, str]:
    """Write the request body to a new temporary file; return (path, size, sha256).

    A body that stops short of its Content-Length, or a client that goes away, leaves nothing
    behind: the temporary file is removed and Invalid is raised.
    """
    expected = request.headers.get("content-length")
    want = int(expected) if expected and expected.isdigit() else None
    fd, name = tempfile.mkstemp(dir=spool_dir, prefix="upload-")
    tmp = Path(name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb", buffering=0) as out:
            pending: list[bytes] = []
            pending_size = 0
            async for chunk in request.stream():
                if not chunk:
                    continue
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _WRITE_BATCH:
                    await to_thread.run_sync(_write, out, digest, pending)
                    size += pending_size
                    pending, pending_size = [], 0
            if pending:
                await to_thread.run_sync(_write, out, digest, pending)
                size += pending_size
    except ClientDisconnect as exc:
        tmp.unlink(missing_ok=True)
        raise Invalid(
            f"the upload was cut off after {size} bytes"
            + (f" of {want}" if want is not None else "")
            + "; nothing was stored"
        ) from exc
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise Unavailable(f"cannot write the upload to storage: {exc.strerror}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if want is not None and size != want:
        tmp.unlink(missing_ok=True)
        raise Invalid(f"the upload sent {size} bytes but announced {want}; nothing was stored")
    return tmp, size, digest.hexdigest()


def _write(out: BinaryIO, digest: hashlib._Hash, chunks: list[bytes]) -> None:
    data = b"".join(chunks) if len(chunks) > 1 else chunks[0]
    # sha256 and write both release the GIL on large buffers, so the event loop keeps reading.
    digest.update(data)
    view = memoryview(data)
    while view:
        written = out.write(view)
        view = view[written or 0 :]


async def read_range(reader: BinaryIO, length: int) -> AsyncIterator[bytes]:
    """Yield ``length`` bytes from ``reader`` in chunks, reading in a worker thread."""
    try:
        left = length
        while left > 0:
            chunk = await to_thread.run_sync(reader.read, min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        await to_thread.run_sync(reader.close)
