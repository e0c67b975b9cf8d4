"""Multipart uploads assembled in place, on a local disk.

S3 clients send an upload's parts in one size, all but the last (boto3 and the aws command
8 MiB, rclone its chunk size, s3fs 50 MiB). Where the storage keeps blobs as local files, each
part is then written straight into its place in one file, the upload's *assembly*: part N at
(N - 1) x that size, the *stride*, which the first part to arrive fixes. Completing an upload
whose parts all sit in their places is a rename: the object's bytes are written once, as a
single PUT's are, instead of once as parts and again as the object.

A part that cannot take its place is stored on its own, as on any other backend: a part over
the stride, one of unknown length, or a part number sent a second time (its place is never
written twice, so a retried or failed part cannot damage one already stored). Completing an
upload with such a part joins the pieces (:func:`cumulo.storage.transfer.join_files`).

Files in the upload's folder, ``s3uploads/ID/`` (removed with it): ``stride`` (the part size,
decimal), ``assembly``, ``slot-NNNNN`` (part N's place was taken: written, or being written).

Writers and completion: a part being written holds a shared ``flock`` on the assembly;
completion takes it exclusively before it moves the assembly away, so no write lands in an
object once it is complete. A writer that opens the assembly after that finds it gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Container, Sequence
from pathlib import Path
from typing import BinaryIO

from cumulo.storage.backends import Backend
from cumulo.storage.s3api.errors import S3Error

__all__ = ["ASSEMBLY", "Assembly"]

ASSEMBLY = "assembly"
_STRIDE = "stride"


class Assembly:
    """The in-place parts of one multipart upload, in ``folder`` (its ``s3uploads/ID/``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / ASSEMBLY

    @classmethod
    def of(cls, storage: Backend, prefix: str) -> Assembly | None:
        """The assembly of the upload whose blobs are under ``prefix`` (``s3uploads/ID/``);
        None where the storage does not keep local files."""
        path = storage.local_path(prefix + ASSEMBLY)
        return cls(path.parent) if path is not None else None

    def stride(self) -> int | None:
        """The part size fixed by the first part, once one has come."""
        try:
            return int((self.folder / _STRIDE).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _fix_stride(self, length: int) -> int:
        """Fix the stride at ``length`` unless a part fixed it first; return it. The file is
        linked into place whole, so two first parts agree on one of their sizes."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.folder, prefix=".stride-")
        try:
            os.write(fd, str(length).encode())
            os.close(fd)
            with contextlib.suppress(FileExistsError):
                os.link(name, self.folder / _STRIDE)
        finally:
            os.unlink(name)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        stride = self.stride()
        assert stride is not None  # linked above, by this part or the one first
        return stride

    def claim(self, number: int, length: int | None) -> int | None:
        """Take part ``number``'s place for a body of ``length`` bytes; return the offset to
        write it at, or None when the part is to be stored on its own."""
        if not length:
            return None
        stride = self.stride() or self._fix_stride(length)
        if length > stride:
            return None
        try:
            os.close(os.open(self._slot(number), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            return None  # sent before: this one goes on its own, the first stays intact
        return (number - 1) * stride

    def _slot(self, number: int) -> Path:
        return self.folder / f"slot-{number:05d}"

    def holds(self, number: int) -> bool:
        """Whether part ``number`` was written in place (its own blob, if any, is newer)."""
        return self._slot(number).exists()

    def open_writer(self, offset: int) -> BinaryIO:
        """The assembly open for writing at ``offset``, under a shared lock that closing it
        releases; NoSuchUpload when the upload was completed (or aborted) meanwhile."""
        try:
            fd = os.open(self.path, os.O_WRONLY)
        except FileNotFoundError:
            raise _gone() from None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                still = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                still = False
            if not still:
                raise _gone()
            os.lseek(fd, offset, os.SEEK_SET)
            return os.fdopen(fd, "wb", buffering=0)
        except BaseException:
            os.close(fd)
            raise

    def whole(self, parts: Sequence[tuple[int, int]], placed: Container[int]) -> bool:
        """Whether parts ``(number, size)``, as chosen to complete the upload, are the
        assembly's first bytes as they lie: numbers 1, 2, 3, ... all ``placed`` (written in
        place, not stored again on their own since), each the stride long but the last
        (which may be shorter)."""
        stride = self.stride()
        if stride is None or not parts:
            return False
        for i, (number, size) in enumerate(parts):
            last = i == len(parts) - 1
            if number != i + 1 or number not in placed:
                return False
            if size != stride and not (last and size < stride):
                return False
        return True

    def detach(self, to: Path, size: int, *, wait: float = 30.0) -> None:
        """Move the assembly to ``to`` (on the same file system), cut to ``size`` bytes, once
        no part is being written into it. SlowDown when parts are still being written after
        ``wait`` seconds; NoSuchUpload when another completion took it first."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            raise _gone() from None
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise S3Error("SlowDown", "parts of this upload are still being "
                                      "written; complete it once they are done", 503,
                                      headers={"retry-after": "1"}) from None
                    time.sleep(0.05)
            try:
                os.rename(self.path, to)
            except FileNotFoundError:
                raise _gone() from None
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def attach(self, back: Path) -> None:
        """Put a detached assembly back (its completion failed: the upload goes on)."""
        with contextlib.suppress(FileNotFoundError, FileExistsError):
            os.link(back, self.path)


def _gone() -> S3Error:
    return S3Error("NoSuchUpload", "The specified multipart upload does not exist. The upload "
                   "ID may be invalid, or the upload may have been aborted or completed.", 404)
