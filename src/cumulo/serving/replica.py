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

An invocation passes the replica's :class:`~cumulo.serving.gate.Gate` first (its Host header,
its token), whichever front it came by; a refused one is answered at once, and is neither
counted nor captured.
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
from cumulo.serving.gate import Gate

__all__ = ["ReplicaApp", "Variant", "too_large"]

log = logging.getLogger("cumulo.serving")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
DEFAULT_MAX_BODY = 6 * 1024 * 1024  # SageMaker's limit for a real-time request
INLINE_CALL_S = 0.002  # models quicker than this per call run on the event loop
Reply = Callable[[int, bytes, "str | None"], None]  # status, body, the variant that served it
Scored = Callable[[Any, float, "_ModelError | None"], None]  # predictions, model s, error


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
    queue: list[tuple[Rows, Scored]] = field(default_factory=list)
    queued_rows: int = 0
    flush: asyncio.TimerHandle | None = None


class ReplicaApp:
    def __init__(self, endpoint: str, variants: list[Variant], *, max_batch_size: int = 64,
                 max_wait_ms: float = 2.0, max_body: int = DEFAULT_MAX_BODY,
                 on_result: Callable[[dict[str, Any]], None] | None = None,
                 gate: Gate | None = None) -> None:
        self.endpoint = endpoint
        # Who may invoke (Host, token). None checks nothing: for a ReplicaApp used in-process
        # only; the replica's fronts (cumulo.serving.worker, rayserve) always give one.
        self.gate = gate
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
        self._check_due = False  # a _check is scheduled
        self._queued: set[Variant] = set()  # variants with requests waiting for their model
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
        routed = self.route(scope["method"].encode(), path)
        if routed is not None:
            await _answer(send, *routed)
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
        headers = dict(scope["headers"])
        body, error = b"", None
        try:
            body = await _read_body(receive, headers, self.max_body)
        except _HTTPError as exc:
            error = exc
        answered: asyncio.Future[tuple[int, bytes, str | None]] = \
            asyncio.get_running_loop().create_future()
        self.invoke(headers, body, lambda *reply: answered.set_result(reply), error=error,
                    started=started)
        status, answer, variant = await answered
        await _answer(send, status, answer, variant=variant)

    # --- the request path, shared by every front (ASGI, cumulo.serving.http, Ray Serve) ---

    def route(self, method: bytes, path: bytes) -> tuple[int, bytes] | None:
        """The answer to a request that is not an invocation (a ping, a wrong path or
        method), or None for an invocation."""
        if path == b"/ping" and method in (b"GET", b"HEAD"):
            return 200, b'{"status":"ok"}'
        if path.split(b"?", 1)[0] not in self._paths:
            return 404, _error_body(404, f"no such path {path.decode('latin-1')!r}: "
                                    "POST /invocations")
        if method != b"POST":
            return 405, _error_body(405, "invocations take POST")
        return None

    def invoke(self, headers: dict[bytes, bytes], body: bytes, reply: Reply, *,
               error: Exception | None = None, started: float | None = None) -> None:
        """Score one request; ``reply(status, body, variant)`` is called once, now or when
        its batch has been scored. ``error`` is what reading the request found wrong (a body
        over the limit): answered as such, and counted. A request the gate refuses is answered
        with why, and not counted."""
        gate = self.gate
        if gate is not None and (refused := gate.check(headers)) is not None:
            status, message = refused
            reply(status, _error_body(status, message), None)
            return
        request = _Request(self, headers, body, reply, started)
        try:
            variant = request.variant = self._choose(headers.get(b"x-cumulo-variant"))
            if error is not None:
                raise error
            rows = parse(body, headers.get(b"content-type", b"").decode("latin-1"),
                         variant.schema)
        except _HTTPError as exc:
            request.fail(exc.status, _error_body(exc.status, str(exc)))
            return
        except BadInput as exc:
            request.fail(400, _error_body(400, str(exc), field=exc.field))
            return
        except Exception as exc:  # a fault of ours: this request fails, the replica serves on
            error_id = uuid.uuid4().hex[:12]
            log.exception("endpoint %s: error %s", self.endpoint, error_id, extra={
                "request_id": headers.get(b"x-request-id", b"").decode("latin-1") or None})
            request.fail(500, _error_body(500, f"internal error: {exc!r}", error_id=error_id))
            return
        self._enqueue(variant, rows, request.scored)

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

    def _mirror(self, shadow: Variant, headers: dict[bytes, bytes], body: bytes) -> None:
        started = time.perf_counter()

        def scored(out: list[Any] | None, model_s: float, error: _ModelError | None) -> None:
            self.on_result({"variant": shadow.name, "status": 500 if error else 200,
                            "shadow": True, "latency_s": time.perf_counter() - started,
                            "model_s": model_s})

        try:
            rows = parse(body, headers.get(b"content-type", b"").decode("latin-1"),
                         shadow.schema)
        except BadInput:
            self.on_result({"variant": shadow.name, "status": 400, "shadow": True,
                            "latency_s": time.perf_counter() - started, "model_s": 0.0})
            return
        self._enqueue(shadow, rows, scored)

    # --- batching ---------------------------------------------------------------------------

    def _enqueue(self, variant: Variant, rows: Rows, done: Scored) -> None:
        variant.queue.append((rows, done))
        variant.queued_rows += rows.count
        self._queued.add(variant)
        if variant.queued_rows >= self.max_batch_size:
            self._flush(variant)
        elif not self._check_due:
            # Decided once the event loop has read everything that arrived with this request:
            # requests that came in together are scored together.
            self._check_due = True
            asyncio.get_running_loop().call_soon(self._check)

    def _check(self) -> None:
        """Send each variant's queue to its model, or wait for more. Waiting is only worth it
        while other requests are on their way in: once every request in flight is queued or
        being scored, none can join."""
        self._check_due = False
        loop = None
        queued = sum(len(v.queue) for v in self._queued)
        for variant in list(self._queued):
            if queued + self._scoring >= self.in_flight:
                self._flush(variant)
            elif variant.flush is None:
                loop = loop or asyncio.get_running_loop()
                variant.flush = loop.call_later(self.max_wait, self._flush, variant)

    def _flush(self, variant: Variant) -> None:
        if variant.flush is not None:
            variant.flush.cancel()
            variant.flush = None
        batch, variant.queue, variant.queued_rows = variant.queue, [], 0
        self._queued.discard(variant)
        if not batch:
            return
        if variant.call_s < INLINE_CALL_S:  # handing it to a thread would cost more
            self._scoring += len(batch)
            try:
                results = self._score_batch(variant, batch)
            finally:
                self._scoring -= len(batch)
            _deliver(batch, results)
        else:
            asyncio.get_running_loop().create_task(self._run_threaded(variant, batch))

    async def _run_threaded(self, variant: Variant, batch: list[tuple[Rows, Scored]]) -> None:
        self._scoring += len(batch)
        try:
            results = await asyncio.to_thread(self._score_batch, variant, batch)
        finally:
            self._scoring -= len(batch)
        _deliver(batch, results)

    def _score_batch(self, variant: Variant, batch: list[tuple[Rows, Scored]]
                     ) -> list[tuple[Any, float, _ModelError | None]]:
        """Each request's (predictions, model seconds, error): one model call for the batch,
        or, when that raises, one call per request, so that only the request the model cannot
        score fails."""
        started = time.perf_counter()
        try:
            outputs = _predict_batch(variant.predict, [rows for rows, _ in batch],
                                     variant.matrix)
        except Exception:  # one of them the model cannot score: find which, one by one
            results: list[tuple[Any, float, _ModelError | None]] = []
            for rows, _ in batch:
                one = time.perf_counter()
                try:
                    out = _predict_batch(variant.predict, [rows], variant.matrix)
                    results.append((out[0], time.perf_counter() - one, None))
                except Exception as exc:
                    error_id = uuid.uuid4().hex[:12]
                    log.warning("endpoint %s variant %s: error %s: %r", self.endpoint,
                                variant.name, error_id, exc)
                    results.append((None, time.perf_counter() - one,
                                    _ModelError(exc, error_id)))
            return results
        model_s = time.perf_counter() - started
        variant.call_s = model_s if not variant.call_s else 0.8 * variant.call_s + 0.2 * model_s
        return [(out, model_s, None) for out in outputs]


class _Request:
    """One invocation on its way through the replica: its timing, and its answer."""

    __slots__ = ("app", "body", "headers", "reply", "started", "variant")

    def __init__(self, app: ReplicaApp, headers: dict[bytes, bytes], body: bytes,
                 reply: Reply, started: float | None) -> None:
        self.app, self.headers, self.body, self.reply = app, headers, body, reply
        self.started = started if started is not None else time.perf_counter()
        self.variant: Variant | None = None
        app._count(1)

    def scored(self, predictions: Any, model_s: float, error: _ModelError | None) -> None:
        if error is not None:
            self.fail(500, _error_body(500, f"the model raised {error.error}",
                                       error_id=error.error_id), model_s)
            return
        answer = orjson.dumps({"predictions": predictions},
                              option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
        self._finish(200, answer, model_s)
        for shadow in self.app.shadows:  # after the answer: mirrored, not waited for
            self.app._mirror(shadow, self.headers, self.body)

    def fail(self, status: int, answer: bytes, model_s: float = 0.0) -> None:
        self._finish(status, answer, model_s)

    def _finish(self, status: int, answer: bytes, model_s: float) -> None:
        app, name = self.app, self.variant.name if self.variant else None
        try:
            self.reply(status, answer, name)
        except Exception:  # the client's side is gone; the request is still counted
            log.debug("endpoint %s: reply failed", app.endpoint, exc_info=True)
        app._count(-1)
        result = {"variant": name, "status": status,
                  "latency_s": time.perf_counter() - self.started, "model_s": model_s,
                  "shadow": False}
        app.on_result(result)
        if app.capture_share and self.body and random.random() < app.capture_share:
            app.on_capture({**result, "at": time.time(), "request": self.body,
                            "content_type": self.headers.get(b"content-type", b""),
                            "response": answer})


def _deliver(batch: list[tuple[Rows, Scored]],
             results: list[tuple[Any, float, _ModelError | None]]) -> None:
    for (_, done), (out, model_s, error) in zip(batch, results, strict=True):
        try:
            done(out, model_s, error)
        except Exception:  # pragma: no cover - one request's answer must not stop the rest
            log.exception("delivering a prediction failed")


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


def too_large(size: int, limit: int, *, declared: bool = False) -> _HTTPError:
    """The 413 for a body of ``size`` bytes (as its Content-Length says, or as read so far)."""
    said = f"the body is {size} bytes; the limit is {limit}" if declared else \
        f"the body is over the limit of {limit} bytes"
    return _HTTPError(413, f"{said} (send bulk data as a batch prediction: cumulo endpoints "
                      "batch)")


async def _read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit, declared=True)
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(size, limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


async def _answer(send: Send, status: int, body: bytes, *, variant: str | None = None) -> None:
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if variant:
        headers.append((b"x-cumulo-variant", variant.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error_body(status: int, message: str, *, field: str | None = None,
                error_id: str | None = None) -> bytes:
    doc: dict[str, Any] = {"error": {"code": _CODES.get(status, "error"), "message": message}}
    if field:
        doc["error"]["field"] = field
    if error_id:
        doc["error"]["error_id"] = error_id
    return orjson.dumps(doc)


_CODES = {400: "invalid", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
          413: "too_large", 414: "too_large", 421: "misdirected", 431: "too_large",
          500: "model_error"}
