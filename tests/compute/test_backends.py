"""Jobs on every metadata and storage backend: inputs, logs and outputs go through S3 too."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from tests.services import Cumulo


def test_job_with_inputs_and_outputs(server: Cumulo, code: Path) -> None:
    c = server.client()
    c.tables.create_database("lake")
    c.tables.write("lake.points", pa.table({"x": [1, 2, 3]}))
    c.files.create_bucket("inbox")
    c.files.upload(b"a\n1\n", "inbox/day/1.csv")
    job = c.jobs.run("read_input.py", code=code,
                     inputs={"train": "lake.points@v0", "raw": "inbox/day/"})
    info = job.wait(90)
    assert info["state"] == "succeeded", info["log_tail"]
    out = list(job.logs())
    assert out[0] == "rows 3" and out[2] == "raw ['1.csv']"
    made = c.jobs.run("ok.py", code=code)
    assert made.wait(90)["state"] == "succeeded"
    assert [a["path"] for a in made.artifacts()] == ["model.txt", "sub/eval.json"]
    assert list(made.logs())[-1] == "done"
    jobs_priced = c.costs(by="kind")["total"]["count"]
    c.jobs.delete(made.id)
    assert made.id not in [j.id for j in c.jobs.list()]
    assert c.costs(by="kind")["total"]["count"] == jobs_priced  # what it cost stays on record
