"""A month-end forecast, and cost anomalies: pure functions of daily costs and a clock.

Forecast: what the month has cost so far, plus the trailing daily rate times what is left of
the month. The rate is what the last ``TRAILING_DAYS`` days cost (today so far included),
over the time they span (six whole days and today's part): a busy week weighs more than a
quiet start of the month, and the first day of a month still has a rate to go by.

Anomaly: a day whose cost is more than ``ANOMALY_FACTOR`` times the mean of the
``ANOMALY_WINDOW`` days before it (days without use count as zero) and above
``ANOMALY_FLOOR_USD``, so that cents on an idle platform never alert. A window with no cost at
all has no mean to be far above: only the floor and a day of history count there, and no
alert is raised.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta
from typing import Any

__all__ = ["ANOMALY_FACTOR", "ANOMALY_FLOOR_USD", "ANOMALY_WINDOW", "TRAILING_DAYS",
           "anomaly", "forecast"]

TRAILING_DAYS = 7
ANOMALY_FACTOR = 3.0
ANOMALY_WINDOW = 14
ANOMALY_FLOOR_USD = 1.0


def _daily(costs: dict[str, float], day: date) -> float:
    return costs.get(day.isoformat(), 0.0)


def forecast(costs: dict[str, float], now: datetime) -> dict[str, Any]:
    """The month of ``now``: spent so far, the trailing daily rate, and the month-end
    forecast. ``costs``: dollars by day (YYYY-MM-DD), this month's and the days before."""
    today = now.date()
    first = today.replace(day=1)
    days_in_month = calendar.monthrange(today.year, today.month)[1]
    spent = sum(v for k, v in costs.items() if first.isoformat() <= k <= today.isoformat())
    today_part = (now - datetime.combine(today, datetime.min.time(), now.tzinfo)
                  ).total_seconds() / 86400.0
    window = [today - timedelta(days=i) for i in range(TRAILING_DAYS)]
    span = TRAILING_DAYS - 1 + today_part
    rate = sum(_daily(costs, d) for d in window) / span if span > 0 else 0.0
    left = days_in_month - today.day + (1.0 - today_part)
    return {"month": today.strftime("%Y-%m"), "spent_usd": round(spent, 9),
            "daily_rate_usd": round(rate, 9), "days_left": round(left, 4),
            "forecast_usd": round(spent + rate * left, 9),
            "method": f"spent so far + the last {TRAILING_DAYS} days' cost per day x days "
                      "left in the month"}


def anomaly(costs: dict[str, float], day: date, *, factor: float = ANOMALY_FACTOR,
            window: int = ANOMALY_WINDOW, floor: float = ANOMALY_FLOOR_USD
            ) -> dict[str, float] | None:
    """Whether ``day`` cost far more than the days before it: its figures if so, else None."""
    cost = _daily(costs, day)
    before = [_daily(costs, day - timedelta(days=i)) for i in range(1, window + 1)]
    mean = sum(before) / window
    if cost <= floor or mean <= 0 or cost <= factor * mean:
        return None
    return {"cost_usd": round(cost, 6), "trailing_mean_usd": round(mean, 6),
            "factor": round(cost / mean, 2)}
