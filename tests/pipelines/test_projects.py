"""Pipelines in projects: made in one (``?project=``), listed by it, held to it; a run's step
jobs belong to the pipeline's project, so its quotas count them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cumulo.errors import Conflict, Forbidden, NotFound
from tests.services import Cumulo, start_cumulo

DANA = "cml_dana-pipelines-token-0123456789"


def _doc(name: str, n: int = 1) -> dict[str, Any]:
    """A one-step pipeline: a Python step that reads nothing and reports a number."""
    return {"name": name, "nodes": [{
        "id": "count", "component": "python_script", "params": {
            "code": f"def f():\n    return {{'n': {n}}}\n", "function": "f", "inputs": {},
            "outputs": {"metrics": "metrics"}}}], "edges": []}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    cumulo = start_cumulo(tmp_path_factory.mktemp("pipeline-projects") / ".cumulo")
    admin = cumulo.client()
    admin.projects.create("team-a")
    admin.projects.create("team-b")
    admin.pipelines.create(_doc("plain"))  # the platform's own: no project
    yield cumulo
    cumulo.stop()


@pytest.fixture(scope="module")
def dana(server: Cumulo) -> Any:
    """A developer in team-a only."""
    return server.add_user("dana", DANA, project="team-a")


def test_a_member_makes_reads_and_lists_pipelines_in_their_project(server: Cumulo,
                                                                   dana: Any) -> None:
    made = dana.pipelines.create(_doc("a-pipe"), project="team-a")
    assert (made["name"], made["project"], made["created"]) == ("a-pipe", "team-a", True)
    assert dana.pipelines.show("a-pipe")["project"] == "team-a"
    # A new version stays in the project; naming another project is refused.
    assert dana.pipelines.create(_doc("a-pipe", 2), project="team-a")["version"] == 2
    with pytest.raises(Conflict, match="belongs to project team-a"):
        server.client().pipelines.create(_doc("a-pipe", 3), project="team-b")
    assert [p["name"] for p in dana.pipelines.list(project="team-a")] == ["a-pipe"]
    assert dana.pipelines.list(project="team-a")[0]["project"] == "team-a"
    # Nothing outside team-a: not made without a project or in another, nor listed, nor
    # touched when it is the platform's own.
    with pytest.raises(Forbidden):
        dana.pipelines.create(_doc("loose"))
    with pytest.raises(Forbidden):
        dana.pipelines.create(_doc("elsewhere"), project="team-b")
    with pytest.raises(Forbidden):
        dana.pipelines.list()
    for touch in (lambda: dana.pipelines.show("plain"), lambda: dana.pipelines.run("plain"),
                  lambda: dana.pipelines.delete("plain")):
        with pytest.raises(Forbidden):
            touch()
    admin = server.client()
    shown = {p["name"]: p["project"] for p in admin.pipelines.list()}
    assert shown["a-pipe"] == "team-a" and shown["plain"] is None
    assert [p["name"] for p in admin.pipelines.list(project="team-b")] == []
    assert "loose" not in shown and "elsewhere" not in shown


def test_an_unknown_project_is_not_found_and_nothing_is_made(server: Cumulo) -> None:
    admin = server.client()
    with pytest.raises(NotFound, match="no project 'nope'"):
        admin.pipelines.create(_doc("ghost"), project="nope")
    with pytest.raises(NotFound, match="no pipeline 'ghost'"):
        admin.pipelines.show("ghost")
    with pytest.raises(NotFound, match="no project 'nope'"):
        admin.pipelines.list(project="nope")


def test_a_members_run_and_its_step_jobs_belong_to_the_project(server: Cumulo,
                                                               dana: Any) -> None:
    dana.pipelines.create(_doc("a-run"), project="team-a")
    run = dana.pipelines.run("a-run", wait=True, timeout=300)
    step = run["steps"][0]
    assert run["state"] == "succeeded", (step["message"], step["log_tail"])
    assert step["outputs"]["metrics"] == {"n": 1.0}
    assert [r["id"] for r in dana.pipelines.runs(project="team-a")] == [run["id"]]
    job = server.client().jobs.get(step["job_id"]).refresh()
    assert job["project"] == "team-a"


def test_a_step_job_past_the_projects_quota_fails_the_step(server: Cumulo) -> None:
    admin = server.client()
    admin.projects.create("team-q", quotas={"cpus": 0.5})
    # The same step as team-a's run: not taken from its cache, which is team-a's work.
    admin.pipelines.create(_doc("q-pipe"), project="team-q")
    run = admin.pipelines.run("q-pipe", wait=True, timeout=120)
    step = run["steps"][0]
    assert run["state"] == "failed" and step["state"] == "failed" and step["job_id"] is None
    assert "its job could not be submitted" in step["message"]
    assert "project team-q past its cpus quota" in step["message"], step["message"]
    assert "0.5" in step["message"]
    assert admin.jobs.list(project="team-q") == []  # no job was queued


def test_cli_project_option(server: Cumulo, tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps(_doc("cli-pipe")))
    made = server.cli("pipelines", "create", str(tmp_path / "c.json"), "--project", "team-b")
    assert made.returncode == 0, made.stderr
    assert "project team-b" in made.stdout
    listed = server.cli("pipelines", "ls", "--project", "team-b", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(p["name"], p["project"]) for p in json.loads(listed.stdout)] == [
        ("cli-pipe", "team-b")]
    table = server.cli("pipelines", "ls")
    assert "project" in table.stdout and "team-b" in table.stdout


def test_a_member_schedules_their_projects_pipeline(server: Cumulo, dana: Any) -> None:
    dana.pipelines.create(_doc("a-sched"), project="team-a")
    made = dana.pipelines.schedule("a-sched", cron="0 3 1 1 *", missed="skip")
    assert [s["name"] for s in dana.pipelines.schedules(project="team-a")] == [made["name"]]
    with pytest.raises(Forbidden):
        dana.pipelines.schedules()
    with pytest.raises(Forbidden):
        dana.pipelines.schedule("plain", cron="0 3 1 1 *")
    dana.pipelines.unschedule(made["name"])
    assert server.client().pipelines.schedules(pipeline="a-sched") == []
