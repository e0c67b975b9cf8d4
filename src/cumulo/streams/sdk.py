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

    def tail(self, name: str, *, start: str = "LATEST", at: str | None = None,
             wait: float = 2.0) -> Iterator[dict[str, Any]]:
        """Every record of every shard from ``start`` on, as it comes (``data`` as bytes),
        until the caller stops iterating."""
        shards = [s["shard_id"] for s in self.show(name)["shards"]]
        iterators: dict[str, str | None] = dict.fromkeys(shards)
        while True:
            got = False
            for shard in shards:
                page = self.get(name, shard=shard, start=start, at=at,
                                iterator=iterators[shard],
                                wait=wait / len(shards) if len(shards) > 1 else wait)
                iterators[shard] = page["iterator"]
                for record in page["records"]:
                    got = True
                    yield {**record, "shard_id": shard,
                           "data": base64.b64decode(record.pop("data_base64"))}
            if not got and len(shards) > 1:
                continue
