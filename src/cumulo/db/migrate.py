"""Apply Alembic migrations at start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Engine

__all__ = ["upgrade"]

_SCRIPTS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x63756D756C6F  # "cumulo": the advisory lock key control planes migrate under


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema, within one connection. On PostgreSQL, under an
    advisory lock held to the end of the transaction: control planes that start together
    migrate one after the other (the later ones find nothing left to do)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("select pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
