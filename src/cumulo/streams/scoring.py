"""Real-time scoring: a stream's records sent through an endpoint as they come, each written
with its prediction to another stream or to a lake table.

``cumulo streams score clicks --endpoint churn --to-stream scored`` makes a scorer. The
control plane that claims it (:mod:`cumulo.streams.claims`) runs it on a thread: it reads every
shard (parents before children after a reshard: :mod:`cumulo.streams.reader`, which sleeps on
the shards' wake-ups while nothing comes), sends the records, JSON objects, to the
endpoint in batches (``{"dataframe_records": [...]}``, through the same forwarding as
``/endpoints/NAME/invocations``), and writes each record with a ``prediction`` field: into
the output stream under the same partition key (and hash key), or as a row of the table.

Where it is read to, per shard, is kept on the scorer's row and moved after each batch is
written: a scorer that starts again (a restart, a stop and start, another control plane
taking it over) goes on from there. Into a stream that is at least once (a crash between the
put and the move sends the batch again); into a table exactly once, as each commit also
records its shards' last sequences (Delta app transactions), which win when the row is behind.

A record that is not a JSON object, one the endpoint refuses (a batch it refuses is sent
again a record at a time, to find which), or one whose row does not fit the table, is
counted as failed, and the last reason is kept. An endpoint that does not answer (stopped,
failing, deleted, not started yet) drops nothing: the scorer is ``paused``, says why, and
tries the same batch again every few seconds. It writes as the user who made it: its rights
are asked again before each batch, and a refusal stops it (``failed``, with the reason).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cumulo.access.users import acting_as
from cumulo.db import utcnow
from cumulo.errors import Conflict, CumuloError, Forbidden, Invalid, NotFound
from cumulo.principal import Principal
from cumulo.streams import service
from cumulo.streams.claims import Claims
from cumulo.streams.models import Scorer, Stream
from cumulo.streams.reader import Item, ShardReader, Stopping
from cumulo.streams.service import StreamEngine

if TYPE_CHECKING:
    from cumulo.leases import Membership
    from cumulo.storage.backends import Backend

__all__ = ["DEFAULT_BATCH", "PREDICTION", "Invoke", "Scorers", "create_scorer",
           "delete_scorer", "get_scorer", "scorer_docs", "set_state"]

log = logging.getLogger("cumulo.streams")

DEFAULT_BATCH = 100
MAX_BATCH = 1000
PREDICTION = "prediction"  # the field (or column) each record's prediction goes to
PAUSE_SECONDS = 5.0  # between tries of an endpoint that does not answer
STARTS = ("LATEST", "TRIM_HORIZON")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
# The endpoint's answers that are about the records (its model refused or failed on them):
# the batch is sent again a record at a time. Any other answer pauses the scorer.
_REFUSALS = (400, 413, 422)

# Sends a body to an endpoint's invocations (from any thread): the endpoint's status and
# answer, when they come. Given by the server (cumulo.serving's forwarding).
Invoke = Callable[[str, bytes], "Future[tuple[int, bytes]]"]


# --- the rows ------------------------------------------------------------------------------------


def get_scorer(session: Session, stream: Stream, name: str) -> Scorer:
    row = session.scalar(select(Scorer).where(Scorer.stream_id == stream.id,
                                              Scorer.name == name))
    if row is None:
        raise NotFound(f"stream {stream.name!r} has no scorer {name!r}; 'cumulo streams "
                       f"scorers ls {stream.name}' lists them", details={"scorer": name})
    return row


def _require(principal: Principal, stream: str, endpoint: str, to_stream: str | None,
             to_table: str | None) -> None:
    """What a scorer does, as its maker: read the stream, invoke the endpoint, write out."""
    from cumulo.lake.refs import parse_ref

    principal.require("streams:Read", f"stream/{stream}")
    principal.require("endpoints:Invoke", f"endpoint/{endpoint}")
    if to_stream is not None:
        principal.require("streams:Write", f"stream/{to_stream}")
    if to_table is not None:
        ref = parse_ref(to_table)
        principal.require("tables:Write", f"table/{ref.database}/{ref.table}")


def create_scorer(session: Session, engine: StreamEngine, storage: Backend,
                  principal: Principal, stream_name: str, *, endpoint: str,
                  to_stream: str | None = None, to_table: str | None = None,
                  batch: int = DEFAULT_BATCH, start: str = "LATEST",
                  name: str | None = None) -> Scorer:
    """A new scorer of ``stream_name`` through ``endpoint`` into ``to_stream`` or
    ``to_table`` (which must exist; a table with the records' columns and ``prediction``).
    Commits."""
    from cumulo.lake.refs import parse_ref
    from cumulo.serving.endpoints import get_endpoint
    from cumulo.streams.delivery import table_target

    if (to_stream is None) == (to_table is None):
        raise Invalid("give a scorer --to-stream STREAM or --to-table DATABASE.TABLE: one "
                      "of them", details={"field": "to_stream"})
    if not 1 <= batch <= MAX_BATCH:
        raise Invalid(f"--batch is 1 to {MAX_BATCH} records a request, not {batch}",
                      details={"field": "batch"})
    if start not in STARTS:
        raise Invalid(f"a scorer starts at {' or '.join(STARTS)}, not {start!r}",
                      details={"field": "start"})
    if to_stream == stream_name:
        raise Invalid(f"--to-stream {to_stream!r} is the stream scored: its own output would "
                      "be scored again; write to another stream", details={"field": "to_stream"})
    if to_table is not None:
        to_table = parse_ref(to_table).name
    name = name or endpoint
    if not _NAME.match(name):
        raise Invalid(f"scorer name {name[:140]!r} is not allowed: use 1-128 of letters, "
                      "digits, '_', '.' and '-'", details={"field": "name"})
    stream = service.get_stream(session, stream_name)
    get_endpoint(session, endpoint)  # NotFound: names the way to list them
    if to_stream is not None:
        try:
            service.get_stream(session, to_stream)
        except NotFound:
            raise NotFound(f"output stream {to_stream!r} does not exist: create it first "
                           f"('cumulo streams create {to_stream}')",
                           details={"stream": to_stream}) from None
    _require(principal, stream_name, endpoint, to_stream, to_table)
    if to_table is not None:
        _, schema, _ = table_target(session, storage, to_table)
        if PREDICTION not in schema.names:
            raise Invalid(f"table {to_table} has no column {PREDICTION!r}: each record's "
                          f"prediction is written there; add it to the table",
                          details={"field": "to_table"})
    positions = service.latest_positions(session, engine, stream) if start == "LATEST" else {}
    row = Scorer(uid=uuid.uuid4().hex, stream_id=stream.id, name=name, endpoint=endpoint,
                 to_stream=to_stream, to_table=to_table, batch=batch, positions=positions,
                 state="running", records=0, failed=0, created_by=principal.user_id)
    session.add(row)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"stream {stream_name!r} has a scorer {name!r} already; name this one "
                       "with --name, or remove that one ('cumulo streams scorers rm')",
                       details={"scorer": name}) from exc
    return row


def set_state(session: Session, principal: Principal, stream_name: str, name: str,
              state: str) -> Scorer:
    """Stop a scorer, or start it again (also once it failed or paused) from where it was.
    Commits."""
    stream = service.get_stream(session, stream_name)
    row = get_scorer(session, stream, name)
    _require(principal, stream_name, row.endpoint, row.to_stream, row.to_table)
    row.state, row.error = state, None
    if state == "running":
        row.owner = None  # any control plane may take it up
    session.commit()
    return row


def delete_scorer(session: Session, principal: Principal, stream_name: str, name: str) -> None:
    """Remove a scorer; what it wrote stays. Commits."""
    stream = service.get_stream(session, stream_name)
    row = get_scorer(session, stream, name)
    _require(principal, stream_name, row.endpoint, row.to_stream, row.to_table)
    session.delete(row)
    session.commit()


def scorer_docs(session: Session, engine: StreamEngine, stream: Stream) -> list[dict[str, Any]]:
    """The stream's scorers, each with its lag: records not scored yet, and how long ago the
    oldest of them arrived."""
    shards = service.shards_of(session, stream)
    docs = []
    now = time.time()
    for row in session.scalars(select(Scorer).where(Scorer.stream_id == stream.id)
                               .order_by(Scorer.name)):
        behind, oldest = 0, None
        for shard in shards:
            log_ = engine.logs.shard(stream.name, shard.shard_id)
            position = max(log_.first_seq, int(row.positions.get(shard.shard_id, 0)))
            if position < log_.next_seq:
                behind += log_.next_seq - position
                first = log_.read(position, limit=1)
                if first:
                    oldest = min(oldest or first[0].arrived, first[0].arrived)
        docs.append({
            "name": row.name, "endpoint": row.endpoint, "to_stream": row.to_stream,
            "to_table": row.to_table, "batch": row.batch, "state": row.state,
            "error": row.error, "records": row.records, "failed": row.failed,
            "last_failure": row.last_failure,
            "scored_at": row.scored_at.isoformat() if row.scored_at else None,
            "behind": behind,
            "millis_behind": int((now - oldest) * 1000) if oldest is not None else 0,
            "created_at": row.created_at.isoformat()})
    return docs


# --- running them --------------------------------------------------------------------------------


class _Stopped(Exception):
    """The scorer was stopped while it waited for the endpoint."""


def _app_id(row: Scorer, shard_id: str) -> str:
    return f"cumulo.streams.score/{row.uid}/{shard_id}"


def _message(content: bytes) -> tuple[str, str]:
    """An endpoint's error answer: its code and message (or the text, if it is not ours)."""
    try:
        error = orjson.loads(content)["error"]
        return str(error.get("code", "")), str(error.get("message", ""))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return "", content[:500].decode(errors="replace")


class _Scoring:
    """One scorer, on a thread of its own, until it is stopped."""

    def __init__(self, owner: Scorers, scorer_id: int) -> None:
        self.owner = owner
        self.scorer_id = scorer_id
        self.stops = Stopping()  # also ends its reader's wait
        self.stopping: threading.Event = self.stops
        self.thread = threading.Thread(target=self._main, daemon=True,
                                       name=f"streams-scorer-{scorer_id}")
        self.positions: dict[str, int] = {}  # shard: the next sequence to read
        self.paused: str | None = None  # why, while the endpoint does not answer

    def _main(self) -> None:
        while not self.stopping.is_set():
            try:
                self._run()
                return
            except _Stopped:
                return
            except (Forbidden, NotFound, Conflict, Invalid) as exc:
                # No right, no stream, no output: so until someone acts and starts it again.
                if not self.stopping.is_set():
                    log.warning("streams: scorer %s failed: %s", self.scorer_id, exc)
                    self.owner.update(self.scorer_id, state="failed", error=exc.message[:2000])
                return
            except Exception as exc:  # the database or storage, for a while: try again
                if self.stopping.is_set():
                    return
                log.exception("streams: scorer %s stopped on an error; it starts again",
                              self.scorer_id)
                self.owner.update(self.scorer_id,
                                  error=f"{type(exc).__name__}: {exc}; retrying"[:2000])
                self.stopping.wait(PAUSE_SECONDS)

    def _run(self) -> None:
        with self.owner.sessions() as session:
            row = session.get(Scorer, self.scorer_id)
            if row is None:
                return
            stream = session.get(Stream, row.stream_id)
            assert stream is not None
            session.expunge(row)
            session.expunge(stream)
        self.row, self.stream = row, stream
        self.positions = {k: int(v) for k, v in row.positions.items()}
        reader = ShardReader(self.owner.engine, self.owner.sessions, stream.name,
                             stopping=self.stops)
        try:
            if row.to_table is not None:
                self._positions_from_table(reader)
            while not self.stopping.is_set():
                # Up to a batch of records not scored yet; positions move once it is written.
                items = reader.read(self.positions, limit=row.batch)
                if not items:
                    reader.wait(float("inf"))  # until records come
                    continue
                if not self._handle(items):
                    return
        finally:
            reader.close()

    # -- reading ---------------------------------------------------------------------------------

    def _positions_from_table(self, reader: ShardReader) -> None:
        """A table says what it holds: past the row's positions if the row was not moved
        after the last commit (a crash between the two)."""
        from cumulo.lake import delta
        from cumulo.streams.delivery import table_target

        assert self.row.to_table is not None
        with self.owner.sessions() as session:
            loc, _, _ = table_target(session, self.owner.storage, self.row.to_table)
        shards = reader.refresh(force=True)
        done = delta.transaction_versions(loc, [_app_id(self.row, s.shard_id) for s in shards])
        for shard in shards:
            last = done.get(_app_id(self.row, shard.shard_id))
            if last is not None:
                self.positions[shard.shard_id] = max(self.positions.get(shard.shard_id, 0),
                                                     last + 1)

    # -- scoring ---------------------------------------------------------------------------------

    def _handle(self, items: list[Item]) -> bool:
        """Score a batch and write it; False if the scorer was stopped first (the batch is
        read again when it starts)."""
        principal = self._principal()
        objects: list[tuple[Item, dict[str, Any]]] = []
        failures: list[tuple[Item, str]] = []
        for item in items:
            try:
                obj = orjson.loads(item.record.data)
            except orjson.JSONDecodeError as exc:
                failures.append((item, f"the record is not JSON: {exc}"))
                continue
            if not isinstance(obj, dict):
                failures.append((item, f"the record is a JSON {type(obj).__name__}, not an "
                                       "object of the model's columns"))
                continue
            objects.append((item, obj))
        scored = self._score(objects, failures)
        if scored is None:
            return False
        if self.row.to_stream is not None:
            written = self._to_stream(scored, failures)
        else:
            written = self._to_table(principal, items, scored, failures)
        for item in items:
            self.positions[item.shard.shard_id] = item.record.seq + 1
        last_failure = None
        if failures:
            item, why = failures[-1]
            last_failure = (f"{why} (shard {item.shard.shard_id}, sequence "
                            f"{service.external_seq(item.shard, item.record.seq)})")[:2000]
        values: dict[str, Any] = {"positions": dict(self.positions),
                                  "records": Scorer.records + written,
                                  "failed": Scorer.failed + len(failures),
                                  "scored_at": utcnow()}
        if last_failure is not None:
            values["last_failure"] = last_failure
        if not self.owner.update(self.scorer_id, **values):
            raise _Stopped  # taken over by another control plane, or removed
        return True

    def _principal(self) -> Principal:
        row = self.row
        with self.owner.sessions() as session:
            try:
                principal = acting_as(session, row.created_by, what=f"scorer {row.name}")
            except Invalid as exc:  # its maker was deleted: no one to score as
                raise Forbidden(exc.message) from None
            _require(principal, self.stream.name, row.endpoint, row.to_stream, row.to_table)
        return principal

    def _score(self, objects: list[tuple[Item, dict[str, Any]]],
               failures: list[tuple[Item, str]]) -> list[tuple[Item, dict[str, Any], Any]] | None:
        """Each record with its prediction; those the endpoint refuses to ``failures``. None
        if the scorer was stopped meanwhile."""
        if not objects:
            return []
        answer = self._predict([obj for _, obj in objects])
        if isinstance(answer, list):
            return [(item, obj, p) for (item, obj), p in zip(objects, answer, strict=True)]
        if len(objects) > 1:  # which of them? one at a time
            scored = []
            for item, obj in objects:
                alone = self._predict([obj])
                if isinstance(alone, list):
                    scored.append((item, obj, alone[0]))
                else:
                    failures.append((item, f"the endpoint refused it: {alone}"))
            return scored
        failures.append((objects[0][0], f"the endpoint refused it: {answer}"))
        return []

    def _predict(self, rows: list[dict[str, Any]]) -> list[Any] | str:
        """The endpoint's predictions for ``rows``, or why it refused them; while it does not
        answer, the scorer is paused and tries again (raises _Stopped if stopped)."""
        body = orjson.dumps({"dataframe_records": rows})
        while True:
            try:
                status, content = self._call(body)
            except Invalid as exc:  # too large for the endpoint: about the records
                return exc.message
            except _Stopped:
                raise
            except Exception as exc:
                reason = exc.message if isinstance(exc, CumuloError) else \
                    f"could not be reached ({type(exc).__name__}: {exc})"
            else:
                if status == 200:
                    self._resume()
                    return self._predictions(content, len(rows))
                code, message = _message(content)
                if status in _REFUSALS or (status == 500 and code == "model_error"):
                    self._resume()
                    return f"{status} {message}"
                reason = f"answered {status}: {message}"
            self._pause(f"endpoint {self.row.endpoint!r}: {reason}")
            if self.stopping.wait(PAUSE_SECONDS):
                raise _Stopped

    @staticmethod
    def _predictions(content: bytes, count: int) -> list[Any] | str:
        try:
            predictions = orjson.loads(content)["predictions"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return "its answer has no 'predictions'"
        if not isinstance(predictions, list) or len(predictions) != count:
            got = len(predictions) if isinstance(predictions, list) else "no list of"
            return f"it answered {got} predictions for {count} records"
        return predictions

    def _call(self, body: bytes) -> tuple[int, bytes]:
        future = self.owner.invoke(self.row.endpoint, body)
        while True:
            try:
                return future.result(timeout=0.25)
            except TimeoutError:
                if self.stopping.is_set():
                    future.cancel()
                    raise _Stopped from None
            except CancelledError:
                raise _Stopped from None

    def _pause(self, reason: str) -> None:
        message = (f"paused: {reason}; scoring waits (nothing is dropped) and tries again "
                   f"every {PAUSE_SECONDS:.0f} s")
        if self.paused != message:
            log.warning("streams: scorer %s %s", self.row.name, message)
            self.paused = message
            if not self.owner.update(self.scorer_id, state="paused", error=message[:2000]):
                raise _Stopped

    def _resume(self) -> None:
        if self.paused is not None:
            self.paused = None
            if not self.owner.update(self.scorer_id, state="running", error=None):
                raise _Stopped

    # -- writing ---------------------------------------------------------------------------------

    def _to_stream(self, scored: list[tuple[Item, dict[str, Any], Any]],
                   failures: list[tuple[Item, str]]) -> int:
        assert self.row.to_stream is not None
        records = []
        for item, obj, prediction in scored:
            data = orjson.dumps({**obj, PREDICTION: prediction},
                                option=orjson.OPT_SERIALIZE_NUMPY)
            if len(data) > service.MAX_RECORD:
                failures.append((item, f"with its prediction the record is {len(data)} "
                                       f"bytes, over a stream's {service.MAX_RECORD}"))
                continue
            records.append((item.record.key, data, item.record.hash_key))
        if records:
            with self.owner.sessions() as session:
                try:
                    target = service.get_stream(session, self.row.to_stream)
                except NotFound:
                    raise NotFound(f"output stream {self.row.to_stream!r} was deleted: create "
                                   "it again, then start the scorer") from None
                self.owner.engine.put(session, target, records)
        return len(records)

    def _to_table(self, principal: Principal, items: list[Item],
                  scored: list[tuple[Item, dict[str, Any], Any]],
                  failures: list[tuple[Item, str]]) -> int:
        from cumulo.lake import delta
        from cumulo.streams.delivery import table_target
        from cumulo.streams.rows import fit

        assert self.row.to_table is not None
        with self.owner.sessions() as session:
            loc, schema, _ = table_target(session, self.owner.storage, self.row.to_table)
        rows, bad = fit([{**obj, PREDICTION: p} for _, obj, p in scored], schema)
        failures += [(scored[i][0], why) for i, why in sorted(bad.items())]
        versions = {_app_id(self.row, item.shard.shard_id): item.record.seq for item in items}
        delta.write(loc, rows.to_reader(), mode="append", user=principal.user_name,
                    name=self.row.to_table, transactions=versions)
        return int(rows.num_rows)


class Scorers:
    """The scorers this control plane runs: those running (or paused) that no live control
    plane holds are claimed, and run, one thread each, until they are stopped or removed.
    ``invoke`` sends a body to an endpoint."""

    def __init__(self, engine: StreamEngine, sessions: sessionmaker[Session],
                 storage: Backend, plane: Membership | None = None, *, invoke: Invoke,
                 look_every: float = 2.0) -> None:
        self.engine = engine
        self.sessions = sessions
        self.storage = storage
        self.invoke = invoke
        self.claims = Claims("scorers", Scorer, sessions, plane,
                             lambda scorer_id: _Scoring(self, scorer_id),
                             states=("running", "paused"), look_every=look_every)

    def start(self) -> None:
        self.claims.start()

    def wake(self) -> None:
        """Look at the scorers now (one was made, stopped or started)."""
        self.claims.wake()

    def stop(self) -> None:
        self.claims.stop()

    def update(self, scorer_id: int, **values: Any) -> bool:
        """Write a scorer's progress or state, if it is still this control plane's and
        running (not stopped or removed meanwhile); whether it was."""
        with self.sessions() as session:
            done = session.execute(update(Scorer).where(
                Scorer.id == scorer_id, Scorer.owner == self.claims.me,
                Scorer.state.in_(("running", "paused"))).values(**values)).rowcount  # type: ignore[attr-defined]
            session.commit()
        return bool(done)
