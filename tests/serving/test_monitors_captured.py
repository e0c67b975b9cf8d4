"""Captured requests read back into rows, in every format an endpoint takes."""

from __future__ import annotations

import base64
import io

import pyarrow as pa

from cumulo.serving.monitors.captured import KEY, PREDICTION, decode

FEATURES = [{"name": "tenure", "kind": "numeric"}, {"name": "plan", "kind": "categorical"}]


def _arrow(table: pa.Table) -> str:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return base64.b64encode(sink.getvalue()).decode()


def test_every_format_is_read_back_with_its_predictions() -> None:
    bodies = [  # (request, content type, encoding, answer)
        ('{"dataframe_records": [{"tenure": 1, "plan": "a", "id": "k1"}, '
         '{"tenure": 2, "plan": "b", "id": "k2"}]}', "application/json", "utf-8",
         '{"predictions":[1,0]}'),
        ('[{"tenure": 3, "plan": "a", "id": 7}]', "application/json", "utf-8",
         '{"predictions":[0]}'),
        ('{"instances": [{"tenure": 4, "plan": "c"}]}', "", "utf-8", '{"predictions":[1]}'),
        ('{"inputs": {"tenure": [5, 6], "plan": ["a", null], "id": ["x", "y"]}}',
         "application/json; charset=utf-8", "utf-8", '{"predictions":[0.5,"z"]}'),
        ('{"dataframe_split": {"columns": ["tenure", "plan"], "data": [[7, "b"]]}}',
         "application/json", "utf-8", '{"predictions":[1]}'),
        ("tenure,plan\n8,a\n", "text/csv", "utf-8", '{"predictions":[0]}'),
        ('{"instances": [[9, "b"]]}', "application/json", "utf-8", '{"predictions":[[0.1,0.9]]}'),
        (_arrow(pa.table({"tenure": [10], "plan": ["a"]})),
         "application/vnd.apache.arrow.stream", "base64", '{"predictions":[1]}'),
        ('{"dataframe_records": [{"tenure": 99, "plan": "a"}]}', "application/json", "utf-8",
         '{"error_code":"BAD_REQUEST"}'),  # refused: not counted
    ]
    captured = pa.table({
        "status": [200] * (len(bodies) - 1) + [400],
        "content_type": [b[1] for b in bodies], "request": [b[0] for b in bodies],
        "request_encoding": [b[2] for b in bodies], "response": [b[3] for b in bodies]})
    rows = decode(captured, FEATURES, key="id").to_pylist()
    by_tenure = {r["tenure"]: r for r in rows}
    assert sorted(by_tenure) == [float(n) for n in range(1, 11)]
    assert by_tenure[1.0] == {"tenure": 1.0, "plan": "a", PREDICTION: "1", KEY: "k1"}
    assert by_tenure[3.0][KEY] == "7"  # keys are compared as text
    assert by_tenure[6.0] == {"tenure": 6.0, "plan": None, PREDICTION: "z", KEY: "y"}
    assert by_tenure[5.0][PREDICTION] == "0.5"
    assert by_tenure[8.0]["plan"] == "a" and by_tenure[8.0][PREDICTION] == "0"
    assert by_tenure[9.0][PREDICTION] == "[0.1,0.9]"  # a structured prediction, as JSON
    assert by_tenure[10.0]["plan"] == "a"


def test_nothing_captured_reads_as_no_rows() -> None:
    empty = pa.table({c: pa.array([], pa.string()) for c in
                      ("content_type", "request", "request_encoding", "response")})
    empty = empty.append_column("status", pa.array([], pa.int32()))
    out = decode(empty, FEATURES)
    assert out.num_rows == 0 and out.column_names == ["tenure", "plan", PREDICTION]
