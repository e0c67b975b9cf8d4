"""``cumulo tables``, ``cumulo sql`` and ``cumulo queries``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import typer
from rich.markup import escape

from cumulo.cli.context import client
from cumulo.cli.output import (
    JsonOpt,
    ProjectOpt,
    console,
    err,
    human_bytes,
    print_json,
    progress_bar,
    show_record,
    show_result,
    show_rows,
    when,
)
from cumulo.cli.paths import is_local
from cumulo.errors import Forbidden, Invalid
from cumulo.lake.sdk import FORMATS, Format, no_results
from cumulo.units import parse_duration

__all__ = ["crawl_command", "queries_app", "sql_command", "tables_app"]

tables_app = typer.Typer(help="The data lake: databases, tables, loads and versions.",
                         no_args_is_help=True)
queries_app = typer.Typer(help="SQL query history: ls, show, cancel.", no_args_is_help=True)


@tables_app.command("create-db")
def create_db(ctx: typer.Context, name: str,
              description: str = typer.Option("", help="What the database holds."),
              project: str | None = ProjectOpt, json: bool = JsonOpt) -> None:
    """Create a database (a namespace of tables); in a project, its tables are the project's."""
    db = client(ctx).tables.create_database(name, description=description, project=project)
    show_result(db, f"created database {name}" + (f" in project {project}" if project else ""),
                as_json=json)


@tables_app.command("drop-db")
def drop_db(ctx: typer.Context, name: str,
            cascade: bool = typer.Option(False, "--cascade", help="Drop its tables too."),
            json: bool = JsonOpt) -> None:
    """Drop a database (with --cascade, and its tables)."""
    out = client(ctx).tables.drop_database(name, cascade=cascade)
    show_result(out, f"dropped database {name} and {out['tables_dropped']} table(s)",
                as_json=json)


@tables_app.command("ls")
def list_(ctx: typer.Context, database: str = typer.Argument("", help="a database"),
          project: str | None = ProjectOpt, json: bool = JsonOpt) -> None:
    """List databases, or the tables of one (a project's with --project)."""
    tables = client(ctx).tables
    if not database:
        show_rows(tables.databases(project=project), {
            "database": "name", "project": "project", "tables": "tables",
            "description": "description", "created": lambda d: when(d["created_at"]),
        }, as_json=json)
        return
    show_rows(tables.list(database, project=project), {
        "table": "name", "project": "project", "kind": "kind", "format": "format",
        "updated": lambda t: when(t["updated_at"] or t["created_at"]),
        "description": "description",
    }, as_json=json)


@tables_app.command("show")
def show(ctx: typer.Context, table: str = typer.Argument(..., help="db.table[@vN|@TIME]"),
         json: bool = JsonOpt) -> None:
    """Schema, partitions, description, tags, version, rows, size and location."""
    info = client(ctx).tables.show(table)
    if json:
        print_json(info)
        return
    console.print(f"[bold]{escape(info['name'])}[/] ({info['kind']}, {info['format']})")
    show_record(info, [
        ("project", info.get("project")), ("version", info["version"]), ("rows", info["rows"]),
        ("size", human_bytes(info["bytes"]) if info["bytes"] is not None else "-"),
        ("files", info["files"]), ("location", info["location"]), ("uri", info.get("uri")),
        ("partitioned by", ", ".join(info["partition_columns"]) or "-"),
        ("description", info["description"] or "-"),
        ("tags", ", ".join(f"{k}={v}" for k, v in info["tags"].items()) or "-"),
    ], as_json=False)
    show_rows(info["columns"], {
        "column": "name", "type": "type", "nullable": lambda c: c.get("nullable", True),
    }, as_json=False)


@tables_app.command("set")
def set_(ctx: typer.Context, table: str,
         description: str | None = typer.Option(None, "--description"),
         tag: list[str] | None = typer.Option(None, "--tag", help="KEY=VALUE; repeat for more"),
         json: bool = JsonOpt) -> None:
    """Set a table's description and tags (tags replace the old set)."""
    tags = None
    if tag:
        pairs = [t.split("=", 1) for t in tag]
        if any(len(p) != 2 or not p[0] for p in pairs):
            raise Invalid("tags are KEY=VALUE, e.g. --tag owner=data-team")
        tags = {k: v for k, v in pairs}
    info = client(ctx).tables.update(table, description=description, tags=tags)
    show_result(info, f"updated {info['name']}", as_json=json)


@tables_app.command("rm")
def remove(ctx: typer.Context, table: str) -> None:
    """Drop a table; a managed table's data goes with it."""
    client(ctx).tables.drop(table)
    console.print(f"dropped {table}")


@contextmanager
def _quiet() -> Iterator[None]:
    yield


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@tables_app.command("load")
def load(
    ctx: typer.Context,
    table: str = typer.Argument(..., help="db.table (created on first load)"),
    source: str = typer.Argument(..., help="a local file, BUCKET/KEY or BUCKET/PREFIX/ in "
                                 "Cumulo storage, or an http(s) URL"),
    format: str | None = typer.Option(None, "--format", help="csv, parquet, json or jsonl"),
    mode: str = typer.Option("append", "--mode", help="append, overwrite or merge"),
    keys: list[str] | None = typer.Option(None, "--keys", help="merge keys, e.g. id"),
    partition_by: list[str] | None = typer.Option(None, "--partition-by"),
    evolve: bool = typer.Option(False, "--evolve", help="Add new columns to the schema."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json: bool = JsonOpt,
) -> None:
    """Load a file into a managed table: append, overwrite, or merge (upsert) by keys."""
    if mode not in ("append", "overwrite", "merge"):
        raise Invalid(f"--mode must be append, overwrite or merge, not {mode!r}")
    tables = client(ctx).tables
    options: dict[str, Any] = {"format": format, "mode": mode, "keys": _split(keys),
                               "partition_by": _split(partition_by), "evolve": evolve}
    if source.startswith(("http://", "https://")) or not is_local(source):
        label = source
        with err.status(f"loading {source} ...") if not (quiet or json) else _quiet():
            out = tables.load_from(table, source, **options)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise Invalid(f"{source} is not a file here")
        label = path.name
        with progress_bar(f"load {path.name}", path.stat().st_size,
                          quiet=quiet or json) as advance:
            out = tables.load(table, path, progress=advance, **options)
    if json:
        print_json(out)
        return
    parts = [f"{k.removeprefix('rows_')} {v}" for k, v in out.items()
             if k.startswith("rows_") and v is not None]
    console.print(f"loaded {label} into {out['table']}: version {out['version']}"
                  + (f" ({', '.join(parts)} rows)" if parts else ""))


@tables_app.command("history")
def history(ctx: typer.Context, table: str, limit: int | None = typer.Option(None, "--limit"),
            json: bool = JsonOpt) -> None:
    """Versions: time, operation, rows added and removed, user."""
    show_rows(client(ctx).tables.history(table, limit=limit), {
        "version": "version", "time": lambda e: when(e["timestamp"]), "operation": "operation",
        "added": "rows_added", "updated": "rows_updated", "removed": "rows_removed",
        "user": "user",
    }, as_json=json)


_AS_OF_HELP = ("the version current then: a time like 2026-11-26T10:00:00Z, a date, or a span "
               "back from now like 2h or 1h30m")


@tables_app.command("restore")
def restore(ctx: typer.Context, table: str,
            version: int | None = typer.Option(None, "--version"),
            as_of: str | None = typer.Option(None, "--as-of", help=_AS_OF_HELP),
            json: bool = JsonOpt) -> None:
    """Make a new version equal to an old one (nothing is lost: history keeps both)."""
    out = client(ctx).tables.restore(table, version=version, as_of=as_of)
    show_result(out, f"restored {table} to {version if version is not None else as_of}: now "
                     f"version {out['version']}", as_json=json)


@tables_app.command("diff")
def diff(ctx: typer.Context, table: str,
         start: int = typer.Option(..., "--from", help="the older version"),
         end: int | None = typer.Option(None, "--to", help="the newer version (default: latest)"),
         keys: list[str] | None = typer.Option(None, "--keys", help="key columns, e.g. id"),
         json: bool = JsonOpt) -> None:
    """Schema changes, rows added and removed, and rows changed by key, between versions."""
    out = client(ctx).tables.diff(table, start=start, end=end, keys=_split(keys))
    if json:
        print_json(out)
        return
    s = out["schema"]
    console.print(f"{out['table']}: version {out['from']} -> {out['to']}")
    for label, items in (("columns added", s["added"]), ("columns removed", s["removed"]),
                         ("types changed", [f"{c['column']} {c['from']} -> {c['to']}"
                                            for c in s["changed"]])):
        if items:
            console.print(f"  {label}: {', '.join(items)}")
    for label in ("added", "removed", "changed"):
        count = out[f"rows_{label}"]
        if count is None:
            continue
        console.print(f"  rows {label}: {count}")
        for row in out[f"sample_{label}"][:5]:
            console.print(f"    {row}")


@tables_app.command("vacuum")
def vacuum(ctx: typer.Context, table: str,
           retain: str = typer.Option("168h", "--retain",
                                      help="keep what versions younger than this need, like "
                                      "168h, 30d or 2w"),
           dry_run: bool = typer.Option(False, "--dry-run", help="List, remove nothing."),
           force: bool = typer.Option(False, "--force", help="Go under the minimum retention."),
           json: bool = JsonOpt) -> None:
    """Remove data files that only versions older than --retain need."""
    out = client(ctx).tables.vacuum(table, retain=retain, dry_run=dry_run, force=force)
    if json:
        print_json(out)
        return
    verb = "would remove" if dry_run else "removed"
    console.print(f"{verb} {out['files']} file(s); versions from "
                  f"{out['oldest_readable_version']} on stay readable")


@tables_app.command("head")
def head(ctx: typer.Context, table: str = typer.Argument(..., help="db.table[@vN|@TIME]"),
         n: int = typer.Option(10, "-n", help="Rows to show."), json: bool = JsonOpt) -> None:
    """The first rows of a table (at a version or time)."""
    data = client(ctx).tables.read(table, limit=n)
    _print_rows(data.column_names, data.to_pylist(), as_json=json)


# A download's format by its file's name, when --format does not say.
_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
             ".ndjson": "jsonl", ".arrow": "arrow", ".arrows": "arrow"}


def _format_for(output: Path | None, given: str | None) -> Format:
    """--format, else the output file's suffix, else CSV."""
    if given is not None:
        if given not in FORMATS:
            raise Invalid(f"--format must be one of {', '.join(FORMATS)}, not {given!r}")
        return cast(Format, given)
    if output is not None:
        return cast(Format, _SUFFIXES.get(output.suffix.lower(), "csv"))
    return "csv"


@tables_app.command("read")
def read(ctx: typer.Context, table: str = typer.Argument(..., help="db.table[@vN|@TIME]"),
         format: str | None = typer.Option(None, "--format", "-f",
                                           help="csv (the default), parquet, jsonl or arrow; "
                                           "with -o, by the file's name"),
         output: Path | None = typer.Option(None, "--output", "-o",
                                            help="Save to this file instead of standard "
                                            "output."),
         version: int | None = typer.Option(None, "--version", min=0),
         as_of: str | None = typer.Option(None, "--as-of", help=_AS_OF_HELP),
         limit: int | None = typer.Option(None, "--limit", min=0, help="At most N rows.")
         ) -> None:
    """Write a table (at a version or time) as CSV, Parquet or JSON Lines, streamed.

    To standard output, or to a file with -o. Your column masks and row filters apply.
    """
    fmt = _format_for(output, format)
    tables = client(ctx).tables
    if output is not None:
        out = tables.download(table, output, format=fmt, version=version, as_of=as_of, limit=limit)
        err.print(f"saved {out['table']} version {out['version']} to {output} "
                  f"({fmt}, {human_bytes(out['bytes'])})")
        return
    if fmt in ("parquet", "arrow") and sys.stdout.isatty():
        raise Invalid(f"{fmt} is binary: save it with -o FILE, or pipe it to a program that "
                      "reads it")
    try:
        tables.download(table, sys.stdout.buffer, format=fmt, version=version, as_of=as_of,
                        limit=limit)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): it had all it wanted. Nothing more goes to the pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# --- who sees what: column masks and row filters (grants: cumulo sql "GRANT ...") -------------

_USER = typer.Option(None, "--user", help="the user it holds for")
_GROUP = typer.Option(None, "--group", help="the group it holds for (its members)")


def _who(out: dict[str, Any]) -> str:
    return str(out.get("subject") or "").replace(":", " ", 1)


@tables_app.command("mask")
def mask(ctx: typer.Context, table: str = typer.Argument(..., help="db.table"),
         column: str = typer.Argument(..., help="the column to mask"),
         expression: str = typer.Option(..., "--with", help="what they see instead: an SQL "
                                        "expression over the row, like '***', NULL or "
                                        "left(email, 2) || '***'"),
         user: str | None = _USER, group: str | None = _GROUP, json: bool = JsonOpt) -> None:
    """Make a user or a group see an expression instead of a column's values."""
    out = client(ctx).tables.mask(table, column, expression, user=user, group=group)
    show_result(out, f"masked {out['table']}.{out['column']} for {_who(out)}: "
                     f"{escape(out['expression'])}", as_json=json)


@tables_app.command("unmask")
def unmask(ctx: typer.Context, table: str = typer.Argument(..., help="db.table"),
           column: str = typer.Argument(...), user: str | None = _USER,
           group: str | None = _GROUP, json: bool = JsonOpt) -> None:
    """Take a user's or group's mask on a column away."""
    out = client(ctx).tables.unmask(table, column, user=user, group=group)
    show_result(out, f"unmasked {out['table']}.{out['column']} for "
                     f"{out['unmasked'].replace(':', ' ', 1)}", as_json=json)


@tables_app.command("filter")
def filter_(ctx: typer.Context, table: str = typer.Argument(..., help="db.table"),
            predicate: str = typer.Option(..., "--where", help="the rows they see: an SQL "
                                          "condition over the row, like region = 'EU'"),
            user: str | None = _USER, group: str | None = _GROUP,
            json: bool = JsonOpt) -> None:
    """Make a user or a group see only the rows where a condition holds."""
    out = client(ctx).tables.filter(table, predicate, user=user, group=group)
    show_result(out, f"filtered {out['table']} for {_who(out)}: rows where "
                     f"{escape(out['predicate'])}", as_json=json)


@tables_app.command("unfilter")
def unfilter(ctx: typer.Context, table: str = typer.Argument(..., help="db.table"),
             user: str | None = _USER, group: str | None = _GROUP,
             json: bool = JsonOpt) -> None:
    """Take a user's or group's row filter away."""
    out = client(ctx).tables.unfilter(table, user=user, group=group)
    show_result(out, f"unfiltered {out['table']} for "
                     f"{out['unfiltered'].replace(':', ' ', 1)}", as_json=json)


@tables_app.command("policies")
def policies(ctx: typer.Context, table: str = typer.Argument(..., help="db.table"),
             json: bool = JsonOpt) -> None:
    """A table's column masks and row filters, and whom each holds for."""
    found = client(ctx).tables.policies(table)
    if json:
        print_json(found)
        return
    if not found["masks"] and not found["filters"]:
        console.print(f"{table} has no column masks and no row filters: everyone who may read "
                      "it sees all of it")
        return
    show_rows(found["masks"], {
        "column": "column", "mask": lambda m: escape(m["expression"]), "for": "subject",
        "set by": "created_by", "set": lambda m: when(m["created_at"]),
    }, as_json=False)
    show_rows(found["filters"], {
        "row filter": lambda f: escape(f["predicate"]), "for": "subject",
        "set by": "created_by", "set": lambda f: when(f["created_at"]),
    }, as_json=False)


def _print_rows(names: list[str], rows: list[dict[str, Any]], *, as_json: bool) -> None:
    def value(name: str) -> Any:
        return lambda row: "NULL" if row[name] is None else escape(str(row[name]))

    show_rows(rows, {name: value(name) for name in names}, as_json=as_json)


def crawl_command(
    ctx: typer.Context,
    path: str = typer.Argument(..., help="BUCKET/PREFIX, e.g. data/raw/"),
    database: str = typer.Option(..., "--db", help="the database to register tables in"),
    policy: str = typer.Option("log", "--policy",
                               help="on a schema change: log it, or update the catalog"),
    project: str | None = ProjectOpt,
    json: bool = JsonOpt,
) -> None:
    """Scan files in storage and register them as external tables (like a Glue crawler)."""
    report = client(ctx).tables.crawl(path, database=database, policy=policy,  # type: ignore[arg-type]
                                      project=project)
    if json:
        print_json(report)
        return
    console.print(f"crawled {report['files']} file(s) under {report['path']} into "
                  f"{report['database']}")
    for label in ("created", "updated", "unchanged"):
        if report[label]:
            console.print(f"  {label}: {', '.join(report[label])}")
    for change in report["schema_changes"]:
        verb = "applied" if change["applied"] else "logged (use --policy update to apply)"
        parts = [f"+{c}" for c in change["added"]] + [f"-{c}" for c in change["removed"]] + [
            f"{c['column']} {c['from']}->{c['to']}" for c in change["changed"]]
        console.print(f"  schema change in {change['table']}: {', '.join(parts)}: {verb}")
    for skip in report["skipped"]:
        console.print(f"  skipped {skip['key']}: {skip['reason']}")


def sql_command(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="SQL; '-' reads it from standard input"),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Save all rows to a .csv, .parquet, .jsonl or "
                                       ".arrow file."),
    rows: int = typer.Option(100, "--rows", help="Rows to print (a page; the rest is paged)."),
    timeout: str = typer.Option("5m", "--timeout",
                                help="How long before the query stops, like 90s, 5m or 1h."),
    scan_limit: int | None = typer.Option(None, "--scan-limit", help="Refuse above N bytes."),
    project: str | None = ProjectOpt,
    json: bool = JsonOpt,
) -> None:
    """Run SQL over the lake: SELECT, CREATE TABLE db.t AS SELECT, INSERT INTO db.t SELECT.

    Tables are named db.table; time travel: db.table VERSION AS OF 3, or
    db.table TIMESTAMP AS OF '2026-11-26T10:00:00Z'. Who sees what: GRANT SELECT ON
    db.t TO GROUP g, REVOKE, SHOW GRANTS ON db.t, and ALTER TABLE db.t ALTER COLUMN c
    SET MASK '***' FOR GROUP g, ALTER TABLE db.t SET ROW FILTER region = 'EU' FOR GROUP g.
    """
    if query == "-":
        query = sys.stdin.read()
    timeout_s = parse_duration(timeout, what="--timeout")
    result = client(ctx).sql(query, timeout_s=timeout_s, scan_limit_bytes=scan_limit,
                             page_size=0 if output else max(rows, 0), project=project)
    if output:
        result.download(output, format=cast(Format, _SUFFIXES.get(output.suffix.lower(),
                                                                 "parquet")))
    if json:
        print_json({"id": result.id, "columns": result.columns, "rows": result.rows,
                    "page": result.page, "bytes_scanned": result.bytes_scanned,
                    "cost_usd": result.cost_usd, "written": result.written})
        return
    if result.written:
        w = result.written
        console.print(f"wrote {w['rows_added']} row(s) to {w['table']}: version {w['version']}")
    elif not output:
        _print_rows([c["name"] for c in result.columns], result.page, as_json=False)
    shown = len(result.page) if not output else 0
    more = f"; {result.rows - shown} more not shown (use --output FILE)" \
        if result.rows > shown and not output and not result.written else ""
    saved = f"; saved to {output}" if output else ""
    err.print(f"{result.rows} row(s) in {result.duration_ms or 0:.0f} ms, "
              f"{human_bytes(result.bytes_scanned or 0)} scanned "
              f"(${result.cost_usd or 0:.6f} at Athena's price){more}{saved}; query {result.id}")


@queries_app.command("ls")
def queries_ls(ctx: typer.Context, limit: int = typer.Option(20, "--limit"),
               state: str | None = typer.Option(None, "--state"),
               project: str | None = ProjectOpt, json: bool = JsonOpt) -> None:
    """Recent queries with user, duration, rows, bytes scanned and cost."""
    show_rows(client(ctx).sql.history(limit=limit, state=state, project=project), {
        "id": "id", "when": lambda q: when(q["created_at"]), "user": "created_by",
        "state": "state", "ms": lambda q: f"{q['duration_ms'] or 0:.0f}",
        "rows": lambda q: q["rows"] or 0,
        "scanned": lambda q: human_bytes(q["bytes_scanned"] or 0),
        "cost $": lambda q: f"{q['cost_usd'] or 0:.6f}",
        "sql": lambda q: escape(" ".join(q["sql"].split())[:60]),
    }, as_json=json, right=("ms", "rows", "scanned", "cost $"))


@queries_app.command("show")
def queries_show(ctx: typer.Context, query_id: str,
                 limit: int = typer.Option(20, "--limit", min=0,
                                           help="Rows of its result to show."),
                 output: Path | None = typer.Option(None, "--output", "-o",
                                                    help="Save its whole result to a .csv, "
                                                    ".parquet, .jsonl or .arrow file."),
                 project: str | None = ProjectOpt, json: bool = JsonOpt) -> None:
    """A query: its SQL, user, state, times, rows, bytes scanned, cost and first rows.

    Results are kept a day, for their author only; -o saves all of them.
    """
    sql = client(ctx).sql
    q = sql.get(query_id, project=project)
    result, note = None, None
    if output is not None:
        result = sql.result(query_id, page_size=0, project=project)
        result.download(output, format=_format_for(output, None))
    elif limit and q["results"]:
        try:
            result = sql.result(query_id, page_size=limit, project=project)
        except Forbidden as exc:  # someone else's: the history is theirs to see, not the rows
            note = exc.message
    elif not q["results"] and q["state"] != "failed":  # a failure shows its error above
        note = f"no results: {no_results(q)}"
    if json:
        print_json({**q, "columns": result.columns if result else [],
                    "page": result.page if result and output is None else [],
                    "saved": str(output) if output else None})
        return
    show_record(q, [
        ("query", q["id"]), ("state", q["state"]), ("error", q["error"]),
        ("user", q["created_by"] or "-"), ("started", when(q["created_at"])),
        ("finished", when(q["finished_at"])),
        ("duration", f"{q['duration_ms'] or 0:.0f} ms"), ("rows", q["rows"] or 0),
        ("scanned", human_bytes(q["bytes_scanned"] or 0)),
        ("cost", f"${q['cost_usd'] or 0:.6f} at Athena's price"),
    ], as_json=False)
    console.print(escape(q["sql"].strip()), soft_wrap=True)
    if output is not None:
        err.print(f"saved {q['rows'] or 0} row(s) to {output}")
    elif result is not None:
        _print_rows([c["name"] for c in result.columns], result.page, as_json=False)
        more = (q["rows"] or 0) - len(result.page)
        if more > 0:
            err.print(f"{more} more row(s) not shown (use --limit N, or --output FILE)")
    if note:
        err.print(note)


@queries_app.command("cancel")
def queries_cancel(ctx: typer.Context, query_id: str, project: str | None = ProjectOpt,
                   json: bool = JsonOpt) -> None:
    """Cancel a running query."""
    out = client(ctx).sql.cancel(query_id, project=project)
    show_result(out, f"cancelled {query_id}" if out["cancelled"]
                else f"{query_id} is not running ({out['state']})", as_json=json)
