"""Parsing what users type: memory sizes, durations, ``K=V`` pairs, input references."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cumulo.errors import Invalid

__all__ = ["InputRef", "parse_duration_s", "parse_env", "parse_inputs", "parse_memory"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


def parse_memory(text: str | int) -> int:
    """'8G', '512M', '1.5GiB', '2048' (bytes) to bytes; K, M, G and T are powers of 1024."""
    if isinstance(text, int):
        if text <= 0:
            raise Invalid(f"memory size {text} must be positive")
        return text
    match = _SIZE.match(text)
    if not match:
        raise Invalid(f"memory size {text!r} is not like 512M, 8G or 1.5GiB")
    size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size <= 0:
        raise Invalid(f"memory size {text!r} must be more than zero")
    return size


def parse_duration_s(text: str | float) -> float:
    """'90s', '30m', '1h', '1h30m', '250ms' or plain seconds to seconds."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        stripped = text.strip()
        parts = _DURATION.findall(stripped)
        if re.fullmatch(r"\d+(?:\.\d+)?", stripped):
            seconds = float(stripped)
        elif not parts or _DURATION.sub("", stripped).strip():
            raise Invalid(f"duration {text!r} is not like 90s, 30m, 1h or 1h30m")
        else:
            seconds = sum(float(n) * _SECONDS[u.lower()] for n, u in parts)
    if seconds <= 0:
        raise Invalid(f"duration {text!r} must be more than zero")
    if seconds > 365 * 86400:
        raise Invalid(f"duration {text!r} is over a year")
    return seconds


def parse_env(pairs: list[str] | dict[str, str]) -> dict[str, str]:
    """``['K=V', ...]`` (or a dict) to a dict, checking the names."""
    items = list(pairs.items()) if isinstance(pairs, dict) else [_split(p, "--env") for p in pairs]
    env: dict[str, str] = {}
    for key, value in items:
        if not _ENV_NAME.match(key):
            raise Invalid(f"environment variable name {key!r} must be letters, digits and '_', "
                          "not starting with a digit")
        if key.startswith("CUMULO_"):
            raise Invalid(f"{key}: variables starting with CUMULO_ are set by Cumulo for the job")
        env[key] = str(value)
    return env


def _split(pair: str, option: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise Invalid(f"{option} {pair!r} must be of the form NAME=VALUE")
    return key, value


@dataclass(frozen=True)
class InputRef:
    """What ``--input name=ref`` names: a table (``db.table[@v3]``) or files (``bucket/prefix``)."""

    name: str
    ref: str

    @property
    def kind(self) -> str:
        return "files" if "/" in self.ref else "table"


def parse_inputs(pairs: list[str] | dict[str, str]) -> list[InputRef]:
    items = (list(pairs.items()) if isinstance(pairs, dict)
             else [_split(p, "--input") for p in pairs])
    refs: list[InputRef] = []
    for name, ref in items:
        if not _INPUT_NAME.match(name):
            raise Invalid(f"input name {name!r} must be 1-64 letters, digits, '_' or '-', "
                          "starting with a letter or '_'")
        if not ref:
            raise Invalid(f"input {name!r} names nothing; give a table (sales.orders@v3) or "
                          "files (bucket/prefix/)")
        if any(r.name == name for r in refs):
            raise Invalid(f"input {name!r} is given twice")
        refs.append(InputRef(name, ref))
    return refs
