"""A 2 GB object moves through the server in bounded memory: streamed, never held. What the
server holds before the transfer (its code, and the lake's libraries once anything has been
audited or queried) is not the transfer's: the peak is measured from there (Linux resets a
process's peak when told to, /proc/PID/clear_refs); the transfer may add at most 100 MB."""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid

import pytest

from tests.services import Cumulo

SIZE = 2 * 2**30
GROWTH_MB = 100


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


def _rss_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field}")


@pytest.mark.slow
def test_two_gigabytes_up_and_down_in_bounded_server_memory(local_server: Cumulo) -> None:
    files = local_server.client().files
    bucket = "big-" + uuid.uuid4().hex[:8]
    files.create_bucket(bucket)
    pid = local_server.proc.pid
    time.sleep(3)  # the bucket's audit entry copied to the lake: its libraries loaded
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # the peak starts again from here
    before = _rss_mb(pid, "VmRSS")
    source = _Generated(SIZE)
    info = files.upload(source, f"{bucket}/two-gb.bin")  # type: ignore[arg-type]
    assert info.size == SIZE and info.sha256 == source.digest.hexdigest()

    sink = _Sink()
    files.download(f"{bucket}/two-gb.bin", sink)  # type: ignore[arg-type]
    assert sink.size == SIZE and sink.digest.hexdigest() == info.sha256

    peak = _rss_mb(pid, "VmHWM")
    print(f"server: {before:.0f} MB before, {peak:.0f} MB at the peak of moving 2 GB")
    assert peak - before < GROWTH_MB, (f"server grew from {before:.0f} MB to {peak:.0f} MB "
                                       "moving 2 GB")
    files.delete_bucket(bucket, recursive=True)
