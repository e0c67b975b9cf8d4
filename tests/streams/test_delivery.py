"""Delivery of streams into lake tables (Firehose), against a real server and real Delta
tables: every record once, in batches; misfits in the error table with the reason; exactly
once through a stop and start and through kill -9 of the server; partitions by day; a
user's transform in a module or a file; and each bad input refused with what to fix."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cumulo.errors import Conflict, Invalid, NotFound
from tests.services import Cumulo, start_cumulo

TRANSFORM = '''
def clean(record):
    if record.get("page") == "/health":
        return None  # dropped
    record["page"] = record["page"].upper()
    return record


def explode(record):
    raise ValueError("no " + record["page"])


def snoop(record):
    import os
    record["page"] = os.environ.get("CUMULO_ADMIN_TOKEN", "none")
    return record


def whoami(record):
    import json, os
    print("whoami was called on", record["user"])  # to the server's log, not the answers
    with open("/proc/self/environ", "rb") as f:
        environ = f.read().decode(errors="replace")
    record["page"] = json.dumps({"pid": os.getpid(), "ppid": os.getppid(),
                                 "env": sorted(os.environ), "environ": environ})
    return record


def crash(record):
    import os
    if record["page"] == "/crash":
        os._exit(7)
    return record
'''

SCHEMA = pa.schema([pa.field("user", pa.string(), nullable=False), pa.field("page", pa.string()),
                    pa.field("ms", pa.int64())])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    modules = tmp_path_factory.mktemp("transforms")
    (modules / "click_transforms.py").write_text(TRANSFORM)
    cumulo = start_cumulo(tmp_path_factory.mktemp("delivery") / ".cumulo",
                          {"PYTHONPATH": str(modules)})
    cumulo.client().tables.create_database("web")
    yield cumulo
    cumulo.stop()


def _name(prefix: str = "d") -> str:
    return prefix + uuid.uuid4().hex[:8]


def _table(server: Cumulo, *, schema: pa.Schema = SCHEMA,
           partition_by: list[str] | None = None) -> str:
    """A new, empty table of ``schema`` in database web."""
    name = f"web.{_name('t')}"
    server.client().tables.write(name, schema.empty_table(), partition_by=partition_by)
    return name


def _rows(server: Cumulo, table: str) -> list[dict[str, Any]]:
    """The table's rows; none while it is not made yet (an error table, before an error)."""
    try:
        return server.client().tables.read(table).to_pylist()  # type: ignore[no-any-return]
    except NotFound:
        return []


def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.2)


def _put(server: Cumulo, stream: str, records: list[Any]) -> None:
    c = server.client()
    for start in range(0, len(records), 500):
        c.streams.put_records(stream, [
            {"partition_key": f"k{start + i}",
             "data": r if isinstance(r, str) else json.dumps(r)}
            for i, r in enumerate(records[start:start + 500])])


def test_records_land_once_and_misfits_go_to_the_error_table(server: Cumulo) -> None:
    stream, table = _name(), _table(server)
    c = server.client()
    c.streams.create(stream, shards=2)
    made = c.streams.deliver(stream, table=table, buffer="1MB/1s")
    assert made["state"] == "running" and made["buffer"] == "1MB/1s"
    good = [{"user": f"u{i}", "page": f"/p{i}", "ms": i} for i in range(300)]
    _put(server, stream, good)
    _until(lambda: len(_rows(server, table)) == 300)
    time.sleep(1.5)  # a batch more would show up by now
    rows = _rows(server, table)
    assert sorted(r["user"] for r in rows) == sorted(r["user"] for r in good)
    # Records that do not fit: each to the error table, with why, its shard and sequence.
    bad = ["not json", {"page": "/no-user"}, {"user": "u", "ms": "slow"}, [1, 2],
           {"user": "u", "extra": True}, {"user": "u", "ms": 2.5}]
    _put(server, stream, [*bad, {"user": "last", "ms": 1}])
    errors = table + "_errors"
    _until(lambda: len(_rows(server, table)) == 301)
    _until(lambda: len(_rows(server, errors)) == 6)
    failed = sorted(_rows(server, errors), key=lambda r: r["data"])
    reasons = {r["data"]: r["reason"] for r in failed}
    assert "not JSON" in reasons["not json"]
    assert "column 'user' is missing, and it is not nullable" in reasons['{"page": "/no-user"}']
    assert "column 'ms' (int64): 'slow' is text, not a whole number" in reasons[
        '{"user": "u", "ms": "slow"}']
    assert "not a JSON object" in reasons["[1, 2]"]
    assert "'extra' are not columns of the table" in reasons['{"user": "u", "extra": true}']
    assert "is not a whole number" in reasons['{"user": "u", "ms": 2.5}']
    assert all(r["stream"] == stream and r["shard_id"].startswith("shardId-")
               and r["sequence_number"].isdigit() for r in failed)
    shown = c.streams.show(stream)["deliveries"][0]
    assert (shown["records"], shown["failed"], shown["behind"]) == (301, 6, 0)
    assert shown["table"] == table and shown["state"] == "running"
    # Stopped, records put meanwhile wait; started again, they come, once.
    stopped = server.cli("streams", "deliveries", "stop", stream, table)
    assert stopped.returncode == 0, stopped.stderr
    assert c.streams.delivery(stream, table)["state"] == "stopped"
    _put(server, stream, [{"user": f"w{i}"} for i in range(50)])
    time.sleep(2)
    assert len(_rows(server, table)) == 301
    assert c.streams.delivery(stream, table)["behind"] == 50
    started = server.cli("streams", "deliveries", "start", stream, table)
    assert started.returncode == 0, started.stderr
    _until(lambda: len(_rows(server, table)) == 351)
    time.sleep(1.5)
    users = [r["user"] for r in _rows(server, table)]
    assert len(users) == len(set(users)) == 351
    listed = server.cli("streams", "deliveries", "ls", stream)
    assert listed.returncode == 0 and table in listed.stdout, listed.stderr
    assert "deliveries" in server.cli("streams", "show", stream, "--json").stdout
    removed = server.cli("streams", "deliveries", "rm", stream, table)
    assert removed.returncode == 0, removed.stderr
    assert c.streams.deliveries(stream) == []
    assert len(_rows(server, table)) == 351  # what it wrote stays


def test_partition_by_day_and_transforms(server: Cumulo, tmp_path: Path) -> None:
    stream = _name()
    schema = pa.schema([*SCHEMA, pa.field("day", pa.date32())])
    table = _table(server, schema=schema, partition_by=["day"])
    c = server.client()
    c.streams.create(stream, shards=1)
    # A module the server imports (on its PYTHONPATH): drops /health, upper-cases pages.
    c.streams.deliver(stream, table=table, buffer="1MB/1s", partition_by="day",
                      transform="click_transforms:clean")
    _put(server, stream, [{"user": "a", "page": "/home"}, {"user": "b", "page": "/health"},
                          {"user": "c", "page": "/buy"}])
    _until(lambda: len(_rows(server, table)) == 2)
    rows = sorted(_rows(server, table), key=lambda r: r["user"])
    today = time.gmtime()
    assert [(r["user"], r["page"]) for r in rows] == [("a", "/HOME"), ("c", "/BUY")]
    assert rows[0]["day"].timetuple()[:3] == today[:3]
    assert c.tables.show(table)["partition_columns"] == ["day"]
    # A local file, sent with the delivery: a function that raises fails its records alone.
    local = tmp_path / "mine.py"
    local.write_text(TRANSFORM)
    other = _table(server)
    made = server.cli("streams", "deliver", stream, "--to-table", other, "--buffer", "1s",
                      "--transform", f"{local}:explode", "--from", "TRIM_HORIZON")
    assert made.returncode == 0, made.stderr
    _until(lambda: len(_rows(server, other + "_errors")) == 3)
    assert _rows(server, other) == []
    assert {r["reason"] for r in _rows(server, other + "_errors")} >= {
        "the transform raised ValueError: no /home"}
    # The function's process has none of the server's secrets.
    third = _table(server)
    c.streams.deliver(stream, table=third, buffer="1s", transform="click_transforms:snoop",
                      start="TRIM_HORIZON")
    _until(lambda: len(_rows(server, third)) == 3)
    assert {r["page"] for r in _rows(server, third)} == {"none"}


def test_a_transform_is_forked_by_the_fork_server_with_no_secrets(server: Cumulo) -> None:
    import psutil

    stream, table = _name(), _table(server)
    c = server.client()
    c.streams.create(stream, shards=1)
    c.streams.deliver(stream, table=table, buffer="1s", transform="click_transforms:whoami")
    _put(server, stream, [{"user": "who", "page": "/"}])
    _until(lambda: len(_rows(server, table)) == 1)
    seen = json.loads(_rows(server, table)[0]["page"])
    # Its parent is the transforms' fork server, which the control plane started.
    parent = psutil.Process(seen["ppid"])
    assert "cumulo.forkserver.server" in parent.cmdline()
    assert "cumulo.streams.transform" in " ".join(parent.cmdline())
    assert parent.ppid() == server.proc.pid != seen["ppid"]
    # None of the server's environment but where Python is and the locale: not in
    # os.environ, nor in what the process was started with (its fork server's).
    kept = {"PATH", "PYTHONPATH", "HOME", "LANG", "TZ", "TMPDIR", "VIRTUAL_ENV",
            "PYTHONUNBUFFERED"}
    assert {k for k in seen["env"] if not k.startswith("LC_")} <= kept
    assert "CUMULO_" not in seen["environ"] and server.token not in seen["environ"]
    assert "PYTHONPATH=" in seen["environ"]
    assert server.token not in " ".join(psutil.Process(seen["ppid"]).environ().values())
    # What it printed went to the server's log.
    _until(lambda: any("whoami was called on who" in line for line in server.log_lines()))


def test_a_crashing_transform_fails_only_its_batch(server: Cumulo) -> None:
    stream, table = _name(), _table(server)
    c = server.client()
    c.streams.create(stream, shards=1)
    c.streams.deliver(stream, table=table, buffer="1s", transform="click_transforms:crash")
    _put(server, stream, [{"user": "a", "page": "/fine"}, {"user": "b", "page": "/crash"}])
    _until(lambda: len(_rows(server, table + "_errors")) == 2)  # one batch: both records
    errors = _rows(server, table + "_errors")
    assert {r["reason"] for r in errors} == {"the transform's process ended (exit status 7)"}
    assert _rows(server, table) == []
    # The next batch gets a fresh process, and the server and the delivery go on.
    _put(server, stream, [{"user": "c", "page": "/also-fine"}])
    _until(lambda: len(_rows(server, table)) == 1)
    assert _rows(server, table)[0]["user"] == "c"
    shown = c.streams.delivery(stream, table)
    assert (shown["state"], shown["records"], shown["failed"]) == ("running", 1, 2)
    assert server.proc.poll() is None


def test_bad_input(server: Cumulo) -> None:
    c = server.client()
    stream, table = _name(), _table(server)
    c.streams.create(stream, shards=1)
    with pytest.raises(NotFound, match="stream 'no-such' does not exist"):
        c.streams.deliver("no-such", table=table)
    with pytest.raises(NotFound, match=r"table web\.no_such does not exist"):
        c.streams.deliver(stream, table="web.no_such")
    with pytest.raises(NotFound, match="database 'nodb' does not exist"):
        c.streams.deliver(stream, table="nodb.t")
    with pytest.raises(Invalid, match="needs its database"):
        c.streams.deliver(stream, table="clicks")
    with pytest.raises(Invalid, match="--buffer '5q' is not a size"):
        c.streams.deliver(stream, table=table, buffer="5q/60s")
    with pytest.raises(Invalid, match="--buffer 'soon' is not a duration"):
        c.streams.deliver(stream, table=table, buffer="5MB/soon")
    with pytest.raises(Invalid, match="the size is 1KB to 128MB"):
        c.streams.deliver(stream, table=table, buffer="1GB/60s")
    with pytest.raises(Invalid, match="--buffer '1h' is too long"):
        c.streams.deliver(stream, table=table, buffer="1h")
    with pytest.raises(Invalid, match="module 'no_such_module' cannot be imported by the "
                                      "server"):
        c.streams.deliver(stream, table=table, transform="no_such_module:fix")
    with pytest.raises(Invalid, match="has no function 'nope'"):
        c.streams.deliver(stream, table=table, transform="click_transforms:nope")
    with pytest.raises(Invalid, match="is not MODULE:FUNCTION"):
        c.streams.deliver(stream, table=table, transform="not a spec")
    with pytest.raises(Invalid, match="there is no file"):
        c.streams.deliver(stream, table=table, transform="missing.py:fix")
    with pytest.raises(Invalid, match="--partition-by 'hour' is not one of day"):
        c.streams.deliver(stream, table=table, partition_by="hour")
    with pytest.raises(Invalid, match="has none: make the table with a 'day' column"):
        c.streams.deliver(stream, table=table, partition_by="day")
    c.streams.deliver(stream, table=table, buffer="1s")
    with pytest.raises(Conflict, match=r"has a delivery .* already"):
        c.streams.deliver(stream, table=table)
    with pytest.raises(NotFound, match="has no delivery 'nope'"):
        c.streams.stop_delivery(stream, "nope")
    # Its table dropped under it: the delivery stops, failed, saying why.
    c.tables.drop(table)
    c.streams.put(stream, json.dumps({"user": "u"}), partition_key="k")
    _until(lambda: c.streams.delivery(stream, table)["state"] == "failed")
    assert "does not exist" in c.streams.delivery(stream, table)["error"]
    # Who may: an analyst reads tables but may not write them, nor read streams.
    analyst = server.add_user("d-analyst", "d-analyst-" + uuid.uuid4().hex, role="analyst")
    with pytest.raises(Exception, match="may not streams:Read"):
        analyst.streams.deliver(stream, table=table)
    # A data scientist reads streams, but may not write tables.
    scientist = server.add_user("d-ds", "d-ds-" + uuid.uuid4().hex, role="data-scientist")
    with pytest.raises(Exception, match="may not tables:Write"):
        scientist.streams.deliver(stream, table=table, delivery="theirs")
    bad_cli = server.cli("streams", "deliver", stream, "--to-table", table, "--buffer", "5x")
    assert bad_cli.returncode == 1 and "--buffer '5x' is not a duration" in bad_cli.stderr


def test_exactly_once_through_kill_9(tmp_path: Path) -> None:
    """The server killed mid-delivery: started again, the delivery goes on where the table's
    last commit says: every acknowledged record once, none twice."""
    home = tmp_path / ".cumulo"
    first = start_cumulo(home)
    acknowledged: list[str] = []
    stop = threading.Event()
    try:
        c = first.client()
        c.tables.create_database("web")
        c.tables.write("web.events", pa.schema([pa.field("id", pa.string())]).empty_table())
        c.streams.create("events", shards=2)
        c.streams.deliver("events", table="web.events", buffer="1KB/200ms")

        def produce(worker: int) -> None:
            n = 0
            with first.client() as mine:
                while not stop.is_set():
                    batch = [f"{worker}-{n + i}" for i in range(20)]
                    try:
                        mine.streams.put_records("events", [
                            {"partition_key": r, "data": json.dumps({"id": r})} for r in batch])
                    except Exception:
                        return
                    acknowledged.extend(batch)
                    n += 20

        workers = [threading.Thread(target=produce, args=(i,), daemon=True) for i in range(2)]
        for w in workers:
            w.start()
        _until(lambda: len(_rows(first, "web.events")) > 200)
        first.stop(signal.SIGKILL)  # mid-batch, mid-commit: wherever it is
        stop.set()
        for w in workers:
            w.join(10)
    finally:
        stop.set()
        first.stop(signal.SIGKILL)
    assert len(acknowledged) > 200
    second = start_cumulo(home, port=None)
    try:
        _until(lambda: second.client().streams.delivery("events", "web.events")["behind"] == 0,
               timeout=60)
        ids = [r["id"] for r in _rows(second, "web.events")]
        assert len(ids) == len(set(ids))  # none twice
        assert set(acknowledged) <= set(ids)  # none lost
    finally:
        second.stop()


def test_a_crash_between_the_two_commits_writes_each_row_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch with misfits commits to the error table, then to the table. Fail the second
    commit once (as a crash between the two would leave things): the delivery reads again
    from the table's last commit, and neither table gets a row twice. In-process, with a real
    database, real logs and real Delta tables; the one fault is injected."""
    from sqlalchemy.orm import sessionmaker

    from cumulo.access.models import User
    from cumulo.db import make_engine, upgrade, utcnow
    from cumulo.lake import catalog, delta
    from cumulo.lake.refs import parse_ref
    from cumulo.principal import Principal
    from cumulo.storage.backends.local import LocalBackend
    from cumulo.streams import service
    from cumulo.streams.delivery import Deliveries, create_delivery

    engine = make_engine(f"sqlite:///{tmp_path / 'cumulo.db'}")
    upgrade(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    storage = LocalBackend(tmp_path / "storage")
    streams = service.StreamEngine(tmp_path)
    with sessions() as session:
        user = User(name="ana", created_at=utcnow())
        session.add(user)
        session.commit()
        me = Principal(user.id, "ana", False, 0)
        catalog.create_database(session, me, "web")
        row = catalog.ensure_managed_table(session, me, parse_ref("web.clicks"))
        delta.write(catalog.location(storage, row), SCHEMA.empty_table().to_reader(),
                    mode="append", user="ana", name="web.clicks")
        stream = service.create_stream(session, me, "clicks", shards=1)
        create_delivery(session, streams, storage, me, "clicks", table="web.clicks",
                        buffer="1KB/100ms")
        streams.put(session, stream, [
            ("k", json.dumps(r).encode() if not isinstance(r, str) else r.encode(), 1)
            for r in [{"user": "a"}, "not json", {"user": "b"}, {"ms": 1}]])
    real_write = delta.write
    failures: list[str] = []

    def crash_once(loc: Any, reader: Any, **options: Any) -> Any:
        if options["name"] == "web.clicks" and not failures:
            failures.append("crashed")
            raise OSError("the machine went away between the two commits")
        return real_write(loc, reader, **options)

    monkeypatch.setattr(delta, "write", crash_once)
    deliveries = Deliveries(streams, sessions, storage, look_every=0.2)
    deliveries.start()
    try:
        def rows(table: str) -> list[dict[str, Any]]:
            with sessions() as session:
                try:
                    found = catalog.get_table(session, parse_ref(table))
                except NotFound:
                    return []
                return delta.open_table(catalog.location(storage, found)).to_pyarrow_table()\
                    .to_pylist()  # type: ignore[no-any-return]

        _until(lambda: len(rows("web.clicks")) == 2)
        time.sleep(1.0)
        assert failures == ["crashed"]
        assert sorted(r["user"] for r in rows("web.clicks")) == ["a", "b"]
        errors = rows("web.clicks_errors")
        assert sorted(r["data"] for r in errors) == ["not json", '{"ms": 1}']  # once each
    finally:
        deliveries.stop()
        streams.close()
        engine.dispose()
