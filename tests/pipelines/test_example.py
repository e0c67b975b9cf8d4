"""The example pipeline (examples/churn), end to end on a real server: a raw CSV in files to a
registered model behind an endpoint that answers; then from the cache; then held back by its
gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.services import Cumulo

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "churn"


def _steps(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["node"]: s for s in run["steps"]}


def test_the_churn_example_from_csv_to_an_endpoint(local_server: Cumulo) -> None:
    c = local_server.client()
    c.files.create_bucket("data")
    c.files.upload(EXAMPLE / "customers.csv", "data/examples/churn/customers.csv")
    created = local_server.cli("pipelines", "create", str(EXAMPLE / "pipeline.py"))
    assert created.returncode == 0, created.stderr
    ran = local_server.cli("pipelines", "run", "churn")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run = c.pipelines.runs(pipeline="churn")[0]
    steps = _steps(c.pipelines.get_run(run["id"]))
    assert {s["state"] for s in steps.values()} == {"succeeded"}, steps
    accuracy = steps["evaluate_model"]["outputs"]["metrics"]["accuracy"]
    assert accuracy >= 0.75
    assert steps["condition"]["outputs"]["branch"] == "then"
    assert steps["register_model"]["outputs"]["model"] == "models:/churn-auto/1"
    assert c.models.show("churn-auto")["aliases"] == {"champion": "1"}
    endpoint = c.endpoints.show("churn-auto")
    assert endpoint["state"] == "in_service"
    rows = [{"tenure": 3, "spend": 110.0, "support_calls": 6, "plan": "basic",
             "spend_per_month": 27.5}]
    assert c.endpoints["churn-auto"].predict(rows) in ([0], [1])
    assert "succeeded" in ran.stdout and "deploy_to_endpoint" in ran.stdout
    # Lineage: the model back to the raw CSV, and where it is served.
    trace = c.pipelines.lineage(model="churn-auto:1")
    [register] = trace["produced_by"]
    assert (register["step"], register["run"]) == ("register_model", run["id"])
    [trained] = register["read"][0]["produced_by"]
    assert trained["component"] == "train_model"

    def reads(producer: dict[str, Any]) -> list[str]:
        return [r["name"] for r in producer["read"]]

    def walk(producer: dict[str, Any]) -> list[str]:
        out = reads(producer)
        for r in producer["read"]:
            for p in r["produced_by"]:
                out += walk(p)
        return out

    assert "data/examples/churn/customers.csv" in walk(register)
    assert trace["served_by"] == [{"endpoint": "churn-auto", "variant": "churn-auto-1",
                                   "weight": 1.0, "state": "in_service"}]
    split = steps["split_data"]["outputs"]["train"]
    table = c.pipelines.lineage(table=split.split("@")[0])
    assert [u["step"] for u in table["used_by"]] == ["train_model"]
    assert table["produced_by"][0]["step"] == "split_data"
    shown = local_server.cli("lineage", "model", "churn-auto:1")
    assert shown.returncode == 0, shown.stderr
    assert "read files data/examples/churn/customers.csv" in shown.stdout
    assert "served by endpoint churn-auto" in shown.stdout
    # Again: nothing changed, so every step, the deployment included, comes from the cache
    # (the condition is compared again: it runs no job).
    again = _steps(c.pipelines.run("churn", wait=True, timeout=120))
    assert {n: s["state"] for n, s in again.items() if s["state"] != "cached"} == {
        "condition": "succeeded"}
    assert all(s["job_id"] is None for s in again.values())
    # The same run on another cluster deploys again (where a run deploys depends on its
    # cluster: a Ray run serves from Ray); everything else still comes from the cache.
    c.clusters.create("other", max_workers=1)
    moved = _steps(c.pipelines.run("churn", cluster="other", wait=True, timeout=120))
    deploy = moved["deploy_to_endpoint"]
    assert deploy["state"] == "succeeded", "\n".join([deploy["message"],
                                             *c.jobs.get(deploy["job_id"]).logs()])
    assert moved["train_model"]["state"] == "cached"
    # It serves that model already: the step says so and changes nothing.
    assert "serves churn-auto:1 already" in "\n".join(c.jobs.get(deploy["job_id"]).logs())
    assert c.endpoints.show("churn-auto")["variants"][0]["name"] == "churn-auto-1"
    c.clusters.delete("other")
    # A gate it cannot pass: the model is neither registered nor deployed.
    held = _steps(c.pipelines.run("churn", {"threshold": 0.999}, wait=True, timeout=120))
    assert held["condition"]["outputs"]["branch"] == "else"
    assert held["register_model"]["state"] == "skipped"
    assert "'then' branch" in held["register_model"]["message"]
    assert held["deploy_to_endpoint"]["state"] == "skipped"
    assert len(c.models.versions("churn-auto")) == 1
    shown = local_server.cli("pipelines", "runs", "show", run["id"])
    assert "accuracy = " in shown.stdout and "-> then" in shown.stdout
    c.endpoints.delete("churn-auto")


def test_example_files_are_what_the_readme_uses() -> None:
    assert (EXAMPLE / "customers.csv").read_text().startswith(
        "customer,tenure,spend,support_calls,plan,churned\n")
    assert Path(EXAMPLE / "pipeline.py").is_file()
