"""Where SQL results live: ``sql/results/<query id>.parquet`` in the server's storage.

A query's rows are streamed into a Parquet file in the storage's spool folder, then committed to
their key, and the query's history row keeps the key (``SqlQuery.result_location``). Every
control plane on the same database and storage serves them: pages read only the row groups that
hold their rows (ranged reads, on S3), downloads stream them row group by row group.

Results are kept a day after their query finished, counted from the history row's times, not
from the files': :func:`prune` removes the older ones (and any that no history row names).
Rows of versions that wrote results under the server's home (``<home>/results/<id>.parquet``,
an absolute path in ``result_location``) are read from that path while the file is there.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.errors import NotFound
from cumulo.lake.models import SqlQuery
from cumulo.storage.backends import Backend
from cumulo.storage.leftovers import marked

__all__ = ["GONE", "KEPT_S", "PREFIX", "kept", "key_for", "page", "prune", "read_page",
           "stream", "write"]

log = logging.getLogger("cumulo.lake")

PREFIX = "sql/results/"
KEPT_S = 24 * 3600
GONE = "the results of this query are gone; run it again"
_SUFFIX = ".parquet"
_BATCH_ROWS = 65536


def key_for(query_id: str) -> str:
    return f"{PREFIX}{query_id}{_SUFFIX}"


def _legacy(location: str) -> bool:
    """Whether ``location`` is a file of the home (older versions), not a storage key."""
    return os.path.isabs(location)


def write(backend: Backend, query_id: str, reader: pa.RecordBatchReader) -> tuple[str, int]:
    """Stream ``reader`` into the query's result file; its storage key and its rows. Only one
    batch is held at a time; the file appears at its key whole, or not at all."""
    spool = backend.spool_dir()
    spool.mkdir(parents=True, exist_ok=True)
    # Named for this process: a server starting beside a live one removes only the files of
    # processes that ended (cumulo.storage.leftovers).
    fd, name = tempfile.mkstemp(dir=spool, prefix=marked("result"), suffix=_SUFFIX)
    os.close(fd)
    tmp, key, rows = Path(name), key_for(query_id), 0
    try:
        with pq.ParquetWriter(tmp, reader.schema) as out:
            for batch in reader:
                out.write_batch(batch)
                rows += batch.num_rows
        backend.commit(tmp, key)
    finally:
        tmp.unlink(missing_ok=True)
    return key, rows


def _source(backend: Backend, location: str) -> pa.NativeFile:
    """The result file, opened for random access (ranged reads on an object store)."""
    try:
        if _legacy(location):
            return pa.OSFile(location)
        filesystem, path = backend.arrow_path(location)
        return filesystem.open_input_file(path)
    except FileNotFoundError as exc:
        raise NotFound(GONE) from exc


@contextmanager
def _opened(backend: Backend, location: str) -> Iterator[pq.ParquetFile]:
    with _source(backend, location) as f:
        yield pq.ParquetFile(f)


def read_page(backend: Backend, location: str, *, offset: int, limit: int) -> pa.Table:
    """Rows [offset, offset + limit) of a result."""
    with _opened(backend, location) as source:
        return page(source, offset=offset, limit=limit)


def page(source: pq.ParquetFile, *, offset: int, limit: int) -> pa.Table:
    """Rows [offset, offset + limit), reading only the row groups that hold them."""
    pieces: list[pa.Table] = []
    taken = seen = 0
    for group in range(source.num_row_groups):
        n = source.metadata.row_group(group).num_rows
        if seen + n > offset and taken < limit:
            piece = source.read_row_group(group).slice(max(offset - seen, 0), limit - taken)
            pieces.append(piece)
            taken += piece.num_rows
        seen += n
        if taken >= limit:
            break
    return pa.concat_tables(pieces) if pieces else source.schema_arrow.empty_table()


def stream(backend: Backend, location: str) -> pa.RecordBatchReader:
    """Every row of a result, a batch at a time; the file closes when the reader is done. A
    missing result fails here, before anything is streamed."""
    f = _source(backend, location)
    try:
        source = pq.ParquetFile(f)
    except BaseException:
        f.close()
        raise

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from source.iter_batches(batch_size=_BATCH_ROWS)
        finally:
            f.close()

    return pa.RecordBatchReader.from_batches(source.schema_arrow, batches())


def kept(query: SqlQuery, now: datetime) -> bool:
    """Whether a query's results are still there to read: those of a succeeded query, for a
    day after it finished (and, written by an older version, while their file is there)."""
    location = query.result_location
    if query.state != "succeeded" or not location:
        return False
    if _legacy(location) and not Path(location).is_file():
        return False
    done = query.finished_at or query.created_at
    return done >= now - timedelta(seconds=KEPT_S)


def prune(session: Session, backend: Backend, *, legacy: Path | None,
          now: datetime) -> list[str]:
    """Remove the results of queries that finished more than a day before ``now`` (a query
    still running counts from its start: its timeout is a day at most), and those no history
    row names; ``legacy``: the home's folder where older versions wrote theirs. What went, by
    key or path."""
    found: dict[str, tuple[str, Any]] = {}
    for blob in backend.walk(PREFIX):
        name = blob.key.rsplit("/", 1)[-1]
        if name.endswith(_SUFFIX):
            found[name.removesuffix(_SUFFIX)] = (blob.key, backend.delete)
    if legacy is not None and legacy.is_dir():
        for path in legacy.glob(f"*{_SUFFIX}"):
            found.setdefault(path.stem, (str(path), _unlink))
    cutoff = now - timedelta(seconds=KEPT_S)
    ids = sorted(found)
    recent: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        rows = session.execute(select(SqlQuery.id, SqlQuery.finished_at, SqlQuery.created_at)
                               .where(SqlQuery.id.in_(chunk)))
        recent.update(qid for qid, finished, created in rows if (finished or created) >= cutoff)
    gone = []
    for qid in ids:
        if qid not in recent:
            where, remove = found[qid]
            remove(where)
            gone.append(where)
    if gone:
        log.info("removed %d SQL result(s) older than a day", len(gone))
    return gone


def _unlink(path: str) -> None:
    Path(path).unlink(missing_ok=True)
