"""An endpoint replica's request path: a bare ASGI app that scores rows with MLflow models.

One replica holds every variant of its endpoint. A request is read into columns
(:mod:`cumulo.serving.formats`), checked against its variant's signature, and queued; a batcher
per variant combines the queued requests into one model call, up to ``max_batch_size`` rows or
``max_wait_ms`` after the first, so that 64 concurrent single-row requests cost one pandas
frame and one ``predict``, not 64. A model that raises on a batch is called again request by
request, so that only the request it cannot score fails (500, with an error id); the replica
keeps serving.

Routes: ``POST /invocations`` (SageMaker's path) and ``POST /endpoints/NAME/invocations``,
``GET /ping``. The header ``X-Cumulo-Variant`` pins a request to a variant; the answer names
the variant that served it in the same header.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from cumulo.serving.formats import SINGLE, BadInput, Column, Rows, parse

__all__ = ["ReplicaApp", "Variant"]

log = logging.getLogger("cumulo.serving")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
DEFAULT_MAX_BODY = 6 * 1024 * 1024  # SageMaker's limit for a real-time request
INLINE_CALL_S = 0.002  # models quicker than this per call run on the event loop


@dataclass(eq=False)
class Variant:
    """A model behind the endpoint, with its share of the traffic."""

    name: str
    predict: Callable[[Any], Any]  # a pandas frame in, predictions out
    schema: list[Column] | None
    weight: float = 1.0
    shadow: bool = False  # sent a copy of live traffic; its answers are recorded, not returned
    # When set, predict takes a 2-D float array with these columns in this order, not a
    # pandas frame (a scikit-learn estimator that does not select columns by name: the frame
    # and sklearn's checks of it cost more than the model's own arithmetic).
    matrix: list[str] | None = None
    # The model's recent time per call: quick models are called on the event loop, slow ones
    # in a thread, so that requests keep being read while they run.
    call_s: float = 0.0
    queue: list[tuple[Rows, asyncio.Future[Any]]] = field(default_factory=list)
    queued_rows: int = 0
    flush: asyncio.TimerHandle | None = None


class ReplicaApp:
    def __init__(self, endpoint: str, variants: list[Variant], *, max_batch_size: int = 64,
                 max_wait_ms: float = 2.0, max_body: int = DEFAULT_MAX_BODY,
                 on_result: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.endpoint = endpoint
        self.set_variants(variants)
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_body = max_body
        # Each request's outcome (variant, status, latencies): metrics and data capture.
        self.on_result = on_result or (lambda _: None)
        # Data capture: this share (0-1) of requests is passed, with its body and answer, to
        # on_capture.
        self.capture_share = 0.0
        self.on_capture: Callable[[dict[str, Any]], None] = lambda _: None
        self.in_flight = 0
        self._scoring = 0  # requests whose batch is with the model now
        # For load(): the time-weighted sum of in_flight since it was last read.
        self._area, self._changed = 0.0, time.perf_counter()
        self._read_at = self._changed
        self._paths = {b"/invocations", f"/endpoints/{endpoint}/invocations".encode()}

    def set_variants(self, variants: list[Variant]) -> None:
        """Serve these variants from now on (a traffic shift changes their weights); requests
        already queued for a variant finish with it."""
        if not any(not v.shadow and v.weight > 0 for v in variants):
            raise ValueError("an endpoint needs a variant that takes traffic (weight above 0)")
        self.variants = {v.name: v for v in variants}
        self.live = [v for v in variants if not v.shadow and v.weight > 0]
        self.shadows = [v for v in variants if v.shadow]

    def _count(self, change: int) -> None:
        now = time.perf_counter()
        self._area += self.in_flight * (now - self._changed)
        self._changed = now
        self.in_flight += change

    def load(self) -> float:
        """Requests in flight on average since the last call: what the autoscaler scales on
        (a snapshot would miss the gaps between a client's requests)."""
        self._count(0)
        now = self._changed
        average = self._area / max(now - self._read_at, 1e-9)
        self._area, self._read_at = 0.0, now
        return average

    # --- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - websockets are not served
            return
        path = scope.get("raw_path") or scope["path"].encode()
        method = scope["method"]
        if path == b"/ping" and method == "GET":
            await _answer(send, 200, b'{"status":"ok"}')
            return
        if path.split(b"?", 1)[0] not in self._paths:
            await _error(send, 404, f"no such path {scope['path']!r}: POST /invocations")
            return
        if method != "POST":
            await _error(send, 405, "invocations take POST")
            return
        await self._invoke(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        self._count(1)
        variant: Variant | None = None
        status, model_s = 500, 0.0
        body = answer = b""
        headers: dict[bytes, bytes] = {}
        try:
            headers = dict(scope["headers"])
            variant = self._choose(headers.get(b"x-cumulo-variant"))
            body = await _read_body(receive, headers, self.max_body)
            rows = parse(body, headers.get(b"content-type", b"").decode("latin-1"),
                         variant.schema)
            predictions, model_s = await self._score(variant, rows)
            status = 200
            answer = orjson.dumps({"predictions": predictions},
                                  option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
            await _answer(send, 200, answer, variant=variant.name)
            for shadow in self.shadows:  # after the answer has gone: mirrored, not awaited
                asyncio.get_running_loop().create_task(self._mirror(shadow, body, headers))
        except _HTTPError as exc:
            status = exc.status
            answer = await _error(send, exc.status, str(exc),
                                  variant=variant.name if variant else None)
        except BadInput as exc:
            status = 400
            answer = await _error(send, 400, str(exc), field=exc.field,
                                  variant=variant.name if variant else None)
        except _ModelError as exc:
            status = 500
            answer = await _error(send, 500, f"the model raised {exc.error}",
                                  error_id=exc.error_id,
                                  variant=variant.name if variant else None)
        finally:
            self._count(-1)
            total = time.perf_counter() - started
            result = {"variant": variant.name if variant else None, "status": status,
                      "latency_s": total, "model_s": model_s, "shadow": False}
            self.on_result(result)
            if self.capture_share and body and random.random() < self.capture_share:
                self.on_capture({**result, "at": time.time(), "request": body,
                                 "content_type": headers.get(b"content-type", b""),
                                 "response": answer})

    def _choose(self, pinned: bytes | None) -> Variant:
        if pinned:
            name = pinned.decode("latin-1")
            variant = self.variants.get(name)
            if variant is None:
                raise _HTTPError(400, f"no variant {name!r} on endpoint {self.endpoint!r}; "
                                 f"variants: {', '.join(self.variants)}")
            return variant
        if len(self.live) == 1:
            return self.live[0]
        return random.choices(self.live, weights=[v.weight for v in self.live])[0]

    async def _mirror(self, shadow: Variant, body: bytes, headers: dict[bytes, bytes]) -> None:
        started, status, model_s = time.perf_counter(), 500, 0.0
        try:
            rows = parse(body, headers.get(b"content-type", b"").decode("latin-1"),
                         shadow.schema)
            _, model_s = await self._score(shadow, rows)
            status = 200
        except BadInput:
            status = 400
        except _ModelError:
            status = 500
        self.on_result({"variant": shadow.name, "status": status, "shadow": True,
                        "latency_s": time.perf_counter() - started, "model_s": model_s})

    # --- batching ---------------------------------------------------------------------------

    async def _score(self, variant: Variant, rows: Rows) -> tuple[list[Any], float]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        variant.queue.append((rows, future))
        variant.queued_rows += rows.count
        # Waiting is only worth it while other requests are on their way in: once every
        # request in flight is queued or being scored, none can join.
        queued = sum(len(v.queue) for v in self.variants.values())
        if variant.queued_rows >= self.max_batch_size or (
                queued + self._scoring >= self.in_flight):
            self._flush(variant)
        elif variant.flush is None:
            variant.flush = loop.call_later(self.max_wait, self._flush, variant)
        result: tuple[list[Any], float] = await future
        return result

    def _flush(self, variant: Variant) -> None:
        if variant.flush is not None:
            variant.flush.cancel()
            variant.flush = None
        batch, variant.queue, variant.queued_rows = variant.queue, [], 0
        if batch:
            asyncio.get_running_loop().create_task(self._run_batch(variant, batch))

    async def _run_batch(self, variant: Variant,
                         batch: list[tuple[Rows, asyncio.Future[Any]]]) -> None:
        started = time.perf_counter()
        self._scoring += len(batch)
        try:
            outputs = await self._call(variant, [rows for rows, _ in batch])
        except Exception:  # one of them the model cannot score: find which, one by one
            for rows, future in batch:
                one = time.perf_counter()
                try:
                    out = await self._call(variant, [rows])
                    _settle(future, (out[0], time.perf_counter() - one))
                except Exception as exc:
                    error_id = uuid.uuid4().hex[:12]
                    log.warning("endpoint %s variant %s: error %s: %r", self.endpoint,
                                variant.name, error_id, exc)
                    if not future.done():
                        future.set_exception(_ModelError(exc, error_id))
            return
        finally:
            self._scoring -= len(batch)
        model_s = time.perf_counter() - started
        variant.call_s = model_s if not variant.call_s else 0.8 * variant.call_s + 0.2 * model_s
        for (_, future), out in zip(batch, outputs, strict=True):
            _settle(future, (out, model_s))

    async def _call(self, variant: Variant, requests: list[Rows]) -> list[list[Any]]:
        if variant.call_s < INLINE_CALL_S:  # handing it to a thread would cost more
            return _predict_batch(variant.predict, requests, variant.matrix)
        return await asyncio.to_thread(_predict_batch, variant.predict, requests,
                                       variant.matrix)


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _predict_batch(predict: Callable[[Any], Any], requests: list[Rows],
                   matrix: list[str] | None = None) -> list[list[Any]]:
    """One model call for several requests' rows; the predictions split back per request."""
    import numpy as np

    names = matrix or list(requests[0].columns)
    if len(requests) == 1:
        columns = requests[0].columns
    else:
        columns = {n: [v for r in requests for v in r.columns.get(n, [None] * r.count)]
                   for n in names}
    total = sum(r.count for r in requests)
    if matrix is not None:
        data: Any = np.array([columns[n] for n in matrix], dtype=np.float64).T
    elif names == [SINGLE]:  # plain values (texts for a pipeline): a list, as MLflow passes it
        data = list(columns[SINGLE])
    else:
        import pandas as pd

        data = pd.DataFrame(columns, columns=names)
    predicted = predict(data)
    values = _to_list(predicted)
    if len(values) != total:
        raise ValueError(f"the model returned {len(values)} predictions for {total} rows")
    out, start = [], 0
    for r in requests:
        out.append(values[start:start + r.count])
        start += r.count
    return out


def _to_list(predicted: Any) -> list[Any]:
    if hasattr(predicted, "to_dict") and hasattr(predicted, "columns"):  # a DataFrame
        return list(predicted.to_dict(orient="records"))
    if hasattr(predicted, "tolist"):
        return list(predicted.tolist())
    return list(predicted)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _ModelError(Exception):
    def __init__(self, error: BaseException, error_id: str) -> None:
        super().__init__(str(error))
        self.error = f"{type(error).__name__}: {error}"
        self.error_id = error_id


async def _read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _HTTPError(413, f"the body is {int(declared)} bytes; the limit is {limit} "
                         "(send bulk data as a batch prediction: cumulo endpoints batch)")
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _HTTPError(413, f"the body is over the limit of {limit} bytes (send bulk "
                             "data as a batch prediction: cumulo endpoints batch)")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


async def _answer(send: Send, status: int, body: bytes, *, variant: str | None = None) -> None:
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if variant:
        headers.append((b"x-cumulo-variant", variant.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, status: int, message: str, *, field: str | None = None,
                 error_id: str | None = None, variant: str | None = None) -> bytes:
    doc: dict[str, Any] = {"error": {"code": _CODES.get(status, "error"), "message": message}}
    if field:
        doc["error"]["field"] = field
    if error_id:
        doc["error"]["error_id"] = error_id
    body = orjson.dumps(doc)
    await _answer(send, status, body, variant=variant)
    return body


_CODES = {400: "invalid", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
          500: "model_error"}
