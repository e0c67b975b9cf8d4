"""What a fork server imports before it forks: the ``preload`` grammar, and the import itself."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Iterable, Sequence

__all__ = ["import_modules", "parse_preload"]

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def parse_preload(value: str | Sequence[str] | None, auto: Iterable[str] = ()) -> list[str]:
    """The modules a ``preload`` setting names: ``auto`` (the caller's default list), ``none``,
    or module names separated by commas that may include ``auto`` (``auto,torch``). Raises
    ValueError naming a bad entry."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for raw in items:
        item = str(raw).strip()
        if item in ("", "none"):
            continue
        if item == "auto":
            out.extend(m for m in auto if m not in out)
        elif _MODULE.match(item):
            if item not in out:
                out.append(item)
        else:
            raise ValueError(f"preload entry {item!r} is not a module name; use 'auto', "
                             "'none' or module names separated by commas (auto,torch)")
    return out


def import_modules(modules: Iterable[str]) -> list[str]:
    """Import what is installed of ``modules``; the names imported. A module that is not
    installed is skipped; one that fails to import is said on stderr and skipped (the
    processes that need it will say so themselves)."""
    loaded = []
    for name in modules:
        try:
            if importlib.util.find_spec(name.split(".")[0]) is None:
                continue
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:
            print(f"cumulo fork server: not preloading {name}: {exc!r}", file=sys.stderr)
    return loaded
