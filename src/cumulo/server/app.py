"""The app factory: one FastAPI app, each service's router mounted in one explicit list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

import cumulo
from cumulo import console
from cumulo.access.api import router as access_router
from cumulo.compute.api import clusters_router, jobs_router
from cumulo.config import Settings
from cumulo.lake.api import sql_router, tables_router
from cumulo.metering.api import router as costs_router
from cumulo.ml.api import models_router
from cumulo.ml.api import router as mlflow_router
from cumulo.pipelines.api import lineage_router
from cumulo.pipelines.api import router as pipelines_router
from cumulo.server.auth import require_token
from cumulo.server.errors import install_error_handlers
from cumulo.server.login import router as login_router
from cumulo.server.middleware import RequestContext
from cumulo.server.status import router as status_router
from cumulo.serving.api import endpoints_router, invocations_router
from cumulo.storage.api import router as storage_router
from cumulo.storage.backends import Backend

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"
ROUTERS = (status_router, access_router, storage_router, tables_router, sql_router,
           clusters_router, jobs_router, costs_router, models_router, endpoints_router,
           pipelines_router, lineage_router)


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
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The background supervisors run while the server serves."""
    from cumulo.compute.supervisor import Supervisor
    from cumulo.ml.tracking import TrackingServer

    supervisor = Supervisor(app.state.settings, app.state.engine, app.state.storage)
    app.state.compute = supervisor
    app.state.tracking = TrackingServer(app.state.settings, app.state.storage.url)
    from cumulo.serving.manager import EndpointManager

    endpoints = EndpointManager(app.state.settings, app.state.engine, app.state.tracking.ensure,
                                app.state.storage)
    app.state.endpoints = endpoints
    from cumulo.pipelines.runs import Orchestrator

    pipelines = Orchestrator(app.state.engine, app.state.storage, supervisor.notify)
    app.state.pipelines = pipelines
    supervisor.listeners.append(pipelines.notify)
    supervisor.start()
    endpoints.start()
    pipelines.start()
    try:
        yield
    finally:
        pipelines.stop()
        endpoints.stop()
        supervisor.stop()
        app.state.tracking.stop()
        if getattr(app.state, "endpoints_http", None) is not None:
            await app.state.endpoints_http.aclose()
        if getattr(app.state, "mlflow_http", None) is not None:
            await app.state.mlflow_http.aclose()


def create_app(settings: Settings, engine: Engine, storage: Backend) -> FastAPI:
    app = FastAPI(
        lifespan=_lifespan,
        docs_url=None,
        redoc_url=None,
        title="Cumulo",
        version=cumulo.__version__,
        description="The ML cloud you run yourself. Every route under /api/v1 needs "
        "'Authorization: Bearer <token>'.",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessionmaker(engine, expire_on_commit=False)
    app.state.storage = storage
    install_error_handlers(app)

    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(require_token)])
    for router in ROUTERS:
        api.include_router(router)
    app.include_router(api)
    app.include_router(mlflow_router)  # /mlflow: MLflow's own API, behind the same tokens
    app.include_router(login_router)  # /login, /logout: a browser's token, as a cookie
    # /endpoints/NAME/invocations: forwarded to the endpoint's replicas, behind the same tokens
    app.include_router(invocations_router, dependencies=[Depends(require_token)])

    @app.get("/healthz", tags=["status"], summary="Liveness, without a token")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    _mount_docs(app)
    console.mount(app, settings.console_dir)  # last: "/" and the console's pages

    app.add_middleware(RequestContext)
    return app
