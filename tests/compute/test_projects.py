"""Jobs and clusters in projects: made in one, listed by one, decided in one, counted toward
its quotas and its costs. One server for the module (the ``compute`` fixture)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cumulo.errors import Forbidden, NotFound, QuotaExceeded
from tests.services import Cumulo

PASS = ["python", "-c", "pass"]
SLEEP = ["python", "-c", "import time; time.sleep(120)"]


@pytest.fixture(scope="module")
def team(compute: Cumulo) -> dict[str, Any]:
    """An admin, and ana: a developer in project team-a only; team-b exists too."""
    admin = compute.client()
    ana = compute.add_user("ana", "cml_ana-token-0123456789abcdef012", project="team-a")
    admin.projects.create("team-b")
    return {"admin": admin, "ana": ana}


def test_member_runs_and_lists_jobs_in_their_project(compute: Cumulo, team: dict[str, Any],
                                                     tmp_path: Path) -> None:
    admin, ana = team["admin"], team["ana"]
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.py").write_text("print('hello from team-a')\n")
    job = ana.jobs.run("hello.py", code=src, project="team-a")  # the upload is decided there
    assert job.info["project"] == "team-a"
    assert ana.jobs.wait_any([job], timeout=60) == [job]  # asked in team-a, where ana may list
    assert job.wait(60)["state"] == "succeeded" and list(job.logs()) == ["hello from team-a"]
    assert ana.jobs.get(job.id).info["project"] == "team-a"
    assert [j.id for j in ana.jobs.list(project="team-a")] == [job.id]
    # Everywhere else ana holds nothing: not jobs of no project, nor of team-b, nor listing all.
    for project in (None, "team-b"):
        with pytest.raises(Forbidden):
            ana.jobs.run(command=PASS, project=project)
    with pytest.raises(Forbidden):
        ana.jobs.list()
    outside = admin.jobs.run(command=PASS)
    theirs = admin.jobs.run(command=PASS, project="team-b")
    for other in (outside, theirs):
        other.wait(60)
        with pytest.raises(Forbidden):
            ana.jobs.get(other.id)
        with pytest.raises(Forbidden):
            ana.jobs.retry(other.id)
        with pytest.raises((Forbidden, NotFound)):
            ana.jobs.wait_any([job, other], timeout=0)
    # The admin sees each job's project, and lists one project's.
    assert {j.id: j.info["project"] for j in admin.jobs.list()
            if j.id in (job.id, outside.id, theirs.id)} == {
        job.id: "team-a", outside.id: None, theirs.id: "team-b"}
    assert [j.id for j in admin.jobs.list(project="team-b")] == [theirs.id]
    # Its cost is team-a's.
    rows = {r["project"]: r for r in admin.costs(by="project")["rows"]}
    # (one usage record: a job this short may round to no wall time at all)
    assert rows["team-a"]["count"] == 1 and rows["team-a"]["wall_seconds"] >= 0
    assert rows["team-b"]["count"] == 1


def test_unknown_project_is_refused_and_nothing_made(team: dict[str, Any]) -> None:
    admin = team["admin"]
    before = len(admin.jobs.list(limit=10_000))
    with pytest.raises(NotFound, match="no project 'nope'"):
        admin.jobs.run(command=PASS, project="nope")
    with pytest.raises(NotFound, match="no project 'nope'"):
        admin.clusters.create("nope-box", project="nope")
    assert len(admin.jobs.list(limit=10_000)) == before
    assert "nope-box" not in {c["name"] for c in admin.clusters.list()}
    for listing in (admin.jobs.list, admin.clusters.list):
        with pytest.raises(NotFound):
            listing(project="nope")


def test_cpu_and_memory_quotas(team: dict[str, Any]) -> None:
    admin = team["admin"]
    admin.projects.create("quota-x", quotas={"cpus": 1, "memory_gb": 1})
    first = admin.jobs.run(command=SLEEP, cpus=0.5, project="quota-x", name="first")
    with pytest.raises(QuotaExceeded) as refused:
        admin.jobs.run(command=SLEEP, cpus=0.75, project="quota-x", name="second")
    assert ("job second (0.75 CPU) would take project quota-x past its cpus quota: "
            "0.5 CPUs in use + 0.75 asked > 1") in refused.value.message
    with pytest.raises(QuotaExceeded, match="memory_gb quota: 0 GB of memory in use"):
        admin.jobs.run(command=PASS, cpus=0.25, memory="2G", project="quota-x")
    assert [j.id for j in admin.jobs.list(project="quota-x")] == [first.id]  # nothing queued
    third = admin.jobs.run(command=SLEEP, cpus=0.5, memory="512M", project="quota-x")
    assert admin.projects.show("quota-x")["usage"]["cpus"] == 1  # queued work counts too
    # A retried job is active again: it is refused while the quota is taken.
    first.cancel()
    assert first.wait(60)["state"] == "cancelled"
    fourth = admin.jobs.run(command=SLEEP, cpus=0.5, project="quota-x")
    with pytest.raises(QuotaExceeded, match="job first"):
        admin.jobs.retry(first.id)
    assert admin.jobs.get(first.id).info["state"] == "cancelled"
    for job in (third, fourth):
        job.cancel()
        job.wait(60)
    assert admin.jobs.retry(first.id).info["attempt"] == 2
    admin.jobs.cancel(first.id).wait(60)


def test_clusters_in_a_project(compute: Cumulo, team: dict[str, Any]) -> None:
    admin, ana = team["admin"], team["ana"]
    made = ana.clusters.create("team-a-box", max_cpus=1, project="team-a")
    assert made["project"] == "team-a"
    assert ana.clusters.show("team-a-box")["project"] == "team-a"
    assert [c["name"] for c in ana.clusters.list(project="team-a")] == ["team-a-box"]
    with pytest.raises(Forbidden):
        ana.clusters.create("loose-box", max_cpus=1)
    with pytest.raises(Forbidden):
        ana.clusters.list()
    with pytest.raises(Forbidden):
        ana.clusters.show("local")
    # A job's project need not be its cluster's.
    assert admin.jobs.run(command=PASS, cluster="team-a-box").wait(60)["state"] == "succeeded"
    assert {c["name"]: c["project"] for c in admin.clusters.list()}["local"] is None
    ana.clusters.delete("team-a-box")
    # The CLI: --project on create and ls, shown in the table and in --json.
    made = compute.cli("clusters", "create", "cli-box", "--max-cpus", "1", "--project",
                       "team-a", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["project"] == "team-a"
    listed = json.loads(compute.cli("clusters", "ls", "--project", "team-a", "--json").stdout)
    assert [(c["name"], c["project"]) for c in listed] == [("cli-box", "team-a")]
    table = compute.cli("clusters", "ls", "--project", "team-a").stdout
    assert "cli-box" in table and "team-a" in table
    run = compute.cli("jobs", "run", "--command", "python -c pass", "--project", "team-a",
                      "--cluster", "cli-box", "--json")
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout)
    assert job["project"] == "team-a"
    admin.jobs.get(job["id"]).wait(60)
    rows = json.loads(compute.cli("jobs", "ls", "--project", "team-a", "--json").stdout)
    assert job["id"] in {r["id"] for r in rows} and {r["project"] for r in rows} == {"team-a"}
    table = compute.cli("jobs", "ls", "--project", "team-a").stdout
    assert "PROJECT" in table.upper() and job["id"] in table
    assert compute.cli("clusters", "rm", "cli-box").returncode == 0


def test_a_jobs_mlflow_works_in_its_project(compute: Cumulo, team: dict[str, Any]) -> None:
    """Experiments and models belong to no project: a request names the one it works in
    (X-Cumulo-Project), and a job in a project names its own, through MLflow's plugin."""
    import httpx

    token = "cml_ana-token-0123456789abcdef012"
    url = f"{compute.url}/mlflow/api/2.0/mlflow/experiments/create"
    bare = httpx.post(url, json={"name": "ana-bare"}, timeout=30,
                      headers={"Authorization": f"Bearer {token}"})
    assert bare.status_code == 403 and "name it with --project" in bare.text
    named = httpx.post(url, json={"name": "ana-in-team-a"}, timeout=30,
                       headers={"Authorization": f"Bearer {token}",
                                "X-Cumulo-Project": "team-a"})
    assert named.status_code == 200, named.text
    elsewhere = httpx.post(url, json={"name": "ana-in-team-b"}, timeout=30,
                           headers={"Authorization": f"Bearer {token}",
                                    "X-Cumulo-Project": "team-b"})
    assert elsewhere.status_code == 403

    script = ("import os, mlflow; assert os.environ['CUMULO_PROJECT'] == 'team-a'; "
              "mlflow.set_experiment('team-a-job'); "
              "mlflow.start_run(); mlflow.log_metric('loss', 0.5); mlflow.end_run()")
    job = team["ana"].jobs.run(command=["python", "-c", script], project="team-a")
    done = job.wait(120)
    assert done["state"] == "succeeded", "\n".join(job.logs())
