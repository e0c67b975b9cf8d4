"""The job environment contract (cumulo.jobenv): what the supervisor writes, jobs read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cumulo import jobenv
from cumulo.jobenv import JobEnv


def test_round_trip_through_the_environment(tmp_path: Path) -> None:
    inputs = {"train": {"kind": "table", "table": "sales.orders", "version": 3}}
    job = JobEnv("j1", 2, url="http://127.0.0.1:8080", token="cml_x", job_dir=tmp_path,
                 inputs=inputs, code="abc")
    env = job.variables()
    assert env["CUMULO_JOB_OUTPUT_DIR"] == str(tmp_path / "output")
    assert env["CUMULO_JOB_CHECKPOINT_DIR"] == str(tmp_path / "checkpoints")
    assert "CUMULO_JOB_REMOTE" not in env
    assert jobenv.current(env) == job
    assert jobenv.in_job(env) and not jobenv.in_job({})
    assert jobenv.current({}) is None


def test_a_remote_job_names_no_folder_until_its_node_makes_one(tmp_path: Path) -> None:
    job = JobEnv("j2", url="http://cp:8080")
    env = job.variables()
    assert not set(jobenv.FOLDER_VARIABLES) & set(env)
    on_node = dataclasses.replace(jobenv.current(env), job_dir=tmp_path, remote=True)  # type: ignore[arg-type]
    read = jobenv.current(on_node.variables())
    assert read is not None and read.remote and read.output_dir == tmp_path / "output"


def test_input_refs() -> None:
    assert jobenv.input_ref({"kind": "table", "table": "db.t", "version": 7}) == "db.t@v7"
    assert jobenv.input_ref({"kind": "files", "bucket": "raw", "prefix": "2026/"}) == "raw/2026/"
