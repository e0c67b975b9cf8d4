"""``cumulo logs``: the control plane's own log (``GET /api/v1/logs``, administrators), as
``cumulo jobs logs`` prints a job's."""

from __future__ import annotations

import sys
from typing import Any

import typer

from cumulo.cli.context import client
from cumulo.units import parse_time

__all__ = ["logs_command"]


def logs_command(
    ctx: typer.Context,
    service: str | None = typer.Option(None, "--service",
                                       help="only one service's lines: compute, serving, "
                                       "lake, access (the HTTP requests), uvicorn..."),
    follow: bool = typer.Option(False, "--follow", "-f", help="stream new lines as they come"),
    since: str | None = typer.Option(None, "--since",
                                     help="From then on: 10m, 1h30m, 2026-11-01, an ISO time."),
) -> None:
    """Print the control plane's log: JSON lines, each with the request id it was written
    for ('grep' one to follow a request across services)."""
    # Read here, so that a wrong one is named as the option it came in.
    at = parse_time(since, what="--since").isoformat() if since else None
    params: dict[str, Any] = {"follow": str(follow).lower()}
    if service is not None:
        params["service"] = service
    if at is not None:
        params["since"] = at
    pending = b""
    with client(ctx).transport.stream("GET", "/api/v1/logs", params=params,
                                      timeout=None) as response:
        for chunk in response.iter_raw():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                sys.stdout.write(line.decode("utf-8", "replace") + "\n")
            sys.stdout.flush()
    if pending:
        sys.stdout.write(pending.decode("utf-8", "replace") + "\n")
