"""The SDK client a CLI command uses, built once from the root options; and the root command
itself, which also reads ``--query`` after the command, where the aws command takes it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from cumulo.errors import Invalid

if TYPE_CHECKING:
    from cumulo.client import Client

__all__ = ["RootGroup", "client", "lift_query"]


def client(ctx: typer.Context) -> Client:
    from cumulo.client import Client

    root = ctx.find_root()
    if not isinstance(root.obj, dict):
        root.obj = {}
    if "client" not in root.obj:
        root.obj["client"] = Client(root.obj.get("url"), token=root.obj.get("token"),
                                    profile=root.obj.get("profile"))
    return root.obj["client"]  # type: ignore[no-any-return]


def lift_query(args: list[str]) -> list[str]:
    """``args`` with each ``--query EXPR`` (or ``--query=EXPR``) moved to the front, where the
    root command reads it: ``cumulo jobs ls --query '[].id'`` is ``cumulo --query '[].id' jobs
    ls``. Nothing after ``--`` moves: that is a job's own command line. ``--output`` does not
    move, as ``sql`` and ``endpoints batch`` have options of that name."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg == "--query":
            front += args[i:i + 2]
            i += 2
            continue
        (front if arg.startswith("--query=") else rest).append(arg)
        i += 1
    return front + rest


class RootGroup(TyperGroup):
    """The ``cumulo`` command: Typer's group, with ``--query`` lifted to the root (one option
    for every command, not one per command), and ``--query`` or ``--output json`` refused,
    before anything runs, for a command that prints no JSON."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, lift_query(args))

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        params = ctx.params
        if (command is not None and not ctx.resilient_parsing
                and (params.get("query") is not None or params.get("output") == "json")):
            _check_prints_json(ctx, [name or ""], command, rest)
        return name, command, rest


def _check_prints_json(ctx: Any, path: list[str], command: Any, rest: list[str]) -> None:
    while hasattr(command, "get_command") and rest and not rest[0].startswith("-"):
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            return  # Typer names the unknown command
        path, command, rest = [*path, rest[0]], sub, rest[1:]
    if hasattr(command, "get_command") or "--help" in rest:
        return
    if not any("--json" in getattr(param, "opts", ()) for param in command.params):
        given = "--query" if ctx.params.get("query") is not None else "--output json"
        raise Invalid(f"'cumulo {' '.join(path)}' prints no JSON, so {given} cannot apply: "
                      "use it with a command that takes --json")
