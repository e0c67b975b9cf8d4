"""``cumulo costs``."""

from __future__ import annotations

import typer

from cumulo.cli.context import client
from cumulo.cli.output import Cell, JsonOpt, ProjectOpt, console, prints_tables, show_rows

__all__ = ["costs_command"]

_HOURS = {"CPU-h": "cpu_seconds", "GB-h": "memory_gb_seconds", "GPU-h": "gpu_seconds",
          "wall-h": "wall_seconds"}
# Columns shown only when the figures have them (streams' use): jobs' and endpoints' tables
# stay as they were.
_QUANTITIES: dict[str, tuple[str, Cell]] = {
    "shard-h": ("shard_hours", lambda row: f"{row.get('shard_hours', 0):.4f}"),
    "PUT units": ("put_units", lambda row: str(int(row.get("put_units", 0)))),
}


def _hours(key: str) -> Cell:
    return lambda row: f"{row.get(key, 0) / 3600:.4f}"


def costs_command(
    ctx: typer.Context,
    by: str = typer.Option("day", "--by",
                           help="day, cluster, user, project, tag, kind or item (each "
                           "job, endpoint, environment build or stream)"),
    since: str | None = typer.Option(None, "--since",
                                     help="first day to count: a date (2026-11-01), a time "
                                     "(2026-11-01T12:00:00Z) or a span back from now (7d, "
                                     "1h30m); the day it falls on counts whole"),
    until: str | None = typer.Option(None, "--until",
                                     help="last day to count, in the same forms"),
    kind: str | None = typer.Option(None, "--kind",
                                    help="only job, endpoint, environment (its builds) or "
                                    "stream"),
    project: str | None = ProjectOpt,
    json: bool = JsonOpt,
) -> None:
    """What work used and cost, by the price sheet in the settings."""
    summary = client(ctx).costs(by=by, since=since, until=until, kind=kind, project=project)
    rows = [*summary["rows"], {by: "total", **summary["total"]}]
    columns: dict[str, Cell] = {
        by: by, "items": lambda r: int(r.get("count", 0)),
        **{header: _hours(key) for header, key in _HOURS.items()},
        **{header: cell for header, (key, cell) in _QUANTITIES.items()
           if key in summary["total"]},
        "cost (USD)": lambda r: f"{r.get('cost_usd', 0):.6f}",
    }
    show_rows(rows, columns, as_json=json, data=summary, right=list(columns)[1:])
    if not json and prints_tables():  # not under --output csv's rows
        p = summary["prices"]
        streams = (f", ${p['shard_hour']}/shard-hour, ${p['million_put_units']}/million PUT "
                   "units" if "shard_hours" in summary["total"] else "")
        console.print(f"prices: ${p['vcpu_hour']}/vCPU-hour, ${p['gb_hour']}/GB-hour, "
                      f"${p['gpu_hour']}/GPU-hour{streams}", style="dim")
