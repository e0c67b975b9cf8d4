"""Where a load's data comes from: an object or a prefix in Cumulo's storage, or a URL.

Each source becomes local files (the object's own file on local storage; a spooled download
otherwise), read in bounded memory and written as one commit.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx
import pyarrow as pa
from sqlalchemy.orm import Session

from cumulo import netguard
from cumulo.errors import Invalid, NotFound, Unavailable
from cumulo.lake import ingest
from cumulo.storage import service as storage
from cumulo.storage.backends import Backend
from cumulo.storage.keys import split_path

__all__ = ["SourceFile", "chain", "fetch"]


@dataclass(frozen=True)
class SourceFile:
    path: Path
    label: str  # what errors call it: the object path or the URL


@contextmanager
def fetch(source: str, session: Session, backend: Backend, *,
          allow_internal: bool = False) -> Iterator[list[SourceFile]]:
    """Local files for ``source``; temporary ones are removed afterwards. A URL on an internal
    address is refused unless ``allow_internal`` (the server's setting)."""
    spool = Path(tempfile.mkdtemp(prefix="load-", dir=backend.spool_dir()))
    try:
        if source.startswith(("http://", "https://")):
            yield [_download_url(source, spool, allow_internal=allow_internal)]
        else:
            yield list(_from_storage(source, session, backend, spool))
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def _download_url(url: str, spool: Path, *, allow_internal: bool) -> SourceFile:
    suffix = PurePosixPath(url.split("?", 1)[0]).suffix[:16]
    target = spool / f"download{suffix}"
    try:
        # Each request, each redirect's hop included, is checked and sent to the address that
        # was checked (cumulo.netguard).
        with netguard.client(allow_internal=allow_internal, timeout=60) as http:
            for _ in range(6):
                with http.stream("GET", url) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = str(response.url.join(response.headers["location"]))
                        continue
                    if response.status_code >= 400:
                        raise Invalid(f"{url} answered {response.status_code}; nothing was "
                                      "loaded")
                    with open(target, "wb") as out:
                        for chunk in response.iter_bytes(1 << 20):
                            out.write(chunk)
                    return SourceFile(target, url)
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot download {url}: {exc}") from exc
    raise Invalid(f"{url} redirects too many times; nothing was loaded")


def _from_storage(source: str, session: Session, backend: Backend,
                  spool: Path) -> Iterator[SourceFile]:
    bucket, key = split_path(source)
    if key and not key.endswith("/"):
        rows = [storage.get_object(session, bucket, key)]
    else:
        rows = []
        cursor = None
        while True:
            page = storage.list_objects(session, bucket, prefix=key, cursor=cursor)
            rows.extend(page.objects)
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        rows = [r for r in rows if not r.key.rsplit("/", 1)[-1].startswith((".", "_"))]
        if not rows:
            raise NotFound(f"no objects under {source}; nothing was loaded")
    for row in rows:
        blob = storage.blob_key(bucket, row.key)
        local = backend.local_path(blob)
        if local is None:
            local = spool / f"{len(list(spool.iterdir()))}{PurePosixPath(row.key).suffix}"
            with backend.open(blob) as reader, open(local, "wb") as out:
                shutil.copyfileobj(reader, out, 1 << 20)
        yield SourceFile(local, f"{bucket}/{row.key}")


def chain(files: list[SourceFile], fmt: str | None) -> pa.RecordBatchReader:
    """One stream of batches over several files, each cast to the first file's schema."""
    readers = [ingest.open_reader(f.path, ingest.detect_format(f.label, fmt), label=f.label)
               for f in files[:1]]
    schema = readers[0].schema

    def batches() -> Iterator[pa.RecordBatch]:
        yield from readers[0]
        for f in files[1:]:
            reader = ingest.open_reader(f.path, ingest.detect_format(f.label, fmt), label=f.label)
            if set(reader.schema.names) != set(schema.names):
                raise Invalid(f"{f.label} has columns {reader.schema.names}, but "
                              f"{files[0].label} has {schema.names}; load them separately "
                              "(with --evolve to widen the table)")
            for batch in reader:
                try:
                    yield batch.select(schema.names).cast(schema)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise Invalid(f"{f.label} does not fit the types of {files[0].label}: "
                                  f"{exc}") from exc

    return pa.RecordBatchReader.from_batches(schema, batches())
