"""Parsing what users type for jobs: sizes and durations (with cumulo.units' grammar and a
job's limits), environment, inputs."""

from __future__ import annotations

import pytest

from cumulo.compute.spec import MAX_DURATION, parse_env, parse_inputs
from cumulo.errors import Invalid
from cumulo.units import parse_duration, parse_size


def parse_memory(text: str) -> int:
    return parse_size(text, what="memory size")


def parse_duration_s(text: str | float) -> float:
    return parse_duration(text, maximum=MAX_DURATION)


@pytest.mark.parametrize(("text", "size"), [
    ("512M", 512 * 2**20), ("8G", 8 * 2**30), ("1.5GiB", int(1.5 * 2**30)), ("2048", 2048),
    ("4gb", 4 * 2**30), ("1T", 2**40),
])
def test_memory_sizes(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["", "lots", "8X", "-1G", "0", "G8"])
def test_bad_memory_sizes(text: str) -> None:
    with pytest.raises(Invalid, match="memory size"):
        parse_memory(text)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25), ("2d", 172800),
    ("45", 45), (12.5, 12.5),
])
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "1 hour", "0s", "10y", "5x", "400d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(Invalid, match="duration"):
        parse_duration_s(text)


def test_env_pairs() -> None:
    assert parse_env(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(Invalid, match="NAME=VALUE"):
        parse_env(["novalue"])
    with pytest.raises(Invalid, match="variable name"):
        parse_env(["1A=2"])
    with pytest.raises(Invalid, match="set by Cumulo"):
        parse_env(["CUMULO_TOKEN=x"])


def test_inputs() -> None:
    refs = parse_inputs(["train=sales.orders@v3", "raw=data/raw/"])
    assert [(r.name, r.ref, r.kind) for r in refs] == [
        ("train", "sales.orders@v3", "table"), ("raw", "data/raw/", "files")]
    with pytest.raises(Invalid, match="given twice"):
        parse_inputs(["a=x.y", "a=x.z"])
    with pytest.raises(Invalid, match="input name"):
        parse_inputs(["1bad=x.y"])
    with pytest.raises(Invalid, match="names nothing"):
        parse_inputs(["a="])
