"""Lineage for MLflow runs made inside a Cumulo job: which job, which code, which data.

Registered with MLflow as a run context provider (an entry point in pyproject.toml), so every
``mlflow.start_run()`` in a job is tagged without the script doing anything.
"""

from __future__ import annotations

import json
import os

from mlflow.tracking.context.abstract_context import RunContextProvider

__all__ = ["JobRunContext"]


class JobRunContext(RunContextProvider):
    def in_context(self) -> bool:
        return "CUMULO_JOB_ID" in os.environ

    def tags(self) -> dict[str, str]:
        tags = {"cumulo.job_id": os.environ["CUMULO_JOB_ID"],
                "cumulo.job_attempt": os.environ.get("CUMULO_JOB_ATTEMPT", "1")}
        if os.environ.get("CUMULO_JOB_CODE"):
            tags["cumulo.code"] = os.environ["CUMULO_JOB_CODE"]
        inputs = json.loads(os.environ.get("CUMULO_JOB_INPUTS", "{}"))
        for name, spec in inputs.items():
            tags[f"cumulo.input.{name}"] = (
                f"{spec['table']}@v{spec['version']}" if spec["kind"] == "table"
                else f"{spec['bucket']}/{spec['prefix']}")
        return tags
