"""Pipeline definitions: what check() accepts, and each problem it names, with its path."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from cumulo.errors import Invalid
from cumulo.pipelines.components import COMPONENTS, component_doc
from cumulo.pipelines.definition import check, order, schema

DOC: dict[str, Any] = {
    "name": "churn",
    "parameters": {"threshold": {"type": "number", "default": 0.8}},
    "nodes": [
        {"id": "raw", "component": "import_data",
         "params": {"source": "files", "path": "data/raw/churn.csv"}},
        {"id": "split", "component": "split_data", "params": {"fraction": 0.75}},
        {"id": "train", "component": "train_model", "params": {"target": "churned"}},
        {"id": "score", "component": "evaluate_model", "params": {"target": "churned"}},
        {"id": "gate", "component": "condition",
         "params": {"metric": "accuracy", "value": {"$param": "threshold"}}},
        {"id": "register", "component": "register_model", "params": {"name": "churn"},
         "position": {"x": 10, "y": 20}},
    ],
    "edges": [
        {"from": "raw.table", "to": "split.table"},
        {"from": "split.train", "to": "train.train"},
        {"from": "train.model", "to": "score.model"},
        {"from": "split.test", "to": "score.table"},
        {"from": "score.metrics", "to": "gate.metrics"},
        {"from": "train.model", "to": "register.model"},
        {"from": "gate.then", "to": "register.after"},
    ],
}


def _problems(doc: Any) -> list[dict[str, str]]:
    with pytest.raises(Invalid) as info:
        check(doc)
    return info.value.details["problems"]  # type: ignore[no-any-return]


def _with(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    change(doc)
    return doc


def test_a_good_definition_is_filled_in_and_ordered() -> None:
    out = check(DOC)
    nodes = {n["id"]: n for n in out["nodes"]}
    assert nodes["split"]["params"] == {"fraction": 0.75, "seed": 0}
    assert nodes["train"]["params"]["algorithm"] == "lightgbm"
    assert nodes["gate"]["params"]["value"] == {"$param": "threshold"}
    assert nodes["register"]["position"] == {"x": 10, "y": 20}
    assert all(n["cache"] for n in out["nodes"])
    assert check(out) == out  # canonical: checking it again changes nothing
    steps = order(out)
    assert steps.index("raw") < steps.index("split") < steps.index("train") < \
        steps.index("score") < steps.index("gate") < steps.index("register")
    jsonschema.validate(out, schema())  # the published schema accepts it too


def test_a_cycle_is_refused_naming_it() -> None:
    def cycle(doc: dict[str, Any]) -> None:
        doc["nodes"].append({"id": "again", "component": "sql_transform",
                             "params": {"query": "select * from t1"}})
        doc["edges"] = [e for e in doc["edges"] if e["to"] != "split.table"]
        doc["edges"] += [{"from": "split.train", "to": "again.t1"},
                         {"from": "again.table", "to": "split.table"}]

    [problem] = _problems(_with(cycle))
    assert problem["path"] == "edges"
    assert problem["message"] == "the pipeline has a cycle: split -> again -> split"


def test_unknown_components_and_missing_parameters_name_their_path() -> None:
    def bad(doc: dict[str, Any]) -> None:
        doc["nodes"][1]["component"] = "split_dataa"
        del doc["nodes"][2]["params"]["target"]
        doc["nodes"][3]["params"]["targett"] = "x"

    problems = {p["path"]: p["message"] for p in _problems(_with(bad))}
    assert "unknown component 'split_dataa'" in problems["nodes[1] (split).component"]
    assert problems["nodes[2] (train).params.target"].startswith(
        "train_model needs parameter 'target'")
    assert "has no parameter 'targett'" in problems["nodes[3] (score).params.targett"]
    # Edges to the unknown node are reported too, but not as a second cause of the same thing.
    assert any(path.startswith("edges[") for path in problems)


def test_wrong_types_are_refused() -> None:
    def bad(doc: dict[str, Any]) -> None:
        doc["nodes"][1]["params"]["fraction"] = "most"
        doc["nodes"][1]["params"]["seed"] = 1.5
        doc["nodes"][2]["params"]["algorithm"] = "magic"
        doc["parameters"]["threshold"]["default"] = "high"
        doc["nodes"][4]["params"]["metric"] = {"$param": "nope"}

    problems = {p["path"]: p["message"] for p in _problems(_with(bad))}
    assert problems["nodes[1] (split).params.fraction"] == "expected a number, got str 'most'"
    assert problems["nodes[1] (split).params.seed"] == "expected an integer, got float 1.5"
    assert problems["nodes[2] (train).params.algorithm"].startswith("expected one of lightgbm")
    assert problems["parameters.threshold.default"] == "expected a number, got str 'high'"
    assert "no pipeline parameter 'nope'" in problems["nodes[4] (gate).params.metric"]

    def mistyped_ref(doc: dict[str, Any]) -> None:
        doc["parameters"]["who"] = {"type": "string"}
        doc["nodes"][1]["params"]["fraction"] = {"$param": "who"}

    [problem] = _problems(_with(mistyped_ref))
    assert problem["message"] == "pipeline parameter 'who' is a string; fraction needs number"


def test_edges_between_incompatible_types_and_unknown_ports() -> None:
    def bad(doc: dict[str, Any]) -> None:
        doc["edges"][1] = {"from": "split.train", "to": "train.model"}  # no such input
        doc["edges"][5] = {"from": "score.metrics", "to": "register.model"}  # metrics -> model
        doc["edges"].append({"from": "split.test", "to": "gate.after"})  # table -> signal

    problems = {p["path"]: p["message"] for p in _problems(_with(bad))}
    assert problems["edges[1].to"] == ("node 'train' (train_model) has no input 'model'; it "
                                       "has train, after")
    assert problems["edges[5]"] == ("score.metrics is a metrics and register.model takes a "
                                    "model: an edge joins ports of the same type")
    assert "split.test is a table and gate.after takes a signal" in problems["edges[7]"]
    assert problems["node train"] == ("input 'train' (table) is not connected; add an edge to "
                                      "train.train")


def test_shape_problems() -> None:
    assert _problems({"name": "x", "nodes": []})[0] == {
        "path": "nodes", "message": "expected a list of at least one node"}
    problems = {p["path"]: p["message"] for p in _problems(
        {"name": "Bad Name", "nodes": [{"id": "a", "component": "import_data",
                                        "params": {"source": "table"}},
                                       {"id": "a", "component": "import_data"}],
         "edges": [{"from": "a", "to": "b.c"}], "extra": 1})}
    assert "is not a pipeline name" in problems["name"]
    assert problems["extra"].startswith("unknown key")
    assert problems["nodes[0] (a).params.table"] == "source table needs parameter 'table'"
    assert problems["nodes[1] (a).id"] == "two nodes are called 'a'"
    assert problems["edges[0].from"] == "no node 'a'; write from as NODE.OUTPUT"
    with pytest.raises(Invalid, match="is a JSON object"):
        check([1, 2])


def test_definitions_are_bounded() -> None:
    # No size limits used to let one definition (stored with every version and run) be as
    # large as a body could be.
    with pytest.raises(Invalid, match="bytes as JSON; at most 1048576"):
        check(_with(lambda d: d.update(description="x" * (1 << 20))))
    problems = {p["path"]: p["message"] for p in _problems(_with(lambda d: d.update(
        description="x" * 5000, edges=d["edges"] * 300,
        parameters={f"p{i}": {"type": "number", "default": 1} for i in range(101)})))}
    assert problems["description"] == "5000 characters; at most 4096"
    assert problems["edges"] == "2100 edges; a pipeline has at most 2000"
    assert problems["parameters"] == "101 parameters; at most 100"


def test_python_script_ports_come_from_its_parameters() -> None:
    doc = {"name": "p", "nodes": [
        {"id": "raw", "component": "import_data", "params": {"source": "table",
                                                             "table": "sales.orders"}},
        {"id": "mine", "component": "python_script", "params": {
            "code": "def f(rows):\n    return {'n': len(rows)}\n", "function": "f",
            "inputs": {"rows": "table"}, "outputs": {"metrics": "metrics"}}}],
        "edges": [{"from": "raw.table", "to": "mine.rows"}]}
    assert check(doc)["nodes"][1]["params"]["outputs"] == {"metrics": "metrics"}
    doc["nodes"][1]["params"]["code"] = "def f(:\n"
    doc["nodes"][1]["params"]["outputs"] = {"x": "dataframe"}
    problems = {p["path"]: p["message"] for p in _problems(doc)}
    assert problems["nodes[1] (mine).params.code"].startswith("not valid Python")
    assert problems["nodes[1] (mine).params.outputs.x"].startswith("'dataframe': expected")


def test_every_component_is_documented_and_in_the_schema() -> None:
    names = {c["name"] for c in (component_doc(c) for c in COMPONENTS.values())}
    assert names == {"import_data", "sql_transform", "select_columns", "clean_missing_data",
                     "normalize", "split_data", "join", "train_model", "tune_hyperparameters",
                     "score_model", "evaluate_model", "register_model", "deploy_to_endpoint",
                     "condition", "python_script", "notebook"}
    jsonschema.Draft202012Validator.check_schema(schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "nodes": [{"id": "a", "component": "nope"}]},
                            schema())
