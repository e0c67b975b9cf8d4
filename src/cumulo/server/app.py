"""The app factory: one FastAPI app, each service's router mounted in one explicit list."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import anyio.to_thread
import httpx
from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

import cumulo
from cumulo import console
from cumulo.access.api import router as access_router
from cumulo.access.audit import AuditExporter, AuditLog
from cumulo.access.audit_api import router as audit_router
from cumulo.access.authz import Authorizer
from cumulo.access.iam_api import router as iam_router
from cumulo.access.tokens import TokenCache
from cumulo.access.trail import Trail
from cumulo.compute.api import clusters_router, jobs_router
from cumulo.compute.environments.api import router as envs_router
from cumulo.config import Settings
from cumulo.db import make_engine
from cumulo.dr.api import router as backups_router
from cumulo.lake.api import sql_router, tables_router
from cumulo.leases import Membership, advertised_url
from cumulo.metering.api import alerts_router, budgets_router
from cumulo.metering.api import router as costs_router
from cumulo.ml.api import models_router
from cumulo.ml.api import router as mlflow_router
from cumulo.notebooks.api import router as notebooks_router
from cumulo.notebooks.proxy import router as notebooks_proxy
from cumulo.notebooks.proxy import sockets as notebooks_sockets
from cumulo.pipelines.api import lineage_router
from cumulo.pipelines.api import router as pipelines_router
from cumulo.principal import install_decider
from cumulo.server.auth import require_token, require_token_or_login
from cumulo.server.aws import AwsDispatch
from cumulo.server.errors import install_error_handlers
from cumulo.server.login import router as login_router
from cumulo.server.logs import router as logs_router
from cumulo.server.middleware import AuditChanges, BodyLimit, RequestContext
from cumulo.server.openapi import install_openapi
from cumulo.server.sso import router as sso_router
from cumulo.server.status import router as status_router
from cumulo.server.telemetry import install_traces, metrics_router, observe_scope
from cumulo.services import Services
from cumulo.serving.api import endpoints_router, invocations_router, invoke_soon
from cumulo.serving.monitors.api import monitors_router
from cumulo.storage.api import router as storage_router
from cumulo.storage.backends import Backend
from cumulo.streams.api import router as streams_router

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"
ROUTE_THREADS = 128
ROUTERS = (status_router, access_router, iam_router, storage_router, tables_router, sql_router,
           clusters_router, jobs_router, envs_router, costs_router, budgets_router,
           alerts_router, models_router,
           endpoints_router, monitors_router,
           pipelines_router, lineage_router, audit_router, backups_router, streams_router,
           notebooks_router, logs_router)


def _mount_docs(app: FastAPI) -> None:
    """The interactive API page, with Swagger UI served from here: it works offline."""
    from importlib.resources import files

    assets = files("fastapi_offline") / "static"
    app.mount("/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="Cumulo API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )


@asynccontextmanager
async def _running(settings: Settings, engine: Engine,
                   storage: Backend) -> AsyncIterator[Services]:
    """The services, with their background threads and HTTP clients; all stopped and closed on
    the way out, in the reverse order."""
    from cumulo.compute.jobs import SUBMISSION_GUARDS
    from cumulo.compute.supervisor import Supervisor
    from cumulo.dr.schedules import BackupScheduler
    from cumulo.metering import usage
    from cumulo.metering.watch import CostWatch, refuse_stopped_jobs
    from cumulo.ml.tracking import TrackingServer
    from cumulo.pipelines import schedules
    from cumulo.pipelines.runs import Orchestrator
    from cumulo.serving.forward import Forwarder
    from cumulo.serving.manager import EndpointManager
    from cumulo.streams.delivery import Deliveries
    from cumulo.streams.scoring import Scorers
    from cumulo.streams.service import StreamEngine

    async with AsyncExitStack() as stack:
        # Metering off: no service writes usage records, and budgets are not checked.
        usage.set_metering(settings.metering)
        stack.callback(usage.set_metering, True)
        # The background loops' own connections: requests that fill the server's pool (16 slow
        # SQL statements, a burst of uploads) must not make the job supervisor, the endpoint
        # manager or the schedules fail.
        loops = make_engine(settings.database_url, pool_size=4, max_overflow=8)
        stack.callback(loops.dispose)
        # This control plane's lease: what it runs is its own while the lease is renewed.
        plane = Membership(loops, home=str(settings.home),
                           url=advertised_url(settings.host, settings.port),
                           version=cumulo.__version__)
        plane.start()
        stack.callback(plane.stop)
        supervisor = Supervisor(settings, loops, storage, plane)
        tracking = TrackingServer(settings, storage.url)
        stack.callback(tracking.stop)
        # Endpoints' environments are built by the supervisor's builder: one per machine.
        endpoints = EndpointManager(settings, loops, tracking, storage, envs=supervisor.envs,
                                    plane=plane)
        archive = None  # old segments of the embedded log, to storage (streams/archive.py)
        if settings.stream_archive_seconds is not None and not settings.streams_url:
            from cumulo.streams.archive import SegmentArchive

            archive = SegmentArchive(storage, settings.home / "streams-cache",
                                     after=settings.stream_archive_seconds)
        streams = StreamEngine(settings.home, streams_url=settings.streams_url,
                               subscriptions=settings.stream_subscriptions,
                               prices=settings.prices, meter_every=settings.stream_meter_seconds,
                               archive=archive, shard_backlog=settings.stream_shard_backlog)
        stack.callback(streams.close)
        # Triggers on a stream's volume count in this engine's logs.
        pipelines = Orchestrator(loops, storage, supervisor.notify,
                                 fire_schedules=functools.partial(schedules.fire, streams=streams),
                                 plane=plane)
        supervisor.listeners.append(pipelines.notify)
        sessions = sessionmaker(engine, expire_on_commit=False)
        trail = Trail(AuditLog(sessions))  # the audit log's entries, written off the requests
        stack.callback(trail.stop)
        # who may do what: decided in one place, and each refusal written to the audit log
        install_decider(Authorizer(sessions, on_denied=trail.denied))
        stack.callback(install_decider, None)
        forward = Forwarder()
        stack.callback(forward.close)
        backups = BackupScheduler(settings, loops, plane=plane)
        deliveries = Deliveries(streams, sessionmaker(loops, expire_on_commit=False), storage,
                                plane)
        # Scorers send records to endpoints through the invocations' forwarding, on this
        # event loop.
        loop = asyncio.get_running_loop()
        scorers = Scorers(streams, sessionmaker(loops, expire_on_commit=False), storage, plane,
                          invoke=lambda name, body: invoke_soon(running, loop, name, body))
        # Storage samples, SQL metering, budgets and anomalies; a budget's stop-new-jobs is
        # checked by every job submission.
        costs = CostWatch(settings, sessionmaker(loops, expire_on_commit=False), storage,
                          trail=trail, endpoints_changed=endpoints.notify)
        if refuse_stopped_jobs not in SUBMISSION_GUARDS:
            SUBMISSION_GUARDS.append(refuse_stopped_jobs)
        from cumulo.serving.monitors.scheduler import MonitorScheduler

        # Model monitors: scheduled runs started, and each run recorded when its job ends.
        monitors = MonitorScheduler(loops, storage, plane=plane, notify_jobs=supervisor.notify)
        supervisor.listeners.append(monitors.notify)
        running = Services(
            settings=settings, engine=engine, sessions=sessions, storage=storage,
            tokens=TokenCache(sessions),
            compute=supervisor, tracking=tracking, endpoints=endpoints, pipelines=pipelines,
            mlflow_http=await stack.enter_async_context(httpx.AsyncClient(
                transport=tracking.transport(), timeout=httpx.Timeout(300.0, connect=10.0))),
            endpoints_forward=forward, trail=trail, backups=backups, plane=plane,
            streams=streams, deliveries=deliveries, scorers=scorers, costs=costs,
            monitors=monitors,
        )
        supervisor.start()
        stack.callback(supervisor.stop)
        endpoints.start()
        stack.callback(endpoints.stop)
        pipelines.start()
        stack.callback(pipelines.stop)
        audit_export = AuditExporter(sessionmaker(loops, expire_on_commit=False), storage)
        audit_export.start()  # audit entries, copied to the lake table audit.events
        stack.callback(audit_export.stop)
        backups.start()
        stack.callback(backups.stop)
        streams.start(sessionmaker(loops, expire_on_commit=False))
        deliveries.start()  # after the engine: they read its logs
        stack.callback(deliveries.stop)
        scorers.start()
        stack.callback(scorers.stop)
        monitors.start()
        stack.callback(monitors.stop)
        costs.start()
        stack.callback(costs.stop)
        yield running


def create_app(settings: Settings, engine: Engine, storage: Backend) -> FastAPI:
    stop_traces: Callable[[], None] | None = None  # set below when traces are on

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Plain (def) routes run on this many threads. Most of a thread's time is spent
        # waiting (the database, storage, a SQL statement), so the default 40 would leave
        # requests queued behind a few slow ones while the CPU idles.
        anyio.to_thread.current_default_thread_limiter().total_tokens = ROUTE_THREADS
        async with _running(settings, engine, storage) as running:
            app.state.services = running  # the one thing kept there: cumulo.services reads it
            try:
                yield
            finally:
                if stop_traces is not None:  # the spans not sent yet, to the collector
                    await anyio.to_thread.run_sync(stop_traces)

    app = FastAPI(
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        title="Cumulo",
        version=cumulo.__version__,
        description="The ML cloud you run yourself. Every route under /api/v1 needs "
        "'Authorization: Bearer <token>'.",
    )
    install_error_handlers(app)
    install_openapi(app)  # /openapi.json declares the error answers, not FastAPI's 422

    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(require_token)])
    for router in ROUTERS:
        api.include_router(router)
    app.include_router(api)
    # /mlflow: MLflow's own API and web UI, behind the same tokens (a browser without one is
    # sent to /login)
    app.include_router(mlflow_router, dependencies=[Depends(require_token_or_login)])
    # /notebooks/NAME/: each notebook's JupyterLab, behind the same sign-in (its WebSockets
    # check their callers themselves)
    app.include_router(notebooks_proxy, dependencies=[Depends(require_token_or_login)])
    app.include_router(notebooks_sockets)
    app.include_router(login_router)  # /login, /logout: a browser's token, as a cookie
    app.include_router(sso_router)  # /login/sso...: single sign-on ([oidc]), the CLI's device flow
    # /endpoints/NAME/invocations: forwarded to the endpoint's replicas, behind the same tokens
    app.include_router(invocations_router, dependencies=[Depends(require_token)])
    # /metrics: every service's, for Prometheus (a bearer token allowed metrics:Read)
    app.include_router(metrics_router, dependencies=[Depends(require_token)])

    @app.get("/healthz", tags=["status"], summary="Liveness, without a token")
    async def healthz() -> dict[str, str]:  # on the event loop: a full thread pool can't delay it
        return {"status": "ok"}

    _mount_docs(app)
    console.mount(app, settings.console_dir)  # last: "/" and the console's pages

    app.add_middleware(AuditChanges)
    app.add_middleware(BodyLimit)
    # AWS's protocols (S3 requests, signed whatever their path; Kinesis's JSON API) to the
    # services that speak them, with limits of their own (5 GiB a PUT); the rest to the routes.
    app.add_middleware(AwsDispatch, domain=settings.s3_domain)
    if settings.otel_endpoint:  # inside RequestContext: a span carries its request id
        stop_traces = install_traces(app, settings.otel_endpoint)
    app.add_middleware(RequestContext, observe=observe_scope if settings.metrics else None)
    return app
