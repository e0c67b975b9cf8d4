"""Cron schedules, as every scheduler of the platform reads them (pipelines, backups): five
fields (minute hour day month weekday), or six with seconds last, in UTC.

Cron times missed while the control plane was down, or while the previous run was still going,
follow a policy: ``skip`` them (only a time less than a minute late runs), run once for the
``latest`` (the default), or run ``all`` of them, one after another, at most ``MAX_CATCH_UP``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cumulo.errors import Invalid

__all__ = ["MAX_CATCH_UP", "MISSED", "ON_TIME", "check_cron", "due_times"]

MISSED = ("skip", "latest", "all")
MAX_CATCH_UP = 10
ON_TIME = timedelta(seconds=60)  # a cron time this late still runs under missed=skip


def check_cron(cron: str) -> None:
    """Refuse what is not a cron expression, saying what one looks like."""
    from croniter import croniter

    fields = cron.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(cron):
        raise Invalid(f"cron {cron!r} is not a cron expression: five fields, minute hour "
                      "day-of-month month day-of-week (and seconds, a sixth), like "
                      "'0 3 * * *' for 03:00 UTC every day")


def due_times(cron: str, last: datetime, now: datetime, missed: str) -> list[datetime]:
    """The cron times to run for, after ``last`` up to ``now``, under the missed policy."""
    from croniter import croniter

    times: list[datetime] = []
    it = croniter(cron, last)
    while len(times) < 10_000:
        t = it.get_next(datetime)
        if t > now:
            break
        times.append(t)
    if not times:
        return []
    if missed == "all":
        return times[-MAX_CATCH_UP:]
    if missed == "skip":
        return [times[-1]] if now - times[-1] <= ON_TIME else []
    return [times[-1]]
