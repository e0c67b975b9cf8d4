"""``cumulo notebooks run``: a notebook executed headless with parameters, as a job, now or on
a schedule (:mod:`cumulo.notebooks.runs`)."""

from __future__ import annotations

import sys

import typer

from cumulo.cli.context import client
from cumulo.cli.output import JsonOpt, ProjectOpt, console, err, print_json, show_result

__all__ = ["run_notebook"]


def run_notebook(
    ctx: typer.Context,
    notebook: str = typer.Argument(..., help="the .ipynb file to run"),
    param: list[str] = typer.Option([], "--param", "-p",
                                    help="NAME=VALUE for a parameter its cell tagged "
                                    "'parameters' declares (repeatable)"),
    cluster: str = typer.Option("local", "--cluster", "-c"),
    cpus: float = typer.Option(1, "--cpus"),
    memory: str | None = typer.Option(None, "--memory", help="limit, like 4G (default: none)"),
    env: list[str] = typer.Option([], "--env", "-e",
                                  help="K=V sets a variable (repeatable); NAME (no '=') runs "
                                  "it in that environment ('cumulo envs ls')"),
    requirements: str | None = typer.Option(None, "--requirements", "-r",
                                            help="a requirements file: it runs in an "
                                            "environment built from it"),
    schedule: str | None = typer.Option(None, "--schedule",
                                        help="a cron expression (UTC), like '0 6 * * *' for "
                                        "06:00 every day: a scheduled pipeline of one Notebook "
                                        "step instead of one run now"),
    name: str | None = typer.Option(None, "--name",
                                    help="the job's name (with --schedule: the pipeline's)"),
    wait: bool = typer.Option(False, "--wait", "-w",
                              help="follow the job's log to its end and exit with its outcome"),
    project: str | None = ProjectOpt,
    json: bool = JsonOpt,
) -> None:
    """Execute a notebook headless with parameters (papermill), as a job; the executed
    notebook is its output ('cumulo jobs download JOB')."""
    from cumulo.compute.spec import parse_env
    from cumulo.notebooks import runs

    c = client(ctx)
    variables = parse_env([e for e in env if "=" in e])
    named = [e for e in env if "=" not in e]
    if len(named) > 1:
        raise typer.BadParameter(f"one environment at a time, not {', '.join(named)}",
                                 param_hint="--env")
    parameters = runs.parse_params(param)
    if schedule is not None:
        if variables:
            raise typer.BadParameter("a scheduled notebook takes no K=V variables: give it "
                                     "parameters (--param) instead", param_hint="--env")
        made = runs.schedule(c, notebook, cron=schedule, parameters=parameters,
                             cluster=cluster, cpus=cpus, memory=memory,
                             environment=named[0] if named else None,
                             requirements=requirements, name=name, project=project)
        pipeline, when = made["pipeline"]["name"], made["schedule"]
        show_result(made, f"scheduled {notebook} as pipeline {pipeline} ({when['name']}: "
                    f"{schedule} UTC); its runs: 'cumulo pipelines runs ls --pipeline {pipeline}'",
                    as_json=json)
        return
    job = runs.run(c, notebook, parameters=parameters, cluster=cluster, cpus=cpus,
                   memory=memory, env=variables, environment=named[0] if named else None,
                   requirements=requirements, name=name, project=project)
    if not wait:
        if json:
            print_json(job.info)
        else:
            console.print(job.id)
            err.print(f"submitted to {cluster}; follow it with 'cumulo jobs logs -f {job.id}', "
                      f"then 'cumulo jobs download {job.id}' for the executed notebook")
        return
    for line in job.logs(follow=True):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    info = job.wait()
    if json:
        print_json(info)
    ok = info["state"] == "succeeded"
    err.print(f"job {job.id} {info['state'].replace('_', ' ')}"
              + (f": {info['reason']}" if info["reason"] else "")
              + f"; the executed notebook: 'cumulo jobs download {job.id}'",
              style="green" if ok else "red")
    raise typer.Exit(0 if ok else 1)
