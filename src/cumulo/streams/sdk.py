"""SDK sub-client for streams: ``client.streams``."""

from __future__ import annotations

import base64
import builtins
import json
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from cumulo.client.transport import Transport
from cumulo.errors import error_from_payload

if TYPE_CHECKING:
    from cumulo.streams.group_sdk import GroupConsumer

__all__ = ["StreamsClient"]

_PUT_ATTEMPTS = 5  # a put whose shard is busy is tried again, waiting 0.05 s, 0.1 s, ...


def _record(partition_key: str, data: bytes | str,
            explicit_hash_key: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"partition_key": partition_key,
                           "explicit_hash_key": explicit_hash_key}
    if isinstance(data, str):
        doc["data"] = data
    else:
        doc["data_base64"] = base64.b64encode(data).decode()
    return doc


class StreamsClient:
    """Kinesis-style data streams. (AWS's own clients work too: ``boto3.client("kinesis",
    endpoint_url=...)`` with a key from ``client.keys.create()``.)"""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, name: str, *, shards: int = 1, retention: str = "24h",
               project: str | None = None) -> dict[str, Any]:
        return self._t.json("POST", "/api/v1/streams", json={  # type: ignore[no-any-return]
            "name": name, "shards": shards, "retention": retention, "project": project})

    def list(self, *, project: str | None = None) -> list[dict[str, Any]]:
        return self._t.json("GET", "/api/v1/streams",  # type: ignore[no-any-return]
                            params={"project": project} if project else None)

    def show(self, name: str) -> dict[str, Any]:
        return self._t.json("GET", f"/api/v1/streams/{name}")  # type: ignore[no-any-return]

    def delete(self, name: str) -> None:
        self._t.json("DELETE", f"/api/v1/streams/{name}")

    def put(self, name: str, data: bytes | str, *, partition_key: str,
            explicit_hash_key: str | None = None) -> dict[str, Any]:
        """One record; returns its shard and sequence number once it is on disk. A shard too
        busy to take it now is tried again a few times, waiting longer each time."""
        import time

        from cumulo.errors import Invalid, Unavailable

        record = [_record(partition_key, data, explicit_hash_key)]
        for attempt in range(_PUT_ATTEMPTS):
            result: dict[str, Any] = self.put_records(name, record)["records"][0]
            if not result.get("retry"):
                break
            if attempt < _PUT_ATTEMPTS - 1:
                time.sleep(0.05 * 2**attempt)
        else:
            raise Unavailable(result["error"], retry_after=1)
        if "error" in result:
            raise Invalid(result["error"])
        return result

    def put_records(self, name: str, records: builtins.list[dict[str, Any]]) -> dict[str, Any]:
        """Up to 500 records (``{"partition_key", "data" or "data_base64"}``); a bad one
        fails alone: ``{"failed": n, "records": [{"shard_id", "sequence_number"} or
        {"error"}]}``; ``{"error", "retry": true}`` for a record whose shard was too busy to
        take it: put it again in a moment."""
        return self._t.json("POST", f"/api/v1/streams/{name}/records",  # type: ignore[no-any-return]
                            json={"records": records})

    def get(self, name: str, *, shard: str | None = None, start: str = "TRIM_HORIZON",
            sequence: str | None = None, at: str | None = None, iterator: str | None = None,
            limit: int = 1000, wait: float = 0.0) -> dict[str, Any]:
        """A page of one shard's records: ``{"records", "iterator", "millis_behind"}``; pass
        ``iterator`` back for the next page."""
        params: dict[str, Any] = {"limit": limit, "wait": wait}
        if iterator:
            params["iterator"] = iterator
        else:
            params.update({"from": start, "shard": shard, "sequence": sequence, "at": at})
        return self._t.json("GET", f"/api/v1/streams/{name}/records",  # type: ignore[no-any-return]
                            params={k: v for k, v in params.items() if v is not None})

    def split(self, name: str, shard: str, *, at: str | None = None) -> dict[str, Any]:
        """Split ``shard`` in two at hash key ``at`` (default: the middle of its range)."""
        return self._t.json("POST", f"/api/v1/streams/{name}/split",  # type: ignore[no-any-return]
                            json={"shard": shard, "at": at})

    def merge(self, name: str, shard: str, adjacent: str) -> dict[str, Any]:
        """Merge two shards whose hash-key ranges meet."""
        return self._t.json("POST", f"/api/v1/streams/{name}/merge",  # type: ignore[no-any-return]
                            json={"shard": shard, "adjacent": adjacent})

    def tail(self, name: str, *, start: str = "LATEST", at: str | None = None,
             wait: float = 2.0) -> Iterator[dict[str, Any]]:
        """Every record of every shard from ``start`` on, as it comes (``data`` as bytes),
        until the caller stops iterating. A shard closed by a split or merge is read to its
        end before its children, which then start from their first record."""
        shown = self.show(name)["shards"]
        # Open shards from ``start``; closed ones are done already for LATEST, and read from
        # their start otherwise (their children wait for them).
        active: dict[str, str | None] = {s["shard_id"]: None for s in shown
                                         if s["open"] or start != "LATEST"}
        waiting = {s["shard_id"] for s in shown if s["parent"] and s["shard_id"] in active
                   and (s["parent"] in active or s.get("adjacent_parent") in active)}
        fresh: set[str] = set()  # children: read from their first record
        while True:
            got = False
            ready = [s for s in active if s not in waiting]
            for shard in ready:
                iterator = active[shard]
                page = self.get(name, shard=shard, iterator=iterator,
                                start="TRIM_HORIZON" if shard in fresh else start, at=at,
                                wait=wait / max(1, len(ready)))
                for record in page["records"]:
                    got = True
                    yield {**record, "shard_id": shard,
                           "data": base64.b64decode(record.pop("data_base64"))}
                if page["iterator"] is None:  # closed and read to its end: its children go on
                    del active[shard]
                    for child in page.get("child_shards", []):
                        if child not in active:
                            active[child] = None
                            fresh.add(child)
                    shown = self.show(name)["shards"]
                    parents = {s["shard_id"]: {s["parent"], s.get("adjacent_parent")}
                               for s in shown}
                    waiting = {c for c in active if parents.get(c, set()) & set(active)}
                else:
                    active[shard] = page["iterator"]
            if not got and not ready:
                return

    def subscribe(self, name: str, shard: str, *, start: str = "LATEST",
                  sequence: str | None = None, at: str | None = None
                  ) -> Generator[dict[str, Any], None, None]:
        """Push: the records of one shard from ``start`` (LATEST, TRIM_HORIZON, AT_TIMESTAMP
        with ``at``, AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER with ``sequence``), each as
        soon as it is written (``data`` as bytes), until the caller stops iterating. The server
        sends them down one open answer, ended every 5 minutes; this subscribes again from
        where it was, so the records come without gap or repeat. Ends once the shard is closed
        (split or merged) and read to its end: its children are then ``show``n by the stream.
        ``close()`` it to end the subscription before then.
        """
        params: dict[str, Any] = {"shard": shard, "from": start, "sequence": sequence,
                                  "at": at}
        while True:
            ended = False
            with self._t.stream("GET", f"/api/v1/streams/{name}/subscribe",
                                params={k: v for k, v in params.items()
                                        if v is not None}) as response:
                for line in response.iter_lines():
                    if not line:
                        continue
                    page = json.loads(line)
                    if "error" in page:
                        raise error_from_payload(500, page)
                    for record in page["records"]:
                        yield {**record, "shard_id": shard,
                               "data": base64.b64decode(record.pop("data_base64"))}
                    params = {"shard": shard, "from": "AFTER_SEQUENCE_NUMBER",
                              "sequence": page["continuation"]}
                    ended = page["end"]
            if ended:
                return

    # -- consumer groups -------------------------------------------------------------------------

    def consume(self, name: str, *, group: str, start: str = "TRIM_HORIZON",
                lease: float = 15.0, renew: float | None = None, limit: int = 1000,
                wait: float = 2.0, idle: float | None = None) -> GroupConsumer:
        """Join consumer group ``group`` of stream ``name``: iterate the answer for batches of
        the shards this member holds, and ``checkpoint()`` each when done::

            with client.streams.consume("clicks", group="sessionizer") as consumer:
                for batch in consumer:
                    for record in batch:
                        handle(record["data"])
                    batch.checkpoint()

        Each shard is read by one member of the group at a time; members share the shards
        fairly and take over a member's shards ``lease`` seconds after it stops renewing
        them (every ``renew`` seconds, default ``lease / 3``). A new group starts at
        ``start`` (TRIM_HORIZON or LATEST); a member goes on from the group's checkpoints,
        so records read and not checkpointed are read again by whoever holds the shard
        next (at least once). With ``idle``, the iteration ends once no record came for
        that many seconds (a job that processes what is there, then ends)."""
        from cumulo.streams.group_sdk import GroupConsumer

        return GroupConsumer(self._t, name, group, start=start, lease=lease, renew=renew,
                             limit=limit, wait=wait, idle=idle)

    def groups(self, name: str) -> builtins.list[dict[str, Any]]:
        """The stream's consumer groups: members, and per shard holder, checkpoint and lag."""
        return self._t.json("GET", f"/api/v1/streams/{name}/groups")  # type: ignore[no-any-return]

    def delete_group(self, name: str, group: str) -> None:
        """Forget a consumer group: its checkpoints (it starts again from ``start``)."""
        self._t.json("DELETE", f"/api/v1/streams/{name}/groups/{group}")

    # -- deliveries ------------------------------------------------------------------------------

    def deliver(self, name: str, *, table: str, buffer: str = "5MB/60s",
                partition_by: str | None = None, transform: str | None = None,
                start: str = "LATEST", delivery: str | None = None) -> dict[str, Any]:
        """Deliver stream ``name`` into lake table ``table`` (which has the records'
        columns), a batch each ``buffer`` (size/interval: ``5MB/60s``), exactly once;
        records that do not fit go to ``<table>_errors``. ``partition_by="day"`` fills the
        table's ``day`` column with the day each record arrived; ``transform``
        (``module:function``, or ``file.py:function`` for a local file) is called on each
        record first and may drop it (returning None). ``delivery`` names it (default: the
        table's name)."""
        source = None
        if transform is not None and transform.rpartition(":")[0].endswith(".py"):
            from pathlib import Path

            from cumulo.errors import Invalid

            path = Path(transform.rpartition(":")[0])
            if not path.is_file():
                raise Invalid(f"--transform {transform!r}: there is no file {str(path)!r}")
            source = path.read_text()
            transform = f"{path.name}:{transform.rpartition(':')[2]}"
        return self._t.json("POST", f"/api/v1/streams/{name}/deliveries", json={  # type: ignore[no-any-return]
            "table": table, "buffer": buffer, "partition_by": partition_by,
            "transform": transform, "transform_source": source, "start": start,
            "name": delivery})

    def deliveries(self, name: str) -> builtins.list[dict[str, Any]]:
        """The stream's deliveries: state, records and failures so far, and lag."""
        return self._t.json("GET", f"/api/v1/streams/{name}/deliveries")  # type: ignore[no-any-return]

    def delivery(self, name: str, delivery: str) -> dict[str, Any]:
        return self._t.json("GET", f"/api/v1/streams/{name}/deliveries/{delivery}")  # type: ignore[no-any-return]

    def stop_delivery(self, name: str, delivery: str) -> dict[str, Any]:
        """Stop it; what it had buffered is read again when it starts."""
        return self._t.json("POST", f"/api/v1/streams/{name}/deliveries/{delivery}/stop")  # type: ignore[no-any-return]

    def start_delivery(self, name: str, delivery: str) -> dict[str, Any]:
        """Start a stopped or failed delivery again, from where the table says."""
        return self._t.json("POST", f"/api/v1/streams/{name}/deliveries/{delivery}/start")  # type: ignore[no-any-return]

    def delete_delivery(self, name: str, delivery: str) -> None:
        """Remove a delivery; what it wrote stays in the table."""
        self._t.json("DELETE", f"/api/v1/streams/{name}/deliveries/{delivery}")

    # -- scorers ---------------------------------------------------------------------------------

    def score(self, name: str, *, endpoint: str, to_stream: str | None = None,
              to_table: str | None = None, batch: int = 100, start: str = "LATEST",
              scorer: str | None = None) -> dict[str, Any]:
        """Score stream ``name``'s records (JSON objects) through ``endpoint`` as they come:
        each, with a ``prediction`` field, goes to stream ``to_stream`` (same partition key)
        or as a row to table ``to_table``, ``batch`` records a request. A record that is not
        JSON, or that the endpoint refuses, is counted as failed; while the endpoint does
        not answer the scorer is paused, and drops nothing. ``scorer`` names it (default:
        the endpoint's name)."""
        return self._t.json("POST", f"/api/v1/streams/{name}/scorers", json={  # type: ignore[no-any-return]
            "endpoint": endpoint, "to_stream": to_stream, "to_table": to_table,
            "batch": batch, "start": start, "name": scorer})

    def scorers(self, name: str) -> builtins.list[dict[str, Any]]:
        """The stream's scorers: state, records scored and failed, last failure, lag."""
        return self._t.json("GET", f"/api/v1/streams/{name}/scorers")  # type: ignore[no-any-return]

    def scorer(self, name: str, scorer: str) -> dict[str, Any]:
        return self._t.json("GET", f"/api/v1/streams/{name}/scorers/{scorer}")  # type: ignore[no-any-return]

    def stop_scorer(self, name: str, scorer: str) -> dict[str, Any]:
        """Stop it; it starts again where it was."""
        return self._t.json("POST", f"/api/v1/streams/{name}/scorers/{scorer}/stop")  # type: ignore[no-any-return]

    def start_scorer(self, name: str, scorer: str) -> dict[str, Any]:
        """Start a stopped or failed scorer again, where it was."""
        return self._t.json("POST", f"/api/v1/streams/{name}/scorers/{scorer}/start")  # type: ignore[no-any-return]

    def delete_scorer(self, name: str, scorer: str) -> None:
        """Remove a scorer; what it wrote stays."""
        self._t.json("DELETE", f"/api/v1/streams/{name}/scorers/{scorer}")
