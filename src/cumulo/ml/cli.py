"""``cumulo models``: the model registry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from cumulo.cli.context import client
from cumulo.cli.output import JsonOpt, console, print_json, when

__all__ = ["models_app"]

models_app = typer.Typer(help="The model registry: versions, aliases, approval, lineage.",
                         no_args_is_help=True)


def _ms(value: int | None) -> str:
    return when(datetime.fromtimestamp(value / 1000, tz=UTC)) if value else "-"


def train_command(
    ctx: typer.Context,
    table: str = typer.Option(..., "--table", help="db.table or db.table@vN"),
    target: str = typer.Option(..., "--target", help="the column to predict"),
    algorithm: str = typer.Option("lightgbm", "--algorithm",
                                  help="lightgbm, xgboost, random_forest, logistic_regression, "
                                  "linear"),
    features: str = typer.Option("", "--features", help="columns to use (default: all others)"),
    hyperparameters: str = typer.Option("{}", "--hyperparameters",
                                        help='JSON, e.g. \'{"n_estimators": 200}\''),
    validation_split: float = typer.Option(0.2, "--validation-split"),
    seed: int = typer.Option(42, "--seed"),
    cluster: str = typer.Option("local", "--cluster", "-c"),
    name: str = typer.Option(..., "--name", help="the registered model's name"),
    wait: bool = typer.Option(False, "--wait", "-w", help="follow it and exit with its outcome"),
) -> None:
    """Train a model on a table with no code, as a job; registers it in the registry."""
    import json as json_

    from cumulo.errors import Invalid

    try:
        params = json_.loads(hyperparameters)
    except ValueError as exc:
        raise Invalid(f"--hyperparameters is not JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise Invalid("--hyperparameters must be a JSON object, e.g. '{\"max_depth\": 6}'")
    job = client(ctx).train(table=table, target=target, name=name, algorithm=algorithm,
                            features=[f for f in features.split(",") if f],
                            hyperparameters=params, validation_split=validation_split,
                            seed=seed, cluster=cluster)
    if not wait:
        console.print(job.id)
        return
    for line in job.logs(follow=True):
        console.print(line, markup=False, highlight=False)
    info = job.wait()
    if info["state"] != "succeeded":
        console.print(f"training job {job.id} {info['state']}: {info['reason']}", style="red")
        raise typer.Exit(1)


@models_app.command("ls")
def list_models(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """Registered models."""
    rows = client(ctx).models.list()
    if json:
        print_json(rows)
        return
    table = Table(box=None)
    for column in ("name", "latest", "aliases", "updated", "description"):
        table.add_column(column)
    for m in rows:
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(m["aliases"].items()))
        table.add_row(m["name"], f"v{m['latest_version']}" if m["latest_version"] else "-",
                      aliases, _ms(m["updated_at"]), m["description"])
    console.print(table)


@models_app.command("show")
def show_model(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """A model: its aliases, tags and versions."""
    c = client(ctx)
    model, versions = c.models.show(name), c.models.versions(name)
    if json:
        print_json({**model, "versions": versions})
        return
    console.print(f"[bold]{model['name']}[/] {model['description']}")
    for alias, version in sorted(model["aliases"].items()):
        console.print(f"  alias {alias} -> v{version}")
    for key, value in sorted(model["tags"].items()):
        console.print(f"  tag {key}={value}")
    _versions_table(versions)


def _versions_table(versions: list[dict[str, Any]]) -> None:
    table = Table(box=None)
    for column in ("version", "approval", "aliases", "created", "run", "description"):
        table.add_column(column)
    for v in versions:
        table.add_row(f"v{v['version']}", v["approval"], ", ".join(v["aliases"]),
                      _ms(v["created_at"]), (v["run_id"] or "-")[:12], v["description"])
    console.print(table)


@models_app.command("versions")
def versions(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """A model's versions, with their approval status."""
    rows = client(ctx).models.versions(name)
    if json:
        print_json(rows)
        return
    _versions_table(rows)


@models_app.command("version")
def version(ctx: typer.Context, name: str, number: str, json: bool = JsonOpt) -> None:
    """One version with its lineage: the job, code, hyperparameters and table versions."""
    v = client(ctx).models.version(name, number)
    if json:
        print_json(v)
        return
    table = Table(box=None, show_header=False)
    table.add_row("model", f"{v['name']} v{v['version']} ({v['approval']})")
    table.add_row("aliases", ", ".join(v["aliases"]) or "-")
    table.add_row("source", v["source"] or "-")
    lineage = v["lineage"]
    for label, key in (("run", "run_id"), ("job", "job"), ("code", "code")):
        table.add_row(label, str(lineage.get(key) or "-"))
    for input_name, ref in sorted(lineage.get("inputs", {}).items()):
        table.add_row(f"input {input_name}", ref)
    for key, value in sorted(lineage.get("hyperparameters", {}).items()):
        table.add_row(f"param {key}", value)
    for key, value in sorted(lineage.get("metrics", {}).items()):
        table.add_row(f"metric {key}", f"{value:g}")
    console.print(table)


@models_app.command("import")
def import_(ctx: typer.Context, path: str,
            name: str = typer.Option(..., "--name", help="the registered model's name")) -> None:
    """Register an MLflow model folder or a pickled scikit-learn model made elsewhere.

    A pickle runs code when it is loaded: import only files you trust."""
    v = client(ctx).models.import_model(path, name=name)
    console.print(f"registered {v['name']} v{v['version']} (run {v['run_id'][:12]})")


@models_app.command("alias")
def alias(ctx: typer.Context, name: str, alias_name: str, number: str) -> None:
    """Point an alias (champion, challenger, ...) at a version."""
    client(ctx).models.set_alias(name, alias_name, number)
    console.print(f"{name}@{alias_name} -> v{number}")


@models_app.command("unalias")
def unalias(ctx: typer.Context, name: str, alias_name: str) -> None:
    """Remove an alias."""
    client(ctx).models.remove_alias(name, alias_name)
    console.print(f"removed {name}@{alias_name}")


@models_app.command("history")
def history(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """Every alias move: which version was champion when."""
    rows = client(ctx).models.alias_history(name)
    if json:
        print_json(rows)
        return
    table = Table(box=None)
    for column in ("when", "alias", "from", "to", "by"):
        table.add_column(column)
    for e in rows:
        table.add_row(when(e["at"]), e["alias"],
                      f"v{e['previous_version']}" if e["previous_version"] else "-",
                      f"v{e['version']}" if e["version"] else "(removed)", e["by"] or "-")
    console.print(table)


@models_app.command("approve")
def approve(ctx: typer.Context, name: str, number: str) -> None:
    """Mark a version approved."""
    client(ctx).models.set_approval(name, number, "approved")
    console.print(f"{name} v{number}: approved")


@models_app.command("reject")
def reject(ctx: typer.Context, name: str, number: str) -> None:
    """Mark a version rejected."""
    client(ctx).models.set_approval(name, number, "rejected")
    console.print(f"{name} v{number}: rejected")


@models_app.command("tag")
def tag(ctx: typer.Context, name: str, pair: str = typer.Argument(..., help="KEY=VALUE"),
        number: str | None = typer.Option(None, "--version", help="tag a version")) -> None:
    """Tag a model, or one of its versions."""
    from cumulo.errors import Invalid

    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise Invalid(f"tag {pair!r} must be KEY=VALUE")
    client(ctx).models.set_tag(name, key, value, version=number)
    console.print(f"tagged {name}{f' v{number}' if number else ''}: {key}={value}")


@models_app.command("describe")
def describe(ctx: typer.Context, name: str, text: str,
             number: str | None = typer.Option(None, "--version")) -> None:
    """Set the description of a model, or of one of its versions."""
    client(ctx).models.describe(name, text, version=number)
    console.print(f"described {name}{f' v{number}' if number else ''}")
