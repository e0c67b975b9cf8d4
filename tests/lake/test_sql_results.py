"""Where SQL results live: in the storage, under ``sql/results/``, served by any control plane
on the same database and storage, and pruned by the history's times."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy.orm import Session

from cumulo.errors import NotFound
from cumulo.lake import results, sql
from cumulo.lake.models import SqlQuery
from cumulo.principal import Principal
from cumulo.storage.backends.local import LocalBackend
from tests.conftest import backend_env
from tests.services import S3Server, start_cumulo


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[tuple[Session, LocalBackend]]:
    """In process: a fresh database with its admin, and a storage folder."""
    from cumulo.access.models import User
    from cumulo.db import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    with Session(engine) as session:
        session.add(User(id=1, name="admin", is_admin=True))
        session.commit()
        yield session, LocalBackend(tmp_path / "storage")
    engine.dispose()


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()  # type: ignore[no-any-return]


def test_results_are_kept_by_key_and_pruned_by_the_history(
        lake: tuple[Session, LocalBackend], tmp_path: Path) -> None:
    session, backend = lake
    outcome = sql.run(session, backend, Principal(1, "admin", True, 1),
                      "select range as n from range(5)", results_dir=tmp_path / "results")
    q = outcome.query
    key = f"sql/results/{q.id}.parquet"
    assert q.result_location == key == outcome.result_key  # a storage key, not a path
    path = outcome.result_path
    assert path is not None and path == backend.local_path(key) and path.is_file()
    assert _rows(results.read_page(backend, key, offset=3, limit=10)) == [{"n": 3}, {"n": 4}]
    assert q.finished_at is not None

    # A row of an older version: its result is a file of the home, read while it is there.
    legacy = tmp_path / "results" / "0123456789abcdef.parquet"
    pq.write_table(pa.table({"n": [7]}), legacy)
    old = SqlQuery(id=legacy.stem, sql="select 7 as n", state="succeeded", rows=1,
                   created_at=q.created_at, finished_at=q.finished_at,
                   result_location=str(legacy))
    # Still running (no finish time): it counts from its start.
    running = SqlQuery(id="fedcba9876543210", sql="select 1", state="running",
                       created_at=q.created_at)
    session.add_all([old, running])
    session.commit()
    assert _rows(results.read_page(backend, str(legacy), offset=0, limit=5)) == [{"n": 7}]
    assert results.kept(old, q.finished_at)
    one = pa.RecordBatchReader.from_batches(pa.schema([("n", pa.int64())]), [])
    results.write(backend, running.id, one)
    results.write(backend, "no-such-query", one)  # no history row names it

    # 23 hours on, only the result no history row names goes; 25 hours on, all of them.
    assert results.prune(session, backend, legacy=legacy.parent,
                         now=q.finished_at + timedelta(hours=23)) == [
        "sql/results/no-such-query.parquet"]
    assert results.kept(q, q.finished_at + timedelta(hours=23))
    assert not results.kept(q, q.finished_at + timedelta(hours=25))
    gone = results.prune(session, backend, legacy=legacy.parent,
                         now=q.finished_at + timedelta(hours=25))
    assert sorted(gone) == sorted([str(legacy), key, results.key_for(running.id)])
    assert not legacy.exists() and not list(backend.walk(results.PREFIX))
    assert not results.kept(old, q.finished_at)  # its file is gone
    for location in (key, str(legacy)):
        with pytest.raises(NotFound, match="results of this query are gone; run it again"):
            results.read_page(backend, location, offset=0, limit=1)
        with pytest.raises(NotFound, match="gone"):
            results.stream(backend, location)


def test_results_in_s3(s3: S3Server, tmp_path: Path) -> None:
    """On an object store: pages read by range, downloads streamed, a missing result gone."""
    from cumulo.config import S3Settings
    from cumulo.storage.backends.s3 import S3Backend

    env = s3.env()
    backend = S3Backend(s3.create_bucket("results" + uuid.uuid4().hex[:8]), S3Settings(
        endpoint_url=env["CUMULO_S3_ENDPOINT_URL"], access_key_id="testing",
        secret_access_key="testing"), spool=tmp_path / "spool")
    n = pa.array(range(100_000))
    reader = pa.RecordBatchReader.from_batches(pa.schema([("n", pa.int64())]), [
        pa.record_batch([n.slice(0, 60_000)], names=["n"]),
        pa.record_batch([n.slice(60_000)], names=["n"])])
    key, rows = results.write(backend, "q1", reader)
    assert (key, rows) == ("sql/results/q1.parquet", 100_000)
    assert not list((tmp_path / "spool").iterdir())  # the spooled file went up, and away
    assert _rows(results.read_page(backend, key, offset=59_999, limit=2)) == [
        {"n": 59_999}, {"n": 60_000}]
    assert results.stream(backend, key).read_all().num_rows == 100_000
    backend.delete(key)
    with pytest.raises(NotFound, match="gone"):
        results.read_page(backend, key, offset=0, limit=1)


def test_a_query_run_on_one_control_plane_is_read_on_another(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Two servers on one PostgreSQL and one S3 bucket: the results of a query run through A
    are paged and downloaded through B."""
    env = backend_env("postgres+s3", request)
    a = start_cumulo(tmp_path / "a" / ".cumulo", env)
    try:
        b = start_cumulo(tmp_path / "b" / ".cumulo", env)
        try:
            # Two row groups: the page after the first is read from the second alone.
            ran = a.client().sql("select range as n from range(70000)", page_size=3)
            assert ran.page == [{"n": 0}, {"n": 1}, {"n": 2}]
            again = b.client().sql.result(ran.id, page_size=3)
            assert again.rows == 70000 and again.page == ran.page
            tail = httpx.get(f"{b.url}/api/v1/sql/queries/{ran.id}/results",
                             params={"offset": 69998, "limit": 5},
                             headers={"authorization": f"Bearer {b.token}"})
            assert tail.json()["rows"] == [{"n": 69998}, {"n": 69999}]
            saved = again.download(tmp_path / "out.csv", format="csv")
            lines = saved.read_text().splitlines()
            assert len(lines) == 70001 and lines[:2] == ['"n"', "0"] and lines[-1] == "69999"
            # A long query running on A is cancelled through B (the cancel goes to A).
            _cancel_through_the_other(a, b)
        finally:
            b.stop()
    finally:
        a.stop()


def _cancel_through_the_other(a, b) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time

    from cumulo.errors import CumuloError

    slow = "select sum(x.range * y.range) from range(200000) x, range(200000) y"
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(a.client().sql(slow, timeout_s=120))
        except CumuloError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    cb = b.client()
    deadline = time.monotonic() + 30
    running = []
    while not running:
        assert time.monotonic() < deadline, "the slow query never showed as running"
        running = [q for q in cb.sql.history(state="running") if q["sql"] == slow]
        time.sleep(0.1)
    assert cb.sql.cancel(running[0]["id"])["cancelled"] is True
    thread.join(60)
    assert not thread.is_alive()
    assert cb.sql.get(running[0]["id"])["state"] == "cancelled"


def test_a_query_whose_control_plane_is_gone_is_failed(tmp_path: Path) -> None:
    """A query left running by a control plane whose lease ran out never finishes: it is
    failed, saying so, when it is next looked at."""
    from sqlalchemy.orm import Session

    import cumulo.access.models  # noqa: F401 - users, whom queries name
    from cumulo.db import make_engine, upgrade, utcnow
    from cumulo.lake import sql
    from cumulo.lake.models import SqlQuery

    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    upgrade(engine)
    with Session(engine) as session:
        left = SqlQuery(id="q1", sql="select 1", state="running", owner="gone-plane",
                        created_at=utcnow())
        mine = SqlQuery(id="q2", sql="select 2", state="running", owner="live-plane",
                        created_at=utcnow())
        session.add_all([left, mine])
        session.commit()
        for q in (left, mine):
            sql.fail_orphaned(session, q, ["live-plane"])
        assert (left.state, left.error) == ("failed", sql.ORPHANED)
        assert mine.state == "running"
    engine.dispose()
