"""``cumulo streams``: Kinesis-style data streams."""

from __future__ import annotations

import base64
import sys
from typing import Any

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
    """A stream's shards, consumer groups, deliveries and scorers (with their lag)."""
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
    if doc.get("groups"):
        _show_groups(doc["groups"])
    if doc.get("consumers"):
        _show_consumers(doc["consumers"])
    if doc.get("deliveries"):
        _show_deliveries(doc["deliveries"], as_json=False)
    if doc.get("scorers"):
        _show_scorers(doc["scorers"], as_json=False)


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


def _show_consumers(consumers: list[dict[str, Any]]) -> None:
    rows = [{"consumer": c["name"], **s} for c in consumers for s in c["subscriptions"]]
    rows += [{"consumer": c["name"], "shard_id": "-", "position": None, "behind": "-",
              "millis_behind": 0} for c in consumers if not c["subscriptions"]]
    show_rows(rows, {"consumer": "consumer", "subscribed shard": "shard_id",
                     "position": lambda s: s["position"] or "-",
                     "behind (records)": "behind",
                     "oldest unread": lambda s: f"{s['millis_behind'] / 1000:.1f}s"
                     if s["behind"] not in (0, "-") else "-"}, as_json=False)


# --- consumer groups -----------------------------------------------------------------------------


def _show_groups(groups: list[dict[str, Any]]) -> None:
    rows = []
    for group in groups:
        labels = {m["member"]: m["label"] for m in group["members"]}
        for shard in group["shards"]:
            rows.append({**shard, "group": group["group"],
                         "holder": labels.get(shard["owner"] or "", shard["owner"] or "-")})
    show_rows(rows, {"group": "group", "shard": "shard_id", "held by": "holder",
                     "checkpoint": lambda s: s["checkpoint"] or "-",
                     "behind (records)": "behind",
                     "oldest unread": lambda s: f"{s['millis_behind'] / 1000:.1f}s"
                     if s["behind"] else "-"}, as_json=False)


@app.command("groups")
def groups(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """A stream's consumer groups: who holds each shard, checkpoints and lag.

    client.streams.consume(NAME, group=...) makes and joins them."""
    found = client(ctx).streams.groups(name)
    if json:
        print_json(found)
        return
    if not found:
        err.print(f"stream {name} has no consumer groups")
        return
    _show_groups(found)


# --- deliveries ----------------------------------------------------------------------------------

deliveries_app = typer.Typer(help="A stream's deliveries into lake tables: ls, show, stop, "
                                  "start, rm.", no_args_is_help=True)
app.add_typer(deliveries_app, name="deliveries")


def _show_deliveries(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    show_rows(rows, {"name": "name", "table": "table", "state": "state",
                     "buffer": "buffer", "rows": "records", "failed": "failed",
                     "behind (records)": "behind",
                     "lag": lambda d: f"{d['millis_behind'] / 1000:.1f}s",
                     "error": lambda d: d["error"] or ""}, as_json=as_json)


@app.command("deliver")
def deliver(ctx: typer.Context, name: str,
            table: str = typer.Option(..., "--to-table", help="DATABASE.TABLE: a table with "
                                      "the records' columns"),
            buffer: str = typer.Option("5MB/60s", "--buffer", help="write a batch at this size "
                                       "or once its oldest record waited this long: 5MB/60s"),
            partition_by: str | None = typer.Option(None, "--partition-by", help="day: the "
                                                    "table's 'day' column gets the day each "
                                                    "record arrived"),
            transform: str | None = typer.Option(None, "--transform", help="MODULE:FUNCTION "
                                                 "(on the server) or FILE.py:FUNCTION (a local "
                                                 "file): called on each record, returns the "
                                                 "row or None to drop it"),
            start: str = typer.Option("LATEST", "--from", help="LATEST (records put from now "
                                      "on) or TRIM_HORIZON (every record kept)"),
            delivery: str | None = typer.Option(None, "--name", help="default: the table's"),
            json: bool = JsonOpt) -> None:
    """Deliver a stream into a lake table, exactly once (a batch a Delta commit).

    Records that do not fit the table go to TABLE_errors, with the reason."""
    made = client(ctx).streams.deliver(name, table=table, buffer=buffer,
                                       partition_by=partition_by, transform=transform,
                                       start=start.upper(), delivery=delivery)
    show_result(made, f"delivering {name} into {made['table']} (batches of {made['buffer']}); "
                      f"'cumulo streams deliveries show {name} {made['name']}' shows its lag",
                as_json=json)


@deliveries_app.command("ls")
def deliveries_ls(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """A stream's deliveries, with their lag."""
    _show_deliveries(client(ctx).streams.deliveries(name), as_json=json)


@deliveries_app.command("show")
def deliveries_show(ctx: typer.Context, name: str, delivery: str,
                    json: bool = JsonOpt) -> None:
    """A delivery: its table, state, rows and failures so far, and lag."""
    doc = client(ctx).streams.delivery(name, delivery)
    show_record(doc, [("name", doc["name"]), ("table", doc["table"]),
                      ("errors to", doc["errors_table"]), ("state", doc["state"]),
                      ("buffer", doc["buffer"]), ("partition by", doc["partition_by"] or "-"),
                      ("transform", doc["transform"] or "-"), ("rows", doc["records"]),
                      ("failed", doc["failed"]), ("table version", doc["table_version"]),
                      ("behind", f"{doc['behind']} record(s), "
                                 f"{doc['millis_behind'] / 1000:.1f}s"),
                      ("error", doc["error"] or "-")], as_json=json)


@deliveries_app.command("stop")
def deliveries_stop(ctx: typer.Context, name: str, delivery: str,
                    json: bool = JsonOpt) -> None:
    """Stop a delivery; it starts again where the table says."""
    done = client(ctx).streams.stop_delivery(name, delivery)
    show_result(done, f"delivery {delivery} stopped", as_json=json)


@deliveries_app.command("start")
def deliveries_start(ctx: typer.Context, name: str, delivery: str,
                     json: bool = JsonOpt) -> None:
    """Start a stopped or failed delivery again."""
    done = client(ctx).streams.start_delivery(name, delivery)
    show_result(done, f"delivery {delivery} running", as_json=json)


@deliveries_app.command("rm")
def deliveries_rm(ctx: typer.Context, name: str, delivery: str,
                  json: bool = JsonOpt) -> None:
    """Remove a delivery; what it wrote stays in the table."""
    client(ctx).streams.delete_delivery(name, delivery)
    show_result({"stream": name, "delivery": delivery, "deleted": True},
                f"delivery {delivery} removed", as_json=json)


# --- scorers -------------------------------------------------------------------------------------

scorers_app = typer.Typer(help="A stream's scorers (records through an endpoint): ls, show, "
                               "stop, start, rm.", no_args_is_help=True)
app.add_typer(scorers_app, name="scorers")


def _output(doc: dict[str, Any]) -> str:
    return f"stream {doc['to_stream']}" if doc["to_stream"] else f"table {doc['to_table']}"


def _show_scorers(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    show_rows(rows, {"name": "name", "endpoint": "endpoint", "to": _output, "state": "state",
                     "scored": "records", "failed": "failed", "behind (records)": "behind",
                     "lag": lambda d: f"{d['millis_behind'] / 1000:.1f}s",
                     "error": lambda d: d["error"] or ""}, as_json=as_json)


@app.command("score")
def score(ctx: typer.Context, name: str,
          endpoint: str = typer.Option(..., "--endpoint", help="the endpoint that scores each "
                                       "record (a JSON object of the model's columns)"),
          to_stream: str | None = typer.Option(None, "--to-stream", help="a stream each "
                                               "record goes to with its prediction, under its "
                                               "partition key"),
          to_table: str | None = typer.Option(None, "--to-table", help="or a lake table "
                                              "(DATABASE.TABLE) with the records' columns and "
                                              "'prediction'"),
          batch: int = typer.Option(100, "--batch", help="records a request, at most"),
          start: str = typer.Option("LATEST", "--from", help="LATEST (records put from now "
                                    "on) or TRIM_HORIZON (every record kept)"),
          scorer: str | None = typer.Option(None, "--name", help="default: the endpoint's"),
          json: bool = JsonOpt) -> None:
    """Score a stream's records through an endpoint as they come.

    Each record, with a 'prediction' field, goes to --to-stream (or --to-table). Records
    that are not JSON or that the endpoint refuses are counted as failed; while the endpoint
    does not answer, scoring is paused and drops nothing."""
    made = client(ctx).streams.score(name, endpoint=endpoint, to_stream=to_stream,
                                     to_table=to_table, batch=batch, start=start.upper(),
                                     scorer=scorer)
    show_result(made, f"scoring {name} through endpoint {made['endpoint']} into "
                      f"{_output(made)}; 'cumulo streams scorers show {name} {made['name']}' "
                      "shows how it goes", as_json=json)


@scorers_app.command("ls")
def scorers_ls(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """A stream's scorers, with their lag."""
    _show_scorers(client(ctx).streams.scorers(name), as_json=json)


@scorers_app.command("show")
def scorers_show(ctx: typer.Context, name: str, scorer: str, json: bool = JsonOpt) -> None:
    """A scorer: endpoint, output, state, records scored and failed, last failure, lag."""
    doc = client(ctx).streams.scorer(name, scorer)
    show_record(doc, [("name", doc["name"]), ("endpoint", doc["endpoint"]),
                      ("to", _output(doc)), ("state", doc["state"]),
                      ("batch", f"{doc['batch']} records a request"),
                      ("scored", doc["records"]), ("failed", doc["failed"]),
                      ("last failure", doc["last_failure"] or "-"),
                      ("behind", f"{doc['behind']} record(s), "
                                 f"{doc['millis_behind'] / 1000:.1f}s"),
                      ("error", doc["error"] or "-")], as_json=json)


@scorers_app.command("stop")
def scorers_stop(ctx: typer.Context, name: str, scorer: str, json: bool = JsonOpt) -> None:
    """Stop a scorer; it starts again where it was."""
    done = client(ctx).streams.stop_scorer(name, scorer)
    show_result(done, f"scorer {scorer} stopped", as_json=json)


@scorers_app.command("start")
def scorers_start(ctx: typer.Context, name: str, scorer: str, json: bool = JsonOpt) -> None:
    """Start a stopped or failed scorer again."""
    done = client(ctx).streams.start_scorer(name, scorer)
    show_result(done, f"scorer {scorer} running", as_json=json)


@scorers_app.command("rm")
def scorers_rm(ctx: typer.Context, name: str, scorer: str, json: bool = JsonOpt) -> None:
    """Remove a scorer; what it wrote stays."""
    client(ctx).streams.delete_scorer(name, scorer)
    show_result({"stream": name, "scorer": scorer, "deleted": True},
                f"scorer {scorer} removed", as_json=json)
