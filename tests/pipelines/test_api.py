"""Pipelines over the API, the SDK and the CLI, on a real server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from cumulo.errors import Forbidden, Invalid, NotFound
from tests.pipelines import example_pipelines as ex
from tests.pipelines.test_definition import DOC
from tests.services import Cumulo

SOURCE = Path(ex.__file__)


def test_create_version_show_export_delete(local_server: Cumulo) -> None:
    c = local_server.client()
    first = c.pipelines.create(ex.churn)
    assert (first["name"], first["version"], first["created"]) == ("churn", 1, True)
    assert first["source"] == "python" and first["created_by"] == "admin"
    # The same definition again: no new version.
    again = c.pipelines.create(ex.churn.definition())
    assert (again["version"], again["created"]) == (1, False)
    # A new layout from the designer is saved ...
    moved = ex.churn.definition()
    moved["nodes"][0]["position"] = {"x": 5, "y": 5}
    assert c.pipelines.create(moved)["version"] == 2
    # ... and so is a real change.
    changed = ex.churn.definition()
    changed["nodes"][2]["params"]["fraction"] = 0.7
    assert c.pipelines.create(changed)["version"] == 3
    assert c.pipelines.show("churn")["version"] == 3
    assert c.pipelines.export("churn", version=1) == {**ex.churn.definition(), "version": 1}
    assert [v["version"] for v in c.pipelines.versions("churn")] == [3, 2, 1]
    assert [p["name"] for p in c.pipelines.list()] == ["churn"]
    with pytest.raises(NotFound, match="has no version 9"):
        c.pipelines.show("churn", version=9)
    c.pipelines.delete("churn")
    with pytest.raises(NotFound, match="no pipeline 'churn'"):
        c.pipelines.show("churn")


def test_bad_definitions_are_refused_with_every_problem(local_server: Cumulo) -> None:
    c = local_server.client()
    bad = json.loads(json.dumps(DOC))
    bad["name"] = "bad-one"
    bad["nodes"][1]["component"] = "nope"
    bad["nodes"][2]["params"] = {}
    with pytest.raises(Invalid) as info:
        c.pipelines.create(bad)
    paths = [p["path"] for p in info.value.details["problems"]]
    assert "nodes[1] (split).component" in paths and "nodes[2] (train).params.target" in paths
    assert c.pipelines.list() == []  # nothing stored
    with pytest.raises(Invalid, match="cycle"):
        c.pipelines.validate({**DOC, "edges": [*DOC["edges"],
                                               {"from": "gate.else", "to": "train.after"}]})
    assert c.pipelines.validate(DOC)["name"] == "churn"
    # Schema and components, for the designer.
    schema = c.pipelines.schema()
    assert schema["properties"]["nodes"]["minItems"] == 1
    assert {x["name"] for x in c.pipelines.components()} >= {"import_data", "condition"}
    # Not a JSON object at all.
    raw = httpx.post(f"{local_server.url}/api/v1/pipelines", content=b"[1]",
                     headers={"authorization": f"Bearer {local_server.token}",
                              "content-type": "application/json"})
    assert raw.status_code in (400, 422)


def test_another_user_may_not_change_a_pipeline(local_server: Cumulo) -> None:
    admin = local_server.client()
    admin.pipelines.create({**DOC, "name": "owned"})
    bob = local_server.add_user("bob-p", "cml_bobp-token-0123456789abcdef0")
    assert bob.pipelines.show("owned")["name"] == "owned"  # everyone may read and run it
    with pytest.raises(Forbidden, match="another user's"):
        bob.pipelines.create({**DOC, "name": "owned", "description": "mine now"})
    with pytest.raises(Forbidden):
        bob.pipelines.delete("owned")
    admin.pipelines.delete("owned")


def test_cli(local_server: Cumulo, tmp_path: Path) -> None:
    out = local_server.cli("pipelines", "create", f"{SOURCE}:churn")
    assert out.returncode == 0, out.stderr
    assert "pipeline churn version 1 (created, 8 nodes)" in out.stdout
    shown = local_server.cli("pipelines", "show", "churn")
    assert shown.returncode == 0, shown.stderr
    assert "parameter threshold: number = 0.8" in shown.stdout
    assert "register_model.after" not in shown.stdout  # inputs are shown by port
    assert "after <- condition.then" in shown.stdout
    exported = local_server.cli("pipelines", "export", "churn", "--yaml")
    assert yaml.safe_load(exported.stdout)["name"] == "churn"
    local = local_server.cli("pipelines", "export", str(SOURCE))
    assert json.loads(local.stdout) == ex.churn.definition()
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({**DOC, "name": "from-yaml"}))
    assert local_server.cli("pipelines", "validate", str(tmp_path / "p.yaml")).returncode == 0
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**DOC, "nodes": DOC["nodes"][:1]}))
    bad = local_server.cli("pipelines", "create", str(tmp_path / "bad.yaml"))
    assert bad.returncode == 1 and "edges[0].to: no node 'split'" in bad.stderr
    listed = local_server.cli("pipelines", "ls")
    assert "churn" in listed.stdout
    components = local_server.cli("pipelines", "components")
    assert "split_data" in components.stdout and "fraction" in components.stdout
    assert local_server.cli("pipelines", "rm", "churn").returncode == 0


def test_run_timeouts_take_the_one_grammar(local_server: Cumulo) -> None:
    for command in (["run", "no-such-pipeline"], ["retry", "no-such-run"]):
        took = local_server.cli("pipelines", *command, "--timeout", "1h30m")
        assert took.returncode == 1 and "--timeout" not in took.stderr, took.stderr
        assert "no-such" in took.stderr  # refused for what it names, not for its timeout
        bad = local_server.cli("pipelines", *command, "--timeout", "5x")
        assert bad.returncode == 1 and bad.stderr.strip() == (
            "error: --timeout '5x' is not a duration: use forms like 90s, 30m, 1h30m, 7d, 2w")


def test_numbers_past_what_a_pipeline_keeps_are_400s(local_server: Cumulo) -> None:
    """Found by fuzzing the API (tests/server/test_openapi_fuzz.py): an integer past 64 bits in
    a definition, a version or a list's limit was a 500; one in a run's parameters, or NaN or
    infinity, was kept as null."""
    api = f"{local_server.url}/api/v1/pipelines"
    auth = {"authorization": f"Bearer {local_server.token}"}
    doc = {"name": "numbers", "parameters": {"n": {"type": "integer", "default": 2**70},
                                              "x": {"type": "number", "default": 0.5}},
           "nodes": [{"id": "a", "component": "sql_transform", "params": {"query": "select 1"}}]}
    refused = httpx.post(api, json=doc, headers=auth)
    assert refused.status_code == 400
    assert refused.json()["error"]["details"]["problems"] == [
        {"path": "parameters.n.default",
         "message": f"{2**70} is past the 64-bit integers a pipeline keeps"}]
    doc["parameters"]["n"]["default"] = 1
    assert httpx.post(api, json=doc, headers=auth).status_code == 201
    for parameters in ({"n": 2**70}, {"x": "inf"}, {"x": "nan"}):
        answer = httpx.post(f"{api}/numbers/runs", json={"parameters": parameters},
                            headers=auth)
        assert answer.status_code == 400, answer.text
        assert "is past the 64-bit" in answer.text or "is not a number JSON" in answer.text
    for url, params in ((f"{api}/-/runs", {"limit": 2**127}),
                        (f"{api}/numbers", {"version": 2**70})):
        answer = httpx.get(url, params=params, headers=auth)
        assert answer.status_code == 400, answer.text
    answer = httpx.post(f"{api}/numbers/runs", json={"version": 2**70}, headers=auth)
    assert answer.status_code == 400, answer.text
    assert httpx.get(f"{api}/-/runs", params={"pipeline": "numbers"}, headers=auth).json() == []
    httpx.delete(f"{api}/numbers", headers=auth).raise_for_status()
