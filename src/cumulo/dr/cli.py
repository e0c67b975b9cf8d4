"""``cumulo backup``: back up a home, list and check backups, restore one; and the schedules
the server runs (``schedule``, ``schedules``, ``run``, ``runs``: through its API).

``create``, ``restore --to-home``, ``drill`` and ``stream`` run on the server's machine, with
its settings (``--home``), as ``cumulo break-glass`` does: they read the databases and storage
directly (SQLite's online backup, or one PostgreSQL transaction, copies a database the server
is writing), and restore into a home no server uses.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from cumulo.cli.output import JsonOpt, console, err, human_bytes, print_json, show_record, show_rows

__all__ = ["backup_app"]

backup_app = typer.Typer(help="Backups: the whole platform at one moment, stored once per "
                         "piece; checked, listed, restored.", no_args_is_help=True)

ToOpt = typer.Option(..., "--to", help="the backup folder (made on first use)")
KeyOpt = typer.Option(None, "--key-file",
                      help="encrypt (or open) the backups with this key file (32 random bytes: "
                      "head -c 32 /dev/urandom > backup.key; keep it apart from the backups)")
HomeOpt = typer.Option(None, "--home", help="the server's state folder (default ./.cumulo)")


def _settings(home: str | None) -> Any:
    from cumulo.config import load_settings

    return load_settings(overrides={"home": home})


KeepLast = typer.Option(0, "--keep-last", help="keep the N newest backups")
KeepDaily = typer.Option(0, "--keep-daily", help="keep the newest backup of each of N days")
KeepWeekly = typer.Option(0, "--keep-weekly", help="keep the newest backup of each of N weeks")


@backup_app.command("create")
def create(to: str = ToOpt, key_file: str | None = KeyOpt, home: str | None = HomeOpt,
           keep_last: int = KeepLast, keep_daily: int = KeepDaily, keep_weekly: int = KeepWeekly,
           json: bool = JsonOpt) -> None:
    """Back up the whole platform at one moment: its databases and every service's files;
    with --keep-*, then prune the backups that policy does not keep."""
    from cumulo.dr.backup import create_backup, prune_backups
    from cumulo.dr.repo import open_repository

    repo = open_repository(to, key_file=key_file, create=True)
    with err.status("backing up ...") as status:
        def progress(what: str, files: int, size: int) -> None:
            status.update(f"backing up: {what}, {files} file(s), {human_bytes(size)}")

        manifest = create_backup(_settings(home), repo, progress=progress)
    if keep_last or keep_daily or keep_weekly:
        pruned = prune_backups(repo, keep_last=keep_last, keep_daily=keep_daily,
                               keep_weekly=keep_weekly)
        if pruned.removed and not json:
            err.print(f"pruned {len(pruned.removed)} backup(s), freed "
                      f"{human_bytes(pruned.bytes_freed)}")
    if json:
        print_json(_summary(manifest))
        return
    t = manifest["totals"]
    console.print(f"backup {manifest['id']}: {t['files']} file(s) and "
                  f"{len(manifest['databases'])} database(s), {human_bytes(t['bytes'])}; "
                  f"{human_bytes(t['stored_bytes'])} new in {to} ({t['reused_files']} file(s) "
                  f"unchanged since the last backup), {t['seconds']:.1f}s")


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    return {"id": m["id"], "created_at": m["created_at"], "totals": m["totals"],
            "databases": {k: v["size"] for k, v in m["databases"].items()},
            "prefixes": m["prefixes"], "source": m["source"]}


@backup_app.command("ls")
def list_backups(to: str = ToOpt, key_file: str | None = KeyOpt, json: bool = JsonOpt) -> None:
    """List the complete backups in a backup folder, oldest first."""
    from cumulo.dr.repo import open_repository

    repo = open_repository(to, key_file=key_file)
    rows = [_summary(repo.snapshot(i)) for i in repo.snapshot_ids()]
    show_rows(rows, {
        "id": "id", "time": "created_at", "files": lambda r: r["totals"]["files"],
        "size": lambda r: human_bytes(r["totals"]["bytes"]),
        "new": lambda r: human_bytes(r["totals"]["stored_bytes"]),
        "took": lambda r: f"{r['totals']['seconds']:.1f}s",
    }, as_json=json, right=("files", "size", "new"))


@backup_app.command("show")
def show(backup: str = typer.Argument("latest", help="a backup's id (or its start), or latest"),
         to: str = ToOpt, key_file: str | None = KeyOpt, json: bool = JsonOpt) -> None:
    """A backup in full: what it holds, by database and storage prefix."""
    from cumulo.dr.repo import open_repository

    m = open_repository(to, key_file=key_file).snapshot(backup)
    by_prefix: dict[str, list[int]] = {}
    for f in m["files"]:
        top = f["path"].split("/", 1)[0] + "/"
        by_prefix.setdefault(top, [0, 0])
        by_prefix[top][0] += 1
        by_prefix[top][1] += f["size"]
    t = m["totals"]
    show_record(_summary(m), [
        ("backup", m["id"]), ("moment", m["created_at"]), ("from", m["source"]["home"]),
        *((f"database {name}", human_bytes(db["size"])) for name, db in m["databases"].items()),
        *((f"storage {p}", f"{n} file(s), {human_bytes(size)}")
          for p, (n, size) in sorted(by_prefix.items())),
        ("tables", f"{len(m['lake_versions'])} at the versions they had at the moment"),
        ("total", f"{human_bytes(t['bytes'])}; {human_bytes(t['stored_bytes'])} new when made, "
                  f"in {t['seconds']:.1f}s"),
    ], as_json=json)


@backup_app.command("verify")
def verify(backup: str = typer.Argument("latest", help="a backup's id, or latest"),
           to: str = ToOpt, key_file: str | None = KeyOpt, json: bool = JsonOpt) -> None:
    """Read every piece of a backup and check its checksum; name what is missing or corrupt."""
    from cumulo.dr.backup import verify_backup
    from cumulo.dr.repo import open_repository

    started = time.monotonic()
    manifest, problems = verify_backup(open_repository(to, key_file=key_file), backup)
    if json:
        print_json({"id": manifest["id"], "ok": not problems,
                    "problems": [p.__dict__ for p in problems]})
    elif problems:
        for p in problems:
            err.print(f"{p.why}: {p.item} (piece {p.chunk[:12]})")
        err.print(f"backup {manifest['id']}: {len(problems)} piece(s) missing or corrupt",
                  style="red")
    else:
        console.print(f"backup {manifest['id']}: every piece checked "
                      f"({human_bytes(manifest['totals']['bytes'])}, "
                      f"{time.monotonic() - started:.1f}s)")
    if problems:
        raise typer.Exit(1)


@backup_app.command("restore")
def restore(ctx: typer.Context,
            backup: str = typer.Argument("latest", help="a backup's id (or its start), or "
                                         "latest"),
            to: str = ToOpt, key_file: str | None = KeyOpt,
            to_home: str | None = typer.Option(None, "--to-home",
                                               help="the home to write (empty, or --force)"),
            bucket: str | None = typer.Option(None, "--bucket",
                                              help="put back one bucket's objects, through the "
                                              "running server"),
            table: str | None = typer.Option(None, "--table",
                                             help="put back one table (db.table), at --version"),
            model: str | None = typer.Option(None, "--model",
                                             help="put back one model's version (at "
                                             "--version) as a new version"),
            version: int | None = typer.Option(None, "--version",
                                               help="the table's or model's version "
                                               "(default: its last in the backup)"),
            pipeline: str | None = typer.Option(None, "--pipeline",
                                                help="put back one pipeline's definition"),
            into: str | None = typer.Option(None, "--as",
                                            help="the name to restore it as (default: the "
                                            "bucket's own; db.table_restored; "
                                            "NAME-restored)"),
            replace: bool = typer.Option(False, "--replace",
                                         help="a table: overwrite the live one"),
            at: str | None = typer.Option(None, "--at",
                                          help="the platform as it was at this time (UTC), "
                                          "like 2026-12-03T10:15:30Z, from the backups and "
                                          "the points 'backup stream' took"),
            force: bool = typer.Option(False, "--force",
                                       help="replace what a non-empty home holds"),
            database_url: str | None = typer.Option(
                None, "--database-url", help="restore the metadata onto this (empty) "
                "PostgreSQL database instead of the home's SQLite file"),
            storage_url: str | None = typer.Option(
                None, "--storage-url", help="restore the files onto this storage, like "
                "s3://bucket/prefix (credentials from the [s3] settings)"),
            json: bool = JsonOpt) -> None:
    """Restore a backup (or the platform at a time) into a home; then 'cumulo up --home DIR'.
    With --database-url and/or --storage-url, onto PostgreSQL and S3 (a laptop's home moved
    to a server)."""
    from cumulo.dr.backup import restore_manifest
    from cumulo.dr.repo import open_repository
    from cumulo.dr.stream import at_time, reconcile_restored

    repo = open_repository(to, key_file=key_file)
    partial = [flag for flag, given in (("--bucket", bucket), ("--table", table),
                                        ("--model", model), ("--pipeline", pipeline)) if given]
    if partial:
        if len(partial) > 1 or to_home or at or database_url or storage_url:
            raise typer.BadParameter("one of --bucket, --table, --model or --pipeline at a "
                                     "time, put back through the running server (no "
                                     "--to-home, --at or --database-url)",
                                     param_hint=partial[0])
        _restore_part(ctx, repo, backup, bucket=bucket, table=table, model=model,
                      version=version, pipeline=pipeline, into=into, replace=replace,
                      json=json)
        return
    if to_home is None:
        raise typer.BadParameter("say where: --to-home DIR (a whole platform), or --bucket, "
                                 "--table, --model or --pipeline (one thing, into the running "
                                 "server)",
                                 param_hint="--to-home")
    if at is not None:
        if backup != "latest":
            raise typer.BadParameter("give a backup or --at TIME, not both", param_hint="--at")
        manifest = at_time(repo, _parse_time(at))
    else:
        manifest = repo.snapshot(backup)
    started = time.monotonic()
    with err.status("restoring ...") as status:
        if database_url or storage_url:
            from cumulo.dr.onto import restore_onto

            if at is not None:
                raise typer.BadParameter("--at restores into a home; restore that home onto "
                                         "other backends from a backup", param_hint="--at")
            done = restore_onto(repo, manifest, _settings_for(to_home, database_url,
                                                              storage_url), say=status.update)
        else:
            done = restore_manifest(repo, manifest, Path(to_home), force=force)
            if at is not None:
                reconcile_restored(done.home, manifest)
    took = time.monotonic() - started
    if json:
        print_json({"id": manifest["id"], "moment": manifest["created_at"],
                    "home": str(done.home), "files": done.files, "bytes": done.bytes,
                    "seconds": round(took, 3), "problems": [p.__dict__ for p in done.problems]})
    else:
        for p in done.problems:
            err.print(f"not restored: {p.item} (piece {p.chunk[:12]} {p.why})")
        console.print(f"restored the platform as it was at {manifest['created_at']} "
                      f"({manifest['id']}) into {done.home}: {done.files} file(s), "
                      f"{human_bytes(done.bytes)}, {took:.1f}s"
                      + (f"; {len(done.problems)} item(s) could not be restored"
                         if done.problems else ""))
    if done.problems:
        raise typer.Exit(1)


def _restore_part(ctx: typer.Context, repo: Any, backup: str, *, bucket: str | None,
                  table: str | None, model: str | None, version: int | None,
                  pipeline: str | None,
                  into: str | None, replace: bool, json: bool) -> None:
    from cumulo.cli.context import client
    from cumulo.dr import partial

    c = client(ctx)
    with err.status("restoring ...") as status:
        if bucket:
            done = partial.restore_bucket(repo, backup, c, bucket, into=into, say=status.update)
            line = (f"restored {done['restored']} object(s) of bucket {done['from']} into "
                    f"{done['bucket']} ({done['unchanged']} already as they were)")
        elif table:
            done = partial.restore_table(repo, backup, c, table, version=version, into=into,
                                         replace=replace)
            line = f"restored {done['from']} as {done['table']} ({done['rows']} row(s))"
        elif model:
            done = partial.restore_model(repo, backup, c, model, version=version, into=into)
            line = f"restored {done['from']} as version {done['version']} of {done['model']}"
        else:
            assert pipeline is not None
            done = partial.restore_pipeline(repo, backup, c, pipeline, into=into)
            line = f"restored pipeline {done['from']} as {done['pipeline']}"
    if json:
        print_json(done)
    else:
        console.print(f"{line}, from backup {done['backup']}")


def _settings_for(home: str, database_url: str | None, storage_url: str | None) -> Any:
    from cumulo.config import load_settings

    Path(home).mkdir(parents=True, exist_ok=True, mode=0o700)
    return load_settings(overrides={"home": home, "database_url": database_url,
                                    "storage_url": storage_url})


def _parse_time(text: str) -> Any:
    from datetime import UTC, datetime

    try:
        found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a time; give it like 2026-12-03T10:15:30Z",
                                 param_hint="--at") from exc
    return found if found.tzinfo else found.replace(tzinfo=UTC)


@backup_app.command("stream")
def stream(to: str = ToOpt, key_file: str | None = KeyOpt, home: str | None = HomeOpt,
           interval: float = typer.Option(1.0, "--interval",
                                          help="seconds between looks at the databases"),
           files_every: float = typer.Option(5.0, "--files-every",
                                             help="look at storage at least this often "
                                             "(seconds)"),
           full_every: float = typer.Option(3600.0, "--full-every",
                                            help="seconds between base backups")) -> None:
    """Keep the backup folder seconds behind the home (until Ctrl-C): a base backup, then a
    point each time the databases change; restore one with 'backup restore --at TIME'."""
    import signal as signals
    import threading

    from cumulo.dr.repo import open_repository
    from cumulo.dr.stream import stream as follow

    stop = threading.Event()
    for sig in (signals.SIGINT, signals.SIGTERM):
        signals.signal(sig, lambda *_: stop.set())
    repo = open_repository(to, key_file=key_file, create=True)
    err.print(f"streaming {home or '.cumulo'} to {to} (Ctrl-C stops)")
    taken = follow(_settings(home), repo, interval=interval, files_every=files_every,
                   full_every=full_every, stop=stop, say=lambda m: err.print(m, style="dim"))
    err.print(f"stopped after {taken} point(s)")


@backup_app.command("prune")
def prune(to: str = ToOpt, key_file: str | None = KeyOpt, keep_last: int = KeepLast,
          keep_daily: int = KeepDaily, keep_weekly: int = KeepWeekly,
          dry_run: bool = typer.Option(False, "--dryrun", "--dry-run",
                                       help="say what would go, remove nothing"),
          json: bool = JsonOpt) -> None:
    """Forget backups a retention policy does not keep, and free the pieces only they held."""
    from cumulo.dr.backup import prune_backups
    from cumulo.dr.repo import open_repository

    done = prune_backups(open_repository(to, key_file=key_file), keep_last=keep_last,
                         keep_daily=keep_daily, keep_weekly=keep_weekly, dry_run=dry_run)
    if json:
        print_json(done.__dict__)
        return
    verb = "would forget" if dry_run else "forgot"
    for i in done.removed:
        console.print(f"{verb} {i}")
    console.print(f"kept {len(done.kept)} backup(s); {done.chunks_removed} unused piece(s)"
                  + ("" if dry_run else f" removed, {human_bytes(done.bytes_freed)} freed"))


@backup_app.command("drill")
def drill(backup: str = typer.Argument("latest", help="a backup's id, or latest"),
          to: str = ToOpt, key_file: str | None = KeyOpt,
          keep: str | None = typer.Option(None, "--keep",
                                          help="restore into this folder and keep it"),
          json: bool = JsonOpt) -> None:
    """Restore a backup into a scratch home, serve it, check every object, table version and
    model through the API, and print the recovery point and time (RPO, RTO)."""
    from cumulo.dr.drill import run_drill
    from cumulo.dr.repo import open_repository

    with err.status("drill ...") as status:
        done = run_drill(open_repository(to, key_file=key_file), backup,
                         keep=Path(keep) if keep else None, say=status.update)
    if json:
        print_json({**done.__dict__, "ok": done.ok})
    else:
        for problem in done.problems:
            err.print(problem)
        c = done.checked
        console.print(f"drill of backup {done.backup}: {'passed' if done.ok else 'FAILED'}; "
                      f"{c.get('objects', 0)} object(s), {c.get('table_versions', 0)} table "
                      f"version(s), {c.get('model_versions', 0)} model version(s) checked; "
                      f"RPO {done.rpo_seconds:.0f}s (the backup's age), RTO "
                      f"{done.rto_seconds:.1f}s (restore {done.restore_seconds:.1f}s, then "
                      "serving)")
    if not done.ok:
        raise typer.Exit(1)


# --- schedules: backups the server runs -------------------------------------------------------


def _server_target(to: str) -> str:
    """A folder given here names the same folder on the server: an absolute path (the server
    runs the backups; s3:// targets are given as they are)."""
    return to if to.startswith("s3://") else str(Path(to).expanduser().resolve())


def _run_cells() -> dict[str, Any]:
    from cumulo.cli.output import when

    return {
        "id": "id", "kind": "kind", "schedule": "schedule", "state": "state",
        "started": lambda r: when(r["started_at"]), "backup": "backup_id",
        "size": lambda r: human_bytes(r["bytes"]) if r["bytes"] is not None else None,
        "new": lambda r: human_bytes(r["stored_bytes"]) if r["stored_bytes"] is not None
        else None,
        "rpo/rto": lambda r: (f"{r['rpo_seconds']:.0f}s/{r['rto_seconds']:.1f}s"
                              if r["rto_seconds"] is not None else None),
        "error": "error",
    }


@backup_app.command("schedule")
def schedule(ctx: typer.Context,
             cron: str = typer.Option(..., "--cron", help="when, in UTC: five fields, like "
                                      "'0 2 * * *' (02:00 every day)"),
             to: str = typer.Option(..., "--to", help="the backup folder on the server's "
                                    "machine, or s3://bucket/prefix"),
             name: str = typer.Option("nightly", "--name", help="the schedule's name"),
             key_file: str | None = typer.Option(None, "--key-file",
                                                 help="encrypt with this key file (a path "
                                                 "on the server's machine)"),
             keep_last: int = KeepLast, keep_daily: int = KeepDaily,
             keep_weekly: int = KeepWeekly,
             drill: bool = typer.Option(False, "--drill",
                                        help="drill each new backup: restore it into a scratch "
                                        "home, serve it and check it"),
             missed: str = typer.Option("latest", "--missed",
                                        help="cron times missed while the server was down: "
                                        "skip, latest (one backup) or all"),
             json: bool = JsonOpt) -> None:
    """Have the server back itself up on a schedule (and prune, and drill); failures show in
    'cumulo status' and the console's Backups page."""
    from cumulo.cli.context import client

    found = client(ctx).backups.schedule(
        name, target=_server_target(to), cron=cron,
        key_file=str(Path(key_file).expanduser().resolve()) if key_file else None,
        keep_last=keep_last, keep_daily=keep_daily, keep_weekly=keep_weekly, drill=drill,
        missed=missed)
    if json:
        print_json(found)
        return
    where = f" on {found['host']}" if found.get("host") else ""
    console.print(f"schedule {found['name']}: back up to {found['target']}{where} at "
                  f"'{found['cron']}' (UTC); next at {found['next_at']}"
                  + ("; each backup drilled" if found["drill"] else ""))


@backup_app.command("schedules")
def schedules(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """The server's backup schedules, with their latest backup and drill."""
    from cumulo.cli.context import client
    from cumulo.cli.output import when

    def last(run: dict[str, Any] | None) -> str | None:
        if run is None:
            return None
        return f"{run['state']} {when(run['finished_at'] or run['started_at'])}"

    show_rows(client(ctx).backups.schedules(), {
        "name": "name", "cron": "cron",
        # a folder is its machine's: the schedule runs only there
        "target": lambda r: f"{r['target']} on {r['host']}" if r.get("host") else r["target"],
        "next": lambda r: when(r["next_at"]),
        "last backup": lambda r: last(r["last_backup"]),
        "last drill": lambda r: last(r["last_drill"]),
        "status": lambda r: "FAILING" if r["failing"] else "ok",
    }, as_json=json)


@backup_app.command("unschedule")
def unschedule(ctx: typer.Context, name: str = typer.Argument(..., help="the schedule"),
               json: bool = JsonOpt) -> None:
    """Stop a backup schedule; the backups it made stay in its target."""
    from cumulo.cli.context import client

    client(ctx).backups.unschedule(name)
    if json:
        print_json({"name": name, "removed": True})
    else:
        console.print(f"schedule {name} removed; its backups stay where they are")


@backup_app.command("run")
def run_now(ctx: typer.Context, name: str = typer.Argument(..., help="the schedule"),
            drill: bool = typer.Option(False, "--drill", help="then drill the new backup"),
            wait: bool = typer.Option(True, "--wait/--no-wait",
                                      help="wait for it (and the drill) to finish"),
            json: bool = JsonOpt) -> None:
    """Have the server back up now, with a schedule's target and rules."""
    from cumulo.cli.context import client

    with err.status(f"backing up ({name}) ..."):
        found = client(ctx).backups.run(name, drill=drill, wait=wait)
    if json:
        print_json(found)
        return
    if not wait:
        console.print(f"backup run {found['id']} of {name} started; 'cumulo backup runs' "
                      "follows it")
        return
    console.print(f"backup {found['backup_id']} of {name}: {human_bytes(found['bytes'] or 0)}, "
                  f"{human_bytes(found['stored_bytes'] or 0)} new")
    if found.get("drill"):
        d = found["drill"]
        console.print(f"drill: passed; {d['checked']}; RPO {d['rpo_seconds']:.0f}s, "
                      f"RTO {d['rto_seconds']:.1f}s")


@backup_app.command("runs")
def runs(ctx: typer.Context,
         name: str | None = typer.Option(None, "--schedule", help="only this schedule's"),
         limit: int = typer.Option(20, "--limit", help="at most this many, newest first"),
         json: bool = JsonOpt) -> None:
    """The backups and drills the server ran: state, sizes, RPO/RTO, errors."""
    from cumulo.cli.context import client

    show_rows(client(ctx).backups.runs(schedule=name, limit=limit), _run_cells(), as_json=json,
              right=("size", "new"))


standby_app = typer.Typer(help="Warm standby: a second home kept current from a backup "
                          "folder, promoted to serve when the first is lost.",
                          no_args_is_help=True)
FromOpt = typer.Option(..., "--from", help="the backup folder 'cumulo backup stream' keeps")
StandbyHome = typer.Option(..., "--home", help="the standby's home (made on first use)")


@standby_app.command("start")
def standby_start(source: str = FromOpt, home: str = StandbyHome, key_file: str | None = KeyOpt,
                  interval: float = typer.Option(2.0, "--interval",
                                                 help="seconds between looks at the folder")
                  ) -> None:
    """Keep a home current from a backup folder (until Ctrl-C or 'standby promote')."""
    import signal as signals
    import threading

    from cumulo.dr.repo import open_repository
    from cumulo.dr.standby import follow

    stop = threading.Event()
    for sig in (signals.SIGINT, signals.SIGTERM):
        signals.signal(sig, lambda *_: stop.set())
    err.print(f"keeping {home} current from {source} (Ctrl-C stops; 'cumulo standby promote "
              f"--home {home} --from {source}' makes it ready to serve)")
    last = follow(open_repository(source, key_file=key_file), Path(home), interval=interval,
                  stop=stop, say=lambda m: err.print(m, style="dim"))
    err.print(f"stopped; {home} holds the platform as it was at {last.get('moment', '-')}")


@standby_app.command("promote")
def standby_promote(home: str = StandbyHome, source: str = FromOpt,
                    key_file: str | None = KeyOpt, json: bool = JsonOpt) -> None:
    """Stop following, apply the newest moment once more, and leave the home ready for
    'cumulo up --home DIR'."""
    from cumulo.dr.repo import open_repository
    from cumulo.dr.standby import promote

    record = promote(open_repository(source, key_file=key_file), Path(home))
    if json:
        print_json(record)
        return
    console.print(f"{home} holds the platform as it was at {record.get('moment', '-')}; start "
                  f"it with: cumulo up --home {home}")


@standby_app.command("status")
def standby_status(home: str = StandbyHome, json: bool = JsonOpt) -> None:
    """What a standby home applied last, and how far behind its source it is."""
    from cumulo.dr.standby import status

    s = status(Path(home))
    if json:
        print_json(s)
        return
    if not s["standby"]:
        console.print(f"{home} is not a standby home")
        return
    show_record(s, [("following", s["following"]), ("now", "following" if s["following_now"]
                                                     else "not followed (promoted or stopped)"),
                    ("applied", f"{s['moment']} ({s['applied']})"),
                    ("lag", f"{s['lag_seconds']:.1f}s behind that moment")], as_json=False)
