"""Several control planes on one database: each cron time of a monitor is claimed by one of
them, and two runs at once never cover the same captured requests (a real SQLite database,
two sessions standing for two control planes)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cumulo.db import make_engine, upgrade
from cumulo.errors import Conflict
from cumulo.serving.monitors.models import Monitor, MonitorRun
from cumulo.serving.monitors.runs import SETTLE, run_monitor
from cumulo.serving.monitors.scheduler import claim_time

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    made = sessionmaker(engine, expire_on_commit=False)
    with made() as session:
        session.add(Monitor(name="m", endpoint="gone", baseline="db.t@v0", features=[],
                            thresholds={}, report_table="monitoring.m_reports",
                            schedule="0 * * * *", last_at=T0))
        session.commit()
    yield made
    engine.dispose()


def test_each_cron_time_is_claimed_once(sessions: sessionmaker[Session]) -> None:
    with sessions() as one, sessions() as other:
        mine, theirs = one.scalar(select(Monitor)), other.scalar(select(Monitor))
        assert mine is not None and theirs is not None
        due = T0 + timedelta(hours=1)
        assert claim_time(one, mine, due) is True
        assert claim_time(other, theirs, due) is False  # read before the claim: refused
        assert one.scalar(select(Monitor.last_at)) == due


def test_two_runs_at_once_never_share_a_window(sessions: sessionmaker[Session]) -> None:
    now = T0 + timedelta(hours=1)
    with sessions() as one:
        mine = one.scalar(select(Monitor))
        assert mine is not None
        # A run claims its window, then fails (the user who made the monitor is gone): the
        # window is given back to the next run, so no captured request is skipped.
        run = run_monitor(one, None, mine, trigger="test", now=now)  # type: ignore[arg-type]
        assert (run.state, run.message) == ("failed", "the user who made monitor m was deleted")
        assert run.window_end == now - timedelta(seconds=SETTLE)
        assert one.scalar(select(Monitor.watermark)) is None
        assert "run 1 failed" in (one.scalar(select(Monitor.message)) or "")
    with sessions() as one, sessions() as other:
        mine, theirs = one.scalar(select(Monitor)), other.scalar(select(Monitor))
        assert mine is not None and theirs is not None
        # One moves the watermark on (as a run claiming its window does); the other, which
        # read the monitor before, is refused and writes nothing.
        one.execute(Monitor.__table__.update().values(  # type: ignore[attr-defined]
            watermark=now - timedelta(seconds=SETTLE)))
        one.commit()
        before = other.scalar(select(func.count()).select_from(MonitorRun))
        with pytest.raises(Conflict, match="running already"):
            run_monitor(other, None, theirs, trigger="test", now=now)  # type: ignore[arg-type]
        assert other.scalar(select(func.count()).select_from(MonitorRun)) == before
