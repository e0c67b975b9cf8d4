"""The app factory: one FastAPI app, each service's router mounted in one explicit list."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import RedirectResponse
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

import cumulo
from cumulo.access.api import router as access_router
from cumulo.config import Settings
from cumulo.server.auth import require_token
from cumulo.server.errors import install_error_handlers
from cumulo.server.middleware import RequestContext
from cumulo.server.status import router as status_router
from cumulo.storage.api import router as storage_router
from cumulo.storage.backends import Backend

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"
ROUTERS = (status_router, access_router, storage_router)


def create_app(settings: Settings, engine: Engine, storage: Backend) -> FastAPI:
    app = FastAPI(
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

    @app.get("/healthz", tags=["status"], summary="Liveness, without a token")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    app.add_middleware(RequestContext)
    return app
