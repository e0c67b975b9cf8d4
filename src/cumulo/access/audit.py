"""The audit log: who did what to which resource, from where, and whether it was allowed.

Each entry is a row of ``audit_events`` chained to the one before it, as CloudTrail's log file
integrity chains its digests::

    hash = sha256(prev_hash + canonical JSON of the entry)

the first entry's ``prev_hash`` being 64 zeros. Editing, removing or reordering entries breaks
the chain, and :func:`verify` says where. :class:`AuditExporter` copies the entries, in order,
to the lake table ``audit.events``, where SQL reads them; that second copy also lets
:func:`verify` notice the one change the chain cannot: the newest entries removed.

Recording runs on every change and every denial, so it stays cheap: one indexed read of the
newest entry and one insert. The lake's engines (Arrow, deltalake, DuckDB) are imported only
by the exporter and by the check of the lake copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cumulo.access.models import AuditEvent
from cumulo.db import utcnow
from cumulo.errors import Conflict, Invalid, NotFound, Unavailable
from cumulo.logs import request_id as current_request_id
from cumulo.principal import Principal

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.engine import Row

    from cumulo.lake.delta import Location
    from cumulo.lake.models import LakeTable
    from cumulo.storage.backends import Backend

__all__ = ["EVENTS_TABLE", "GENESIS", "OUTCOMES", "AuditExporter", "AuditLog", "Page",
           "Report", "canonical_details", "entry_hash", "list_events", "record", "verify"]

log = logging.getLogger("cumulo.audit")

GENESIS = "0" * 64  # the prev_hash of the first entry
EVENTS_TABLE = "audit.events"  # the lake's copy
OUTCOMES = ("allowed", "denied", "failed")
Outcome = Literal["allowed", "denied", "failed"]

# Column sizes of audit_events: longer values are cut before hashing, so that what is stored
# is what was hashed (PostgreSQL refuses an over-long value; SQLite would keep it whole).
_LIMITS = {"user": 64, "action": 64, "resource": 512, "source": 64, "request_id": 64}
# One writer at a time in this process; across processes, the UNIQUE prev_hash refuses the
# second of two writers that read the same newest entry, and it tries again.
_LOCK = threading.Lock()
_ATTEMPTS = 10
# One export at a time in this process, whatever the exporters: each reads the table's highest
# seq before it appends. (Across processes, the entries' row locks take turns.)
_EXPORTING = threading.Lock()


# --- the chain ---------------------------------------------------------------------------------


def canonical_details(details: dict[str, Any]) -> str:
    """``details`` as the chain hashes it and ``audit.events`` holds it: sorted keys, no
    spaces."""
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def entry_hash(prev_hash: str, *, at: datetime, user: str | None, action: str, resource: str,
               outcome: str, source: str | None, request_id: str | None,
               details: dict[str, Any]) -> str:
    """The hash of one entry: its fields (not its seq, which the database assigns) as
    canonical JSON, after the hash of the entry before it."""
    fields = {"at": at.astimezone(UTC).isoformat(timespec="microseconds"), "user": user,
              "action": action, "resource": resource, "outcome": outcome, "source": source,
              "request_id": request_id, "details": details}
    return hashlib.sha256((prev_hash + canonical_details(fields)).encode()).hexdigest()


def _row_hash(row: Any) -> str:
    return entry_hash(row.prev_hash, at=row.at, user=row.user, action=row.action,
                      resource=row.resource, outcome=row.outcome, source=row.source,
                      request_id=row.request_id, details=row.details)


def _clip(value: str | None, field: str) -> str | None:
    # PostgreSQL refuses NUL in text: a name sent with %00 must not make a denial fail to log.
    return None if value is None else value.replace("\x00", "\ufffd")[:_LIMITS[field]]


def _plain(details: dict[str, Any] | None) -> dict[str, Any]:
    """The details as they will read back from the database's JSON column (string keys; a
    value JSON has no form for, such as a datetime, as its text)."""
    if details is None:
        return {}
    if not isinstance(details, dict):
        raise Invalid(f"audit details must be a dict, not {type(details).__name__}")
    try:
        plain: dict[str, Any] = json.loads(json.dumps(details, default=str, allow_nan=False))
    except ValueError as exc:
        raise Invalid(f"audit details cannot be stored: {exc}") from exc
    return plain


class AuditLog:
    """Appends entries to the chain, each in a short session of its own.

    ``lock`` serialises the writers of this process (by default one lock for the whole
    process); writers in other processes are told apart by the database."""

    def __init__(self, sessions: sessionmaker[Session], *, lock: threading.Lock | None = None,
                 attempts: int = _ATTEMPTS) -> None:
        self._sessions = sessions
        self._lock = lock or _LOCK
        self._attempts = attempts
        self.conflicts = 0  # appends another process won, each tried again

    def record(self, *, user: str | None, action: str, resource: str = "",
               outcome: Outcome, source: str | None = None, request_id: str | None = None,
               details: dict[str, Any] | None = None) -> AuditEvent:
        """Append one entry and commit it. ``request_id`` defaults to the request being
        served (:data:`cumulo.logs.request_id`)."""
        if outcome not in OUTCOMES:
            raise Invalid(f"audit outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        if not action:
            raise Invalid("an audit entry needs an action, e.g. 'tables:Write'")
        fields: dict[str, Any] = {
            "user": _clip(user, "user"), "action": _clip(action, "action"),
            "resource": _clip(resource, "resource") or "", "outcome": outcome,
            "source": _clip(source, "source"),
            "request_id": _clip(request_id or current_request_id.get(), "request_id"),
            "details": _plain(details),
        }
        for attempt in range(self._attempts):
            event = self._append(fields)
            if event is not None:
                return event
            self.conflicts += 1
            time.sleep(random.uniform(0, 0.002 * 2**attempt))  # let the other writer finish
        raise Unavailable(f"the audit log is busy: {self._attempts} attempts to append were "
                          "each overtaken by another writer")

    def _append(self, fields: dict[str, Any]) -> AuditEvent | None:
        """Append after the newest entry; None when another process appended first."""
        with self._lock, self._sessions() as session:
            session.expire_on_commit = False  # the caller reads the entry after we close
            prev = session.scalar(select(AuditEvent.hash).order_by(AuditEvent.seq.desc())
                                  .limit(1)) or GENESIS
            at = utcnow()
            event = AuditEvent(at=at, prev_hash=prev, hash=entry_hash(prev, at=at, **fields),
                               exported=False, **fields)
            session.add(event)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return None
            return event


def record(sessions: sessionmaker[Session], *, user: str | None, action: str,
           resource: str = "", outcome: Outcome, source: str | None = None,
           request_id: str | None = None, details: dict[str, Any] | None = None) -> AuditEvent:
    """Append one entry to the audit log (see :meth:`AuditLog.record`)."""
    return AuditLog(sessions).record(user=user, action=action, resource=resource,
                                     outcome=outcome, source=source, request_id=request_id,
                                     details=details)


# --- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    events: list[AuditEvent]  # newest first
    next: int | None  # pass as ``before_seq`` for the next, older page; None: no more


def _like(glob: str) -> str:
    """A glob (``tables:*``, ``?``) as a LIKE pattern, ``%`` and ``_`` taken literally."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def list_events(session: Session, *, user: str | None = None, action: str | None = None,
                outcome: str | None = None, since: datetime | None = None,
                until: datetime | None = None, limit: int = 100,
                before_seq: int | None = None) -> Page:
    """Entries newest first, ``limit`` at a time. ``action`` may be a glob (``tables:*``) and
    matches in any case; ``since`` is inclusive, ``until`` exclusive (naive times are UTC);
    ``before_seq`` pages."""
    if limit < 1:
        raise Invalid(f"limit must be 1 or more, not {limit}")
    if outcome is not None and outcome not in OUTCOMES:
        raise Invalid(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit + 1)
    if user is not None:
        query = query.where(AuditEvent.user == user)
    if action is not None:  # in any case, as IAM reads action names: tables:write, tables:Write
        query = query.where(AuditEvent.action.ilike(_like(action), escape="\\"))
    if outcome is not None:
        query = query.where(AuditEvent.outcome == outcome)
    if since is not None:
        query = query.where(AuditEvent.at >= _aware(since))
    if until is not None:
        query = query.where(AuditEvent.at < _aware(until))
    if before_seq is not None:
        query = query.where(AuditEvent.seq < before_seq)
    events = list(session.scalars(query))
    more = len(events) > limit
    events = events[:limit]
    return Page(events=events, next=events[-1].seq if more else None)


# --- the copy in the lake ----------------------------------------------------------------------

# The catalog's owner of the audit database and table: no user (the platform made them).
_PLATFORM = Principal(None, "cumulo", False, 0)  # type: ignore[arg-type]
_DESCRIPTION = "the audit log, copied from the control plane (cumulo audit); append-only"


def _schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("user", pa.string()),
        pa.field("action", pa.string(), nullable=False),
        pa.field("resource", pa.string(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("request_id", pa.string()),
        pa.field("details", pa.string(), nullable=False),  # canonical JSON
        pa.field("prev_hash", pa.string(), nullable=False),
        pa.field("hash", pa.string(), nullable=False),
    ])


_COLUMNS = ("seq", "at", "user", "action", "resource", "outcome", "source", "request_id",
            "details", "prev_hash", "hash")


def _arrow(rows: Sequence[AuditEvent]) -> pa.Table:
    import pyarrow as pa

    values: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
    for row in rows:
        for name in _COLUMNS:
            value = getattr(row, name)
            values[name].append(canonical_details(value) if name == "details" else value)
    return pa.table(values, schema=_schema())


def _events_ref() -> Any:
    from cumulo.lake.refs import parse_ref

    return parse_ref(EVENTS_TABLE)


def _lake_max_seq(loc: Location) -> int:
    """The highest seq in ``audit.events``; 0 when it holds none yet."""
    from cumulo.lake import delta

    try:
        return _max_seq(delta.open_table(loc, name=EVENTS_TABLE))
    except NotFound:
        return 0


def _max_seq(table: Any) -> int:
    """The highest seq of a version of the table, from its files' statistics in the Delta
    log; the seq column itself is read only where a file was written without them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    files = pa.table(table.get_add_actions(flatten=True))
    if files.num_rows == 0:
        return 0
    if "max.seq" in files.column_names and files["max.seq"].null_count == 0:
        top = pc.max(files["max.seq"]).as_py()
    else:
        top = pc.max(table.to_pyarrow_dataset().to_table(columns=["seq"])["seq"]).as_py()
    return int(top or 0)


class AuditExporter:
    """Copies new entries, in seq order, to the lake table ``audit.events``, every
    ``interval`` seconds on a thread of its own, ``batch`` entries per Delta commit.

    An entry is marked exported only after its commit; one copied whose mark was lost (a crash
    between the two) is skipped the next time, since everything up to the table's highest seq
    is in it already. Two control planes on one PostgreSQL take turns: each locks the entries it
    copies (``FOR UPDATE``) until they are marked."""

    def __init__(self, sessions: sessionmaker[Session], storage: Backend, *,
                 interval: float = 2.0, batch: int = 5000) -> None:
        self.sessions = sessions
        self.storage = storage
        self.interval = interval
        self.batch = batch
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: str | None = None  # the last failure logged, so it is logged once

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="audit-export", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, then copy what was recorded up to now."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread = None
        self._tick()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self._tick()

    def _tick(self) -> None:
        try:
            self.export_once()
        except Exception as exc:  # storage or the database away: the entries wait, in order
            text = f"{type(exc).__name__}: {exc}"
            if text != self._failing:
                log.exception("copying audit entries to %s failed; trying again every %ss",
                              EVENTS_TABLE, self.interval)
            self._failing = text
        else:
            if self._failing is not None:
                log.info("copying audit entries to %s works again", EVENTS_TABLE)
            self._failing = None

    def export_once(self) -> int:
        """Copy every entry not copied yet; return how many rows were appended."""
        with _EXPORTING:
            total = 0
            while True:
                appended, more = self._export_batch()
                total += appended
                if not more:
                    return total

    def _export_batch(self) -> tuple[int, bool]:
        with self.sessions() as session, self.sessions() as lake_session:
            rows = list(session.scalars(
                select(AuditEvent).where(AuditEvent.exported.is_(False))
                .order_by(AuditEvent.seq).limit(self.batch).with_for_update()))
            if not rows:
                return 0, False
            from cumulo.lake import catalog, delta  # not before: an idle server loads no lake

            table = self._table(lake_session)
            loc = catalog.location(self.storage, table)
            done = _lake_max_seq(loc)
            fresh = [row for row in rows if row.seq > done]
            if fresh:
                delta.write(loc, _arrow(fresh).to_reader(), mode="append", user="cumulo",
                            name=EVENTS_TABLE)
                table.updated_at = utcnow()
                lake_session.commit()
            session.execute(update(AuditEvent)
                            .where(AuditEvent.seq >= rows[0].seq, AuditEvent.seq <= rows[-1].seq)
                            .values(exported=True))
            session.commit()
            return len(fresh), len(rows) == self.batch

    @staticmethod
    def _table(session: Session) -> LakeTable:
        """The catalog's ``audit.events``, registered (with its database) on first use."""
        from cumulo.lake import catalog

        ref = _events_ref()
        try:
            catalog.get_database(session, ref.database)
        except NotFound:
            with contextlib.suppress(Conflict):  # another control plane made it just now
                catalog.create_database(session, _PLATFORM, ref.database, _DESCRIPTION)
        return catalog.ensure_managed_table(session, _PLATFORM, ref)


# --- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """What :func:`verify` found. ``first_bad`` is the seq of the first entry that fails its
    check (for removed entries, the one after them); ``where`` says which copy is wrong."""

    ok: bool
    entries: int  # entries of the database checked
    first_bad: int | None = None
    problem: str | None = None
    where: Literal["database", "lake"] | None = None
    lake_entries: int | None = None  # of them, compared with audit.events; None: not checked


_DB_COLUMNS = tuple(getattr(AuditEvent, name) for name in _COLUMNS)


def _db_rows(session: Session, batch: int) -> Iterator[Row[Any]]:
    """Every entry in seq order, ``batch`` rows at a time (never the whole table at once)."""
    after: int | None = None
    while True:
        query = select(*_DB_COLUMNS).order_by(AuditEvent.seq).limit(batch)
        if after is not None:
            query = query.where(AuditEvent.seq > after)
        rows = session.execute(query).all()
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1].seq


def _chain_problem(prev_seq: int | None, prev_hash: str, row: Any) -> str | None:
    if row.prev_hash != prev_hash:
        if prev_seq is None:
            return (f"the first entry, seq {row.seq}, does not start the chain: entries before "
                    "it were removed")
        if row.seq != prev_seq + 1:
            return (f"entries between seq {prev_seq} and seq {row.seq} are missing: seq "
                    f"{row.seq} was chained to an entry that is no longer there")
        return (f"seq {row.seq} does not follow seq {prev_seq}: the entries were reordered, or "
                f"seq {prev_seq} was replaced")
    if _row_hash(row) != row.hash:
        return f"seq {row.seq} was changed after it was recorded: it no longer matches its hash"
    return None


def verify(session: Session, *, storage: Backend | None = None, batch: int = 1000) -> Report:
    """Walk the chain in seq order and recompute each hash; with ``storage``, compare every
    entry copied to ``audit.events`` with the database's."""
    lake = _LakeCopy(session, storage, batch) if storage is not None else None
    try:
        if lake is not None and lake.problem is not None:
            return Report(False, 0, None, lake.problem, "lake", 0)
        prev_seq: int | None = None
        prev_hash = GENESIS
        checked = 0
        for row in _db_rows(session, batch):
            checked += 1
            problem = _chain_problem(prev_seq, prev_hash, row)
            if problem is not None:
                return Report(False, checked, row.seq, problem, "database",
                              lake.compared if lake is not None else None)
            if lake is not None and (found := lake.check(row)) is not None:
                return Report(False, checked, found[0], found[1], "lake", lake.compared)
            prev_seq, prev_hash = row.seq, row.hash
        if lake is not None and (found := lake.finish()) is not None:
            return Report(False, checked, found[0], found[1], "lake", lake.compared)
        return Report(True, checked, lake_entries=lake.compared if lake is not None else None)
    finally:
        if lake is not None:
            lake.close()


def _shape_problem(dataset: Any) -> str | None:
    """What stops the rows of ``audit.events`` being compared: a column lost or retyped, a row
    without a seq (someone else wrote to the table)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = dataset.schema
    missing = [c for c in _COLUMNS if c not in schema.names]
    if missing:
        return f"{EVENTS_TABLE} has lost its column(s) {', '.join(missing)}"
    wanted = {"seq": pa.types.is_integer, "at": pa.types.is_timestamp}
    retyped = [c for c in _COLUMNS if not wanted.get(c, _is_text)(schema.field(c).type)]
    if retyped:
        return f"{EVENTS_TABLE}'s column(s) {', '.join(retyped)} no longer hold what they did"
    unnumbered = dataset.count_rows(filter=pc.field("seq").is_null())
    if unnumbered:
        return f"{EVENTS_TABLE} holds {unnumbered} row(s) without a seq"
    return None


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_string_view(kind))


class _LakeCopy:
    """``audit.events`` read in seq order (DuckDB sorts it, spilling to disk if it must), to
    walk beside the database's entries. Every entry up to the table's highest seq, or up to
    the highest marked exported, must be in it once, the same in every column."""

    def __init__(self, session: Session, storage: Backend, batch: int) -> None:
        self.problem: str | None = None
        self.compared = 0
        self._rows: Iterator[dict[str, Any]] = iter(())
        self._head: dict[str, Any] | None = None
        self._last: int | None = None  # the last seq matched
        self._con: Any = None
        self._tmp: str | None = None
        # What was marked exported is read before the table is opened: a mark follows its
        # commit, so the table opened afterwards holds every entry marked by then.
        marked = session.scalar(select(func.max(AuditEvent.seq))
                                .where(AuditEvent.exported.is_(True)))
        self._dropped = False
        self.upto = int(marked or 0)
        try:
            self._open(session, storage, batch)
        except BaseException:
            self.close()
            raise

    def _open(self, session: Session, storage: Backend, batch: int) -> None:
        from cumulo.lake import catalog, delta

        try:
            table = catalog.get_table(session, _events_ref())
            data = delta.open_table(catalog.location(storage, table), name=EVENTS_TABLE)
        except NotFound:
            self._dropped = self.upto > 0  # copied to, and gone since: dropped
            return
        dataset = data.to_pyarrow_dataset()
        self.problem = _shape_problem(dataset)
        if self.problem is not None:
            return
        self.upto = max(self.upto, _max_seq(data))
        self._rows = self._sorted(dataset, batch)
        self._advance()

    def _sorted(self, dataset: Any, batch: int) -> Iterator[dict[str, Any]]:
        import duckdb

        self._tmp = tempfile.mkdtemp(prefix="cumulo-audit-verify-")
        self._con = duckdb.connect(config={"memory_limit": "256MiB", "temp_directory": self._tmp,
                                           "python_enable_replacements": False})
        self._con.register("lake_events", dataset)
        columns = ", ".join(f'"{c}"' for c in _COLUMNS if c != "at")
        reader = self._con.sql(f'SELECT {columns}, epoch_us("at") AS at_us FROM lake_events '
                               "ORDER BY seq").to_arrow_reader(batch)
        for part in reader:
            for row in part.to_pylist():
                row["at"] = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
                    microseconds=row.pop("at_us"))
                yield row

    def _advance(self) -> None:
        self._head = next(self._rows, None)

    def _stray(self, *, past_end: bool = False) -> tuple[int, str]:
        """The problem with a lake row that matches no database entry at its place."""
        assert self._head is not None
        seq = int(self._head["seq"])
        if seq == self._last:
            return seq, f"seq {seq} is in {EVENTS_TABLE} more than once"
        why = ": the newest entries were removed from the database" if past_end else ""
        return seq, f"seq {seq} is in {EVENTS_TABLE} but not in the database{why}"

    def check(self, row: Any) -> tuple[int, str] | None:
        """Compare one database entry (in seq order) with the lake's; the first problem."""
        if row.seq > self.upto:
            return None
        if self._head is not None and self._head["seq"] < row.seq:
            return self._stray()
        if self._head is None or self._head["seq"] > row.seq:
            if self._dropped:
                return row.seq, (f"{EVENTS_TABLE} is gone (dropped?), but entries up to seq "
                                 f"{self.upto} were copied to it")
            return row.seq, f"seq {row.seq} is missing from {EVENTS_TABLE}"
        lake, self._last = self._head, row.seq
        self._advance()
        self.compared += 1
        differ = [c for c in _COLUMNS if lake[c] != (
            canonical_details(row.details) if c == "details" else getattr(row, c))]
        if differ:
            return row.seq, (f"seq {row.seq} in {EVENTS_TABLE} differs from the database in "
                             f"{', '.join(differ)}: the lake copy was changed")
        return None

    def finish(self) -> tuple[int, str] | None:
        """After the last database entry: a lake row left over is a problem."""
        return self._stray(past_end=True) if self._head is not None else None

    def close(self) -> None:
        if self._con is not None:
            with contextlib.suppress(Exception):
                self._con.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
