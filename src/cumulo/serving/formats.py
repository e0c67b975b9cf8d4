"""Request bodies an endpoint takes, read into columns and checked against the model's signature.

The formats are MLflow's scoring formats, so existing MLflow and SageMaker clients' payloads
work unchanged:

- JSON ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}``
- JSON ``{"dataframe_records": [{"col": value, ...}, ...]}`` (also a bare JSON list of records)
- JSON ``{"instances": [...]}`` (records, or rows of values in the signature's order)
- JSON ``{"inputs": {"col": [values], ...}}`` (columns) or ``{"inputs": [...]}`` (as instances)
- CSV with a header row (``text/csv``)
- Arrow IPC stream (``application/vnd.apache.arrow.stream``), for bulk

This is the hot path of every request: JSON is parsed with orjson and checked in plain Python;
pandas is met only once per batch of requests, not per request.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["ARROW", "NUMERIC_TYPES", "SINGLE", "BadInput", "Column", "Rows", "parse",
           "schema_from_signature"]

ARROW = "application/vnd.apache.arrow.stream"
_NUMBER_TYPES = {"double", "float"}
_INTEGER_TYPES = {"long", "integer"}
NUMERIC_TYPES = frozenset(_NUMBER_TYPES | _INTEGER_TYPES)
SINGLE = "inputs"  # the column of a request that is a plain list of values
_JSON_TYPE = {"double": float, "float": float, "long": int, "integer": int, "string": str}


class BadInput(ValueError):
    """A request body that cannot be scored: answered with 400 and this message."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # MLflow's: long, integer, double, float, string, boolean, datetime, binary
    required: bool = True


@dataclass
class Rows:
    """Rows of one request, by column, in the order the model takes them."""

    columns: dict[str, list[Any]]
    count: int


def schema_from_signature(inputs: list[dict[str, Any]] | None) -> list[Column] | None:
    """The columns of an MLflow signature's ``inputs`` (as in the MLmodel file); None for a
    model without a column signature (it gets the columns it is sent)."""
    if not inputs or any("name" not in c for c in inputs):
        return None
    return [Column(c["name"], c.get("type", "string"), bool(c.get("required", True)))
            for c in inputs]


def parse(body: bytes, content_type: str, schema: list[Column] | None) -> Rows:
    """Read a request body into checked columns. Raises BadInput naming what is wrong."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in ("text/csv", "application/csv"):
        return _check(_csv(body), schema)
    if kind == ARROW:
        return _check(_arrow(body), schema)
    if kind not in ("application/json", "", "*/*"):
        raise BadInput(f"content type {kind!r} is not taken; send application/json (MLflow's "
                       f"scoring formats), text/csv or {ARROW}")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"the body is not valid JSON: {exc}") from exc
    return _check(_json(doc, schema), schema)


def _json(doc: Any, schema: list[Column] | None) -> dict[str, list[Any]]:
    if isinstance(doc, list):
        return _records(doc, "the body", schema)
    if not isinstance(doc, dict):
        raise BadInput("the body must be a JSON object such as {\"dataframe_split\": ...}, "
                       "{\"dataframe_records\": [...]}, {\"instances\": [...]} or "
                       "{\"inputs\": ...}")
    keys = [k for k in ("dataframe_split", "dataframe_records", "instances", "inputs")
            if k in doc]
    if len(keys) != 1:
        found = ", ".join(map(repr, doc)) or "none"
        raise BadInput("the body must have exactly one of 'dataframe_split', "
                       f"'dataframe_records', 'instances' or 'inputs'; it has {found}")
    key = keys[0]
    value = doc[key]
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise BadInput("dataframe_split must be {\"columns\": [...], \"data\": [[...]]}",
                           "dataframe_split")
        names = value.get("columns")
        if names is None:
            if schema is None:
                raise BadInput("dataframe_split needs 'columns' (the model has no signature)",
                               "dataframe_split.columns")
            names = [c.name for c in schema]
        return _split(names, value["data"])
    if key == "inputs" and isinstance(value, dict):
        columns = {}
        for name, values in value.items():
            columns[name] = values if isinstance(values, list) else [values]
        return columns
    if not isinstance(value, list):
        raise BadInput(f"{key} must be a JSON list", key)
    return _records(value, key, schema)


def _records(items: list[Any], where: str, schema: list[Column] | None) -> dict[str, list[Any]]:
    if not items:
        raise BadInput(f"{where} holds no rows")
    if all(isinstance(r, dict) for r in items):
        names: dict[str, None] = {}
        for row in items:
            names.update(dict.fromkeys(row))
        return {n: [row.get(n) for row in items] for n in names}
    if all(isinstance(r, list) for r in items):
        if schema is None:
            raise BadInput(f"{where} holds rows of values but the model has no signature to "
                           "name them: send records ({\"column\": value}) instead")
        return _split([c.name for c in schema], items)
    if all(isinstance(r, (str, int, float, bool)) or r is None for r in items):
        # Plain values, one per row (texts for a Hugging Face pipeline, say): one column,
        # the signature's if it has exactly one.
        name = schema[0].name if schema is not None and len(schema) == 1 else SINGLE
        return {name: list(items)}
    raise BadInput(f"{where} must hold rows that are all objects ({{\"column\": value}}), all "
                   "lists of values, or all plain values")


def _split(names: Any, data: list[Any]) -> dict[str, list[Any]]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadInput("columns must be a list of column names", "columns")
    width = len(names)
    if len(data) == 1 and isinstance(data[0], list) and len(data[0]) == width:
        return {n: [v] for n, v in zip(names, data[0], strict=True)}  # one row: the usual
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != width:
            raise BadInput(f"row {i} has {len(row) if isinstance(row, list) else 'no'} values; "
                           f"the columns are {width}: {', '.join(names)}", f"data[{i}]")
    return {n: [row[j] for row in data] for j, n in enumerate(names)}


def _csv(body: bytes) -> dict[str, list[Any]]:
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise BadInput(f"the CSV body is not UTF-8: {exc}") from exc
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise BadInput("the CSV body is empty: send a header row, then rows") from None
    rows = [r for r in reader if r]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise BadInput(f"CSV row {i + 1} has {len(row)} values; the header has "
                           f"{len(header)}", f"row {i + 1}")
    # CSV has no types: empty cells are missing, the rest are converted by the signature.
    return {n: [row[j] if row[j] != "" else None for row in rows]
            for j, n in enumerate(header)}


def _arrow(body: bytes) -> dict[str, list[Any]]:
    import pyarrow as pa

    try:
        table = pa.ipc.open_stream(body).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInput(f"the body is not an Arrow IPC stream: {exc}") from exc
    return {name: table.column(name).to_pylist() for name in table.column_names}


def _check(columns: dict[str, list[Any]], schema: list[Column] | None) -> Rows:
    counts = {len(v) for v in columns.values()}
    if len(counts) > 1:
        raise BadInput("the columns hold different numbers of values: "
                       + ", ".join(f"{n}: {len(v)}" for n, v in columns.items()))
    count = counts.pop() if counts else 0
    if count == 0:
        raise BadInput("the request holds no rows")
    if schema is None:
        return Rows(columns, count)
    missing = [c for c in schema if c.required and c.name not in columns]
    if missing:
        wanted = ", ".join(f"{c.name} ({c.type})" for c in schema)
        raise BadInput(f"missing column(s) {', '.join(c.name for c in missing)}; the model "
                       f"takes {wanted}", missing[0].name)
    out = {}
    for column in schema:
        values = columns.get(column.name)
        if values is None:
            out[column.name] = [None] * count
            continue
        # The common case, values of the column's own JSON type, costs one pass and no copy.
        same = _JSON_TYPE.get(column.type)
        if same is not None and (type(values[0]) is same if count == 1 else
                                 all(type(v) is same for v in values)):
            out[column.name] = values
        else:
            out[column.name] = [_value(column, v, i) for i, v in enumerate(values)]
    return Rows(out, count)


def _value(column: Column, value: Any, row: int) -> Any:
    kind = column.type
    if value is None:
        if kind in _NUMBER_TYPES:
            return math.nan
        if kind in _INTEGER_TYPES or kind == "boolean":
            raise _wrong(column, value, row)
        return None
    if kind in _INTEGER_TYPES:
        if isinstance(value, bool):
            raise _wrong(column, value, row)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise _wrong(column, value, row)
    if kind in _NUMBER_TYPES:
        if isinstance(value, bool):
            raise _wrong(column, value, row)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _wrong(column, value, row)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise _wrong(column, value, row)
    if kind == "string":
        if isinstance(value, str):
            return value
        raise _wrong(column, value, row)
    return value  # datetime, binary: passed on for the model to take or refuse


_EXPECTED = {"long": "an integer", "integer": "an integer", "double": "a number",
             "float": "a number", "boolean": "true or false", "string": "text"}


def _wrong(column: Column, value: Any, row: int) -> BadInput:
    got = "null" if value is None else type(value).__name__
    shown = repr(value) if len(repr(value)) < 40 else repr(value)[:37] + "..."
    return BadInput(f"column {column.name!r}, row {row}: expected {_EXPECTED[column.type]} "
                    f"({column.type}), got {got} {shown}".rstrip(), column.name)
