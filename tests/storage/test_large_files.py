"""A 2 GB object moves through the server in bounded memory (the issue's limit: 200 MB)."""

from __future__ import annotations

import hashlib
import io
import os
import uuid

import pytest

from tests.services import Cumulo

SIZE = 2 * 2**30
LIMIT_MB = 200


class _Generated(io.RawIOBase):
    """2 GB of non-repeating-per-chunk bytes, made on the fly so the test holds none of it."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = os.urandom(1 << 20)
        self.digest = hashlib.sha256()
        self.n = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        take = min(self.left, len(self.block), size if size > 0 else len(self.block))
        self.n += 1
        chunk = self.n.to_bytes(8, "little") + self.block[8:take] if take >= 8 else \
            self.block[:take]
        self.left -= take
        self.digest.update(chunk)
        return chunk


class _Sink(io.RawIOBase):
    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.digest.update(b)
        self.size += len(b)
        return len(b)


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_two_gigabytes_up_and_down_in_bounded_server_memory(local_server: Cumulo) -> None:
    files = local_server.client().files
    bucket = "big-" + uuid.uuid4().hex[:8]
    files.create_bucket(bucket)
    source = _Generated(SIZE)
    info = files.upload(source, f"{bucket}/two-gb.bin")  # type: ignore[arg-type]
    assert info.size == SIZE and info.sha256 == source.digest.hexdigest()

    sink = _Sink()
    files.download(f"{bucket}/two-gb.bin", sink)  # type: ignore[arg-type]
    assert sink.size == SIZE and sink.digest.hexdigest() == info.sha256

    peak = _peak_rss_mb(local_server.proc.pid)
    assert peak < LIMIT_MB, f"server peaked at {peak:.0f} MB moving 2 GB"
    files.delete_bucket(bucket, recursive=True)
