"""The environment a job runs in: the one module that writes and reads ``CUMULO_JOB_*``.

The supervisor writes it (:meth:`JobEnv.variables`); the runner, ``cumulo.job``, MLflow's run
context and script mode read it (:func:`current`). A job's own subprocesses inherit it, so they
find their job too.

>>> env = JobEnv(job_id="j1", attempt=2, url="http://127.0.0.1:8080")
>>> current(env.variables()).attempt
2
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FOLDER_VARIABLES", "JobEnv", "current", "in_job", "input_ref"]

# The variables that name folders on the machine the job runs on; a remote runner makes its
# own and sets these again.
FOLDER_VARIABLES = ("CUMULO_JOB_DIR", "CUMULO_JOB_OUTPUT_DIR", "CUMULO_JOB_CHECKPOINT_DIR")


@dataclass(frozen=True)
class JobEnv:
    """Who the job is and where its files go."""

    job_id: str
    attempt: int = 1
    url: str | None = None  # the control plane, as the job reaches it
    token: str | None = None  # the job's own token, as its user
    job_dir: Path | None = None  # None on a remote node until its runner makes one
    inputs: dict[str, Any] = field(default_factory=dict)
    code: str = ""  # the code snapshot's digest
    remote: bool = False  # on another machine: outputs are sent home over HTTP

    @property
    def output_dir(self) -> Path:
        return (self.job_dir or Path(".")) / "output"

    @property
    def checkpoint_dir(self) -> Path:
        return (self.job_dir or Path(".")) / "checkpoints"

    def variables(self) -> dict[str, str]:
        env = {"CUMULO_JOB_ID": self.job_id, "CUMULO_JOB_ATTEMPT": str(self.attempt),
               "CUMULO_JOB_INPUTS": json.dumps(self.inputs), "CUMULO_JOB_CODE": self.code}
        if self.url:
            env["CUMULO_URL"] = self.url
        if self.token:
            env["CUMULO_TOKEN"] = self.token
        if self.job_dir is not None:
            env.update(zip(FOLDER_VARIABLES, map(str, (
                self.job_dir, self.output_dir, self.checkpoint_dir)), strict=True))
        if self.remote:
            env["CUMULO_JOB_REMOTE"] = "1"
        return env


def in_job(environ: Mapping[str, str] | None = None) -> bool:
    return "CUMULO_JOB_ID" in (os.environ if environ is None else environ)


def current(environ: Mapping[str, str] | None = None) -> JobEnv | None:
    """The job this process belongs to, from its environment; None outside a job."""
    env = os.environ if environ is None else environ
    if "CUMULO_JOB_ID" not in env:
        return None
    job_dir = env.get("CUMULO_JOB_DIR")
    return JobEnv(job_id=env["CUMULO_JOB_ID"], attempt=int(env.get("CUMULO_JOB_ATTEMPT", "1")),
                  url=env.get("CUMULO_URL"), token=env.get("CUMULO_TOKEN"),
                  job_dir=Path(job_dir) if job_dir else None,
                  inputs=json.loads(env.get("CUMULO_JOB_INPUTS") or "{}"),
                  code=env.get("CUMULO_JOB_CODE", ""), remote=env.get("CUMULO_JOB_REMOTE") == "1")



def input_ref(spec: Mapping[str, Any]) -> str:
    """How a job's input (an entry of ``JobEnv.inputs``) is written: ``db.table@v3`` for a
    table at its pinned version, ``bucket/prefix`` for files, ``stream:clicks?group=G`` for
    a stream read in consumer group G.

    >>> input_ref({"kind": "stream", "stream": "clicks", "group": "etl", "start": "LATEST"})
    'stream:clicks?group=etl&from=LATEST'
    """
    if spec["kind"] == "table":
        return f"{spec['table']}@v{spec['version']}"
    if spec["kind"] == "stream":
        start = spec.get("start", "TRIM_HORIZON")
        return (f"stream:{spec['stream']}?group={spec['group']}"
                + (f"&from={start}" if start != "TRIM_HORIZON" else ""))
    return f"{spec['bucket']}/{spec['prefix']}"
