"""``cumulo endpoints``: serve registered models and score rows with them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import typer

from cumulo.cli.context import client
from cumulo.cli.output import (
    JsonOpt,
    ProjectOpt,
    console,
    err,
    human_bytes,
    print_json,
    show_record,
    show_result,
    show_rows,
    when,
)
from cumulo.units import format_duration, parse_size, parse_time

__all__ = ["endpoints_app"]

endpoints_app = typer.Typer(help="Real-time endpoints: serve registered models.",
                            no_args_is_help=True)


def _variants(e: dict[str, Any]) -> str:
    live = [v for v in e["variants"] if not v.get("shadow")]
    total = sum(v["weight"] for v in live) or 1
    parts = [f"{v['name']} ({v['model']}:{v['version']}, {100 * v['weight'] / total:.0f}%)"
             for v in live]
    parts += [f"{v['name']} ({v['model']}:{v['version']}, shadow)" for v in e["variants"]
              if v.get("shadow")]
    return ", ".join(parts)


_ENV_HELP = ("where the model runs: server (the server's packages), model (the requirements "
             "its MLflow flavor recorded, built once) or an environment's name (cumulo envs); "
             "default: model when the server's packages do not meet its requirements, else "
             "server")


def _environment(e: dict[str, Any]) -> str | None:
    """Where the variants run, as a person reads it: one line, or one part per variant when
    they are not all chosen yet."""
    if e.get("cluster"):
        return f"the Ray cluster's ({e['cluster']})"

    def where(v: dict[str, Any]) -> str:
        if "environment" not in v:
            return "being chosen"
        if v["environment"] is None:
            return "the server's" + (" (it meets the model's requirements)"
                                     if v.get("env") is None else "")
        digest = v["environment"][:12]
        if v.get("env") in (None, "model"):
            return f"the model's requirements, {digest} (cumulo envs show {digest})"
        return f"{v['env']}, {digest}"

    places = [where(v) for v in e["variants"]]
    if len(set(places)) == 1:
        return places[0]
    return ", ".join(f"{v['name']}: {p}" for v, p in zip(e["variants"], places, strict=True))


def _rollout(r: dict[str, Any]) -> str:
    text = f"{r['state']}: {r['strategy']} to {r['variant']}"
    if r["state"] in ("shifting", "baking"):
        text += f", step {r['step'] + 1}/{len(r['steps'])} ({r['steps'][r['step']]}%)"
    if r.get("reason"):
        text += f"; {r['reason']}"
    return text


@endpoints_app.command("create")
def create(
    ctx: typer.Context, name: str,
    model: str = typer.Option(..., "--model", help="NAME:VERSION, NAME@ALIAS or NAME (latest)"),
    min_replicas: int = typer.Option(1, "--min-replicas", help="0 scales to zero when idle"),
    max_replicas: int | None = typer.Option(None, "--max-replicas",
                                            help="default: --min-replicas (at least 1)"),
    target_in_flight: float = typer.Option(8.0, "--target-in-flight",
                                           help="requests in flight per replica to aim for"),
    scale_in_cooldown: str = typer.Option("60s", "--scale-in-cooldown",
                                          help="how long load stays lower before scaling in, "
                                          "like 90s, 5m or 1h30m"),
    scale_to_zero_after: str = typer.Option("5m", "--scale-to-zero-after",
                                            help="how long idle before the last replica stops "
                                            "(with --min-replicas 0), like 5m or 1h"),
    capture_percent: float = typer.Option(0.0, "--capture-percent",
                                          help="share of requests (0-100) written with their "
                                          "answers to --capture-table"),
    capture_table: str | None = typer.Option(None, "--capture-table",
                                             help="DB.TABLE; default endpoints.NAME_capture"),
    cluster: str | None = typer.Option(None, "--cluster", "-c",
                                       help="a Ray cluster: run on Ray Serve there"),
    max_batch_size: int = typer.Option(64, "--max-batch-size",
                                       help="most rows combined into one model call"),
    max_wait_ms: float = typer.Option(2.0, "--max-wait-ms",
                                      help="longest a request waits for others to join it"),
    max_body: str = typer.Option("6M", "--max-body",
                                 help="largest request body, like 6M, 512K or 1GiB"),
    public: bool = typer.Option(False, "--public",
                                help="its own address takes invocations without a token "
                                "(anyone who can reach it may score rows)"),
    project: str | None = ProjectOpt,
    env: str | None = typer.Option(None, "--env", help=_ENV_HELP),
    wait: bool = typer.Option(False, "--wait", help="return when the endpoint answers"),
    json: bool = JsonOpt,
) -> None:
    """Serve a registered model: cumulo endpoints create churn --model churn@champion --wait"""
    endpoints = client(ctx).endpoints
    info = endpoints.create(name, model, min_replicas=min_replicas, max_replicas=max_replicas,
                            target_in_flight=target_in_flight,
                            scale_in_cooldown=scale_in_cooldown,
                            scale_to_zero_after=scale_to_zero_after,
                            max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                            max_body=parse_size(max_body, what="--max-body"),
                            capture_percent=capture_percent, capture_table=capture_table,
                            cluster=cluster, public=public, project=project, env=env,
                            wait=wait)
    if json:
        print_json(info)
        return
    console.print(f"endpoint {name}: {_state(info['state'])}; {_variants(info)}")
    console.print(f"invoke: POST {info['url']}/invocations{_with_token(info)} (or cumulo "
                  f"endpoints invoke {name})", highlight=False)


def _with_token(e: dict[str, Any]) -> str:
    return "" if e.get("public") else " with 'Authorization: Bearer <token>'"


def _access(e: dict[str, Any]) -> str:
    if e.get("public"):
        return "public: its address takes invocations without a token"
    return "token: 'Authorization: Bearer <token>' (a live Cumulo token)"


@endpoints_app.command("ls")
def list_endpoints(ctx: typer.Context, project: str | None = ProjectOpt,
                   json: bool = JsonOpt) -> None:
    """List endpoints (of one project with --project), with their state, variants and
    replicas."""
    show_rows(client(ctx).endpoints.list(project=project), {
        "name": "name", "project": "project", "state": "state", "variants": _variants,
        "replicas": lambda e: f"{sum(1 for r in e['replicas'] if r['ready'])} "
                              f"({e['min_replicas']}-{e['max_replicas']})",
        "url": "url",
    }, as_json=json)


@endpoints_app.command("show")
def show(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """One endpoint: state, variants, replicas, settings; why it failed, if it did."""
    e = client(ctx).endpoints.show(name)
    last = e["scaling"][-1] if e["scaling"] else None
    show_record(e, [
        ("name", e["name"]),
        ("state", e["state"]),
        ("project", e.get("project")),
        ("url", f"{e['url']}/invocations"),
        ("access", _access(e)),
        ("variants", _variants(e)),
        ("environment", _environment(e)),
        ("replicas", f"{len(e['replicas'])}: " + ", ".join(
            f"pid {r['pid']} ({'ready' if r['ready'] else 'starting'}, "
            f"{r['in_flight']} in flight)" for r in e["replicas"]) if e["replicas"] else "none"),
        ("autoscaling", f"{e['min_replicas']}-{e['max_replicas']} replicas at "
                        f"{e['target_in_flight']:g} in flight each; scale in after "
                        f"{format_duration(e['scale_in_cooldown'])}" + (
                            f"; to zero after {format_duration(e['scale_to_zero_after'])} idle"
                            if e["min_replicas"] == 0 else "")),
        ("held at zero", f"by {e['held']}: requests are refused until it lets go"
         if e.get("held") else None),
        ("last scaling", f"{last['from']} -> {last['to']} ({last['reason']})" if last else None),
        ("restarts", e["restarts"]),
        ("runs on", f"Ray Serve, cluster {e['cluster']}" if e.get("cluster") else None),
        ("data capture", f"{e['capture_percent']:g}% to {e['capture_table']}"
         if e["capture_percent"] else None),
        ("traffic shift", _rollout(e["rollout"]) if e["rollout"] else None),
        ("batching", f"up to {e['max_batch_size']} rows, waiting at most "
                     f"{e['max_wait_ms']:g} ms"),
        ("body limit", human_bytes(e["max_body"])),
        ("waiting for", e["message"] if e["state"] == "creating" else None),
        ("created", when(e["created_at"])),
    ], as_json=json)
    if e["message"] and e["state"] != "creating" and not json:
        console.print(f"\n[bold]why it failed[/bold]\n{e['message']}")


def _weights(pairs: list[str]) -> dict[str, float]:
    weights: dict[str, float] = {}
    for pair in pairs:
        variant, sep, value = pair.partition("=")
        try:
            weights[variant.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not variant.strip():
            raise typer.BadParameter(f"{pair!r} is not VARIANT=WEIGHT (for example "
                                     f"--weight churn-4=3)", param_hint="--weight")
    return weights


@endpoints_app.command("update")
def update(
    ctx: typer.Context, name: str,
    model: str | None = typer.Option(None, "--model",
                                     help="shift traffic to this model: NAME:VERSION, ..."),
    strategy: str = typer.Option("all_at_once", "--strategy",
                                 help="all_at_once, canary or linear"),
    variant: str | None = typer.Option(None, "--variant", help="the new variant's name"),
    canary_percent: float = typer.Option(10.0, "--canary-percent",
                                         help="canary: the first step's traffic share"),
    step_percent: float = typer.Option(25.0, "--step-percent",
                                       help="linear: the share added at each step"),
    bake: str = typer.Option("60s", "--bake",
                             help="how long to watch after each step, like 90s, 5m or 1h30m"),
    max_error_rate: float = typer.Option(0.01, "--max-error-rate",
                                         help="roll back above this share of 5xx answers"),
    max_p99_ms: float | None = typer.Option(None, "--max-p99-ms",
                                            help="roll back above this p99 latency"),
    weight: list[str] = typer.Option([], "--weight", help="VARIANT=WEIGHT: set a variant's "
                                     "traffic weight at once (repeat for several)"),
    min_replicas: int | None = typer.Option(None, "--min-replicas"),
    max_replicas: int | None = typer.Option(None, "--max-replicas"),
    capture_percent: float | None = typer.Option(None, "--capture-percent"),
    scale_in_cooldown: str | None = typer.Option(None, "--scale-in-cooldown",
                                                 help="like 90s, 5m or 1h30m"),
    scale_to_zero_after: str | None = typer.Option(None, "--scale-to-zero-after",
                                                   help="like 5m or 1h"),
    public: bool | None = typer.Option(None, "--public/--private",
                                       help="its own address takes invocations without a "
                                       "token (--public), or only with one (--private)"),
    env: str | None = typer.Option(None, "--env", help="with --model: where the new variant "
                                   "runs (server, model or an environment's name); it must "
                                   "be the environment the endpoint runs in"),
    wait: bool = typer.Option(False, "--wait", help="return when the shift is done"),
    json: bool = JsonOpt,
) -> None:
    """Shift traffic to a new model safely, set weights, or change settings:
    cumulo endpoints update churn --model churn:4 --strategy canary --bake 300
    cumulo endpoints update churn --weight churn-3=1 --weight churn-4=3"""
    given = {"min_replicas": min_replicas, "max_replicas": max_replicas,
             "capture_percent": capture_percent, "scale_in_cooldown": scale_in_cooldown,
             "scale_to_zero_after": scale_to_zero_after, "public": public}
    settings: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    info = client(ctx).endpoints[name].update(
        model, strategy=strategy, variant=variant, canary_percent=canary_percent,
        step_percent=step_percent, bake_s=bake, max_error_rate=max_error_rate,
        max_p99_ms=max_p99_ms, weights=_weights(weight) if weight else None, env=env,
        wait=wait, **settings)
    if json:
        print_json(info)
        return
    console.print(f"endpoint {name}: {_state(info['state'])}; {_variants(info)}")
    if info["rollout"] and model is not None:
        console.print(f"traffic shift: {_rollout(info['rollout'])}")


@endpoints_app.command("rollback")
def rollback(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """Stop a traffic shift: the variants before it take the traffic again."""
    info = client(ctx).endpoints[name].rollback()
    show_result(info, f"endpoint {name}: rolled back; {_variants(info)}", as_json=json)


@endpoints_app.command("batch")
def batch(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", help="NAME:VERSION, NAME@ALIAS or NAME"),
    table: str = typer.Option(..., "--table", help="DB.TABLE or DB.TABLE@vN to score"),
    output: str = typer.Option(..., "--output", help="DB.TABLE to write"),
    mode: str = typer.Option("overwrite", "--mode", help="overwrite or append"),
    prediction_column: str = typer.Option("prediction", "--prediction-column"),
    cluster: str = typer.Option("local", "--cluster", "-c"),
    cpus: float = typer.Option(1, "--cpus"),
    env: str | None = typer.Option(None, "--env", help=_ENV_HELP),
    wait: bool = typer.Option(False, "--wait", "-w", help="follow it and exit with its outcome"),
) -> None:
    """Score a whole table as a job and write a table:
    cumulo endpoints batch --model churn:3 --table sales.orders@v5 --output sales.scored"""
    job = client(ctx).endpoints.batch(model=model, table=table, output=output, mode=mode,
                                      prediction_column=prediction_column, cluster=cluster,
                                      cpus=cpus, env=env)
    if not wait:
        console.print(job.id)
        return
    console.print(f"batch prediction job {job.id} submitted to {cluster}", highlight=False)
    for line in job.logs(follow=True):
        console.print(line, markup=False, highlight=False)
    info = job.wait()
    if info["state"] != "succeeded":
        console.print(f"batch prediction job {job.id} {info['state']}: {info['reason']}",
                      style="red")
        raise typer.Exit(1)
    console.print(f"wrote {output}", highlight=False)


@endpoints_app.command("rm")
def remove(ctx: typer.Context, name: str) -> None:
    """Delete an endpoint: its replicas stop, its address closes."""
    client(ctx).endpoints.delete(name)
    console.print(f"endpoint {name} deleted")


@endpoints_app.command("logs")
def logs(
    ctx: typer.Context, name: str,
    follow: bool = typer.Option(False, "--follow", "-f", help="stream new lines as they come"),
    replica: int | None = typer.Option(None, "--replica",
                                       help="one replica's lines: its pid ('endpoints show')"),
    since: str | None = typer.Option(None, "--since",
                                     help="From then on: 10m, 1h30m, 2026-11-01, an ISO time."),
) -> None:
    """Print the log of an endpoint's replicas (JSON lines with each request's id)."""
    # Read here, not by the server, so that a wrong one is named as the option it came in.
    at = parse_time(since, what="--since").isoformat() if since else None
    for line in client(ctx).endpoints[name].logs(follow=follow, replica=replica, since=at):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


@endpoints_app.command("invoke")
def invoke(
    ctx: typer.Context, name: str,
    data: str = typer.Option(..., "--data", "-d",
                             help="the request body, or @FILE to read it from a file"),
    content_type: str = typer.Option("application/json", "--content-type",
                                     help="application/json, text/csv or "
                                     "application/vnd.apache.arrow.stream"),
    variant: str | None = typer.Option(None, "--variant", help="pin the request to a variant"),
) -> None:
    """Score rows: cumulo endpoints invoke churn -d '{"dataframe_records": [{"tenure": 3}]}'"""
    if data.startswith("@"):
        path = Path(data[1:])
        if not path.is_file():
            err.print(f"no file {path}: --data @FILE reads the body from a file")
            raise typer.Exit(2)
        body = path.read_bytes()
    else:
        body = data.encode()
    answer = client(ctx).endpoints[name].invoke(body, content_type, variant=variant)
    sys.stdout.write(orjson.dumps(answer).decode() + "\n")


def _state(state: str) -> str:
    """An endpoint's state as a person reads it: ``in service``, ``updating``."""
    return state.replace("_", " ")
