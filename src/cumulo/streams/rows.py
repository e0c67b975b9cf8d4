"""Records to rows: JSON objects fitted to a table's columns, each one that does not fit set
aside with the reason (a delivery sends those to the table's error table).

A record fits when it is a JSON object, names only the table's columns, has a value for every
column that is not nullable, and each value is of its column's type: a whole number for an
integer column (``2.0`` is, ``2.5`` is not), a number for a float column, ``true``/``false``
for a boolean, text for a string column, ISO 8601 text for a timestamp or a date (a time
without a zone is UTC), and what Arrow makes of lists and objects for nested columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["fit", "read_fitting"]


class _Misfit(ValueError):
    pass


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _time(value: Any, tz: str | None) -> datetime:
    if isinstance(value, datetime):
        at = value
    elif isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise _Misfit("is not an ISO 8601 time") from None
    else:
        raise _Misfit("is not a time: give ISO 8601 text, like 2026-12-06T10:00:00Z")
    if tz is not None:
        return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo is not None else at


def _prepare(value: Any, kind: pa.DataType) -> Any:
    """``value`` as Arrow takes it for a column of ``kind``; _Misfit (why) if it does not fit.
    What is not checked here (nested types) Arrow checks itself."""
    import pyarrow as pa

    if value is None:
        return None
    if pa.types.is_integer(kind):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Misfit(f"is {_kind(value)}, not a whole number")
        if isinstance(value, float) and not value.is_integer():
            raise _Misfit("is not a whole number")
        return int(value)
    if pa.types.is_floating(kind):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Misfit(f"is {_kind(value)}, not a number")
        return float(value)
    if pa.types.is_boolean(kind):
        if not isinstance(value, bool):
            raise _Misfit(f"is {_kind(value)}, not true or false")
        return value
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if not isinstance(value, str):
            raise _Misfit(f"is {_kind(value)}, not text")
        return value
    if pa.types.is_timestamp(kind):
        return _time(value, kind.tz)
    if pa.types.is_date(kind):
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if not isinstance(value, str):
            raise _Misfit(f"is {_kind(value)}, not a date: give text like 2026-12-06")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise _Misfit("is not an ISO 8601 date, like 2026-12-06") from None
    return value


def _array(values: list[Any], kind: pa.DataType) -> pa.Array:
    import pyarrow as pa

    try:
        return pa.array(values, kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError) as exc:
        raise _Misfit(f"does not fit: {exc}") from None


def fit(objects: Sequence[Any], schema: pa.Schema) -> tuple[pa.Table, dict[int, str]]:
    """The rows of ``objects`` that fit ``schema``, in order, as a table of that schema; and,
    by position in ``objects``, why each other one does not fit."""
    import pyarrow as pa

    names = set(schema.names)
    bad: dict[int, str] = {}
    prepared: list[dict[str, Any]] = []
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict):
            bad[i] = f"the record is {_kind(obj)}, not a JSON object"
            prepared.append({})
            continue
        row: dict[str, Any] = {}
        try:
            extra = sorted(k for k in obj if k not in names)
            if extra:
                raise _Misfit(f"field(s) {', '.join(map(repr, extra[:5]))} are not columns "
                              f"of the table (its columns: {', '.join(schema.names)})")
            for field in schema:
                value = obj.get(field.name)
                if value is None and not field.nullable:
                    raise _Misfit(f"column {field.name!r} is missing, and it is not nullable")
                try:
                    row[field.name] = _prepare(value, field.type)
                except _Misfit as exc:
                    raise _Misfit(f"column {field.name!r} ({field.type}): {_shown(value)} "
                                  f"{exc}") from None
        except _Misfit as exc:
            bad[i] = str(exc)
        prepared.append(row)
    for field in schema:  # what Arrow itself refuses (nested values): found one by one
        good = [i for i in range(len(objects)) if i not in bad]
        values = [prepared[i][field.name] for i in good]
        try:
            _array(values, field.type)
        except _Misfit:
            for i, value in zip(good, values, strict=True):
                try:
                    _array([value], field.type)
                except _Misfit as exc:
                    bad[i] = f"column {field.name!r} ({field.type}): {_shown(value)} {exc}"
    good = [i for i in range(len(objects)) if i not in bad]
    columns = [_array([prepared[i][f.name] for i in good], f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema), bad


def _arrow_agrees(kind: pa.DataType) -> bool:
    """Whether Arrow's JSON reader takes exactly what :func:`fit` takes for a column of
    ``kind`` (checked in tests/streams/test_rows.py): numbers, booleans, text, and times with a
    zone (ISO 8601, offsets turned to UTC, none meaning UTC)."""
    import pyarrow as pa

    return (pa.types.is_integer(kind) or pa.types.is_floating(kind)
            or pa.types.is_boolean(kind) or pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or (pa.types.is_timestamp(kind) and kind.tz is not None))


def read_fitting(raw: Sequence[bytes], schema: pa.Schema) -> pa.Table | None:
    """The records ``raw`` (JSON text, one object each) as a table of ``schema``, read in one
    go by Arrow's JSON reader (C++, many times faster than fitting them one by one) when every
    one of them fits; None when any might not, or the schema has a column whose rules differ
    from Arrow's: then :func:`fit` sorts them out, with a reason for each misfit.

    Arrow is strict where :func:`fit` is (a number is never text, nor text a number; a field
    that is not a column fails), and lenient nowhere it is not; the one rule it does not
    check, a value for every column that is not nullable, is checked on its result.
    """
    import pyarrow as pa
    import pyarrow.json as pj

    if not raw or not all(_arrow_agrees(field.type) for field in schema):
        return None
    if any(not data or b"\n" in data or b"\r" in data for data in raw):
        return None  # one record a line, none empty: else the rows would not match them
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    try:
        table = pj.read_json(pa.py_buffer(b"\n".join(raw)), parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(raw):
        return None
    for field in schema:
        if not field.nullable and table.column(field.name).null_count:
            return None
    return table.select(schema.names).cast(schema)
