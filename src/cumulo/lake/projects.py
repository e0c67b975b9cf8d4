"""Which project the lake's databases and tables belong to: a table is in its own project,
else in its database's (a table takes its database's project when it is made, by a load, SQL
or the crawler). The decision point asks these for callers whose rights are bound in a
project (:mod:`cumulo.access.holders`).

Apart from :mod:`cumulo.lake.catalog` so that the server registers them when it starts,
without importing the lake's engines (pyarrow, deltalake) as the catalog does.
"""

from __future__ import annotations

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from cumulo.access import holders
from cumulo.access.models import Project
from cumulo.lake.models import LakeDatabase, LakeTable

__all__ = ["database_project", "table_project"]


def database_project(session: Session, rest: str) -> str | None:
    """The project of ``database/NAME``."""
    return session.scalar(
        select(Project.name).join(LakeDatabase, LakeDatabase.project_id == Project.id)
        .where(LakeDatabase.name == rest.split("/", 1)[0]))


def table_project(session: Session, rest: str) -> str | None:
    """The project of ``table/DB/TABLE``: the table's, else its database's (so a table not
    made yet is placed where it will be)."""
    database, _, table = rest.partition("/")
    home = func.coalesce(LakeTable.project_id, LakeDatabase.project_id)
    return session.scalar(
        select(Project.name).select_from(LakeDatabase)
        .outerjoin(LakeTable, and_(LakeTable.database_id == LakeDatabase.id,
                                   LakeTable.name == table))
        .join(Project, Project.id == home)
        .where(LakeDatabase.name == database))


holders.register("database", database_project)
holders.register("table", table_project)
