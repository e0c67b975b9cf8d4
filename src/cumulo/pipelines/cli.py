"""``cumulo pipelines``: define pipelines in Python or JSON/YAML, store and read them."""

from __future__ import annotations

import sys
from typing import Any

import orjson
import typer
from rich.table import Table

from cumulo.cli.context import client
from cumulo.cli.output import JsonOpt, console, print_json, when

__all__ = ["pipelines_app"]

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


def draw(definition: dict[str, Any], states: dict[str, str] | None = None) -> Table:
    """The DAG as a table, a row per node, layer by layer, with what feeds each input."""
    nodes = {n["id"]: n for n in definition["nodes"]}
    feeds: dict[str, list[str]] = {n: [] for n in nodes}
    for edge in definition["edges"]:
        node, port = edge["to"].split(".")
        feeds[node].append(f"{port} <- {edge['from']}")
    table = Table(box=None, pad_edge=False)
    for column in ("step", "node", "component", "inputs"):
        table.add_column(column)
    if states is not None:
        table.add_column("state")
    for i, layer in enumerate(_layers(definition), start=1):
        for node_id in layer:
            node = nodes[node_id]
            row = [str(i), node_id, node["component"], ", ".join(feeds[node_id]) or "-"]
            if states is not None:
                row.append(states.get(node_id, "-"))
            table.add_row(*row)
    return table


@pipelines_app.command("components")
def components(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """List the components, with their inputs, outputs and parameters."""
    rows = client(ctx).pipelines.components()
    if as_json:
        print_json(rows)
        return
    table = Table()
    for column in ("component", "inputs", "outputs", "parameters (* required)"):
        table.add_column(column)
    for c in rows:
        table.add_row(
            f"{c['name']}\n[dim]{c['title']}[/dim]",
            "\n".join(f"{p['name']}: {p['type']}" + (" (optional)" if p["optional"] else "")
                      for p in c["inputs"]) or "-",
            "\n".join(f"{p['name']}: {p['type']}" for p in c["outputs"]) or "-",
            ", ".join(p["name"] + ("*" if p["required"] else "") for p in c["params"]) or "-")
    console.print(table)


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
           as_json: bool = JsonOpt) -> None:
    """Store a pipeline; a changed definition of an existing one is its next version."""
    out = client(ctx).pipelines.create(file)
    if as_json:
        print_json(out)
        return
    what = "created" if out["created"] else "unchanged"
    console.print(f"pipeline {out['name']} version {out['version']} ({what}, "
                  f"{len(out['definition']['nodes'])} nodes)")


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
def list_pipelines(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """List pipelines."""
    rows = client(ctx).pipelines.list()
    if as_json:
        print_json(rows)
        return
    table = Table()
    for column in ("name", "version", "nodes", "description", "by", "updated"):
        table.add_column(column)
    for p in rows:
        table.add_row(p["name"], str(p["latest_version"]), str(p["nodes"]),
                      p["description"][:60], p["created_by"] or "-", when(p["updated_at"]))
    console.print(table)


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
    console.print(f"[bold]{out['name']}[/bold] version {out['version']} of "
                  f"{out['latest_version']} ({out['source']}), by {out['created_by'] or '-'}")
    if out["description"]:
        console.print(out["description"])
    for pname, spec in definition["parameters"].items():
        default = f" = {spec['default']!r}" if "default" in spec else " (required)"
        console.print(f"  parameter {pname}: {spec['type']}{default}")
    console.print(draw(definition))


@pipelines_app.command("versions")
def versions(ctx: typer.Context, name: str, as_json: bool = JsonOpt) -> None:
    """List a pipeline's versions."""
    rows = client(ctx).pipelines.versions(name)
    if as_json:
        print_json(rows)
        return
    table = Table()
    for column in ("version", "source", "nodes", "by", "created"):
        table.add_column(column)
    for v in rows:
        table.add_row(str(v["version"]), v["source"], str(v["nodes"]), v["created_by"] or "-",
                      when(v["created_at"]))
    console.print(table)


@pipelines_app.command("rm")
def remove(ctx: typer.Context, name: str) -> None:
    """Delete a pipeline and all its versions."""
    client(ctx).pipelines.delete(name)
    console.print(f"pipeline {name} deleted")
