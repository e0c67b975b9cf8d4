"""SDK sub-clients of the lake: ``client.tables`` and ``client.sql``."""

from __future__ import annotations

import builtins
import importlib.util
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from cumulo.client.transport import Transport
from cumulo.errors import Invalid
from cumulo.lake.refs import TableRef, parse_ref
from cumulo.units import parse_duration, parse_time

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["FORMATS", "QueryResult", "SqlClient", "TablesClient", "no_results"]

CHUNK = 1 << 20
As = Literal["arrow", "pandas", "polars"]
# What a table or a query result downloads as (the route's ``format``).
Format = Literal["csv", "parquet", "jsonl", "arrow"]
FORMATS: tuple[str, ...] = ("csv", "parquet", "jsonl", "arrow")


def _path(ref: TableRef) -> str:
    return f"/api/v1/tables/{ref.database}/{ref.table}"


def _as_of(text: str) -> str:
    """A time in :mod:`cumulo.units`' grammar (a date, a timestamp, or a span back from now
    like ``1h30m``) as the ISO timestamp the API reads."""
    return parse_time(text, what="--as-of").isoformat().replace("+00:00", "Z")


def _plain(table: str) -> str:
    """``db.table``'s path; masks and filters belong to a table, not to one of its versions."""
    ref = parse_ref(table)
    if ref.version is not None or ref.as_of is not None:
        raise Invalid(f"masks and row filters belong to the table: name it without @ "
                      f"({ref.name}), they hold for all its versions")
    return _path(ref)


def _subject(user: str | None, group: str | None) -> dict[str, str]:
    if (user is None) == (group is None):
        raise Invalid("name one user or one group (user= or group=)")
    return {"user": user} if user is not None else {"group": group or ""}


def _project(project: str | None) -> dict[str, str]:
    """The query parameter naming the project a call works in, if any."""
    return {"project": project} if project else {}


def _version_params(ref: TableRef) -> dict[str, Any]:
    if ref.version is not None:
        return {"version": ref.version}
    if ref.as_of is not None:
        return {"as_of": ref.as_of.isoformat()}
    return {}


def _read_params(ref: TableRef, version: int | None, as_of: str | None,
                 limit: int | None) -> dict[str, Any]:
    """The read route's version and limit, named once: by ``@`` in the name or by an option."""
    if version is not None and as_of is not None:
        raise Invalid("give a version or a time (as_of, --as-of), not both")
    pinned = ref.version is not None or ref.as_of is not None
    if pinned and (version is not None or as_of is not None):
        raise Invalid(f"{ref} names its version already; drop the @ or the version option")
    params = _version_params(ref)
    if version is not None:
        params = {"version": version}
    elif as_of is not None:
        params = {"as_of": _as_of(as_of)}
    if limit is not None:  # the server says what a limit may be
        params["limit"] = limit
    return params


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise Invalid(f"format must be one of {', '.join(FORMATS)}, not {format!r}")


def _save(transport: Transport, url: str, params: dict[str, Any],
          dest: str | os.PathLike[str] | IO[bytes]) -> tuple[dict[str, str], int]:
    """Stream a download into a binary file object, or into a local file (written whole under
    a temporary name, then renamed, so a cut-off download leaves no partial file behind).
    Returns the response's headers and the bytes written."""
    if isinstance(dest, (str, os.PathLike)):
        target = Path(dest)
        tmp = target.with_name(f".{target.name}.cumulo-partial")
        try:
            with open(tmp, "wb") as out:
                got = _save(transport, url, params, out)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return got
    written = 0
    with transport.stream("GET", url, params=params, timeout=None) as response:
        for chunk in response.iter_bytes(CHUNK):
            dest.write(chunk)
            written += len(chunk)
        return dict(response.headers), written


def _convert(table: pa.Table, to: As) -> Any:
    if to == "arrow":
        return table
    if to not in ("pandas", "polars"):
        raise Invalid(f"to must be 'arrow', 'pandas' or 'polars', not {to!r}")
    if importlib.util.find_spec(to) is None:
        raise Invalid(f"to={to!r} needs {to}: pip install 'cumulo[dataframes]'")
    if to == "pandas":
        return table.to_pandas()
    import polars as pl

    return pl.from_arrow(table)


def _to_arrow(data: Any) -> pa.Table:
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    if module == "polars":
        return data.to_arrow()
    raise Invalid(f"cannot write a {type(data).__name__}; pass a pandas or polars DataFrame "
                  "or a pyarrow Table")


class TablesClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    # databases
    def create_database(self, name: str, *, description: str = "",
                        project: str | None = None) -> dict[str, Any]:
        """Make a database, in ``project`` when one is named: its tables are the project's."""
        return self._t.json("POST", "/api/v1/tables/databases",  # type: ignore[no-any-return]
                            json={"name": name, "description": description,
                                  "project": project})

    def databases(self, *, project: str | None = None) -> list[dict[str, Any]]:
        """Every database, or those of ``project``."""
        return self._t.json("GET", "/api/v1/tables/databases",  # type: ignore[no-any-return]
                            params=_project(project))

    def drop_database(self, name: str, *, cascade: bool = False) -> dict[str, Any]:
        return self._t.json("DELETE", f"/api/v1/tables/databases/{name}",  # type: ignore[no-any-return]
                            params={"cascade": cascade})

    # tables
    def list(self, database: str | None = None, *,
             project: str | None = None) -> list[dict[str, Any]]:
        """Every table, or those of ``database``, of ``project``."""
        params = {"database": database} if database else {}
        return self._t.json("GET", "/api/v1/tables",  # type: ignore[no-any-return]
                            params={**params, **_project(project)})

    def show(self, table: str) -> dict[str, Any]:
        """Schema, partitions, version, rows, size and location of ``db.table[@version]``."""
        ref = parse_ref(table)
        return self._t.json("GET", _path(ref),  # type: ignore[no-any-return]
                            params=_version_params(ref))

    def drop(self, table: str) -> None:
        self._t.json("DELETE", _path(parse_ref(table)))

    def update(self, table: str, *, description: str | None = None,
               tags: dict[str, str] | None = None) -> dict[str, Any]:
        return self._t.json("PATCH", _path(parse_ref(table)),  # type: ignore[no-any-return]
                            json={"description": description, "tags": tags})

    def load(
        self, table: str, source: str | os.PathLike[str] | bytes | IO[bytes], *,
        format: str | None = None, mode: Literal["append", "overwrite", "merge"] = "append",
        keys: builtins.list[str] | None = None, partition_by: builtins.list[str] | None = None,
        evolve: bool = False, progress: Any = None,
    ) -> dict[str, Any]:
        """Load a local file (CSV, Parquet, JSON, JSON Lines) into a managed table, streamed."""
        ref = parse_ref(table)
        name = "upload"
        if isinstance(source, bytes):
            stream: IO[bytes] = io.BytesIO(source)
            length: int | None = len(source)
        elif isinstance(source, (str, os.PathLike)):
            local = Path(source)
            if not local.is_file():
                raise Invalid(f"{local} is not a file")
            name, length = local.name, local.stat().st_size
            stream = open(local, "rb")  # noqa: SIM115 - closed below
        else:
            stream, length = source, None
        if format is None and name == "upload":
            raise Invalid("pass format= (csv, parquet, json or jsonl) when loading bytes or a "
                          "file object")
        params: dict[str, Any] = {"format": format or "", "mode": mode, "filename": name,
                                  "evolve": evolve}
        if keys:
            params["keys"] = keys
        if partition_by:
            params["partition_by"] = partition_by
        headers = {"content-type": "application/octet-stream"}
        if length is not None:
            headers["content-length"] = str(length)

        def chunks() -> Any:
            while chunk := stream.read(CHUNK):
                if progress:
                    progress(len(chunk))
                yield chunk

        try:
            return self._t.json("PUT", _path(ref) + "/data",  # type: ignore[no-any-return]
                                params=params, content=chunks(), headers=headers, timeout=None)
        finally:
            if stream is not source:
                stream.close()

    def load_from(self, table: str, source: str, *, format: str | None = None,
                  mode: Literal["append", "overwrite", "merge"] = "append",
                  keys: builtins.list[str] | None = None,
                  partition_by: builtins.list[str] | None = None,
                  evolve: bool = False) -> dict[str, Any]:
        """Load from Cumulo storage (``BUCKET/KEY``, or ``BUCKET/PREFIX/`` for every file
        under it) or from an http(s) URL; the server reads it, nothing passes through here."""
        return self._t.json("POST", _path(parse_ref(table)) + "/load",  # type: ignore[no-any-return]
                            timeout=None, json={
                                "source": source, "format": format, "mode": mode,
                                "keys": keys, "partition_by": partition_by, "evolve": evolve})

    def write(self, table: str, data: Any, *,
              mode: Literal["append", "overwrite", "merge"] = "append",
              keys: builtins.list[str] | None = None,
              partition_by: builtins.list[str] | None = None,
              evolve: bool = False) -> dict[str, Any]:
        """Write a pandas or polars DataFrame, or an Arrow table, to a managed table."""
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(_to_arrow(data), buf)
        return self.load(table, buf.getvalue(), format="parquet", mode=mode, keys=keys,
                         partition_by=partition_by, evolve=evolve)

    def read(self, table: str, *, version: int | None = None, as_of: str | None = None,
             limit: int | None = None, to: As = "arrow") -> Any:
        """Read ``db.table`` (or ``db.table@v3``) as Arrow, pandas or polars; ``as_of`` a
        time: ``2026-11-26T10:00:00Z``, a date, or a span back from now like ``1h30m``."""
        import pyarrow as pa

        ref = parse_ref(table)
        params = _read_params(ref, version, as_of, limit)
        buf = io.BytesIO()
        with self._t.stream("GET", _path(ref) + "/data", params={**params, "format": "arrow"},
                            timeout=None) as response:
            for chunk in response.iter_raw(CHUNK):
                buf.write(chunk)
        buf.seek(0)
        return _convert(pa.ipc.open_stream(buf).read_all(), to)

    def download(self, table: str, dest: str | os.PathLike[str] | IO[bytes], *,
                 format: Format = "csv", version: int | None = None, as_of: str | None = None,
                 limit: int | None = None) -> dict[str, Any]:
        """Save ``db.table`` (or ``db.table@v3``) as CSV, Parquet, JSON Lines or Arrow to a
        local file or a binary file object, streamed: the table is never held in memory here.
        Masks and row filters apply as in :meth:`read`. Returns the table, the version read,
        the format and the bytes written."""
        _check_format(format)
        ref = parse_ref(table)
        params = {**_read_params(ref, version, as_of, limit), "format": format}
        headers, written = _save(self._t, _path(ref) + "/data", params, dest)
        return {"table": ref.name, "version": int(headers.get("x-cumulo-version", -1)),
                "format": format, "bytes": written}

    def history(self, table: str, *, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        params = {"limit": limit} if limit else {}
        return self._t.json("GET", _path(parse_ref(table)) + "/history",  # type: ignore[no-any-return]
                            params=params)

    def crawl(self, path: str, *, database: str, policy: Literal["log", "update"] = "log",
              project: str | None = None) -> dict[str, Any]:
        """Scan ``BUCKET/PREFIX`` and register its files as external tables of ``database``
        (made in ``project`` if it is new)."""
        return self._t.json("POST", "/api/v1/tables/crawl",  # type: ignore[no-any-return]
                            timeout=None, json={"path": path, "database": database,
                                                "policy": policy, "project": project})

    def diff(self, table: str, *, start: int, end: int | None = None,
             keys: builtins.list[str] | None = None) -> dict[str, Any]:
        """Schema changes and rows added, removed and (by key) changed between versions."""
        params: dict[str, Any] = {"from": start}
        if end is not None:
            params["to"] = end
        if keys:
            params["keys"] = keys
        return self._t.json("GET", _path(parse_ref(table)) + "/diff",  # type: ignore[no-any-return]
                            params=params)

    def vacuum(self, table: str, *, retain: str = "168h", dry_run: bool = False,
               force: bool = False) -> dict[str, Any]:
        """Remove files that versions older than ``retain`` (like ``168h``, ``30d`` or ``0s``)
        needed; those versions become unreadable."""
        parse_duration(retain, what="--retain", allow_zero=True)  # named in its error here
        return self._t.json("POST", _path(parse_ref(table)) + "/vacuum",  # type: ignore[no-any-return]
                            json={"retain": retain, "dry_run": dry_run, "force": force})

    def restore(self, table: str, *, version: int | None = None,
                as_of: str | None = None) -> dict[str, Any]:
        """Make a new version equal to an old one: ``version``, or the one current at
        ``as_of`` (``2026-11-26T10:00:00Z``, a date, or a span back from now like ``2h``)."""
        return self._t.json("POST", _path(parse_ref(table)) + "/restore",  # type: ignore[no-any-return]
                            json={"version": version,
                                  "as_of": None if as_of is None else _as_of(as_of)})


    # who sees what: column masks and row filters (grants: client.sql("GRANT ..."))
    def masks(self, table: str) -> builtins.list[dict[str, Any]]:
        """The table's column masks: column, expression, subject, who set it and when."""
        return self._t.json("GET", _plain(table) + "/masks")  # type: ignore[no-any-return]

    def mask(self, table: str, column: str, expression: str, *, user: str | None = None,
             group: str | None = None) -> dict[str, Any]:
        """Make a user or a group see ``expression`` (``'***'``, ``NULL``,
        ``left(email, 2) || '***'``) instead of ``column``'s values."""
        return self._t.json("PUT", f"{_plain(table)}/masks/{quote(column, safe='')}",  # type: ignore[no-any-return]
                            json={"expression": expression, **_subject(user, group)})

    def unmask(self, table: str, column: str, *, user: str | None = None,
               group: str | None = None) -> dict[str, Any]:
        return self._t.json("DELETE", f"{_plain(table)}/masks/{quote(column, safe='')}",  # type: ignore[no-any-return]
                            params=_subject(user, group))

    def filters(self, table: str) -> builtins.list[dict[str, Any]]:
        """The table's row filters: predicate, subject, who set it and when."""
        return self._t.json("GET", _plain(table) + "/filters")  # type: ignore[no-any-return]

    def filter(self, table: str, predicate: str, *, user: str | None = None,
               group: str | None = None) -> dict[str, Any]:
        """Make a user or a group see only the rows where ``predicate`` holds
        (``region = 'EU'``); several filters on one caller are ANDed."""
        return self._t.json("PUT", _plain(table) + "/filters",  # type: ignore[no-any-return]
                            json={"predicate": predicate, **_subject(user, group)})

    def unfilter(self, table: str, *, user: str | None = None,
                 group: str | None = None) -> dict[str, Any]:
        return self._t.json("DELETE", _plain(table) + "/filters",  # type: ignore[no-any-return]
                            params=_subject(user, group))

    def policies(self, table: str) -> dict[str, builtins.list[dict[str, Any]]]:
        """The table's masks and row filters together."""
        return {"masks": self.masks(table), "filters": self.filters(table)}


def no_results(query: dict[str, Any]) -> str:
    """Why a query of the history has no results to show or download."""
    return {
        "running": "it is still running; 'cumulo queries show' it again when it ends",
        "failed": f"it failed: {query.get('error') or 'no reason recorded'}",
        "cancelled": "it was cancelled",
    }.get(query["state"], "it wrote a table, or its results are gone (they are kept a day); "
                          "run it again")


@dataclass
class QueryResult:
    """A finished query: its first page, and the whole result on demand."""

    id: str
    state: str
    columns: list[dict[str, str]]
    rows: int
    page: list[dict[str, Any]]
    bytes_scanned: int | None
    cost_usd: float | None
    duration_ms: float | None
    written: dict[str, Any] | None
    _transport: Transport = field(repr=False)
    _project: str | None = field(default=None, repr=False)

    def to_arrow(self) -> pa.Table:
        import pyarrow as pa

        if self.written is not None:
            return pa.table({})
        buf = io.BytesIO()
        with self._transport.stream("GET", f"/api/v1/sql/queries/{self.id}/results",
                                    params={"format": "arrow", **_project(self._project)},
                                    timeout=None) as response:
            for chunk in response.iter_raw(CHUNK):
                buf.write(chunk)
        buf.seek(0)
        return pa.ipc.open_stream(buf).read_all()

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()

    def to_polars(self) -> Any:
        return _convert(self.to_arrow(), "polars")

    def download(self, dest: str | os.PathLike[str], *, format: Format = "parquet") -> Path:
        """Save the whole result as CSV, Parquet, JSON Lines or Arrow, streamed (a cut-off
        download leaves no partial file)."""
        _check_format(format)
        path = Path(dest)
        _save(self._transport, f"/api/v1/sql/queries/{self.id}/results",
              {"format": format, **_project(self._project)}, path)
        return path

    def pages(self, page_size: int = 1000) -> Any:
        """Every row, a page at a time."""
        offset: int | None = 0
        while offset is not None:
            body = self._transport.json("GET", f"/api/v1/sql/queries/{self.id}/results",
                                        params={"offset": offset, "limit": page_size,
                                                **_project(self._project)})
            yield body["rows"]
            offset = body["next_offset"]


class SqlClient:
    """``client.sql("select ...")`` runs a query; ``client.sql.history()`` lists past ones."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def __call__(self, query: str, *, timeout_s: float = 300,
                 scan_limit_bytes: int | None = None, page_size: int = 1000,
                 project: str | None = None) -> QueryResult:
        """Run ``query``; ``project`` is where the caller works (rights bound there let them
        run SQL), while each table named is decided in its own project."""
        body = self._t.json("POST", "/api/v1/sql", timeout=timeout_s + 30,
                            params=_project(project), json={
                                "sql": query, "timeout_s": timeout_s,
                                "scan_limit_bytes": scan_limit_bytes, "page_size": page_size})
        return QueryResult(
            id=body["id"], state=body["state"], columns=body["columns"], rows=body["rows"] or 0,
            page=body["page"], bytes_scanned=body["bytes_scanned"], cost_usd=body["cost_usd"],
            duration_ms=body["duration_ms"], written=body["written"], _transport=self._t,
            _project=project,
        )

    def get(self, query_id: str, *, project: str | None = None) -> dict[str, Any]:
        """One query of the history: its SQL, user, state, error, times, rows, bytes scanned,
        cost, and whether its results are still kept (``results``)."""
        query: dict[str, Any] = self._t.json(
            "GET", f"/api/v1/sql/queries/{quote(query_id, safe='')}", params=_project(project))
        return query

    def result(self, query_id: str, *, page_size: int = 1000,
               project: str | None = None) -> QueryResult:
        """A finished query's result, again: its first ``page_size`` rows, and the whole of it
        on demand (``download``, ``to_arrow``...). Only its author may read it, for a day."""
        q = self.get(query_id, project=project)
        if not q["results"]:
            raise Invalid(f"query {query_id} has no results: {no_results(q)}",
                          details={"query": query_id, "state": q["state"]})
        body = self._t.json("GET", f"/api/v1/sql/queries/{quote(query_id, safe='')}/results",
                            params={"offset": 0, "limit": max(page_size, 1),
                                    **_project(project)})
        return QueryResult(
            id=q["id"], state=q["state"], columns=body["columns"], rows=q["rows"] or 0,
            page=body["rows"][:page_size], bytes_scanned=q["bytes_scanned"],
            cost_usd=q["cost_usd"], duration_ms=q["duration_ms"], written=None,
            _transport=self._t, _project=project,
        )

    def history(self, *, limit: int = 50, state: str | None = None,
                project: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, **_project(project)}
        if state:
            params["state"] = state
        return self._t.json("GET", "/api/v1/sql/queries", params=params)  # type: ignore[no-any-return]

    def cancel(self, query_id: str, *, project: str | None = None) -> dict[str, Any]:
        return self._t.json("DELETE", f"/api/v1/sql/queries/{query_id}",  # type: ignore[no-any-return]
                            params=_project(project))
