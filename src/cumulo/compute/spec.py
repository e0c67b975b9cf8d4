"""Parsing what users type for jobs: ``K=V`` pairs and input references (sizes and durations
are :mod:`cumulo.units`')."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cumulo.errors import Invalid

__all__ = ["MAX_DURATION", "STREAM_PREFIX", "InputRef", "parse_env", "parse_inputs"]

MAX_DURATION = 365 * 86400  # the longest a job may run, or a cluster keep an idle worker
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


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


STREAM_PREFIX = "stream:"


@dataclass(frozen=True)
class InputRef:
    """What ``--input name=ref`` names: a table (``db.table[@v3]``), files (``bucket/prefix``)
    or a stream (``stream:clicks[?group=G&from=LATEST]``)."""

    name: str
    ref: str

    @property
    def kind(self) -> str:
        if self.ref.startswith(STREAM_PREFIX):
            return "stream"
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
            raise Invalid(f"input {name!r} names nothing; give a table (sales.orders@v3), "
                          "files (bucket/prefix/) or a stream (stream:clicks)")
        if any(r.name == name for r in refs):
            raise Invalid(f"input {name!r} is given twice")
        refs.append(InputRef(name, ref))
    return refs
