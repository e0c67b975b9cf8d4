"""The model registry: versions from jobs, aliases and their history, approval, lineage."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from cumulo.errors import Invalid, NotFound
from tests.services import Cumulo

TRAIN = """
import sys
import mlflow
from sklearn.linear_model import LogisticRegression

C = float(sys.argv[1])
with mlflow.start_run():
    mlflow.log_param("C", C)
    mlflow.log_metric("accuracy", 0.75)
    model = LogisticRegression(C=C).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    mlflow.sklearn.log_model(model, name="model", registered_model_name="churn")
"""


@pytest.fixture(scope="module")
def churn(tracked: Cumulo, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two versions of model 'churn', each trained by a job."""
    code = tmp_path_factory.mktemp("reg") / "src"
    code.mkdir()
    (code / "train.py").write_text(TRAIN)
    c = tracked.client()
    c.tables.create_database("crm")
    c.tables.write("crm.customers", pa.table({"x": [0.0, 1.0]}))
    jobs = []
    for strength in ("1.0", "0.5"):
        job = c.jobs.run("train.py", code=code, args=[strength],
                         inputs={"train": "crm.customers"})
        assert job.wait(300)["state"] == "succeeded", job.info["log_tail"]
        jobs.append(job.id)
    return jobs


def test_versions_and_lineage(tracked: Cumulo, churn: list[str]) -> None:
    c = tracked.client()
    model = next(m for m in c.models.list() if m["name"] == "churn")
    assert model["latest_version"] == 2
    versions = c.models.versions("churn")
    assert [v["version"] for v in versions] == ["1", "2"]
    assert all(v["approval"] == "pending" for v in versions)
    first = c.models.version("churn", 1)
    lineage = first["lineage"]
    assert lineage["job"] == churn[0]
    assert lineage["code"] == c.jobs.get(churn[0]).info["code"]
    assert lineage["inputs"] == {"train": "crm.customers@v0"}
    assert lineage["hyperparameters"] == {"C": "1.0"}
    assert lineage["metrics"] == {"accuracy": 0.75}


def test_aliases_and_their_history(tracked: Cumulo, churn: list[str]) -> None:
    c = tracked.client()
    c.models.set_alias("churn", "champion", 1)
    c.models.set_alias("churn", "champion", 2)
    c.models.set_alias("churn", "challenger", 1)
    assert c.models.show("churn")["aliases"] == {"champion": "2", "challenger": "1"}
    assert c.models.version("churn", 2)["aliases"] == ["champion"]
    c.models.remove_alias("churn", "challenger")
    moves = [(e["alias"], e["previous_version"], e["version"], e["by"])
             for e in c.models.alias_history("churn")]
    assert moves == [("champion", None, "1", "admin"), ("champion", "1", "2", "admin"),
                     ("challenger", None, "1", "admin"), ("challenger", "1", None, "admin")]
    with pytest.raises(Invalid, match="alias 'latest'"):
        c.models.set_alias("churn", "latest", 1)
    with pytest.raises(NotFound, match="no version '9'"):
        c.models.set_alias("churn", "champion", 9)
    with pytest.raises(NotFound, match="no alias 'ghost'"):
        c.models.remove_alias("churn", "ghost")


def test_approval_tags_and_descriptions(tracked: Cumulo, churn: list[str]) -> None:
    c = tracked.client()
    assert c.models.set_approval("churn", 2, "approved")["approval"] == "approved"
    assert c.models.set_approval("churn", 1, "rejected")["approval"] == "rejected"
    with pytest.raises(Invalid, match="approval status 'maybe'"):
        c.models.set_approval("churn", 1, "maybe")
    c.models.set_tag("churn", "team", "growth")
    c.models.set_tag("churn", "dataset", "q3", version=2)
    c.models.describe("churn", "Who will leave next month")
    c.models.describe("churn", "stronger regularisation", version=2)
    model = c.models.show("churn")
    assert model["tags"] == {"team": "growth"}
    assert model["description"] == "Who will leave next month"
    v2 = c.models.version("churn", 2)
    assert v2["tags"] == {"dataset": "q3"} and v2["description"] == "stronger regularisation"
    with pytest.raises(Invalid, match="approve/reject"):
        c.models.set_tag("churn", "cumulo.approval", "approved", version=1)


def test_unknown_models(tracked: Cumulo) -> None:
    c = tracked.client()
    with pytest.raises(NotFound, match="no model 'nope'"):
        c.models.show("nope")
    with pytest.raises(NotFound, match="no model 'nope'"):
        c.models.versions("nope")


def test_models_cli(tracked: Cumulo, churn: list[str]) -> None:
    ls = tracked.cli("models", "ls")
    assert ls.returncode == 0 and "churn" in ls.stdout
    version = tracked.cli("models", "version", "churn", "1")
    assert churn[0] in version.stdout and "crm.customers@v0" in version.stdout
    assert tracked.cli("models", "alias", "churn", "staging", "1").returncode == 0
    history = json.loads(tracked.cli("models", "history", "churn", "--json").stdout)
    assert history[-1]["alias"] == "staging" and history[-1]["version"] == "1"
    shown = tracked.cli("models", "show", "churn")
    assert "staging -> v1" in shown.stdout and "v2" in shown.stdout
    missing = tracked.cli("models", "show", "nope")
    assert missing.returncode == 1 and missing.stderr.startswith("error: no model 'nope'")
