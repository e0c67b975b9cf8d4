"""Lineage for MLflow runs made inside a Cumulo job: which job, which code, which data.

Registered with MLflow as a run context provider (an entry point in pyproject.toml), so every
``mlflow.start_run()`` in a job is tagged without the script doing anything.
"""

from __future__ import annotations

from mlflow.tracking.context.abstract_context import RunContextProvider

from cumulo import jobenv

__all__ = ["JobRunContext"]


class JobRunContext(RunContextProvider):
    def in_context(self) -> bool:
        return jobenv.in_job()

    def tags(self) -> dict[str, str]:
        job = jobenv.current()
        assert job is not None
        tags = {"cumulo.job_id": job.job_id, "cumulo.job_attempt": str(job.attempt)}
        if job.code:
            tags["cumulo.code"] = job.code
        for name, spec in job.inputs.items():
            tags[f"cumulo.input.{name}"] = jobenv.input_ref(spec)
        return tags
