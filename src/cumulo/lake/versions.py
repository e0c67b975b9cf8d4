"""Comparing two versions of a table, and vacuuming files no retained version needs."""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

import duckdb

from cumulo.errors import Conflict, Invalid
from cumulo.lake import delta
from cumulo.lake.delta import quote_ident as _q

__all__ = ["diff", "vacuum"]

SAMPLE = 20


def diff(loc: delta.Location, *, name: str, start: int, end: int,
         keys: list[str] | None = None) -> dict[str, Any]:
    """Schema changes and rows added, removed and (with keys) changed from ``start`` to ``end``."""
    old = delta.open_table(loc, version=start, name=name)
    new = delta.open_table(loc, version=end, name=name)
    old_schema, new_schema = delta._delta_schema_to_arrow(old), delta._delta_schema_to_arrow(new)
    schema = {
        "added": [f.name for f in new_schema if f.name not in old_schema.names],
        "removed": [f.name for f in old_schema if f.name not in new_schema.names],
        "changed": [{"column": f.name, "from": str(old_schema.field(f.name).type),
                     "to": str(f.type)}
                    for f in new_schema if f.name in old_schema.names
                    and old_schema.field(f.name).type != f.type],
    }
    common = [f.name for f in new_schema if f.name in old_schema.names]
    if keys:
        missing = [k for k in keys if k not in common]
        if missing:
            raise Invalid(f"key column(s) {missing} are not in both versions; columns in both: "
                          f"{common}")
    con = duckdb.connect()
    try:
        con.register("old_v", old.to_pyarrow_dataset())
        con.register("new_v", new.to_pyarrow_dataset())
        cols = ", ".join(_q(c) for c in common)
        out: dict[str, Any] = {"table": name, "from": start, "to": end, "schema": schema,
                               "keys": keys or []}
        if keys:
            on = " AND ".join(f"o.{_q(k)} = n.{_q(k)}" for k in keys)
            first = _q(keys[0])
            added = f"SELECT n.* FROM new_v n ANTI JOIN old_v o ON {on}"
            removed = f"SELECT o.* FROM old_v o ANTI JOIN new_v n ON {on}"
            differs = " OR ".join(f"o.{_q(c)} IS DISTINCT FROM n.{_q(c)}"
                                  for c in common if c not in keys) or "false"
            changed = f"SELECT n.* FROM new_v n JOIN old_v o ON {on} WHERE {differs}"
            order = f" ORDER BY {first}"
        else:
            added = f"SELECT {cols} FROM new_v EXCEPT ALL SELECT {cols} FROM old_v"
            removed = f"SELECT {cols} FROM old_v EXCEPT ALL SELECT {cols} FROM new_v"
            changed = None
            order = ""
        for label, query in (("added", added), ("removed", removed), ("changed", changed)):
            if query is None:
                out[f"rows_{label}"] = None
                out[f"sample_{label}"] = []
                continue
            out[f"rows_{label}"] = con.execute(f"SELECT count(*) FROM ({query})").fetchall()[0][0]
            out[f"sample_{label}"] = con.sql(f"{query}{order} LIMIT {SAMPLE}").to_arrow_table() \
                .to_pylist()
        return out
    except (duckdb.IOException, duckdb.InvalidInputException) as exc:
        if "not found" not in str(exc).lower() and "no files found" not in str(exc).lower():
            raise
        # a version's files went while they were read: the table was dropped or vacuumed
        raise Conflict(f"{name} changed while it was compared (its files are gone: dropped or "
                       "vacuumed); check it still exists and try again") from exc
    finally:
        con.close()


def vacuum(loc: delta.Location, *, name: str, retain: timedelta, dry_run: bool,
           force: bool = False) -> dict[str, Any]:
    """Remove files that no version younger than ``retain`` needs.

    Versions older than that stop being readable; Delta's own minimum (7 days unless the table
    says otherwise) guards against cutting into versions that readers may still use, and only
    ``force`` goes under it.
    """
    hours = math.ceil(retain.total_seconds() / 3600)  # never keep less than asked
    with delta.table_lock(loc.uri):
        table = delta.open_table(loc, name=name)
        minimum = _minimum_retention(table)
        if retain < minimum and not force:
            raise Invalid(
                f"--retain {hours}h is under the table's minimum retention of "
                f"{int(minimum.total_seconds() // 3600)}h: files that versions in between need "
                "would go, and those versions would stop being readable. Pass --force if that "
                "is what you want"
            )
        # full: data files no version references (a write that crashed before its commit)
        # go too, once older than the retention, like those that versions stopped needing
        files = table.vacuum(retention_hours=hours, dry_run=dry_run,
                             enforce_retention_duration=not force, full=True)
        cutoff = time.time() * 1000 - retain.total_seconds() * 1000
        entries = table.history()
        kept = [e["version"] for e in entries if e["timestamp"] >= cutoff]
        oldest = min(kept) if kept else table.version()
    return {"table": name, "dry_run": dry_run, "files": len(files), "paths": files[:100],
            "retain_hours": hours, "oldest_readable_version": oldest}


def _minimum_retention(table: Any) -> timedelta:
    config = table.metadata().configuration or {}
    text = config.get("delta.deletedFileRetentionDuration", "interval 7 days")
    parts = text.replace("interval", "").split()
    try:
        amount = int(parts[0])
        unit = parts[1].rstrip("s")
    except (IndexError, ValueError):
        return timedelta(days=7)
    return timedelta(**{{"day": "days", "hour": "hours", "minute": "minutes",
                         "second": "seconds", "week": "weeks"}.get(unit, "days"): amount})
