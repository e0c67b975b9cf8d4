"""Pipeline steps in environments of their own: a Python Script step with requirements runs with
its pins (built once, layered over the server's packages) while the next step runs in the
server's; an environment that does not exist is refused, naming the step, when the pipeline is
stored and when it runs.

six is pinned to 1.15.0, a version the server's own environment does not have (it has 1.17),
so what each step imports proves where it ran.
"""

from __future__ import annotations

from typing import Any

import pytest

from cumulo.errors import Invalid
from cumulo.pipelines import pipeline, step
from cumulo.pipelines.library import import_data, train_model
from tests.services import Cumulo

SIX = "six==1.15.0"


@step(requirements=[SIX])
def pinned() -> Any:
    import pandas as pd
    import six

    print("six", six.__version__, flush=True)
    return pd.DataFrame({"six": [six.__version__]})


@step(outputs={"metrics": "metrics"})
def compare(table: Any) -> dict[str, float]:
    import six

    return {"pinned_minor": float(table["six"][0].split(".")[1]),
            "server_minor": float(six.__version__.split(".")[1])}


@pipeline(name="six-versions")
def six_versions() -> None:
    compare(pinned())


def test_a_step_runs_with_its_own_requirements(local_server: Cumulo) -> None:
    import six

    assert six.__version__.split(".")[1] != "15"
    c = local_server.client()
    definition = six_versions.definition()
    nodes = {n["id"]: n for n in definition["nodes"]}
    assert nodes["pinned"]["params"]["requirements"] == [SIX]
    assert "environment" not in nodes["compare"]["params"]
    c.pipelines.create(six_versions)
    run = c.pipelines.run("six-versions", wait=True, timeout=600)
    steps = {s["node"]: s for s in run["steps"]}
    assert run["state"] == "succeeded", {n: (s["state"], s["message"], s["log_tail"])
                                         for n, s in steps.items()}
    assert steps["compare"]["outputs"]["metrics"] == {"pinned_minor": 15.0,
                                                      "server_minor": float(
                                                          six.__version__.split(".")[1])}
    table = c.tables.read(steps["pinned"]["outputs"]["table"], to="pandas")
    assert table["six"].tolist() == ["1.15.0"]
    job = c.jobs.get(steps["pinned"]["job_id"]).info
    assert job["environment"] and job["environment_label"] == "step pinned's requirements"
    assert "six 1.15.0" in list(c.jobs.get(steps["pinned"]["job_id"]).logs())
    assert c.jobs.get(steps["compare"]["job_id"]).info["environment"] is None
    # Train Model takes the same parameters, in Python as in a document.

    @pipeline(name="trained-in-env")
    def trained() -> None:
        train_model(import_data(source="table", table="sales.rows"), target="y",
                    environment="gbm")

    assert trained.definition()["nodes"][1]["params"]["environment"] == "gbm"


def _one_step(environment: Any, **more: Any) -> dict[str, Any]:
    return {"name": "in-env", "parameters": {"env": {"type": "string", "default": "none"}},
            "nodes": [{"id": "show", "component": "python_script", "params": {
                "code": "def show():\n    return {'x': 1}\n", "function": "show",
                "outputs": {"metrics": "metrics"}, "environment": environment, **more}}],
            "edges": []}


def test_an_unknown_environment_is_refused_naming_the_step(local_server: Cumulo) -> None:
    c = local_server.client()
    # When it is stored: the environment it names does not exist.
    with pytest.raises(Invalid, match=r"pipeline 'in-env' cannot be stored: nodes\[0\] \(show\)"
                                      r"\.params\.environment: no environment 'nope'; "
                                      r"'cumulo envs ls' lists them") as refused:
        c.pipelines.create(_one_step("nope"))
    assert refused.value.details["problems"][0]["path"] == "nodes[0] (show).params.environment"
    # Requirements that do not parse, or given with an environment, are refused by the check
    # itself, line named.
    with pytest.raises(Invalid, match=r"nodes\[0\] \(show\)\.params\.requirements: "
                                      r"requirements line 2: 'six=1' is not a requirement"):
        c.pipelines.create(_one_step(None, requirements="tabulate\nsix=1\n"))
    with pytest.raises(Invalid, match="give requirements or a named environment, not both"):
        c.pipelines.create(_one_step("gbm", requirements=[SIX]))
    assert "in-env" not in [p["name"] for p in c.pipelines.list()]
    # When it runs: the environment comes from a pipeline parameter, known only then.
    c.pipelines.create(_one_step({"$param": "env"}))
    with pytest.raises(Invalid, match=r"pipeline 'in-env' cannot be run: nodes\[0\] \(show\)"
                                      r"\.params\.environment: no environment 'nope'"):
        c.pipelines.run("in-env", {"env": "nope"})
    assert c.pipelines.runs("in-env") == []
