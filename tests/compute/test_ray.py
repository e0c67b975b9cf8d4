"""Jobs on a Ray cluster: a real local Ray head node, the same job specs, the same results."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from cumulo.errors import Invalid, Unavailable
from tests.services import Cumulo, RayHead, ray_head


@pytest.fixture(scope="module")
def ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHead]:
    with ray_head(tmp_path_factory.mktemp("ray")) as head:
        yield head


@pytest.fixture(scope="module")
def ray_cluster(compute: Cumulo, ray: RayHead) -> Iterator[str]:
    c = compute.client()
    # "auto" finds the head this machine runs, as Ray's own tools do; no Ray Client involved.
    made = c.clusters.create("ray1", type="ray", address="auto")
    assert made["type"] == "ray" and made["max_cpus"] == 2  # read from the Ray cluster
    assert made["endpoint"] == ray.dashboard
    yield "ray1"
    c.clusters.delete("ray1")


def test_job_runs_as_a_ray_job(compute: Cumulo, code: Path, ray_cluster: str) -> None:
    c = compute.client()
    job = c.jobs.run("ok.py", code=code, cluster=ray_cluster, args=["--lr", "0.1"],
                     tags=["on-ray"])
    assert job.info["cluster"] == ray_cluster
    info = job.wait(180)
    assert info["state"] == "succeeded", info["log_tail"]
    assert info["ray_job"] == f"cumulo-{job.id}-1"  # to find it in Ray's dashboard
    out = list(job.logs())
    assert "args ['--lr', '0.1'] attempt 1" in out and "done" in out
    assert [p["value"] for p in job.metrics()["loss"]] == [0.5, 0.25]
    assert [a["path"] for a in job.artifacts()] == ["model.txt", "sub/eval.json"]
    assert info["usage"]["cpu_seconds"] > 0 and info["usage"]["cost_usd"] > 0
    row = next(r for r in c.costs(by="cluster")["rows"] if r["cluster"] == ray_cluster)
    assert row["count"] >= 1


def test_unreachable_ray_is_refused(compute: Cumulo) -> None:
    c = compute.client()
    with pytest.raises(Unavailable, match="cannot reach the Ray cluster"):
        c.clusters.create("ray-nowhere", type="ray", address="http://127.0.0.1:9")
    with pytest.raises(Invalid, match="needs --address"):
        c.clusters.create("ray-none", type="ray")
    assert "ray-nowhere" not in [x["name"] for x in c.clusters.list()]


def test_failure_input_and_cancel_on_ray(compute: Cumulo, code: Path, ray_cluster: str) -> None:
    c = compute.client()
    failed = c.jobs.run("fail.py", code=code, cluster=ray_cluster)
    c.tables.create_database("raydb")
    c.tables.write("raydb.t", pa.table({"x": list(range(5))}))
    reader = c.jobs.run("read_input.py", code=code, cluster=ray_cluster,
                        inputs={"train": "raydb.t"})
    sleeper = c.jobs.run("sleep.py", code=code, cluster=ray_cluster, args=["60"])
    info = failed.wait(180)
    assert info["state"] == "failed" and info["exit_code"] == 3
    assert "bad things happened" in info["log_tail"]
    read = reader.wait(180)
    assert read["state"] == "succeeded", read["log_tail"]
    assert "rows 5" in list(reader.logs())
    lines = sleeper.logs(follow=True)
    assert "sleeping" in next(line for line in lines if "sleeping" in line)
    sleeper.cancel()
    assert sleeper.wait(120)["state"] == "cancelled"
    with pytest.raises(Invalid, match="at most 2"):
        c.jobs.run("ok.py", code=code, cluster=ray_cluster, cpus=3)


def test_checkpoints_on_ray_outlive_an_attempt(compute: Cumulo, code: Path,
                                               ray_cluster: str) -> None:
    """On Ray each save is sent home at once (a killed process says nothing at its end), and
    the next attempt fetches them before it starts."""
    c = compute.client()
    job = c.jobs.run("resume.py", code=code, cluster=ray_cluster, args=["2", "0"], retries=1)
    info = job.wait(300)
    assert info["state"] == "succeeded", info["log_tail"]
    assert [a["state"] for a in info["attempts"]] == ["failed", "succeeded"]
    assert "attempt 2 starts at epoch 3" in list(job.logs())
    assert [p["step"] for p in job.metrics()["loss"]] == [1, 2, 3, 4, 5, 6]
    assert [k["path"] for k in job.checkpoints()] == ["ckpt-5.pt", "ckpt-6.pt"]
    assert [a["path"] for a in job.artifacts()] == ["result.json"]


def test_tuning_trials_run_as_ray_jobs(compute: Cumulo, ray_cluster: str) -> None:
    """Tuning on a Ray cluster: each trial is a Ray job; the best one is registered."""
    c = compute.client()
    c.tables.create_database("raytune")
    n = 200
    c.tables.write("raytune.points", pa.table({
        "x": [float(i % 17) for i in range(n)], "y": [float(i % 5) for i in range(n)],
        "label": [int((i % 17) > 8) for i in range(n)]}))
    result = c.tune(name="ray-tuned", table="raytune.points", target="label",
                    objective="accuracy", search_space={"num_leaves": [4, 8]},
                    strategy="grid", max_trials=2, max_parallel=2, seed=1,
                    cluster=ray_cluster, hyperparameters={"n_estimators": 10})
    assert [t["state"] for t in result["trials"]] == ["complete"] * 2, result["trials"]
    jobs = [c.jobs.get(t["job"]).info for t in result["trials"]]
    assert all(j["cluster"] == ray_cluster and j["ray_job"] for j in jobs), jobs
    assert result["model"]["name"] == "ray-tuned" and result["model"]["version"] == "1"
    assert c.models.version("ray-tuned", 1)["tags"]["cumulo.tuning_run"] == result["run_id"]
