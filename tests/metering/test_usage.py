"""Pricing and summing usage records."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from cumulo.config import Prices
from cumulo.db import make_engine, upgrade
from cumulo.errors import Invalid
from cumulo.metering import usage


def test_price_is_per_hour_of_each_resource() -> None:
    prices = Prices(vcpu_hour=0.04, gb_hour=0.01, gpu_hour=1.0)
    assert usage.price(prices, cpu_seconds=3600, memory_gb_seconds=0, gpu_seconds=0) == 0.04
    assert usage.price(prices, cpu_seconds=1800, memory_gb_seconds=7200,
                       gpu_seconds=360) == pytest.approx(0.02 + 0.02 + 0.1)


def test_summaries(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    prices = Prices(vcpu_hour=36.0, gb_hour=0.0, gpu_hour=0.0)  # one cent per CPU-second
    with Session(engine) as session:
        for day, cluster, tags, cpu in [(1, "local", ["a"], 10), (1, "ray", ["a", "b"], 20),
                                        (2, "local", [], 30)]:
            when = datetime(2026, 11, day, 12, tzinfo=UTC)
            usage.record(session, prices, kind="job", ref=f"j{day}{cluster}", cluster=cluster,
                         user_id=None, tags=tags, started_at=when, ended_at=when,
                         cpu_seconds=cpu, memory_gb_seconds=0, gpu_seconds=0, wall_seconds=1)
        session.commit()
        by_day = usage.summarize(session, by="day")
        assert [(r["day"], r["cost_usd"]) for r in by_day["rows"]] == [
            ("2026-11-01", 0.3), ("2026-11-02", 0.3)]
        assert by_day["total"]["cost_usd"] == pytest.approx(0.6)
        by_tag = usage.summarize(session, by="tag")
        assert {r["tag"]: r["count"] for r in by_tag["rows"]} == {"(untagged)": 1, "a": 2, "b": 1}
        by_cluster = usage.summarize(session, by="cluster", since="2026-11-02")
        assert [(r["cluster"], r["cpu_seconds"]) for r in by_cluster["rows"]] == [("local", 30)]
        until = usage.summarize(session, by="kind", until="2026-11-01")
        assert until["rows"] == [{"kind": "job", "cpu_seconds": 30, "memory_gb_seconds": 0,
                                  "gpu_seconds": 0, "wall_seconds": 2, "cost_usd": 0.3,
                                  "count": 2}]
        with pytest.raises(Invalid, match="is not a time: use a date like"):
            usage.summarize(session, since="yesterday")
    engine.dispose()


def test_quantities_show_only_where_records_have_them(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    prices = Prices(vcpu_hour=36.0, gb_hour=0.0, gpu_hour=0.0, shard_hour=1.0,
                    million_put_units=1e6)  # a dollar a shard-hour and a dollar a PUT unit
    when = datetime(2026, 11, 1, 12, tzinfo=UTC)
    with Session(engine) as session:
        usage.record(session, prices, kind="job", ref="j1", cluster="local", user_id=None,
                     tags=[], started_at=when, ended_at=when, cpu_seconds=10,
                     memory_gb_seconds=0, gpu_seconds=0, wall_seconds=1)
        row = usage.record(session, prices, kind="stream", ref="clicks", cluster=None,
                           user_id=None, tags=[], started_at=when, ended_at=when,
                           quantities={"shard_hours": 2.0, "put_units": 3})
        assert row.cost_usd == pytest.approx(5.0)
        with pytest.raises(ValueError, match="have no price"):
            usage.record(session, prices, kind="stream", ref="x", cluster=None, user_id=None,
                         tags=[], started_at=when, ended_at=when, quantities={"bytes": 1.0})
        session.commit()
        by_kind = usage.summarize(session, by="kind")
        job, stream = by_kind["rows"]
        assert "shard_hours" not in job and "put_units" not in job
        assert (stream["shard_hours"], stream["put_units"], stream["cost_usd"]) == (2.0, 3, 5.0)
        assert by_kind["total"]["put_units"] == 3
        assert by_kind["total"]["cost_usd"] == pytest.approx(5.1)
        jobs = usage.summarize(session, by="kind", kind="job")
        assert "shard_hours" not in jobs["total"]
    engine.dispose()


def test_stored_sizes_take_in_jobs_files_and_archived_stream_segments(tmp_path: Path) -> None:
    """What storage holds beyond buckets and tables: each job's folder, summed per owner
    (a job no longer on record counts with no owner), and each stream's archived segments."""
    from cumulo.compute.models import Job
    from cumulo.metering.sampler import sizes
    from cumulo.storage.backends.local import LocalBackend

    storage = LocalBackend(tmp_path / "storage")
    for key, size in (("jobs/job-a/log.txt", 100), ("jobs/job-a/outputs/m.bin", 900),
                      ("jobs/job-b/log.txt", 50), ("jobs/job-gone/log.txt", 7),
                      ("streams/clicks/shardId-000000000000/00000001.arc", 4000),
                      ("streams/clicks/shardId-000000000001/00000001.arc", 1000)):
        path = storage.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    with Session(engine) as session:
        session.add_all([Job(id=job_id, name="j", cluster="local", state="succeeded",
                             command=["true"], cpus=1.0, created_by=None, project_id=project)
                         for job_id, project in (("job-a", 3), ("job-b", 3))])
        session.commit()
        found = sizes(session, storage)
    engine.dispose()
    assert sorted(f for f in found if f[0] == "jobs:files") == [
        ("jobs:files", 7, None, None), ("jobs:files", 1050, None, 3)]
    assert ("stream:clicks", 5000, None, None) in found
