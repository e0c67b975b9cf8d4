"""``cumulo pipelines``: define pipelines in Python or JSON/YAML, store and read them."""

from __future__ import annotations

import sys
from typing import Any

import orjson
import typer
from rich.table import Table

from cumulo.cli.context import client
from cumulo.cli.output import (
    JsonOpt,
    ProjectOpt,
    console,
    human_bytes,
    print_json,
    show_result,
    show_rows,
    when,
)
from cumulo.units import parse_duration

__all__ = ["lineage_command", "pipelines_app"]

pipelines_app = typer.Typer(help="Pipelines: DAGs of components and Python steps.",
                            no_args_is_help=True)


def _layers(definition: dict[str, Any]) -> list[list[str]]:
    """The nodes by depth: each layer takes inputs only from the layers above it."""
    depth: dict[str, int] = {}
    before: dict[str, list[str]] = {n["id"]: [] for n in definition["nodes"]}
    for edge in definition["edges"]:
        before[edge["to"].split(".")[0]].append(edge["from"].split(".")[0])
    from cumulo.pipelines.definition import order

    for node in order(definition):
        depth[node] = 1 + max((depth[p] for p in before[node]), default=-1)
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node in order(definition):
        layers[depth[node]].append(node)
    return layers


_STATE_STYLE = {"succeeded": "green", "cached": "cyan", "failed": "red", "running": "yellow",
                "skipped": "dim", "cancelled": "dim", "pending": "dim"}
_TIMEOUT_HELP = "how long to wait for the run, like 30m, 1h30m or 2h"


def _state(thing: dict[str, Any]) -> str:
    """A run's or a step's state, in its colour."""
    style = _STATE_STYLE.get(thing["state"], "")
    return f"[{style}]{thing['state']}[/{style}]" if style else thing["state"]


def _value(value: Any) -> str:
    if isinstance(value, dict):
        if set(value) >= {"branch"}:
            return f"branch {value['branch']}"
        return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in value.items())
    return str(value)


def draw(definition: dict[str, Any], steps: list[dict[str, Any]] | None = None) -> Table:
    """The DAG as a table, a row per node, layer by layer, with what feeds each input; with a
    run's steps, each one's state, time and outputs."""
    nodes = {n["id"]: n for n in definition["nodes"]}
    feeds: dict[str, list[str]] = {n: [] for n in nodes}
    for edge in definition["edges"]:
        node, port = edge["to"].split(".")
        feeds[node].append(f"{port} <- {edge['from']}")
    by_node = {st["node"]: st for st in steps or []}
    table = Table(box=None, pad_edge=False)
    for column in ("step", "node", "component", "inputs"):
        table.add_column(column)
    if steps is not None:
        for column in ("state", "time", "outputs / why"):
            table.add_column(column)
    for i, layer in enumerate(_layers(definition), start=1):
        for node_id in layer:
            node = nodes[node_id]
            row = [str(i), node_id, node["component"], ", ".join(feeds[node_id]) or "-"]
            st = by_node.get(node_id)
            if steps is not None and st is not None:
                seconds = st.get("seconds")
                outputs = st.get("outputs") or {}
                detail = ("; ".join(f"{k}: {_value(v)}" for k, v in outputs.items()
                                    if k != "value")
                          if st["state"] in ("succeeded", "cached") and outputs
                          else st.get("message") or "")
                if node["component"] == "condition" and "branch" in outputs:
                    detail = f"{st.get('message') or ''} -> {outputs['branch']}"
                if st["state"] == "cached" and st.get("cached_from"):
                    detail = f"{detail} (from {st['cached_from']})"
                row += [_state(st), f"{seconds:.1f}s" if seconds is not None else "-", detail]
            table.add_row(*row)
    return table


@pipelines_app.command("components")
def components(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """List the components, with their inputs, outputs and parameters."""
    show_rows(client(ctx).pipelines.components(), {
        "component": "name", "does": "title",
        "inputs": lambda c: ", ".join(f"{p['name']}: {p['type']}"
                                      + (" (optional)" if p["optional"] else "")
                                      for p in c["inputs"]) or None,
        "outputs": lambda c: ", ".join(f"{p['name']}: {p['type']}" for p in c["outputs"]) or None,
        "parameters (* required)": lambda c: ", ".join(
            p["name"] + ("*" if p["required"] else "") for p in c["params"]) or None,
    }, as_json=as_json)


@pipelines_app.command("schema")
def schema(ctx: typer.Context) -> None:
    """Print the JSON Schema of a pipeline definition."""
    print_json(client(ctx).pipelines.schema())


@pipelines_app.command("validate")
def validate(ctx: typer.Context, file: str = typer.Argument(
        ..., help="FILE.py[:NAME], FILE.json or FILE.yaml")) -> None:
    """Check a definition without storing it."""
    from cumulo.pipelines.dsl import load

    definition, _ = load(file)
    client(ctx).pipelines.validate(definition)
    console.print(f"pipeline {definition['name']}: {len(definition['nodes'])} nodes, "
                  f"{len(definition['edges'])} edges, valid")


@pipelines_app.command("create")
def create(ctx: typer.Context,
           file: str = typer.Argument(..., help="FILE.py[:NAME], FILE.json or FILE.yaml"),
           project: str | None = ProjectOpt, as_json: bool = JsonOpt) -> None:
    """Store a pipeline; a changed definition of an existing one is its next version."""
    out = client(ctx).pipelines.create(file, project=project)
    what = "created" if out["created"] else "unchanged"
    where = f", project {out['project']}" if out.get("project") else ""
    show_result(out, f"pipeline {out['name']} version {out['version']} ({what}, "
                     f"{len(out['definition']['nodes'])} nodes{where})", as_json=as_json)


@pipelines_app.command("export")
def export(ctx: typer.Context,
           target: str = typer.Argument(..., help="a stored pipeline's NAME, or a local "
                                        "FILE.py[:NAME] to compile"),
           version: int | None = typer.Option(None, "--version", "-v",
                                              help="a stored version; default the latest"),
           yaml_out: bool = typer.Option(False, "--yaml", help="YAML instead of JSON")) -> None:
    """Print a pipeline's definition: the JSON the designer draws and saves."""
    from pathlib import Path

    if target.split(":")[0].endswith((".py", ".json", ".yaml", ".yml")) or Path(target).exists():
        from cumulo.pipelines.dsl import load

        definition, _ = load(target)
    else:
        definition = client(ctx).pipelines.export(target, version)
    if yaml_out:
        import yaml

        sys.stdout.write(yaml.safe_dump(definition, sort_keys=False))
    else:
        sys.stdout.write(orjson.dumps(definition, option=orjson.OPT_INDENT_2).decode() + "\n")


@pipelines_app.command("ls")
def list_pipelines(ctx: typer.Context, project: str | None = ProjectOpt,
                   as_json: bool = JsonOpt) -> None:
    """List pipelines (of one project with --project)."""
    show_rows(client(ctx).pipelines.list(project=project), {
        "name": "name", "project": "project", "version": "latest_version", "nodes": "nodes",
        "description": lambda p: p["description"][:60], "by": "created_by",
        "updated": lambda p: when(p["updated_at"]),
    }, as_json=as_json)


@pipelines_app.command("show")
def show(ctx: typer.Context, name: str,
         version: int | None = typer.Option(None, "--version", "-v"),
         as_json: bool = JsonOpt) -> None:
    """Show a pipeline: its parameters and its DAG."""
    out = client(ctx).pipelines.show(name, version)
    if as_json:
        print_json(out)
        return
    definition = out["definition"]
    where = f", project {out['project']}" if out.get("project") else ""
    console.print(f"[bold]{out['name']}[/bold] version {out['version']} of "
                  f"{out['latest_version']} ({out['source']}), by {out['created_by'] or '-'}"
                  f"{where}")
    if out["description"]:
        console.print(out["description"])
    for pname, spec in definition["parameters"].items():
        default = f" = {spec['default']!r}" if "default" in spec else " (required)"
        console.print(f"  parameter {pname}: {spec['type']}{default}")
    console.print(draw(definition))


@pipelines_app.command("versions")
def versions(ctx: typer.Context, name: str, as_json: bool = JsonOpt) -> None:
    """List a pipeline's versions."""
    show_rows(client(ctx).pipelines.versions(name), {
        "version": "version", "source": "source", "nodes": "nodes", "by": "created_by",
        "created": lambda v: when(v["created_at"]),
    }, as_json=as_json)


@pipelines_app.command("rm")
def remove(ctx: typer.Context, name: str) -> None:
    """Delete a pipeline and all its versions."""
    client(ctx).pipelines.delete(name)
    console.print(f"pipeline {name} deleted")


# --- runs -------------------------------------------------------------------------------------

runs_app = typer.Typer(help="Pipeline runs.", no_args_is_help=True)
pipelines_app.add_typer(runs_app, name="runs")


def _show_run(run: dict[str, Any]) -> None:
    took = f", {run['duration_s']:.1f}s" if run.get("duration_s") is not None else ""
    console.print(f"run [bold]{run['id']}[/bold] of {run['pipeline']} version {run['version']}"
                  f": {_state(run)}{took}")
    if run["parameters"]:
        console.print("  " + ", ".join(f"{k}={v!r}" for k, v in run["parameters"].items()))
    console.print(draw(run["definition"], run["steps"]))
    for st in run["steps"]:
        if st["state"] == "failed" and st.get("log_tail"):
            console.print(f"\n[red]{st['node']}[/red] (job {st['job_id']}), last lines of its "
                          "log:")
            console.print(st["log_tail"].rstrip(), markup=False)
    if run["state"] == "failed":
        console.print(f"\nretry from the failed step: cumulo pipelines retry {run['id']}")


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{pair!r}: write --param NAME=VALUE")
        out[name] = value
    return out


@pipelines_app.command("run")
def run(ctx: typer.Context, name: str,
        param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE, repeatable"),
        cluster: str = typer.Option("local", "--cluster", "-c", help="where the steps run"),
        version: int | None = typer.Option(None, "--version", "-v"),
        wait: bool = typer.Option(True, "--wait/--no-wait", help="wait for the run to end"),
        timeout: str = typer.Option("1h", "--timeout", help=_TIMEOUT_HELP),
        as_json: bool = JsonOpt) -> None:
    """Run a pipeline: each step a job; what is unchanged comes from the cache."""
    parse_duration(timeout, what="--timeout")  # a wrong one is refused before the run starts
    c = client(ctx).pipelines
    _follow(c, c.run(name, _params(param), cluster=cluster, version=version), wait, timeout,
            as_json)


def _follow(c: Any, started: dict[str, Any], wait: bool, timeout: str,
            as_json: bool) -> None:
    """Print a started run's id, or wait for it and show it; exit 1 unless it succeeded."""
    if not wait:
        show_result(started, started["id"], as_json=as_json)
        return
    out = c.wait(started["id"], parse_duration(timeout, what="--timeout"))
    print_json(out) if as_json else _show_run(out)
    if out["state"] != "succeeded":
        raise typer.Exit(1)


@runs_app.command("ls")
def list_runs(ctx: typer.Context,
              pipeline: str | None = typer.Option(None, "--pipeline", "-p"),
              limit: int = typer.Option(50, "--limit"), project: str | None = ProjectOpt,
              as_json: bool = JsonOpt) -> None:
    """List runs, newest first (of one project's pipelines with --project)."""
    show_rows(client(ctx).pipelines.runs(pipeline, limit, project=project), {
        "run": "id", "pipeline": "pipeline", "version": "version", "state": _state,
        "trigger": "trigger",
        "took": lambda r: f"{r['duration_s']:.1f}s" if r["duration_s"] is not None else None,
        "started": lambda r: when(r["started_at"]),
    }, as_json=as_json)


@runs_app.command("show")
def show_run(ctx: typer.Context, run_id: str, as_json: bool = JsonOpt) -> None:
    """Show a run: the DAG with each step's state, time and outputs; a failed step's log."""
    out = client(ctx).pipelines.get_run(run_id)
    print_json(out) if as_json else _show_run(out)


@pipelines_app.command("retry")
def retry(ctx: typer.Context, run_id: str,
          wait: bool = typer.Option(True, "--wait/--no-wait"),
          timeout: str = typer.Option("1h", "--timeout", help=_TIMEOUT_HELP),
          as_json: bool = JsonOpt) -> None:
    """Run a failed run again: the steps that succeeded are reused."""
    parse_duration(timeout, what="--timeout")
    c = client(ctx).pipelines
    _follow(c, c.retry(run_id), wait, timeout, as_json)


@pipelines_app.command("cancel")
def cancel(ctx: typer.Context, run_id: str, as_json: bool = JsonOpt) -> None:
    """Cancel a run: its running steps' jobs are cancelled, the rest do not start."""
    out = client(ctx).pipelines.cancel(run_id)
    show_result(out, f"run {out['id']}: cancelling", as_json=as_json)


schedules_app = typer.Typer(help="Schedules, and triggers on tables and streams.",
                           no_args_is_help=True)
pipelines_app.add_typer(schedules_app, name="schedules")


@pipelines_app.command("schedule")
def schedule(ctx: typer.Context, name: str,
             cron: str | None = typer.Option(None, "--cron",
                                             help="'MIN HOUR DAY MONTH WEEKDAY' in UTC"),
             on_table: str | None = typer.Option(None, "--on-table",
                                                 help="run when this table gets a new version"),
             on_stream: str | None = typer.Option(None, "--on-stream",
                                                  help="run when this stream has received "
                                                  "--every records or bytes"),
             every: str | None = typer.Option(None, "--every",
                                              help="with --on-stream: a number of records "
                                              "(1000) or a size (5MB) since the last run"),
             param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE"),
             cluster: str = typer.Option("local", "--cluster", "-c"),
             missed: str = typer.Option("latest", "--missed",
                                        help="missed cron times: skip, latest or all"),
             schedule_name: str | None = typer.Option(None, "--name"),
             as_json: bool = JsonOpt) -> None:
    """Run a pipeline on a cron schedule, whenever a table gets a new version, or whenever a
    stream has received so many records (or bytes)."""
    out = client(ctx).pipelines.schedule(name, cron=cron, table=on_table,
                                         parameters=_params(param), cluster=cluster,
                                         missed=missed, schedule_name=schedule_name,
                                         stream=on_stream, every=every)
    when_text = f"cron {out['cron']}, next {when(out['next_at'])} UTC" if out["cron"] else \
        f"each new version of {out['table']} (now v{out['last_version']})" if out["table"] \
        else f"each {_every(out)} that come to stream {out['stream']}"
    show_result(out, f"schedule {out['name']}: runs {out['pipeline']} on {when_text}",
                as_json=as_json)


def _every(schedule: dict[str, Any]) -> str:
    if schedule["every_records"]:
        return f"{schedule['every_records']} records"
    return human_bytes(schedule["every_bytes"])


def _on(schedule: dict[str, Any]) -> str:
    if schedule["cron"]:
        return f"cron {schedule['cron']}"
    if schedule["table"]:
        return f"table {schedule['table']}"
    pending = (f"{schedule['pending_records']} records" if schedule["every_records"]
               else human_bytes(schedule["pending_bytes"] or 0))
    return f"stream {schedule['stream']} every {_every(schedule)} ({pending} so far)"


@schedules_app.command("ls")
def list_schedules(ctx: typer.Context,
                   pipeline: str | None = typer.Option(None, "--pipeline", "-p"),
                   project: str | None = ProjectOpt, as_json: bool = JsonOpt) -> None:
    """List schedules and triggers (of one project's pipelines with --project)."""
    show_rows(client(ctx).pipelines.schedules(pipeline, project=project), {
        "schedule": "name", "pipeline": "pipeline",
        "on": _on,
        "missed": "missed", "next": lambda r: when(r["next_at"]), "last run": "last_run",
        "message": lambda r: r["message"] or "",
    }, as_json=as_json)


@schedules_app.command("rm")
def remove_schedule(ctx: typer.Context, schedule_name: str) -> None:
    """Remove a schedule or trigger (runs it started are kept)."""
    client(ctx).pipelines.unschedule(schedule_name)
    console.print(f"schedule {schedule_name} removed")


def lineage_command(
    ctx: typer.Context,
    thing: str = typer.Argument(..., help="a table (sales.orders, sales.orders@v3), or "
                                "'model' or 'endpoint'"),
    ref: str | None = typer.Argument(None, help="with model: NAME:VERSION; with endpoint: "
                                     "its name"),
    as_json: bool = JsonOpt,
) -> None:
    """What produced a table, model or endpoint (back to the raw data), and what used it.

    cumulo lineage sales.orders; cumulo lineage model churn:3; cumulo lineage endpoint churn
    """
    from rich.tree import Tree

    pipelines = client(ctx).pipelines
    if thing in ("model", "endpoint"):
        if not ref:
            raise typer.BadParameter(f"name the {thing}: cumulo lineage {thing} "
                                     f"{'NAME:VERSION' if thing == 'model' else 'NAME'}")
        out = pipelines.lineage(**{thing: ref})
        title = f"{thing} {ref}"
    else:
        out = pipelines.lineage(table=thing)
        title = f"table {thing}"
    if as_json:
        print_json(out)
        return

    def step(s: dict[str, Any]) -> str:
        return (f"[bold]{s['pipeline']}[/bold] / {s['step']} ({s['component']}), run "
                f"{s['run']}, {when(s['at'])}")

    def grow(tree: Tree, producers: list[dict[str, Any]]) -> None:
        for p in producers:
            branch = tree.add(f"written by {step(p)}")
            for r in p["read"]:
                grow(branch.add(f"read {r['kind']} {r['name']}"), r["produced_by"])

    root = Tree(title)
    made = root.add("produced by")
    grow(made, out["produced_by"])
    if not out["produced_by"]:
        made.add("[dim]no pipeline step wrote it[/dim]")
    used = root.add("used by")
    for u in out["used_by"]:
        wrote = ", ".join(f"{w['kind']} {w['name']}" for w in u["wrote"]) or "nothing"
        used.add(f"{step(u)}: read {u['read']}, wrote {wrote}")
    if not out["used_by"]:
        used.add("[dim]no pipeline step read it[/dim]")
    for e in out.get("served_by", []):
        root.add(f"served by endpoint {e['endpoint']} (variant {e['variant']}, {e['state']})")
    console.print(root)
