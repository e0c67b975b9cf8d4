"""The lake's tables through the S3 API, read-only: ``s3://lake/DATABASE/TABLE/...`` holds each
table's Delta log and Parquet files as they are, so Spark, DuckDB, polars, deltalake and
pyarrow read a table (at any version: the log is there) with their own S3 support.

The caller's grants decide, table by table: a table they may not read (``tables:Read``) is not
listed and is AccessDenied; so is one with column masks or row filters for them, whose files
would show what the masks hide (those are read through SQL). Nothing is written here: a table
changes through Cumulo (``cumulo tables``, SQL), which keeps its catalog.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from cumulo.errors import Forbidden, NotFound
from cumulo.lake.models import LakeTable
from cumulo.lake.refs import TableRef
from cumulo.principal import Principal
from cumulo.storage.backends import Backend
from cumulo.storage.s3api import virtual
from cumulo.storage.s3api.virtual import VirtualObject

__all__ = ["BUCKET", "LakeBucket"]

BUCKET = "lake"


def _etag(size: int, mtime_ns: int, etag: str | None) -> str:
    return f'"{etag.strip(chr(34))}"' if etag else f'"{mtime_ns:x}-{size:x}"'


class LakeBucket:
    def _tables(self, session: Session, principal: Principal) -> list[tuple[str, LakeTable]]:
        from cumulo.lake import access, catalog  # (Arrow and DuckDB: loaded when first used)

        found = []
        for database, table in catalog.list_tables(session):
            if not principal.can("tables:Read", f"table/{database}/{table.name}"):
                continue
            if access.restricted(session, principal.user_id, table.id):
                continue
            found.append((database, table))
        return found

    def list(self, session: Session, backend: Backend, principal: Principal, prefix: str,
             delimiter: str | None) -> tuple[list[VirtualObject], list[str]]:
        tables = self._tables(session, principal)
        depth = prefix.count("/")
        if delimiter == "/" and depth < 2:
            names = {f"{d}/" if depth == 0 else f"{d}/{t.name}/" for d, t in tables}
            return [], sorted(n for n in names if n.startswith(prefix))
        objects = []
        for database, table in tables:
            base = f"{database}/{table.name}/"
            if not (base.startswith(prefix) or prefix.startswith(base)):
                continue
            root = table.location.rstrip("/") + "/"
            for blob in backend.walk(root):
                key = base + blob.key[len(root):]
                if key.startswith(prefix):
                    objects.append(VirtualObject(
                        key, blob.size, datetime.fromtimestamp(blob.mtime_ns / 1e9, UTC),
                        _etag(blob.size, blob.mtime_ns, blob.etag), blob.key))
        objects.sort(key=lambda o: o.key)
        return objects, []

    def get(self, session: Session, backend: Backend, principal: Principal,
            key: str) -> VirtualObject:
        database, _, rest = key.partition("/")
        name, _, inside = rest.partition("/")
        if not inside:
            raise NotFound(f"no object {key!r} in bucket 'lake': its keys are "
                           "DATABASE/TABLE/PATH", details={"key": key})
        from cumulo.lake import access, catalog

        principal.require("tables:Read", f"table/{database}/{name}")
        table = catalog.get_table(session, TableRef(database, name))
        if access.restricted(session, principal.user_id, table.id):
            raise Forbidden(f"table {database}.{name} has column masks or row filters for you: "
                            "its files would show what they hide; read it through SQL")
        blob = table.location.rstrip("/") + "/" + inside
        local = backend.local_path(blob)
        if local is not None:
            try:
                st = os.stat(local)
            except (FileNotFoundError, NotADirectoryError):
                raise NotFound(f"no object {key!r} in bucket 'lake'",
                               details={"key": key}) from None
            return VirtualObject(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC),
                                 _etag(st.st_size, st.st_mtime_ns, None), blob)
        for found in backend.walk(blob):
            if found.key == blob:
                return VirtualObject(
                    key, found.size, datetime.fromtimestamp(found.mtime_ns / 1e9, UTC),
                    _etag(found.size, found.mtime_ns, found.etag), blob)
        raise NotFound(f"no object {key!r} in bucket 'lake'", details={"key": key})


virtual.register(BUCKET, LakeBucket)
