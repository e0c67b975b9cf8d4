"""Request bodies: MLflow's scoring formats, CSV and Arrow, checked against a signature."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from cumulo.serving.formats import ARROW, BadInput, Column, parse, schema_from_signature

SCHEMA = schema_from_signature([{"name": "tenure", "type": "long"},
                                {"name": "spend", "type": "double"},
                                {"name": "plan", "type": "string"}])
WANT = {"tenure": [2, 50], "spend": [30.0, 80.0], "plan": ["basic", "pro"]}


def _arrow() -> bytes:
    sink = pa.BufferOutputStream()
    table = pa.table({"tenure": [2, 50], "spend": [30.0, 80.0], "plan": ["basic", "pro"]})
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize(("body", "kind"), [
    (b'{"dataframe_split": {"columns": ["tenure", "spend", "plan"],'
     b' "data": [[2, 30.0, "basic"], [50, 80, "pro"]]}}', "application/json"),
    (b'{"dataframe_records": [{"tenure": 2, "spend": 30.0, "plan": "basic"},'
     b' {"tenure": 50, "spend": 80, "plan": "pro"}]}', "application/json"),
    (b'[{"tenure": 2, "spend": 30.0, "plan": "basic"},'
     b' {"tenure": 50, "spend": 80, "plan": "pro"}]', "application/json"),
    (b'{"instances": [[2, 30.0, "basic"], [50, 80.0, "pro"]]}', "application/json"),
    (b'{"inputs": {"tenure": [2, 50], "spend": [30, 80], "plan": ["basic", "pro"]}}',
     "application/json; charset=utf-8"),
    (b"tenure,spend,plan\n2,30,basic\n50,80.0,pro\n", "text/csv"),
    (_arrow(), ARROW),
])
def test_every_format_gives_the_same_rows(body: bytes, kind: str) -> None:
    rows = parse(body, kind, SCHEMA)
    assert rows.count == 2 and rows.columns == WANT


def test_bad_bodies_are_named() -> None:
    cases = [
        (b'{"dataframe_records": [', "not valid JSON"),
        (b'{"rows": []}', "exactly one of 'dataframe_split'"),
        (b'{"dataframe_records": [{"tenure": 2, "spend": 3.0}]}', "missing column(s) plan"),
        (b'{"dataframe_records": [{"tenure": "two", "spend": 3.0, "plan": "x"}]}',
         "column 'tenure', row 0: expected an integer (long), got str 'two'"),
        (b'{"dataframe_records": [{"tenure": 1, "spend": true, "plan": "x"}]}',
         "column 'spend', row 0: expected a number (double), got bool True"),
        (b'{"dataframe_records": [{"tenure": 1, "spend": 1, "plan": 7}]}',
         "column 'plan', row 0: expected text (string), got int 7"),
        (b'{"dataframe_split": {"columns": ["tenure"], "data": [[1, 2]]}}', "row 0 has 2 values"),
        (b'{"dataframe_records": []}', "holds no rows"),
        (b'{"inputs": {"tenure": [1, 2], "spend": [1.0], "plan": ["a", "b"]}}',
         "different numbers of values"),
    ]
    for body, message in cases:
        with pytest.raises(BadInput) as caught:
            parse(body, "application/json", SCHEMA)
        assert message in str(caught.value), (body, str(caught.value))
    with pytest.raises(BadInput, match="CSV row 1 has 2 values"):
        parse(b"tenure,spend,plan\n1,2\n", "text/csv", SCHEMA)
    with pytest.raises(BadInput, match="not an Arrow IPC stream"):
        parse(b"nope", ARROW, SCHEMA)
    with pytest.raises(BadInput, match="content type 'text/xml' is not taken"):
        parse(b"<a/>", "text/xml", SCHEMA)


def test_missing_values_and_no_signature() -> None:
    rows = parse(b'{"dataframe_records": [{"tenure": 1, "spend": null, "plan": null}]}',
                 "application/json", SCHEMA)
    assert math.isnan(rows.columns["spend"][0]) and rows.columns["plan"] == [None]
    free = parse(b'{"instances": [{"a": 1}, {"b": 2}]}', "application/json", None)
    assert free.columns == {"a": [1, None], "b": [None, 2]} and free.count == 2
    with pytest.raises(BadInput, match="no signature to name them"):
        parse(b'{"instances": [[1, 2]]}', "application/json", None)
    assert schema_from_signature(None) is None
    assert schema_from_signature([{"type": "double"}]) is None  # a tensor signature
    assert [Column("tenure", "long"), Column("spend", "double"),
                      Column("plan", "string")] == SCHEMA


def test_plain_values_are_one_column() -> None:
    """{"inputs": ["a text", ...]}: what a Hugging Face pipeline takes, one value a row."""
    rows = parse(b'{"inputs": ["a good movie", "a bad one"]}', "application/json", None)
    assert rows.columns == {"inputs": ["a good movie", "a bad one"]} and rows.count == 2
    one = [Column("text", "string")]
    assert parse(b'{"instances": ["hi"]}', "application/json", one).columns == {"text": ["hi"]}
    with pytest.raises(BadInput, match="all plain values"):
        parse(b'{"instances": ["hi", {"a": 1}]}', "application/json", None)
