"""Pipelines in Python compile to the same definition a JSON document gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cumulo.errors import Invalid
from cumulo.pipelines import pipeline
from cumulo.pipelines.definition import check
from cumulo.pipelines.dsl import load
from cumulo.pipelines.library import import_data, split_data, train_model
from tests.pipelines import example_pipelines as ex


def test_a_python_pipeline_compiles_to_its_definition() -> None:
    d = ex.churn.definition()
    assert d["name"] == "churn"
    assert d["description"] == "Raw CSV to a registered model, if it is good enough."
    assert d["parameters"] == {"threshold": {"type": "number", "default": 0.8},
                               "algorithm": {"type": "string", "default": "lightgbm"}}
    nodes = {n["id"]: n for n in d["nodes"]}
    assert list(nodes) == ["import_data", "add_ratio", "split_data", "train_model",
                           "evaluate_model", "condition", "register_model", "test_rows"]
    script = nodes["add_ratio"]["params"]
    assert script["code"].startswith("def add_ratio(table, factor: float = 1.0):")
    assert "@step" not in script["code"]
    assert script["inputs"] == {"table": "table"} and script["outputs"] == {"table": "table"}
    assert script["args"] == {"factor": 2.0}
    assert nodes["train_model"]["params"]["algorithm"] == {"$param": "algorithm"}
    assert nodes["condition"]["params"]["value"] == {"$param": "threshold"}
    assert nodes["test_rows"]["params"]["outputs"] == {"counts": "metrics"}
    assert {"from": "import_data.table", "to": "add_ratio.table"} in d["edges"]
    assert {"from": "condition.then", "to": "register_model.after"} in d["edges"]
    assert {"from": "condition.else", "to": "test_rows.after"} in d["edges"]
    # The same document, written as JSON, checks to the same definition.
    assert check(json.loads(json.dumps(d))) == d


def test_a_step_outside_a_pipeline_is_the_plain_function() -> None:
    import pandas as pd

    frame = pd.DataFrame({"spend": [10.0], "tenure": [4]})
    assert ex.add_ratio(frame, factor=5.0)["ratio"].tolist() == [10.0]
    with pytest.raises(Invalid, match="call it inside a @pipeline function"):
        import_data(source="url", url="http://x/y.csv")
    with pytest.raises(Invalid, match="is not run by calling it"):
        ex.churn()


def test_mistakes_in_python_pipelines_are_named() -> None:
    @pipeline
    def two_outputs() -> None:
        parts = split_data(import_data(source="table", table="a.b"))
        train_model(parts, target="y")  # which of train and test?

    with pytest.raises(Invalid, match=r"node 'split_data' has 2 outputs \(train, test\)"):
        two_outputs.definition()

    @pipeline
    def bad_output() -> None:
        import_data(source="table", table="a.b").tabel  # noqa: B018

    with pytest.raises(Invalid, match="has no output 'tabel'; it has table"):
        bad_output.definition()

    @pipeline
    def branch_in_python(threshold: float = 0.5) -> None:
        if threshold:
            import_data(source="table", table="a.b")

    with pytest.raises(Invalid, match="pass it to a component"):
        branch_in_python.definition()

    @pipeline
    def untyped(x) -> None:  # type: ignore[no-untyped-def]
        import_data(source="table", table="a.b")

    with pytest.raises(Invalid, match="parameter 'x' needs a type"):
        untyped.definition()

    @pipeline
    def missing_param() -> None:
        split_data(import_data(source="table", table="a.b"), fraction=2.0)

    with pytest.raises(Invalid, match=r"split_data\)\.params\.fraction: expected at most 1"):
        missing_param.definition()


def test_files_json_yaml_and_python(tmp_path: Path) -> None:
    d = ex.churn.definition()
    (tmp_path / "p.json").write_text(json.dumps(d))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(d))
    assert load(str(tmp_path / "p.json")) == (d, "json")
    assert load(str(tmp_path / "p.yaml")) == (d, "json")
    source = Path(ex.__file__)
    assert load(f"{source}:churn") == (d, "python")
    assert load(str(source)) == (d, "python")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(Invalid, match="not valid JSON"):
        load(str(tmp_path / "bad.json"))
    with pytest.raises(Invalid, match="has no @pipeline 'nope'; it has churn"):
        load(f"{source}:nope")
    with pytest.raises(Invalid, match="no file"):
        load(str(tmp_path / "missing.py"))
