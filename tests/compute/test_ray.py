"""Jobs on a Ray cluster: a real local Ray head node, the same job specs, the same results."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from cumulo.errors import Invalid, Unavailable
from tests.services import (
    VENV_BIN,
    Cumulo,
    RayHead,
    S3Server,
    free_port,
    ray_head,
    register_churn,
    start_cumulo,
)


@pytest.fixture(scope="module")
def compute(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    """This module's server: compute's (a short kill grace), with Ray Serve, where it starts
    it, on a free port."""
    server = start_cumulo(tmp_path_factory.mktemp("compute") / ".cumulo",
                          {"CUMULO_JOB_GRACE_SECONDS": "1",
                           "CUMULO_RAY_SERVE_PORT": str(free_port())})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHead]:
    """The head runs in a folder that holds a folder named ``ray`` (a checkout's, say): Ray
    runs entrypoints there, and what Cumulo runs must import Ray itself all the same."""
    workdir = tmp_path_factory.mktemp("head-workdir")
    (workdir / "ray").mkdir()
    (workdir / "ray" / "notes.txt").write_text("not the ray package\n")
    here = os.getcwd()
    with contextlib.ExitStack() as stack:
        os.chdir(workdir)  # `ray start` runs where it is started
        try:
            head = stack.enter_context(ray_head(tmp_path_factory.mktemp("ray")))
        finally:
            os.chdir(here)
        yield head


@pytest.fixture(scope="module")
def ray_cluster(compute: Cumulo, ray: RayHead) -> Iterator[str]:
    c = compute.client()
    # "auto" finds the head this machine runs, as Ray's own tools do; no Ray Client involved.
    made = c.clusters.create("ray1", type="ray", address="auto")
    assert made["type"] == "ray" and made["max_cpus"] == 2  # read from the Ray cluster
    assert made["endpoint"] == ray.dashboard
    # The `python` the head's PATH found (this virtualenv's), kept by its path for the
    # entrypoints of the cluster's jobs and endpoints.
    assert made["python"] == str(VENV_BIN / "python")
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
    read_lines = list(reader.logs())
    assert "rows 5" in read_lines
    assert "cut 3 ['x']" in read_lines  # read through the lake's API, then cut
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


# --- the interpreter a Ray cluster runs Cumulo with --------------------------------------------


def test_a_ray_cluster_is_registered_with_the_interpreter_named(
        compute: Cumulo, ray: RayHead, ray_cluster: str, tmp_path: Path) -> None:
    """Regression: the probe ran `python -c` with the head's PATH's python, in the head's
    working folder, where a folder named `ray` was imported in place of Ray by a python that
    had none. Now it runs in an empty folder, with the interpreter named by --python if any,
    and the cluster keeps that interpreter."""
    c = compute.client()
    venv_python = str(VENV_BIN / "python")
    made = c.clusters.create("ray-named", type="ray", address="auto", python=venv_python)
    assert made["python"] == venv_python and made["max_cpus"] == 2
    assert c.clusters.show("ray-named")["python"] == venv_python
    c.clusters.delete("ray-named")
    # An interpreter with neither Ray nor Cumulo: the head's `ray/` folder is no Ray to it.
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    with pytest.raises(Unavailable, match=r"bin/python \(named with --python\) cannot import "
                                          r"Ray \(No module named 'ray'\): name the head's"):
        c.clusters.create("ray-bare", type="ray", address="auto",
                          python=str(bare / "bin" / "python"))
    with pytest.raises(Invalid, match="must be an absolute path"):
        c.clusters.create("ray-rel", type="ray", address="auto", python="venv/bin/python")
    with pytest.raises(Invalid, match="--python is for ray clusters"):
        c.clusters.create("local-py", python=venv_python)
    names = [x["name"] for x in c.clusters.list()]
    assert not {"ray-named", "ray-bare", "ray-rel", "local-py"} & set(names)
    made = compute.cli("clusters", "create", "ray-cli", "--type", "ray", "--address", "auto",
                       "--python", venv_python, "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["python"] == venv_python
    assert compute.cli("clusters", "rm", "ray-cli").returncode == 0


def test_ray_python_is_the_kept_interpreter() -> None:
    from cumulo.compute.clusters import ray_python
    from cumulo.compute.models import Cluster

    assert ray_python(Cluster(name="r", type="ray", python="/opt/venv/bin/python")) == \
        "/opt/venv/bin/python"
    # Registered before Cumulo kept it: as before, the head's PATH decides.
    assert ray_python(Cluster(name="r", type="ray", python=None)) == "python"
    with pytest.raises(Invalid, match="not a Ray one"):
        ray_python(Cluster(name="local", type="local"))


# --- a Ray job's log ---------------------------------------------------------------------------


def test_user_output_of_a_real_ray_jobs_log(ray: RayHead, tmp_path: Path) -> None:
    """A job submitted as Cumulo submits its jobs (working_dir, env_vars, the spec in base64
    on the command line): its log from Ray starts with Ray's set-up; user_output leaves what
    the job wrote."""
    from ray.job_submission import JobSubmissionClient

    from cumulo.compute.raylogs import user_output

    (tmp_path / "hello.py").write_text(
        "import os, sys\n"
        "print('hello', len(sys.argv), os.environ['GREETING'])\n"
        "print('to stderr', file=sys.stderr)\n"
        "print('no newline at the end', end='')\n")
    spec = base64.b64encode(json.dumps({"entry": "hello.py", "n": list(range(40))}).encode())
    client = JobSubmissionClient(ray.dashboard)
    sid = client.submit_job(
        entrypoint=f"{VENV_BIN / 'python'} hello.py --spec {spec.decode()}",
        submission_id=f"cumulo-job-{uuid.uuid4().hex[:10]}-1",
        runtime_env={"working_dir": str(tmp_path), "env_vars": {"GREETING": "hi"}},
        entrypoint_num_cpus=0.1)
    deadline = time.monotonic() + 120
    while not client.get_job_status(sid).is_terminal():
        assert time.monotonic() < deadline, "the Ray job did not end"
        time.sleep(0.2)
    log = client.get_job_logs(sid)
    client.delete_job(sid)
    assert "Runtime env is setting up." in log and f"--spec {spec.decode()}" in log
    assert user_output(log) == "hello 3 hi\nto stderr\nno newline at the end"


# --- a job's environment on Ray ----------------------------------------------------------------


def test_a_jobs_environment_becomes_its_ray_runtime_env(compute: Cumulo, ray: RayHead,
                                                         ray_cluster: str,
                                                         tmp_path: Path) -> None:
    """A job's pins go to Ray as its runtime_env's pip packages: Ray builds the environment on
    the node over its own interpreter, where the pinned six comes first (the server has a
    newer one) and Cumulo's runtime is still importable. An isolated environment cannot be
    honoured there: it is refused, saying why, before Ray is asked for anything."""
    import six
    from ray.job_submission import JobSubmissionClient

    assert six.__version__ != "1.15.0"
    (tmp_path / "which.py").write_text(
        "import sys, six, cumulo.job, cumulo.client\n"
        "print('six', six.__version__, flush=True)\n"
        "print('python', sys.executable, flush=True)\n")
    c = compute.client()
    job = c.jobs.run("which.py", code=tmp_path, cluster=ray_cluster,
                     requirements=["six==1.15.0"])
    info = job.wait(600)  # Ray copies its own virtualenv for the environment: a while
    lines = list(job.logs())
    python = next((line.split(" ", 1)[1] for line in lines if line.startswith("python ")), "")
    try:
        assert info["state"] == "succeeded", (info["reason"], lines)
        assert "six 1.15.0" in lines
        assert "/runtime_resources/pip/" in python  # the environment Ray built
        submitted = JobSubmissionClient(ray.dashboard).get_job_info(info["ray_job"])
        assert submitted.runtime_env["pip"]["packages"] == ["six==1.15.0"]
        assert submitted.metadata["cumulo_environment"] == info["environment"][:12]
        # Refused at submission, before anything is queued.
        with pytest.raises(Invalid, match="--isolated and --python cannot be honoured there"):
            c.jobs.run("which.py", code=tmp_path, cluster=ray_cluster,
                       requirements=["six==1.15.0"], isolated=True)
    finally:
        # Ray keeps a runtime environment in its session folder, which outlives the head:
        # here a copy of the test virtualenv (gigabytes).
        if "/runtime_resources/pip/" in python:
            import shutil

            shutil.rmtree(Path(python).parents[2], ignore_errors=True)


# --- logs of Ray jobs kept in S3 ---------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_compute(s3: S3Server, ray: RayHead,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    """A second server on the same Ray head, keeping jobs' logs in S3 (moto standing in)."""
    server = start_cumulo(tmp_path_factory.mktemp("compute-s3") / ".cumulo", {
        **s3.env(), "CUMULO_STORAGE_URL": s3.create_bucket("ray-" + uuid.uuid4().hex[:10])})
    server.client().clusters.create("ray-s3", type="ray", address="auto")
    yield server
    server.stop()


def test_following_a_ray_job_to_its_end_with_logs_in_s3(s3_compute: Cumulo,
                                                         code: Path) -> None:
    """Regression: a follower reads a running Ray job's log from Ray, then the stored log
    from where it got to, its end: S3 answered 416 InvalidRange, the chunked answer was cut,
    and `jobs logs -f`, `jobs run --wait` and logs(follow=True) failed on jobs that went
    well ("peer closed connection without sending complete message body")."""
    c = s3_compute.client()
    job = c.jobs.run("sleep.py", code=code, cluster="ray-s3", args=["2"])
    lines = list(job.logs(follow=True))
    assert "sleeping" in lines and lines[-1] == "woke", lines  # all of it, and nothing more
    assert job.wait(60)["state"] == "succeeded"
    followed = s3_compute.cli("jobs", "logs", "-f", job.id)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == lines
    ran = s3_compute.cli("jobs", "run", "--code", str(code), "--entry", "ok.py", "--cluster",
                         "ray-s3", "--wait", "--", "--lr", "0.1")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "args ['--lr', '0.1'] attempt 1" in ran.stdout.splitlines()
    assert "done" in ran.stdout.splitlines()


# --- a pipeline run on a Ray cluster -----------------------------------------------------------


def _deploy_pipeline(**deploy: str) -> dict[str, object]:
    return {
        "name": "deploy-on-ray",
        "nodes": [
            {"id": "pick", "component": "python_script", "params": {
                "code": "def pick():\n    return 'models:/churn-ray/1'\n",
                "function": "pick", "outputs": {"model": "model"}}},
            {"id": "deploy", "component": "deploy_to_endpoint",
             "params": {"endpoint": "piped", "min_replicas": 1, "max_replicas": 1, **deploy}},
        ],
        "edges": [{"from": "pick.model", "to": "deploy.model"}],
    }


def test_a_pipeline_on_ray_deploys_its_endpoint_on_ray(compute: Cumulo,
                                                        ray_cluster: str) -> None:
    """Regression: Deploy to Endpoint put the endpoint on the control plane's machine
    whatever cluster the run was on. On a Ray cluster it goes on Ray Serve there (a real
    deploy on the module's Ray head), unless the step's cluster parameter says otherwise; an
    endpoint that runs elsewhere is not moved behind its owner's back."""
    c = compute.client()
    register_churn(compute, "churn-ray", "pipelines-on-ray")
    c.pipelines.create(_deploy_pipeline())
    try:
        run = c.pipelines.run("deploy-on-ray", cluster=ray_cluster, wait=True, timeout=600)
        steps = {s["node"]: s for s in run["steps"]}
        assert run["state"] == "succeeded", steps
        assert c.jobs.get(steps["deploy"]["job_id"]).info["cluster"] == ray_cluster
        endpoint = c.endpoints.show("piped")
        assert endpoint["cluster"] == ray_cluster and endpoint["state"] == "in_service"
        # Its parameter says this machine, where the endpoint is not: the step fails, and
        # says why.
        c.pipelines.create(_deploy_pipeline(cluster="local"))
        held = c.pipelines.run("deploy-on-ray", wait=True, timeout=300)
        step = {s["node"]: s for s in held["steps"]}["deploy"]
        assert held["state"] == "failed" and step["state"] == "failed"
        log = "\n".join(c.jobs.get(step["job_id"]).logs())
        assert f"endpoint piped runs on {ray_cluster}; this step deploys to this machine " \
               "(its cluster parameter, local)" in log
        assert c.endpoints.show("piped")["cluster"] == ray_cluster
    finally:
        with contextlib.suppress(Exception):
            c.endpoints.delete("piped")
