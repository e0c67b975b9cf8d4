"""Engines for SQLite (WAL) and PostgreSQL, a reachability check, and the session dependency."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session
from starlette.requests import Request

from cumulo.errors import Invalid, Unavailable
from cumulo.services import services

__all__ = ["POOL_TIMEOUT_S", "check_database", "get_session", "make_engine", "redact_url"]


def redact_url(url: str) -> str:
    """The URL with its password hidden, fit for logs and ``cumulo status``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _normalize(url: str) -> str:
    # "postgresql://" means psycopg 3 here; SQLAlchemy would pick psycopg2 otherwise.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


# A request that finds every connection busy waits this long, then is answered 503 with
# Retry-After (server/errors.py): a saturated server says so at once, not with a 500 after 30s.
POOL_TIMEOUT_S = 5.0


def make_engine(url: str, *, pool_size: int = 20, max_overflow: int = 20) -> Engine:
    """Create the engine for a database URL; raise Invalid for a URL we cannot use.

    ``pool_size`` connections are kept, ``max_overflow`` more opened under load; a checkout
    that waits :data:`POOL_TIMEOUT_S` raises SQLAlchemy's TimeoutError, which the server answers
    503. The background loops get an engine of their own (server/app.py), so that requests
    that fill this one never starve them."""
    try:
        parsed = make_url(_normalize(url))
    except ArgumentError as exc:
        raise Invalid(
            f"database URL {url!r} is not a URL; use sqlite:///path/cumulo.db or "
            "postgresql://user:password@host:5432/dbname"
        ) from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise Invalid(
            f"database URL {redact_url(url)} names {parsed.get_backend_name()!r}; "
            "Cumulo supports sqlite and postgresql"
        )
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database:
                from pathlib import Path

                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, connect_args={"check_same_thread": False},
                                   pool_size=pool_size, max_overflow=max_overflow,
                                   pool_timeout=POOL_TIMEOUT_S)
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(
                parsed, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True,
                pool_timeout=POOL_TIMEOUT_S, connect_args={"connect_timeout": 5},
            )
    except NoSuchModuleError as exc:
        raise Invalid(f"no driver for {redact_url(url)}: pip install 'cumulo[postgres]'") from exc
    except ModuleNotFoundError as exc:
        raise Invalid(
            f"the driver for {redact_url(url)} is not installed: pip install 'cumulo[postgres]'"
        ) from exc
    return engine


def check_database(engine: Engine) -> None:
    """Connect once, so an unreachable database is one clear error at start."""
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise Unavailable(
            f"cannot reach the metadata database at "
            f"{engine.url.render_as_string(hide_password=True)}: {reason}"
        ) from exc


def get_session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: one session per request, committed by the service code."""
    with services(request).sessions() as session:
        yield session
