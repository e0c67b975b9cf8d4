"""The in-place assembly of multipart uploads (storage/s3api/assembly.py), on a real disk;
tests/storage/test_s3api.py drives it through boto3."""

from __future__ import annotations

from pathlib import Path

import pytest

from cumulo.storage.s3api.assembly import Assembly
from cumulo.storage.s3api.errors import S3Error


def test_places_are_taken_once_at_the_first_parts_stride(tmp_path: Path) -> None:
    a = Assembly(tmp_path / "up")
    assert a.stride() is None
    assert a.claim(3, 8) == 16  # the first part to come fixes the stride, whatever its number
    assert a.stride() == 8
    assert a.claim(1, 8) == 0
    assert a.claim(2, 5) == 8  # shorter fits (the last part, or a client's odd size)
    assert a.claim(4, 9) is None  # longer does not: stored on its own
    assert a.claim(3, 8) is None  # a place is never written twice
    assert a.claim(5, None) is None and a.claim(6, 0) is None  # unknown length, or empty
    assert a.holds(1) and a.holds(3) and not a.holds(4)
    # whole: 1, 2, 3, ... in place, all the stride but the last
    assert a.whole([(1, 8), (2, 8), (3, 3)], {1, 2, 3})
    assert not a.whole([(1, 8), (2, 5), (3, 8)], {1, 2, 3})  # a short part in the middle
    assert not a.whole([(1, 8), (3, 8)], {1, 3})  # a gap
    assert not a.whole([(1, 8), (2, 8)], {1})  # part 2 has a newer copy of its own
    assert not a.whole([], set())


def test_writers_and_completion_exclude_each_other(tmp_path: Path) -> None:
    a = Assembly(tmp_path / "up")
    at = a.claim(1, 4)
    assert at == 0
    writer = a.open_writer(at)
    writer.write(b"abcd")
    with pytest.raises(S3Error) as caught:  # a part is still being written
        a.detach(tmp_path / "object", 4, wait=0.2)
    assert caught.value.code == "SlowDown" and caught.value.status == 503
    assert caught.value.headers["retry-after"]
    writer.close()
    a.detach(tmp_path / "object", 3)
    assert (tmp_path / "object").read_bytes() == b"abc"  # cut to the completed size
    with pytest.raises(S3Error) as caught:  # completed: nothing more lands in it
        a.open_writer(0)
    assert caught.value.code == "NoSuchUpload"
    with pytest.raises(S3Error):  # a second completion finds it taken
        a.detach(tmp_path / "again", 3)
    a.attach(tmp_path / "object")  # a failed completion puts it back
    assert a.path.read_bytes() == b"abc"
