"""``cumulo costs``, ``cumulo budgets`` and ``cumulo alerts``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from cumulo.cli.context import client
from cumulo.cli.output import (
    Cell,
    JsonOpt,
    ProjectOpt,
    console,
    print_json,
    prints_tables,
    show_record,
    show_result,
    show_rows,
)
from cumulo.errors import Invalid

__all__ = ["alerts_app", "budgets_app", "costs_command"]

_HOURS = {"CPU-h": "cpu_seconds", "GB-h": "memory_gb_seconds", "GPU-h": "gpu_seconds",
          "wall-h": "wall_seconds"}
# Columns shown only when the figures have them (streams', storage's and SQL's use): jobs'
# and endpoints' tables stay as they were.
_QUANTITIES: dict[str, tuple[str, Cell]] = {
    "shard-h": ("shard_hours", lambda row: f"{row.get('shard_hours', 0):.4f}"),
    "PUT units": ("put_units", lambda row: str(int(row.get("put_units", 0)))),
    "GB-h stored": ("storage_gb_hours", lambda row: f"{row.get('storage_gb_hours', 0):.4f}"),
    "GB scanned": ("bytes_scanned", lambda row: f"{row.get('bytes_scanned', 0) / 1e9:.3f}"),
}


def _hours(key: str) -> Cell:
    return lambda row: f"{row.get(key, 0) / 3600:.4f}"


def _dollars(key: str) -> Cell:
    return lambda row: f"{row.get(key, 0):.6f}"


def costs_command(
    ctx: typer.Context,
    by: str = typer.Option("day", "--by",
                           help="day, service, user, project, tag, resource (each job, "
                           "endpoint, pipeline, notebook, bucket, table...), cluster, kind or "
                           "item"),
    since: str | None = typer.Option(None, "--since",
                                     help="first day to count: a date (2026-11-01), a time "
                                     "(2026-11-01T12:00:00Z) or a span back from now (7d, "
                                     "1h30m); the day it falls on counts whole"),
    until: str | None = typer.Option(None, "--until",
                                     help="last day to count, in the same forms"),
    kind: str | None = typer.Option(None, "--kind",
                                    help="only job, endpoint, environment (its builds), "
                                    "stream, storage or sql"),
    sheet: str = typer.Option("both", "--sheet",
                              help="cloud (AWS list prices), own (your hardware, amortised) "
                              "or both, side by side"),
    csv_file: str | None = typer.Option(None, "--csv", metavar="FILE",
                                        help="write the figures as CSV to FILE ('-': stdout)"),
    fmt: str | None = typer.Option(None, "--format", help="csv: print the figures as CSV"),
    project: str | None = ProjectOpt,
    json: bool = JsonOpt,
) -> None:
    """What work used and cost, by the cloud's and your own hardware's price sheets, and
    the month-end forecast."""
    if fmt not in (None, "csv", "table", "json"):
        raise Invalid(f"--format {fmt!r} is not csv, table or json")
    costs = client(ctx).costs
    if csv_file is not None or fmt == "csv":
        text = costs.csv(by=by, since=since, until=until, kind=kind, project=project,
                         sheet=sheet)
        if csv_file in (None, "-"):
            sys.stdout.write(text)
        else:
            Path(csv_file).write_text(text)
            console.print(f"wrote {text.count(chr(10)) - 1} rows to {csv_file}")
        return
    summary = costs(by=by, since=since, until=until, kind=kind, project=project, sheet=sheet)
    json = json or fmt == "json"
    rows = [*summary["rows"], {by: "total", **summary["total"]}]
    money: dict[str, Cell] = (
        {"cloud $": _dollars("cloud_usd"), "own $": _dollars("own_usd")} if sheet == "both"
        else {f"{sheet} $": _dollars("cost_usd")})
    columns: dict[str, Cell] = {
        by: by, "items": lambda r: int(r.get("count", 0)),
        **{header: _hours(key) for header, key in _HOURS.items()},
        **{header: cell for header, (key, cell) in _QUANTITIES.items()
           if key in summary["total"]},
        **money,
    }
    if json:
        print_json(summary)
        return
    show_rows(rows, columns, as_json=False, right=list(columns)[1:])
    if prints_tables():  # not under --output csv's rows
        p, total = summary["sheets"]["cloud"], summary["total"]
        extra = "".join(text for key, text in (
            ("shard_hours", f", ${p['shard_hour']}/shard-hour, ${p['million_put_units']}/"
                            "million PUT units"),
            ("storage_gb_hours", f", ${p['storage_gb_month']}/GB-month stored"),
            ("bytes_scanned", f", ${p['tb_scanned']}/TB scanned")) if key in total)
        console.print(f"prices: ${p['vcpu_hour']}/vCPU-hour, ${p['gb_hour']}/GB-hour, "
                      f"${p['gpu_hour']}/GPU-hour{extra}; own hardware: "
                      f"${summary['sheets']['own']['machine_hour']:.4f} a machine-hour "
                      "(docs/costs.md)", style="dim")
        found = costs.forecast(project=project)
        console.print(f"{found['month']}: ${found['spent_usd']:.2f} so far, "
                      f"${found['forecast_usd']:.2f} forecast by month end "
                      f"({found['primary']} sheet; own "
                      f"${found['sheets']['own']['forecast_usd']:.2f})")


# --- budgets ----------------------------------------------------------------------------------

budgets_app = typer.Typer(help="Budgets: alerts and actions when spending runs away.",
                          no_args_is_help=True)


def _budget_line(b: dict[str, Any]) -> str:
    return f"${b['spent']:.2f} of ${b['amount']:g} ({b['percent']:g}%)"


@budgets_app.command("create")
def budgets_create(
    ctx: typer.Context, name: str,
    amount: str = typer.Option(..., "--amount", help="dollars a period"),
    period: str = typer.Option("month", "--period", help="day, week or month"),
    scope: str = typer.Option("all", "--scope",
                              help="all, project:NAME, user:NAME, tag:K=V or service:NAME"),
    alert: str | None = typer.Option(None, "--alert",
                                     help="thresholds in percent: 50%,80%,100%"),
    action: str | None = typer.Option(None, "--action",
                                      help="100%:stop-new-jobs,scale-endpoints-to-zero"),
    webhook: str | None = typer.Option(None, "--webhook", help="where alerts are POSTed"),
    json: bool = JsonOpt,
) -> None:
    """Create a budget."""
    made = client(ctx).budgets.create(name, amount=amount,
                                      period=period, scope=scope, alert=alert, action=action,
                                      webhook=webhook)
    show_result(made, f"budget {name} created: ${made['amount']:g} a {made['period']} for "
                      f"{made['scope']}; spent {_budget_line(made)}", as_json=json)


@budgets_app.command("ls")
def budgets_ls(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """List budgets, with what they spent this period."""
    show_rows(client(ctx).budgets.list(), {
        "name": "name", "scope": "scope", "period": "period",
        "amount": lambda b: f"{b['amount']:g}", "spent": lambda b: f"{b['spent']:.2f}",
        "%": lambda b: f"{b['percent']:g}", "acting": lambda b: ",".join(b["acting"]) or "-"},
        as_json=json, right=("amount", "spent", "%"))


@budgets_app.command("show")
def budgets_show(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """A budget: spent, alerts raised and their webhooks' delivery, actions in force."""
    b = client(ctx).budgets.show(name)
    actions = ", ".join(f"{a['at']:g}%:{a['action']}" for a in b["actions"]) or None
    show_record(b, [("name", b["name"]), ("scope", b["scope"]), ("period", b["period"]),
                    ("amount", f"${b['amount']:g}"), ("spent", _budget_line(b)),
                    ("alerts", ", ".join(f"{t:g}%" for t in b["alerts"])),
                    ("actions", actions), ("webhook", b["webhook"]),
                    ("in force", ", ".join(b["acting"]) or None),
                    ("scaled to zero", ", ".join(b["scaled"]) or None),
                    ("checked", b["evaluated_at"])], as_json=json)
    if not json and prints_tables() and b["alerts_raised"]:
        show_rows(b["alerts_raised"], {
            "at": "created_at", "severity": "severity", "message": "message",
            "webhook": lambda a: a["delivery"] + (f" after {a['attempts']} tries"
                                                  if a["attempts"] > 1 else ""),
            "error": lambda a: a["last_error"] or "-"}, as_json=False)


@budgets_app.command("update")
def budgets_update(
    ctx: typer.Context, name: str,
    amount: str | None = typer.Option(None, "--amount", help="dollars a period"),
    alert: str | None = typer.Option(None, "--alert", help="thresholds: 50%,80%,100%"),
    action: str | None = typer.Option(None, "--action",
                                      help="100%:stop-new-jobs,scale-endpoints-to-zero"),
    webhook: str | None = typer.Option(None, "--webhook", help="a URL, or '' for none"),
    json: bool = JsonOpt,
) -> None:
    """Change a budget; raised above what was spent, its actions are undone."""
    b = client(ctx).budgets.update(name, amount=amount,
                                   alert=alert, action=action, webhook=webhook)
    show_result(b, f"budget {name}: {_budget_line(b)}"
                   + (f"; in force: {', '.join(b['acting'])}" if b["acting"] else ""),
                as_json=json)


@budgets_app.command("rm")
def budgets_rm(ctx: typer.Context, name: str) -> None:
    """Remove a budget, undoing its actions."""
    client(ctx).budgets.delete(name)
    console.print(f"budget {name} removed")


@budgets_app.command("check")
def budgets_check(
    ctx: typer.Context,
    at: str | None = typer.Option(None, "--at",
                                  help="admins: check as of this time: a date, a time "
                                  "(2026-12-01T00:00:00Z) or a span back from now (7d)"),
    json: bool = JsonOpt,
) -> None:
    """Check every budget and the day's costs now, rather than at the next round."""
    done = client(ctx).budgets.check(at=at)
    if json:
        print_json(done)
        return
    for b in done["budgets"]:
        console.print(f"budget {b['budget']}: {b['percent']:.0f}% spent"
                      + (f", alerted at {b['alerted']}" if b["alerted"] else "")
                      + (f", took {', '.join(b['took'])}" if b["took"] else "")
                      + (f", undid {', '.join(b['undid'])}" if b["undid"] else ""))
    if done["anomaly"]:
        console.print(f"anomaly: {done['anomaly']}")
    if not done["budgets"] and not done["anomaly"]:
        console.print("nothing to do")


# --- alerts -----------------------------------------------------------------------------------

alerts_app = typer.Typer(help="Alerts from budgets, cost anomalies and monitors.",
                         no_args_is_help=True)


@alerts_app.command("ls")
def alerts_ls(ctx: typer.Context,
              all_: bool = typer.Option(False, "--all", help="dismissed ones too"),
              json: bool = JsonOpt) -> None:
    """Alerts not dismissed, newest first."""
    show_rows(client(ctx).alerts.list(all=all_), {
        "id": "id", "at": "created_at", "source": "source", "subject": "subject",
        "severity": "severity", "message": "message", "webhook": "delivery"}, as_json=json)


@alerts_app.command("dismiss")
def alerts_dismiss(ctx: typer.Context,
                   alert_id: int | None = typer.Argument(None, help="one alert; all if none")
                   ) -> None:
    """Take alerts off the console's banner and ``cumulo status``."""
    count = client(ctx).alerts.dismiss(alert_id)
    console.print(f"{count} alert(s) dismissed")
