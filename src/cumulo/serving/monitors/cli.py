"""``cumulo monitors``: watch endpoints' captured requests for drift against a baseline."""

from __future__ import annotations

from typing import Any

import typer

from cumulo.cli.context import client
from cumulo.cli.output import JsonOpt, console, err, show_record, show_result, show_rows, when
from cumulo.units import format_duration

__all__ = ["monitors_app"]

monitors_app = typer.Typer(help="Model monitors: drift of an endpoint's requests and "
                           "predictions against a baseline table.", no_args_is_help=True)


def _number(value: float | None) -> str | None:
    return None if value is None else f"{value:.4g}"


def _thresholds(t: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in t.items()) or "none"


def _last(m: dict[str, Any]) -> str:
    run = m.get("last_run")
    if run is None:
        return "never"
    past = f", {len(run['breaches'])} past thresholds" if run["breaches"] else ""
    return f"{run['state']} {when(run['started_at'])} ({run['rows']} rows{past})"


@monitors_app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="the monitor's name: a-z, 0-9, '-'"),
    endpoint: str = typer.Option(..., "--endpoint", help="the endpoint watched (its data "
                                 "capture must be on)"),
    baseline: str = typer.Option(..., "--baseline", help="DB.TABLE@vN: what the model was "
                                 "trained on; DB.TABLE pins its current version"),
    schedule: str | None = typer.Option(None, "--schedule", help="cron, UTC: '0 * * * *' "
                                        "hourly; default: run by hand only"),
    window: str | None = typer.Option(None, "--window", help="each run covers the last 24h "
                                      "(or 90s, 7d); default: since the last run"),
    thresholds: str | None = typer.Option(None, "--thresholds", help="alert past these: "
                                          "psi=0.2,ks=0.1,missing=0.05 (also out_of_range, "
                                          "unseen, accuracy, mae, rmse); default psi=0.2"),
    labels: str | None = typer.Option(None, "--labels", help="DB.TABLE of true labels, "
                                      "joined with the requests by --key"),
    key: str | None = typer.Option(None, "--key", help="the column requests and labels share"),
    label_column: str | None = typer.Option(None, "--label-column", help="the labels' column; "
                                            "default: the one besides the key"),
    prediction_column: str | None = typer.Option(None, "--prediction-column", help="the "
                                                 "baseline's predictions; default "
                                                 "'prediction' where it has one"),
    webhook: str | None = typer.Option(None, "--webhook", help="alerts are POSTed here too"),
    json: bool = JsonOpt,
) -> None:
    """Watch an endpoint: each run compares what it captured with the baseline (PSI, KS,
    missing, out-of-range and unseen values, predictions; accuracy with --labels), writes
    the figures to the report table and alerts past the thresholds."""
    m = client(ctx).monitors.create(
        name, endpoint=endpoint, baseline=baseline, schedule=schedule, window=window,
        thresholds=thresholds, labels=labels, key=key, label_column=label_column,
        prediction_column=prediction_column, webhook=webhook)
    show_result(m, f"monitor {m['name']} watches endpoint {m['endpoint']} against "
                   f"{m['baseline']}; reports go to {m['report_table']}", as_json=json)


@monitors_app.command("ls")
def list_monitors(ctx: typer.Context,
                  endpoint: str | None = typer.Option(None, "--endpoint",
                                                      help="only this endpoint's"),
                  json: bool = JsonOpt) -> None:
    """List monitors, with their schedule and last run."""
    show_rows(client(ctx).monitors.list(endpoint=endpoint), {
        "name": "name", "endpoint": "endpoint", "baseline": "baseline",
        "schedule": lambda m: m["schedule"] or "by hand", "last run": _last,
    }, as_json=json)


@monitors_app.command("show")
def show(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """One monitor: what it compares, its thresholds, its last run."""
    m = client(ctx).monitors.show(name)
    show_record(m, [
        ("name", m["name"]), ("endpoint", m["endpoint"]), ("baseline", m["baseline"]),
        ("features", ", ".join(f"{f['name']} ({f['kind']})" for f in m["features"])),
        ("predictions vs", f"the baseline's {m['prediction_column']}"
         if m["prediction_column"] else "the first window's predictions"),
        ("labels", f"{m['labels']} by {m['key']} ({m['label_column']})" if m["labels"]
         else None),
        ("schedule", m["schedule"] or "by hand ('cumulo monitors run')"),
        ("window", format_duration(m["window_s"]) if m["window_s"] else "since the last run"),
        ("thresholds", _thresholds(m["thresholds"])),
        ("report table", m["report_table"]), ("webhook", m["webhook"]),
        ("project", m["project"]), ("last run", _last(m)),
        ("next run", when(m["next_at"]) if m["next_at"] else None),
        ("last failure", m["message"]), ("created", when(m["created_at"])),
    ], as_json=json)


@monitors_app.command("rm")
def remove(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """Remove a monitor and its runs; its report table stays."""
    client(ctx).monitors.delete(name)
    show_result({"deleted": name}, f"monitor {name} removed (its report table stays)",
                as_json=json)


def _figure_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"run": run["id"], "at": run["started_at"], **f} for f in run.get("figures", [])]


_COLUMNS: dict[str, Any] = {
    "run": "run", "at": lambda r: when(r["at"]), "feature": "feature", "kind": "kind",
    "rows": "rows", "psi": lambda r: _number(r.get("psi")),
    "ks": lambda r: _number(r.get("ks")),
    "missing": lambda r: _number(r.get("missing_rate")),
    "out of range": lambda r: _number(r.get("out_of_range_rate")),
    "unseen": lambda r: _number(r.get("unseen_rate")),
    "accuracy": lambda r: _number(r.get("accuracy")),
    "mae": lambda r: _number(r.get("mae")), "rmse": lambda r: _number(r.get("rmse")),
    "past": lambda r: ", ".join(r.get("breached") or []) or None,
}
_RIGHT = ("run", "rows", "psi", "ks", "missing", "out of range", "unseen", "accuracy", "mae",
          "rmse")


@monitors_app.command("run")
def run(ctx: typer.Context, name: str,
        wait: bool = typer.Option(True, "--wait/--no-wait",
                                  help="wait for its job's figures (the default), or return "
                                  "once the run has started"),
        json: bool = JsonOpt) -> None:
    """Run a monitor now, over what was captured since its last run (a job reads the window
    and computes the figures)."""
    result = client(ctx).monitors.run(name, wait=wait)
    if json:
        show_result(result, "", as_json=True)
    else:
        if result["state"] in ("running", "recording"):
            console.print(f"run {result['id']}: started, job {result['job']} ('cumulo monitors "
                          f"reports {name}' shows its figures when it ends)")
            return
        console.print(f"run {result['id']}: {result['state']}, {result['rows']} rows"
                      + (f" ({result['message']})" if result["message"] else ""))
        if result.get("figures"):
            show_rows(_figure_rows(result), _COLUMNS, as_json=False, right=_RIGHT)
        for breach in result["breaches"]:
            err.print(f"past threshold: {breach}")
    if result["state"] == "failed":
        raise typer.Exit(1)


@monitors_app.command("reports")
def reports(ctx: typer.Context, name: str,
            limit: int = typer.Option(10, "--limit", help="the last this many runs"),
            json: bool = JsonOpt) -> None:
    """A monitor's runs, newest first, a line per feature (the same figures as its report
    table, which SQL reads: 'cumulo sql "select * from monitoring.NAME_reports"')."""
    runs = client(ctx).monitors.reports(name, limit=limit)
    show_rows([row for r in runs for row in _figure_rows(r)], _COLUMNS, as_json=json,
              data=runs, right=_RIGHT)
