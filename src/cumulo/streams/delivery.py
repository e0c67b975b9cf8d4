"""Delivery (Firehose): a stream's records written into a lake table, in batches, exactly once.

``cumulo streams deliver clicks --to-table web.clicks --buffer 5MB/60s`` makes a delivery. The
control plane runs it on a thread: it reads every shard (parents before children, as a
reader must after a reshard: :mod:`cumulo.streams.reader`, which sleeps on the shards'
wake-ups while nothing comes), buffers records until the buffer holds ``buffer_bytes`` or its
oldest record waited ``buffer_seconds``, and writes the batch as one Delta commit.

Exactly once: the commit also carries, for each shard in the batch, the last sequence read
from it, as a Delta app transaction (application id ``cumulo.streams/<uid>/<shard>``). The
table's version and the delivery's position are then one atomic fact: a delivery that starts
again (a restart, a crash anywhere, a stop and start) reads where the table says, so no record
is written twice and none is skipped. Nothing else keeps the position.

Each record is a JSON object, fitted to the table's columns (:mod:`cumulo.streams.rows`);
one that is not JSON, does not fit, or fails the transform goes to the error table
``<table>_errors`` (the raw record, the reason, its shard and sequence number), written before
the batch with the same app transactions, so it is exactly once too. With ``--partition-by
day`` each row's ``day`` column is the day (UTC) its record arrived. ``--transform`` runs a
user's function on each record first (:mod:`cumulo.streams.transform`).

The delivery writes as the user who made it: their right to write the table is asked again
before each batch, and a refusal stops it (state ``failed``, with the reason).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cumulo.access.users import acting_as
from cumulo.db import utcnow
from cumulo.errors import Conflict, CumuloError, Forbidden, Invalid, NotFound
from cumulo.principal import Principal
from cumulo.streams import service
from cumulo.streams.claims import Claims
from cumulo.streams.models import Delivery, Shard, Stream
from cumulo.streams.reader import Item, ShardReader, Stopping
from cumulo.streams.service import StreamEngine
from cumulo.units import format_duration, parse_duration, parse_size

if TYPE_CHECKING:
    import pyarrow as pa

    from cumulo.lake.delta import Location
    from cumulo.leases import Membership
    from cumulo.storage.backends import Backend
    from cumulo.streams.transform import Transform

__all__ = ["DEFAULT_BUFFER", "Deliveries", "create_delivery", "delete_delivery",
           "delivery_docs", "get_delivery", "parse_buffer", "require_table_write", "set_state",
           "table_target"]

log = logging.getLogger("cumulo.streams")

DEFAULT_BUFFER = "5MB/60s"
MIN_BUFFER_BYTES = 1 << 10
MAX_BUFFER_BYTES = 128 << 20  # as Firehose's
MAX_BUFFER_SECONDS = 900.0
PARTITIONS = ("day",)
STARTS = ("LATEST", "TRIM_HORIZON")
_BUFFER_FORMS = "use SIZE/INTERVAL like 5MB/60s, or one of them (5MB, or 60s)"
_READ = 10_000  # records a look at the shards reads at most
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def parse_buffer(text: str) -> tuple[int, float]:
    """Bytes and seconds in ``SIZE/INTERVAL`` (``5MB/60s``), or in one of them alone (the
    other as in :data:`DEFAULT_BUFFER`); a bare number alone is an interval."""
    size_text, slash, interval_text = text.strip().partition("/")
    default_size, default_interval = DEFAULT_BUFFER.split("/")
    if not slash:
        one = size_text.strip()
        looks_like_size = bool(one) and one[-1].upper() in "KMGTB" and one[:1].isdigit()
        size_text, interval_text = ((one, default_interval) if looks_like_size
                                    else (default_size, one))
    size = parse_size(size_text.strip(), what="--buffer")
    seconds = parse_duration(interval_text.strip(), what="--buffer",
                             maximum=MAX_BUFFER_SECONDS)
    if not MIN_BUFFER_BYTES <= size <= MAX_BUFFER_BYTES:
        raise Invalid(f"--buffer {text!r}: the size is 1KB to 128MB, not {size} bytes; "
                      f"{_BUFFER_FORMS}", details={"field": "buffer"})
    return size, seconds


def _buffer_text(row: Delivery) -> str:
    size = row.buffer_bytes
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if size % scale == 0:
            return f"{size // scale}{unit}/{format_duration(row.buffer_seconds)}"
    return f"{size}/{format_duration(row.buffer_seconds)}"


def app_id(row: Delivery, shard_id: str) -> str:
    return f"cumulo.streams/{row.uid}/{shard_id}"


# --- the rows ------------------------------------------------------------------------------------


def get_delivery(session: Session, stream: Stream, name: str) -> Delivery:
    row = session.scalar(select(Delivery).where(Delivery.stream_id == stream.id,
                                                Delivery.name == name))
    if row is None:
        raise NotFound(f"stream {stream.name!r} has no delivery {name!r}; 'cumulo streams "
                       f"deliveries {stream.name}' lists them", details={"delivery": name})
    return row


def require_table_write(principal: Principal, table: str) -> None:
    from cumulo.lake.refs import parse_ref

    ref = parse_ref(table)
    for name in (ref.table, ref.table + "_errors"):
        principal.require("tables:Write", f"table/{ref.database}/{name}")


def table_target(session: Session, storage: Backend,
                 table: str) -> tuple[Location, pa.Schema, list[str]]:
    """Where the table's data is, its columns and its partition columns; NotFound or
    Invalid if it cannot take a delivery (or a scorer's rows)."""
    import pyarrow as pa

    from cumulo.lake import catalog, delta
    from cumulo.lake.refs import parse_ref

    ref = parse_ref(table)
    row = catalog.get_table(session, ref)
    if row.kind != "managed" or row.format != "delta":
        raise Conflict(f"{ref.name} is an external table over files: deliver into a managed "
                       "table", details={"table": ref.name})
    loc = catalog.location(storage, row)
    if not delta.exists(loc):
        raise Invalid(f"table {ref.name} has no columns yet: load a first file into it "
                      "('cumulo tables load'), or make it with CREATE TABLE ... AS SELECT",
                      details={"table": ref.name})
    table_ = delta.open_table(loc, name=ref.name)
    return loc, pa.schema(table_.schema().to_arrow()), list(table_.metadata().partition_columns)


def create_delivery(session: Session, engine: StreamEngine, storage: Backend,
                    principal: Principal, stream_name: str, *, table: str,
                    buffer: str = DEFAULT_BUFFER, partition_by: str | None = None,
                    transform: str | None = None, transform_source: str | None = None,
                    start: str = "LATEST", name: str | None = None) -> Delivery:
    """A new delivery of ``stream_name`` into ``table`` (which must exist, with columns).
    Commits."""
    from cumulo.lake.refs import parse_ref
    from cumulo.streams.transform import Transform, check_spec

    buffer_bytes, buffer_seconds = parse_buffer(buffer)
    if partition_by is not None and partition_by not in PARTITIONS:
        raise Invalid(f"--partition-by {partition_by!r} is not one of {', '.join(PARTITIONS)} "
                      "(day: the day each record arrived)", details={"field": "partition_by"})
    if start not in STARTS:
        raise Invalid(f"a delivery starts at {' or '.join(STARTS)}, not {start!r}",
                      details={"field": "start"})
    ref = parse_ref(table)
    name = name or ref.name
    if not _NAME.match(name):
        raise Invalid(f"delivery name {name[:140]!r} is not allowed: use 1-128 of letters, "
                      "digits, '_', '.' and '-'", details={"field": "name"})
    if transform is not None:
        check_spec(transform, transform_source)
    stream = service.get_stream(session, stream_name)
    require_table_write(principal, ref.name)
    if transform is not None:  # the function runs code: what a job may do
        principal.require("jobs:Submit", "job/*")
    _, schema, partitions = table_target(session, storage, ref.name)
    if partition_by == "day" and ("day" not in schema.names or "day" not in partitions):
        lacks = "is not partitioned by it" if "day" in schema.names else "has none"
        raise Invalid(f"--partition-by day writes the day each record arrived into a column "
                      f"'day' the table is partitioned by, and {ref.name} {lacks}: make the "
                      "table with a 'day' column (a date), partitioned by it ('cumulo tables "
                      "load ... --partition-by day')", details={"field": "partition_by"})
    if transform is not None:
        check = Transform(transform, transform_source)
        try:
            check.start()  # a module that cannot be imported is refused now, not later
        finally:
            check.close()
    positions = service.latest_positions(session, engine, stream) if start == "LATEST" else {}
    row = Delivery(uid=uuid.uuid4().hex, stream_id=stream.id, name=name, target=ref.name,
                   buffer_bytes=buffer_bytes, buffer_seconds=buffer_seconds,
                   partition_by=partition_by, transform=transform,
                   transform_source=transform_source, start=positions, state="running",
                   records=0, failed=0, created_by=principal.user_id)
    session.add(row)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"stream {stream_name!r} has a delivery {name!r} already; name this one "
                       "with --name, or remove that one ('cumulo streams deliveries rm')",
                       details={"delivery": name}) from exc
    return row


def set_state(session: Session, principal: Principal, stream_name: str, name: str,
              state: str) -> Delivery:
    """Stop a delivery (what it buffered is read again when it starts) or start it again
    (from where the table says). Commits."""
    stream = service.get_stream(session, stream_name)
    row = get_delivery(session, stream, name)
    require_table_write(principal, row.target)
    row.state, row.error = state, None
    if state == "running":
        row.owner = None  # any control plane may take it up
    session.commit()
    return row


def delete_delivery(session: Session, principal: Principal, stream_name: str,
                    name: str) -> None:
    """Remove a delivery; what it wrote stays in the table. Commits."""
    stream = service.get_stream(session, stream_name)
    row = get_delivery(session, stream, name)
    require_table_write(principal, row.target)
    session.delete(row)
    session.commit()


# --- running them --------------------------------------------------------------------------------


class _Runner:
    """One delivery, on a thread of its own, until it is stopped."""

    def __init__(self, owner: Deliveries, delivery_id: int) -> None:
        self.owner = owner
        self.delivery_id = delivery_id
        self.stops = Stopping()  # also ends its reader's wait
        self.stopping: threading.Event = self.stops
        self.committed: dict[str, int] = {}  # shard: the last sequence the table holds
        self.thread = threading.Thread(target=self._main, daemon=True,
                                       name=f"streams-delivery-{delivery_id}")

    def _main(self) -> None:
        while not self.stopping.is_set():
            try:
                self._run()
                return
            except (Forbidden, NotFound, Conflict, Invalid) as exc:
                # No right, no table, no stream, a table that cannot take it, a transform that
                # does not load: it stays so until someone acts, and then starts it again.
                if not self.stopping.is_set():
                    log.warning("streams: delivery %s failed: %s", self.delivery_id, exc)
                    self.owner.failed(self.delivery_id, exc)
                return
            except Exception as exc:  # the database or storage, for a while: try again
                if self.stopping.is_set():
                    return
                log.exception("streams: delivery %s stopped on an error; it starts again",
                              self.delivery_id)
                self.owner.note(self.delivery_id, f"{type(exc).__name__}: {exc}; retrying")
                self.stopping.wait(5.0)

    def _run(self) -> None:
        from cumulo.lake.refs import parse_ref
        from cumulo.streams.transform import Transform

        with self.owner.sessions() as session:
            row = session.get(Delivery, self.delivery_id)
            if row is None:
                return
            stream = session.get(Stream, row.stream_id)
            assert stream is not None
            ref = parse_ref(row.target)
            loc, schema, _ = table_target(session, self.owner.storage, ref.name)
            session.expunge(row)
            session.expunge(stream)
        transform = Transform(row.transform, row.transform_source) if row.transform else None
        batch = _Batch(self, row, stream, loc, schema)
        try:
            if transform is not None:
                transform.start()
            batch.resume()
            while not self.stopping.is_set():
                read = batch.fill()
                if batch.due():
                    batch.flush(transform)
                elif not read:  # until records come, or the buffer's interval is up
                    batch.reader.wait(batch.due_at())
        finally:
            batch.reader.close()
            if transform is not None:
                transform.close()


class _Batch:
    """A delivery's reading and writing: where each shard is, what is buffered."""

    def __init__(self, runner: _Runner, row: Delivery, stream: Stream, loc: Location,
                 schema: pa.Schema) -> None:
        self.runner = runner
        self.row = row
        self.stream = stream
        self.loc = loc
        self.schema = schema
        self.engine = runner.owner.engine
        self.reader = ShardReader(self.engine, runner.owner.sessions, stream.name,
                                  stopping=runner.stops)
        self.positions: dict[str, int] = {}  # shard: the next sequence to read
        self.errors_committed: dict[str, int] = {}
        self.buffer: list[Item] = []
        self.size = 0
        self.since = 0.0  # monotonic time the oldest buffered record was read

    def _error_loc(self) -> Location | None:
        from cumulo.lake import catalog, delta
        from cumulo.lake.refs import parse_ref

        ref = parse_ref(self.row.target + "_errors")
        with self.runner.owner.sessions() as session:
            try:
                table = catalog.get_table(session, ref)
            except NotFound:
                return None
            loc = catalog.location(self.runner.owner.storage, table)
        return loc if delta.exists(loc) else None

    def resume(self) -> None:
        """Positions from the table: after what each shard's last commit says."""
        from cumulo.lake import delta

        shards = self.reader.refresh(force=True)
        with self.runner.owner.sessions() as session:  # the table's columns may have changed
            self.loc, self.schema, _ = table_target(session, self.runner.owner.storage,
                                               self.row.target)
        ids = [app_id(self.row, s.shard_id) for s in shards]
        versions = delta.transaction_versions(self.loc, ids)
        errors_loc = self._error_loc()
        errors = delta.transaction_versions(errors_loc, ids) if errors_loc else {}
        self.positions.clear()
        self.runner.committed.clear()
        self.errors_committed.clear()
        for shard in shards:
            done = versions.get(app_id(self.row, shard.shard_id))
            if done is not None:
                self.runner.committed[shard.shard_id] = done
                self.positions[shard.shard_id] = done + 1
            else:
                self.positions[shard.shard_id] = int(self.row.start.get(shard.shard_id, 0))
            failed = errors.get(app_id(self.row, shard.shard_id))
            if failed is not None:
                self.errors_committed[shard.shard_id] = failed
        self.buffer, self.size = [], 0

    def fill(self) -> bool:
        """Read what is new, up to the buffer's size; whether anything came."""
        items = self.reader.read(self.positions, limit=_READ,
                                 max_bytes=self.row.buffer_bytes - self.size)
        if not items:
            return False
        for item in items:
            self.positions[item.shard.shard_id] = item.record.seq + 1
        if not self.buffer:
            self.since = time.monotonic()
        self.buffer += items
        self.size += sum(len(item.record.data) for item in items)
        return True

    def due_at(self) -> float:
        """When the buffer is due by its interval (``time.monotonic()``); none: never."""
        return self.since + self.row.buffer_seconds if self.buffer else float("inf")

    def due(self) -> bool:
        return bool(self.buffer) and (self.size >= self.row.buffer_bytes or
                                      time.monotonic() - self.since >= self.row.buffer_seconds)

    def flush(self, transform: Transform | None) -> None:
        """Write the buffer as one commit (and its misfits to the error table first); on a
        failure, start again from where the table says."""
        try:
            self._write(transform)
        except (Forbidden, NotFound):
            raise  # a right taken away, or the table dropped: the delivery stops
        except Exception as exc:
            log.warning("streams: delivery %s could not write a batch (%s); it reads again "
                        "from the table's last commit", self.row.name, exc)
            self.runner.owner.note(self.row.id, f"the last batch failed, retried: {exc}")
            self.runner.stopping.wait(2.0)
            self.resume()

    def _write(self, transform: Transform | None) -> None:
        import pyarrow as pa

        from cumulo.lake import delta
        from cumulo.lake.refs import parse_ref
        from cumulo.streams.rows import fit, read_fitting

        fast = None  # every record fits as it is: read by Arrow at once, no misfits
        if transform is None and self.row.partition_by is None:
            fast = read_fitting([item.record.data for item in self.buffer], self.schema)
        failures: list[tuple[Item, str]] = []
        if fast is not None:
            rows = fast
        else:
            objects, sources, failures = _decode(self.buffer, transform)
            if self.row.partition_by == "day":
                as_text = pa.types.is_string(self.schema.field("day").type)
                for obj, item in zip(objects, sources, strict=True):
                    if isinstance(obj, dict):
                        day = datetime.fromtimestamp(item.record.arrived, UTC).date()
                        obj["day"] = day.isoformat() if as_text else day
            rows, bad = fit(objects, self.schema)
            failures += [(sources[i], why) for i, why in bad.items()]
        versions: dict[str, int] = {}
        for item in self.buffer:
            versions[app_id(self.row, item.shard.shard_id)] = item.record.seq
        ref = parse_ref(self.row.target)
        with self.runner.owner.sessions() as session:
            try:
                principal = acting_as(session, self.row.created_by,
                                      what=f"delivery {self.row.name}")
            except Invalid as exc:  # its maker was deleted: no one to write as
                raise Forbidden(exc.message) from None
            require_table_write(principal, ref.name)
            # Still in the catalog, with its data: never a table made again behind its back.
            self.loc = table_target(session, self.runner.owner.storage, ref.name)[0]
        fresh = [(item, why) for item, why in failures
                 if item.record.seq > self.errors_committed.get(item.shard.shard_id, 0)]
        if fresh:
            self._write_errors(principal, fresh, versions)
        result = delta.write(self.loc, rows.to_reader(), mode="append",
                             user=principal.user_name, name=ref.name, transactions=versions)
        for item in self.buffer:
            self.runner.committed[item.shard.shard_id] = item.record.seq
        self.runner.owner.delivered(self.row.id, rows.num_rows, len(fresh), result.version)
        self.buffer, self.size = [], 0

    def _write_errors(self, principal: Principal, failures: list[tuple[Item, str]],
                      versions: dict[str, int]) -> None:
        import pyarrow as pa

        from cumulo.lake import catalog, delta
        from cumulo.lake.refs import parse_ref

        ref = parse_ref(self.row.target + "_errors")
        now = datetime.now(UTC)
        table = pa.table({
            "stream": pa.array([self.stream.name] * len(failures), pa.string()),
            "shard_id": pa.array([i.shard.shard_id for i, _ in failures], pa.string()),
            "sequence_number": pa.array([service.external_seq(i.shard, i.record.seq)
                                         for i, _ in failures], pa.string()),
            "partition_key": pa.array([i.record.key for i, _ in failures], pa.string()),
            "arrived": pa.array([datetime.fromtimestamp(i.record.arrived, UTC)
                                 for i, _ in failures], pa.timestamp("us", tz="UTC")),
            "data": pa.array([_text(i.record.data) for i, _ in failures], pa.string()),
            "reason": pa.array([why for _, why in failures], pa.string()),
            "failed_at": pa.array([now] * len(failures), pa.timestamp("us", tz="UTC"))})
        with self.runner.owner.sessions() as session:
            row = catalog.ensure_managed_table(session, principal, ref)
            loc = catalog.location(self.runner.owner.storage, row)
            delta.write(loc, table.to_reader(), mode="append", user=principal.user_name,
                        name=ref.name, transactions=versions)
            row.updated_at = utcnow()
            session.commit()
        for item, _ in failures:
            self.errors_committed[item.shard.shard_id] = item.record.seq


def _text(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


def _decode(buffer: list[Item], transform: Transform | None) -> tuple[
        list[Any], list[Item], list[tuple[Item, str]]]:
    """The records as JSON (through the transform, if any), each with where it came from;
    and those that failed, with why. Records the transform drops are in neither."""
    objects: list[Any] = []
    sources: list[Item] = []
    failures: list[tuple[Item, str]] = []
    for item in buffer:
        try:
            objects.append(json.loads(item.record.data))
            sources.append(item)
        except (ValueError, UnicodeDecodeError) as exc:
            failures.append((item, f"the record is not JSON: {exc}"))
    if transform is None:
        return objects, sources, failures
    kept: list[Any] = []
    kept_sources: list[Item] = []
    for item, (ok, value) in zip(sources, transform(objects), strict=True):
        if not ok:
            failures.append((item, str(value)))
        elif value is not None:
            kept.append(value)
            kept_sources.append(item)
    return kept, kept_sources, failures


class Deliveries:
    """The deliveries this control plane runs: those running that no live control plane
    holds are claimed (one claim wins), and run, one thread each, until they are stopped or
    removed (:class:`~cumulo.streams.claims.Claims`)."""

    def __init__(self, engine: StreamEngine, sessions: sessionmaker[Session],
                 storage: Backend, plane: Membership | None = None, *,
                 look_every: float = 2.0) -> None:
        self.engine = engine
        self.sessions = sessions
        self.storage = storage
        self.claims = Claims("deliveries", Delivery, sessions, plane,
                             lambda delivery_id: _Runner(self, delivery_id),
                             look_every=look_every)

    def start(self) -> None:
        self.claims.start()

    def wake(self) -> None:
        """Look at the deliveries now (one was made, stopped or started)."""
        self.claims.wake()

    def look(self) -> None:
        self.claims.look()

    def stop(self) -> None:
        from cumulo.streams.transform import FORKS

        self.claims.stop()
        FORKS.stop()  # the transforms' fork server, if one was started: their runners are done

    def committed(self, delivery_id: int) -> dict[str, int] | None:
        """Where a delivery run here stands (shard: last sequence in the table)."""
        runner = self.claims.runner(delivery_id)
        return dict(runner.committed) if isinstance(runner, _Runner) else None

    def delivered(self, delivery_id: int, rows: int, failed: int, version: int) -> None:
        with self.sessions() as session:
            session.execute(update(Delivery).where(Delivery.id == delivery_id).values(
                records=Delivery.records + rows, failed=Delivery.failed + failed,
                delivered_at=utcnow(), table_version=version, error=None))
            session.commit()

    def note(self, delivery_id: int, error: str) -> None:
        with self.sessions() as session:
            session.execute(update(Delivery).where(Delivery.id == delivery_id)
                            .values(error=error[:2000]))
            session.commit()

    def failed(self, delivery_id: int, exc: Exception) -> None:
        message = exc.message if isinstance(exc, CumuloError) else f"{type(exc).__name__}: {exc}"
        try:
            with self.sessions() as session:
                session.execute(update(Delivery).where(Delivery.id == delivery_id).values(
                    state="failed", error=message[:2000]))
                session.commit()
        except Exception:
            log.exception("streams: could not mark delivery %s failed", delivery_id)


def delivery_docs(session: Session, engine: StreamEngine, storage: Backend,
                  deliveries: Deliveries | None, stream: Stream) -> list[dict[str, Any]]:
    """The stream's deliveries, each with its lag: records not in the table yet, and how
    long ago the oldest of them arrived."""
    docs = []
    shards = service.shards_of(session, stream)
    for row in session.scalars(select(Delivery).where(Delivery.stream_id == stream.id)
                               .order_by(Delivery.name)):
        committed = deliveries.committed(row.id) if deliveries is not None else None
        if committed is None:
            committed = _committed_in_table(session, storage, row, shards)
        behind, oldest = 0, None
        now = time.time()
        for shard in shards:
            log_ = engine.logs.shard(stream.name, shard.shard_id)
            done = committed.get(shard.shard_id)
            position = max(log_.first_seq, done + 1 if done is not None
                           else int(row.start.get(shard.shard_id, 0)))
            if position < log_.next_seq:
                behind += log_.next_seq - position
                first = log_.read(position, limit=1)
                if first:
                    oldest = min(oldest or first[0].arrived, first[0].arrived)
        docs.append({
            "name": row.name, "table": row.target, "errors_table": row.target + "_errors",
            "state": row.state, "error": row.error, "buffer": _buffer_text(row),
            "partition_by": row.partition_by, "transform": row.transform,
            "records": row.records, "failed": row.failed,
            "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
            "table_version": row.table_version, "behind": behind,
            "millis_behind": int((now - oldest) * 1000) if oldest is not None else 0,
            "created_at": row.created_at.isoformat()})
    return docs


def _committed_in_table(session: Session, storage: Backend, row: Delivery,
                        shards: list[Shard]) -> dict[str, int]:
    from cumulo.lake import catalog, delta
    from cumulo.lake.refs import parse_ref

    try:
        loc = catalog.location(storage, catalog.get_table(session, parse_ref(row.target)))
        versions = delta.transaction_versions(loc, [app_id(row, s.shard_id) for s in shards])
    except Exception:  # the table is gone, or unreadable: the lag is unknown, shown as all
        return {}
    return {s.shard_id: v for s in shards
            if (v := versions.get(app_id(row, s.shard_id))) is not None}
