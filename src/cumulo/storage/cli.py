"""``cumulo files``: buckets and objects from the terminal.

A Cumulo path is ``BUCKET/KEY`` (``cumulo://BUCKET/KEY`` also works). A local path starts with
``/``, ``./``, ``../`` or ``~``, is ``-`` (standard input or output), or names a file or folder
that exists here.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperCommand

from cumulo.cli.context import client
from cumulo.cli.output import (
    JsonOpt,
    ProjectOpt,
    console,
    human_bytes,
    print_json,
    progress_bar,
    show_record,
    show_result,
    show_rows,
    when,
)
from cumulo.cli.paths import is_local
from cumulo.errors import Invalid
from cumulo.storage.keys import split_path
from cumulo.storage.sync import Action, Rule, SyncPlan, apply, plan

__all__ = ["app"]

app = typer.Typer(help="Object storage: buckets and files (like S3).", no_args_is_help=True)
RecursiveOpt = typer.Option(False, "--recursive", "-r", help="Apply to everything under it.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bar.")


@app.command("mb")
def make_bucket(ctx: typer.Context, name: str, project: str | None = ProjectOpt,
                json: bool = JsonOpt) -> None:
    """Make a bucket (in a project with --project)."""
    bucket = client(ctx).files.create_bucket(name, project=project)
    show_result(bucket, f"made bucket {name}" + (f" in project {project}" if project else ""),
                as_json=json)


@app.command("rb")
def remove_bucket(ctx: typer.Context, name: str, recursive: bool = RecursiveOpt,
                  json: bool = JsonOpt) -> None:
    """Remove a bucket (with --recursive, and everything in it)."""
    deleted = client(ctx).files.delete_bucket(name, recursive=recursive)
    show_result({"bucket": name, "deleted": deleted},
                f"removed bucket {name}" + (f" and {deleted} object(s)" if deleted else ""),
                as_json=json)


@app.command("ls")
def list_(ctx: typer.Context, path: str = typer.Argument("", help="BUCKET or BUCKET/PREFIX"),
          recursive: bool = RecursiveOpt, project: str | None = ProjectOpt,
          json: bool = JsonOpt) -> None:
    """List buckets (a project's with --project), or the objects and folders under
    BUCKET/PREFIX."""
    files = client(ctx).files
    if not path:
        show_rows(files.buckets(project=project), {
            "bucket": "name", "project": "project", "objects": "objects",
            "size": lambda b: human_bytes(b["bytes"]),
            "created": lambda b: when(b["created_at"]), "by": "created_by",
        }, as_json=json)
        return
    if json:
        listing = files.list(path, recursive=recursive)
        print_json({"bucket": listing.bucket, "prefix": listing.prefix,
                    "prefixes": listing.prefixes, "objects": listing.objects})
        return
    # Page by page, so a listing of millions of keys starts printing at once.
    for page in files.pages(path, recursive=recursive):
        for prefix in page.prefixes:
            console.print(f"{'':19}  {'PRE':>10}  {prefix}")
        for obj in page.objects:
            console.print(f"{when(obj.modified_at)}  {human_bytes(obj.size):>10}  {obj.key}")


@app.command("info")
def info(ctx: typer.Context, path: str, json: bool = JsonOpt) -> None:
    """Show an object's size, SHA-256, content type and times."""
    obj = client(ctx).files.head(path)
    show_record(obj, [
        ("path", obj.path), ("size", f"{obj.size} ({human_bytes(obj.size)})"),
        ("sha256", obj.sha256), ("content type", obj.content_type),
        ("modified", when(obj.modified_at)), ("modified by", obj.modified_by or "-"),
        ("created", when(obj.created_at)), ("created by", obj.created_by or "-"),
    ], as_json=json)


@app.command("presign")
def presign(
    ctx: typer.Context,
    path: str = typer.Argument(..., help="BUCKET/KEY"),
    expires: str = typer.Option("1h", "--expires", help="how long it works: 30m, 1h, 7d"),
    put: bool = typer.Option(False, "--put", help="a URL to upload the object with (curl -T)"),
) -> None:
    """Print a presigned S3 URL: anyone holding it may download (or, with --put, upload)
    the object until it expires, with your rights."""
    console.print(client(ctx).files.presign(path, expires_in=expires,
                                            method="PUT" if put else "GET"), soft_wrap=True)


@app.command("cat")
def cat(ctx: typer.Context, path: str) -> None:
    """Write an object to standard output."""
    client(ctx).files.download(path, sys.stdout.buffer)
    sys.stdout.buffer.flush()


@app.command("cp")
def copy(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="a local path, or BUCKET/KEY"),
    dest: str = typer.Argument(..., help="BUCKET/KEY (ending in / for a folder), or a local path"),
    recursive: bool = RecursiveOpt,
    content_type: str | None = typer.Option(None, help="Content type of an upload."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json: bool = JsonOpt,
) -> None:
    """Upload (local to Cumulo) or download (Cumulo to local), with a progress bar."""
    files = client(ctx).files
    done = []
    if not is_local(source) and "/" not in source.removeprefix("cumulo://"):
        raise Invalid(f"{source} does not exist here; a Cumulo path is BUCKET/KEY, e.g. "
                      f"data/{source}")
    if not is_local(source) and not is_local(dest) and (
            "/" in dest or dest.startswith("cumulo://")):
        raise Invalid(f"both {source!r} and {dest!r} are Cumulo paths; copying inside Cumulo "
                      f"is not supported yet. To download, name a local destination such as "
                      f"./{dest.removeprefix('cumulo://').rsplit('/', 1)[-1] or 'out'}")
    if is_local(source):
        if is_local(dest):
            raise Invalid(f"both {source!r} and {dest!r} are local paths; one side must be a "
                          f"Cumulo path BUCKET/KEY (write cumulo://{dest.lstrip('./')} if a "
                          "local folder has the bucket's name)")
        for local, remote in _upload_plan(source, dest, recursive):
            size = local.stat().st_size if str(local) != "-" else None
            with progress_bar(f"upload {local.name}", size, quiet=quiet or json) as advance:
                stream = sys.stdin.buffer if str(local) == "-" else local
                done.append(files.upload(stream, remote, content_type=content_type,
                                         progress=advance))
            if not json:
                console.print(f"upload: {local} to {remote}")
    else:
        for remote, local_out in _download_plan(files, source, dest, recursive):
            info = files.head(remote)
            if str(local_out) == "-":
                files.download(remote, sys.stdout.buffer)
                continue
            local_out.parent.mkdir(parents=True, exist_ok=True)
            with progress_bar(f"download {info.key}", info.size, quiet=quiet or json) as advance:
                done.append(files.download(remote, local_out, progress=advance))
            if not json:
                console.print(f"download: {remote} to {local_out}")
    if json:
        print_json(done)


def _upload_plan(source: str, dest: str, recursive: bool) -> list[tuple[Path, str]]:
    bucket, key = split_path(dest)
    if source == "-":
        if not key or key.endswith("/"):
            raise Invalid("uploading standard input needs a full BUCKET/KEY destination")
        return [(Path("-"), dest)]
    local = Path(source).expanduser()
    if local.is_dir():
        if not recursive:
            raise Invalid(f"{source} is a folder; pass --recursive to upload what is inside it")
        base = key if not key or key.endswith("/") else key + "/"
        plan = [(p, f"{bucket}/{base}{p.relative_to(local).as_posix()}")
                for p in sorted(local.rglob("*")) if p.is_file()]
        if not plan:
            raise Invalid(f"{source} holds no files")
        return plan
    if not local.is_file():
        raise Invalid(f"{source} does not exist here")
    if not key or key.endswith("/"):
        key += local.name
    return [(local, f"{bucket}/{key}")]


def _download_plan(files: object, source: str, dest: str,
                   recursive: bool) -> list[tuple[str, Path]]:
    from cumulo.storage.sdk import FilesClient

    assert isinstance(files, FilesClient)
    bucket, key = split_path(source)
    if dest == "-":
        return [(source, Path("-"))]
    local = Path(dest).expanduser()
    if recursive:
        prefix = key if not key or key.endswith("/") else key + "/"
        listing = files.list(f"{bucket}/{prefix}", recursive=True)
        if not listing.objects:
            raise Invalid(f"nothing under {bucket}/{prefix}")
        return [(o.path, local / o.key[len(prefix):]) for o in listing.objects]
    if not key:
        raise Invalid(f"{source} names a bucket; pass --recursive to download what is inside it")
    if local.is_dir() or dest.endswith("/"):
        local = local / key.rsplit("/", 1)[-1]
    return [(source, local)]


@app.command("rm")
def remove(ctx: typer.Context, path: str, recursive: bool = RecursiveOpt,
           json: bool = JsonOpt) -> None:
    """Remove an object, or with --recursive every object under a prefix."""
    deleted = client(ctx).files.delete(path, recursive=recursive)
    show_result({"path": path, "deleted": deleted},
                f"deleted {deleted} object(s) under {path}" if recursive else f"deleted {path}",
                as_json=json)



@app.command("mv")
def move(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="BUCKET/KEY, or a local file"),
    dest: str = typer.Argument(..., help="BUCKET/KEY (ending in / for a folder), or a local "
                               "path"),
    recursive: bool = RecursiveOpt, quiet: bool = QuietOpt, json: bool = JsonOpt,
) -> None:
    """Move an object (to another key or bucket, or to here), or a local file to Cumulo.

    The source is deleted only once the copy is stored whole and its SHA-256 checked.
    """
    files = client(ctx).files
    if "-" in (source, dest):
        raise Invalid("mv moves files and objects; standard input or output cannot be moved "
                      "(use 'cumulo files cp')")
    src_local, dst_local = is_local(source), is_local(dest)
    if src_local and dst_local:
        raise Invalid(f"both {source!r} and {dest!r} are local paths; one side must be a "
                      f"Cumulo path BUCKET/KEY (write cumulo://{dest.lstrip('./')} if a local "
                      "folder has the bucket's name)")
    if not src_local and not recursive and "/" not in source.removeprefix("cumulo://"):
        raise Invalid(f"{source} does not exist here; a Cumulo path is BUCKET/KEY, e.g. "
                      f"data/{source}")
    pairs: list[tuple[Any, Any]]
    if src_local:
        pairs = _upload_plan(source, dest, recursive)
    elif dst_local:
        pairs = _download_plan(files, source, dest, recursive)
    else:
        pairs = _object_plan(files, source, dest, recursive)
    done = []
    for src, dst in pairs:
        size = src.stat().st_size if isinstance(src, Path) else files.head(src).size
        if isinstance(dst, Path):
            dst.parent.mkdir(parents=True, exist_ok=True)
        name = src.name if isinstance(src, Path) else src.rsplit("/", 1)[-1]
        with progress_bar(f"move {name}", size, quiet=quiet or json) as advance:
            info = files.move(src, dst, progress=advance)
        done.append(info)
        if not json:
            console.print(escape(f"move: {src} to {dst if isinstance(dst, Path) else info.path}"))
    if json:
        print_json(done)


def _object_plan(files: object, source: str, dest: str, recursive: bool) -> list[tuple[str, str]]:
    """Object to object: one, or with ``recursive`` every one under SOURCE's prefix, to the
    same paths under DEST's."""
    from cumulo.storage.sdk import FilesClient

    assert isinstance(files, FilesClient)
    if not recursive:
        return [(source, dest)]
    bucket, key = split_path(source)
    prefix = key if not key or key.endswith("/") else key + "/"
    to_bucket, to_key = split_path(dest)
    to_prefix = to_key if not to_key or to_key.endswith("/") else to_key + "/"
    if (bucket, prefix) == (to_bucket, to_prefix):
        raise Invalid(f"{source} and {dest} are the same place; nothing to move")
    listing = files.list(f"{bucket}/{prefix}", recursive=True)
    if not listing.objects:
        raise Invalid(f"nothing under {bucket}/{prefix}")
    return [(o.path, f"{to_bucket}/{to_prefix}{o.key[len(prefix):]}") for o in listing.objects]


class _InOrder(TyperCommand):
    """A command that remembers the order its options were given in: aws applies
    --exclude and --include rules in that order, which their two lists alone lose."""

    def make_parser(self, ctx: Any) -> Any:
        parser = super().make_parser(ctx)
        parse = parser.parse_args

        def parse_args(args: list[str]) -> Any:
            opts, rest, order = parse(args)
            ctx.meta["cumulo.option_order"] = [p.name for p in order]
            return opts, rest, order

        parser.parse_args = parse_args  # type: ignore[method-assign]
        return parser


def _rules(ctx: typer.Context, exclude: list[str], include: list[str]) -> list[Rule]:
    given = {"exclude": list(exclude), "include": list(include)}
    order = [n for n in ctx.meta.get("cumulo.option_order", []) if n in given]
    if sorted(order) != sorted(["exclude"] * len(exclude) + ["include"] * len(include)):
        order = ["exclude"] * len(exclude) + ["include"] * len(include)
    return [(kind, given[kind].pop(0)) for kind in order]


def _line(action: Action) -> str:
    if action.op == "delete":
        return f"delete: {action.dest}"
    return f"{action.op}: {action.source} to {action.dest}"


def _summary(todo: SyncPlan) -> str:
    copied, deleted = len(todo.copies), len(todo.deletes)
    if todo.dryrun:
        return (f"(dryrun) {todo.source} to {todo.dest}: would {todo.direction} {copied} "
                f"file(s) ({human_bytes(todo.bytes)}) and delete {deleted}; "
                f"{todo.unchanged} unchanged; nothing was changed")
    return (f"synced {todo.source} to {todo.dest}: {copied} {todo.direction}ed "
            f"({human_bytes(todo.bytes)}), {deleted} deleted, {todo.unchanged} unchanged")


@app.command("sync", cls=_InOrder)
def sync(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="a local folder, or BUCKET/PREFIX"),
    dest: str = typer.Argument(..., help="BUCKET/PREFIX, or a local folder"),
    delete: bool = typer.Option(False, "--delete", help="Remove what DEST holds and SOURCE "
                                "does not."),
    exclude: list[str] | None = typer.Option(None, "--exclude", help="Leave out paths (below "
                                             "SOURCE) matching this glob; repeat for more."),
    include: list[str] | None = typer.Option(None, "--include", help="Take paths matching "
                                             "this glob back in; the last rule that matches "
                                             "a path decides."),
    dryrun: bool = typer.Option(False, "--dryrun", "--dry-run", help="Print what it would do; "
                                "change nothing."),
    quiet: bool = QuietOpt, json: bool = JsonOpt,
) -> None:
    """Make DEST hold what SOURCE holds (a local folder and BUCKET/PREFIX), like aws s3 sync.

    A file is copied when DEST lacks it or its size or SHA-256 differs; --delete removes what
    SOURCE lacks. A missing bucket stops it before anything is copied.
    """
    files = client(ctx).files
    src_local, dst_local = is_local(source), is_local(dest)
    if src_local and dst_local:
        raise Invalid(f"both {source!r} and {dest!r} are local folders; one side must be a "
                      f"Cumulo path BUCKET/PREFIX (write cumulo://{dest.lstrip('./')} if a "
                      "local folder has the bucket's name)")
    if not src_local and not dst_local:
        raise Invalid(f"both {source!r} and {dest!r} are Cumulo paths (a local folder must "
                      f"exist here, or be written ./{dest}); syncing between buckets is not "
                      "supported yet")
    todo = plan(files, Path(source) if src_local else source,
                Path(dest) if dst_local else dest, delete=delete,
                rules=_rules(ctx, exclude or [], include or []), dryrun=dryrun)
    if dryrun:
        if not json:
            for action in todo.actions:
                console.print(escape(f"(dryrun) {_line(action)}"))
    else:
        def done(action: Action) -> None:
            if not json:
                console.print(escape(_line(action)))

        with progress_bar(f"sync {len(todo.copies)} file(s)", todo.bytes,
                          quiet=quiet or json) as advance:
            apply(files, todo, progress=advance, on_action=done)
    if json:
        print_json({**asdict(todo), "copied": len(todo.copies), "deleted": len(todo.deletes),
                    "bytes": todo.bytes})
        return
    console.print(escape(_summary(todo)))
