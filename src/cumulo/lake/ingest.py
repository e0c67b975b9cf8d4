"""Reading CSV, Parquet, JSON and JSON Lines files as streams of Arrow batches, in bounded
memory, with errors that name the file and the line."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from cumulo.errors import Invalid

__all__ = ["FORMATS", "Format", "detect_format", "open_reader"]

Format = Literal["csv", "parquet", "json", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "parquet", "json", "jsonl")
_EXTENSIONS: dict[str, Format] = {
    ".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
}
_BLOCK = 1 << 20
_INFER_BLOCK = 16 << 20


def detect_format(name: str, given: str | None = None) -> Format:
    if given:
        if given not in FORMATS:
            raise Invalid(f"format {given!r} is not one of {', '.join(FORMATS)}")
        return given
    suffixes = [s.lower() for s in Path(name).suffixes if s.lower() not in (".gz",)]
    for suffix in reversed(suffixes):
        if suffix in _EXTENSIONS:
            return _EXTENSIONS[suffix]
    raise Invalid(f"cannot tell the format of {name!r} from its name; pass --format "
                  f"({', '.join(FORMATS)})")


def open_reader(path: Path, fmt: Format, *, label: str) -> pa.RecordBatchReader:
    """A reader of the file's rows; ``label`` names the file in errors."""
    if fmt == "csv":
        return _csv(path, label)
    if fmt == "parquet":
        try:
            source = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise Invalid(f"{label} is not a Parquet file: {exc}") from exc
        return pa.RecordBatchReader.from_batches(source.schema_arrow,
                                                 source.iter_batches(batch_size=65536))
    if fmt == "jsonl":
        try:
            return _guarded(pajson.open_json(path, read_options=pajson.ReadOptions(
                block_size=_INFER_BLOCK)), path, label, fmt)
        except pa.ArrowInvalid as exc:
            raise Invalid(f"{label}: not valid JSON Lines: {exc}") from exc
    return _json_document(path, label)


def _csv(path: Path, label: str) -> pa.RecordBatchReader:
    bad: list[str] = []

    def invalid_row(row: pacsv.InvalidRow) -> str:
        number = row.number if row.number is not None else _find_line(path, row.text)
        where = f"line {number}" if number is not None else "a row"
        bad.append(f"{label}, {where}: expected {row.expected_columns} columns, got "
                   f"{row.actual_columns}: {row.text[:120]!r}")
        return "error"

    delimiter = "\t" if path.suffix.lower() == ".tsv" or label.lower().endswith(".tsv") else ","
    parse = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=invalid_row)
    try:
        # Column types come from a first large block, as they would for a one-block read;
        # the rows then stream in small blocks, which keeps the reader's memory low.
        with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=_INFER_BLOCK),
                            parse_options=parse) as probe:
            schema = probe.schema
        reader = pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(block_size=_BLOCK), parse_options=parse,
            convert_options=pacsv.ConvertOptions(column_types=schema),
        )
    except pa.ArrowInvalid as exc:
        if bad:
            raise Invalid(f"malformed CSV row in {bad[0]}; nothing was written") from exc
        raise Invalid(f"{label}: {_explain(exc, path, label)}") from exc
    return _guarded(reader, path, label, "csv", bad)


def _find_line(path: Path, text: str) -> int | None:
    """The line number of a row, found again by its text (the parallel parser loses it)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if line.rstrip("\r\n") == text:
                return number
    return None


def _guarded(reader: pa.RecordBatchReader, path: Path, label: str, fmt: str,
             bad: list[str] | None = None) -> pa.RecordBatchReader:
    """Turn errors raised while streaming into Invalid errors that name the line."""

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except pa.ArrowInvalid as exc:
            if bad:
                raise Invalid(f"malformed CSV row in {bad[0]}; nothing was written") from exc
            detail = _explain(exc, path, label) if fmt == "csv" else str(exc)
            raise Invalid(f"{label}: {detail}; nothing was written") from exc

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def _explain(exc: Exception, path: Path, label: str) -> str:
    """For a CSV value that does not fit its column's type, find the line it is on."""
    message = str(exc)
    marker = "invalid value '"
    if marker not in message:
        return message
    value = message.split(marker, 1)[1].split("'", 1)[0]
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            if value in row:
                column = row.index(value)
                return (f"line {number}, column {column + 1}: {value!r} does not fit the type "
                        f"inferred from the rows before it ({message.split(':', 1)[0]})")
    return message


def _json_document(path: Path, label: str) -> pa.RecordBatchReader:
    """A JSON array of objects (or one object). Read whole: use JSON Lines for big files."""
    try:
        with open(path, "rb") as f:
            doc = json.load(io.TextIOWrapper(f, encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        where = f", line {line}" if line else ""
        raise Invalid(f"{label}{where}: not valid JSON: {exc}; nothing was written") from exc
    rows = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(r, dict) for r in rows):
        raise Invalid(f"{label}: a JSON file must hold an object or an array of objects")
    try:
        table = pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise Invalid(f"{label}: {exc}") from exc
    except OverflowError as exc:
        raise Invalid(f"{label}: a number is too large for a 64-bit column ({exc}); write it "
                      "as a string, or as a float; nothing was written") from exc
    return table.to_reader()
