"""The root of the CLI: global options, the platform commands, and each service's sub-app."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

import cumulo
from cumulo.access.audit_cli import app as audit_app
from cumulo.access.cli import app as tokens_app
from cumulo.access.cli import keys_app
from cumulo.access.iam_cli import (
    access_app,
    groups_app,
    policies_app,
    projects_app,
    roles_app,
    users_app,
)
from cumulo.cli.context import RootGroup, client
from cumulo.cli.logins import login, logout, profiles_app, save_first_login, whoami
from cumulo.cli.logs import logs_command
from cumulo.cli.output import (
    OUTPUTS,
    JsonOpt,
    console,
    err,
    human_bytes,
    print_json,
    use_format,
)
from cumulo.compute.cli import clusters_app, jobs_app
from cumulo.compute.environments.cli import envs_app
from cumulo.dr.cli import backup_app, standby_app
from cumulo.lake.cli import crawl_command, queries_app, sql_command, tables_app
from cumulo.metering.cli import alerts_app, budgets_app, costs_command
from cumulo.ml.cli import models_app, train_command, tune_command
from cumulo.notebooks.cli import app as notebooks_app
from cumulo.pipelines.cli import lineage_command, pipelines_app
from cumulo.serving.cli import endpoints_app
from cumulo.serving.monitors.cli import monitors_app
from cumulo.storage.cli import app as files_app
from cumulo.streams.cli import app as streams_app

__all__ = ["app"]

app = typer.Typer(
    name="cumulo",
    help="Cumulo: the ML cloud you run yourself.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=RootGroup,  # --query after the command too, as the aws command takes it
)

# One explicit list of the services' command groups.
app.add_typer(files_app, name="files")
app.add_typer(tokens_app, name="tokens")
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.add_typer(groups_app, name="groups")
app.add_typer(roles_app, name="roles")
app.add_typer(policies_app, name="policies")
app.add_typer(access_app, name="access")
app.add_typer(projects_app, name="projects")
app.add_typer(audit_app, name="audit")
app.add_typer(tables_app, name="tables")
app.add_typer(queries_app, name="queries")
app.command("sql")(sql_command)
app.command("crawl")(crawl_command)
app.add_typer(clusters_app, name="clusters")
app.add_typer(jobs_app, name="jobs")
app.add_typer(envs_app, name="envs")
app.add_typer(backup_app, name="backup")
app.add_typer(standby_app, name="standby")
app.command("costs")(costs_command)
app.add_typer(budgets_app, name="budgets")
app.add_typer(alerts_app, name="alerts")
app.command("logs")(logs_command)
app.add_typer(models_app, name="models")
app.add_typer(endpoints_app, name="endpoints")
app.add_typer(monitors_app, name="monitors")
app.add_typer(pipelines_app, name="pipelines")
app.add_typer(streams_app, name="streams")
app.add_typer(notebooks_app, name="notebooks")
app.command("lineage")(lineage_command)
app.command("train")(train_command)
app.command("tune")(tune_command)
# Saved logins: the CLI's own, not a service's.
app.command("login")(login)
app.command("logout")(logout)
app.command("whoami")(whoami)
app.add_typer(profiles_app, name="profiles")


@app.callback()
def root(
    ctx: typer.Context,
    url: str | None = typer.Option(None, "--url", help="Server URL (default: CUMULO_URL)."),
    token: str | None = typer.Option(None, "--token", help="API token (default: CUMULO_TOKEN)."),
    profile: str | None = typer.Option(
        None, "--profile", help="Saved login to use, over CUMULO_URL and CUMULO_TOKEN "
        "(default: CUMULO_PROFILE, else the current one; 'cumulo profiles ls')."),
    output: str | None = typer.Option(
        None, "--output", autocompletion=lambda: list(OUTPUTS),
        help="json, table or csv: how commands print (--json is --output json)."),
    query: str | None = typer.Option(
        None, "--query", help="A JMESPath expression picking from the JSON a command prints, "
        "like '[].id'; it may follow the command too."),
) -> None:
    ctx.obj = {"url": url, "token": token, "profile": profile}
    ctx.call_on_close(use_format(output=output, query=query))


@app.command()
def version() -> None:
    """Print the CLI's version."""
    console.print(cumulo.__version__)


@app.command()
def up(
    port: int | None = typer.Option(None, "--port", "-p", help="Port (default 8080)."),
    host: str | None = typer.Option(None, "--host", help="Bind address (default 127.0.0.1)."),
    home: str | None = typer.Option(None, "--home", help="State folder (default ./.cumulo)."),
) -> None:
    """Start the platform: API, storage and the rest, with embedded defaults."""
    from cumulo.config import load_settings
    from cumulo.errors import CumuloError
    from cumulo.server.run import Prepared, serve

    settings = load_settings(overrides={"home": home, "port": port, "host": host})

    def ready(prepared: Prepared) -> None:
        from cumulo.console import built_dir

        err.print(f"Cumulo {cumulo.__version__} is up at [bold]{settings.url}[/]")
        if (built_dir(settings.console_dir) / "index.html").is_file():
            err.print(f"  console: [bold]{settings.url}/[/] (sign in with a token)")
        else:
            err.print("  console: not built; 'make console' builds it (Node.js 20+)")
        err.print(f"  API docs: {settings.url}/docs")
        err.print(f"  home: {settings.home}")
        if prepared.admin_token:
            err.print("  first start: created user 'admin' with this token (shown once, "
                      "only its hash is kept):")
            err.print(f"  [bold]{prepared.admin_token}[/]", soft_wrap=True)
            try:
                saved = save_first_login(settings.url, prepared.admin_token)
            except (CumuloError, OSError) as exc:  # the token is printed: the server still runs
                saved = f"not saved as a login ({exc}); keep it, 'cumulo login' saves it"
            err.print(f"  {escape(saved)}")
        else:
            err.print("  admin token: as printed when this home was created, and saved then "
                      "as a login ('cumulo profiles ls'; 'cumulo tokens create NAME' makes "
                      "another)")
        err.print("  stop with Ctrl+C")

    serve(settings, on_ready=ready)


@app.command("break-glass")
def break_glass_command(
    user: str = typer.Option("admin", "--user", help="Who becomes an admin again."),
    home: str | None = typer.Option(None, "--home", help="State folder (default ./.cumulo)."),
    json: bool = JsonOpt,
) -> None:
    """Give the platform an admin back when nobody can act as one (run on the server's
    machine, with its settings: it opens the database directly, no server or token needed)."""
    from sqlalchemy.orm import sessionmaker

    from cumulo.access import audit
    from cumulo.access.breakglass import break_glass
    from cumulo.config import load_settings
    from cumulo.db import check_database, make_engine, upgrade

    settings = load_settings(overrides={"home": home})
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        check_database(engine)
        upgrade(engine)
        sessions = sessionmaker(engine)
        with sessions() as session:
            done = break_glass(session, user)
        audit.record(sessions, user=done.user, action="access:BreakGlass",
                     resource=f"user/{done.user}", outcome="allowed", source="break-glass",
                     details={"changes": done.changes, "token": done.token_name})
    finally:
        engine.dispose()
    if json:
        print_json({"user": done.user, "token": done.token, "token_name": done.token_name,
                    "changes": done.changes})
        return
    for change in done.changes or ["nothing to repair: the user was an admin already"]:
        err.print(f"  {change}")
    err.print(f"{done.user} is an admin; a new token, {done.token_name} (shown once; "
              "recorded in the audit log):")
    console.print(done.token, soft_wrap=True)


@app.command()
def status(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """Show the server's version, its database and storage, and what each holds."""
    s = client(ctx).status()
    if json:
        print_json(s)
        return
    db, st = s["database"], s["storage"]
    table = Table(box=None, show_header=False)
    table.add_row("server", f"{s['url']} (Cumulo {s['version']})")
    table.add_row("database", f"{db['url']} ({db['dialect']})")
    table.add_row("", f"{db['users']} user(s), {db['tokens']} live token(s)")
    table.add_row("storage", f"{st['url']} ({st['kind']})")
    table.add_row("", f"{st['buckets']} bucket(s), {st['objects']} object(s), "
                      f"{human_bytes(st['bytes'])} in buckets")
    used = st.get("used") or {}
    if used:
        areas = ", ".join(f"{area} {human_bytes(used[area])}"
                          for area in ("tables", "models", "jobs") if used.get(area) is not None)
        table.add_row("", f"{human_bytes(used['total'])} used in all ({areas})")
    cp = s["compute"]
    table.add_row("compute", f"{cp['clusters']} cluster(s), {cp['running']} job(s) running, "
                             f"{cp['queued']} queued")
    _backups_rows(table, s.get("backups"))
    _planes_rows(table, s.get("control_planes") or [])
    for i, a in enumerate(s.get("alerts") or []):  # budgets, cost anomalies, monitors
        style = {"critical": "red", "warning": "yellow"}.get(a["severity"], "")
        text = f"{a['severity']}: {escape(a['message'])}"
        table.add_row("alerts" if i == 0 else "", f"[{style}]{text}[/{style}]" if style
                      else text)
    console.print(table)


def _planes_rows(table: Table, planes: list[dict[str, Any]]) -> None:
    """The control planes sharing the database: each one's lease and the jobs and endpoints
    it owns."""
    from cumulo.cli.output import when

    live = [p for p in planes if p["live"]]
    for i, p in enumerate(planes):
        label = "control planes" if i == 0 else ""
        mark = " (this one)" if p["this"] else ""
        lease = (f"lease renewed {when(p['renewed_at'])}" if p["live"] else
                 f"[red]lease ran out {when(p['lease_expires_at'])}[/red]")
        table.add_row(label, f"{p['id'][:8]} {escape(p['host'])} {escape(p['url'])}{mark}: "
                             f"{lease}, {p['jobs']} job(s), {p.get('endpoints', 0)} "
                             "endpoint(s)")
    if len(planes) > 1:
        table.add_row("", f"{len(live)} of {len(planes)} live")


def _backups_rows(table: Table, b: dict[str, Any] | None) -> None:
    """The backups' lines of ``cumulo status``: when the last one succeeded, the last drill's
    figures, and each failing schedule in red."""
    from cumulo.cli.output import when

    if b is None:
        return
    if not b["schedules"]:
        table.add_row("backups", "no schedule ('cumulo backup schedule --cron ... --to ...')")
        return
    last = when(b["last_backup_at"]) if b["last_backup_at"] else "none yet"
    table.add_row("backups", f"{b['schedules']} schedule(s); last backup {last}")
    drill = b.get("last_drill")
    if drill:
        figures = (f"RPO {drill['rpo_seconds']:.0f}s, RTO {drill['rto_seconds']:.1f}s"
                   if drill["rto_seconds"] is not None else "")
        table.add_row("", f"last drill {drill['state']} {when(drill['finished_at'])} {figures}")
    for f in b["failing"]:
        table.add_row("", f"[red]FAILING: {escape(f['schedule'])}: {f['kind']} at "
                          f"{when(f['at'])}: {escape(f['error'])}[/red]")
