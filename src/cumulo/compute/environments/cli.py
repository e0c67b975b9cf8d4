"""``cumulo envs``: Python environments of their own for jobs, pipeline steps and endpoints."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

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
    show_rows,
    when,
)

__all__ = ["envs_app"]

envs_app = typer.Typer(help="Environments: the Python packages jobs, steps and endpoints run "
                       "with, built once per set of pins and shared.", no_args_is_help=True)


def _names(e: dict[str, Any]) -> str:
    return ", ".join(e["names"]) or "-"


def _size(e: dict[str, Any]) -> str | None:
    return human_bytes(e["size"]) if e["size"] is not None else None


@envs_app.command("create")
def create(
    ctx: typer.Context, name: str,
    requirements: str = typer.Option(..., "--requirements", "-r",
                                     help="a requirements file (one requirement a line)"),
    python: str | None = typer.Option(None, "--python",
                                      help="3.12, or an interpreter's path (default: the "
                                      "server's)"),
    isolated: bool = typer.Option(False, "--isolated",
                                  help="nothing of the server's own packages is visible in it"),
    no_wait: bool = typer.Option(False, "--no-wait", help="return once it is resolved"),
    project: str | None = ProjectOpt,
    json: bool = JsonOpt,
) -> None:
    """Create a named environment from a requirements file (built now, once per set of pins)."""
    import time

    started = time.monotonic()
    with err.status(f"resolving and building {name} ...") if not json else nullcontext():
        env = client(ctx).envs.create(name, requirements, python=python, isolated=isolated,
                                      project=project, wait=not no_wait)
    if json:
        print_json(env)
        return
    took = time.monotonic() - started
    if env["state"] == "ready":
        how = (f"built in {env['build_seconds']:.1f}s" if env["build_seconds"] and
               took >= (env["build_seconds"] or 0) else "already built")
        console.print(f"environment {name} ready: {env['digest'][:12]}, {env['packages']} "
                      f"package(s), Python {env['python']} ({how})")
    else:
        console.print(f"environment {name}: {env['state']} ({env['digest'][:12]}); follow it "
                      f"with 'cumulo envs show {env['digest'][:12]}'")


@envs_app.command("ls")
def list_envs(ctx: typer.Context, project: str | None = ProjectOpt,
              json: bool = JsonOpt) -> None:
    """List environments: names, digest, size, packages, last use, jobs that used it."""
    show_rows(client(ctx).envs.list(project=project), {
        "name": _names, "digest": lambda e: e["digest"][:12], "state": "state",
        "python": "python", "packages": "packages", "size": _size,
        "last used": lambda e: when(e["last_used_at"]) if e["last_used_at"] else "never",
        "jobs": "jobs",
    }, as_json=json, right=("packages", "size", "jobs"))


@envs_app.command("show")
def show(ctx: typer.Context, ref: str = typer.Argument(..., help="a name or a digest"),
         log: bool = typer.Option(False, "--log", help="print the last build's log"),
         json: bool = JsonOpt) -> None:
    """An environment in full: its requirements, what they resolved to, its last build."""
    e = client(ctx).envs.show(ref, log=log)
    if log and not json:
        console.print(e["log"] or "(no build log on record)", markup=False)
        return
    pins = [line for line in (e["lock"] or "").splitlines() if line.strip()]
    show_record(e, [
        ("environment", f"{e['digest'][:12]} ({_names(e)})"),
        ("state", e["state"] + ("" if e["built_here"] or e["state"] != "ready"
                                else " (not built on this machine yet)")),
        ("error", e["error"]),
        ("python", e["python"] + (" (isolated)" if e["isolated"] else
                                  " (a layer over the server's packages)")),
        ("from", e["source"]),
        ("packages", f"{e['packages']}" + (f", {e['installed']} installed into it, the rest "
                                           "the server's own" if e["installed"] is not None
                                           and not e["isolated"] else "")),
        ("size", _size(e)),
        ("built", f"{when(e['built_at'])} in {e['build_seconds']:.1f}s"
         if e["built_at"] and e["build_seconds"] is not None else None),
        ("last used", when(e["last_used_at"]) if e["last_used_at"] else "never"),
        ("jobs", e["jobs"]),
        ("created", f"{when(e['created_at'])} by {e['created_by'] or '-'}"),
        *((("pins" if i == 0 else ""), pin) for i, pin in enumerate(pins)),
    ], as_json=json)


@envs_app.command("rm")
def remove(ctx: typer.Context, name: str) -> None:
    """Remove a named environment (refused while a job or endpoint uses it)."""
    client(ctx).envs.delete(name)
    console.print(f"removed environment {name}")


@envs_app.command("prune")
def prune(ctx: typer.Context,
          unused: str = typer.Option("30d", "--unused",
                                     help="not used for this long, like 30d, 12h or 1h30m"),
          dry_run: bool = typer.Option(False, "--dryrun", "--dry-run",
                                       help="say what would go, remove nothing"),
          json: bool = JsonOpt) -> None:
    """Remove environments not used for a while; named ones keep their pins."""
    pruned = client(ctx).envs.prune(unused=unused, dry_run=dry_run)
    if json:
        print_json(pruned)
        return
    verb = "would remove" if dry_run else "removed"
    for e in pruned:
        size = human_bytes(e["size"]) if e.get("size") else "not built"
        console.print(f"{verb} {e['digest'][:12]} ({', '.join(e['names']) or 'unnamed'}, "
                      f"{size})")
    if not pruned:
        console.print(f"nothing unused for {unused}")
