"""Records to rows (streams/rows.py): Arrow's fast read agrees with fit() wherever it is used."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from cumulo.streams.rows import fit, read_fitting

SCHEMA = pa.schema([
    pa.field("user", pa.string(), nullable=False),
    pa.field("n", pa.int64()),
    pa.field("x", pa.float64()),
    pa.field("ok", pa.bool_()),
    pa.field("at", pa.timestamp("us", tz="UTC")),
])

GOOD = [
    {"user": "a", "n": 1, "x": 2, "ok": True, "at": "2026-12-04T10:00:00Z"},
    {"user": "é", "n": -5, "x": 0.5, "ok": False, "at": "2026-12-04T12:00:00+02:00"},
    {"user": "c", "at": "2026-12-04T10:00:00"},  # no zone: UTC
    {"user": "d", "n": None, "x": None},
]

# Each fits no schema column rule: fit() names why; the fast read must decline them all.
BAD = [
    {"user": 5}, {"user": "a", "n": "3"}, {"user": "a", "x": "3"}, {"user": "a", "ok": 1},
    {"user": "a", "n": 2.5}, {"user": "a", "zz": 1}, {"n": 1}, {"user": None},
    {"user": "a", "at": 5}, {"user": "a", "n": 2 ** 63}, [1, 2], "text",
]


def _raw(objects: list[object]) -> list[bytes]:
    return [json.dumps(o).encode() for o in objects]


def test_the_fast_read_gives_what_fit_gives() -> None:
    fast = read_fitting(_raw(GOOD), SCHEMA)
    slow, bad = fit(GOOD, SCHEMA)
    assert fast is not None and not bad
    assert fast.schema == slow.schema == SCHEMA
    assert fast.to_pylist() == slow.to_pylist()


@pytest.mark.parametrize("misfit", BAD, ids=[json.dumps(b) for b in BAD])
def test_the_fast_read_declines_any_misfit(misfit: object) -> None:
    raw = _raw([*GOOD, misfit])
    assert read_fitting(raw, SCHEMA) is None
    _, bad = fit([json.loads(r) for r in raw], SCHEMA)
    assert list(bad) == [len(GOOD)]  # and fit() says which one, and why


def test_the_fast_read_declines_what_it_cannot_line_up() -> None:
    assert read_fitting([b'{"user":\n"a"}'], SCHEMA) is None  # a record over two lines
    assert read_fitting([b'{"user":"a"}', b""], SCHEMA) is None  # an empty record
    assert read_fitting([b"not json"], SCHEMA) is None
    assert read_fitting([], SCHEMA) is None
    dated = pa.schema([pa.field("d", pa.date32())])  # a rule of fit's own: no fast read
    assert read_fitting([b'{"d": "2026-12-04"}'], dated) is None
