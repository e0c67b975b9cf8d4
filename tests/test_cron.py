"""Cron schedules: the missed-run policies every scheduler follows, with made-up times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cumulo.cron import check_cron, due_times
from cumulo.errors import Invalid

T = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def test_missed_cron_times_follow_the_policy() -> None:
    hourly = "0 * * * *"
    assert due_times(hourly, T, T.replace(minute=59), "latest") == []
    # Down from 10:00 to 13:30: three times were missed.
    now = T.replace(hour=13, minute=30)
    assert due_times(hourly, T, now, "latest") == [T.replace(hour=13)]
    assert due_times(hourly, T, now, "all") == [T.replace(hour=h) for h in (11, 12, 13)]
    assert due_times(hourly, T, now, "skip") == []  # 13:00 is 30 minutes late
    on_time = T.replace(hour=13, second=20)
    assert due_times(hourly, T, on_time, "skip") == [T.replace(hour=13)]
    every_minute = due_times("* * * * *", T, T.replace(hour=14), "all")
    assert len(every_minute) == 10 and every_minute[-1] == T.replace(hour=14)  # capped


def test_a_malformed_cron_is_refused_with_an_example() -> None:
    for bad in ("every day", "* * *", "61 * * * *"):
        with pytest.raises(Invalid, match="0 3 \\* \\* \\*"):
            check_cron(bad)
    check_cron("*/5 * * * *")
