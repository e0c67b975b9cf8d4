"""Budgets' decisions, the forecast, anomalies and the price sheets: pure functions, with a
clock the test controls (like serving/rollout.py's tests)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from cumulo.config import OwnHardware, Prices
from cumulo.errors import Invalid
from cumulo.metering import budgets, forecast, sheets, usage

ACTIONS = budgets.parse_actions("100%:stop-new-jobs,scale-endpoints-to-zero")
THRESHOLDS = budgets.parse_thresholds("50%,80%,100%")


class Budget:
    """A budget's state as the watch keeps it, moved along by each decision."""

    def __init__(self, amount: float, period: str = "month") -> None:
        self.amount, self.period = amount, period
        self.key: str | None = None
        self.alerted: list[float] = []
        self.acting: list[str] = []
        self.taken: list[tuple[str, str]] = []  # (when, action), as the watch does them

    def step(self, spent: float, now: datetime) -> budgets.Decision:
        d = budgets.decide(period=self.period, amount=self.amount, thresholds=THRESHOLDS,
                           actions=ACTIONS, state_key=self.key, alerted=self.alerted,
                           acting=self.acting, spent=spent, now=now)
        if d.turned:
            self.alerted, self.acting = [], []
        self.key = d.period_key
        self.acting = [a for a in self.acting if a not in d.undo] + d.take
        self.alerted = sorted({*self.alerted, *d.alert})
        self.taken += [(now.isoformat(), a) for a in d.take]
        return d


def at(day: int, hour: int = 12, month: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def test_a_budget_crossed_mid_month_triggers_its_action_once() -> None:
    b = Budget(50.0)
    assert b.step(10.0, at(3)).alert == []
    assert b.step(26.0, at(10)).alert == [50.0]
    crossed = b.step(51.0, at(15))
    assert crossed.alert == [80.0, 100.0]
    assert crossed.take == ["stop-new-jobs", "scale-endpoints-to-zero"]
    for hour in range(13, 24):  # every check after: nothing new
        later = b.step(60.0 + hour, at(15, hour))
        assert later.empty, later
    assert b.step(90.0, at(28)).empty
    assert b.taken == [(at(15).isoformat(), "stop-new-jobs"),
                       (at(15).isoformat(), "scale-endpoints-to-zero")]


def test_the_period_turning_undoes_the_actions_and_alerts_start_again() -> None:
    b = Budget(50.0)
    b.step(55.0, at(20))
    assert b.acting == ["stop-new-jobs", "scale-endpoints-to-zero"]
    turned = b.step(0.0, datetime(2027, 1, 1, 0, 5, tzinfo=UTC))
    assert turned.turned and turned.period_key == "2027-01"
    assert turned.undo == ["stop-new-jobs", "scale-endpoints-to-zero"] and turned.take == []
    assert b.acting == [] and b.alerted == []
    again = b.step(30.0, datetime(2027, 1, 9, tzinfo=UTC))
    assert again.alert == [50.0] and not again.take


def test_raising_the_budget_above_what_was_spent_undoes_the_actions() -> None:
    b = Budget(50.0)
    b.step(60.0, at(10))
    b.amount = 100.0
    raised = b.step(60.0, at(10, 13))
    assert raised.undo == ["stop-new-jobs", "scale-endpoints-to-zero"] and not raised.turned
    assert b.acting == []
    b.amount = 55.0  # lowered below what was spent again: taken again, once
    assert b.step(60.0, at(10, 14)).take == ["stop-new-jobs", "scale-endpoints-to-zero"]


def test_periods_day_and_week() -> None:
    assert budgets.period_key("day", at(4)) == "2026-12-04"
    assert budgets.period_key("week", at(4)) == "2026-W49"
    assert budgets.period_days("week", at(4)) == (date(2026, 11, 30), date(2026, 12, 6))
    assert budgets.period_days("month", at(4, month=2)) == (date(2026, 2, 1), date(2026, 2, 28))
    b = Budget(1.0, period="day")
    assert b.step(2.0, at(4)).take
    assert b.step(0.0, at(5, 0)).undo == ["stop-new-jobs", "scale-endpoints-to-zero"]


@pytest.mark.parametrize(("text", "message"), [
    ("projects:x", "is not a scope: use all, project:NAME"),
    ("project:", "names no project"),
    ("tag:team", "a tag scope is tag:KEY=VALUE"),
    ("service:lambda", "unknown service 'lambda'"),
    ("everything", "is not a scope"),
])
def test_unknown_scopes_are_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        budgets.parse_scope(text)


def test_grammar() -> None:
    assert budgets.parse_thresholds("80%, 50%,100") == [50.0, 80.0, 100.0]
    assert budgets.parse_actions("stop-new-jobs") == [{"at": 100.0, "action": "stop-new-jobs"}]
    assert budgets.parse_actions("80%:stop-new-jobs,120%:scale-endpoints-to-zero") == [
        {"at": 80.0, "action": "stop-new-jobs"},
        {"at": 120.0, "action": "scale-endpoints-to-zero"}]
    for bad, message in [("100%:delete-everything", "unknown action 'delete-everything'"),
                         ("x%:stop-new-jobs", "is not a percent"),
                         ("stop-new-jobs,stop-new-jobs", "given twice")]:
        with pytest.raises(Invalid, match=message):
            budgets.parse_actions(bad)
    for bad, message in [("50%,lots", "'lots' is not a percent"), ("0%", "above 0%"),
                         ("-5%", "above 0%")]:
        with pytest.raises(Invalid, match=message):
            budgets.parse_thresholds(bad)
    for amount in ("0", "-3", "ten", "nan", "inf"):
        with pytest.raises(Invalid, match="--amount"):
            budgets.parse_amount(amount)
    scope = budgets.parse_scope("tag:team=a")
    assert scope.covers(budgets.Work("job", None, "ann", ("team=a",)))
    assert not scope.covers(budgets.Work("job", None, "ann", ("team=b",)))
    assert budgets.parse_scope("service:pipeline").covers(
        budgets.Work(usage.service_of_tags("job", ["pipeline:daily"]), None, None))
    # A model monitor's run is a job billed to the monitor.
    monitored = usage.service_of_tags("job", ["monitor", "monitor:churn", "monitor-run:3"])
    assert monitored == "monitor"
    assert budgets.parse_scope("service:monitor").covers(budgets.Work(monitored, None, None))


def test_forecast_is_spent_plus_the_trailing_rate_times_days_left() -> None:
    costs = {f"2026-09-{d:02d}": 1.0 for d in range(1, 11)}
    costs["2026-08-31"] = 5.0  # last month: not spent this month
    found = forecast.forecast(costs, datetime(2026, 9, 10, 12, tzinfo=UTC))
    rate = 7.0 / 6.5  # days 4..10, over six whole days and half of today
    assert found["spent_usd"] == 10.0
    assert found["daily_rate_usd"] == pytest.approx(rate)
    assert found["days_left"] == 20.5
    assert found["forecast_usd"] == pytest.approx(10.0 + rate * 20.5)
    # The first hours of a month go by the days before it.
    early = forecast.forecast({"2026-08-31": 7.0}, datetime(2026, 9, 1, 0, tzinfo=UTC))
    assert early["spent_usd"] == 0 and early["forecast_usd"] == pytest.approx(7.0 / 6 * 30)


def test_an_anomaly_is_a_day_far_above_the_trailing_mean_and_above_the_floor() -> None:
    base: dict[str, Any] = {f"2026-07-{d:02d}": 2.0 for d in range(1, 15)}
    assert forecast.anomaly({**base, "2026-07-15": 6.0}, date(2026, 7, 15)) is None  # 3x: not above
    found = forecast.anomaly({**base, "2026-07-15": 6.5}, date(2026, 7, 15))
    assert found == {"cost_usd": 6.5, "trailing_mean_usd": 2.0, "factor": 3.25}
    cheap = {f"2026-07-{d:02d}": 0.01 for d in range(1, 15)}
    assert forecast.anomaly({**cheap, "2026-07-15": 0.9}, date(2026, 7, 15)) is None  # floor
    assert forecast.anomaly({"2026-07-15": 50.0}, date(2026, 7, 15)) is None  # no history


def test_the_own_sheet_costs_the_machine_hour_when_fully_used() -> None:
    cloud = Prices()
    hw = OwnHardware(price=8766.0, life_years=1.0, watts=1000.0, kwh_price=0.5, vcpus=8,
                     memory_gb=32, gpus=1, disk_price_per_tb=120.0)
    assert sheets.machine_hour(hw) == pytest.approx(1.5)  # $1 of the machine + $0.5 of power
    own = sheets.own_sheet(cloud, hw)
    full_hour = usage.price(own, cpu_seconds=8 * 3600, memory_gb_seconds=32 * 3600,
                            gpu_seconds=3600)
    assert full_hour == pytest.approx(1.5)
    assert own.storage_gb_month == pytest.approx(120 / 1000 / 12)
    assert own.tb_scanned == 0 and own.shard_hour == 0
    assert usage.price(cloud, quantities={"storage_gb_hours": 730.0}) == pytest.approx(0.023)
    assert usage.price(cloud, quantities={"bytes_scanned": 2e12}) == pytest.approx(10.0)
    with pytest.raises(Invalid, match="--sheet 'azure' is not one of cloud, own, both"):
        sheets.check_sheet("azure")
