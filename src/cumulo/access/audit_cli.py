"""``cumulo audit``: list the audit log's entries, and check that none was changed."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from cumulo.access.audit_sdk import AuditClient
from cumulo.cli.context import client
from cumulo.cli.output import JsonOpt, console, err, print_json, show_rows, when
from cumulo.units import parse_time

__all__ = ["app"]

app = typer.Typer(name="audit", help="The audit log: who did what, and whether it was allowed.",
                  no_args_is_help=True)

_COLOURS = {"denied": "red", "failed": "yellow"}


def _audit(ctx: typer.Context) -> AuditClient:
    # The same as client(ctx).audit, without needing the root Client to name it first.
    return AuditClient(client(ctx).transport)


def _outcome(event: dict[str, Any]) -> str:
    colour = _COLOURS.get(event["outcome"])
    text = escape(event["outcome"])
    return f"[{colour}]{text}[/]" if colour else text


@app.command("ls")
def list_(
    ctx: typer.Context,
    user: str | None = typer.Option(None, "--user", help="Only this user's entries."),
    action: str | None = typer.Option(None, "--action",
                                      help="An action, or a glob: 'tables:*'."),
    outcome: str | None = typer.Option(None, "--outcome", help="allowed, denied or failed."),
    since: str | None = typer.Option(None, "--since",
                                     help="From then on: 1h, 7d, 2026-11-01, an ISO time."),
    until: str | None = typer.Option(None, "--until", help="Before then (same forms)."),
    limit: int = typer.Option(50, "--limit", help="At most this many (1-1000)."),
    before: int | None = typer.Option(None, "--before",
                                      help="Entries older than this seq: the next page."),
    json: bool = JsonOpt,
) -> None:
    """List audit entries, newest first."""
    # Read here, not by the SDK, so that a wrong one is named as the option it came in.
    page = _audit(ctx).list(user=user, action=action, outcome=outcome,
                            since=parse_time(since, what="--since") if since else None,
                            until=parse_time(until, what="--until") if until else None,
                            limit=limit, before=before)
    show_rows(page["events"], {
        "seq": "seq",
        "at": lambda e: when(e["at"]),
        "user": "user",
        "action": "action",
        "resource": "resource",
        "outcome": _outcome,
        "source": "source",
    }, as_json=json, data=page, right=("seq",))
    if page["next"] is not None and not json:
        err.print(f"more: add --before {page['next']}")


app.command("list", hidden=True)(list_)


@app.command("verify")
def verify(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """Check that no entry was changed, removed or reordered, in the database or in the
    lake's copy (audit.events). Exits with status 1 when one was."""
    report = _audit(ctx).verify()
    if json:
        print_json(report)
    elif report["ok"]:
        lake = report["lake_entries"]
        compared = f"; {lake} compared with audit.events" if lake is not None else ""
        console.print(f"the audit log is intact: {report['entries']} entries checked"
                      f"{compared}")
    else:
        where = "audit.events" if report["where"] == "lake" else "the database"
        at = f" at seq {report['first_bad']}" if report["first_bad"] is not None else ""
        err.print(f"[red]the audit log is broken[/] in {where}{at}: "
                  f"{escape(report['problem'] or '')}")
    if not report["ok"]:
        raise typer.Exit(1)
