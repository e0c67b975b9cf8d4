"""SDK sub-client for streams: ``client.streams``."""

from __future__ import annotations

import base64
import builtins
from collections.abc import Iterator
from typing import Any

from cumulo.client.transport import Transport

__all__ = ["StreamsClient"]


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
        """One record; returns its shard and sequence number once it is on disk."""
        done = self.put_records(name, [_record(partition_key, data, explicit_hash_key)])
        result = done["records"][0]
        if "error" in result:
            from cumulo.errors import Invalid

            raise Invalid(result["error"])
        return result  # type: ignore[no-any-return]

    def put_records(self, name: str, records: builtins.list[dict[str, Any]]) -> dict[str, Any]:
        """Up to 500 records (``{"partition_key", "data" or "data_base64"}``); a bad one
        fails alone: ``{"failed": n, "records": [{"shard_id", "sequence_number"} or
        {"error"}]}``."""
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
