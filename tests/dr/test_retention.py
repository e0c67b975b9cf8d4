"""Retention: which backups a policy keeps (pure, with made-up times), and a prune that frees
only the pieces no kept backup names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cumulo.dr.backup import prune_backups, retained
from cumulo.dr.repo import open_repository
from cumulo.errors import Invalid


def _times(hours: list[float]) -> dict[str, datetime]:
    start = datetime(2026, 11, 2, 0, 30, tzinfo=UTC)  # a Monday
    return {f"b{i:02d}": start + timedelta(hours=h) for i, h in enumerate(hours)}


def test_keep_last_daily_weekly() -> None:
    # Two backups a day for 15 days.
    created = _times([d * 24 + h for d in range(15) for h in (1, 13)])
    ids = sorted(created)
    assert retained(ids, created, keep_last=3) == set(ids[-3:])
    daily = retained(ids, created, keep_daily=7)
    assert daily == {ids[-1 - 2 * k] for k in range(7)}  # each day's later one, 7 days
    weekly = retained(ids, created, keep_weekly=4)
    # Three ISO weeks hold backups (Nov 2-8, 9-15, 16): the newest of each.
    assert weekly == {ids[-1], ids[2 * 13 + 1], ids[2 * 6 + 1]}
    both = retained(ids, created, keep_daily=2, keep_weekly=2)
    assert both == {ids[-1], ids[-3], ids[2 * 13 + 1]}


def test_prune_frees_only_what_no_kept_backup_names(tmp_path: Path) -> None:
    repo = open_repository(tmp_path / "r", create=True)
    shared, _ = repo.put(b"in every backup")
    only_old, _ = repo.put(b"only in the old one")
    orphan, _ = repo.put(b"left by a killed backup")
    for i, chunks in enumerate([[shared, only_old], [shared]]):
        repo.write_snapshot({"id": f"2026110{i + 1}T000000000Z-aaaaaa",
                             "created_at": f"2026-11-0{i + 1}T00:00:00+00:00",
                             "databases": {}, "files": [{"path": "x", "size": 1,
                                                         "mtime_ns": 0, "chunks": chunks}]})
    with pytest.raises(Invalid, match="say what to keep"):
        prune_backups(repo)
    dry = prune_backups(repo, keep_last=1, dry_run=True)
    assert dry.chunks_removed == 2 and len(repo.snapshot_ids()) == 2
    done = prune_backups(repo, keep_last=1)
    assert repo.snapshot_ids() == ["20261102T000000000Z-aaaaaa"]
    assert repo.has(shared) and not repo.has(only_old) and not repo.has(orphan)
    assert done.bytes_freed > 0
