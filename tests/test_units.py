"""The one grammar for durations, sizes and points in time (``cumulo.units``)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

import cumulo.units
from cumulo.errors import Invalid
from cumulo.units import day_of, format_duration, parse_duration, parse_size, parse_time

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FORMS = "use forms like 90s, 30m, 1h30m, 7d, 2w"


def test_exported_names() -> None:
    assert cumulo.units.__all__ == ["day_of", "format_duration", "parse_duration",
                                    "parse_size", "parse_time"]


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("1h 30m", 5400),
    ("1 h 30 m", 5400), ("1H30M", 5400), ("1.5h", 5400), (".5h", 1800), ("250ms", 0.25),
    ("1m30s", 90), ("7d", 7 * 86400), ("2w", 14 * 86400), ("1w2d", 9 * 86400),
    ("45", 45), (" 45 ", 45), ("2.5", 2.5), (12.5, 12.5), (90, 90),
])
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "message"), [
    ("5x", f"--max-runtime '5x' is not a duration: {FORMS}"),
    ("", f"--max-runtime '' is not a duration: {FORMS}"),
    ("soon", f"--max-runtime 'soon' is not a duration: {FORMS}"),
    ("1 hour", f"--max-runtime '1 hour' is not a duration: {FORMS}"),
    ("1h30", f"--max-runtime '1h30' is not a duration: {FORMS}"),  # 30 what?
    ("10y", f"--max-runtime '10y' is not a duration: {FORMS}"),
    ("-1h", f"--max-runtime '-1h' is not a duration: {FORMS}"),
    ("0s", f"--max-runtime '0s' must be a duration longer than zero: {FORMS}"),
    ("0", f"--max-runtime '0' must be a duration longer than zero: {FORMS}"),
    (-5, f"--max-runtime -5 must be a duration longer than zero: {FORMS}"),
    (True, f"--max-runtime True is not a duration: {FORMS}"),
    (float("nan"), f"--max-runtime nan is not a duration: {FORMS}"),
    ("99999999999d", "--max-runtime '99999999999d' is too long: a duration may not be over "
                     "a hundred years"),
])
def test_bad_durations_name_the_value_and_show_forms(text: str | float, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_duration(text, what="--max-runtime")
    assert caught.value.message == message


def test_duration_options() -> None:
    assert parse_duration("0s", allow_zero=True) == 0
    with pytest.raises(Invalid, match=r"^-1 must be a duration of 0 or more"):
        parse_duration(-1, allow_zero=True)
    assert parse_duration("365d", maximum=365 * 86400) == 365 * 86400
    with pytest.raises(Invalid, match=r"^'366d' is too long: a duration may not be over 365d$"):
        parse_duration("366d", maximum=365 * 86400)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.25, "250ms"), (45, "45s"), (90, "1m30s"), (600, "10m"), (5400, "1h30m"),
    (86400, "1d"), (7 * 86400, "7d"), (90061.5, "1d1h1m1s500ms"),
])
def test_format_duration_reads_back(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text, allow_zero=True) == pytest.approx(seconds)


@pytest.mark.parametrize("seconds", [-1, float("inf"), float("nan")])
def test_format_duration_refuses_what_is_not_one(seconds: float) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        format_duration(seconds)


@pytest.mark.parametrize(("text", "size"), [
    ("512M", 512 * 2**20), ("512MiB", 512 * 2**20), ("8G", 8 * 2**30), ("4gb", 4 * 2**30),
    ("2GiB", 2 * 2**30), ("1.5GiB", int(1.5 * 2**30)), ("1T", 2**40), ("6m", 6 * 2**20),
    ("64K", 65536), ("2048", 2048), ("2048B", 2048), (" 8 G ", 8 * 2**30), (4096, 4096),
])
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "message"), [
    ("lots", "--max-body 'lots' is not a size: use forms like 512M, 8G, 1.5GiB or a number "
             "of bytes"),
    ("8X", "--max-body '8X' is not a size"), ("", "--max-body '' is not a size"),
    ("-1G", "--max-body '-1G' is not a size"), ("G8", "--max-body 'G8' is not a size"),
    ("0", "--max-body '0' must be more than zero bytes"),
    (0, "--max-body 0 must be more than zero bytes"),
    (True, "--max-body True is not a size"),
])
def test_bad_sizes(text: str | int, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_size(text, what="--max-body")
    assert caught.value.message.startswith(message)


@pytest.mark.parametrize(("text", "moment"), [
    ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
    ("2026-11-01T12:00:00Z", datetime(2026, 11, 1, 12, tzinfo=UTC)),
    ("2026-11-01T12:00:00", datetime(2026, 11, 1, 12, tzinfo=UTC)),  # no offset: UTC
    ("2026-11-01T14:00:00+02:00", datetime(2026, 11, 1, 12, tzinfo=UTC)),
    ("2026-11-01 12:00", datetime(2026, 11, 1, 12, tzinfo=UTC)),
    ("2026-11-01T12:00:00.250z", datetime(2026, 11, 1, 12, 0, 0, 250000, tzinfo=UTC)),
    ("7d", datetime(2026, 11, 19, 12, tzinfo=UTC)),
    ("1h30m", datetime(2026, 11, 26, 10, 30, tzinfo=UTC)),
    ("0s", NOW),
])
def test_times(text: str, moment: datetime) -> None:
    parsed = parse_time(text, now=NOW)
    assert parsed == moment and parsed.tzinfo is UTC


def test_a_span_counts_back_from_the_clock_by_default() -> None:
    before = datetime.now(UTC)
    moment = parse_time("1h")
    assert 3599 <= (before - moment).total_seconds() <= 3601


@pytest.mark.parametrize("text", ["yesterday", "45", "2026-13-01", "2026-11-01T25:00", "",
                                  "5x"])
def test_bad_times(text: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_time(text, what="--since", now=NOW)
    assert caught.value.message == (
        f"--since {text!r} is not a time: use a date like 2026-11-01, a time like "
        "2026-11-01T12:00:00Z, or a span back from now like 7d or 1h30m")


def test_units_is_core_and_light() -> None:
    """units imports only the standard library and cumulo.errors (it is core)."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(cumulo.units.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert {m for m in imported if m.startswith("cumulo")} == {"cumulo.errors"}
    assert imported <= {"__future__", "math", "re", "datetime", "cumulo.errors"}


def test_docstring_examples() -> None:
    import doctest

    assert doctest.testmod(cumulo.units).failed == 0


@pytest.mark.parametrize(("call", "message"), [
    (lambda: parse_size("9" * 400), "is too large"),
    (lambda: parse_size("99999999999999T"), "is too large"),
    (lambda: parse_duration(10**400), "is too long"),
    (lambda: parse_time("0001-01-01T00:00:00+01:00"), "is not a time"),
    (lambda: parse_time("9999-12-31T23:00:00-05:00"), "is not a time"),
])
def test_values_past_any_limit_are_refused_not_crashed_on(call: Any, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        call()


def test_the_day_a_since_names() -> None:
    now = datetime(2026, 11, 26, 0, 30, tzinfo=UTC)
    assert day_of("1d", now=now) == date(2026, 11, 26)  # today
    assert day_of("7d", now=now) == date(2026, 11, 20)  # the last seven days
    assert day_of("2w", now=now) == date(2026, 11, 13)
    assert day_of("1h", now=now) == date(2026, 11, 25)  # an hour ago was yesterday
    assert day_of("2026-11-01", now=now) == date(2026, 11, 1)
    assert day_of("2d", now=now, start=False) == date(2026, 11, 24)  # --until 2d
