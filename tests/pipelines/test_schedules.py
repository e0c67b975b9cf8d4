"""Schedules and table triggers: the runs they start (missed-run policies: tests/test_cron.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cumulo.errors import Conflict, Invalid, NotFound
from tests.pipelines.conftest import customer_rows
from tests.pipelines.test_runs import DATA_PIPELINE
from tests.services import Cumulo


def _until(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := check()):
        assert time.monotonic() < deadline, f"no {what} after {seconds}s"
        time.sleep(0.3)
    return value


def test_cron_and_table_triggers_start_runs(local_server: Cumulo, data: str) -> None:
    c = local_server.client()
    c.pipelines.create({**DATA_PIPELINE, "name": "sched"})
    cron = c.pipelines.schedule("sched", cron="* * * * * */2", parameters={"fraction": "0.6"})
    assert cron["name"] == "sched-cron" and cron["parameters"] == {"fraction": 0.6}
    first = _until(lambda: c.pipelines.runs(pipeline="sched"), 30, "scheduled run")[-1]
    assert first["trigger"].startswith("schedule sched-cron at ")
    assert first["parameters"]["fraction"] == 0.6
    c.pipelines.unschedule("sched-cron")
    c.pipelines.wait(first["id"], 300)
    # A trigger on a table: versions written before it do not count; a new one starts a run.
    trigger = c.pipelines.schedule("sched", table="sales.customers")
    version = trigger["last_version"]
    before = {r["id"] for r in c.pipelines.runs(pipeline="sched")}
    time.sleep(3)
    assert {r["id"] for r in c.pipelines.runs(pipeline="sched")} - before == set()
    c.tables.write("sales.customers", customer_rows(5), mode="append")
    started = _until(lambda: [r for r in c.pipelines.runs(pipeline="sched")
                              if r["id"] not in before], 30, "triggered run")
    assert [r["trigger"] for r in started] == [f"table sales.customers@v{version + 1}"]
    finished = c.pipelines.wait(started[0]["id"], 300)
    assert finished["state"] == "succeeded"
    shown = c.pipelines.schedules(pipeline="sched")
    assert shown[0]["last_run"] == started[0]["id"]
    listed = local_server.cli("pipelines", "schedules", "ls")
    assert "sched-table" in listed.stdout and "table sales.customers" in listed.stdout
    c.pipelines.unschedule("sched-table")
    assert c.pipelines.schedules() == []


def test_bad_schedules_are_refused(local_server: Cumulo, data: str) -> None:
    c = local_server.client()
    c.pipelines.create({**DATA_PIPELINE, "name": "sched2"})
    with pytest.raises(Invalid, match="not a cron expression"):
        c.pipelines.schedule("sched2", cron="every day")
    with pytest.raises(Invalid, match="either --cron or --on-table"):
        c.pipelines.schedule("sched2", cron="0 * * * *", table="sales.customers")
    with pytest.raises(Invalid, match="--missed 'never'"):
        c.pipelines.schedule("sched2", cron="0 * * * *", missed="never")
    with pytest.raises(NotFound):
        c.pipelines.schedule("sched2", table="sales.nope")
    with pytest.raises(Invalid, match="parameter 'fraction' is a number"):
        c.pipelines.schedule("sched2", cron="0 * * * *", parameters={"fraction": "x"})
    with pytest.raises(NotFound, match="no pipeline"):
        c.pipelines.schedule("nope", cron="0 * * * *")
    c.pipelines.schedule("sched2", cron="0 3 * * *")
    with pytest.raises(Conflict, match="exists"):
        c.pipelines.schedule("sched2", cron="0 4 * * *")
    assert [s["name"] for s in c.pipelines.schedules(pipeline="sched2")] == ["sched2-cron"]
    c.pipelines.unschedule("sched2-cron")
    # Only the pipeline's owner (or an admin) schedules it: a schedule runs its new versions.
    from cumulo.errors import Forbidden

    eve = local_server.add_user("eve-s", "cml_eves-token-0123456789abcdef0")
    with pytest.raises(Forbidden, match="another user's"):
        eve.pipelines.schedule("sched2", cron="0 5 * * *")
