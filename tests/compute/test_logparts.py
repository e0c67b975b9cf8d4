"""A running job's log shipped to storage in parts, and read back from any offset: on a real
local folder and on an S3 stand-in (moto's server), as the control planes use them."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from cumulo.compute import logparts
from cumulo.compute.logparts import PartReader
from cumulo.storage.backends import Backend
from tests.services import S3Server

JOB, ATTEMPT = "job-0123abcd", 2


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        from cumulo.storage.backends.local import LocalBackend

        backend: Backend = LocalBackend(tmp_path / "storage")
    else:
        from cumulo.config import S3Settings
        from cumulo.storage.backends.s3 import S3Backend

        s3: S3Server = request.getfixturevalue("s3")
        backend = S3Backend(s3.create_bucket("logs" + uuid.uuid4().hex[:8]), S3Settings(
            endpoint_url=s3.endpoint, access_key_id="testing", secret_access_key="testing"),
            spool=tmp_path / "spool")
    backend.check()
    return backend


def _write(path: Path, data: bytes) -> int:
    with path.open("ab") as f:
        f.write(data)
    return path.stat().st_size


def _read_all(reader: PartReader, size: int = 7) -> bytes:
    out = b""
    while chunk := reader.read(size):
        out += chunk
    return out


def _ship(storage: Backend, log: Path, start: int, **kw: int) -> int:
    return logparts.ship(storage, log, JOB, ATTEMPT, start, upto=log.stat().st_size, **kw)


def test_a_growing_log_is_shipped_in_parts_and_read_from_any_offset(storage: Backend,
                                                                     tmp_path: Path) -> None:
    log = tmp_path / "attempt-2.log"
    whole = b"".join(f"line {i:02d}\n".encode() for i in range(40))  # 320 bytes
    _write(log, whole[:30])
    shipped = _ship(storage, log, 0, part_max=100)
    assert shipped == 30
    assert _ship(storage, log, shipped, part_max=100) == 30  # nothing new: nothing stored
    follower = PartReader(storage, JOB, ATTEMPT)
    assert _read_all(follower) == whole[:30]
    # A burst: several parts of at most part_max, at most max_parts of them per ship.
    _write(log, whole[30:])
    shipped = _ship(storage, log, shipped, part_max=100, max_parts=2)
    assert shipped == 230
    assert logparts.parts(storage, JOB, ATTEMPT) == [(0, 30), (30, 100), (130, 100)]
    assert _read_all(follower) == whole[30:230]  # the follower goes on where it was
    assert _read_all(follower) == b""
    assert _ship(storage, log, shipped, part_max=100, max_parts=2) == 320
    assert _read_all(follower) == whole[230:]
    assert follower.offset == 320
    # Readers from any offset: the start, inside a part, at a part's start, at and past the end.
    for offset in (0, 1, 29, 30, 31, 129, 130, 200, 230, 319, 320, 400):
        reader = PartReader(storage, JOB, ATTEMPT, offset)
        assert _read_all(reader, size=64) == whole[offset:], offset
        reader.close()
    follower.close()


def test_shipping_goes_on_from_what_is_stored(storage: Backend, tmp_path: Path) -> None:
    """A control plane taking a job over (or trying again after a storage error) knows
    nothing of what was shipped: it asks storage where the parts end, and ships from there."""
    log = tmp_path / "attempt-2.log"
    assert logparts.stored_end(storage, JOB, ATTEMPT) == 0
    _write(log, b"x" * 150)
    _ship(storage, log, 0, part_max=64)
    _write(log, b"y" * 10)
    start = logparts.stored_end(storage, JOB, ATTEMPT)
    assert start == 150
    assert _ship(storage, log, start) == 160
    assert [p[0] for p in logparts.parts(storage, JOB, ATTEMPT)] == [0, 64, 128, 150]
    assert _read_all(PartReader(storage, JOB, ATTEMPT, 140)) == b"x" * 10 + b"y" * 10


def test_an_ended_attempts_parts_are_gathered_then_dropped(storage: Backend,
                                                          tmp_path: Path) -> None:
    """What was shipped of an attempt whose machine is gone becomes its log; the parts are
    removed once the whole log is stored, and a reader then finds none."""
    log = tmp_path / "attempt-2.log"
    data = bytes(range(256)) * 3
    _write(log, data)
    _ship(storage, log, 0, part_max=200)
    gathered = tmp_path / "gathered.log"
    assert logparts.gather(storage, JOB, ATTEMPT, gathered)
    assert gathered.read_bytes() == data
    logparts.drop(storage, JOB, ATTEMPT)
    assert logparts.parts(storage, JOB, ATTEMPT) == []
    assert not logparts.gather(storage, JOB, ATTEMPT, tmp_path / "none.log")
    assert not (tmp_path / "none.log").exists()
    assert PartReader(storage, JOB, ATTEMPT).read(10) == b""
    assert PartReader(storage, JOB, ATTEMPT, 300).read(10) == b""


def test_part_keys_sort_by_offset() -> None:
    keys = [logparts.part_key(JOB, 1, n) for n in (0, 9, 10, 2**40)]
    assert keys == sorted(keys)
    assert keys[1] == f"jobs/{JOB}/logs/attempt-1.parts/0000000000000009"
