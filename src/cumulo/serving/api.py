"""REST routes of serving: ``/api/v1/endpoints``, and ``/endpoints/NAME/invocations``.

The invocation route here is a convenience that forwards to the endpoint's replicas; the fast
path is the endpoint's own address (``url`` in ``show``), which the replicas answer directly,
each checking the caller's token itself (:mod:`cumulo.serving.gate`). This route has checked
its caller already (a bearer token or the console's login cookie) and forwards with the
control plane's own key, which every replica takes (:mod:`cumulo.serving.allowed`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cumulo.access import projects
from cumulo.db import get_session
from cumulo.errors import Conflict, Invalid, Unavailable
from cumulo.httplimits import lift_body_limit
from cumulo.leases import ControlPlane, live_planes
from cumulo.logfiles import stamp, stream_lines
from cumulo.logs import request_id
from cumulo.permissions import allow, body_project, query_project
from cumulo.principal import Principal, current_principal
from cumulo.services import Services, services
from cumulo.serving import endpoints
from cumulo.serving.forward import ReplicaGone
from cumulo.serving.manager import owner_host
from cumulo.serving.models import Endpoint
from cumulo.units import parse_time

if TYPE_CHECKING:
    from cumulo.ml.registry import Registry
    from cumulo.serving.manager import EndpointManager

__all__ = ["endpoints_router", "forward_invocation", "invocations_router", "invoke_soon"]

endpoints_router = APIRouter(prefix="/endpoints", tags=["endpoints"])
invocations_router = APIRouter(tags=["endpoints"])
DbSession = Annotated[Session, Depends(get_session)]
Caller = Annotated[Principal, Depends(current_principal)]


class _Body(BaseModel):
    # NaN or infinity in a setting would pass every range check (NaN compares false) and
    # break the autoscaler's arithmetic later: refused here, with the field named.
    model_config = ConfigDict(allow_inf_nan=False)


class VariantIn(_Body):
    model: str = Field(description="NAME:VERSION, NAME@ALIAS or NAME (its latest version)")
    name: str | None = Field(None, description="the variant's name; default NAME-VERSION")
    weight: float = Field(1.0, description="traffic share = weight / sum of weights")
    shadow: bool = Field(False, description="gets a copy of live traffic; answers not returned")
    env: str | None = Field(None, description="server, model or an environment's name; "
                            "default: the endpoint's env")


_ENV = ('where the models run: "server" (the server\'s packages), "model" (the requirements '
        "each model's MLflow flavor recorded, built once into an environment) or a named "
        "environment (cumulo envs); default: the model's when the server's packages do not "
        "meet its requirements, else the server's")


class EndpointIn(_Body):
    name: str
    model: str | None = Field(None, description="one model: NAME:VERSION, NAME@ALIAS or NAME")
    variants: list[VariantIn] | None = Field(None, description="several models, with weights")
    min_replicas: int = Field(1, description="0 scales to zero when idle")
    max_replicas: int | None = Field(None, description="default: min_replicas (at least 1)")
    target_in_flight: float = Field(8.0, description="requests in flight per replica that "
                                    "the autoscaler aims for")
    scale_in_cooldown: float | str = Field(60.0, description="lower load for this long before "
                                           "scaling in: seconds, or a duration like 1m")
    scale_to_zero_after: float | str = Field(
        300.0, description="idle this long before stopping the last replica, when min_replicas "
                           "is 0: seconds, or a duration like 5m")
    max_batch_size: int = Field(64, description="most rows combined into one model call")
    max_wait_ms: float = Field(2.0, description="longest a request waits for others to join")
    max_body: str | int = Field("6M", description="largest request body (bytes, or like 6M)")
    capture_percent: float = Field(0.0, description="share of requests (0-100) whose inputs "
                                   "and answers are written to capture_table")
    capture_table: str | None = Field(None, description="DB.TABLE for captured requests; "
                                      "default endpoints.NAME_capture")
    cluster: str | None = Field(None, description="a Ray cluster's name to run on Ray Serve; "
                                "default: this machine")
    public: bool = Field(False, description="the replicas' own address takes invocations "
                         "without a token; by default it asks for 'Authorization: Bearer "
                         "<token>'")
    project: str | None = Field(None, description="the project it belongs to: rights bound "
                                "there hold on it, its endpoints quota counts it")
    env: str | None = Field(None, description=_ENV)


class EndpointOut(BaseModel):
    name: str
    state: str
    url: str = Field(description="the replicas' own address: POST {url}/invocations")
    variants: list[dict[str, Any]] = Field(description="name, model, version, weight, shadow, "
                                           "env (as asked; null: the default) and, once "
                                           "chosen, environment (the digest it runs in; "
                                           "null: the server's)")
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
    owner: str | None = Field(default=None,
                              description="the id of the control plane that runs it")
    public: bool = Field(description="its own address takes invocations without a token")
    project: str | None = Field(description="the project it belongs to, or none")
    held: str | None = Field(default=None, description="who holds it at zero replicas (a "
                             "budget's scale-endpoints-to-zero): its requests are refused "
                             "with 503 until then")
    replicas: list[dict[str, Any]]
    restarts: int
    scaling: list[dict[str, Any]] = Field(description="recent scaling decisions, with reasons")
    rollout: dict[str, Any] | None = Field(description="the traffic shift in progress, or the "
                                           "last one")
    message: str | None
    created_at: datetime
    updated_at: datetime


def _manager(request: Request) -> EndpointManager:
    return services(request).endpoints


def _url(request: Request, e: Endpoint) -> str:
    """Where the endpoint answers: its replicas' own address, or its route on Ray Serve."""
    if e.cluster is None:
        return f"http://{_manager(request).host}:{e.port}"
    with services(request).sessions() as session:
        return endpoints.endpoint_url(session, e, host=_manager(request).host)


def _registry(request: Request) -> Registry:
    from cumulo.ml.registry import Registry

    return Registry(services(request).tracking)


def _out(request: Request, e: Endpoint, project: str | None) -> EndpointOut:
    """The endpoint as the API shows it; ``project``: its project's name."""
    runtime = _manager(request).runtime(e.name)
    return EndpointOut(
        name=e.name, state=e.state, url=_url(request, e), variants=e.variants,
        min_replicas=e.min_replicas, max_replicas=e.max_replicas,
        target_in_flight=e.target_in_flight, scale_in_cooldown=e.scale_in_cooldown,
        scale_to_zero_after=e.scale_to_zero_after,
        max_batch_size=e.max_batch_size, max_wait_ms=e.max_wait_ms, max_body=e.max_body,
        capture_percent=e.capture_percent, capture_table=e.capture_table, cluster=e.cluster,
        owner=e.owner, public=e.public, project=project, held=e.held,
        replicas=runtime["replicas"],
        restarts=runtime["restarts"], scaling=runtime["scaling"], rollout=e.rollout,
        message=e.message, created_at=e.created_at, updated_at=e.updated_at)


def _shown(request: Request, session: Session, e: Endpoint) -> EndpointOut:
    return _out(request, e, projects.name_of(session, e.project_id))


@endpoints_router.post("",
    dependencies=[allow("endpoints:Create", "endpoint/*", project=body_project)],
    status_code=201, response_model=EndpointOut,
                       summary="Create an endpoint")
def create_endpoint(body: EndpointIn, session: DbSession, caller: Caller,
                    request: Request) -> EndpointOut:
    manager = _manager(request)
    endpoint = endpoints.create_endpoint(
        session, caller, endpoints.EndpointSpec(**body.model_dump()),
        registry=lambda: _registry(request), host=manager.host,
        ray_serve_port=int(services(request).settings.ray_serve_port))
    manager.notify()
    return _out(request, endpoint, body.project or None)


@endpoints_router.get("",
    dependencies=[allow("endpoints:List", "endpoint/*", project=query_project)],
    response_model=list[EndpointOut], summary="List endpoints")
def list_endpoints(session: DbSession, request: Request,
                   project: str | None = None) -> list[EndpointOut]:
    """Every endpoint, or one project's (``?project=NAME``)."""
    rows = endpoints.list_endpoints(session, project=project)
    names = projects.names_of(session, (e.project_id for e in rows))
    return [_out(request, e, names.get(e.project_id) if e.project_id is not None else None)
            for e in rows]


@endpoints_router.get("/-/runtime",
    dependencies=[allow("endpoints:List", "endpoint/*")],
    summary="The serving runtime: its fork server")
def serving_runtime(request: Request) -> dict[str, Any]:
    """Whether replicas start as forks of a process with the serving stack imported (well
    under a second) or as new processes (seconds): ``starting`` while it imports, then
    ``ready``; ``failed`` with why, or ``off`` (setting serving_preload). ``environments``:
    the fork servers of the environments endpoints run in, by digest."""
    manager = _manager(request)
    forks = manager.forks
    return {"fork_server": forks.describe() if forks is not None else {"state": "off"},
            "environments": manager.launcher.describe_envs()}


class ModelEnvIn(_Body):
    env: str | None = Field(None, description=_ENV)


class ModelEnvOut(BaseModel):
    model: str
    version: str
    env: str = Field(description="where it runs: server, model or an environment's name")
    environment: str | None = Field(description="the digest of its environment; null: the "
                                    "server's")
    requirements: str | None = Field(description="with env model: the requirements the model "
                                     "recorded, as a job asks for them")
    python: str | None = Field(description="with env model: the Python they are for")
    note: str | None = Field(description="what to know about the choice, if anything")


@endpoints_router.post("/-/environment/{model}/{version}",
    dependencies=[allow("models:Read", "model/{model}")], response_model=ModelEnvOut,
    summary="Where a model version runs: its environment, chosen and resolved")
def model_environment(model: str, version: str, body: ModelEnvIn, session: DbSession,
                      caller: Caller, request: Request) -> ModelEnvOut:
    """What an endpoint or a batch prediction with ``env`` (server, model, a name, or null
    for the default) runs the model in: resolved now, so that a requirement that cannot be
    met is refused naming its line of the model's requirements.txt. Batch predictions ask
    this before they submit their job."""
    from cumulo.serving import environments
    from cumulo.serving.refs import resolve_model

    resolve_model(_registry(request), f"{model}:{version}")  # NotFound names what exists
    env, digest = environments.check_env(session, caller, body.env)
    folder = _manager(request).fetch(model, version)
    choice = environments.choose(session, folder, env=env, digest=digest, principal=caller)
    wanted = choice.spec if choice.env == environments.MODEL else None
    return ModelEnvOut(model=model, version=version, env=choice.env,
                       environment=choice.digest,
                       requirements=wanted.text if wanted is not None else None,
                       python=wanted.python if wanted is not None else None, note=choice.note)


@endpoints_router.get("/{name}",
    dependencies=[allow("endpoints:Read", "endpoint/{name}")],
    response_model=EndpointOut, summary="Show an endpoint")
def show_endpoint(name: str, session: DbSession, request: Request) -> EndpointOut:
    return _shown(request, session, endpoints.get_endpoint(session, name))


@endpoints_router.get("/{name}/metrics",
    dependencies=[allow("endpoints:Read", "endpoint/{name}")],
    summary="Live metrics of an endpoint")
def endpoint_metrics(name: str, session: DbSession, request: Request,
                     window: float = 60.0) -> dict[str, Any]:
    """Per variant over the last ``window`` seconds (at most 120): requests a second, 4xx and
    5xx errors, and p50/p95/p99 latency split into the model's part and the overhead, as
    SageMaker reports them; and the replicas and requests in flight now."""
    endpoint = endpoints.get_endpoint(session, name)
    if not 1 <= window <= 120:
        raise Invalid("window must be 1-120 seconds")
    manager = _manager(request)
    runtime = manager.runtime(name)
    live = [r for r in runtime["replicas"] if r["ready"]]
    return {"endpoint": name, "state": endpoint.state, "replicas": len(live),
            "in_flight": sum(r["in_flight"] for r in live),
            **manager.metrics(name, window)}


@endpoints_router.get("/{name}/logs",
    dependencies=[allow("endpoints:Read", "endpoint/{name}")],
    summary="The log of an endpoint's replicas (JSON lines); follow=true streams it live",
                      response_class=StreamingResponse,
                      responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def endpoint_logs(
    name: str, request: Request,
    replica: Annotated[int | None, Query(description="only this replica's lines (its pid, "
                                         "as 'cumulo endpoints show' lists it)")] = None,
    since: Annotated[str | None, Query(description="from this time on: an ISO time, or a "
                                       "span back from now (10m, 1h30m)")] = None,
    follow: bool = False,
) -> Response:
    """What the replicas of an endpoint wrote: their own lines (JSON, each with the replica's
    pid and the request id it was written for) and whatever their models wrote to stderr. An
    endpoint another control plane runs is read (and followed) through that one, whose
    machine its replicas run on. Replicas on a Ray cluster log to Ray (its dashboard)."""
    with services(request).sessions() as session:
        endpoints.get_endpoint(session, name)  # NotFound, said as everywhere
        owner = _owner_elsewhere(request, session, name)
    if owner is not None:
        return await _logs_from(owner, name, request, follow)
    start = stamp(parse_time(since, what="--since")) if since else None
    keep = None if replica is None else (lambda record: record.get("replica") == replica)
    path = _manager(request).root / "endpoints" / name / "replicas.log"
    return StreamingResponse(stream_lines(path, keep=keep, since=start, follow=follow),
                             media_type="text/plain; charset=utf-8")


async def _logs_from(owner: ControlPlane, name: str, request: Request,
                     follow: bool) -> Response:
    """The endpoint's log as the control plane that runs it answers it, streamed through (a
    followed log for as long as the caller reads), asked as the caller (its credential as a
    bearer token, whether it came as a token or the console's cookie; no other cookie)."""
    import httpx

    headers = {"authorization": "Bearer " + getattr(request.state, "credential", "")}
    if rid := request_id.get():
        headers["x-request-id"] = rid
    # A followed log waits for lines as long as the caller reads; a read one must come.
    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None if follow else 60.0))
    upstream = None
    try:
        upstream = await client.send(client.build_request(
            "GET", f"{owner.url}/api/v1/endpoints/{name}/logs", params=request.query_params,
            headers=headers), stream=True)
        if upstream.status_code != 200:  # the owner's refusal or error, as it said it
            body = await upstream.aread()
            kept = {k: v for k, v in upstream.headers.items()
                    if k in ("retry-after", "www-authenticate")}
            await upstream.aclose()
            await client.aclose()
            return Response(body, status_code=upstream.status_code, headers=kept,
                            media_type=upstream.headers.get("content-type"))
    except BaseException as exc:
        if upstream is not None:
            await upstream.aclose()
        await client.aclose()
        if isinstance(exc, httpx.HTTPError):
            raise Unavailable(f"endpoint {name!r} runs on control plane {owner.id[:8]}, which "
                              f"did not answer: {exc}", retry_after=1) from exc
        raise

    async def relayed() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()
            await client.aclose()

    return StreamingResponse(relayed(), media_type="text/plain; charset=utf-8")


@endpoints_router.post("/{name}/reports",
    dependencies=[allow("endpoints:Read", "endpoint/{name}")],
    status_code=204, include_in_schema=False)
def replica_report(name: str, message: dict[str, Any], session: DbSession, caller: Caller,
                   request: Request) -> Response:
    """What a Ray Serve replica of the endpoint served (cumulo.serving.rayserve): only with
    the token made for the endpoint."""
    endpoints.check_reporter(session, caller, name)
    if _manager(request).report(name, message):
        return Response(status_code=204)
    owner = _owner_elsewhere(request, session, name)
    if owner is None:
        if endpoints.get_endpoint(session, name).cluster is not None:
            # Its control plane stopped: another takes it over within seconds.
            raise Unavailable(f"endpoint {name!r} is being taken over by another control "
                              "plane; report again", retry_after=2)
        raise Conflict(f"endpoint {name!r} does not run on a Ray cluster from here")
    # Its replicas reached this control plane (a load balancer's choice): to the one that
    # runs the endpoint, with the replica's own token.
    import httpx

    try:
        answer = httpx.post(f"{owner.url}/api/v1/endpoints/{name}/reports", json=message,
                            headers={"authorization": request.headers.get("authorization", "")},
                            timeout=5)
    except httpx.HTTPError as exc:
        raise Unavailable(f"endpoint {name!r} runs on control plane {owner.id[:8]}, which did "
                          f"not answer: {exc}", retry_after=1) from exc
    return Response(status_code=answer.status_code, content=answer.content,
                    media_type=answer.headers.get("content-type"))


def _owner_elsewhere(request: Request, session: Session, name: str) -> ControlPlane | None:
    """The live control plane that runs endpoint ``name``, when it is not this one."""
    endpoint = endpoints.get_endpoint(session, name)
    if endpoint.owner is None or endpoint.owner == services(request).plane.id:
        return None
    return next((p for p in live_planes(session) if p.id == endpoint.owner), None)


@endpoints_router.get("/{name}/tokens",
    dependencies=[allow("endpoints:Read", "endpoint/{name}")],
    include_in_schema=False)
async def replica_tokens(name: str, caller: Caller, request: Request, since: str = "",
                         wait: float = 0.0) -> Response:
    """The live tokens, for the endpoint's own Ray Serve replicas (cumulo.serving.rayserve):
    at once when they differ from the set with digest ``since``, else as soon as they change
    within ``wait`` seconds (at most 30), else 204."""
    def check() -> None:
        with services(request).sessions() as session:
            endpoints.check_reporter(session, caller, name)

    await run_in_threadpool(check)
    allowed = _manager(request).allowed
    if name not in allowed.current:
        # Run by another control plane (its replicas reached this one): the set as it is
        # now, read for this request; asked again, it is read again.
        doc = await run_in_threadpool(allowed.read, name)
        if doc["digest"] == since:
            await asyncio.sleep(min(max(wait, 0.0), 1.0))
            return Response(status_code=204)
        return Response(orjson.dumps(doc), media_type="application/json")
    deadline = time.monotonic() + min(max(wait, 0.0), 30.0)
    while allowed.digest(name) == since:
        if time.monotonic() >= deadline:
            return Response(status_code=204)
        await asyncio.sleep(0.05)
    return Response(orjson.dumps(allowed.doc(name)), media_type="application/json")


class UpdateIn(_Body):
    model: str | None = Field(None, description="a new model to shift traffic to: NAME:VERSION, "
                              "NAME@ALIAS or NAME")
    variant: str | None = Field(None, description="the new variant's name; default "
                                "NAME-VERSION")
    strategy: str = Field("all_at_once", description="all_at_once, canary or linear")
    canary_percent: float = Field(10.0, description="canary: the first step's share")
    step_percent: float = Field(25.0, description="linear: the share added at each step")
    bake_s: float | str = Field(60.0, description="how long to watch the new variant after each "
                                "step: seconds, or a duration like 5m")
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
    scale_in_cooldown: float | str | None = None
    scale_to_zero_after: float | str | None = None
    max_batch_size: int | None = None
    max_wait_ms: float | None = None
    capture_percent: float | None = None
    capture_table: str | None = None
    public: bool | None = Field(None, description="true: the replicas' own address takes "
                                "invocations without a token; false: only with one")
    env: str | None = Field(None, description="with model: where the new variant runs; it "
                            "must be the environment the endpoint's replicas run in")


@endpoints_router.patch("/{name}",
    dependencies=[allow("endpoints:Update", "endpoint/{name}")],
    response_model=EndpointOut,
                        summary="Update an endpoint: shift traffic to a new model, or change "
                        "its settings")
def update_endpoint(name: str, body: UpdateIn, session: DbSession, caller: Caller,
                    request: Request) -> EndpointOut:
    endpoint = endpoints.update_endpoint(session, caller, name,
                                         endpoints.EndpointChange(**body.model_dump()),
                                         registry=lambda: _registry(request))
    _manager(request).notify()
    return _shown(request, session, endpoint)


@endpoints_router.post("/{name}/rollback",
    dependencies=[allow("endpoints:Update", "endpoint/{name}")],
    response_model=EndpointOut,
                       summary="Stop a traffic shift and go back to the variants before it")
def rollback_endpoint(name: str, session: DbSession, caller: Caller,
                      request: Request) -> EndpointOut:
    endpoint = endpoints.rollback_endpoint(session, caller, name)
    _manager(request).notify()
    return _shown(request, session, endpoint)


@endpoints_router.delete("/{name}",
    dependencies=[allow("endpoints:Delete", "endpoint/{name}")],
    status_code=204, summary="Delete an endpoint")
def delete_endpoint(name: str, session: DbSession, request: Request) -> Response:
    endpoints.delete_endpoint(session, name)
    _manager(request).notify()
    return Response(status_code=204)


@invocations_router.post(
    "/endpoints/{name}/invocations",
    dependencies=[allow("endpoints:Invoke", "endpoint/{name}")],
    summary="Score rows (forwarded)",
    openapi_extra={"requestBody": {"required": True, "description": (
        "rows in one of MLflow's scoring formats (dataframe_split, dataframe_records, "
        "instances, inputs), CSV with a header row, or an Arrow IPC stream"), "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/csv": {"schema": {"type": "string"}},
            "application/vnd.apache.arrow.stream": {"schema": {"type": "string",
                                                               "format": "binary"}}}}},
)
async def invoke(name: str, request: Request) -> Response:
    async def body(limit: int) -> bytes:
        lift_body_limit(request, limit)  # the endpoint's own limit: 413 here, as there
        return await request.body()

    headers = [(k, v) for k, v in request.headers.items() if k in FORWARDED_HEADERS]
    status, answered, content = await forward_invocation(services(request), name, headers, body)
    return Response(content, status_code=status, headers=dict(answered))


# What a caller's request and a replica's answer carry across the control plane.
FORWARDED_HEADERS = ("content-type", "x-cumulo-variant", "retry-after")


async def forward_invocation(
        running: Services, name: str, headers: list[tuple[str, str]],
        read_body: Callable[[int], Awaitable[bytes]],
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send a caller's invocation to the endpoint's replicas (or Ray Serve route) and return
    their answer (status, the headers in ``FORWARDED_HEADERS``, body): the one way there, for
    this route and the server's fast path (server/fastpath.py), once the caller's token is
    checked. ``read_body(limit)`` reads the request's body within the endpoint's own limit."""
    manager = running.endpoints
    known = manager.route(name)  # no database for an endpoint the manager runs
    state, url, max_body = (known if known is not None
                            else await run_in_threadpool(_find_route, running, name))
    body = await read_body(max_body)
    if state == "failed":
        raise Unavailable(f"endpoint {name!r} failed; 'cumulo endpoints show {name}' says why")
    host, port, path = _target(url)
    # The caller is checked already (a token, or the console's cookie, which the replicas
    # would not know): the replicas take the control plane's own key.
    sent = [*headers, ("authorization", f"Bearer {manager.allowed.key}")]
    rid = request_id.get()
    if rid:  # the replica's lines about this request carry its id too
        sent.append(("x-request-id", rid))
    try:
        status, answered, content = await running.endpoints_forward.post(host, port, path,
                                                                         sent, body)
    except ReplicaGone as exc:
        raise Unavailable(f"endpoint {name!r} did not answer: {exc}", retry_after=1) from exc
    return status, [(k, v) for k, v in answered if k in FORWARDED_HEADERS], content


def invoke_soon(running: Services, loop: asyncio.AbstractEventLoop, name: str,
                body: bytes) -> concurrent.futures.Future[tuple[int, bytes]]:
    """:func:`forward_invocation` of a JSON body, for a caller on a thread of its own (a
    stream's scorer), which has checked its rights itself: the endpoint's status and answer,
    when they come (the call runs on the server's event loop ``loop``)."""
    async def read(limit: int) -> bytes:
        if len(body) > limit:
            raise Invalid(f"a request of {len(body)} bytes is over endpoint {name!r}'s limit "
                          f"of {limit} bytes")
        return body

    async def call() -> tuple[int, bytes]:
        status, _, content = await forward_invocation(
            running, name, [("content-type", "application/json")], read)
        return status, content

    return asyncio.run_coroutine_threadsafe(call(), loop)


def _find_route(running: Services, name: str) -> tuple[str, str, int]:
    """``EndpointManager.route``, from the database: for an endpoint not stepped yet (its
    owner's address, where another control plane runs it)."""
    host = running.endpoints.host
    with running.sessions() as session:
        endpoint = endpoints.get_endpoint(session, name)
        owner = next((p for p in live_planes(session) if p.id == endpoint.owner), None)
        if owner is not None and owner.id != running.plane.id:
            host = owner_host(owner)
        if endpoint.cluster is None:  # the replicas' own path for it
            return (endpoint.state, f"http://{host}:{endpoint.port}/endpoints/{name}/invocations",
                    endpoint.max_body)
        url = endpoints.endpoint_url(session, endpoint, host=host)
        return endpoint.state, f"{url}/invocations", endpoint.max_body


@functools.lru_cache(maxsize=1024)
def _target(url: str) -> tuple[str, int, str]:
    """Host, port and path of a replica's invocation URL (http only: replicas speak plain
    HTTP on this machine's or the Ray cluster's network)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise Unavailable(f"cannot forward to {url!r}: not an http:// address")
    return parts.hostname, parts.port or 80, parts.path or "/"
