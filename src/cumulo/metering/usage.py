"""Write usage records, price them, and sum them for ``cumulo costs``.

Every service writes its usage through :func:`record`, so this is where metering is turned off
(the setting ``metering``, set once as the server starts with :func:`set_metering`): off, each
use is still priced (a job keeps its cost) but no record is written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.access.users import user_names
from cumulo.config import Prices
from cumulo.errors import Invalid
from cumulo.metering.models import UsageRecord
from cumulo.units import day_of

__all__ = ["GROUPS", "QUANTITIES", "GroupBy", "metering_on", "price", "record", "records",
           "resource_of", "service_of", "service_of_tags", "set_metering", "summarize"]

GroupBy = Literal["day", "cluster", "user", "project", "tag", "kind", "item", "service",
                  "resource"]
GROUPS = ("day", "service", "user", "project", "tag", "resource", "cluster", "kind", "item")

# What is metered besides compute time: each quantity's name in a usage record, the price
# sheet's field that prices it, and how many of the quantity that price is for.
QUANTITIES: dict[str, tuple[str, float]] = {
    "shard_hours": ("shard_hour", 1.0),  # a stream's shards, open for an hour each
    "put_units": ("million_put_units", 1e6),  # PUT payload units: 25 KiB of a record each
    # what storage held, in GB (1e9 bytes) for an hour each; S3 prices a GB-month of 730 hours
    "storage_gb_hours": ("storage_gb_month", 730.0),
    "bytes_scanned": ("tb_scanned", 1e12),  # what SQL queries read (Athena's TB: 1e12 bytes)
    # S3 API requests: PUT, COPY, POST and LIST; GET, HEAD and the rest (priced a thousand)
    "put_requests": ("thousand_put_requests", 1e3),
    "get_requests": ("thousand_get_requests", 1e3),
}

# The setting ``metering`` of this process: one switch, read by every record and check.
_metering = True


def set_metering(on: bool) -> None:
    """Write usage records (``on``), or leave them out, from now on in this process."""
    global _metering
    _metering = on


def metering_on() -> bool:
    """Whether usage records are written in this process (:func:`set_metering`)."""
    return _metering


def service_of_tags(kind: str, tags: Iterable[str]) -> str:
    """The service use of this kind with these tags is billed to: a job run for a pipeline's
    step, a notebook or a model monitor's run (tagged so by them) is the pipeline's, the
    notebook's or the monitor's."""
    if kind == "job":
        for tag in tags:
            if tag.startswith("pipeline:"):
                return "pipeline"
            if tag == "notebook" or tag.startswith("notebook:"):
                return "notebook"
            if tag.startswith("monitor:"):
                return "monitor"
    return kind


def service_of(row: UsageRecord) -> str:
    """The service a record's use is billed to (:func:`service_of_tags`)."""
    return service_of_tags(row.kind, row.tags or ())


def resource_of(row: UsageRecord) -> str:
    """The thing a record's use is of: 'pipeline daily', 'notebook explore', 'job 01J...',
    'endpoint churn', 'bucket data', 'table sales.orders', 'sql alice'..."""
    if row.kind == "job":
        for tag in row.tags or ():
            if tag.startswith(("pipeline:", "notebook:", "monitor:")):
                kind, _, name = tag.partition(":")
                return f"{kind} {name}"
    if row.kind == "sql":
        return "sql queries"
    if ":" in row.ref and row.kind == "storage":  # bucket:data, table:sales.orders
        kind, _, name = row.ref.partition(":")
        return f"{kind} {name}"
    return f"{row.kind} {row.ref}"



def price(prices: Prices, *, cpu_seconds: float = 0.0, memory_gb_seconds: float = 0.0,
          gpu_seconds: float = 0.0, quantities: dict[str, float] | None = None) -> float:
    """Dollars for the use, at the sheet's hourly prices, and its prices for ``quantities``
    (named in QUANTITIES)."""
    dollars = (cpu_seconds * prices.vcpu_hour + memory_gb_seconds * prices.gb_hour
               + gpu_seconds * prices.gpu_hour) / 3600.0
    for name, amount in (quantities or {}).items():
        field, per = QUANTITIES[name]
        dollars += amount * getattr(prices, field) / per
    return dollars


def record(session: Session, prices: Prices, *, kind: str, ref: str, cluster: str | None,
           user_id: int | None, tags: list[str], started_at: datetime, ended_at: datetime,
           cpu_seconds: float = 0.0, memory_gb_seconds: float = 0.0, gpu_seconds: float = 0.0,
           wall_seconds: float = 0.0, project: str | None = None,
           quantities: dict[str, float] | None = None) -> UsageRecord:
    """Add (not commit) one usage record, priced now; ``project``: the work's project's name;
    ``quantities``: what else was used (named in QUANTITIES). With metering off the record is
    priced and returned but not added: nothing is written."""
    unknown = set(quantities or ()) - set(QUANTITIES)
    if unknown:  # a programming error, caught before a record no summary could price
        raise ValueError(f"usage quantities {sorted(unknown)} have no price in the sheet")
    row = UsageRecord(
        kind=kind, ref=ref, cluster=cluster, user_id=user_id, project=project, tags=list(tags),
        day=ended_at.date().isoformat(), started_at=started_at, ended_at=ended_at,
        cpu_seconds=cpu_seconds, memory_gb_seconds=memory_gb_seconds, gpu_seconds=gpu_seconds,
        wall_seconds=wall_seconds, quantities=dict(quantities) if quantities else None,
        cost_usd=price(prices, cpu_seconds=cpu_seconds, memory_gb_seconds=memory_gb_seconds,
                       gpu_seconds=gpu_seconds, quantities=quantities),
    )
    if _metering:
        session.add(row)
    return row


def _day(text: str | None, what: str) -> str | None:
    """The day a ``--since``/``--until`` falls on: a date, a time, or a span back from now."""
    if text is None:
        return None
    return day_of(text, what=what, start=what == "--since").isoformat()


def records(session: Session, *, start: str | None = None, end: str | None = None,
            kind: str | None = None, project: str | None = None) -> list[UsageRecord]:
    """The usage records of the days from ``start`` to ``end`` (YYYY-MM-DD, both counted)."""
    query = select(UsageRecord)
    if start:
        query = query.where(UsageRecord.day >= start)
    if end:
        query = query.where(UsageRecord.day <= end)
    if kind:
        query = query.where(UsageRecord.kind == kind)
    if project:
        query = query.where(UsageRecord.project == project)
    return list(session.scalars(query))


def summarize(session: Session, *, by: str = "day", since: str | None = None,
              until: str | None = None, kind: str | None = None,
              project: str | None = None, own: Prices | None = None,
              primary: str = "cloud") -> dict[str, Any]:
    """Usage and cost summed by day, service, user, project, tag, resource, cluster or kind,
    between two dates (of one project's work only, when ``project`` is given). A group's
    figures include a quantity (``shard_hours``, ``storage_gb_hours``...) only where its
    records have some. With ``own`` (the own-hardware sheet), each group has ``cloud_usd``
    and ``own_usd`` too, and ``cost_usd`` is the ``primary`` sheet's."""
    if by not in GROUPS:
        raise Invalid(f"cannot group costs by {by!r}; use one of {', '.join(GROUPS)}")
    start, end = _day(since, "--since"), _day(until, "--until")
    found = records(session, start=start, end=end, kind=kind, project=project)
    names = user_names(session, (r.user_id for r in found))
    groups: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    total: dict[str, float] = dict.fromkeys(("cpu_seconds", "memory_gb_seconds", "gpu_seconds",
                                             "wall_seconds", "cost_usd", "count"), 0.0)
    for row in found:
        if by == "tag":
            keys = row.tags or ["(untagged)"]
        elif by == "item":  # 'endpoint churn', 'job 01J...'
            keys = [f"{row.kind} {row.ref}"]
        elif by == "resource":
            keys = [resource_of(row)]
        elif by == "service":
            keys = [service_of(row)]
        elif by == "user":
            keys = [names.get(row.user_id, "(deleted)") if row.user_id else "(none)"]
        else:
            keys = [str(getattr(row, by) or "(none)")]
        values = {"cpu_seconds": row.cpu_seconds, "memory_gb_seconds": row.memory_gb_seconds,
                  "gpu_seconds": row.gpu_seconds, "wall_seconds": row.wall_seconds,
                  "cost_usd": row.cost_usd, "count": 1}
        if own is not None:
            own_usd = price(own, cpu_seconds=row.cpu_seconds,
                            memory_gb_seconds=row.memory_gb_seconds,
                            gpu_seconds=row.gpu_seconds, quantities=row.quantities)
            values.update(cloud_usd=row.cost_usd, own_usd=own_usd,
                          cost_usd=own_usd if primary == "own" else row.cost_usd)
        # Quantities are added to a group's figures (and the total's) only where some record
        # has them: a summary of jobs and endpoints reads as it always did.
        values.update(row.quantities or {})
        for key in keys:
            for name, value in values.items():
                groups[key][name] += value
        for name, value in values.items():
            total[name] = total.get(name, 0.0) + value

    def tidy(values: dict[str, float]) -> dict[str, float | int]:
        return {k: int(v) if k in ("count", "put_units") else round(v, 9)
                for k, v in values.items()}

    rows = [{by: key, **tidy(g)} for key, g in sorted(groups.items())]
    return {"by": by, "since": start, "until": end, "project": project, "rows": rows,
            "total": tidy(total)}
