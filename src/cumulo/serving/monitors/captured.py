"""Captured requests read back into columns: one row per scored row, the monitor's features,
its key (for joining labels) and the prediction each row got.

The endpoint's capture table holds each request's body as sent (:mod:`cumulo.serving.capture`)
and its answer (``{"predictions": [...]}``). JSON bodies in the usual formats (records, a bare
list of records, instances as records, inputs as columns) are read by DuckDB's JSON reader in
one vectorised statement, a million rows in well under a second; the rest (CSV, Arrow,
``dataframe_split``, rows of values) one by one by the endpoints' own reader
(:mod:`cumulo.serving.formats`). Only answered requests (status 200) count.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["KEY", "PREDICTION", "decode"]

KEY = "__key"  # the labels' join key, as text
PREDICTION = "__prediction"  # each row's prediction, as text (JSON for a structured one)

# Which form each body has. The common one is told by its first bytes (no JSON parse: what
# orjson and json.dumps write); the rest by DuckDB's JSON functions, evaluated only for the
# rows not told yet.
_KIND = """
CASE WHEN request_encoding <> 'utf-8'
          OR NOT (content_type = '' OR content_type ILIKE 'application/json%'
                  OR content_type = '*/*') THEN 'not json'
     WHEN (request LIKE '{"dataframe_records":[%' OR request LIKE '{"dataframe_records": [%')
          AND response LIKE '{"predictions":%' THEN 'records'
     WHEN NOT json_valid(request) OR NOT json_valid(response) THEN 'bad'
     WHEN json_type(request) = 'ARRAY' AND json_type(request, '$[0]') = 'OBJECT' THEN 'list'
     WHEN json_type(request, '$.dataframe_records') = 'ARRAY' THEN 'records'
     WHEN json_type(request, '$.instances') = 'ARRAY'
          AND json_type(request, '$.instances[0]') = 'OBJECT' THEN 'instances'
     WHEN json_type(request, '$.inputs') = 'OBJECT' THEN 'columns'
     ELSE 'other' END"""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def decode(captured: pa.Table, features: list[dict[str, Any]],
           key: str | None = None) -> pa.Table:
    """The rows of the answered requests in ``captured`` (a capture table's rows): a column
    per feature (float64 for numeric ones, text for categorical ones), ``KEY`` when ``key``
    is given, and ``PREDICTION``."""
    import duckdb
    import pyarrow as pa

    wanted = [(f["name"], "DOUBLE" if f["kind"] == "numeric" else "VARCHAR") for f in features]
    if key is not None and key not in dict(wanted):
        wanted.append((key, "VARCHAR"))
    struct = json.dumps(dict(wanted))
    con = duckdb.connect()
    try:
        con.register("captured", captured.select(
            ["status", "content_type", "request", "request_encoding", "response"]))
        # A view, not a table: the bodies are not copied, and each form's statement below
        # parses only its own rows.
        con.execute(f"CREATE TEMP VIEW k AS SELECT request, response, {_KIND} AS kind "
                    "FROM captured WHERE status = 200")
        # Which forms there are (usually one): a statement only for each of those.
        kinds = dict(con.sql("SELECT kind, count(*) FROM k GROUP BY kind").fetchall())
        readers: dict[str, Callable[[], pa.Table]] = {
            "list": lambda: _records(con, "list", struct, "", wanted, key),
            "records": lambda: _records(con, "records", struct, ".dataframe_records", wanted,
                                        key),
            "instances": lambda: _records(con, "instances", struct, ".instances", wanted, key),
            "columns": lambda: _columns(con, wanted, key)}
        parts = [read() for kind, read in readers.items() if kinds.get(kind)]
        rest = (con.sql("SELECT request, response FROM k WHERE kind = 'other'").to_arrow_table()
                if kinds.get("other") else None)
    finally:
        con.close()
    schema = pa.schema([(n, pa.float64() if t == "DOUBLE" else pa.string()) for n, t in wanted]
                       + [(PREDICTION, pa.string())])
    tables = [t.rename_columns([*(n for n, _ in wanted), PREDICTION]).cast(schema)
              for t in parts if t.num_rows]
    slow = _one_by_one(captured, rest, wanted, schema, width=len(features))
    if slow.num_rows:
        tables.append(slow)
    out = pa.concat_tables(tables) if tables else schema.empty_table()
    if key is not None:
        out = out.append_column(KEY, out.column(key).cast(pa.string()))
        if key not in {f["name"] for f in features}:
            out = out.drop_columns([key])
    return out


def _select(wanted: list[tuple[str, str]], row: str) -> str:
    return ", ".join(f"{row}.{_quote(n)}" for n, _ in wanted)


def _records(con: Any, kind: str, struct: str, path: str, wanted: list[tuple[str, str]],
             key: str | None) -> pa.Table:
    """Requests that hold a list of records at ``path`` of the body."""
    spec = f"[{struct}]" if not path else json.dumps({path[1:]: ["__S__"]}).replace(
        '"__S__"', struct)
    rows = f"from_json(request, {_literal(spec)})" + (f".{_quote(path[1:])}" if path else "")
    sql = (f"SELECT {_select(wanted, 'r')}, p FROM (SELECT unnest({rows}) AS r, "
           "unnest(from_json(response, '{\"predictions\": [\"VARCHAR\"]}').predictions) "
           f"AS p FROM k WHERE kind = {_literal(kind)}) WHERE r IS NOT NULL")
    return con.sql(sql).to_arrow_table()


def _columns(con: Any, wanted: list[tuple[str, str]], key: str | None) -> pa.Table:
    """Requests that hold columns: ``{"inputs": {"col": [values], ...}}``."""
    spec = json.dumps({"inputs": {n: [t] for n, t in wanted}})
    lists = ", ".join(f"unnest(s.{_quote(n)}) AS {_quote(n)}" for n, _ in wanted)
    sql = (f"SELECT * FROM (SELECT {lists}, unnest(from_json(response, "
           "'{\"predictions\": [\"VARCHAR\"]}').predictions) AS p FROM "
           f"(SELECT from_json(request, {_literal(spec)}).inputs AS s, response FROM k "
           "WHERE kind = 'columns'))")
    return con.sql(sql).to_arrow_table()


def _one_by_one(captured: pa.Table, rest: pa.Table | None, wanted: list[tuple[str, str]],
                schema: pa.Schema, *, width: int) -> pa.Table:
    """The requests DuckDB does not read (CSV, Arrow, split frames, rows of values): read by
    the endpoints' own reader, one by one."""
    import pyarrow as pa

    from cumulo.serving.formats import BadInput, Column, parse

    # Rows of values are named by the features, in the signature's order (not the key).
    named = [Column(n, "double" if t == "DOUBLE" else "string", required=False)
             for n, t in wanted[:width]]
    columns: dict[str, list[Any]] = {n: [] for n, _ in wanted}
    predictions: list[Any] = []
    bodies = captured.filter(_others_mask(captured)).select(
        ["request", "request_encoding", "content_type", "response"]).to_pylist()
    bodies += [{"request": r["request"], "request_encoding": "utf-8",
                "content_type": "application/json", "response": r["response"]}
               for r in (rest.to_pylist() if rest is not None else [])]
    for body in bodies:
        raw = (base64.b64decode(body["request"]) if body["request_encoding"] == "base64"
               else body["request"].encode())
        try:
            rows = parse(raw, body["content_type"] or "application/json", None)
        except BadInput:
            try:
                rows = parse(raw, body["content_type"] or "application/json", named)
            except BadInput:
                continue  # answered, so read once; not in a form read back here
        try:
            answer = orjson.loads(body["response"])["predictions"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
        if not isinstance(answer, list) or len(answer) != rows.count:
            continue
        for name, _ in wanted:
            columns[name].extend(rows.columns.get(name, [None] * rows.count))
        predictions.extend(p if isinstance(p, str) or p is None else orjson.dumps(p).decode()
                           for p in answer)
    arrays = []
    for name, kind in wanted:
        values = columns[name]
        if kind == "DOUBLE":
            arrays.append(pa.array([_number(v) for v in values], pa.float64()))
        else:
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    arrays.append(pa.array(predictions, pa.string()))
    return pa.Table.from_arrays(arrays, schema=schema)


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _others_mask(captured: pa.Table) -> Any:
    """The answered requests that are not JSON bodies."""
    import pyarrow.compute as pc

    kind = pc.utf8_lower(pc.fill_null(captured.column("content_type"), ""))
    json_body = pc.or_(pc.or_(pc.equal(kind, ""), pc.starts_with(kind, "application/json")),
                       pc.equal(kind, "*/*"))
    text = pc.equal(captured.column("request_encoding"), "utf-8")
    return pc.and_(pc.equal(captured.column("status"), 200),
                   pc.invert(pc.and_(json_body, text)))
