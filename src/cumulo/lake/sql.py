"""SQL over the lake on DuckDB, sandboxed, with time travel, CTAS and INSERT as the ETL path.

Each query gets a fresh in-memory DuckDB connection that can read only the files of the tables
it names: tables become views over their Parquet files (of what the caller's column masks and
row filters let them see: ``access``), then file access is switched off except for those files,
and the configuration is locked. Before that, the statement's parse tree is checked
(``sqlguard``): it may name lake tables and make rows from values, nothing else. It runs
on a worker thread that is stopped at its deadline (``sqlwatch``), in a database whose memory
and spill to disk are capped. Results stream to a Parquet file in the server's storage
(``results``), from which any control plane serves pages, CSV, Parquet and Arrow downloads.

Time travel reads naturally, as in Delta Lake's own SQL::

    SELECT * FROM sales.orders VERSION AS OF 3
    SELECT * FROM sales.orders TIMESTAMP AS OF '2026-11-26T10:00:00Z'
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import secrets
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake.exceptions import DeltaError
from sqlalchemy import update
from sqlalchemy.orm import Session

from cumulo.db import utcnow
from cumulo.errors import Conflict, CumuloError, Invalid, NotFound, Unavailable
from cumulo.lake import access, catalog, delta, results, sqlguard
from cumulo.lake.ingest import detect_format
from cumulo.lake.leftovers import results_dir
from cumulo.lake.metrics import observe_query
from cumulo.lake.models import LakeTable, SqlQuery
from cumulo.lake.refs import TableRef, parse_timestamp, validate_name
from cumulo.lake.sqlwatch import QueryCancelled, Watch, check_capacity
from cumulo.principal import Principal
from cumulo.storage import service as storage
from cumulo.storage.backends import Backend

__all__ = ["ATHENA_USD_PER_TB", "SQL_MEMORY_LIMIT", "SQL_SPILL_LIMIT", "QueryCancelled",
           "QueryOutcome", "cancel", "read_results", "results_dir", "run", "unquote_name",
           "with_current"]

log = logging.getLogger("cumulo.lake")


# What Athena charges per TB scanned (10 MB minimum per query); shown beside every query.
ATHENA_USD_PER_TB = 5.0
_MIN_BILLED = 10 * 2**20
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CTAS = re.compile(rf"^\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?({_IDENT})\.({_IDENT})\s+AS\s+"
                   r"(.+?);?\s*$", re.IGNORECASE | re.DOTALL)
_INSERT = re.compile(rf"^\s*INSERT\s+INTO\s+({_IDENT})\.({_IDENT})\s+(.+?);?\s*$",
                     re.IGNORECASE | re.DOTALL)
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(?:ANALY[SZ]E\s+)?(.+)$", re.IGNORECASE | re.DOTALL)
_ALLOWED = ("SELECT queries (with WITH, JOIN, EXPLAIN, DESCRIBE), CREATE TABLE db.t AS SELECT, "
            "INSERT INTO db.t SELECT, and GRANT, REVOKE, SHOW GRANTS and ALTER TABLE's masks and "
            "row filters")
# What one sealed database (the queries on its connections, up to _Pool.connections at once)
# may hold in memory, and spill to disk beyond that, before DuckDB fails the query. Several
# sealed databases are open at once. To become settings (sql_memory_limit, sql_spill_limit).
SQL_MEMORY_LIMIT = max(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4, 256 * 2**20)
SQL_SPILL_LIMIT = 16 * 2**30
_RUNNING_LOCK = threading.Lock()


class _Running:
    """A query between its history row and its end, so that a cancel is never lost.

    DuckDB's interrupt() does nothing to a connection that is not running a statement yet,
    so a cancel is also kept as a flag the query checks before and while it runs.
    """

    def __init__(self) -> None:
        self.cancelled = False
        self.runner: duckdb.DuckDBPyConnection | None = None

    def attach(self, runner: duckdb.DuckDBPyConnection | None) -> None:
        with _RUNNING_LOCK:
            self.runner = runner
        self.check()

    def detach(self) -> None:
        """Before the connection goes back to the pool: no interrupt may reach it after."""
        with _RUNNING_LOCK:
            self.runner = None

    def interrupt(self) -> None:
        with _RUNNING_LOCK:
            if self.runner is not None:
                self.runner.interrupt()

    def check(self) -> None:
        if self.cancelled:
            raise QueryCancelled("the query was cancelled")


_RUNNING: dict[str, _Running] = {}


@dataclass
class QueryOutcome:
    query: SqlQuery
    columns: list[dict[str, str]] = field(default_factory=list)
    result_key: str | None = None  # in storage (results.py), as the history row has it
    result_path: Path | None = None  # its file, where the storage keeps files on this machine
    written: dict[str, Any] | None = None
    answered: bool = False  # by Cumulo itself (GRANT, SHOW GRANTS...): nothing scanned or billed


@dataclass
class _Plan:
    sql: str  # what DuckDB runs: the SELECT part, time travel rewritten
    body: str = ""  # the SELECT that sqlguard checks: sql, less EXPLAIN
    explain: bool = False
    target: TableRef | None = None
    target_mode: delta.Mode | None = None
    travel: dict[str, TableRef] = field(default_factory=dict)
    if_not_exists: bool = False


def _classify(sql: str, travel: dict[str, TableRef]) -> _Plan:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.ParserException as exc:
        raise Invalid(f"SQL syntax error: {exc}".replace("Parser Error: ", "")) from exc
    except duckdb.Error as exc:
        raise Invalid(f"SQL error: {exc}") from exc
    if len(statements) != 1:
        raise Invalid(f"send one statement at a time, not {len(statements)}")
    kind = statements[0].type.name
    if kind == "SELECT":
        return _Plan(sql=sql, body=sql, travel=travel)
    if kind == "EXPLAIN" and (m := _EXPLAIN.match(sql)) and _is_select(m.group(1)):
        # EXPLAIN ANALYZE runs what it explains: only a SELECT may follow EXPLAIN.
        return _Plan(sql=sql, body=m.group(1), explain=True, travel=travel)
    if kind == "CREATE" and (m := _CTAS.match(sql)) and _is_select(m.group(4)):
        target = TableRef(validate_name(m.group(2).lower(), "database"),
                          validate_name(m.group(3).lower(), "table"))
        return _Plan(sql=m.group(4), body=m.group(4), target=target, target_mode="create",
                     travel=travel, if_not_exists=bool(m.group(1)))
    if kind == "INSERT" and (m := _INSERT.match(sql)):
        body = m.group(3)
        if body.lstrip().startswith("("):
            raise Invalid("INSERT INTO db.t (columns) is not supported; select the columns "
                          "by name: INSERT INTO db.t SELECT a, b FROM ...")
        if _is_select(body):
            return _Plan(sql=body, body=body,
                         target=TableRef(m.group(1).lower(), m.group(2).lower()),
                         target_mode="append", travel=travel)
    raise Invalid(f"{kind} statements are not allowed here; Cumulo SQL runs {_ALLOWED}",
                  details={"statement": kind})


def _is_select(sql: str) -> bool:
    """Whether ``sql`` is exactly one SELECT (or VALUES, DESCRIBE...: DuckDB types them so)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error:
        return False
    return len(statements) == 1 and statements[0].type.name == "SELECT"


def _rewrite_time_travel(sql: str) -> tuple[str, dict[str, TableRef]]:
    """Replace each ``db.t VERSION|TIMESTAMP AS OF x`` by a view name; return both.

    DuckDB's own tokenizer finds the clauses, so text in strings and comments is never
    touched.
    """
    tokens = duckdb.tokenize(sql)
    texts = []
    for i, (pos, kind) in enumerate(tokens):
        end = tokens[i + 1][0] if i + 1 < len(tokens) else len(sql)
        texts.append((pos, pos + len(sql[pos:end].rstrip()), kind.name, sql[pos:end].strip()))
    travel: dict[str, TableRef] = {}
    out, last, i = [], 0, 0
    while i + 6 < len(texts):
        db, dot, table, when, as_, of, value = texts[i:i + 7]
        if (db[2] in ("identifier", "keyword") and re.fullmatch(_IDENT, db[3])
                and dot[3] == "." and table[2] in ("identifier", "keyword")
                and re.fullmatch(_IDENT, table[3])
                and when[3].upper() in ("VERSION", "TIMESTAMP") and as_[3].upper() == "AS"
                and of[3].upper() == "OF"
                and value[2] in ("numeric_const", "string_const")):
            name = (db[3].lower(), table[3].lower())
            if when[3].upper() == "VERSION":
                if not value[3].isdigit():
                    raise Invalid(f"VERSION AS OF takes a whole number, not {value[3]}")
                ref = TableRef(*name, version=int(value[3]))
            else:
                if not (value[3].startswith("'") and value[3].endswith("'")):
                    raise Invalid(f"TIMESTAMP AS OF takes a quoted time, not {value[3]}")
                ref = TableRef(*name, as_of=parse_timestamp(value[3][1:-1]))
            alias = f"__travel_{len(travel)}"
            travel[alias] = ref
            out.append(sql[last:db[0]])
            out.append(alias)
            last = value[1]
            i += 7
            continue
        i += 1
    out.append(sql[last:])
    return "".join(out), travel


_PART = re.compile(r'"((?:[^"]|"")*)"|([^."\s]+)')


def unquote_name(name: str) -> str:
    """A table name as DuckDB gives it (``sales."plans" AS p``: it quotes names that are
    keywords to it) as the catalog knows it (``sales.plans``)."""
    bare = re.split(r"\s+AS\s+", name.strip(), flags=re.IGNORECASE)[0].strip()
    parts = [quoted.replace('""', '"') if quoted or plain == "" else plain
             for quoted, plain in _PART.findall(bare)]
    return ".".join(parts)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _duck_type(t: pa.DataType) -> str:
    mapping = [(pa.types.is_boolean, "BOOLEAN"), (pa.types.is_int8, "TINYINT"),
               (pa.types.is_int16, "SMALLINT"), (pa.types.is_int32, "INTEGER"),
               (pa.types.is_int64, "BIGINT"), (pa.types.is_float32, "FLOAT"),
               (pa.types.is_float64, "DOUBLE"), (pa.types.is_date, "DATE"),
               (pa.types.is_timestamp, "TIMESTAMP"), (pa.types.is_decimal, str(t).upper())]
    for test, name in mapping:
        if test(t):
            return name
    return "VARCHAR"


class _Sandbox:
    """What one query may see: views over the files of the tables it names, and the folders
    that hold them. ``open`` makes a sealed DuckDB database of it, which spills to a folder of
    its own under ``spill``."""

    def __init__(self, spill: Path) -> None:
        self.spill = spill
        self.allowed: list[str] = []
        self.views: list[tuple[str, str]] = []
        self.datasets: dict[str, Any] = {}

    def _view(self, view: str, body: str, rules: access.Rules | None,
              columns: list[str] | None) -> None:
        """A view; with the caller's masks and row filters on the table, of what they let
        the caller see, so no query over it meets a value they hide."""
        self.views.append((view, access.restrict(body, rules, columns) if rules else body))

    def add_table(self, view: str, table: Any, name: str,
                  rules: access.Rules | None = None) -> None:
        """A view named ``view`` over a DeltaTable's files at its loaded version."""
        schema = delta._delta_schema_to_arrow(table)
        cols = ", ".join(delta.quote_ident(f.name) for f in schema)
        files = table.file_uris()
        if not files:
            empty = ", ".join(f"CAST(NULL AS {_duck_type(f.type)}) AS {delta.quote_ident(f.name)}"
                              for f in schema)
            self._view(view, f"SELECT {empty} WHERE false", rules, schema.names)
            return
        if all(f.startswith("/") for f in files):
            self.allowed.extend(files)
            parts = table.metadata().partition_columns
            # union_by_name: files written before a schema evolution lack the new columns.
            hive = ", union_by_name = true" + (", hive_partitioning = true" if parts else "")
            types = ""
            if parts:
                typed = {f.name: _duck_type(f.type) for f in schema if f.name in parts}
                types = ", hive_types = {" + ", ".join(
                    f"{_literal(k)}: '{v}'" for k, v in typed.items()) + "}"
            listed = "[" + ", ".join(_literal(f) for f in files) + "]"
            self._view(view, f"SELECT {cols} FROM read_parquet({listed}{hive}{types})", rules,
                       schema.names)
        else:
            # Object-store tables are read through Arrow: DuckDB cannot reach S3 offline.
            self.add_dataset(view, table.to_pyarrow_dataset(), rules, schema.names)

    def add_external(self, view: str, files: list[tuple[str, str]], *, fmt: str,
                     layout: str, rules: access.Rules | None = None) -> None:
        """A view over the raw files of an external (crawled) table: (path, folder) pairs,
        the folder being the file's first folder under the table's prefix. Its columns are
        the files' (not known here): every mask applies, and a missing column fails."""
        self.allowed.extend(path for path, _ in files)
        reader = {"csv": "read_csv", "parquet": "read_parquet"}.get(fmt, "read_json_auto")

        def scan(paths: list[str], extra: str = "") -> str:
            listed = "[" + ", ".join(_literal(p) for p in paths) + "]"
            return f"{reader}({listed}, union_by_name = true{extra})"

        paths = [path for path, _ in files]
        if layout == "hive":
            body = f"SELECT * FROM {scan(paths, ', hive_partitioning = true')}"
        elif layout == "folders":
            parts = []
            for folder in sorted({f for _, f in files}):
                mine = [path for path, f in files if f == folder]
                parts.append(f"SELECT *, {_literal(folder)} AS partition_0 FROM {scan(mine)}")
            body = " UNION ALL BY NAME ".join(parts)
        else:
            body = f"SELECT * FROM {scan(paths)}"
        self._view(view, body, rules, None)

    def add_dataset(self, view: str, dataset: Any, rules: access.Rules | None = None,
                    columns: list[str] | None = None) -> None:
        # An unguessable name: the raw dataset under its masked view is never named by a
        # statement (sqlguard also refuses bare names starting with "__").
        key = f"__ds_{secrets.token_hex(12)}"
        self.datasets[key] = dataset
        self._view(view, f"SELECT * FROM {key}", rules, columns)

    def key(self) -> str | None:
        """Identifies the sealed database this plan makes; None when it cannot be shared
        (Arrow datasets are registered per connection)."""
        if self.datasets:
            return None
        return repr((sorted(set(self.allowed)), self.views, str(self.spill)))

    def hidden(self) -> list[tuple[str, str]]:
        """Absolute server paths a query's output and errors may show, and what stands for
        them: the folder above the tables' files, and the spill folder."""
        folders = {os.path.dirname(a) for a in self.allowed}
        pairs = [(str(self.spill), "<spill>")]
        if folders:
            pairs.append((os.path.commonpath(sorted(folders)), "<lake>"))
        return sorted(pairs, key=lambda p: -len(p[0]))

    def open(self, connections: int) -> tuple[duckdb.DuckDBPyConnection,
                                               list[duckdb.DuckDBPyConnection], Path]:
        """A sealed in-memory database, ``connections`` connections to run queries on, and
        the folder it spills to (DuckDB makes it when it first spills, removes it on close)."""
        self.spill.mkdir(parents=True, exist_ok=True)
        spill = self.spill / uuid.uuid4().hex[:12]
        # Paths are set here: once enable_external_access is off, DuckDB refuses to change
        # them. Python replacement scans (a bare name read as a variable of the calling
        # frame) are off: a query names lake tables only.
        con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                     "autoload_known_extensions": False,
                                     "python_enable_replacements": False,
                                     "memory_limit": f"{SQL_MEMORY_LIMIT // 2**20}MiB",
                                     "temp_directory": str(spill),
                                     "max_temp_directory_size":
                                         f"{SQL_SPILL_LIMIT // 2**20}MiB"})
        try:
            for key, dataset in self.datasets.items():
                con.register(key, dataset)
            if self.allowed:
                # Exact files, not folders: nothing can be written next to them.
                listed = ", ".join(_literal(a) for a in sorted(set(self.allowed)))
                con.execute(f"SET allowed_paths = [{listed}]")
            con.execute("SET enable_external_access = false")
            for view, body in self.views:
                schema, _, name = view.rpartition(".")
                if schema:
                    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                    con.execute(f'CREATE VIEW "{schema}"."{name}" AS {body}')
                else:
                    con.execute(f'CREATE VIEW "{name}" AS {body}')
            # Profiling is set per connection, and nothing can be set once locked.
            runners = [con] if self.datasets else [con.cursor() for _ in range(connections)]
            for runner in runners:
                runner.execute("PRAGMA enable_profiling = 'no_output'")
            con.execute("SET lock_configuration = true")
        except BaseException:
            con.close()
            raise
        return con, runners, spill


@dataclass
class _Sealed:
    con: duckdb.DuckDBPyConnection
    free: queue.Queue[duckdb.DuckDBPyConnection]
    shared: bool
    spill: Path
    users: int = 0
    evicted: bool = False

    def close(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self.con.close()
        shutil.rmtree(self.spill, ignore_errors=True)


class _Pool:
    """Sealed databases reused across queries while their tables' files are unchanged.

    A new database costs tens of milliseconds and starts with a cold Parquet metadata cache;
    reusing it keeps a query's fixed cost small. A new table version lists other files, so it
    makes another key, and the least recently used databases are closed.
    """

    def __init__(self, size: int = 8, connections: int = 4) -> None:
        self.size, self.connections = size, connections
        self.lock = threading.Lock()
        self.entries: OrderedDict[str, _Sealed] = OrderedDict()

    def checkout(self, sandbox: _Sandbox,
                 wait_s: float) -> tuple[_Sealed, duckdb.DuckDBPyConnection]:
        key = sandbox.key()
        if key is None:
            con, runners, spill = sandbox.open(1)
            entry = _Sealed(con, queue.Queue(), shared=False, spill=spill, users=1)
            return entry, runners[0]
        with self.lock:
            found = self.entries.get(key)
        # Built outside the lock: binding views reads Parquet footers, which can take time.
        fresh = self._build(sandbox) if found is None else None
        with self.lock:
            current = self.entries.get(key)
            if current is None:
                current = self.entries[key] = fresh or self._build(sandbox)
            elif fresh is not None:
                fresh.close()  # another query built the same one meanwhile
            entry = current
            self.entries.move_to_end(key)
            entry.users += 1
            while len(self.entries) > self.size:
                _, old = self.entries.popitem(last=False)
                old.evicted = True
                if not old.users:
                    old.close()
        try:
            return entry, entry.free.get(timeout=wait_s)
        except queue.Empty:
            with self.lock:
                entry.users -= 1
            raise Unavailable(f"all {self.connections} connections for these tables are busy "
                              f"after {wait_s:.0f}s; try again") from None

    def _build(self, sandbox: _Sandbox) -> _Sealed:
        con, runners, spill = sandbox.open(self.connections)
        sealed = _Sealed(con, queue.Queue(), shared=True, spill=spill)
        for runner in runners:
            sealed.free.put(runner)
        return sealed

    def checkin(self, entry: _Sealed, runner: duckdb.DuckDBPyConnection, *,
                retire: bool = False) -> None:
        if not entry.shared:
            entry.close()
            return
        entry.free.put(runner)
        with self.lock:
            entry.users -= 1
            if retire and not entry.evicted:
                entry.evicted = True
                for key, value in list(self.entries.items()):
                    if value is entry:
                        del self.entries[key]
            if entry.evicted and not entry.users:
                entry.close()


_POOL = _Pool()


def _bytes_read(con: duckdb.DuckDBPyConnection, fallback: int) -> int:
    try:
        info = orjson.loads(con.get_profiling_information())
        total = int(info.get("io", {}).get("total_bytes_read", 0))
        return total or fallback
    except (duckdb.Error, ValueError, TypeError):
        return fallback


def _size_text(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _hide(text: str, hidden: list[tuple[str, str]]) -> str:
    for path, stand_in in hidden:
        text = text.replace(path, stand_in)
    return text


def _hidden_in(reader: pa.RecordBatchReader,
               hidden: list[tuple[str, str]]) -> pa.RecordBatchReader:
    """EXPLAIN ANALYZE's plan names the files it read: with the server's paths hidden."""

    def batches() -> Any:
        for batch in reader:
            columns = []
            for column in batch.columns:
                if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                    for path, stand_in in hidden:
                        column = pc.replace_substring(column, path, stand_in)
                columns.append(column)
            yield pa.RecordBatch.from_arrays(columns, schema=batch.schema)

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def _explain_error(exc: duckdb.Error, known: list[str],
                   hidden: list[tuple[str, str]] | None = None) -> CumuloError:
    text = _hide(str(exc), hidden or [])
    if isinstance(exc, duckdb.InterruptException):
        return QueryCancelled("the query was cancelled or ran past its timeout")
    if isinstance(exc, duckdb.OutOfMemoryException):
        # DuckDB's own advice (SET memory_limit, threads...) is not the user's to follow.
        what = text.split("\n", 1)[0].removeprefix("Out of Memory Error: ").rstrip(".")
        return Invalid(f"the query needs more memory than its limit: "
                       f"{_size_text(SQL_MEMORY_LIMIT)} in memory and "
                       f"{_size_text(SQL_SPILL_LIMIT)} spilled to disk ({what}); filter or "
                       "aggregate before joining or sorting, select fewer columns, or ask an "
                       "admin to raise the SQL memory limit",
                       details={"memory_limit": SQL_MEMORY_LIMIT,
                                "spill_limit": SQL_SPILL_LIMIT})
    if isinstance(exc, duckdb.PermissionException):
        return Invalid(f"the query tried to read outside the lake ({text.split(': ', 1)[-1]}); "
                       f"Cumulo SQL reads only catalog tables, named db.table, and runs "
                       f"{_ALLOWED}")
    if isinstance(exc, duckdb.CatalogException) and "does not exist" in text:
        import difflib

        name = re.search(r'name "?([^"!\s]+)"? does not exist', text)
        near = difflib.get_close_matches(name.group(1), known, n=3, cutoff=0.3) if name else []
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        return NotFound(f"{text.split(': ', 1)[-1].splitlines()[0]}. Tables are named "
                        f"database.table{hint}")
    return Invalid(f"SQL error: {text}")


def run(
    session: Session, backend: Backend, principal: Principal, sql: str, *, results_dir: Path,
    timeout_s: float = 300, scan_limit_bytes: int | None = None,
    on_progress: Callable[[str], None] | None = None, owner: str | None = None,
) -> QueryOutcome:
    """Run one statement; record it in the query history whatever happens. ``timeout_s``
    counts from now: the wait for a connection is part of it. Its result goes to ``backend``
    (results.py); ``results_dir``, of the home, holds DuckDB's spill (and older versions'
    results)."""
    deadline = time.monotonic() + timeout_s
    _prune_results(session, backend, results_dir)
    query = SqlQuery(id=uuid.uuid4().hex[:16], sql=sql, state="running", owner=owner,
                     created_by=principal.user_id, created_at=utcnow())
    running = _Running()
    with _RUNNING_LOCK:
        _RUNNING[query.id] = running
    session.add(query)
    session.commit()
    start = time.perf_counter()
    outcome = QueryOutcome(query=query)
    try:
        _execute(session, backend, principal, sql, outcome, running, results_dir=results_dir,
                 deadline=deadline, timeout_s=timeout_s, scan_limit_bytes=scan_limit_bytes)
        query.state = "succeeded"
    except CumuloError as exc:
        query.state = "cancelled" if isinstance(exc, QueryCancelled) else "failed"
        query.error = exc.message
        raise
    except (pa.ArrowException, DeltaError) as exc:
        # What the engines cannot store or convert (an INTERVAL column in a result file, say).
        query.state, query.error = "failed", f"{type(exc).__name__}: {exc}"
        raise Invalid(f"cannot run this query: {exc}") from exc
    except Exception as exc:
        query.state, query.error = "failed", f"internal error: {type(exc).__name__}: {exc}"
        raise
    finally:
        with _RUNNING_LOCK:
            _RUNNING.pop(query.id, None)
        query.duration_ms = round((time.perf_counter() - start) * 1000, 2)
        query.finished_at = utcnow()
        billed = 0 if outcome.answered else max(query.bytes_scanned or 0, _MIN_BILLED)
        query.cost_usd = billed / 1e12 * ATHENA_USD_PER_TB
        session.commit()
        observe_query(state=query.state, bytes_scanned=query.bytes_scanned,
                      seconds=query.duration_ms / 1000)
    return outcome


def _execute(session: Session, backend: Backend, principal: Principal, sql: str,
             outcome: QueryOutcome, running: _Running, *, results_dir: Path, deadline: float,
             timeout_s: float, scan_limit_bytes: int | None) -> None:
    command = access.parse_command(sql)
    if command is not None:  # GRANT, REVOKE, SHOW GRANTS, a mask, a row filter
        outcome.answered = True
        outcome.query.bytes_scanned = 0
        _answer(backend, outcome, access.run_command(session, backend, principal, command))
        return
    plan = _classify(*_rewrite_time_travel(sql))
    known = catalog.all_table_names(session)
    # Nothing is bound before this check: binding alone lists globs and opens files.
    names = sqlguard.check(plan.body, aliases=plan.travel, known=known)
    _authorize(principal, plan, names.tables)  # before DuckDB sees a table
    refs = {**plan.travel, **{name: TableRef(*name.partition(".")[::2])
                              for name in names.tables}}
    rows = {view: catalog.get_table(session, TableRef(ref.database, ref.table))
            for view, ref in refs.items()}
    # The caller's masks and row filters on every table named: one query for them all.
    rules = access.rules_for(session, principal.user_id, {row.id for row in rows.values()})
    sandbox = _Sandbox(results_dir / "spill")
    input_bytes = 0
    for alias, ref in plan.travel.items():
        table = rows[alias]
        dt = delta.open_table(catalog.location(backend, table), version=ref.version,
                              as_of=ref.as_of, name=str(ref))
        mine = rules.get(table.id)
        sandbox.add_table(alias, dt, str(ref),
                          with_current(backend, table, dt, mine) if mine else None)
        input_bytes += _size(dt)
    for name in sorted(names.tables):
        ref, table = refs[name], rows[name]
        mine = rules.get(table.id)
        if table.format != "delta":  # raw files (crawled); a Delta table is read by its log
            files, sizes = _external_files(session, table)
            input_bytes += sizes
            if backend.kind == "local":
                local = [(str(backend.local_path(f)), folder) for f, folder in files]
                sandbox.add_external(name, local, fmt=table.format,
                                     layout=table.options.get("layout", "flat"), rules=mine)
            else:
                sandbox.add_dataset(name, _external_dataset(backend, table,
                                                            [f for f, _ in files]), mine)
            continue
        dt = delta.open_table(catalog.location(backend, table), name=ref.name)
        sandbox.add_table(name, dt, ref.name, mine)
        input_bytes += _size(dt)
    if scan_limit_bytes is not None and input_bytes > scan_limit_bytes:
        raise Invalid(f"the query would scan up to {input_bytes} bytes, over its limit of "
                      f"{scan_limit_bytes}; narrow it or raise scan_limit_bytes")
    hidden = sandbox.hidden()
    try:
        check_capacity()
        entry, runner = _POOL.checkout(sandbox, wait_s=max(deadline - time.monotonic(), 0.0))

        def start() -> pa.RecordBatchReader:
            running.attach(runner)
            return runner.sql(plan.sql).to_arrow_reader(65536)

        def finish(failed: bool) -> None:
            running.detach()
            # After a failure the connection may hold a result or a state the next query
            # should not inherit: its database is retired instead of reused.
            _POOL.checkin(entry, runner, retire=failed)

        watch = Watch(start, deadline=deadline, timeout_s=timeout_s,
                      interrupt=running.interrupt, cancelled=lambda: running.cancelled,
                      finish=finish, after=lambda: _bytes_read(runner, input_bytes))
        try:
            _consume(session, backend, principal, plan, watch, outcome, hidden)
        except Exception as exc:
            # Raised inside a consumer of the reader (delta's writer), the worker's own error
            # comes back wrapped: what stopped the query is watch.failure.
            if watch.failure is not None and watch.failure is not exc:
                raise watch.failure from exc
            raise
        finally:
            watch.close()
        outcome.query.bytes_scanned = watch.after if watch.after is not None else input_bytes
    except duckdb.Error as exc:
        raise _explain_error(exc, known, hidden) from exc


def _consume(session: Session, backend: Backend, principal: Principal, plan: _Plan,
             watch: Watch, outcome: QueryOutcome, hidden: list[tuple[str, str]]) -> None:
    """Read the statement's result into a table (CTAS, INSERT) or a result file."""
    reader = watch.reader()
    if plan.explain:
        reader = _hidden_in(reader, hidden)
    outcome.columns = [{"name": f.name, "type": str(f.type)} for f in reader.schema]
    if plan.target is not None:
        outcome.written = _write_target(session, backend, principal, plan, reader)
        outcome.query.rows = outcome.written.get("rows_added") or 0
        return
    _keep_result(backend, outcome, *results.write(backend, outcome.query.id, reader))


def _answer(backend: Backend, outcome: QueryOutcome, table: pa.Table) -> None:
    """A statement answered by Cumulo itself (GRANT...): its small result, kept as any
    query's is, for paging and downloads."""
    outcome.columns = [{"name": f.name, "type": str(f.type)} for f in table.schema]
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
    _keep_result(backend, outcome, *results.write(backend, outcome.query.id, reader))


def _keep_result(backend: Backend, outcome: QueryOutcome, key: str, rows: int) -> None:
    outcome.result_key = key
    outcome.result_path = backend.local_path(key)
    outcome.query.rows = rows
    outcome.query.result_location = key


_HIVE_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=.*$")


def _belongs(rel: str, layout: str, folders: list[str]) -> bool:
    """Whether a key (relative to the table's prefix) is one of the table's files: not a file
    of a sub-folder that the crawler made a table of its own."""
    parts = rel.split("/")
    if layout == "hive":
        return len(parts) > 1 and all(_HIVE_SEGMENT.match(p) for p in parts[:-1])
    if layout == "folders":
        return len(parts) == 2 and parts[0] in folders
    return len(parts) == 1


def _external_files(session: Session, table: Any) -> tuple[list[tuple[str, str]], int]:
    """An external table's files as (storage key, first folder) pairs, and their size."""
    bucket, prefix = table.options["bucket"], table.options.get("prefix", "")
    layout, folders = table.options.get("layout", "flat"), table.options.get("folders") or []
    files: list[tuple[str, str]] = []
    total = 0
    cursor = None
    while True:
        page = storage.list_objects(session, bucket, prefix=prefix, cursor=cursor)
        for row in page.objects:
            name = row.key.rsplit("/", 1)[-1]
            if name.startswith(("_", ".")):
                continue
            try:
                fmt = detect_format(name)
            except Invalid:
                continue
            rel = row.key[len(prefix):]
            if (fmt == table.format or {fmt, table.format} <= {"json", "jsonl"}) and \
                    _belongs(rel, layout, folders):
                files.append((storage.blob_key(bucket, row.key), rel.split("/")[0]))
                total += row.size
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    if not files:
        raise Invalid(f"{table.name} has no files left; run the crawler again")
    return files, total


def _external_dataset(backend: Backend, table: Any, files: list[str]) -> Any:
    """An Arrow dataset over an external table's files in object storage."""
    import pyarrow.dataset as ds

    filesystem, base = backend.arrow_path(storage.blob_key(table.options["bucket"],
                                                           table.options.get("prefix", "")))
    paths = [backend.arrow_path(f)[1] for f in files]
    formats: dict[str, Any] = {"csv": ds.CsvFileFormat(), "parquet": ds.ParquetFileFormat()}
    layout = table.options.get("layout", "flat")
    partitioning: Any = None
    if layout == "hive":
        partitioning = ds.partitioning(flavor="hive")
    elif layout == "folders":
        partitioning = ds.partitioning(pa.schema([("partition_0", pa.string())]))
    return ds.dataset(paths, format=formats.get(table.format, ds.JsonFileFormat()),
                      filesystem=filesystem, partitioning=partitioning,
                      partition_base_dir=base.rstrip("/"))


def _size(table: Any) -> int:
    actions = pa.table(table.get_add_actions(flatten=True))
    return int(pc.sum(actions["size_bytes"]).as_py() or 0) if actions.num_rows else 0


def with_current(backend: Backend, table: LakeTable, version: Any,
                 rules: access.Rules) -> access.Rules:
    """``rules`` knowing the table's columns now, when ``version`` (an older one) lacks a
    column a mask names: renamed since, it is there under a name no mask names."""
    names = delta._delta_schema_to_arrow(version).names
    if not access.masks_missing(rules, names):
        return rules
    latest = delta.open_table(catalog.location(backend, table), name=table.name)
    return replace(rules, current=tuple(delta._delta_schema_to_arrow(latest).names))


def _authorize(principal: Principal, plan: _Plan, tables: set[str]) -> None:
    """Each table the statement reads needs tables:Read, the one it writes tables:Write (or
    tables:Create for CREATE TABLE ... AS): asked of the decision point, as every route asks."""
    for ref in plan.travel.values():
        principal.require("tables:Read", f"table/{ref.database}/{ref.table}")
    for name in sorted(tables):
        database, _, table = name.partition(".")
        principal.require("tables:Read", f"table/{database}/{table}")
    if plan.target is not None:
        action = "tables:Create" if plan.target_mode == "create" else "tables:Write"
        principal.require(action, f"table/{plan.target.database}/{plan.target.table}")


def _write_target(session: Session, backend: Backend, principal: Principal, plan: _Plan,
                  reader: pa.RecordBatchReader) -> dict[str, Any]:
    assert plan.target is not None and plan.target_mode is not None
    ref = plan.target
    if plan.target_mode == "create":
        catalog.get_database(session, ref.database)
        try:
            catalog.get_table(session, ref)
        except NotFound:
            pass
        else:
            if plan.if_not_exists:
                return {"table": ref.name, "version": None, "rows_added": 0}
            raise Conflict(f"table {ref.name} already exists; use INSERT INTO {ref.name} SELECT "
                           "to add rows")
        table = catalog.ensure_managed_table(session, principal, ref)
    else:
        table = catalog.get_table(session, ref)
        if table.kind != "managed":
            raise Invalid(f"{ref.name} is an external table over files; INSERT writes managed "
                          f"tables only (CREATE TABLE db.t AS SELECT * FROM {ref.name} makes one)")
    loc = catalog.location(backend, table)
    try:
        result = delta.write(loc, reader, mode=plan.target_mode, user=principal.user_name,
                             name=ref.name)
    except Exception:
        if plan.target_mode == "create" and not delta.exists(loc):
            catalog.drop_table(session, backend, ref)  # no half-registered table
        raise
    table.updated_at = utcnow()
    session.commit()
    return {"table": ref.name, "version": result.version, "rows_added": result.rows_added}


# The last prune of results, by storage: at most one a minute, since it lists the results.
_PRUNE_EVERY_S = 60.0
_PRUNED: dict[str, float] = {}
_PRUNE_LOCK = threading.Lock()


def _prune_results(session: Session, backend: Backend, results_dir: Path) -> None:
    """Results are kept a day for paging and downloads (results.py): drop older ones. Never
    a reason for the query that does it to fail."""
    now = time.monotonic()
    with _PRUNE_LOCK:
        if now - _PRUNED.get(backend.url, -_PRUNE_EVERY_S) < _PRUNE_EVERY_S:
            return
        _PRUNED[backend.url] = now
    try:
        results.prune(session, backend, legacy=results_dir, now=utcnow())
    except Exception as exc:  # the storage or the database unreachable: next time, then
        session.rollback()
        log.warning("cannot prune old SQL results: %s: %s", type(exc).__name__, exc)


ORPHANED = "its control plane stopped while it ran; run it again"


def fail_orphaned(session: Session, query: SqlQuery, live: Iterable[str]) -> None:
    """A query left running by a control plane whose lease ran out: failed (it will never
    finish). ``live`` are the live control planes' ids."""
    if query.state == "running" and query.owner is not None and query.owner not in set(live):
        done = session.execute(  # type: ignore[attr-defined]
            update(SqlQuery).where(SqlQuery.id == query.id, SqlQuery.state == "running")
            .values(state="failed", error=ORPHANED, finished_at=utcnow())).rowcount
        session.commit()
        if done:
            session.refresh(query)


def cancel(query_id: str) -> bool:
    """Stop a query of this process; False when it is not running (any more)."""
    with _RUNNING_LOCK:
        running = _RUNNING.get(query_id)
        if running is None:
            return False
        running.cancelled = True
        if running.runner is not None:
            running.runner.interrupt()
    return True


def read_results(path: Path, *, offset: int, limit: int) -> pa.Table:
    """One page of a result file on this machine (``QueryOutcome.result_path``)."""
    if not path.exists():
        raise NotFound(results.GONE)
    return results.page(pq.ParquetFile(path), offset=offset, limit=limit)
