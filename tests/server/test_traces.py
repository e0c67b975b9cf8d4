"""OpenTelemetry traces (``otel_endpoint``) sent to a real OTLP/HTTP receiver started here: a
small HTTP server that keeps what is POSTed to /v1/traces, decoded with opentelemetry-proto.
The same server runs with ``metrics = false``: /metrics is then off, and says so."""

from __future__ import annotations

import gzip
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from cumulo.config import load_settings
from cumulo.errors import Invalid
from tests.services import Cumulo, register_churn, start_cumulo


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.exports: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def spans(self) -> list[dict[str, Any]]:
        """Every span received: its name, kind, status code and attributes."""
        out = []
        for export in list(self.exports):
            for resource in export.resource_spans:
                service = {a.key: a.value.string_value for a in resource.resource.attributes}
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        attributes = {a.key: getattr(a.value, a.value.WhichOneof("value"))
                                      for a in span.attributes}
                        out.append({"name": span.name, "kind": span.kind,
                                    "status": span.status.code, "service": service,
                                    "attributes": attributes,
                                    "trace_id": span.trace_id.hex(),
                                    "parent_span_id": span.parent_span_id.hex()})
        return out


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.paths.append(self.path)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        self.server.exports.append(export)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Cumulo]:
    cumulo = start_cumulo(tmp_path_factory.mktemp("traces") / ".cumulo", {
        "CUMULO_OTEL_ENDPOINT": receiver.url, "CUMULO_METRICS": "false"})
    yield cumulo
    cumulo.stop()


def _span_of(receiver: Receiver, rid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while not (mine := [s for s in receiver.spans()
                        if s["attributes"].get("cumulo.request_id") == rid]):
        assert time.monotonic() < deadline, receiver.spans()
        time.sleep(0.2)
    (span,) = mine
    return span


def test_each_request_is_a_span_with_its_route_and_request_id(traced: Cumulo,
                                                              receiver: Receiver) -> None:
    rid = "span-" + uuid.uuid4().hex[:12]
    answer = httpx.get(f"{traced.url}/api/v1/jobs/nope", headers={
        "Authorization": f"Bearer {traced.token}", "X-Request-Id": rid})
    assert answer.status_code == 404
    span = _span_of(receiver, rid)
    assert span["name"] == "GET /api/v1/jobs/{job_id}"
    assert span["kind"] == 2  # SPAN_KIND_SERVER
    assert span["service"]["service.name"] == "cumulo"
    assert span["attributes"]["http.route"] == "/api/v1/jobs/{job_id}"
    assert span["attributes"]["http.response.status_code"] == 404
    assert span["attributes"]["url.path"] == "/api/v1/jobs/nope"
    assert span["status"] == 0  # unset: a 404 is the caller's, not the server's fault
    assert set(receiver.paths) == {"/v1/traces"}


def test_a_callers_trace_goes_on_through_invocations(traced: Cumulo,
                                                     receiver: Receiver) -> None:
    """A caller that sends a W3C traceparent gets the server's span in its own trace, as the
    child of its span; invocations through the control plane are spans too (with traces on
    they take the app's way, not the short one); a malformed traceparent starts a new trace."""
    register_churn(traced, "churn-traced", "traces")
    c = traced.client()
    c.endpoints.create("traced", "churn-traced:1", min_replicas=1, wait=True)
    trace, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    rid = "invoke-" + uuid.uuid4().hex[:12]
    answer = httpx.post(f"{traced.url}/endpoints/traced/invocations", headers={
        "Authorization": f"Bearer {traced.token}", "X-Request-Id": rid,
        "traceparent": f"00-{trace}-{parent}-01"},
        json={"dataframe_records": [{"tenure": 3, "spend": 25.0}]}, timeout=60)
    assert answer.status_code == 200, answer.text
    span = _span_of(receiver, rid)
    assert span["name"] == "POST /endpoints/{name}/invocations"
    assert (span["trace_id"], span["parent_span_id"]) == (trace, parent)
    assert span["attributes"]["http.response.status_code"] == 200

    rid = "garbled-" + uuid.uuid4().hex[:12]
    answer = httpx.get(f"{traced.url}/api/v1/jobs/nope", headers={
        "Authorization": f"Bearer {traced.token}", "X-Request-Id": rid,
        "traceparent": f"00-{trace}-nonsense"})
    assert answer.status_code == 404
    span = _span_of(receiver, rid)
    assert span["trace_id"] != trace and span["parent_span_id"] == ""
    c.endpoints.delete("traced")


def test_metrics_can_be_turned_off(traced: Cumulo) -> None:
    off = httpx.get(f"{traced.url}/metrics", headers={"Authorization": f"Bearer {traced.token}"})
    assert off.status_code == 404 and "metrics are off" in off.text, off.text


def test_a_bad_collector_address_is_refused(tmp_path: Path) -> None:
    env = {"CUMULO_HOME": str(tmp_path / "h"), "CUMULO_OTEL_ENDPOINT": "collector:4318"}
    with pytest.raises(Invalid, match="otel_endpoint 'collector:4318' is not an OTLP/HTTP"):
        load_settings(env)
    with pytest.raises(Invalid, match="setting metrics: 'maybe' is not true or false"):
        load_settings({"CUMULO_HOME": str(tmp_path / "h"), "CUMULO_METRICS": "maybe"})
    settings = load_settings({"CUMULO_HOME": str(tmp_path / "h")})
    assert settings.metrics is True and settings.otel_endpoint == ""  # the defaults
