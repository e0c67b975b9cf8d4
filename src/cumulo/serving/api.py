"""REST routes of serving: ``/api/v1/endpoints``, and ``/endpoints/NAME/invocations``.

The invocation route here is a convenience that forwards to the endpoint's replicas; the fast
path is the endpoint's own address (``url`` in ``show``), which the replicas answer directly.
"""

from __future__ import annotations

import contextlib
import re
import socket
from datetime import datetime
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cumulo.compute.spec import parse_memory
from cumulo.db import get_session, utcnow
from cumulo.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from cumulo.principal import Principal, current_principal
from cumulo.serving.models import Endpoint
from cumulo.serving.refs import resolve_model

__all__ = ["endpoints_router", "invocations_router"]

endpoints_router = APIRouter(prefix="/endpoints", tags=["endpoints"])
invocations_router = APIRouter(tags=["endpoints"])
DbSession = Annotated[Session, Depends(get_session)]
Caller = Annotated[Principal, Depends(current_principal)]
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_VARIANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class VariantIn(BaseModel):
    model: str = Field(description="NAME:VERSION, NAME@ALIAS or NAME (its latest version)")
    name: str | None = Field(None, description="the variant's name; default NAME-VERSION")
    weight: float = Field(1.0, description="traffic share = weight / sum of weights")
    shadow: bool = Field(False, description="gets a copy of live traffic; answers not returned")


class EndpointIn(BaseModel):
    name: str
    model: str | None = Field(None, description="one model: NAME:VERSION, NAME@ALIAS or NAME")
    variants: list[VariantIn] | None = Field(None, description="several models, with weights")
    min_replicas: int = Field(1, description="0 scales to zero when idle")
    max_replicas: int | None = Field(None, description="default: min_replicas (at least 1)")
    target_in_flight: float = Field(8.0, description="requests in flight per replica that "
                                    "the autoscaler aims for")
    scale_in_cooldown: float = Field(60.0, description="seconds of lower load before scaling in")
    scale_to_zero_after: float = Field(300.0, description="idle seconds before stopping the "
                                       "last replica, when min_replicas is 0")
    max_batch_size: int = Field(64, description="most rows combined into one model call")
    max_wait_ms: float = Field(2.0, description="longest a request waits for others to join")
    max_body: str | int = Field("6M", description="largest request body (bytes, or like 6M)")
    capture_percent: float = Field(0.0, description="share of requests (0-100) whose inputs "
                                   "and answers are written to capture_table")
    capture_table: str | None = Field(None, description="DB.TABLE for captured requests; "
                                      "default endpoints.NAME_capture")
    cluster: str | None = Field(None, description="a Ray cluster's name to run on Ray Serve; "
                                "default: this machine")


class EndpointOut(BaseModel):
    name: str
    state: str
    url: str = Field(description="the replicas' own address: POST {url}/invocations")
    variants: list[dict[str, Any]]
    min_replicas: int
    max_replicas: int
    target_in_flight: float
    scale_in_cooldown: float
    scale_to_zero_after: float
    max_batch_size: int
    max_wait_ms: float
    max_body: int
    capture_percent: float
    capture_table: str | None
    cluster: str | None = Field(description="the Ray cluster it runs on (Ray Serve), or none")
    replicas: list[dict[str, Any]]
    restarts: int
    scaling: list[dict[str, Any]] = Field(description="recent scaling decisions, with reasons")
    rollout: dict[str, Any] | None = Field(description="the traffic shift in progress, or the "
                                           "last one")
    message: str | None
    created_at: datetime
    updated_at: datetime


def _manager(request: Request) -> Any:
    return request.app.state.endpoints


def _url(request: Request, e: Endpoint) -> str:
    """Where the endpoint answers: its replicas' own address, or its route on Ray Serve."""
    if e.cluster is None:
        return f"http://{_manager(request).host}:{e.port}"
    from urllib.parse import urlsplit

    from cumulo.compute.models import Cluster

    with request.app.state.sessions() as session:
        cluster = session.scalar(select(Cluster).where(Cluster.name == e.cluster))
        address = (cluster.endpoint or cluster.address or "") if cluster is not None else ""
    return f"http://{urlsplit(address).hostname or '127.0.0.1'}:{e.port}/{e.name}"


def _out(request: Request, e: Endpoint) -> EndpointOut:
    runtime = _manager(request).runtime(e.name)
    return EndpointOut(
        name=e.name, state=e.state, url=_url(request, e), variants=e.variants,
        min_replicas=e.min_replicas, max_replicas=e.max_replicas,
        target_in_flight=e.target_in_flight, scale_in_cooldown=e.scale_in_cooldown,
        scale_to_zero_after=e.scale_to_zero_after,
        max_batch_size=e.max_batch_size, max_wait_ms=e.max_wait_ms, max_body=e.max_body,
        capture_percent=e.capture_percent, capture_table=e.capture_table, cluster=e.cluster,
        replicas=runtime["replicas"], restarts=runtime["restarts"],
        scaling=runtime["scaling"], rollout=e.rollout, message=e.message,
        created_at=e.created_at, updated_at=e.updated_at)


def _get(session: Session, name: str) -> Endpoint:
    endpoint = session.scalar(select(Endpoint).where(Endpoint.name == name))
    if endpoint is None or endpoint.state == "deleting":
        raise NotFound(f"no endpoint {name!r}; 'cumulo endpoints ls' lists them",
                       details={"endpoint": name})
    return endpoint


def _cluster(session: Session, name: str | None,
             request: Request) -> tuple[str | None, int | None]:
    """The Ray cluster an endpoint runs on and Ray Serve's port; (None, None) for this
    machine."""
    if name is None or name == "local":
        return None, None
    from cumulo.compute.models import Cluster

    cluster = session.scalar(select(Cluster).where(Cluster.name == name))
    if cluster is None:
        raise NotFound(f"no cluster {name!r}; 'cumulo clusters ls' lists them",
                       details={"cluster": name})
    if cluster.type != "ray":
        return None, None  # a local cluster: this machine
    return cluster.name, int(request.app.state.settings.ray_serve_port)


def _check_scaling(min_replicas: int, max_replicas: int, target: float, cooldown: float,
                   to_zero: float) -> None:
    if min_replicas < 0 or max_replicas < max(1, min_replicas) or max_replicas > 64:
        raise Invalid(f"replicas: need 0 <= --min-replicas <= --max-replicas <= 64 and "
                      f"--max-replicas >= 1 (got {min_replicas} and {max_replicas})")
    if target <= 0:
        raise Invalid("--target-in-flight must be above 0 (requests in flight per replica)")
    if cooldown < 0 or to_zero < 0:
        raise Invalid("--scale-in-cooldown and --scale-to-zero-after are seconds, 0 or more")


def _check_capture(session: Session, caller: Principal, endpoint: str, percent: float,
                   table: str | None) -> str | None:
    """The capture table's name, if capture is on; its database must exist."""
    if not 0 <= percent <= 100:
        raise Invalid(f"--capture-percent must be 0-100, not {percent}")
    if not percent:
        if table:
            raise Invalid("--capture-table needs --capture-percent above 0")
        return None
    from cumulo.lake import catalog
    from cumulo.lake.refs import parse_ref

    name = table or f"endpoints.{endpoint.replace('-', '_')}_capture"
    ref = parse_ref(name)
    if ref.version is not None or ref.as_of is not None:
        raise Invalid(f"--capture-table {name!r}: name a table, not a version of one")
    if table is None:  # the default database is made on first use
        with contextlib.suppress(Conflict):
            try:
                catalog.get_database(session, ref.database)
            except NotFound:
                catalog.create_database(session, caller, ref.database,
                                        description="data captured by endpoints")
    else:
        catalog.get_database(session, ref.database)  # NotFound says how to make it
    return ref.name


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@endpoints_router.post("", status_code=201, response_model=EndpointOut,
                       summary="Create an endpoint")
def create_endpoint(body: EndpointIn, session: DbSession, caller: Caller,
                    request: Request) -> EndpointOut:
    if not _NAME.match(body.name):
        raise Invalid(f"endpoint name {body.name!r} must be 1-63 lower-case letters, digits or "
                      "'-', starting with a letter or digit")
    if (body.model is None) == (body.variants is None):
        raise Invalid("give either model (one model) or variants (several), not both")
    wanted = body.variants or [VariantIn(model=body.model or "", name=None, weight=1.0,
                                         shadow=False)]
    if not any(v.weight > 0 and not v.shadow for v in wanted):
        raise Invalid("at least one variant must take traffic: a weight above 0, not a shadow")
    if any(v.weight < 0 for v in wanted):
        raise Invalid("a variant's weight must not be negative")
    max_replicas = body.max_replicas if body.max_replicas is not None else max(
        1, body.min_replicas)
    _check_scaling(body.min_replicas, max_replicas, body.target_in_flight,
                   body.scale_in_cooldown, body.scale_to_zero_after)
    if not 1 <= body.max_batch_size <= 100_000 or not 0 <= body.max_wait_ms <= 10_000:
        raise Invalid("batching: --max-batch-size 1-100000 rows, --max-wait-ms 0-10000")
    max_body = parse_memory(body.max_body) if isinstance(body.max_body, str) else body.max_body
    if max_body is None or max_body < 1024:
        raise Invalid("--max-body must be at least 1K")
    if session.scalar(select(Endpoint).where(Endpoint.name == body.name)) is not None:
        raise Conflict(f"endpoint {body.name!r} already exists; 'cumulo endpoints rm "
                       f"{body.name}' first, or pick another name")
    from cumulo.ml.registry import Registry

    registry = Registry(request.app.state.tracking.ensure())
    variants: list[dict[str, Any]] = []
    for v in wanted:
        model, version = resolve_model(registry, v.model)
        name = v.name or f"{model}-{version}"
        if not _VARIANT.match(name):
            raise Invalid(f"variant name {name!r}: letters, digits, '.', '_' or '-', at most 63")
        if any(x["name"] == name for x in variants):
            raise Invalid(f"two variants are named {name!r}; name them with 'name'")
        variants.append({"name": name, "model": model, "version": version,
                         "weight": v.weight, "shadow": v.shadow})
    manager = _manager(request)
    cluster, port = _cluster(session, body.cluster, request)
    # Last, as it may make the default capture database: nothing is made for a refused request.
    capture_table = _check_capture(session, caller, body.name, body.capture_percent,
                                   body.capture_table)
    endpoint = Endpoint(
        name=body.name, state="creating", variants=variants, cluster=cluster,
        port=port if port is not None else _free_port(manager.host),
        min_replicas=body.min_replicas, max_replicas=max_replicas,
        target_in_flight=body.target_in_flight, scale_in_cooldown=body.scale_in_cooldown,
        scale_to_zero_after=body.scale_to_zero_after,
        max_batch_size=body.max_batch_size, max_wait_ms=body.max_wait_ms, max_body=max_body,
        capture_percent=body.capture_percent, capture_table=capture_table,
        created_by=caller.user_id, updated_at=utcnow())
    session.add(endpoint)
    session.commit()
    manager.notify()
    return _out(request, endpoint)


@endpoints_router.get("", response_model=list[EndpointOut], summary="List endpoints")
def list_endpoints(session: DbSession, request: Request) -> list[EndpointOut]:
    rows = session.scalars(select(Endpoint).where(Endpoint.state != "deleting")
                           .order_by(Endpoint.name))
    return [_out(request, e) for e in rows]


@endpoints_router.get("/-/runtime", summary="The serving runtime: its fork server")
def serving_runtime(request: Request) -> dict[str, Any]:
    """Whether replicas start as forks of a process with the serving stack imported (well
    under a second) or as new processes (seconds): ``starting`` while it imports, then
    ``ready``; ``failed`` with why, or ``off`` (setting serving_preload)."""
    forks = _manager(request).forks
    return {"fork_server": forks.describe() if forks is not None else {"state": "off"}}


@endpoints_router.get("/{name}", response_model=EndpointOut, summary="Show an endpoint")
def show_endpoint(name: str, session: DbSession, request: Request) -> EndpointOut:
    return _out(request, _get(session, name))


@endpoints_router.get("/{name}/metrics", summary="Live metrics of an endpoint")
def endpoint_metrics(name: str, session: DbSession, request: Request,
                     window: float = 60.0) -> dict[str, Any]:
    """Per variant over the last ``window`` seconds (at most 120): requests a second, 4xx and
    5xx errors, and p50/p95/p99 latency split into the model's part and the overhead, as
    SageMaker reports them; and the replicas and requests in flight now."""
    endpoint = _get(session, name)
    if not 1 <= window <= 120:
        raise Invalid("window must be 1-120 seconds")
    manager = _manager(request)
    runtime = manager.runtime(name)
    live = [r for r in runtime["replicas"] if r["ready"]]
    return {"endpoint": name, "state": endpoint.state, "replicas": len(live),
            "in_flight": sum(r["in_flight"] for r in live),
            **manager.metrics(name, window)}


@endpoints_router.post("/{name}/reports", status_code=204, include_in_schema=False)
def replica_report(name: str, message: dict[str, Any], session: DbSession, caller: Caller,
                   request: Request) -> Response:
    """What a Ray Serve replica of the endpoint served (cumulo.serving.rayserve): only with
    the token made for the endpoint."""
    endpoint = _get(session, name)
    if endpoint.token_id is None or caller.token_id != endpoint.token_id:
        raise Forbidden(f"only endpoint {name!r}'s own replicas report its stats")
    if not _manager(request).report(name, message):
        raise Conflict(f"endpoint {name!r} does not run on a Ray cluster from here")
    return Response(status_code=204)


class UpdateIn(BaseModel):
    model: str | None = Field(None, description="a new model to shift traffic to: NAME:VERSION, "
                              "NAME@ALIAS or NAME")
    variant: str | None = Field(None, description="the new variant's name; default "
                                "NAME-VERSION")
    strategy: str = Field("all_at_once", description="all_at_once, canary or linear")
    canary_percent: float = Field(10.0, description="canary: the first step's share")
    step_percent: float = Field(25.0, description="linear: the share added at each step")
    bake_s: float = Field(60.0, description="seconds to watch the new variant after each step")
    max_error_rate: float | None = Field(0.01, description="roll back when the new variant's "
                                         "5xx share goes over this during a bake (0-1)")
    max_p99_ms: float | None = Field(None, description="roll back when the new variant's p99 "
                                     "latency goes over this during a bake")
    weights: dict[str, float] | None = Field(None, description="new weights of some of the "
                                             "variants, by name, applied at once (not with "
                                             "model)")
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_in_flight: float | None = None
    scale_in_cooldown: float | None = None
    scale_to_zero_after: float | None = None
    max_batch_size: int | None = None
    max_wait_ms: float | None = None
    capture_percent: float | None = None
    capture_table: str | None = None


@endpoints_router.patch("/{name}", response_model=EndpointOut,
                        summary="Update an endpoint: shift traffic to a new model, or change "
                        "its settings")
def update_endpoint(name: str, body: UpdateIn, session: DbSession, caller: Caller,
                    request: Request) -> EndpointOut:
    from cumulo.serving import rollout

    endpoint = _get(session, name)
    if endpoint.state in ("creating", "failed"):
        raise Conflict(f"endpoint {name!r} is {endpoint.state}; update it once it is in "
                       "service" if endpoint.state == "creating" else
                       f"endpoint {name!r} failed; 'cumulo endpoints rm {name}' and create it "
                       "again")
    min_r = endpoint.min_replicas if body.min_replicas is None else body.min_replicas
    max_r = endpoint.max_replicas if body.max_replicas is None else body.max_replicas
    if body.max_replicas is None and body.min_replicas is not None:
        max_r = max(max_r, body.min_replicas, 1)
    target = body.target_in_flight or endpoint.target_in_flight
    cooldown = (endpoint.scale_in_cooldown if body.scale_in_cooldown is None
                else body.scale_in_cooldown)
    to_zero = (endpoint.scale_to_zero_after if body.scale_to_zero_after is None
               else body.scale_to_zero_after)
    _check_scaling(min_r, max_r, target, cooldown, to_zero)
    batch = endpoint.max_batch_size if body.max_batch_size is None else body.max_batch_size
    wait = endpoint.max_wait_ms if body.max_wait_ms is None else body.max_wait_ms
    if not 1 <= batch <= 100_000 or not 0 <= wait <= 10_000:
        raise Invalid("batching: --max-batch-size 1-100000 rows, --max-wait-ms 0-10000")
    new_rollout = new_variants = None
    if body.weights is not None:
        new_variants = _reweigh(endpoint, body.weights, shift=body.model is not None)
    if body.model is not None:
        if endpoint.state == "updating":
            raise Conflict(f"endpoint {name!r} is shifting traffic already; wait for it, or "
                           f"'cumulo endpoints rollback {name}'")
        steps = rollout.plan(body.strategy, canary_percent=body.canary_percent,
                             step_percent=body.step_percent)
        if body.bake_s < 0 or body.bake_s > 86_400:
            raise Invalid("--bake must be 0-86400 seconds")
        if body.max_error_rate is not None and not 0 <= body.max_error_rate <= 1:
            raise Invalid("--max-error-rate is a share of requests, 0-1 (0.01 is 1%)")
        if body.max_p99_ms is not None and body.max_p99_ms <= 0:
            raise Invalid("--max-p99-ms must be above 0")
        from cumulo.ml.registry import Registry

        model, version = resolve_model(Registry(request.app.state.tracking.ensure()),
                                       body.model)
        variant = body.variant or f"{model}-{version}"
        if not _VARIANT.match(variant):
            raise Invalid(f"variant name {variant!r}: letters, digits, '.', '_' or '-', at "
                          "most 63")
        if any(v["name"] == variant for v in endpoint.variants):
            raise Conflict(f"endpoint {name!r} has a variant {variant!r} already; name the "
                           "new one with --variant")
        new_variants, new_rollout = rollout.begin(
            endpoint.variants, {"name": variant, "model": model, "version": version},
            body.strategy, steps, bake_s=body.bake_s, max_error_rate=body.max_error_rate,
            max_p99_ms=body.max_p99_ms)
        new_rollout["by"] = caller.user_name
    capture_percent = (endpoint.capture_percent if body.capture_percent is None
                       else body.capture_percent)
    capture_table = endpoint.capture_table
    if body.capture_table is not None or capture_percent:  # turned off: the table is kept
        capture_table = _check_capture(session, caller, name, capture_percent,
                                       body.capture_table or endpoint.capture_table)
    endpoint.min_replicas, endpoint.max_replicas = min_r, max_r
    endpoint.target_in_flight, endpoint.scale_in_cooldown = target, cooldown
    endpoint.scale_to_zero_after = to_zero
    endpoint.max_batch_size, endpoint.max_wait_ms = batch, wait
    endpoint.capture_percent, endpoint.capture_table = capture_percent, capture_table
    if new_rollout is not None and new_variants is not None:
        endpoint.variants, endpoint.rollout, endpoint.state = new_variants, new_rollout, "updating"
    elif new_variants is not None:
        endpoint.variants = new_variants
    endpoint.updated_at = utcnow()
    session.commit()
    _manager(request).notify()
    return _out(request, endpoint)


def _reweigh(endpoint: Endpoint, weights: dict[str, float], *,
             shift: bool) -> list[dict[str, Any]]:
    """The endpoint's variants with new weights, as SageMaker's UpdateEndpointWeights does."""
    name = endpoint.name
    if shift:
        raise Invalid("give either model (a traffic shift) or weights, not both")
    if endpoint.state == "updating":
        raise Conflict(f"endpoint {name!r} is shifting traffic; wait for it, or "
                       f"'cumulo endpoints rollback {name}'")
    known = [v["name"] for v in endpoint.variants]
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise Invalid(f"endpoint {name!r} has no variant {unknown[0]!r}; its variants: "
                      f"{', '.join(known)}", details={"variant": unknown[0]})
    if any(w < 0 for w in weights.values()):
        raise Invalid("a variant's weight must not be negative")
    variants = [{**v, "weight": float(weights.get(v["name"], v["weight"]))}
                for v in endpoint.variants]
    if not any(v["weight"] > 0 and not v.get("shadow") for v in variants):
        raise Invalid("at least one variant must take traffic: a weight above 0, not a shadow")
    return variants


@endpoints_router.post("/{name}/rollback", response_model=EndpointOut,
                       summary="Stop a traffic shift and go back to the variants before it")
def rollback_endpoint(name: str, session: DbSession, caller: Caller,
                      request: Request) -> EndpointOut:
    import copy
    import time

    endpoint = _get(session, name)
    if endpoint.state != "updating" or not endpoint.rollout:
        raise Conflict(f"endpoint {name!r} is not shifting traffic; to go back to an older "
                       f"model, update it: cumulo endpoints update {name} --model NAME:VERSION")
    state = copy.deepcopy(endpoint.rollout)
    if state["state"] in ("finishing", "rolling_back"):
        raise Conflict(f"endpoint {name!r} is {state['state'].replace('_', ' ')} already")
    now = time.time()
    reason = f"rolled back by {caller.user_name}"
    state.update(state="rolling_back", reason=reason)
    state["log"].append({"at": now, "event": f"rolling back: {reason}"})
    endpoint.variants = [dict(v) for v in state["previous"]]
    endpoint.rollout, endpoint.updated_at = state, utcnow()  # updating until replicas follow
    session.commit()
    _manager(request).notify()
    return _out(request, endpoint)


@endpoints_router.delete("/{name}", status_code=204, summary="Delete an endpoint")
def delete_endpoint(name: str, session: DbSession, request: Request) -> Response:
    endpoint = _get(session, name)
    endpoint.state, endpoint.updated_at = "deleting", utcnow()
    session.commit()
    _manager(request).notify()
    return Response(status_code=204)


@invocations_router.post("/endpoints/{name}/invocations", summary="Score rows (forwarded)")
async def invoke(name: str, request: Request) -> Response:
    def find() -> tuple[str, str]:
        with request.app.state.sessions() as session:
            endpoint = _get(session, name)
            if endpoint.cluster is None:  # the replicas' own path for it
                return endpoint.state, (f"http://{_manager(request).host}:{endpoint.port}"
                                        f"/endpoints/{name}/invocations")
            return endpoint.state, f"{_url(request, endpoint)}/invocations"

    state, url = await run_in_threadpool(find)
    if state == "failed":
        raise Unavailable(f"endpoint {name!r} failed; 'cumulo endpoints show {name}' says why")
    client: httpx.AsyncClient | None = getattr(request.app.state, "endpoints_http", None)
    if client is None:
        client = request.app.state.endpoints_http = httpx.AsyncClient(timeout=120)
    headers = {k: v for k, v in request.headers.items()
               if k in ("content-type", "x-cumulo-variant")}
    try:
        answer = await client.post(url, content=await request.body(), headers=headers)
    except httpx.TransportError as exc:
        raise Unavailable(f"endpoint {name!r} did not answer: {exc}") from exc
    keep = {k: v for k, v in answer.headers.items() if k in ("content-type", "x-cumulo-variant")}
    return Response(answer.content, status_code=answer.status_code, headers=keep)


_PROMETHEUS = (
    ("requests_per_s", "cumulo_endpoint_requests_per_second", "gauge",
     "requests a second over the last minute"),
    ("errors_4xx", "cumulo_endpoint_client_errors", "gauge",
     "requests answered 4xx over the last minute"),
    ("errors_5xx", "cumulo_endpoint_server_errors", "gauge",
     "requests answered 5xx over the last minute"),
)
_QUANTILES = (("latency", "cumulo_endpoint_latency_seconds", "whole request"),
              ("model_latency", "cumulo_endpoint_model_latency_seconds", "the model's call"),
              ("overhead_latency", "cumulo_endpoint_overhead_latency_seconds",
               "everything but the model's call"))


@invocations_router.get("/metrics", summary="Every endpoint's metrics, for Prometheus")
def prometheus(request: Request) -> Response:
    manager = _manager(request)
    with request.app.state.sessions() as session:
        names = list(session.scalars(select(Endpoint.name).where(Endpoint.state != "deleting")
                                     .order_by(Endpoint.name)))
    lines: list[str] = []
    rows: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for name in names:
        runtime = manager.runtime(name)
        live = [r for r in runtime["replicas"] if r["ready"]]
        rows.append((name, {"replicas": len(live),
                            "in_flight": sum(r["in_flight"] for r in live)},
                     manager.metrics(name)["variants"]))
    for key, help_text in (("replicas", "replicas serving"),
                           ("in_flight", "requests being answered now")):
        metric = f"cumulo_endpoint_{key}"
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        lines += [f'{metric}{{endpoint="{n}"}} {now[key]}' for n, now, _ in rows]
    for key, metric, kind, help_text in _PROMETHEUS:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
        lines += [f'{metric}{{endpoint="{n}",variant="{v}"}} {m[key]}'
                  for n, _, variants in rows for v, m in variants.items()]
    for key, metric, help_text in _QUANTILES:
        lines += [f"# HELP {metric} {help_text}, over the last minute", f"# TYPE {metric} summary"]
        for n, _, variants in rows:
            for v, m in variants.items():
                for q in (50, 95, 99):
                    value = m[f"{key}_p{q}_ms"]
                    if value is not None:
                        lines.append(f'{metric}{{endpoint="{n}",variant="{v}",'
                                     f'quantile="0.{q}"}} {value / 1000:.6f}')
    return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
