"""Several control planes on one database: each cron time of a monitor is claimed by one of
them, two runs at once never cover the same captured requests, and a run whose job ended is
recorded once, by whichever control plane claims it (a real SQLite database, two sessions
standing for two control planes; the job rows are written here as the supervisor writes them,
the job's output as it leaves it in storage)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cumulo.compute.models import Job
from cumulo.db import make_engine, upgrade
from cumulo.errors import Conflict
from cumulo.serving.monitors.models import Monitor, MonitorRun
from cumulo.serving.monitors.runs import OUTPUT, SETTLE, finish_runs, start_run
from cumulo.serving.monitors.scheduler import claim_time, fail_orphans
from cumulo.storage.backends.local import LocalBackend

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
        run = start_run(one, None, mine, trigger="test", now=now)  # type: ignore[arg-type]
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
            start_run(other, None, theirs, trigger="test", now=now)  # type: ignore[arg-type]
        assert other.scalar(select(func.count()).select_from(MonitorRun)) == before


def _running(session: Session, job_state: str, output: bytes | None,
             storage: LocalBackend) -> MonitorRun:
    """A run whose job (in ``job_state``) left ``output`` as its monitor.json."""
    now = T0 + timedelta(hours=1)
    session.execute(Monitor.__table__.update().values(  # type: ignore[attr-defined]
        watermark=now - timedelta(seconds=SETTLE)))
    run = MonitorRun(monitor_id=1, trigger="test", state="running", owner="gone",
                     started_at=now, window_start=T0,
                     window_end=now - timedelta(seconds=SETTLE), rows=0, figures=[],
                     breaches=[], job_id="job-1")
    session.add(Job(id="job-1", name="monitor m", cluster="local", state=job_state,
                    command=["python"], cpus=1.0, reason="exited with code 2",
                    log_tail="reading\nmonitor run failed: boom\n"))
    session.add(run)
    session.commit()
    if output is not None:
        path = storage.root / "jobs" / "job-1" / "outputs" / OUTPUT
        path.parent.mkdir(parents=True)
        path.write_bytes(output)
    return run


def test_a_run_is_recorded_once_when_its_job_ends(sessions: sessionmaker[Session],
                                                  tmp_path: Path) -> None:
    storage = LocalBackend(tmp_path / "storage")
    with sessions() as one:
        run = _running(one, "running", None, storage)
        # Its control plane stopped: the run is left for whoever sees its job end.
        fail_orphans(one)
        assert one.scalar(select(MonitorRun.state)) == "running"
        assert finish_runs(one, storage) == []  # the job still runs
        one.execute(Job.__table__.update().values(state="failed"))  # type: ignore[attr-defined]
        one.commit()
        path = storage.root / "jobs" / "job-1" / "outputs" / OUTPUT
        path.parent.mkdir(parents=True)
        path.write_text('{"error": "table sales.customers has no version 9"}')
    with sessions() as one, sessions() as other:
        assert finish_runs(one, storage, owner="a") == [run.id]
        assert finish_runs(other, storage, owner="b") == []  # recorded already
        done = other.get(MonitorRun, run.id)
        assert done is not None and done.state == "failed"
        assert done.message == "table sales.customers has no version 9"
        # Its window is given back to the next run.
        assert other.scalar(select(Monitor.watermark)) == T0
        assert "run 1 failed: table sales" in (other.scalar(select(Monitor.message)) or "")


def test_a_job_that_left_nothing_fails_its_run_with_its_log(sessions: sessionmaker[Session],
                                                            tmp_path: Path) -> None:
    storage = LocalBackend(tmp_path / "storage")
    with sessions() as one:
        run = _running(one, "failed", None, storage)
        assert finish_runs(one, storage, run_id=run.id) == [run.id]
        one.expire_all()
        done = one.get(MonitorRun, run.id)
        assert done is not None and done.state == "failed"
        assert done.message == ("its job job-1 failed (exited with code 2): "
                                "monitor run failed: boom")


def test_an_empty_window_succeeds_with_no_report(sessions: sessionmaker[Session],
                                                 tmp_path: Path) -> None:
    storage = LocalBackend(tmp_path / "storage")
    with sessions() as one:
        run = _running(one, "succeeded", b'{"rows": 0, "figures": [], "reference": null}',
                       storage)
        assert finish_runs(one, storage) == [run.id]
        one.expire_all()
        done = one.get(MonitorRun, run.id)
        assert done is not None and (done.state, done.rows) == ("succeeded", 0)
        assert done.message == "no answered requests were captured in the window"
        assert done.report_version is None
        assert one.scalar(select(Monitor.watermark)) == done.window_end  # kept: covered


def test_a_run_left_halfway_by_a_stopped_plane_is_failed(sessions: sessionmaker[Session],
                                                         tmp_path: Path) -> None:
    with sessions() as one:
        now = T0 + timedelta(hours=1)
        one.add_all([MonitorRun(monitor_id=1, trigger="t", state=state, owner="gone",
                                started_at=now, window_end=now, rows=0, figures=[],
                                breaches=[]) for state in ("running", "recording")])
        one.commit()
        fail_orphans(one)
        assert set(one.scalars(select(MonitorRun.state))) == {"failed"}
