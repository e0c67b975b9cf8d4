"""What storage holds and what SQL scanned, written as usage records every few minutes.

Storage is billed by the byte-hour: each sample writes, per bucket, managed lake table and
MLflow artifact folder, a record of kind ``storage`` with ``storage_gb_hours``: the bytes it
holds now (GB of 1e9 bytes) times the hours since the previous sample (so a sample missed
while the server was down is made up at the next, at the size then). Sizes are read cheaply:

- buckets: one ``SUM(size) ... GROUP BY bucket`` over the objects table, no file touched;
- managed tables: the files under the table's folder (every version they still hold, which is
  what the disk holds), listed once a sample;
- models and artifacts: MLflow's artifact store (``mlflow/``), by its first folder (an
  experiment's, or the registry's ``models``), listed once a sample.

SQL is billed by bytes scanned: each query finished since the last sample is a record of kind
``sql`` with ``bytes_scanned`` (the query's, with Athena's 10 MB minimum as lake/sql.py
bills it). Where each stopped is kept in ``meter_marks``, moved in the transaction that writes
the records, so a restart neither loses nor counts anything twice.

S3 requests are billed by class (PUT/COPY/POST/LIST, and GET/HEAD): the S3 API tallies them in
memory per bucket and caller (:mod:`cumulo.storage.requests`); each round writes one record of
kind ``storage`` per bucket and caller with ``put_requests`` and ``get_requests``
(:func:`meter_requests`). Counts not yet written when the process stops are lost (one round's
at most).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cumulo.access import projects
from cumulo.config import Prices
from cumulo.db import utcnow
from cumulo.lake.models import LakeDatabase, LakeTable, SqlQuery
from cumulo.metering import usage
from cumulo.metering.models import MeterMark
from cumulo.storage.backends import Backend
from cumulo.storage.models import Bucket, StoredObject
from cumulo.storage.requests import RequestTally

__all__ = ["MIN_BILLED_BYTES", "SQL_LAG_SECONDS", "meter_requests", "meter_sql", "pass_over",
           "sample_storage", "sizes"]

log = logging.getLogger("cumulo.metering")
MIN_BILLED_BYTES = 10 * 1024 * 1024  # Athena bills at least 10 MB a query
SQL_LAG_SECONDS = 5.0
# A first sample counts from this long ago at most: what was stored before metering began
# is not billed backwards.
_FIRST_SAMPLE_HOURS = 0.25


def _mark(session: Session, name: str) -> MeterMark | None:
    return session.get(MeterMark, name)


def _set_mark(session: Session, name: str, at: datetime) -> None:
    mark = session.get(MeterMark, name)
    if mark is None:
        session.add(MeterMark(name=name, at=at))
    else:
        mark.at = at


def _walk(folder: Path) -> Iterator[os.DirEntry[str]]:
    stack = [str(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        yield entry
        except (FileNotFoundError, NotADirectoryError):
            continue


def _prefix_sizes(backend: Backend, prefix: str, *, by_first_folder: bool) -> dict[str, int]:
    """Bytes under ``prefix`` (by its first folder's name with ``by_first_folder``, else
    as one entry keyed ""); empty when it cannot be listed."""
    found: dict[str, int] = {}
    try:
        folder = backend.local_path(prefix)
        if folder is not None:
            for entry in _walk(folder):
                rel = os.path.relpath(entry.path, folder)
                key = rel.split(os.sep, 1)[0] if by_first_folder and os.sep in rel else ""
                found[key] = found.get(key, 0) + entry.stat(follow_symlinks=False).st_size
            return found
        from pyarrow import fs

        filesystem, path = backend.arrow_path(prefix)
        for info in filesystem.get_file_info(fs.FileSelector(path, recursive=True,
                                                             allow_not_found=True)):
            if info.type != fs.FileType.File:
                continue
            rel = info.path[len(path):].lstrip("/")
            key = rel.split("/", 1)[0] if by_first_folder and "/" in rel else ""
            found[key] = found.get(key, 0) + (info.size or 0)
    except (OSError, ValueError, ImportError):
        log.warning("metering: cannot list %s to meter storage", prefix, exc_info=True)
    return found


def sizes(session: Session, backend: Backend) -> list[tuple[str, int, int | None, int | None]]:
    """What storage holds now: (ref, bytes, user id, project id) for each bucket
    (``bucket:NAME``), managed table (``table:DB.NAME``), artifact folder
    (``artifacts:FOLDER``), stream's archived segments (``stream:NAME``), and the jobs' files
    of each user and project (``jobs:files``)."""
    found: list[tuple[str, int, int | None, int | None]] = []
    for name, created_by, project_id, size in session.execute(
            select(Bucket.name, Bucket.created_by, Bucket.project_id,
                   func.coalesce(func.sum(StoredObject.size), 0))
            .outerjoin(StoredObject, StoredObject.bucket_id == Bucket.id)
            .group_by(Bucket.id, Bucket.name, Bucket.created_by, Bucket.project_id)):
        found.append((f"bucket:{name}", int(size or 0), created_by, project_id))
    for table, database in session.execute(
            select(LakeTable, LakeDatabase.name)
            .join(LakeDatabase, LakeDatabase.id == LakeTable.database_id)
            .where(LakeTable.kind == "managed")):
        held = _prefix_sizes(backend, table.location.rstrip("/") + "/", by_first_folder=False)
        found.append((f"table:{database}.{table.name}", held.get("", 0), table.created_by,
                      table.project_id))
    for folder, size in sorted(_prefix_sizes(backend, "mlflow/", by_first_folder=True).items()):
        found.append((f"artifacts:{folder or '(root)'}", size, None, None))
    found.extend(_jobs_files(session, backend))
    found.extend(_stream_archives(session, backend))
    return found


def _jobs_files(session: Session, backend: Backend) -> list[tuple[str, int, int | None,
                                                                    int | None]]:
    """Jobs' files (``jobs/ID/``: logs, outputs, checkpoints), summed per owner and project:
    ``jobs:files``, one entry for each."""
    from cumulo.compute.models import Job

    held = _prefix_sizes(backend, "jobs/", by_first_folder=True)
    ids = [job_id for job_id in held if job_id]
    owners: dict[str, tuple[int | None, int | None]] = {}
    for start in range(0, len(ids), 500):
        owners.update({job_id: (user, project) for job_id, user, project in session.execute(
            select(Job.id, Job.created_by, Job.project_id).where(
                Job.id.in_(ids[start:start + 500])))})
    summed: dict[tuple[int | None, int | None], int] = {}
    for job_id, size in held.items():
        owner = owners.get(job_id, (None, None))  # a deleted job's files, until they go
        summed[owner] = summed.get(owner, 0) + size
    return [("jobs:files", size, user, project) for (user, project), size in summed.items()]


def _stream_archives(session: Session, backend: Backend) -> list[tuple[str, int, int | None,
                                                                         int | None]]:
    """Streams' segments archived to storage (``streams/NAME/``): ``stream:NAME`` each."""
    from cumulo.streams.models import Stream

    held = _prefix_sizes(backend, "streams/", by_first_folder=True)
    owners = {name: (user, project) for name, user, project in session.execute(
        select(Stream.name, Stream.created_by, Stream.project_id).where(
            Stream.name.in_([n for n in held if n])))} if held else {}
    return [(f"stream:{name}", size, *owners.get(name, (None, None)))
            for name, size in sorted(held.items()) if name]


def sample_storage(session: Session, backend: Backend, prices: Prices, *,
                   now: datetime | None = None) -> int:
    """Write (and commit) one storage record per holder for the hours since the last sample;
    the records written."""
    now = now or utcnow()
    mark = _mark(session, "storage")
    if mark is not None and mark.at >= now:
        return 0
    hours = ((now - mark.at).total_seconds() / 3600.0 if mark is not None
             else _FIRST_SAMPLE_HOURS)
    since = mark.at if mark is not None else now
    written = 0
    held = sizes(session, backend)
    names = projects.names_of(session, (p for _, _, _, p in held))
    for ref, size, user_id, project_id in held:
        if size <= 0:
            continue
        usage.record(session, prices, kind="storage", ref=ref, cluster=None, user_id=user_id,
                     tags=[], started_at=since, ended_at=now,
                     project=names.get(project_id) if project_id is not None else None,
                     quantities={"storage_gb_hours": size / 1e9 * hours})
        written += 1
    _set_mark(session, "storage", now)
    session.commit()
    return written


def meter_sql(session: Session, prices: Prices, *, now: datetime | None = None) -> int:
    """Write (and commit) one ``sql`` record per query finished since the last time; the
    records written."""
    # Up to a little before now: a query that has just finished may not be committed yet.
    cutoff = (now or utcnow()) - timedelta(seconds=SQL_LAG_SECONDS)
    mark = _mark(session, "sql")
    query = select(SqlQuery).where(SqlQuery.finished_at.is_not(None),
                                   SqlQuery.finished_at <= cutoff)
    if mark is not None:
        query = query.where(SqlQuery.finished_at > mark.at)
    written = 0
    for q in session.scalars(query.order_by(SqlQuery.finished_at)):
        # Billed as lake/sql.py bills it: nothing for what Cumulo answered itself (its
        # cost is 0), else the bytes scanned, 10 MB at least.
        billed = 0 if not q.cost_usd else max(q.bytes_scanned or 0, MIN_BILLED_BYTES)
        assert q.finished_at is not None
        usage.record(session, prices, kind="sql", ref=q.id, cluster=None,
                     user_id=q.created_by, tags=[], started_at=q.created_at,
                     ended_at=q.finished_at,
                     wall_seconds=(q.duration_ms or 0.0) / 1000.0,
                     quantities={"bytes_scanned": float(billed)})
        written += 1
    _set_mark(session, "sql", cutoff)
    session.commit()
    return written


def meter_requests(session: Session, prices: Prices, tally: RequestTally, *,
                   since: datetime, now: datetime | None = None) -> int:
    """Write (and commit) the S3 requests tallied since ``since``: one ``storage`` record per
    bucket and caller, in the bucket's project (requests to a bucket that no longer exists
    are dropped). The records written; counts a failed write could not keep are counted
    again next time."""
    now = now or utcnow()
    taken = tally.take()
    if not taken:
        return 0
    try:
        buckets = {name: project_id for name, project_id in session.execute(
            select(Bucket.name, Bucket.project_id).where(
                Bucket.name.in_({bucket for bucket, _ in taken})))}
        names = projects.names_of(session, (p for p in buckets.values() if p is not None))
        written = 0
        for (bucket, user_id), counts in taken.items():
            if bucket not in buckets:
                continue
            project_id = buckets[bucket]
            usage.record(session, prices, kind="storage", ref=f"bucket:{bucket}",
                         cluster=None, user_id=user_id, tags=[], started_at=since,
                         ended_at=now,
                         project=names.get(project_id) if project_id is not None else None,
                         quantities={"put_requests": float(counts.get("put", 0)),
                                     "get_requests": float(counts.get("get", 0))})
            written += 1
        session.commit()
    except Exception:
        session.rollback()
        tally.give_back(taken)
        raise
    return written


def pass_over(session: Session, *, now: datetime | None = None) -> None:
    """Move both samplers' marks to ``now``, writing nothing: with metering off, what storage
    held and what SQL scanned meanwhile is not billed when metering is on again."""
    now = now or utcnow()
    _set_mark(session, "storage", now)
    _set_mark(session, "sql", now - timedelta(seconds=SQL_LAG_SECONDS))
    session.commit()
