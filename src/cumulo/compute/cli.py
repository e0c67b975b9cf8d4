"""``cumulo clusters`` and ``cumulo jobs``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
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
    show_result,
    show_rows,
    when,
)
from cumulo.jobenv import input_ref
from cumulo.units import format_duration

__all__ = ["clusters_app", "jobs_app"]

clusters_app = typer.Typer(help="Compute clusters: this machine, or a Ray cluster.",
                           no_args_is_help=True)
jobs_app = typer.Typer(help="Jobs: run code on a cluster, follow it, see what it cost.",
                       no_args_is_help=True)

# How `jobs run --wait` exits, by the job's outcome (the job's own code when it failed).
EXIT_CODES = {"succeeded": 0, "timed_out": 124, "cancelled": 130}


# --- clusters ----------------------------------------------------------------------------------


def _capacity(c: dict[str, Any]) -> str:
    gpus = f", {c['max_gpus']} GPU" if c["max_gpus"] else ""
    return f"{c['max_cpus']:g} CPU, {human_bytes(c['max_memory'])}{gpus}"


def _in_use(c: dict[str, Any]) -> str:
    u = c["in_use"]
    gpus = f", {u['gpus']} GPU" if c["max_gpus"] else ""
    return f"{u['cpus']:g} CPU, {human_bytes(u['memory'])}{gpus}"


@clusters_app.command("ls")
def list_clusters(ctx: typer.Context, project: str | None = ProjectOpt,
                  json: bool = JsonOpt) -> None:
    """List clusters: capacity, what is in use, and queued work."""
    show_rows(client(ctx).clusters.list(project=project), {
        "name": "name", "type": "type", "project": "project",
        "capacity": _capacity, "in use": _in_use,
        "running": lambda c: c["in_use"]["running"], "queued": lambda c: c["in_use"]["queued"],
        "workers": lambda c: f"{c['workers']['idle']} idle, "
                             f"{c['min_workers']}-{c['max_workers']}",
    }, as_json=json)


@clusters_app.command("show")
def show_cluster(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """One cluster in full."""
    c = client(ctx).clusters.show(name)
    preloaded = c.get("preloaded") or []
    show_record(c, [
        ("name", f"{c['name']} ({c['type']})"),
        ("project", c["project"]),
        ("address", c["address"]),
        ("capacity", _capacity(c)),
        ("in use", _in_use(c)),
        ("jobs", f"{c['in_use']['running']} running, {c['in_use']['queued']} queued"),
        ("workers", f"{c['workers']['busy']} busy, {c['workers']['idle']} idle warm; pool "
                    f"{c['min_workers']}-{c['max_workers']}, idle ones go after "
                    f"{format_duration(c['idle_timeout_s'])}"),
        ("preloaded", None if c["type"] != "local" else "none" if not preloaded else
         f"{len(preloaded)} modules ({', '.join(preloaded[:6])}"
         f"{', ...' if len(preloaded) > 6 else ''})"),
        ("created", when(c["created_at"])),
    ], as_json=json)


@clusters_app.command("create")
def create_cluster(
    ctx: typer.Context, name: str,
    type: str = typer.Option("local", "--type", help="local (this machine) or ray"),
    address: str | None = typer.Option(None, "--address", help="ray://host:10001 or auto"),
    max_cpus: float | None = typer.Option(None, "--max-cpus", help="default: all there are"),
    max_memory: str | None = typer.Option(None, "--max-memory", help="like 8G or 512M"),
    max_gpus: int | None = typer.Option(None, "--max-gpus"),
    min_workers: int = typer.Option(0, "--min-workers", help="warm workers kept ready"),
    max_workers: int | None = typer.Option(None, "--max-workers", help="jobs at once"),
    idle_timeout: str = typer.Option("10m", "--idle-timeout",
                                     help="let idle workers above the minimum go after this "
                                     "long, like 90s, 10m or 1h30m"),
    python: str | None = typer.Option(None, "--python",
                                      help="ray: the head's interpreter with Cumulo and Ray, "
                                      "like /opt/venv/bin/python (default: its PATH's)"),
    project: str | None = ProjectOpt,
    json: bool = JsonOpt,
) -> None:
    """Create a cluster."""
    c = client(ctx).clusters.create(
        name, type=type, address=address, max_cpus=max_cpus, max_memory=max_memory,
        max_gpus=max_gpus, min_workers=min_workers, max_workers=max_workers,
        idle_timeout=idle_timeout, python=python, project=project)
    show_result(c, f"created cluster {c['name']} ({c['type']}): {_capacity(c)}", as_json=json)


@clusters_app.command("rm")
def remove_cluster(ctx: typer.Context, name: str) -> None:
    """Remove a cluster (it must have no queued or running jobs)."""
    client(ctx).clusters.delete(name)
    console.print(f"removed cluster {name}")


# --- jobs --------------------------------------------------------------------------------------


@jobs_app.command("run", context_settings={"allow_interspersed_args": False})
def run_job(
    ctx: typer.Context,
    args: list[str] = typer.Argument(None, help="arguments for the job, after --"),
    cluster: str = typer.Option("local", "--cluster", "-c"),
    code: str | None = typer.Option(None, "--code", help="folder to upload (once per content)"),
    entry: str | None = typer.Option(None, "--entry", help="file in --code to run, e.g. train.py"),
    command: str | None = typer.Option(None, "--command", help="e.g. 'python -m pkg.mod'"),
    cpus: float = typer.Option(1, "--cpus"),
    memory: str | None = typer.Option(None, "--memory", help="limit, like 4G (default: none)"),
    gpus: int = typer.Option(0, "--gpus"),
    env: list[str] = typer.Option([], "--env", "-e",
                                  help="K=V sets a variable (repeatable); NAME (no '=') runs "
                                  "it in that environment, 'pyproject' in --code's "
                                  "pyproject.toml/uv.lock"),
    requirements: str | None = typer.Option(None, "--requirements", "-r",
                                            help="a requirements file: the job runs in an "
                                            "environment built from it (once per set of pins)"),
    python: str | None = typer.Option(None, "--python",
                                      help="the environment's Python: 3.12, or a path"),
    isolated: bool = typer.Option(False, "--isolated",
                                  help="the environment sees nothing of the server's packages"),
    image: str | None = typer.Option(None, "--image",
                                     help="run in this container image (Podman or Docker)"),
    input: list[str] = typer.Option([], "--input", "-i",
                                    help="NAME=db.table[@vN], NAME=bucket/prefix/ or "
                                    "NAME=stream:STREAM[?group=G] (read with checkpoints)"),
    max_runtime: str | None = typer.Option(None, "--max-runtime",
                                           help="stop it after this long, like 30m, 1h30m or "
                                           "2d (default: no limit)"),
    retries: int = typer.Option(0, "--retries"),
    priority: int = typer.Option(0, "--priority", help="higher runs first"),
    tag: list[str] = typer.Option([], "--tag", "-t", help="repeatable; costs group by tag"),
    name: str | None = typer.Option(None, "--name"),
    wait: bool = typer.Option(False, "--wait", "-w",
                              help="follow the job's log to its end and exit with its outcome"),
    project: str | None = ProjectOpt,
    json: bool = JsonOpt,
) -> None:
    """Run code on a cluster: --code ./src --entry train.py -- --lr 0.1"""
    from cumulo.compute.spec import MAX_DURATION, parse_env, parse_inputs
    from cumulo.units import parse_duration

    c = client(ctx)
    variables = [e for e in env if "=" in e]
    named = [e for e in env if "=" not in e]
    if len(named) > 1:
        raise typer.BadParameter(f"one environment at a time, not {', '.join(named)}",
                                 param_hint="--env")
    job = c.jobs.run(  # what it can, checked here before the code is uploaded
        entry, code=code, command=command, args=args or [], cluster=cluster, cpus=cpus,
        memory=memory, gpus=gpus, env=parse_env(variables),
        requirements=requirements, environment=named[0] if named else None, python=python,
        isolated=isolated, image=image,
        inputs={r.name: r.ref for r in parse_inputs(input)},
        max_runtime=None if max_runtime is None else parse_duration(
            max_runtime, what="--max-runtime", maximum=MAX_DURATION),
        retries=retries, priority=priority, tags=tag, name=name, project=project,
    )
    if not wait:
        if json:
            print_json(job.info)
        else:
            console.print(job.id)
            err.print(f"submitted to {cluster}; follow it with 'cumulo jobs logs -f {job.id}'")
        return
    err.print(f"job {job.id} submitted to {cluster}", style="dim")
    _follow(job, json=json)


def _follow(job: Any, *, json: bool) -> None:
    """Print the job's log to its end, then its outcome; exit as the job did."""
    try:
        for line in job.logs(follow=True):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        info = job.wait()
    except KeyboardInterrupt:
        err.print(f"\nstopped following; job {job.id} goes on ('cumulo jobs cancel {job.id}')")
        raise typer.Exit(130) from None
    if json:
        print_json(info)
    _outcome(info)
    code_ = EXIT_CODES.get(info["state"], info["exit_code"] or 1)
    raise typer.Exit(code_ if 0 <= code_ <= 255 else 1)


def _outcome(info: dict[str, Any]) -> None:
    usage = info["usage"]
    line = (f"job {info['id']} {info['state'].replace('_', ' ')} after "
            f"{usage['wall_seconds']:.1f}s; {usage['cpu_seconds']:.1f} CPU-s, "
            f"peak {human_bytes(usage['peak_memory_bytes'])}, ${usage['cost_usd']:.6f}")
    if info["reason"]:
        line += f": {info['reason']}"
    err.print(line, style="green" if info["state"] == "succeeded" else "red")


@jobs_app.command("ls")
def list_jobs(
    ctx: typer.Context,
    state: str | None = typer.Option(None, "--state", help="e.g. running, failed, or active"),
    cluster: str | None = typer.Option(None, "--cluster", "-c"),
    tag: str | None = typer.Option(None, "--tag", "-t"),
    limit: int = typer.Option(50, "--limit", "-n"),
    project: str | None = ProjectOpt,
    json: bool = JsonOpt,
) -> None:
    """List jobs, newest first."""
    jobs = client(ctx).jobs.list(state=state, cluster=cluster, tag=tag, project=project,
                                 limit=limit)
    now = datetime.now(UTC)

    def wall(i: dict[str, Any]) -> str:
        if i["state"] == "running" and i["running_at"]:  # so far; priced when it ends
            return f"{(now - datetime.fromisoformat(i['running_at'])).total_seconds():.1f}s+"
        return f"{i['usage']['wall_seconds']:.1f}s"

    show_rows([j.info for j in jobs], {
        "id": "id", "name": "name", "project": "project",
        "cluster": "cluster", "state": "state",
        "attempt": lambda i: f"{i['attempt']}/{i['retries'] + 1}",
        "created": lambda i: when(i["created_at"]), "wall": wall,
        "cost": lambda i: f"${i['usage']['cost_usd']:.6f}",
        "tags": lambda i: ",".join(i["tags"]),
    }, as_json=json)


def _environment(i: dict[str, Any]) -> str | None:
    """Where the job's Python comes from: an environment (how it was asked), or an image."""
    if i.get("image"):
        return f"container image {i['image']}"
    if not i.get("environment"):
        return None
    return f"{i['environment'][:12]} ({i.get('environment_label') or 'requirements'})"


@jobs_app.command("show")
def show_job(ctx: typer.Context, job_id: str, json: bool = JsonOpt) -> None:
    """A job in full: its spec, timeline, use and cost, metrics and outputs."""
    job = client(ctx).jobs.get(job_id)
    metrics, artifacts, kept = job.metrics(), job.artifacts(), job.checkpoints()
    i = job.info
    what = (f"{i['entry']} (code {i['code'][:12]})" if i["entry"]
            else " ".join(i["command"] or []))
    u = i["usage"]
    fields: list[tuple[str, object]] = [
        ("job", f"{i['id']} ({i['name']}) on {i['cluster']}"),
        ("project", i["project"]),
        ("state", i["state"] + (f" (exit code {i['exit_code']})"
                                if i["exit_code"] is not None else "")),
        ("reason", i["reason"] or None),
        ("runs", " ".join([what, *i["args"]])),
        ("asks", f"{i['cpus']:g} CPU" + (f", {human_bytes(i['memory'])}" if i["memory"] else "")
         + (f", {i['gpus']} GPU" if i["gpus"] else "")
         + (f", max {format_duration(i['max_runtime_s'])}" if i["max_runtime_s"] else "")),
        ("environment", _environment(i)),
        *((f"input {name}", input_ref(spec)) for name, spec in i["inputs"].items()),
        ("attempt", f"{i['attempt']} of {i['retries'] + 1}"),
        *((label, when(i[key])) for label, key in (
            ("queued", "created_at"), ("environment ready", "env_ready_at"),
            ("starting", "starting_at"), ("running", "running_at"),
            ("finished", "finished_at")) if i.get(key) or key != "env_ready_at"),
        ("usage", f"{u['cpu_seconds']:.2f} CPU-s, peak {human_bytes(u['peak_memory_bytes'])}, "
                  f"{u['gpu_seconds']:.1f} GPU-s, {u['wall_seconds']:.2f}s wall"),
        ("cost", f"${u['cost_usd']:.6f}"),
        ("tags", ", ".join(i["tags"]) or None),
        *((f"metric {key}", f"{points[-1]['value']:g} (step {points[-1]['step']}, "
           f"{len(points)} values)") for key, points in metrics.items()),
        *(("output", f"{a['path']} ({human_bytes(a['size'])})") for a in artifacts),
        ("checkpoints", f"{len(kept)} file(s), {human_bytes(sum(k['size'] for k in kept))}, "
                        "for the next attempt" if kept else None),
        *((f"attempt {a['attempt']}", f"{a['state']}: {a['reason'] or 'ok'}")
          for a in (i["attempts"][:-1] if i["state"] != "queued" else i["attempts"])),
    ]
    show_record({**i, "metrics": metrics, "artifacts": artifacts, "checkpoints": kept}, fields,
                as_json=json)
    if not json and i["state"] in ("failed", "timed_out") and i["log_tail"]:
        console.print("last lines of the log:", style="bold")
        console.print(i["log_tail"], markup=False)


@jobs_app.command("logs")
def job_logs(
    ctx: typer.Context, job_id: str,
    follow: bool = typer.Option(False, "--follow", "-f", help="stream until the job ends"),
    attempt: int | None = typer.Option(None, "--attempt", help="an earlier attempt's log"),
) -> None:
    """Print a job's output."""
    job = client(ctx).jobs.get(job_id)
    for line in job.logs(follow=follow, attempt=attempt):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


@jobs_app.command("cancel")
def cancel_job(ctx: typer.Context, job_id: str, json: bool = JsonOpt) -> None:
    """Cancel a job: SIGTERM, then SIGKILL after the grace period."""
    info = client(ctx).jobs.cancel(job_id).info
    show_result(info, f"job {job_id}: " + ("cancelled" if info["state"] == "cancelled"
                                           else "stopping (SIGTERM sent)"), as_json=json)


@jobs_app.command("retry")
def retry_job(
    ctx: typer.Context, job_id: str,
    wait: bool = typer.Option(False, "--wait", "-w",
                              help="follow the new attempt to its end and exit with its outcome"),
    json: bool = JsonOpt,
) -> None:
    """Run a failed, cancelled or timed-out job again, resuming from its checkpoints."""
    job = client(ctx).jobs.retry(job_id)
    if not wait:
        show_result(job.info, f"job {job_id}: attempt {job.info['attempt']} queued",
                    as_json=json)
        return
    err.print(f"job {job_id}: attempt {job.info['attempt']} queued", style="dim")
    _follow(job, json=json)


@jobs_app.command("download")
def download(ctx: typer.Context, job_id: str,
             dest: str = typer.Argument(".", help="folder to save the outputs in")) -> None:
    """Save a job's outputs."""
    for path in client(ctx).jobs.get(job_id).download(dest):
        console.print(str(path))


@jobs_app.command("rm")
def remove_job(ctx: typer.Context, job_id: str) -> None:
    """Forget a finished job, with its logs and outputs."""
    client(ctx).jobs.delete(job_id)
    console.print(f"removed job {job_id}")
