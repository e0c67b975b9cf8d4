"""Model monitors end to end: a real server, an endpoint of a real model capturing its
requests, a monitor run by hand and on a schedule, its report table read with SQL, an alert
past a threshold, labels joined for accuracy; and every bad input refused with nothing made.

The requests are sent to the endpoint's own address and captured by its replicas, as in
production (the capture writer flushes every 2 s)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from cumulo.errors import Conflict, Invalid, NotFound
from cumulo.serving.monitors import stats
from cumulo.serving.monitors.runs import SETTLE
from tests.services import ADMIN_TOKEN, Cumulo

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
N = 60  # requests' rows captured


def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def _baseline() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    tenure = rng.integers(1, 40, 500)
    spend = rng.normal(50.0, 10.0, 500)
    return pd.DataFrame({"tenure": tenure, "spend": spend,
                         "prediction": (tenure < 20).astype("int64")})


def _shifted() -> pd.DataFrame:
    """Tenure far above the baseline's (drift); spend as it was."""
    rng = np.random.default_rng(2)
    return pd.DataFrame({"id": [f"c{i}" for i in range(N)],
                         "tenure": rng.integers(45, 80, N),
                         "spend": rng.normal(50.0, 10.0, N)})


@pytest.fixture(scope="module")
def setup(serving: Cumulo, churn: str) -> dict[str, Any]:
    c = serving.client()
    c.tables.create_database("sales")
    c.tables.write("sales.customers", _baseline())  # v0
    c.tables.write("sales.customers", _baseline())  # v1
    c.tables.write("sales.other", pd.DataFrame({"a": [1], "b": ["x"]}))
    c.tables.write("sales.words", pd.DataFrame({"tenure": ["long"], "spend": [1.0]}))
    info = c.endpoints.create("watched", "churn:1", capture_percent=100, wait=True)
    sent = _shifted()
    predictions: list[Any] = []
    for start in range(0, N, N // 3):  # three requests
        part = sent.iloc[start:start + N // 3]
        answer = httpx.post(f"{info['url']}/invocations", headers=AUTH,
                            json={"dataframe_records": part.to_dict(orient="records")})
        assert answer.status_code == 200, answer.text
        predictions += answer.json()["predictions"]

    def captured() -> bool:
        try:
            return len(c.tables.read("endpoints.watched_capture", to="pandas")) >= 3
        except NotFound:
            return False

    _until(captured, 30, "the requests captured")
    time.sleep(SETTLE)  # a run covers what was captured up to SETTLE seconds before it
    # The true labels, known later: the model is right on the first 45, wrong on the rest.
    truth = [p if i < 45 else 1 - p for i, p in enumerate(predictions)]
    c.tables.write("sales.labels", pd.DataFrame({"id": sent["id"], "churned": truth}))
    return {"sent": sent, "predictions": predictions}


def test_bad_input_is_refused_naming_it_and_nothing_is_made(serving: Cumulo,
                                                            setup: dict[str, Any]) -> None:
    c = serving.client()
    good = {"endpoint": "watched", "baseline": "sales.customers@v0"}
    cases: list[tuple[type[Exception], str, dict[str, Any]]] = [
        (NotFound, "no endpoint 'nowhere'", {"endpoint": "nowhere"}),
        (NotFound, "table sales.nothing does not exist", {"baseline": "sales.nothing@v0"}),
        (NotFound, "database 'nodb' does not exist", {"baseline": "nodb.t"}),
        (NotFound, "has no version 9", {"baseline": "sales.customers@v9"}),
        (Invalid, "does not match endpoint's features: it lacks tenure, spend",
         {"baseline": "sales.other"}),
        (Invalid, "tenure is long for the model but string in the baseline",
         {"baseline": "sales.words"}),
        (Invalid, "--schedule: cron '0 * *' is not a cron expression", {"schedule": "0 * *"}),
        (Invalid, "--thresholds: unknown threshold 'drift'", {"thresholds": "drift=0.2"}),
        (Invalid, "--thresholds: psi='high' is not a number", {"thresholds": "psi=high"}),
        (Invalid, "--thresholds: psi must be a number of 0 or more",
         {"thresholds": "psi=-1"}),
        (Invalid, "--thresholds: 'psi' is not NAME=NUMBER", {"thresholds": "psi"}),
        (Invalid, "--window '5x' is not a duration", {"window": "5x"}),
        (Invalid, "--labels needs --key", {"labels": "sales.labels"}),
        (Invalid, "--key 'nope' is not a column of sales.labels",
         {"labels": "sales.labels", "key": "nope"}),
        (Invalid, "--prediction-column 'score' is not a column",
         {"prediction_column": "score"}),
        (Invalid, "monitor name 'Bad_Name'", {"name": "Bad_Name"}),
    ]
    for kind, message, change in cases:
        spec = {"name": "refused", **good, **change}
        with pytest.raises(kind, match=message.replace("(", r"\(").replace("*", r"\*")):
            c.monitors.create(spec.pop("name"), **spec)
    assert c.monitors.list() == []
    assert "monitoring" not in {d["name"] for d in c.tables.databases()}
    # Data capture off: nothing to compare.
    c.endpoints.create("uncaptured", "churn:1", min_replicas=0)
    with pytest.raises(Invalid, match="captures no requests"):
        c.monitors.create("refused", endpoint="uncaptured", baseline="sales.customers")
    c.endpoints.delete("uncaptured")
    assert c.monitors.list() == []


def test_a_run_reports_drift_in_sql_and_alerts(serving: Cumulo, setup: dict[str, Any]) -> None:
    c = serving.client()
    made = c.monitors.create("churn-drift", endpoint="watched", baseline="sales.customers",
                             thresholds="psi=0.2,ks=0.5,missing=0.05", labels="sales.labels",
                             key="id")
    assert made["baseline"] == "sales.customers@v1"  # pinned when made
    assert made["features"] == [{"name": "tenure", "kind": "numeric"},
                                {"name": "spend", "kind": "numeric"}]
    assert made["report_table"] == "monitoring.churn_drift_reports"
    assert made["label_column"] == "churned" and made["prediction_column"] == "prediction"
    with pytest.raises(Conflict, match="exists already"):
        c.monitors.create("churn-drift", endpoint="watched", baseline="sales.customers")

    run = c.monitors.run("churn-drift")
    assert run["state"] == "succeeded", run["message"]
    assert run["rows"] == N
    # The window was read and compared by a job of the cluster, as the monitor's creator,
    # metered like any job; the control plane only recorded its figures.
    job = c.jobs.get(run["job"])
    info = job.refresh()
    assert info["state"] == "succeeded" and "monitor:churn-drift" in info["tags"]
    log = "".join(job.logs())
    assert "read 3 captured requests of the window" in log, log  # three requests sent
    assert f"{N} answered rows to compare" in log
    figures = {f["feature"]: f for f in run["figures"]}
    assert set(figures) == {"tenure", "spend", "(prediction)", "(labels)"}
    # The same figures, worked out here from what was sent and the baseline.
    base, sent = _baseline(), setup["sent"]
    profile = stats.numeric_profile(base["tenure"].to_numpy(float))
    shares = stats.proportions(sent["tenure"].to_numpy(float), profile["edges"])
    assert figures["tenure"]["psi"] == pytest.approx(stats.psi(profile["shares"], shares))
    assert figures["tenure"]["psi"] > 5  # every request beyond the baseline's top decile
    assert figures["tenure"]["ks"] == pytest.approx(1.0)  # no overlap at all
    assert figures["tenure"]["out_of_range_rate"] == pytest.approx(
        float((sent["tenure"] > base["tenure"].max()).mean()))
    assert figures["spend"]["psi"] < 0.5 and figures["spend"]["missing_rate"] == 0
    assert figures["(labels)"]["accuracy"] == pytest.approx(45 / N)
    assert figures["(labels)"]["rows"] == N
    assert any(b.startswith("tenure: psi") for b in run["breaches"])
    assert "tenure: ks 1 > 0.5" in run["breaches"]
    assert "psi" in figures["tenure"]["breached"]

    # The report table, through SQL.
    rows = c.sql("select feature, kind, rows, psi, ks, accuracy, breached from "
                 "monitoring.churn_drift_reports where run_id = "
                 f"{run['id']} order by feature").to_pandas()
    assert list(rows["feature"]) == ["(labels)", "(prediction)", "spend", "tenure"]
    tenure = rows[rows["feature"] == "tenure"].iloc[0]
    assert tenure["psi"] == pytest.approx(figures["tenure"]["psi"])
    assert tenure["breached"] == "psi,ks" and tenure["rows"] == N
    assert rows[rows["feature"] == "(labels)"].iloc[0]["accuracy"] == pytest.approx(45 / N)

    # One alert, for the console's banner and 'cumulo status'.
    alerts = [a for a in c.alerts.list(source="monitors") if a["subject"] == "churn-drift"]
    assert len(alerts) == 1 and "tenure: psi" in alerts[0]["message"]

    # Nothing new since: the next run compares no rows, writes no report rows, raises nothing.
    again = c.monitors.run("churn-drift")
    assert again["state"] == "succeeded" and again["rows"] == 0
    assert "no answered requests" in again["message"]
    assert c.sql("select count(*) as n from monitoring.churn_drift_reports").to_pandas()[
        "n"][0] == 4
    assert len([a for a in c.alerts.list(source="monitors")
                if a["subject"] == "churn-drift"]) == 1
    reports = c.monitors.reports("churn-drift")
    assert [r["id"] for r in reports] == [again["id"], run["id"]]
    shown = c.monitors.show("churn-drift")
    assert shown["last_run"]["id"] == again["id"]

    out = serving.cli("monitors", "reports", "churn-drift")
    assert out.returncode == 0 and "tenure" in out.stdout and "psi" in out.stdout, out.stderr
    ran = serving.cli("monitors", "run", "churn-drift")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(f"run {again['id'] + 1}: succeeded, 0 rows"), ran.stdout
    started = serving.cli("monitors", "run", "churn-drift", "--no-wait")
    assert started.returncode == 0 and "started, job job-" in started.stdout, started.stdout
    last = c.monitors.reports("churn-drift", limit=1)[0]
    ended = _until(lambda: c.monitors.show_run("churn-drift", last["id"])["state"] not in (
        "running", "recording") and c.monitors.show_run("churn-drift", last["id"]), 60,
        "the run started without waiting to end")
    assert ended["state"] == "succeeded" and ended["rows"] == 0
    with pytest.raises(NotFound, match="has no run 99999"):
        c.monitors.show_run("churn-drift", 99999)


def test_a_scheduled_run_and_the_first_window_as_reference(serving: Cumulo,
                                                           setup: dict[str, Any]) -> None:
    c = serving.client()
    # A baseline without predictions: the first window's are the reference.
    c.tables.write("sales.features", _baseline().drop(columns=["prediction"]))
    c.monitors.create("every-2s", endpoint="watched", baseline="sales.features",
                      schedule="* * * * * */2", window="1d")
    runs = _until(lambda: [r for r in c.monitors.reports("every-2s")
                           if r["state"] != "running"], 30, "a scheduled run to end")
    assert runs[-1]["trigger"].startswith("schedule at ")
    assert runs[-1]["state"] == "succeeded" and runs[-1]["rows"] == N
    prediction = {f["feature"]: f for f in runs[-1]["figures"]}["(prediction)"]
    assert prediction["psi"] == pytest.approx(0.0)  # the reference is this window itself
    listed = serving.cli("monitors", "ls")
    assert listed.returncode == 0 and "every-2s" in listed.stdout
    shown = serving.cli("monitors", "show", "every-2s")
    assert shown.returncode == 0 and "* * * * * */2" in shown.stdout, shown.stderr
    assert "the first window's predictions" in shown.stdout
    c.monitors.delete("every-2s")
    with pytest.raises(NotFound, match="no monitor 'every-2s'"):
        c.monitors.show("every-2s")
    c.tables.read("monitoring.every_2s_reports")  # the report table stays
