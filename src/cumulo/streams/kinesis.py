"""The Kinesis Data Streams API (JSON 1.1 protocol, ``X-Amz-Target: Kinesis_20131202.*``),
signed with SigV4 by the caller's access key (``cumulo keys``), so that
``boto3.client("kinesis", endpoint_url=CUMULO_URL)`` works unchanged: streams, shards, puts
and reads, registered consumers and their push subscriptions (SubscribeToShard: an event
stream, :mod:`cumulo.streams.eventstream`, fed by :mod:`cumulo.streams.push`), with Kinesis's
error types (ResourceNotFoundException, ValidationException, ExpiredIteratorException, ...).
The caller's grants decide (``streams:*`` on ``stream/NAME``) in the one decision point.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from anyio import to_thread
from sqlalchemy.orm import Session
from starlette.types import Receive, Scope, Send

from cumulo.access.keys import KeyCache
from cumulo.errors import Conflict, CumuloError, Forbidden, Invalid, NotFound, Unauthorized
from cumulo.logs import request_id
from cumulo.principal import Principal, request_project, source_address
from cumulo.storage.s3api import sigv4
from cumulo.streams import consumers, eventstream, push, service
from cumulo.streams.consumers import ConsumerLimit
from cumulo.streams.models import Consumer, Shard, Stream
from cumulo.streams.push import SubscriptionLimit
from cumulo.streams.service import ExpiredIterator, Iterator, StreamEngine

__all__ = ["KinesisApp", "is_kinesis"]

log = logging.getLogger("cumulo.streams")

PREFIX = "Kinesis_20131202."
MAX_BODY = 8 << 20
MAX_GET = 10_000


def is_kinesis(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"x-amz-target":
            return bool(value.startswith(PREFIX.encode()))
    return False


class KinesisError(Exception):
    def __init__(self, kind: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.kind, self.message, self.status = kind, message, status


def _from_cumulo(exc: CumuloError) -> KinesisError:
    if isinstance(exc, service.ShardBusy):
        return _busy(exc.details["stream"], exc.details["shard"])
    if isinstance(exc, ConsumerLimit | SubscriptionLimit):
        return KinesisError("LimitExceededException", exc.message)
    if isinstance(exc, ExpiredIterator):
        return KinesisError("ExpiredIteratorException", exc.message)
    if isinstance(exc, NotFound):
        return KinesisError("ResourceNotFoundException", exc.message)
    if isinstance(exc, Conflict):
        return KinesisError("ResourceInUseException", exc.message)
    if isinstance(exc, Unauthorized):
        return KinesisError("UnrecognizedClientException", exc.message)
    if isinstance(exc, Forbidden):
        return KinesisError("AccessDeniedException", exc.message)
    if isinstance(exc, Invalid):
        field = (exc.details or {}).get("field")
        kind = "InvalidArgumentException" if field else "ValidationException"
        return KinesisError(kind, exc.message)
    return KinesisError("InternalFailure", exc.message, 500)


def _busy(stream: str, shard_id: str) -> KinesisError:
    # Kinesis's own words, which its clients (the KPL, boto3's retries) look for.
    return KinesisError("ProvisionedThroughputExceededException",
                        f"Rate exceeded for shard {shard_id} in stream {stream} under account "
                        "000000000000.")


def _arn(name: str) -> str:
    return consumers.stream_arn(name)


class KinesisApp:
    def __init__(self) -> None:
        self._keys: KeyCache | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        running = scope["app"].state.services
        rid = request_id.get() or uuid.uuid4().hex[:16]
        status, answer = 200, b"{}"
        try:
            body = await _body(receive)

            def serve() -> tuple[_Ops, Any, dict[str, Any]]:
                # One trip to a thread for all of it: checking the signature (the key may be
                # read from the database, the body hashed), parsing and the operation.
                principal = self._authenticate(running, scope, body)
                target = dict(scope["headers"]).get(b"x-amz-target", b"").decode()
                operation = target.removeprefix(PREFIX)
                request = _request(body)
                handler = getattr(_Ops, operation, None)
                if handler is None or operation.startswith("_"):
                    raise KinesisError("UnknownOperationException",
                                       f"{operation!r} is not an operation Cumulo's Kinesis "
                                       "API serves (docs/streams.md lists them)")
                ops = _Ops(running, principal, scope)
                return ops, handler, ops.run(handler, request)

            ops, handler, result = await to_thread.run_sync(serve)
            if handler is _Ops.SubscribeToShard:  # an event stream, not one JSON answer
                await _subscribe(ops, result, receive, send, rid)
                return
            answer = orjson.dumps(result)
        except KinesisError as exc:
            status = exc.status
            answer = json.dumps({"__type": exc.kind, "message": exc.message}).encode()
        except CumuloError as exc:
            error = _from_cumulo(exc)
            status = error.status
            answer = json.dumps({"__type": error.kind, "message": error.message}).encode()
        except Exception:
            log.exception("Kinesis request failed")
            status = 500
            answer = json.dumps({"__type": "InternalFailure",
                                 "message": "an internal error; try again"}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/x-amz-json-1.1"),
            (b"content-length", str(len(answer)).encode()),
            (b"x-amzn-requestid", rid.encode())]})
        await send({"type": "http.response.body", "body": answer})

    def _authenticate(self, running: Any, scope: Scope, body: bytes) -> Principal:
        """Who signed the request (off the event loop: it may read the database)."""
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]},{text}" if key in headers else text
        auth = headers.get("authorization", "")
        try:
            signed = sigv4.parse_header(auth, headers)
            sigv4.check_time(signed, datetime.now(UTC))
        except sigv4.SignatureError as exc:
            kind = ("InvalidSignatureException" if exc.code == "SignatureDoesNotMatch"
                    else "MissingAuthenticationTokenException" if not auth
                    else "IncompleteSignatureException")
            raise KinesisError(kind, exc.message) from None
        if self._keys is None:
            self._keys = KeyCache(running.sessions)
        keys = self._keys
        secret, principal = keys.resolve(signed.credential.access_key)
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        pairs = sigv4.split_query(scope.get("query_string", b""))
        canonical = sigv4.canonical_request(scope["method"], raw_path, pairs, headers, signed,
                                            hashlib.sha256(body).hexdigest())
        expected = sigv4.signature(sigv4.signing_key(secret, signed.credential),
                                   sigv4.string_to_sign(signed, canonical))
        if not sigv4.matches(expected, signed.signature):
            raise KinesisError("InvalidSignatureException", "The request signature we "
                               "calculated does not match the signature you provided.")
        client = scope.get("client")
        if client:
            source_address.set(client[0])
        request_project.set(None)
        return principal


def _request(body: bytes) -> dict[str, Any]:
    try:
        request = orjson.loads(body or b"{}")  # a PutRecords is up to 5 MiB: fast
    except ValueError:
        raise KinesisError("SerializationException", "the request body is not JSON") from None
    if not isinstance(request, dict):
        raise KinesisError("SerializationException", "the request body must be an object")
    return request


async def _body(receive: Receive) -> bytes:
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise KinesisError("SerializationException", "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise KinesisError("ValidationException", f"the request is over {MAX_BODY} bytes")
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def _name(request: dict[str, Any]) -> str:
    name = request.get("StreamName")
    if not name and request.get("StreamARN"):
        name = str(request["StreamARN"]).rsplit("/", 1)[-1]
    if not isinstance(name, str) or not name:
        raise KinesisError("ValidationException", "StreamName is required")
    return name


def _data(value: Any, what: str) -> bytes:
    try:
        return binascii.a2b_base64(value if isinstance(value, str) else "", strict_mode=True)
    except (binascii.Error, ValueError):
        raise KinesisError("SerializationException", f"{what}: Data is not base64") from None


class _Ops:
    def __init__(self, running: Any, principal: Principal, scope: Scope) -> None:
        self.running = running
        self.engine: StreamEngine = running.streams
        self.principal = principal
        self.scope = scope

    def run(self, handler: Any, request: dict[str, Any]) -> dict[str, Any]:
        with self.running.sessions() as session:
            result: dict[str, Any] = handler(self, session, request)
            return result

    def _audit(self, action: str, resource: str) -> None:
        client = self.scope.get("client")
        self.running.trail.change(user=self.principal.user_name, action=action,
                                  resource=resource, status=200, method="POST",
                                  path="/" + action, source=client[0] if client else None)

    def CreateStream(self, session: Session, request: dict[str, Any]) -> dict[str, Any]:
        name = _name(request)
        shards = request.get("ShardCount", 4)
        if not isinstance(shards, int):
            raise KinesisError("ValidationException", "ShardCount must be a number")
        service.create_stream(session, self.principal, name, shards=shards)
        self._audit("streams:Create", f"stream/{name}")
        return {}

    def DeleteStream(self, session: Session, request: dict[str, Any]) -> dict[str, Any]:
        name = _name(request)
        self.principal.require("streams:Delete", f"stream/{name}")
        service.delete_stream(session, self.engine, name)
        self._audit("streams:Delete", f"stream/{name}")
        return {}

    def ListStreams(self, session: Session, request: dict[str, Any]) -> dict[str, Any]:
        self.principal.require("streams:List", "stream/*")
        names = [s.name for s in service.list_streams(session)
                 if self.principal.can("streams:List", f"stream/{s.name}")]
        start = request.get("ExclusiveStartStreamName") or request.get("NextToken")
        if start:
            names = [n for n in names if n > start]
        limit = int(request.get("Limit") or 100)
        page = names[:limit]
        more = len(names) > limit
        result: dict[str, Any] = {"StreamNames": page, "HasMoreStreams": more,
                                  "StreamSummaries": [
                                      {"StreamName": n, "StreamARN": _arn(n),
                                       "StreamStatus": "ACTIVE"} for n in page]}
        if more:
            result["NextToken"] = page[-1]
        return result

    def _stream(self, session: Session, request: dict[str, Any], action: str
                ) -> Stream:
        name = _name(request)
        self.principal.require(action, f"stream/{name}")
        return service.get_stream(session, name)

    def _writable(self, session: Session, request: dict[str, Any]) -> Stream:
        name = _name(request)
        self.principal.require("streams:Write", f"stream/{name}")
        return self.engine.writable(session, name)  # puts' view: no database read each time

    def _shard_doc(self, shard: Shard, first: int, last: int | None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "ShardId": shard.shard_id,
            "HashKeyRange": {"StartingHashKey": shard.start_hash,
                             "EndingHashKey": shard.end_hash},
            "SequenceNumberRange": {"StartingSequenceNumber": service.external_seq(shard,
                                                                                   first)}}
        if last is not None:
            doc["SequenceNumberRange"]["EndingSequenceNumber"] = service.external_seq(shard,
                                                                                      last)
        if shard.parent:
            doc["ParentShardId"] = shard.parent
        if shard.adjacent_parent:
            doc["AdjacentParentShardId"] = shard.adjacent_parent
        return doc

    def _shards(self, session: Session, stream: Stream) -> list[dict[str, Any]]:
        docs = []
        for shard in service.shards_of(session, stream):
            stats = self.engine.logs.shard(stream.name, shard.shard_id).stats()
            last = service.last_seq(stats) if shard.closed_at is not None else None
            docs.append(self._shard_doc(shard, stats["first_seq"], last))
        return docs

    def DescribeStream(self, session: Session, request: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(session, request, "streams:Read")
        shards = self._shards(session, stream)
        start = request.get("ExclusiveStartShardId")
        if start:
            shards = [s for s in shards if s["ShardId"] > start]
        limit = int(request.get("Limit") or 100)
        return {"StreamDescription": {
            "StreamName": stream.name, "StreamARN": _arn(stream.name),
            "StreamStatus": stream.status, "Shards": shards[:limit],
            "HasMoreShards": len(shards) > limit,
            "RetentionPeriodHours": stream.retention_hours,
            "StreamCreationTimestamp": stream.created_at.timestamp(),
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}], "EncryptionType": "NONE",
            "StreamModeDetails": {"StreamMode": "PROVISIONED"}}}

    def DescribeStreamSummary(self, session: Session,
                              request: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(session, request, "streams:Read")
        shards = service.shards_of(session, stream)
        return {"StreamDescriptionSummary": {
            "StreamName": stream.name, "StreamARN": _arn(stream.name),
            "StreamStatus": stream.status, "RetentionPeriodHours": stream.retention_hours,
            "StreamCreationTimestamp": stream.created_at.timestamp(),
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}], "EncryptionType": "NONE",
            "OpenShardCount": sum(1 for s in shards if s.closed_at is None),
            "ConsumerCount": len(consumers.list_consumers(session, stream)),
            "StreamModeDetails": {"StreamMode": "PROVISIONED"}}}

    def ListShards(self, session: Session, request: dict[str, Any]) -> dict[str, Any]:
        token = request.get("NextToken")
        if token:
            try:
                name, after = json.loads(base64.urlsafe_b64decode(str(token).encode()))
            except (ValueError, TypeError, binascii.Error):
                raise KinesisError("InvalidArgumentException", "NextToken is not one this "
                                   "server gave out") from None
            request = {**request, "StreamName": name, "ExclusiveStartShardId": after}
        stream = self._stream(session, request, "streams:Read")
        shards = self._shards(session, stream)
        after = request.get("ExclusiveStartShardId")
        if after:
            shards = [s for s in shards if s["ShardId"] > after]
        limit = int(request.get("MaxResults") or 1000)
        if not 1 <= limit <= 10_000:
            raise KinesisError("InvalidArgumentException", "MaxResults is 1 to 10000")
        page = shards[:limit]
        result: dict[str, Any] = {"Shards": page}
        if len(shards) > limit:
            result["NextToken"] = base64.urlsafe_b64encode(
                json.dumps([stream.name, page[-1]["ShardId"]]).encode()).decode()
        return result

    def PutRecord(self, session: Session, request: dict[str, Any]) -> dict[str, Any]:
        stream = self._writable(session, request)
        data = _data(request.get("Data"), "the record")
        if len(data) > service.MAX_RECORD:
            raise KinesisError("ValidationException", f"the record's data is {len(data)} bytes; "
                               f"a record is at most {service.MAX_RECORD} (1 MiB)")
        key = request.get("PartitionKey") or ""
        hash_key = service.hash_key_of(str(key), request.get("ExplicitHashKey"))
        [written] = self.engine.put(session, stream, [(str(key), data, hash_key)], refuse=True)
        if isinstance(written, service.ShardBusy):
            raise _busy(stream.name, written.details["shard"])
        shard, seq, _ = written
        return {"ShardId": shard.shard_id, "SequenceNumber": service.external_seq(shard, seq),
                "EncryptionType": "NONE"}

    def PutRecords(self, session: Session, request: dict[str, Any]) -> dict[str, Any]:
        stream = self._writable(session, request)
        records = request.get("Records")
        if not isinstance(records, list) or not records:
            raise KinesisError("ValidationException", "Records must list 1 to 500 records")
        if len(records) > service.MAX_BATCH:
            raise KinesisError("ValidationException", f"{len(records)} records: a PutRecords "
                               f"takes at most {service.MAX_BATCH}")
        results: list[dict[str, Any] | None] = [None] * len(records)
        good: list[tuple[int, tuple[str, bytes, int]]] = []
        total = 0
        for i, record in enumerate(records):
            try:
                if not isinstance(record, dict):
                    raise Invalid("a record must be an object")
                data = _data(record.get("Data"), f"record {i}")
                total += len(data)
                if len(data) > service.MAX_RECORD:
                    raise Invalid(f"record {i}'s data is {len(data)} bytes; a record is at "
                                  f"most {service.MAX_RECORD} (1 MiB)")
                if total > service.MAX_BATCH_BYTES:
                    raise Invalid(f"record {i} takes the request past "
                                  f"{service.MAX_BATCH_BYTES} bytes (5 MiB)")
                key = str(record.get("PartitionKey") or "")
                good.append((i, (key, data, service.hash_key_of(
                    key, record.get("ExplicitHashKey")))))
            except (Invalid, KinesisError) as exc:
                message = exc.message
                results[i] = {"ErrorCode": "InvalidArgumentException",
                              "ErrorMessage": f"record {i}: {message}"}
        if good:
            written = self.engine.put(session, stream, [r for _, r in good], refuse=True)
            for (i, _), done in zip(good, written, strict=True):
                if isinstance(done, service.ShardBusy):
                    error = _busy(stream.name, done.details["shard"])
                    results[i] = {"ErrorCode": error.kind, "ErrorMessage": error.message}
                    continue
                shard, seq, _ = done
                results[i] = {"ShardId": shard.shard_id,
                              "SequenceNumber": service.external_seq(shard, seq)}
        failed = sum(1 for r in results if r is not None and "ErrorCode" in r)
        return {"FailedRecordCount": failed, "Records": results, "EncryptionType": "NONE"}

    def GetShardIterator(self, session: Session, request: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(session, request, "streams:Read")
        shard_id = request.get("ShardId")
        shard = next((s for s in service.shards_of(session, stream)
                      if s.shard_id == shard_id), None)
        if shard is None:
            raise KinesisError("ResourceNotFoundException",
                               f"shard {shard_id!r} of stream {stream.name!r} does not exist")
        kind = str(request.get("ShardIteratorType") or "")
        stamp = request.get("Timestamp")
        seq = self.engine.start_seq(stream, shard, kind,
                                    sequence=request.get("StartingSequenceNumber"),
                                    timestamp=float(stamp) if stamp is not None else None)
        token = self.engine.seal(Iterator(stream.name, shard.shard_id, seq,
                                          datetime.now(UTC).timestamp()))
        return {"ShardIterator": token}

    def GetRecords(self, session: Session, request: dict[str, Any]) -> dict[str, Any]:
        it = self.engine.open_iterator(str(request.get("ShardIterator") or ""))
        stream = self._stream(session, {"StreamName": it.stream}, "streams:Read")
        shard = next((s for s in service.shards_of(session, stream)
                      if s.shard_id == it.shard), None)
        if shard is None:
            raise KinesisError("ResourceNotFoundException", f"shard {it.shard} is gone")
        limit = int(request.get("Limit") or MAX_GET)
        if not 1 <= limit <= MAX_GET:
            raise KinesisError("InvalidArgumentException", f"Limit is 1 to {MAX_GET}")
        records, following, behind = self.engine.read(stream, shard, it.next_seq, limit=limit)
        result: dict[str, Any] = {
            "Records": [{"SequenceNumber": service.external_seq(shard, r.seq),
                         "ApproximateArrivalTimestamp": round(r.arrived, 3),
                         "Data": base64.b64encode(r.data).decode(), "PartitionKey": r.key}
                        for r in records],
            "MillisBehindLatest": behind}
        log_ = self.engine.logs.shard(stream.name, shard.shard_id)
        if shard.closed_at is not None and following >= log_.next_seq:
            # The parent is read to its end: its children take over (no NextShardIterator).
            result["ChildShards"] = [
                {"ShardId": c.shard_id, "ParentShards": [p for p in (c.parent,
                                                                     c.adjacent_parent) if p],
                 "HashKeyRange": {"StartingHashKey": c.start_hash,
                                  "EndingHashKey": c.end_hash}}
                for c in service.children_of(service.shards_of(session, stream),
                                             shard.shard_id)]
        else:
            result["NextShardIterator"] = self.engine.seal(Iterator(
                stream.name, shard.shard_id, following, datetime.now(UTC).timestamp()))
        return result

    def SplitShard(self, session: Session, request: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(session, request, "streams:Write")
        service.split_shard(session, self.engine, stream.name,
                            str(request.get("ShardToSplit") or ""),
                            str(request.get("NewStartingHashKey") or "") or None)
        self._audit("streams:Write", f"stream/{stream.name}")
        return {}

    def MergeShards(self, session: Session, request: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(session, request, "streams:Write")
        service.merge_shards(session, self.engine, stream.name,
                             str(request.get("ShardToMerge") or ""),
                             str(request.get("AdjacentShardToMerge") or ""))
        self._audit("streams:Write", f"stream/{stream.name}")
        return {}

    # --- registered consumers and push subscriptions (enhanced fan-out) -------------------------

    def _consumer(self, session: Session, request: dict[str, Any], action: str
                  ) -> tuple[Stream, Consumer]:
        """The consumer a request names: by ConsumerARN, or by StreamARN and ConsumerName."""
        arn = request.get("ConsumerARN")
        if arn:
            name, consumer, epoch = consumers.parse_arn(str(arn))
            stream = self._stream(session, {"StreamName": name}, action)
            return stream, consumers.find(session, stream, consumer, epoch=epoch)
        if not request.get("StreamARN") or not request.get("ConsumerName"):
            raise KinesisError("InvalidArgumentException", "name the consumer by ConsumerARN, "
                               "or by StreamARN and ConsumerName")
        stream = self._stream(session, request, action)
        return stream, consumers.find(session, stream, str(request["ConsumerName"]))

    def _consumer_doc(self, stream: Stream, consumer: Consumer) -> dict[str, Any]:
        return {"ConsumerName": consumer.name,
                "ConsumerARN": consumers.consumer_arn(stream.name, consumer),
                "ConsumerStatus": "ACTIVE",
                "ConsumerCreationTimestamp": consumer.created_at.timestamp()}

    def RegisterStreamConsumer(self, session: Session,
                               request: dict[str, Any]) -> dict[str, Any]:
        if not request.get("StreamARN"):
            raise KinesisError("ValidationException", "StreamARN is required")
        stream = self._stream(session, request, "streams:Write")
        consumer = consumers.register(session, stream, str(request.get("ConsumerName") or ""))
        self._audit("streams:Write", f"stream/{stream.name}")
        return {"Consumer": self._consumer_doc(stream, consumer)}

    def DescribeStreamConsumer(self, session: Session,
                               request: dict[str, Any]) -> dict[str, Any]:
        stream, consumer = self._consumer(session, request, "streams:Read")
        return {"ConsumerDescription": {**self._consumer_doc(stream, consumer),
                                        "StreamARN": _arn(stream.name)}}

    def ListStreamConsumers(self, session: Session, request: dict[str, Any]) -> dict[str, Any]:
        token = request.get("NextToken")
        after = None
        if token:
            try:
                name, after = json.loads(base64.urlsafe_b64decode(str(token).encode()))
            except (ValueError, TypeError, binascii.Error):
                raise KinesisError("InvalidArgumentException", "NextToken is not one this "
                                   "server gave out") from None
            request = {**request, "StreamName": name}
        elif not request.get("StreamARN"):
            raise KinesisError("ValidationException", "StreamARN is required")
        stream = self._stream(session, request, "streams:Read")
        limit = int(request.get("MaxResults") or 100)
        if not 1 <= limit <= 10_000:
            raise KinesisError("InvalidArgumentException", "MaxResults is 1 to 10000")
        found = [c for c in consumers.list_consumers(session, stream)
                 if after is None or c.name > after]
        result: dict[str, Any] = {"Consumers": [self._consumer_doc(stream, c)
                                                for c in found[:limit]]}
        if len(found) > limit:
            result["NextToken"] = base64.urlsafe_b64encode(
                json.dumps([stream.name, found[limit - 1].name]).encode()).decode()
        return result

    def DeregisterStreamConsumer(self, session: Session,
                                 request: dict[str, Any]) -> dict[str, Any]:
        stream, consumer = self._consumer(session, request, "streams:Write")
        consumers.deregister(session, consumer)
        self._audit("streams:Write", f"stream/{stream.name}")
        return {}

    def SubscribeToShard(self, session: Session, request: dict[str, Any]) -> dict[str, Any]:
        """Where a subscription starts (what :func:`_subscribe` streams from)."""
        if not request.get("ConsumerARN"):
            raise KinesisError("ValidationException", "ConsumerARN is required")
        stream, consumer = self._consumer(session, request, "streams:Read")
        shard_id = request.get("ShardId")
        shard = next((s for s in service.shards_of(session, stream)
                      if s.shard_id == shard_id), None)
        if shard is None:
            raise KinesisError("ResourceNotFoundException",
                               f"shard {shard_id!r} of stream {stream.name!r} does not exist")
        position = request.get("StartingPosition")
        if not isinstance(position, dict):
            raise KinesisError("ValidationException", "StartingPosition is required")
        stamp = position.get("Timestamp")
        start = self.engine.start_seq(
            stream, shard, str(position.get("Type") or ""),
            sequence=str(position["SequenceNumber"]) if position.get("SequenceNumber") else None,
            timestamp=float(stamp) if stamp is not None else None)
        return {"stream": stream, "shard": shard, "consumer": consumer, "start": start,
                "arn": consumers.consumer_arn(stream.name, consumer),
                "log": self.engine.logs.shard(stream.name, shard.shard_id)}


# Errors Kinesis declares inside SubscribeToShard's event stream (boto3 raises them by name);
# any other is sent as an unmodeled error, which boto3 raises by its code all the same.
_IN_STREAM = {"ResourceNotFoundException", "ResourceInUseException",
              "InternalFailureException"}


async def _subscribe(ops: _Ops, found: dict[str, Any], receive: Receive, send: Send,
                     rid: str) -> None:
    """SubscribeToShard, from where ``found`` (:meth:`_Ops.SubscribeToShard`) says: an
    ``initial-response`` event, then a SubscribeToShardEvent for each page of records as they
    are written (an empty one at least every 5 s) for 5 minutes, or until the shard is closed
    and read to its end (its children in ChildShards). Errors before the answer starts are
    raised (and answered as JSON, as every operation's)."""
    stream: Stream = found["stream"]
    shard: Shard = found["shard"]
    consumer_id = found["consumer"].id
    children: list[dict[str, Any]] = []

    def closed() -> bool:
        with ops.running.sessions() as session:
            if session.get(Consumer, consumer_id) is None:
                raise NotFound(f"consumer {found['arn']} was deregistered")
            shards = service.shards_of(session, stream)
            now = next((s for s in shards if s.id == shard.id), None)
            if now is None:
                raise NotFound(f"stream {stream.name!r} was deleted")
            if now.closed_at is None:
                return False
            children[:] = [{"ShardId": c.shard_id,
                            "ParentShards": [p for p in (c.parent, c.adjacent_parent) if p],
                            "HashKeyRange": {"StartingHashKey": c.start_hash,
                                             "EndingHashKey": c.end_hash}}
                           for c in service.children_of(shards, shard.shard_id)]
            return True

    def page(each: push.Page) -> bytes:
        body: dict[str, Any] = {
            "Records": [{"SequenceNumber": service.external_seq(shard, r.seq),
                         "ApproximateArrivalTimestamp": round(r.arrived, 3),
                         "Data": base64.b64encode(r.data).decode(), "PartitionKey": r.key}
                        for r in each.records],
            "MillisBehindLatest": each.millis_behind}
        if each.ended:
            body["ChildShards"] = children
        else:
            body["ContinuationSequenceNumber"] = service.external_seq(shard, each.next_seq - 1)
        return eventstream.event("SubscribeToShardEvent", body)

    def fail(exc: Exception) -> bytes:
        error = (_from_cumulo(exc) if isinstance(exc, CumuloError)
                 else KinesisError("InternalFailureException", "an internal error: subscribe "
                                   "again from the last ContinuationSequenceNumber", 500))
        if error.kind in _IN_STREAM:
            return eventstream.exception(error.kind, error.message)
        return eventstream.error(error.kind, error.message)

    subscriptions = ops.engine.subscriptions
    release = subscriptions.acquire((found["arn"], shard.shard_id))
    try:
        follower = push.Follower(found["log"], found["start"], closed=closed,
                                 readers=subscriptions.readers())
        subscriptions.follow((found["arn"], shard.shard_id), follower)
        await push.respond(send, receive, follower, content_type=eventstream.CONTENT_TYPE,
                           head=eventstream.event("initial-response", {}), page=page, fail=fail,
                           headers=[(b"x-amzn-requestid", rid.encode())])
    finally:
        release()
