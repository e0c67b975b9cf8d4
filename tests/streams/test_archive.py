"""Old segments of the embedded log moved to the storage backend (a real local one) and read
back; reopened after a restart; dropped by retention from storage too."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cumulo.config import load_settings
from cumulo.errors import Invalid
from cumulo.storage.backends.local import LocalBackend
from cumulo.streams.archive import SegmentArchive
from cumulo.streams.log import LogStore, ShardLog


def _records(n: int, start: int = 0) -> list[tuple[str, bytes, int]]:
    return [(f"k{i}", f"record-{i:04d}".encode() * 8, i) for i in range(start, start + n)]


def test_old_segments_move_to_storage_and_read_back(tmp_path: Path) -> None:
    storage = LocalBackend(tmp_path / "storage")
    archive = SegmentArchive(storage, tmp_path / "cache", after=0.0, keep=2)
    folder = tmp_path / "streams" / "clicks" / "shardId-000000000000"
    log = ShardLog(folder, segment_bytes=4096, archive=archive.shard("clicks",
                                                                      "shardId-000000000000"))
    for i in range(0, 300, 30):
        log.append(_records(30, i))
    segments = sorted(folder.glob("*.seg"))
    assert len(segments) > 4
    assert log.trim(0) == 0  # nothing is past retention; the sealed segments go to storage
    assert [p.name for p in folder.glob("*.seg")] == [segments[-1].name]  # the active one stays
    stored = sorted(b.key for b in storage.walk("streams/") if b.key.endswith(".seg"))
    assert stored == [f"streams/clicks/shardId-000000000000/{p.name}" for p in segments[:-1]]
    assert len(list(folder.glob("*.arc"))) == len(stored)  # their stubs, here and in storage
    expected = [(i + 1, f"k{i}") for i in range(300)]
    assert [(r.seq, r.key) for r in log.read(1)] == expected  # fetched back, through the cache
    assert len(list((tmp_path / "cache").rglob("*.seg"))) <= 2
    assert [r.seq for r in log.read(150, limit=3)] == [150, 151, 152]
    middle = log.read(100, limit=1)[0].arrived
    assert log.seq_at(middle) <= 100
    log.append(_records(5, 300))
    log.close()
    # A restart finds the archived segments from their stubs.
    again = ShardLog(folder, segment_bytes=4096,
                     archive=archive.shard("clicks", "shardId-000000000000"))
    assert [(r.seq, r.key) for r in again.read(1)][:300] == expected
    assert again.first_seq == 1 and again.next_seq == 306
    assert again.stats()["records"] == 305
    # A new home (a restored backup: storage, not the folder) finds them from storage's stubs.
    fresh = tmp_path / "restored" / "shardId-000000000000"
    restored = ShardLog(fresh, segment_bytes=4096,
                        archive=archive.shard("clicks", "shardId-000000000000"))
    got = [(r.seq, r.key) for r in restored.read(1)]
    assert got == expected[:len(got)] and len(got) > 250  # all but the active segment's
    assert restored.next_seq == len(got) + 1  # and appends go on after them
    restored.close()
    # Retention drops archived segments from storage too.
    again.trim(time.time() + 1)
    assert list(storage.walk("streams/")) == []
    assert not list(folder.glob("*.arc"))
    assert again.first_seq > 1
    assert [r.seq for r in again.read(1)] == list(range(again.first_seq, 306))
    again.close()


def test_dropping_a_stream_removes_its_archived_segments(tmp_path: Path) -> None:
    storage = LocalBackend(tmp_path / "storage")
    store = LogStore(tmp_path / "streams",
                     archive=SegmentArchive(storage, tmp_path / "cache", after=0.0))
    store.shard("s", "shardId-000000000000")  # the store's logs use 64 MiB segments: write
    log = ShardLog(tmp_path / "streams" / "s" / "shardId-000000000001", segment_bytes=1024,
                   archive=SegmentArchive(storage, tmp_path / "cache", after=0.0)
                   .shard("s", "shardId-000000000001"))
    log.append(_records(50))
    log.trim(0)
    assert list(storage.walk("streams/s/"))
    log.close()
    store.drop_stream("s")
    assert list(storage.walk("streams/")) == []
    assert not (tmp_path / "streams" / "s").exists()
    store.close()


def test_archive_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).stream_archive_seconds is None  # never, unless set
    assert load_settings({"CUMULO_STREAM_ARCHIVE_SECONDS": "3600"}).stream_archive_seconds == 3600
    with pytest.raises(Invalid, match="stream_archive_seconds must not be negative"):
        load_settings({"CUMULO_STREAM_ARCHIVE_SECONDS": "-1"})
