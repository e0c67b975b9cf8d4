"""Metadata store: SQLAlchemy 2 on SQLite (WAL) or PostgreSQL, with Alembic migrations."""

from cumulo.db.base import Base, Created, InProject, UTCDateTime, binary_text, utcnow
from cumulo.db.engine import check_database, get_session, make_engine, redact_url
from cumulo.db.migrate import upgrade

__all__ = [
    "Base",
    "Created",
    "InProject",
    "UTCDateTime",
    "binary_text",
    "check_database",
    "get_session",
    "make_engine",
    "redact_url",
    "upgrade",
    "utcnow",
]
