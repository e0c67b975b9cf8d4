"""``cumulo files``: buckets and objects from the terminal.

A Cumulo path is ``BUCKET/KEY`` (``cumulo://BUCKET/KEY`` also works). A local path starts with
``/``, ``./``, ``../`` or ``~``, is ``-`` (standard input or output), or names a file or folder
that exists here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

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

__all__ = ["app"]

app = typer.Typer(help="Object storage: buckets and files (like S3).", no_args_is_help=True)
RecursiveOpt = typer.Option(False, "--recursive", "-r", help="Apply to everything under it.")


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

