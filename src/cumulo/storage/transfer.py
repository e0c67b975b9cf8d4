"""Streaming bodies in and out of the server in bounded memory."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from anyio import to_thread
from starlette.requests import ClientDisconnect, Request

from cumulo.errors import Invalid, Unavailable
from cumulo.httplimits import lift_body_limit
from cumulo.storage.leftovers import marked

__all__ = ["CHUNK", "join_files", "read_range", "spool_body", "write_batched", "write_hashed"]

CHUNK = 1 << 20
# Small socket reads are gathered into one write: fewer system calls, the same bytes.
_WRITE_BATCH = 4 << 20


async def spool_body(request: Request, spool_dir: Path) -> tuple[Path, int, str]:
    """Write the request body to a new temporary file; return (path, size, sha256).

    Hashing and writing run in a worker thread while the event loop goes on receiving the
    next batch, so the two overlap; at most two batches are held at once. A body that stops
    short of its Content-Length, or a client that goes away, leaves nothing behind: the
    temporary file is removed and Invalid is raised.
    """
    lift_body_limit(request)  # streamed to disk, by a caller its route has checked
    expected = request.headers.get("content-length")
    want = int(expected) if expected and expected.isdigit() else None
    # Named for this process: a server starting beside a live one removes only the uploads
    # of processes that ended (cumulo.storage.leftovers).
    fd, name = tempfile.mkstemp(dir=spool_dir, prefix=marked("upload"))
    tmp = Path(name)
    digest = hashlib.sha256()
    size = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            yield chunk

    try:
        with os.fdopen(fd, "wb", buffering=0) as out:
            await write_batched(counted(), lambda chunks: _write(out, [digest], chunks),
                                batch=_WRITE_BATCH)
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


async def write_batched(chunks: AsyncIterator[bytes], write: Callable[[list[bytes]], None],
                        *, batch: int) -> None:
    """Hand ``chunks`` to ``write`` in a worker thread, gathered into batches of about
    ``batch`` bytes: one batch is written (and hashed) while the event loop receives the next,
    so at most two are held. If anything fails, the batch in flight is waited for before the
    error goes on (so the caller may remove the file under it)."""
    loop = asyncio.get_running_loop()
    in_flight: asyncio.Future[None] | None = None
    pending: list[bytes] = []
    pending_size = 0
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= batch:
                if in_flight is not None:
                    await in_flight
                in_flight = loop.run_in_executor(None, write, pending)
                pending, pending_size = [], 0
        if in_flight is not None:
            await in_flight
            in_flight = None
        if pending:
            await loop.run_in_executor(None, write, pending)
    except BaseException:
        if in_flight is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(in_flight)
        raise


def write_hashed(out: BinaryIO, hashers: Sequence[Any], chunks: list[bytes]) -> None:
    """Write ``chunks`` to ``out`` as one buffer, each hasher updated with it."""
    _write(out, hashers, chunks)


def _write(out: BinaryIO, hashers: Sequence[Any], chunks: list[bytes]) -> None:
    data = b"".join(chunks) if len(chunks) > 1 else chunks[0]
    # Hashing and writing release the GIL on large buffers, so the event loop keeps reading.
    for hasher in hashers:
        hasher.update(data)
    view = memoryview(data)
    while view:
        written = out.write(view)
        view = view[written or 0 :]


def join_files(pieces: Sequence[tuple[Path, int, int]], out: int | None,
               hashers: Sequence[Any]) -> int:
    """Append ``pieces`` (a file, the offset and the length of the bytes wanted from it), in
    order, to the open file descriptor ``out`` and feed their bytes to ``hashers``; return the
    bytes joined. ``out`` None: only hash them.

    The copy is the kernel's (``copy_file_range``: no bytes through Python) in a second
    thread, while this one reads the same bytes again, from the page cache, to hash them:
    the two run on two cores where a read-hash-write loop ran on one.
    """

    def copy(target: int) -> int:
        copied = 0
        for path, offset, length in pieces:
            with open(path, "rb") as src:
                left, at = length, offset
                while left > 0:
                    n = _copy_range(src.fileno(), target, left, at)
                    if n == 0:
                        break
                    left, at, copied = left - n, at + n, copied + n
        return copied

    hashed = 0
    buffer = bytearray(8 * CHUNK)
    view = memoryview(buffer)
    with ThreadPoolExecutor(1, thread_name_prefix="join") as pool:
        copying = pool.submit(copy, out) if out is not None else None
        try:
            for path, offset, length in pieces:
                with open(path, "rb", buffering=0) as src:
                    src.seek(offset)
                    left = length
                    while left > 0 and (n := src.readinto(view[:min(left, len(buffer))])):
                        for hasher in hashers:
                            hasher.update(view[:n])
                        hashed += n
                        left -= n
        finally:
            copied = copying.result() if copying is not None else hashed
    want = sum(length for _, _, length in pieces)
    if copied != want or hashed != want:
        raise OSError(f"joined {copied} and read {hashed} bytes of {want}: a piece is shorter "
                      "than recorded")
    return copied


# copy_file_range's answers where the kernel cannot copy between these two files.
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


def _copy_range(src: int, out: int, count: int, offset: int) -> int:
    """Copy up to ``count`` bytes from ``src`` at ``offset`` to ``out`` (at its position) in
    the kernel; a plain read and write where the system has no copy_file_range for them."""
    copy_file_range = getattr(os, "copy_file_range", None)
    if copy_file_range is not None:
        try:
            return int(copy_file_range(src, out, count, offset))
        except OSError as exc:
            if exc.errno not in _NO_KERNEL_COPY:
                raise
    data = os.pread(src, min(count, 8 * CHUNK), offset)
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]
    return len(data)


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
