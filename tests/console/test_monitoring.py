"""An endpoint's Monitoring tab: a monitor's drift charts drawn from its runs, its last run's
figures and what is past its thresholds, and Run now."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pandas as pd
import pytest
from playwright.sync_api import expect

from cumulo.errors import NotFound
from cumulo.serving.monitors.runs import SETTLE
from tests.services import Cumulo, register_churn


def _captured(c: Any, table: str) -> int:
    try:
        return len(c.tables.read(table, to="pandas"))
    except NotFound:
        return 0


@pytest.fixture(scope="module")
def monitored(console_server: Cumulo, rest: httpx.Client) -> tuple[str, int]:
    """An endpoint capturing every request, shifted requests sent through the control plane,
    and a monitor of it run once against a baseline: the endpoint and the run."""
    c = console_server.client()
    model = register_churn(console_server, f"churn-{uuid.uuid4().hex[:6]}", "console-monitors")
    name = f"mon-{uuid.uuid4().hex[:6]}"
    c.endpoints.create(name, f"{model}:1", capture_percent=100, wait=True, timeout=180)
    for tenure in range(60, 90):  # far above the baseline's tenures
        answer = rest.post(f"{console_server.url}/endpoints/{name}/invocations",
                           json={"dataframe_records": [{"tenure": tenure, "spend": 50.0}]})
        assert answer.status_code == 200, answer.text
    database = f"mon_{uuid.uuid4().hex[:6]}"
    c.tables.create_database(database)
    c.tables.write(f"{database}.train", pd.DataFrame({"tenure": list(range(1, 41)) * 5,
                                                      "spend": [50.0] * 200}))
    deadline = time.monotonic() + 30
    while _captured(c, f"endpoints.{name.replace('-', '_')}_capture") < 30:
        assert time.monotonic() < deadline, "the requests were not captured"
        time.sleep(0.5)
    time.sleep(SETTLE)  # a run covers what was captured up to SETTLE seconds before it
    c.monitors.create(f"{name}-drift", endpoint=name, baseline=f"{database}.train")
    run = c.monitors.run(f"{name}-drift")
    assert run["state"] == "succeeded" and run["rows"] == 30, run
    return name, run["id"]


def test_the_monitoring_tab_draws_the_drift(  # type: ignore[no-untyped-def]
        page, monitored: tuple[str, int], shot) -> None:
    name, run = monitored
    page.goto(f"/endpoints/{name}")
    page.get_by_role("tab", name="Monitoring").click()
    expect(page).to_have_url(f"{page.url.split('?')[0]}?tab=monitoring")
    panel = page.get_by_role("tabpanel")
    expect(panel.get_by_role("heading", name=f"{name}-drift")).to_be_visible()
    expect(panel.get_by_role("figure", name="PSI per feature, by run")).to_be_visible()
    expect(panel.get_by_role("figure", name=f"Predictions, run {run}: share per bin")) \
        .to_be_visible()
    figures = panel.get_by_role("region", name=f"Figures of run {run}")
    expect(figures.get_by_role("row").filter(has_text="tenure")).to_contain_text("psi")
    expect(panel.get_by_role("alert").filter(has_text=f"Past thresholds in run {run}")) \
        .to_contain_text("tenure: psi")
    shot(page, "endpoint-monitoring")
    panel.get_by_role("button", name="Run now").click()
    expect(panel.get_by_role("status")).to_contain_text(f"Run {run + 1}: succeeded, 0 rows")
