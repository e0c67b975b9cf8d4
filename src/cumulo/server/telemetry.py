"""Watching the server: HTTP requests counted and timed for Prometheus, ``/metrics`` (this
process's metrics and every service's, :mod:`cumulo.metrics`), and OpenTelemetry spans when
a collector is configured (``otel_endpoint``).

The request's route is its template (``/api/v1/jobs/{job_id}``), never its path, so the number
of series stays bounded; AWS's wire protocols are ``s3`` and ``kinesis``, a path no route
knows ``unmatched``. Each request costs a couple of microseconds (:class:`HttpStats`);
``metrics = false`` leaves even that out.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cumulo import metrics
from cumulo.compute.metrics import scraped as jobs_scraped
from cumulo.errors import NotFound
from cumulo.lake import metrics as sql_metrics
from cumulo.logs import request_id
from cumulo.permissions import allow
from cumulo.pipelines import metrics as pipelines_metrics
from cumulo.services import services
from cumulo.serving.metrics import scraped as endpoints_scraped
from cumulo.storage.metrics import scraped as storage_scraped

__all__ = ["HTTP", "ROUTE_KEY", "HttpStats", "Traces", "install_traces", "metrics_router",
           "observe_http", "observe_scope", "route_of"]

log = logging.getLogger("cumulo.server")

# Services' metrics that move as work happens, declared from the start (a counter shows at 0
# before its first event, so a dashboard's query finds it): their modules, imported here.
DECLARED = (sql_metrics, pipelines_metrics)

ROUTE_KEY = "cumulo.route"  # a scope's route label where no Starlette route answers it


class HttpStats(Collector):
    """Requests by method, route and status, and their durations by method and route, kept
    as plain numbers: every request is observed on the event loop's one thread, so no lock is
    needed, and an observation costs a dictionary lookup, a bisection and three additions
    (prometheus_client's own Counter and Histogram take locks: several times that)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        # (method, route) -> a count per bucket (the last: over the last bound), and the sum
        self.buckets: dict[tuple[str, str], list[int]] = {}
        self.sums: dict[tuple[str, str], float] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        timed = (method, route)
        row = self.buckets.get(timed)
        if row is None:
            row = self.buckets[timed] = [0] * (len(_BOUNDS) + 1)
            self.sums[timed] = 0.0
        row[bisect.bisect_left(_BOUNDS, seconds)] += 1
        self.sums[timed] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "cumulo_http_requests", "HTTP requests answered, by method, route template and "
            "status", labels=("method", "route", "status"))
        for (method, route, status), count in sorted(dict(self.counts).items()):
            requests.add_metric((method, route, str(status)), count)
        durations = HistogramMetricFamily(
            "cumulo_http_request_duration_seconds",
            "how long HTTP requests took to answer, by method and route template",
            labels=("method", "route"))
        for (method, route), row in sorted(dict(self.buckets).items()):
            cumulative, running = [], 0
            for le, count in zip(_LE, list(row), strict=True):  # a copy: the loop adds on
                running += count
                cumulative.append((le, running))
            durations.add_metric((method, route), cumulative, self.sums[(method, route)])
        yield requests
        yield durations


_BOUNDS = metrics.LATENCY_BUCKETS
_LE = [repr(float(b)) for b in _BOUNDS] + ["+Inf"]
HTTP = HttpStats()
metrics.REGISTRY.register(HTTP)


def route_of(scope: Scope) -> str:
    route = scope.get("route")
    if route is None:
        return str(scope.get(ROUTE_KEY, "unmatched"))
    template = _templates.get(id(route))
    if template is None:
        template = _templates[id(route)] = _template(route, scope["path"])
    return template


# Each route's whole template, found on its first request: FastAPI keeps a route's own path
# (``/jobs/{job_id}``), not the prefixes of the routers it was included in (``/api/v1``).
# Routes live as long as the app, so their ids stay theirs.
_templates: dict[int, str] = {}


def _template(route: Any, path: str) -> str:
    own = str(getattr(route, "path_format", None) or getattr(route, "path", "") or "")
    regex = getattr(route, "path_regex", None)
    if regex is None or not own:
        return own or "unmatched"
    # the prefix is the static start of the path before the part the route's pattern matches
    for i, char in enumerate(path):
        if char == "/" and regex.match(path[i:]):
            return path[:i] + own
    return own


def observe_http(method: str, route: str, status: int, seconds: float) -> None:
    HTTP.observe(method, route, status, seconds)


def observe_scope(scope: Scope, status: int, seconds: float) -> None:
    """:func:`observe_http` for a request the app answered (server/middleware.py)."""
    observe_http(scope["method"], route_of(scope), status, seconds)


metrics_router = APIRouter(tags=["status"])


@metrics_router.get("/metrics",
    dependencies=[allow("metrics:Read", "metrics")],
    summary="Every service's metrics, in Prometheus' text format",
                    response_class=Response,
                    responses={200: {"content": {"text/plain": {}}}})
def prometheus(request: Request) -> Response:
    running = services(request)
    if not running.settings.metrics:
        raise NotFound("metrics are off on this server (setting metrics = false); "
                       "turn them on with CUMULO_METRICS=true")
    loops = running.sessions
    body = metrics.exposition([
        jobs_scraped(loops), storage_scraped(loops),
        endpoints_scraped(running.endpoints, loops)])
    return Response(body, media_type=metrics.CONTENT_TYPE)


class Traces:
    """Each HTTP request as an OpenTelemetry span (server kind), with its route, status and
    request id, sent in batches to the collector at ``endpoint`` over OTLP/HTTP. A request
    that carries a W3C ``traceparent`` (the caller traces too) is a span of the caller's trace,
    a child of the caller's span. Only made when ``otel_endpoint`` is set: OpenTelemetry is
    imported then, not before."""

    def __init__(self, app: ASGIApp, endpoint: str, service: str = "cumulo") -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.app = app
        self._propagator = TraceContextTextMapPropagator()
        # Every request is a span, whatever the caller's own sampler chose for its trace
        # (its traceparent's flags): the server's spans are the server operator's.
        provider = TracerProvider(resource=Resource.create({"service.name": service}),
                                  sampler=ALWAYS_ON)
        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"), schedule_delay_millis=500))
        self.provider = provider
        self.tracer = provider.get_tracer("cumulo.server")
        self._kind, self._status, self._error = SpanKind.SERVER, Status, StatusCode.ERROR

    def shutdown(self) -> None:
        self.provider.shutdown()  # sends what is left

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        code = 500
        carrier = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in scope["headers"]
                   if name in (b"traceparent", b"tracestate")}
        # The caller's trace, if it sent one (a malformed traceparent starts a new trace)
        parent = self._propagator.extract(carrier) if carrier else None
        with self.tracer.start_as_current_span(
                f"{scope['method']} {scope['path']}", context=parent, kind=self._kind,
                record_exception=False, set_status_on_exception=False) as span:

            async def send_status(message: Message) -> None:
                nonlocal code
                if message["type"] == "http.response.start":
                    code = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_status)
            finally:
                route = route_of(scope)
                span.update_name(f"{scope['method']} {route}")
                span.set_attributes({
                    "http.request.method": scope["method"], "url.path": scope["path"],
                    "http.route": route, "http.response.status_code": code,
                    "cumulo.request_id": request_id.get() or ""})
                if code >= 500:
                    span.set_status(self._status(self._error))


def install_traces(app: Any, endpoint: str) -> Callable[[], None]:
    """Wrap ``app``'s middleware stack in :class:`Traces`; returns what flushes and stops it."""
    holder: dict[str, Traces] = {}

    def factory(inner: ASGIApp) -> Traces:
        holder["traces"] = Traces(inner, endpoint)
        return holder["traces"]

    app.add_middleware(factory)

    def stop() -> None:
        if "traces" in holder:
            holder["traces"].shutdown()

    return stop

