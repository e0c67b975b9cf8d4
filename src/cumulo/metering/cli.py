"""``cumulo costs``."""

from __future__ import annotations

import typer
from rich.table import Table

from cumulo.cli.context import client
from cumulo.cli.output import JsonOpt, console, print_json

__all__ = ["costs_command"]


def costs_command(
    ctx: typer.Context,
    by: str = typer.Option("day", "--by",
                           help="day, cluster, user, tag, kind or item (each job or endpoint)"),
    since: str | None = typer.Option(None, "--since", help="2026-11-01, or 7d for a week"),
    until: str | None = typer.Option(None, "--until", help="last day to count (inclusive)"),
    kind: str | None = typer.Option(None, "--kind", help="only job or endpoint"),
    json: bool = JsonOpt,
) -> None:
    """What work used and cost, by the price sheet in the settings."""
    summary = client(ctx).costs(by=by, since=since, until=until, kind=kind)
    if json:
        print_json(summary)
        return
    table = Table(box=None)
    for column in (by, "items", "CPU-h", "GB-h", "GPU-h", "wall-h", "cost (USD)"):
        table.add_column(column, justify="left" if column == by else "right")

    def add(label: str, row: dict[str, float], style: str | None = None) -> None:
        table.add_row(label, f"{int(row.get('count', 0))}",
                      f"{row.get('cpu_seconds', 0) / 3600:.4f}",
                      f"{row.get('memory_gb_seconds', 0) / 3600:.4f}",
                      f"{row.get('gpu_seconds', 0) / 3600:.4f}",
                      f"{row.get('wall_seconds', 0) / 3600:.4f}",
                      f"{row.get('cost_usd', 0):.6f}", style=style)

    for row in summary["rows"]:
        add(str(row[by]), row)
    add("total", summary["total"], style="bold")
    console.print(table)
    p = summary["prices"]
    console.print(f"prices: ${p['vcpu_hour']}/vCPU-hour, ${p['gb_hour']}/GB-hour, "
                  f"${p['gpu_hour']}/GPU-hour", style="dim")
