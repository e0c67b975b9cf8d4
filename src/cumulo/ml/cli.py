"""``cumulo models``: the model registry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from cumulo.cli.context import client
from cumulo.cli.output import JsonOpt, console, print_json, show_record, show_rows, when

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
                                  "linear or mlp"),
    features: str = typer.Option("", "--features", help="columns to use (default: all others)"),
    hyperparameters: str = typer.Option("{}", "--hyperparameters",
                                        help='JSON, e.g. \'{"n_estimators": 200}\''),
    validation_split: float = typer.Option(0.2, "--validation-split"),
    seed: int = typer.Option(42, "--seed"),
    cluster: str = typer.Option("local", "--cluster", "-c"),
    cpus: float = typer.Option(1, "--cpus", help="CPUs for the job; the fit uses as many "
                               "threads"),
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
                            seed=seed, cluster=cluster, cpus=cpus)
    if not wait:
        console.print(job.id)
        return
    console.print(f"training job {job.id} submitted to {cluster}", highlight=False)
    for line in job.logs(follow=True):
        console.print(line, markup=False, highlight=False)
    info = job.wait()
    if info["state"] != "succeeded":
        console.print(f"training job {job.id} {info['state']}: {info['reason']}", style="red")
        raise typer.Exit(1)
    console.print(f"training job {job.id} succeeded after {info['usage']['wall_seconds']:.1f}s;"
                  f" 'cumulo models versions {name}' lists its versions", highlight=False)


@models_app.command("ls")
def list_models(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """Registered models."""
    show_rows(client(ctx).models.list(), {
        "name": "name",
        "latest": lambda m: f"v{m['latest_version']}" if m["latest_version"] else None,
        "aliases": lambda m: ", ".join(f"{a}=v{v}" for a, v in sorted(m["aliases"].items())),
        "updated": lambda m: _ms(m["updated_at"]), "description": "description",
    }, as_json=json)


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
    _versions_table(versions, as_json=False)


def _versions_table(versions: list[dict[str, Any]], *, as_json: bool) -> None:
    show_rows(versions, {
        "version": lambda v: f"v{v['version']}", "approval": "approval",
        "aliases": lambda v: ", ".join(v["aliases"]), "created": lambda v: _ms(v["created_at"]),
        "run": lambda v: (v["run_id"] or "-")[:12], "description": "description",
    }, as_json=as_json)


@models_app.command("versions")
def versions(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """A model's versions, with their approval status."""
    _versions_table(client(ctx).models.versions(name), as_json=json)


@models_app.command("version")
def version(ctx: typer.Context, name: str, number: str, json: bool = JsonOpt) -> None:
    """One version with its lineage: the job, code, hyperparameters and table versions."""
    v = client(ctx).models.version(name, number)
    lineage = v["lineage"]
    show_record(v, [
        ("model", f"{v['name']} v{v['version']} ({v['approval']})"),
        ("aliases", ", ".join(v["aliases"]) or "-"),
        ("source", v["source"] or "-"),
        *((label, lineage.get(key) or "-") for label, key in (
            ("run", "run_id"), ("job", "job"), ("code", "code"))),
        *((f"input {key}", ref) for key, ref in sorted(lineage.get("inputs", {}).items())),
        *((f"param {key}", value)
          for key, value in sorted(lineage.get("hyperparameters", {}).items())),
        *((f"metric {key}", f"{value:g}")
          for key, value in sorted(lineage.get("metrics", {}).items())),
    ], as_json=json)


@models_app.command("import")
def import_(ctx: typer.Context,
            path: str = typer.Argument(..., help="a folder, a .pkl/.joblib file, or "
                                       "hf://ORG/NAME (hf://ORG/NAME@REVISION)"),
            name: str = typer.Option(..., "--name", help="the registered model's name"),
            task: str | None = typer.Option(None, "--task",
                                            help="a transformers model's pipeline task, e.g. "
                                            "text-classification (default: inferred)"),
            json: bool = JsonOpt) -> None:
    """Register a model made elsewhere: an MLflow model folder, a pickled scikit-learn model,
    or a transformers model (a save_pretrained folder, or one from the Hugging Face Hub).

    A pickle runs code when it is loaded: import only files you trust."""
    v = client(ctx).models.import_model(path, name=name, task=task)
    if json:
        print_json(v)
        return
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
    show_rows(client(ctx).models.alias_history(name), {
        "when": lambda e: when(e["at"]), "alias": "alias",
        "from": lambda e: f"v{e['previous_version']}" if e["previous_version"] else None,
        "to": lambda e: f"v{e['version']}" if e["version"] else "(removed)", "by": "by",
    }, as_json=json)


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


@models_app.command("reproduce")
def reproduce(ctx: typer.Context, name: str, number: str,
              tolerance: float = typer.Option(1e-6, "--tolerance",
                                              help="relative difference still called a match"),
              json: bool = JsonOpt) -> None:
    """Rerun a version's training on the same code, table versions and seed; compare metrics.

    Exits 0 when every metric matches, 1 when one differs or the rerun failed."""
    from cumulo.ml.reproduce import reproduce as rerun

    result = rerun(client(ctx).transport, name, number, tolerance=tolerance,
                   on_job=lambda job: None if json else console.print(
                       f"rerunning the training of {name} v{number} as job {job.id}"))
    show_rows(result["metrics"], {
        "metric": "metric", "original": lambda r: f"{r['original']:.6g}",
        "reproduced": lambda r: None if r["reproduced"] is None else f"{r['reproduced']:.6g}",
        "match": lambda r: "yes" if r["match"] else "NO",
    }, as_json=json, data=result)
    if not json:
        if result.get("reason"):
            console.print(result["reason"], style="red")
        verdict = "reproduced" if result["matches"] else "did NOT reproduce"
        console.print(f"{name} v{number} {verdict} (job {result['job']})")
    if not result["matches"]:
        raise typer.Exit(1)


def _json_option(text: str, option: str) -> Any:
    import json as json_
    from pathlib import Path

    from cumulo.errors import Invalid

    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise Invalid(f"{option} {text}: {exc.strerror}") from None
    try:
        return json_.loads(text)
    except ValueError as exc:
        raise Invalid(f"{option} is not JSON: {exc}") from None


def tune_command(
    ctx: typer.Context,
    space: str = typer.Option(..., "--space", help="search space, JSON or @file.json: "
                              '{"lr": {"low": 0.01, "high": 0.3, "log": true}, '
                              '"depth": {"low": 3, "high": 9}, "kind": ["a", "b"]}'),
    objective: str = typer.Option(..., "--objective", help="the metric to optimize"),
    direction: str | None = typer.Option(None, "--direction",
                                         help="maximize or minimize (guessed for known names)"),
    name: str | None = typer.Option(None, "--name", help="the model to register the best as"),
    table: str | None = typer.Option(None, "--table", help="built-in: db.table[@vN]"),
    target: str | None = typer.Option(None, "--target", help="built-in: the column to predict"),
    algorithm: str = typer.Option("lightgbm", "--algorithm"),
    features: str = typer.Option("", "--features"),
    code: str | None = typer.Option(None, "--code", help="script mode: the code folder"),
    entry: str | None = typer.Option(None, "--entry", help="script mode: the script"),
    inputs: list[str] = typer.Option([], "--input", "-i", help="script mode: NAME=REF"),
    hyperparameters: str = typer.Option("{}", "--hyperparameters",
                                        help="fixed hyperparameters, JSON"),
    strategy: str = typer.Option("tpe", "--strategy", help="tpe, random or grid"),
    max_trials: int = typer.Option(10, "--max-trials"),
    max_parallel: int = typer.Option(1, "--max-parallel"),
    early_stopping: bool = typer.Option(False, "--early-stopping",
                                        help="stop trials whose progress is below the median"),
    seed: int | None = typer.Option(None, "--seed"),
    cluster: str = typer.Option("local", "--cluster", "-c"),
    cpus: float = typer.Option(1, "--cpus", help="per trial"),
    plot: str | None = typer.Option(None, "--plot", help="save the history plot (PNG) here"),
    json: bool = JsonOpt,
) -> None:
    """Tune hyperparameters on Optuna: each trial a job; registers the best model."""
    from cumulo.compute.spec import parse_inputs
    from cumulo.errors import Invalid
    from cumulo.ml.tune import save_plot

    c = client(ctx)
    fixed = _json_option(hyperparameters, "--hyperparameters")
    if not isinstance(fixed, dict):
        raise Invalid("--hyperparameters must be a JSON object")
    options: dict[str, Any] = dict(
        objective=objective, search_space=_json_option(space, "--space"), name=name,
        direction=direction, strategy=strategy, max_trials=max_trials,
        max_parallel=max_parallel, early_stopping=early_stopping, seed=seed)
    if code or entry:
        if not (code and entry):
            raise Invalid("script mode needs both --code and --entry")
        if table or target:
            raise Invalid("tune either a script (--code/--entry) or a built-in algorithm "
                          "(--table/--target), not both")
        est = c.estimator(entry_point=entry, code=code, name=name, hyperparameters=fixed,
                          cluster=cluster, cpus=cpus)
        options.update(estimator=est, inputs={r.name: r.ref for r in parse_inputs(inputs)})
    else:
        options.update(table=table, target=target, algorithm=algorithm,
                       features=[f for f in features.split(",") if f], hyperparameters=fixed,
                       cluster=cluster, cpus=cpus)

    def show(kind: str, info: dict[str, Any]) -> None:
        if json:
            return
        if kind == "begin":
            console.print(f"tuning: {info['max_trials']} trials, MLflow run "
                          f"{info['run_id'][:12]}")
        elif kind == "started":
            console.print(f"  trial {info['number']} started: {_fmt(info['params'])} "
                          f"(job {info['job']})", highlight=False)
        else:
            value = "" if info["value"] is None else f" {objective}={info['value']:.5g}"
            why = f": {info['reason']}" if info["reason"] else ""
            console.print(f"  trial {info['number']} {info['state']}{value} in "
                          f"{info['seconds']:.1f}s{why}", highlight=False, markup=False)

    result = c.tune(**options, on_event=show)
    if plot:
        result["plot_file"] = save_plot(c, result["plot"], plot)
    show_rows(result["trials"], {
        "trial": "number", "state": "state",
        objective: lambda t: None if t["value"] is None else f"{t['value']:.5g}",
        "seconds": lambda t: f"{t['seconds']:.1f}",
        "hyperparameters": lambda t: _fmt(t["params"]), "job": "job",
    }, as_json=json, data=result)
    if json:
        return
    best = result["best"]
    console.print(f"best: trial {best['number']}, {objective}={best['value']:.5g}, "
                  f"{_fmt(best['params'])}", highlight=False)
    if result["model"]:
        console.print(f"registered {result['model']['name']} v{result['model']['version']}")
    console.print(f"history plot: {result.get('plot_file') or result['plot']}")


def _fmt(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())
