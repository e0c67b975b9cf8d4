"""``cumulo streams``: Kinesis-style data streams."""

from __future__ import annotations

import base64
import sys

import typer

from cumulo.cli.context import client
from cumulo.cli.output import (
    JsonOpt,
    console,
    err,
    human_bytes,
    print_json,
    show_record,
    show_result,
    show_rows,
)
from cumulo.errors import Invalid

__all__ = ["app"]

app = typer.Typer(help="Data streams (Kinesis): create, put, get, tail.", no_args_is_help=True)


@app.command("create")
def create(ctx: typer.Context, name: str,
           shards: int = typer.Option(1, "--shards", help="shards: each takes a part of the "
                                      "partition keys, and of the throughput"),
           retention: str = typer.Option("24h", "--retention", help="24h to 365d"),
           project: str | None = typer.Option(None, "--project"),
           json: bool = JsonOpt) -> None:
    """Create a stream."""
    made = client(ctx).streams.create(name, shards=shards, retention=retention, project=project)
    show_result(made, f"stream {name} created with {len(made['shards'])} shard(s), records "
                      f"kept {made['retention_hours']} h", as_json=json)


@app.command("ls")
def list_(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """List streams."""
    show_rows(client(ctx).streams.list(), {
        "name": "name", "shards": lambda s: len(s["shards"]), "records": "records",
        "bytes": lambda s: human_bytes(s["bytes"]), "retention": lambda s:
        f"{s['retention_hours']}h", "status": "status"}, as_json=json)


@app.command("show")
def show(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """A stream's shards: hash-key ranges, sequence numbers, records and bytes."""
    doc = client(ctx).streams.show(name)
    if json:
        print_json(doc)
        return
    show_record(doc, [("name", doc["name"]), ("status", doc["status"]),
                      ("retention", f"{doc['retention_hours']} h"),
                      ("records", doc["records"]), ("bytes", human_bytes(doc["bytes"]))],
                as_json=False)
    show_rows(doc["shards"], {
        "shard": "shard_id", "hash keys": lambda s: f"{s['hash_key_range']['start']}-"
        f"{s['hash_key_range']['end']}", "first sequence": "starting_sequence_number",
        "records": "records", "bytes": lambda s: human_bytes(s["bytes"]),
        "open": "open"}, as_json=False)


@app.command("put")
def put(ctx: typer.Context, name: str,
        partition_key: str = typer.Option(..., "--partition-key", "-k",
                                          help="routes the record to a shard"),
        data: str | None = typer.Option(None, "--data", "-d", help="the record (text)"),
        file: typer.FileText | None = typer.Option(None, "--file", "-f",
                                                   help="one record a line ('-': stdin)"),
        json: bool = JsonOpt) -> None:
    """Put one record (-d), or one record a line of a file or stdin."""
    streams = client(ctx).streams
    if data is not None:
        done = streams.put(name, data, partition_key=partition_key)
        show_result(done, f"{done['shard_id']} {done['sequence_number']}", as_json=json)
        return
    source = file if file is not None else (sys.stdin if not sys.stdin.isatty() else None)
    if source is None:
        raise Invalid("give the record with -d, or records with --file (one a line) or on "
                      "stdin")
    batch: list[dict[str, str]] = []
    failed = written = 0
    for line in source:
        line = line.rstrip("\n")
        if not line:
            continue
        batch.append({"partition_key": partition_key, "data": line})
        if len(batch) == 500:
            result = streams.put_records(name, batch)
            failed, written, batch = failed + result["failed"], written + len(batch), []
    if batch:
        result = streams.put_records(name, batch)
        failed, written = failed + result["failed"], written + len(batch)
    show_result({"written": written - failed, "failed": failed},
                f"{written - failed} record(s) written" + (f", {failed} failed" if failed
                                                           else ""), as_json=json)


def _line(record: dict[str, object], data: bytes) -> str:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = "base64:" + base64.b64encode(data).decode()
    return f"{record['shard_id']} {record['sequence_number']} {record['partition_key']} {text}"


@app.command("get")
def get(ctx: typer.Context, name: str,
        shard: str | None = typer.Option(None, "--shard", help="default: the first"),
        start: str = typer.Option("TRIM_HORIZON", "--from", help="TRIM_HORIZON, LATEST, "
                                  "AT_TIMESTAMP (with --at), or a sequence number"),
        at: str | None = typer.Option(None, "--at", help="a time: ISO, or 10m ago"),
        limit: int = typer.Option(100, "--limit"), json: bool = JsonOpt) -> None:
    """Read records of one shard."""
    kind, sequence = start.upper(), None
    if start.isdigit():
        kind, sequence = "AT_SEQUENCE_NUMBER", start
    elif at is not None:
        kind = "AT_TIMESTAMP"
    page = client(ctx).streams.get(name, shard=shard, start=kind, sequence=sequence, at=at,
                                   limit=limit)
    if json:
        print_json(page)
        return
    for record in page["records"]:
        record["shard_id"] = page["shard_id"]
        console.print(_line(record, base64.b64decode(record["data_base64"])),
                      markup=False, highlight=False)
    err.print(f"{len(page['records'])} record(s); {page['millis_behind']} ms behind the newest")


@app.command("tail")
def tail(ctx: typer.Context, name: str,
         start: str = typer.Option("LATEST", "--from", help="LATEST, TRIM_HORIZON, or "
                                   "AT_TIMESTAMP (with --at)"),
         at: str | None = typer.Option(None, "--at")) -> None:
    """Follow every shard's records as they come (Ctrl+C to stop)."""
    kind = "AT_TIMESTAMP" if at is not None else start.upper()
    try:
        for record in client(ctx).streams.tail(name, start=kind, at=at):
            console.print(_line(record, record["data"]), markup=False, highlight=False)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


@app.command("split")
def split(ctx: typer.Context, name: str, shard: str,
          at: str | None = typer.Option(None, "--at", help="the first hash key of the second "
                                        "child (default: the middle)"),
          json: bool = JsonOpt) -> None:
    """Split a shard in two: new records go to its children; its own stay readable."""
    doc = client(ctx).streams.split(name, shard, at=at)
    show_result(doc, f"{shard} split; {name} has {sum(s['open'] for s in doc['shards'])} open "
                     "shard(s)", as_json=json)


@app.command("merge")
def merge(ctx: typer.Context, name: str, shard: str, adjacent: str,
          json: bool = JsonOpt) -> None:
    """Merge two shards whose hash-key ranges meet."""
    doc = client(ctx).streams.merge(name, shard, adjacent)
    show_result(doc, f"{shard} and {adjacent} merged; {name} has "
                     f"{sum(s['open'] for s in doc['shards'])} open shard(s)", as_json=json)


@app.command("rm")
def remove(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """Delete a stream and its records."""
    client(ctx).streams.delete(name)
    show_result({"name": name, "deleted": True}, f"stream {name} deleted", as_json=json)
