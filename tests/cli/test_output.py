"""The CLI's one way to print rows, a record or a result: a table for people, JSON for scripts."""

from __future__ import annotations

import json

import pytest

from cumulo.cli.output import show_record, show_result, show_rows

ROWS = [{"name": "a", "size": 5, "note": "[draft]", "gone": None, "ok": True},
        {"name": "bb", "size": 12345, "note": "", "gone": "x", "ok": False}]
COLUMNS = {"name": "name", "size": "size", "note": "note", "gone": "gone", "ok": "ok",
           "twice": lambda r: r["size"] * 2}


def test_rows_as_json_are_the_rows(capsys: pytest.CaptureFixture[str]) -> None:
    show_rows(ROWS, COLUMNS, as_json=True)
    assert json.loads(capsys.readouterr().out) == ROWS
    show_rows(ROWS, COLUMNS, as_json=True, data={"rows": ROWS, "total": 2})
    assert json.loads(capsys.readouterr().out) == {"rows": ROWS, "total": 2}


def test_rows_as_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    show_rows(ROWS, COLUMNS, as_json=False, right=("size",))
    lines = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert lines[0].split() == ["name", "size", "note", "gone", "ok", "twice"]
    assert lines[1].split() == ["a", "5", "[draft]", "-", "yes", "10"]  # data is not markup
    assert lines[2].split() == ["bb", "12345", "x", "no", "24690"]
    assert lines[1].index("5 ") == lines[2].index("12345") + 4  # right-aligned


def test_a_record(capsys: pytest.CaptureFixture[str]) -> None:
    record = {"name": "a", "rows": 4}
    show_record(record, [("name", "a"), ("rows", 4), ("left out", None), ("tag", "[x]")],
                as_json=False)
    assert [line.rstrip() for line in capsys.readouterr().out.splitlines()] == [
        "name: a", "rows: 4", " tag: [x]"]
    show_record(record, [("name", "a")], as_json=True)
    assert json.loads(capsys.readouterr().out) == record


def test_a_result(capsys: pytest.CaptureFixture[str]) -> None:
    show_result({"deleted": 3}, "deleted 3 object(s)", as_json=False)
    assert capsys.readouterr().out == "deleted 3 object(s)\n"
    show_result({"deleted": 3}, "deleted 3 object(s)", as_json=True)
    assert json.loads(capsys.readouterr().out) == {"deleted": 3}
