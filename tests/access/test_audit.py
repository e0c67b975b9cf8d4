"""The audit log's logic: the hash chain, appends from threads and from other processes,
tampering found by verify, the copy in the lake table audit.events, and listing.

A real SQLite database and a real PostgreSQL (the chain's tests run on both), real Delta tables
under tmp_path, read back with deltalake and DuckDB."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake
from sqlalchemy import event, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from cumulo.access import audit
from cumulo.access.audit import GENESIS, AuditExporter, AuditLog, entry_hash, list_events, verify
from cumulo.access.models import AuditEvent, User
from cumulo.db import make_engine, upgrade, utcnow
from cumulo.errors import Invalid
from cumulo.logs import request_id
from cumulo.storage.backends.local import LocalBackend

Sessions = sessionmaker[Session]


def _url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'cumulo.db'}"
    return str(request.getfixturevalue("pg").create_database("a" + uuid.uuid4().hex[:12]))


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url(request.param, tmp_path, request)


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> Sessions:
    return sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def storage(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "storage")


def _fill(sessions: Sessions, n: int, **fields: Any) -> list[AuditEvent]:
    log = AuditLog(sessions)
    actions = ("tables:Write", "tables:Drop", "files:Get", "jobs:Submit")
    return [log.record(**{"user": f"user{i % 3}", "action": actions[i % 4],
                          "resource": f"thing/{i}", "outcome": ("allowed", "denied")[i % 2],
                          "source": "127.0.0.1", "details": {"i": i, "note": "é", "x": 1.5},
                          **fields})
            for i in range(n)]


def _sql(sessions: Sessions, statement: str, **params: Any) -> None:
    with sessions() as session:
        session.execute(text(statement), params)
        session.commit()


def _check(sessions: Sessions, storage: LocalBackend | None = None) -> audit.Report:
    with sessions() as session:
        return verify(session, storage=storage, batch=7)


def _lake(storage: LocalBackend) -> DeltaTable:
    return DeltaTable(storage.table_uri("lake/audit/events")[0])


def _lake_rows(storage: LocalBackend) -> list[dict[str, Any]]:
    return sorted(_lake(storage).to_pyarrow_table().to_pylist(), key=lambda r: r["seq"])


def _rows(sessions: Sessions) -> list[AuditEvent]:
    with sessions() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


# --- the chain ---------------------------------------------------------------------------------


def test_each_entry_is_chained_to_the_one_before(sessions: Sessions) -> None:
    made = _fill(sessions, 120)
    assert [e.seq for e in made] == list(range(1, 121))
    rows = _rows(sessions)
    prev = GENESIS
    for row in rows:  # the format, computed here independently of the module
        fields = {"at": row.at.astimezone(UTC).isoformat(timespec="microseconds"),
                  "user": row.user, "action": row.action, "resource": row.resource,
                  "outcome": row.outcome, "source": row.source, "request_id": row.request_id,
                  "details": row.details}
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False)
        assert row.prev_hash == prev
        assert row.hash == hashlib.sha256((prev + canonical).encode()).hexdigest()
        prev = row.hash
    assert made[-1].hash == rows[-1].hash  # the entry returned is readable after its session
    assert _check(sessions) == audit.Report(ok=True, entries=120)


def test_values_are_stored_as_they_were_hashed(sessions: Sessions) -> None:
    when = datetime(2026, 11, 1, 12, tzinfo=UTC)
    entry = audit.record(sessions, user="ana\x00", action="tables:Write", resource="r" * 600,
                         outcome="failed", details={"when": when, 3: [1, None]})
    [row] = _rows(sessions)
    assert row.user == "ana\ufffd" and len(row.resource) == 512
    assert row.details == {"when": str(when), "3": [1, None]} == entry.details
    assert _check(sessions).ok
    with pytest.raises(Invalid, match="outcome 'maybe'"):
        audit.record(sessions, user="ana", action="x", outcome="maybe")  # type: ignore[arg-type]
    with pytest.raises(Invalid, match="needs an action"):
        audit.record(sessions, user="ana", action="", outcome="allowed")
    with pytest.raises(Invalid, match="cannot be stored"):
        audit.record(sessions, user="ana", action="x", outcome="allowed",
                     details={"v": float("nan")})
    assert len(_rows(sessions)) == 1


def test_the_request_id_defaults_to_the_request_being_served(sessions: Sessions) -> None:
    token = request_id.set("req-42")
    try:
        assert audit.record(sessions, user="ana", action="files:Get",
                            outcome="allowed").request_id == "req-42"
        assert audit.record(sessions, user="ana", action="files:Get", outcome="allowed",
                            request_id="mine").request_id == "mine"
    finally:
        request_id.reset(token)


def test_threads_append_one_linear_chain(sessions: Sessions) -> None:
    log = AuditLog(sessions)

    def work(t: int) -> None:
        for i in range(30):
            log.record(user=f"t{t}", action="files:Get", resource=str(i), outcome="allowed")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = _rows(sessions)
    assert [r.seq for r in rows] == list(range(1, 241))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert log.conflicts == 0  # one lock in a process: nobody is overtaken
    assert _check(sessions) == audit.Report(ok=True, entries=240)


def test_a_writer_overtaken_by_another_process_tries_again(sessions: Sessions,
                                                           engine: Engine) -> None:
    """Two control planes on one database: each has its own lock, so both may read the same
    newest entry. The database refuses the second append (UNIQUE prev_hash); it reads the new
    newest entry and appends after it."""
    here, there = AuditLog(sessions, lock=threading.Lock()), AuditLog(sessions,
                                                                      lock=threading.Lock())
    here.record(user="ana", action="first", outcome="allowed")
    overtaken: list[bool] = []

    def before(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_EVENTS") and not overtaken:
            overtaken.append(True)  # between our read of the newest entry and our insert
            other = threading.Thread(target=there.record, kwargs={
                "user": "bo", "action": "other", "outcome": "denied"})
            other.start()
            other.join()

    event.listen(engine, "before_cursor_execute", before)
    try:
        here.record(user="ana", action="second", outcome="allowed")
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert overtaken and here.conflicts == 1
    assert [r.action for r in _rows(sessions)] == ["first", "other", "second"]
    assert _check(sessions).ok

    # and many at once, as two processes would
    threads = [threading.Thread(target=lambda log=log: [
        log.record(user="x", action="files:Get", outcome="allowed") for _ in range(25)])
        for log in (here, there) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _check(sessions) == audit.Report(ok=True, entries=153)


# --- tampering ---------------------------------------------------------------------------------


def test_an_edited_entry_is_found(sessions: Sessions) -> None:
    _fill(sessions, 20)
    _sql(sessions, "UPDATE audit_events SET resource = 'elsewhere' WHERE seq = 7")
    report = _check(sessions)
    assert (report.ok, report.first_bad, report.where) == (False, 7, "database")
    assert "seq 7 was changed" in (report.problem or "")
    assert report.entries == 7

    # an editor who also recomputes the entry's own hash breaks the next link
    [row] = [r for r in _rows(sessions) if r.seq == 7]
    _sql(sessions, "UPDATE audit_events SET hash = :h WHERE seq = 7", h=entry_hash(
        row.prev_hash, at=row.at, user=row.user, action=row.action, resource=row.resource,
        outcome=row.outcome, source=row.source, request_id=row.request_id,
        details=row.details))
    report = _check(sessions)
    assert (report.ok, report.first_bad) == (False, 8)
    assert "seq 8 does not follow seq 7" in (report.problem or "")


def test_a_removed_entry_is_found(sessions: Sessions) -> None:
    _fill(sessions, 12)
    _sql(sessions, "DELETE FROM audit_events WHERE seq = 5")
    report = _check(sessions)
    assert (report.ok, report.first_bad, report.where) == (False, 6, "database")
    assert "between seq 4 and seq 6 are missing" in (report.problem or "")

    _sql(sessions, "DELETE FROM audit_events WHERE seq < 3")
    report = _check(sessions)
    assert (report.ok, report.first_bad) == (False, 3)
    assert "does not start the chain" in (report.problem or "")


def test_a_reordered_chain_is_found(sessions: Sessions) -> None:
    _fill(sessions, 10)
    _sql(sessions, "UPDATE audit_events SET seq = 1000 WHERE seq = 4")
    _sql(sessions, "UPDATE audit_events SET seq = 4 WHERE seq = 5")
    _sql(sessions, "UPDATE audit_events SET seq = 5 WHERE seq = 1000")
    report = _check(sessions)
    assert (report.ok, report.first_bad) == (False, 4)
    assert "seq 4 does not follow seq 3: the entries were reordered" in (report.problem or "")


# --- the lake copy -----------------------------------------------------------------------------


def test_entries_are_copied_to_the_lake_in_order(sessions: Sessions, storage: LocalBackend,
                                                tmp_path: Path) -> None:
    assert _check(sessions, storage) == audit.Report(ok=True, entries=0, lake_entries=0)
    exporter = AuditExporter(sessions, storage, batch=8)
    assert exporter.export_once() == 0  # nothing yet: no database, no table
    from cumulo.lake import catalog

    with sessions() as session:
        assert [db.name for db, _ in catalog.list_databases(session)] == []

    _fill(sessions, 30)
    assert exporter.export_once() == 30
    rows = _rows(sessions)
    lake = _lake_rows(storage)
    assert [r["seq"] for r in lake] == list(range(1, 31))
    assert [r["hash"] for r in lake] == [r.hash for r in rows]
    assert lake[3]["details"] == '{"i":3,"note":"é","x":1.5}'
    assert lake[3]["at"] == rows[3].at
    assert all(r.exported for r in rows)
    assert _lake(storage).version() == 3  # four commits of at most 8 entries

    # what SQL engines read: DuckDB over the table's files
    dataset = _lake(storage).to_pyarrow_dataset()
    con = duckdb.connect()
    con.register("events", dataset)
    assert con.execute("select count(*), count(distinct hash), min(seq), max(seq) "
                       "from events").fetchall() == [(30, 30, 1, 30)]
    con.close()

    with sessions() as session:
        db = catalog.get_database(session, "audit")
        assert db.created_by is None
        [(name, table)] = catalog.list_tables(session, "audit")
        assert (name, table.name, table.kind, table.created_by) == (
            "audit", "events", "managed", None)

    assert exporter.export_once() == 0
    _fill(sessions, 5)
    assert exporter.export_once() == 5
    assert len(_lake_rows(storage)) == 35
    assert _check(sessions, storage) == audit.Report(ok=True, entries=35, lake_entries=35)

    # and cumulo sql reads it, as any lake table
    from cumulo.lake import sql
    from cumulo.principal import Principal

    with sessions() as session:
        admin = User(name="admin", is_admin=True, created_at=utcnow())
        session.add(admin)
        session.commit()
        outcome = sql.run(session, storage, Principal(admin.id, "admin", True, 1),
                          "select count(*) as n, max(seq) as top from audit.events "
                          "where outcome = 'denied'", results_dir=tmp_path / "results")
        assert outcome.result_path is not None
        assert sql.read_results(outcome.result_path, offset=0, limit=1).to_pylist() == [
            {"n": 17, "top": 34}]


def test_a_copy_whose_mark_was_lost_is_not_copied_again(sessions: Sessions,
                                                       storage: LocalBackend) -> None:
    """A crash after the Delta commit and before the entries are marked exported: the marks
    are lost, the rows are in the table. The next export must not append them twice."""
    exporter = AuditExporter(sessions, storage, batch=6)
    _fill(sessions, 10)
    exporter.export_once()
    _fill(sessions, 10)
    exporter.export_once()
    version = _lake(storage).version()
    _sql(sessions, "UPDATE audit_events SET exported = false WHERE seq > 7")  # the crash
    assert exporter.export_once() == 0
    assert _lake(storage).version() == version  # not even an empty commit
    assert [r["seq"] for r in _lake_rows(storage)] == list(range(1, 21))
    assert all(r.exported for r in _rows(sessions))
    _fill(sessions, 3)
    assert exporter.export_once() == 3
    assert _check(sessions, storage) == audit.Report(ok=True, entries=23, lake_entries=23)


def test_a_changed_lake_copy_is_found(sessions: Sessions, storage: LocalBackend) -> None:
    _fill(sessions, 20)
    AuditExporter(sessions, storage).export_once()
    original = _lake(storage).version()

    def check_then_restore() -> audit.Report:
        report = _check(sessions, storage)
        _lake(storage).restore(original)
        assert _check(sessions, storage).ok
        return report

    _lake(storage).update({"user": "'mallory'"}, predicate="seq = 7")
    report = check_then_restore()
    assert (report.ok, report.first_bad, report.where) == (False, 7, "lake")
    assert report.problem == ("seq 7 in audit.events differs from the database in user: the "
                              "lake copy was changed")

    _lake(storage).delete("seq = 9")
    report = check_then_restore()
    assert (report.ok, report.first_bad) == (False, 9)
    assert report.problem == "seq 9 is missing from audit.events"

    twice = _lake(storage).to_pyarrow_dataset().to_table(filter=pc.field("seq") == 4)
    write_deltalake(storage.table_uri("lake/audit/events")[0], twice, mode="append")
    report = check_then_restore()
    assert (report.ok, report.first_bad) == (False, 4)
    assert report.problem == "seq 4 is in audit.events more than once"

    uri = storage.table_uri("lake/audit/events")[0]
    write_deltalake(uri, _lake(storage).to_pyarrow_table().drop_columns(["hash"]),
                    mode="overwrite", schema_mode="overwrite")
    report = check_then_restore()
    assert (report.ok, report.first_bad, report.problem) == (
        False, None, "audit.events has lost its column(s) hash")

    # the newest entries removed from the database: the chain alone cannot tell; the copy can
    _sql(sessions, "DELETE FROM audit_events WHERE seq >= 19")
    assert _check(sessions).ok
    report = _check(sessions, storage)
    assert (report.ok, report.first_bad, report.where) == (False, 19, "lake")
    assert "removed from the database" in (report.problem or "")


def test_a_dropped_lake_copy_is_found(sessions: Sessions, storage: LocalBackend) -> None:
    from cumulo.lake import catalog
    from cumulo.lake.refs import parse_ref

    _fill(sessions, 5)
    exporter = AuditExporter(sessions, storage)
    exporter.export_once()
    with sessions() as session:
        catalog.drop_table(session, storage, parse_ref("audit.events"))
    report = _check(sessions, storage)
    assert (report.ok, report.first_bad, report.where) == (False, 1, "lake")
    assert "audit.events is gone (dropped?)" in (report.problem or "")
    # the exporter makes the table again for new entries; the old ones stay missing
    _fill(sessions, 2)
    assert exporter.export_once() == 2
    report = _check(sessions, storage)
    assert (report.ok, report.first_bad, report.problem) == (
        False, 1, "seq 1 is missing from audit.events")


def test_the_exporter_copies_on_its_own_and_when_it_stops(sessions: Sessions,
                                                         storage: LocalBackend) -> None:
    exporter = AuditExporter(sessions, storage, interval=0.05)
    exporter.start()
    try:
        _fill(sessions, 4)
        deadline = time.monotonic() + 20
        while not all(r.exported for r in _rows(sessions)):
            assert time.monotonic() < deadline, "the exporter did not copy the entries"
            time.sleep(0.05)
    finally:
        exporter.stop()
    assert len(_lake_rows(storage)) == 4

    slow = AuditExporter(sessions, storage, interval=3600)
    slow.start()
    _fill(sessions, 3)
    slow.stop()  # copies what was recorded before it stopped
    assert len(_lake_rows(storage)) == 7


_EXPORT = """
import sys
from pathlib import Path
from sqlalchemy.orm import sessionmaker
from cumulo.access.audit import AuditExporter
from cumulo.db import make_engine
from cumulo.storage.backends.local import LocalBackend
engine = make_engine(sys.argv[1])
exporter = AuditExporter(sessionmaker(engine), LocalBackend(Path(sys.argv[2])), batch=50)
sys.stdin.readline()  # start together
print(exporter.export_once())
"""


def test_two_control_planes_export_each_entry_once(tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    """Two processes exporting from one PostgreSQL at the same time: the rows each copies are
    locked until marked, so the other waits and skips them."""
    url = _url("postgres", tmp_path, request)
    engine = make_engine(url)
    upgrade(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    storage = LocalBackend(tmp_path / "storage")
    _fill(sessions, 600)
    procs = [subprocess.Popen([sys.executable, "-c", _EXPORT, url, str(tmp_path / "storage")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    time.sleep(2)  # both imported and connected
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    copied = [int(proc.communicate(timeout=120)[0]) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert sum(copied) == 600
    assert [r["seq"] for r in _lake_rows(storage)] == list(range(1, 601))
    assert _check(sessions, storage) == audit.Report(ok=True, entries=600, lake_entries=600)
    engine.dispose()


# --- listing -----------------------------------------------------------------------------------


def test_entries_are_listed_newest_first_with_filters(sessions: Sessions) -> None:
    log = AuditLog(sessions)
    log.record(user="ana", action="tables:Write", resource="table/sales/orders",
               outcome="allowed")
    log.record(user="bo", action="tables:Drop", resource="table/sales/orders", outcome="denied")
    log.record(user="ana", action="files:Get", resource="bucket/data/a.csv", outcome="allowed")
    middle = utcnow()
    log.record(user="bo", action="a_b", outcome="failed")
    log.record(user="ana", action="axb", outcome="denied")
    log.record(user=None, action="tables:Write", resource="table/audit/events", outcome="denied")

    def seqs(**filters: Any) -> list[int]:
        with sessions() as session:
            return [e.seq for e in list_events(session, **filters).events]

    assert seqs() == [6, 5, 4, 3, 2, 1]
    assert seqs(user="ana") == [5, 3, 1]
    assert seqs(action="tables:*") == [6, 2, 1]
    assert seqs(action="*:write") == [6, 1]
    assert seqs(action="tables:Write") == [6, 1]
    assert seqs(action="TABLES:write") == seqs(action="Tables:*W*") == [6, 1]  # IAM: any case
    assert seqs(action="a_b") == [4]  # '_' is not a wildcard
    assert seqs(action="a?b") == [5, 4]
    assert seqs(outcome="denied") == [6, 5, 2]
    assert seqs(since=middle) == [6, 5, 4]
    assert seqs(until=middle) == [3, 2, 1]
    assert seqs(since=middle.replace(tzinfo=None)) == [6, 5, 4]  # naive: UTC
    assert seqs(since=middle + timedelta(days=1)) == []
    assert seqs(user="ana", action="tables:*", outcome="allowed") == [1]
    with sessions() as session, pytest.raises(Invalid, match="limit"):
        list_events(session, limit=0)
    with sessions() as session, pytest.raises(Invalid, match="outcome 'ok'"):
        list_events(session, outcome="ok")


def test_pages_follow_each_other_by_seq(sessions: Sessions) -> None:
    _fill(sessions, 25)
    pages, before = [], None
    with sessions() as session:
        while True:
            page = list_events(session, limit=10, before_seq=before)
            pages.append([e.seq for e in page.events])
            if page.next is None:
                break
            before = page.next
        assert pages == [list(range(25, 15, -1)), list(range(15, 5, -1)), [5, 4, 3, 2, 1]]
        # a last page exactly full says there is no more
        page = list_events(session, user="user0", limit=3, before_seq=10)
        assert [e.seq for e in page.events] == [7, 4, 1] and page.next is None
        page = list_events(session, user="user0", limit=2, before_seq=10)
        assert [e.seq for e in page.events] == [7, 4] and page.next == 4
