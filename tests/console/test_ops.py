"""Home, Jobs, Models (with tuning) and Costs in the console, against a real server: jobs run on
the local cluster, models are registered with MLflow's own client through /mlflow."""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from pathlib import Path

import httpx
import pandas as pd
from playwright.sync_api import expect

from tests.services import Cumulo


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _rest(server: Cumulo, path: str) -> object:
    answer = httpx.get(server.url + "/api/v1" + path, timeout=30,
                       headers={"authorization": f"Bearer {server.token}"})
    answer.raise_for_status()
    return answer.json()


def _long_job(server: Cumulo, name: str):  # type: ignore[no-untyped-def]
    code = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"
    return server.client().jobs.run(command=[sys.executable, "-c", code], name=name,
                                     tags=[name])


def test_a_job_streams_its_log_charts_its_metrics_and_ends(page, console_server: Cumulo,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path, shot) -> None:
    # The job waits for a flag the test raises once the page shows its first line: the lines
    # after it can only reach the page through the live stream.
    flag = tmp_path / "go"
    tag = _unique("stream")
    code = f"""
import os, time, cumulo.job
print("epoch 0 starting", flush=True)
cumulo.job.log_metric("loss", 1.0, step=0)
deadline = time.time() + 60
while not os.path.exists({str(flag)!r}) and time.time() < deadline:
    time.sleep(0.05)
for i in range(1, 4):
    print(f"epoch {{i}} loss {{1.0 / (i + 1):.3f}}", flush=True)
    cumulo.job.log_metric("loss", 1.0 / (i + 1), step=i)
    cumulo.job.log_metric("accuracy", 1 - 1.0 / (i + 2), step=i)
(cumulo.job.output_dir / "model.txt").write_text("weights")
print("training done", flush=True)
"""
    job = console_server.client().jobs.run(command=[sys.executable, "-c", code],
                                           name=f"train {tag}", tags=["train", tag])
    page.goto(f"/jobs/{job.id}")
    expect(page.get_by_role("heading", name=f"train {tag}")).to_be_visible()
    log = page.get_by_role("log", name="Log of attempt 1")
    expect(log).to_contain_text("epoch 0 starting")
    expect(page.get_by_text("Following live")).to_be_visible()
    flag.write_text("go")
    expect(log).to_contain_text("epoch 3 loss 0.250")
    expect(log).to_contain_text("training done")
    # It ends on the page by itself: state, cost, charts and outputs follow.
    expect(page.locator(".page-header").get_by_text("succeeded")).to_be_visible()
    expect(page.get_by_text("Complete", exact=True)).to_be_visible()
    loss = page.get_by_role("figure", name="loss")
    expect(loss).to_be_visible()
    expect(loss.locator("circle")).to_have_count(4)
    expect(page.get_by_role("figure", name="accuracy")).to_be_visible()
    expect(page.get_by_role("link", name="model.txt")).to_have_attribute(
        "href", f"/api/v1/jobs/{job.id}/artifacts/model.txt")
    expect(page.get_by_text("at AWS on-demand list prices (us-east-1)")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="model.txt").click()
    assert Path(download.value.path()).read_text() == "weights"
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "job")

    # The list: newest first, filtered by what the address says.
    page.goto(f"/jobs?tag={tag}")
    expect(page.get_by_label("Tag")).to_have_value(tag)
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=f"train {tag}"))
    expect(row).to_contain_text("succeeded")
    page.get_by_label("State").select_option("failed")
    expect(page).to_have_url(re.compile(r"state=failed"))
    expect(page.get_by_text("No jobs match these filters")).to_be_visible()
    page.get_by_role("button", name="Clear filters").click()
    expect(page.get_by_role("link", name=f"train {tag}")).to_be_visible()
    shot(page, "jobs")


def _stored(server: Cumulo) -> dict[str, int | None]:
    """What /status says storage holds, once it counts a table: the count is reused a while
    (server/status.py's USE_TTL, 30 s), so one made before a table was written is waited out."""
    deadline = time.monotonic() + 45
    while True:
        status = _rest(server, "/status")
        assert isinstance(status, dict)
        used: dict[str, int | None] = status["storage"]["used"]
        if used["tables"] or time.monotonic() > deadline:
            assert used["buckets"] == status["storage"]["bytes"]
            return used
        time.sleep(0.5)


def test_home_counts_and_a_running_job_cancelled_from_its_page(page, console_server: Cumulo,  # type: ignore[no-untyped-def]
                                                               shot) -> None:
    name = _unique("sleeper")
    # Storage used counts the lake's tables (and models, jobs' files), not bucket objects only.
    database = name.replace("-", "_")
    c = console_server.client()
    c.tables.create_database(database)
    c.tables.write(f"{database}.rows", pd.DataFrame({"n": range(1000)}))
    used = _stored(console_server)
    assert used["tables"] and used["tables"] > 1000
    assert used["total"] == sum(used[k] or 0 for k in ("buckets", "tables", "models", "jobs"))
    job = _long_job(console_server, name)
    try:
        deadline = time.monotonic() + 60
        while job.refresh()["state"] != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        status = _rest(console_server, "/status")
        tables = _rest(console_server, "/tables")
        endpoints = _rest(console_server, "/endpoints")
        assert isinstance(status, dict) and isinstance(tables, list) and isinstance(endpoints, list)
        page.goto("/")
        cards = page.locator(".home-cards")
        running = cards.get_by_role("link", name=re.compile(r"^Running jobs"))
        expect(running).to_have_accessible_name(f"Running jobs: {status['compute']['running']}")
        expect(cards.get_by_role("link", name=re.compile(r"^Tables"))).to_have_accessible_name(
            f"Tables: {len(tables)}")
        expect(cards.get_by_role("link", name=re.compile(r"^Endpoints"))).to_have_accessible_name(
            f"Endpoints: {len(endpoints)}")
        expect(cards.get_by_role("link", name=re.compile(r"^Cost this week"))).to_be_visible()
        storage = cards.get_by_role("link", name=re.compile(r"^Storage"))
        expect(storage).to_have_accessible_name(re.compile(
            r"^Storage: [\d.]+ [KMG]?B used \(tables [\d.]+ [KMG]?B, files [\d.]+ [KMG]?B, "
            r"models [\d.]+ [KMG]?B, jobs [\d.]+ [KMG]?B\)$"))
        recent = page.get_by_role("table", name="Recent jobs")
        expect(recent.get_by_role("row").filter(has_text=name)).to_contain_text("running")
        shot(page, "home")

        # The card leads to the running jobs, the job to its page, where it is cancelled.
        running.click()
        expect(page).to_have_url(re.compile(r"/jobs\?state=active"))
        page.get_by_role("link", name=name).click()
        expect(page.get_by_role("log")).to_contain_text("sleeping")
        page.get_by_role("button", name="Cancel job").click()
        dialog = page.get_by_role("dialog", name=f"Cancel {name}?")
        expect(dialog).to_be_visible()
        dialog.get_by_role("button", name="Cancel job").click()
        expect(dialog).to_be_hidden()
        expect(page.locator(".page-header").get_by_text("cancelled")).to_be_visible()
        expect(page.get_by_role("button", name="Retry")).to_be_visible()
        expect(page.get_by_text("Complete", exact=True)).to_be_visible()
        assert job.refresh()["state"] == "cancelled"
    finally:
        if job.refresh()["state"] not in ("cancelled", "succeeded", "failed", "timed_out"):
            job.cancel()


def _mlflow(server: Cumulo):  # type: ignore[no-untyped-def]
    import mlflow

    os.environ["MLFLOW_TRACKING_TOKEN"] = server.token
    return mlflow.MlflowClient(tracking_uri=f"{server.url}/mlflow",
                               registry_uri=f"{server.url}/mlflow")


def _register(server: Cumulo, name: str, versions: int) -> None:
    """Versions of a model registered from runs with MLflow's own client (the registry pages
    need the runs' params and metrics, not the model files)."""
    client = _mlflow(server)
    found = client.get_experiment_by_name("console-models")
    experiment = found.experiment_id if found else client.create_experiment("console-models")
    client.create_registered_model(name)
    for number in range(versions):
        run = client.create_run(experiment)
        client.log_param(run.info.run_id, "C", str(1.0 + number))
        client.log_metric(run.info.run_id, "accuracy", 0.8 + number / 10)
        client.set_terminated(run.info.run_id)
        client.create_model_version(name, source=f"runs:/{run.info.run_id}/model",
                                    run_id=run.info.run_id)


def test_a_model_gets_an_alias_and_an_approval_through_the_page(page, console_server: Cumulo,  # type: ignore[no-untyped-def]
                                                                shot) -> None:
    name = _unique("churn")
    _register(console_server, name, versions=2)
    page.goto("/models")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=name))
    expect(row).to_contain_text("2")
    shot(page, "models")
    page.get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()

    # Point 'champion' at version 1.
    form = page.get_by_role("form", name="Set an alias")
    form.get_by_label("Alias").fill("champion")
    form.get_by_label("Version").select_option("1")
    form.get_by_role("button", name="Set alias").click()
    expect(page.locator(".alias-list")).to_contain_text("champion")
    expect(page.get_by_role("table", name="Alias history")).to_contain_text("set to v1")

    # Approve version 1, from its own panel.
    page.get_by_role("button", name="Show version 1").click()
    expect(page).to_have_url(re.compile(r"version=1"))
    panel = page.locator("section").filter(has=page.get_by_role("heading", name="Version 1"))
    expect(panel.get_by_role("table", name="Metrics")).to_contain_text("accuracy")
    panel.get_by_role("button", name="Approve").click()
    dialog = page.get_by_role("dialog", name=f"Approve version 1 of {name}?")
    dialog.get_by_role("button", name="Approve").click()
    expect(dialog).to_be_hidden()
    expect(panel.get_by_text("approved", exact=True)).to_be_visible()
    expect(page.get_by_role("table", name="Versions").get_by_role("row")
           .filter(has_text="champion")).to_contain_text("approved")
    shot(page, "model")

    model = _rest(console_server, f"/models/{name}")
    version = _rest(console_server, f"/models/{name}/versions/1")
    assert isinstance(model, dict) and isinstance(version, dict)
    assert model["aliases"] == {"champion": "1"}
    assert version["approval"] == "approved"

    # An error is the API's own message, in the page.
    form.get_by_label("Alias").fill("latest")
    form.get_by_role("button", name="Set alias").click()
    expect(page.get_by_role("alert")).to_contain_text("must be 1-63 letters")

    # Remove the alias again.
    page.locator(".alias-list").get_by_role("button", name="Remove").click()
    page.get_by_role("dialog", name="Remove alias champion?").get_by_role(
        "button", name="Remove alias").click()
    expect(page.locator(".alias-list")).to_have_count(0)
    assert _rest(console_server, f"/models/{name}")["aliases"] == {}  # type: ignore[index]

    # Deploy: the endpoint form, with this version chosen.
    panel.get_by_role("link", name="Deploy to an endpoint").click()
    form = page.get_by_role("form", name="Create endpoint")
    expect(form.get_by_label("Model", exact=True)).to_have_value(name)
    expect(form.get_by_label("Version", exact=True)).to_have_value(f"{name}:1")


def test_a_tuning_study_shows_its_trials_and_history(page, console_server: Cumulo,  # type: ignore[no-untyped-def]
                                                     shot) -> None:
    # A study as cumulo.ml.tune leaves it in MLflow (a parent run with the settings as params,
    # trials.json, best_<objective>); running one takes a trial job each, too slow here.
    from mlflow.entities import Param

    client = _mlflow(console_server)
    name = _unique("tuned")
    experiment = client.create_experiment(name)
    parent = client.create_run(experiment, run_name=f"tune {name}",
                               tags={"cumulo.tuning": "true", "cumulo.objective": "roc_auc"})
    space = {"learning_rate": {"low": 0.01, "high": 0.3, "log": True},
             "boosting_type": ["gbdt", "dart"]}
    settings = {"strategy": "tpe", "objective": "roc_auc", "direction": "maximize",
                "max_trials": 4, "max_parallel": 2, "early_stopping": True,
                "search_space": json.dumps(space)}
    client.log_batch(parent.info.run_id, params=[Param(k, str(v)) for k, v in settings.items()])
    values = [0.71, 0.83, None, 0.79]
    trials = [{"number": n, "params": {"learning_rate": 0.05 * (n + 1), "boosting_type": "gbdt"},
               "state": "pruned" if v is None else "complete", "value": v,
               "job": f"job-trial{n}", "run_id": None, "seconds": 1.5,
               "reason": "stopped early at step 3" if v is None else None}
              for n, v in enumerate(values)]
    client.log_metric(parent.info.run_id, "best_roc_auc", 0.83)
    client.log_dict(parent.info.run_id, trials, "trials.json")
    client.set_terminated(parent.info.run_id, "FINISHED")

    page.goto("/models/-/tuning")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=name))
    expect(row).to_contain_text("0.83")
    row.get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=f"Tuning {name}")).to_be_visible()
    table = page.get_by_role("table", name="Trials")
    expect(table.get_by_role("row")).to_have_count(5)
    expect(table.get_by_role("row").filter(has_text="★ best")).to_contain_text("0.83")
    expect(table.get_by_role("row").filter(has_text="pruned")).to_contain_text("stopped early")
    history = page.get_by_role("figure", name="Optimization history")
    expect(history.locator("circle")).to_have_count(3)
    expect(history.locator("polyline")).to_have_count(1)
    shot(page, "tuning")


def test_costs_chart_what_a_job_used(page, console_server: Cumulo, shot) -> None:  # type: ignore[no-untyped-def]
    tag = _unique("costly")
    job = console_server.client().jobs.run(command=[sys.executable, "-c", "print('hi')"],
                                           tags=[tag])
    assert job.wait(timeout=60)["state"] == "succeeded"  # usage is recorded as it ends
    page.goto("/costs")
    expect(page.get_by_text("Cost at AWS on-demand prices.")).to_be_visible()
    for chart in ("Cost by day (USD)", "Cost by service (USD)", "Cost by tag (USD)",
                  "Cost by cluster (USD)"):
        expect(page.get_by_role("figure", name=chart).locator("rect")).not_to_have_count(0)
    figures = page.get_by_role("table", name="Cost figures")
    expect(figures.get_by_role("row").filter(has_text="Total")).to_be_visible()
    page.get_by_label("Group by").select_option("tag")
    expect(page).to_have_url(re.compile(r"by=tag"))
    expect(figures.get_by_role("row").filter(has_text=tag)).to_contain_text("$")
    page.get_by_label("Group by").select_option("item")
    expect(figures.get_by_role("link", name=f"job {job.id}")).to_be_visible()
    page.get_by_text("Last 30 days").click()
    expect(page).to_have_url(re.compile(r"days=30"))
    expect(page.get_by_text("Cost, last 30 days")).to_be_visible()
    page.get_by_label("Group by").select_option("kind")
    expect(figures.get_by_role("row").filter(has_text="Jobs")).to_be_visible()
    shot(page, "costs")


def test_the_pages_fit_a_phone(phone_page) -> None:  # type: ignore[no-untyped-def]
    page = phone_page
    for path, heading in (("/", "Home"), ("/jobs", "Jobs"), ("/models", "Models"),
                          ("/costs", "Costs")):
        page.goto(path)
        expect(page.locator("main h1")).to_have_text(heading)
        expect(page.locator("main .loading")).to_have_count(0)
        expect(page.get_by_role("alert")).to_have_count(0)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1, path
