"""Table references: ``db.table``, ``db.table@v3``, ``db.table@2026-11-26T10:00:00Z``.

The same notation names a table version everywhere outside SQL: loads, reads, job inputs,
training and pipelines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from cumulo.errors import Invalid
from cumulo.units import parse_time

__all__ = ["TableRef", "parse_ref", "validate_name"]

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def validate_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise Invalid(
            f"{what} name {name!r} is not allowed: use 1-63 characters of a-z, 0-9 and '_', "
            "starting with a letter or '_', e.g. 'sales' or 'orders_2026'",
            details={what: name},
        )
    return name


@dataclass(frozen=True)
class TableRef:
    database: str
    table: str
    version: int | None = None
    as_of: datetime | None = None

    @property
    def name(self) -> str:
        return f"{self.database}.{self.table}"

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@v{self.version}"
        if self.as_of is not None:
            return f"{self.name}@{self.as_of.isoformat().replace('+00:00', 'Z')}"
        return self.name


def parse_timestamp(text: str) -> datetime:
    """A point in time of a table (``@2026-11-26T10:00:00Z``, ``@2026-11-26``, ``@7d``): the
    one grammar of :func:`cumulo.units.parse_time`."""
    return parse_time(text, what="@time")


def parse_ref(text: str) -> TableRef:
    """Parse ``db.table``, ``db.table@vN`` or ``db.table@TIMESTAMP``."""
    name, at, when = text.strip().partition("@")
    database, dot, table = name.partition(".")
    if not dot:
        raise Invalid(f"table {text!r} needs its database: write DATABASE.TABLE, e.g. sales.orders")
    validate_name(database, "database")
    validate_name(table, "table")
    if not at:
        return TableRef(database, table)
    if re.fullmatch(r"v?\d+", when):
        return TableRef(database, table, version=int(when.lstrip("v")))
    return TableRef(database, table, as_of=parse_timestamp(when))
