"""``cumulo notebooks``: JupyterLab servers run as jobs, opened through Cumulo."""

from __future__ import annotations

from typing import Any

import typer

from cumulo.cli.context import client
from cumulo.cli.output import (
    JsonOpt,
    human_bytes,
    print_json,
    show_record,
    show_result,
    show_rows,
    when,
)
from cumulo.notebooks.runs_cli import run_notebook
from cumulo.units import format_duration

__all__ = ["app"]

app = typer.Typer(help="Notebooks: JupyterLab on a cluster, behind your sign-in.",
                  no_args_is_help=True)
app.command("run")(run_notebook)  # notebooks as jobs: runs_cli.py


def _memory(nb: dict[str, Any]) -> str:
    return human_bytes(nb["memory"]) if nb.get("memory") else "no limit"


def _state(nb: dict[str, Any]) -> str:
    if nb["state"] in ("stopped", "failed") and nb.get("reason"):
        return f"{nb['state']} ({nb['reason']})"
    return str(nb["state"])


WaitOpt = typer.Option(False, "--wait", "-w", help="return once it has (at most 2 minutes)")
_WAIT_SECONDS = 120.0


def _wait(ctx: typer.Context, nb: dict[str, Any], until: str) -> dict[str, Any]:
    """Poll the notebook until its state is ``until``; one that fails instead is an error."""
    import time

    from cumulo.errors import Invalid, Unavailable

    deadline = time.monotonic() + _WAIT_SECONDS
    while nb["state"] != until:
        if nb["state"] == "failed" or (until == "running" and nb["state"] == "stopped"):
            raise Invalid(f"notebook {nb['name']} is {_state(nb)}, not {until}; "
                          f"'cumulo jobs logs {nb.get('job_id')}' tells why")
        if time.monotonic() > deadline:
            raise Unavailable(f"notebook {nb['name']} is still {nb['state']} after "
                              f"{_WAIT_SECONDS:.0f} s; 'cumulo notebooks show {nb['name']}'",
                              retry_after=5)
        time.sleep(0.25)
        nb = client(ctx).notebooks.get(nb["name"])
    return nb


@app.command("create")
def create(ctx: typer.Context, name: str,
           cluster: str = typer.Option("local", "--cluster", help="local, or a Ray cluster's "
                                       "name ('cumulo clusters ls')"),
           cpus: float = typer.Option(1.0, "--cpus"),
           memory: str | None = typer.Option(None, "--memory", help="4G, 512M ...; none: no "
                                             "limit"),
           gpus: int = typer.Option(0, "--gpus"),
           env: str | None = typer.Option(None, "--env", help="a named environment ('cumulo "
                                          "envs ls'); it needs jupyterlab"),
           idle_timeout: str = typer.Option("1h", "--idle-timeout", help="stopped once idle "
                                            "this long (no kernel busy, no request): 30m, 1h, "
                                            "2h30m"),
           project: str | None = typer.Option(None, "--project"),
           wait: bool = WaitOpt, json: bool = JsonOpt) -> None:
    """Create a notebook and start it: JupyterLab, run as a job."""
    nb = client(ctx).notebooks.create(name, cluster=cluster, cpus=cpus, memory=memory,
                                      gpus=gpus, environment=env, idle_timeout=idle_timeout,
                                      project=project)
    if wait:
        nb = _wait(ctx, nb, "running")
    show_result(nb, f"notebook {name} is {nb['state']} on {nb['cluster']} (job "
                    f"{nb['job_id']}); 'cumulo notebooks open {name}' opens it", as_json=json)


@app.command("ls")
def list_(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """List notebooks: your own and those shared with you."""
    show_rows(client(ctx).notebooks.list(), {
        "name": "name", "owner": "owner", "state": _state, "cluster": "cluster",
        "cpus": "cpus", "memory": _memory, "idle timeout": lambda n:
        format_duration(n["idle_timeout"]), "job": "job_id"}, as_json=json)


@app.command("show")
def show(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """A notebook: its state, its URL, and when and why it stopped."""
    c = client(ctx)
    nb = c.notebooks.get(name)
    if json:
        print_json(nb)
        return
    show_record(nb, [
        ("name", nb["name"]), ("owner", nb["owner"]), ("state", nb["state"]),
        ("reason", nb.get("reason") or ""), ("url", c.notebooks.url(name)),
        ("cluster", nb["cluster"]), ("cpus", nb["cpus"]), ("memory", _memory(nb)),
        ("gpus", nb["gpus"]), ("environment", nb.get("environment") or "the server's"),
        ("idle timeout", format_duration(nb["idle_timeout"])),
        ("started", when(nb.get("started_at"))), ("stopped", when(nb.get("stopped_at"))),
        ("job", nb.get("job_id") or ""),
        ("shared with", ", ".join(nb.get("shared_with") or []) or "nobody"),
    ], as_json=False)


@app.command("stop")
def stop(ctx: typer.Context, name: str, wait: bool = WaitOpt, json: bool = JsonOpt) -> None:
    """Stop a notebook (its job is cancelled); its files stay."""
    nb = client(ctx).notebooks.stop(name)
    if wait:
        nb = _wait(ctx, nb, "stopped")
    show_result(nb, f"notebook {name} is {nb['state']}", as_json=json)


@app.command("start")
def start(ctx: typer.Context, name: str, wait: bool = WaitOpt, json: bool = JsonOpt) -> None:
    """Start a stopped notebook again, with its files."""
    nb = client(ctx).notebooks.start(name)
    if wait:
        nb = _wait(ctx, nb, "running")
    show_result(nb, f"notebook {name} is {nb['state']} (job {nb['job_id']})", as_json=json)


@app.command("rm")
def remove(ctx: typer.Context, name: str) -> None:
    """Delete a notebook (stopping it); its files stay in storage."""
    client(ctx).notebooks.delete(name)
    show_result({"deleted": name}, f"notebook {name} deleted; its files stay in storage",
                as_json=False)


@app.command("open")
def open_(ctx: typer.Context, name: str,
          browser: bool = typer.Option(False, "--browser", help="open it in a web browser "
                                       "too")) -> None:
    """Print the notebook's URL (sign in to Cumulo in the browser that opens it)."""
    url = client(ctx).notebooks.url(name)
    typer.echo(url)
    if browser:
        import webbrowser

        webbrowser.open(url)


@app.command("share")
def share(ctx: typer.Context, name: str,
          user: str = typer.Option(..., "--with", help="the user who may open it too"),
          json: bool = JsonOpt) -> None:
    """Let another user open the notebook."""
    nb = client(ctx).notebooks.share(name, user)
    show_result(nb, f"notebook {name} is shared with {user}", as_json=json)


@app.command("unshare")
def unshare(ctx: typer.Context, name: str,
            user: str = typer.Option(..., "--with", help="the user who may not open it any "
                                     "more"),
            json: bool = JsonOpt) -> None:
    """Stop sharing the notebook with a user."""
    nb = client(ctx).notebooks.unshare(name, user)
    show_result(nb, f"notebook {name} is no longer shared with {user}", as_json=json)


# Notebooks run headless as jobs (``cumulo notebooks run``) register below.
