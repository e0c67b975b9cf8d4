"""The console's Costs page shows the month-end forecast, both sheets and the budgets; the
alerts banner shows a budget crossed, above every page, until it is dismissed. In a real
browser against a real server."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import expect

from tests.metering.test_costs import add_usage
from tests.services import Cumulo


def test_costs_page_has_forecast_and_budgets(page, console_server: Cumulo) -> None:  # type: ignore[no-untyped-def]
    c = console_server.client()
    c.budgets.create("console-roomy", amount=1_000_000, scope="tag:console=roomy",
                     alert="50%,100%", action="100%:stop-new-jobs")
    try:
        page.goto("/costs")
        forecast = page.locator(".card").filter(has_text="Month-end forecast")
        expect(forecast).to_contain_text("so far; own hardware $")
        expect(page.locator(".card").filter(has_text="On your own hardware")).to_be_visible()
        budgets = page.get_by_role("table", name="Budgets")
        row = budgets.get_by_role("row").filter(has_text="console-roomy")
        expect(row).to_contain_text("tag:console=roomy")
        expect(row).to_contain_text("100%: stop-new-jobs")
    finally:
        c.budgets.delete("console-roomy")


def test_the_banner_shows_a_crossed_budget_until_dismissed(page, console_server: Cumulo) -> None:  # type: ignore[no-untyped-def]
    c = console_server.client()
    add_usage(console_server, datetime.now(UTC).date().isoformat(), 2.0,
              tags=("console=tight",))
    c.budgets.create("console-tight", amount=1, scope="tag:console=tight", alert="100%")
    try:
        page.goto("/jobs")
        banner = page.get_by_role("status", name="Alerts")
        line = banner.locator(".alert-line").filter(has_text="budget console-tight")
        expect(line).to_contain_text("past its 100% alert")
        alert_id = next(a["id"] for a in c.alerts.list() if a["subject"] == "console-tight")
        page.get_by_role("button", name=f"Dismiss alert {alert_id}").click()
        expect(line).to_have_count(0)
        page.goto("/costs")
        expect(page.get_by_role("heading", name="Costs")).to_be_visible()
        expect(page.locator(".alert-line").filter(has_text="console-tight")).to_have_count(0)
        assert alert_id not in {a["id"] for a in c.alerts.list()}
    finally:
        c.budgets.delete("console-tight")
