"""``cumulo models reproduce NAME VERSION``: rerun a version's training and compare metrics.

The version's lineage names the job that trained it; that job is submitted again with the same
code snapshot, entry point or command, arguments (the seed among them), resources and the exact
table versions it read. Built-in training and script mode rerun without registering a new
version. The metrics of the new run are then compared with the original's.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote

from cumulo.errors import Invalid, NotFound
from cumulo.jobenv import input_ref

__all__ = ["reproduce"]

_OURS = (["python", "-m", "cumulo.ml.train"], ["python", "-m", "cumulo.ml.script"])


def rerun_body(job: dict[str, Any], *, label: str) -> dict[str, Any]:
    """The submission that reruns ``job`` exactly, registering nothing when it can tell."""
    command = job["command"]
    if command and command[:3] in _OURS and "--no-register" not in command:
        command = [*command, "--no-register"]
    return {"cluster": job["cluster"], "code": job["code"], "entry": job["entry"],
            "command": command, "args": job["args"], "cpus": job["cpus"],
            "memory": job["memory"], "gpus": job["gpus"], "env": job["env"],
            "inputs": {k: input_ref(v) for k, v in job["inputs"].items()},
            "max_runtime": job["max_runtime_s"], "retries": 0, "priority": 0,
            "tags": [*job["tags"], "reproduce", f"reproduces={label}"],
            "name": f"reproduce {label}"}


def reproduce(transport: Any, name: str, version: str | int, *, wait: bool = True,
              tolerance: float = 1e-6, on_job: Any = None) -> dict[str, Any]:
    """Rerun the training behind ``name`` version ``version``; with ``wait``, compare the new
    run's metrics with the original's (equal within ``tolerance``, relative)."""
    from cumulo.compute.sdk import Job, JobsClient

    # By the REST API, not ModelsClient: the SDK's models.reproduce calls this function.
    found = transport.json("GET", f"/api/v1/models/{quote(name, safe='')}/versions/{version}")
    lineage = found.get("lineage") or {}
    if not lineage.get("job"):
        raise Invalid(f"{name} v{version} was not trained by a Cumulo job (it was imported or "
                      "logged from outside one), so there is no training to rerun")
    try:
        original = JobsClient(transport).get(lineage["job"]).info
    except NotFound:
        raise NotFound(f"job {lineage['job']}, which trained {name} v{version}, was deleted: "
                       "its code and inputs are gone with it") from None
    label = f"{name}/v{version}"
    body = rerun_body(original, label=label)
    job = Job(transport, transport.json("POST", "/api/v1/jobs", json=body))
    if on_job is not None:
        on_job(job)
    result: dict[str, Any] = {"name": name, "version": str(version),
                              "original_job": original["id"], "job": job.id,
                              "registers": not (body["command"] and body["command"][:3] in _OURS)}
    if not wait:
        return result
    info = job.wait()
    result["state"] = info["state"]
    if info["state"] != "succeeded":
        result.update(matches=False, metrics=[],
                      reason=f"the rerun {info['state']}: {info['reason']}")
        return result
    before = lineage.get("metrics") or {}
    after = _metrics_of_job(transport, lineage["run_id"], job.id)
    rows = []
    for key in sorted(before):
        new = after.get(key)
        same = new is not None and math.isclose(before[key], new, rel_tol=tolerance,
                                                abs_tol=1e-12)
        rows.append({"metric": key, "original": before[key], "reproduced": new,
                     "match": same})
    result["metrics"] = rows
    result["matches"] = bool(rows) and all(r["match"] for r in rows)
    if not rows:
        result["reason"] = "the original run logged no metrics to compare"
    return result


def _metrics_of_job(transport: Any, original_run: str, job_id: str) -> dict[str, float]:
    """The metrics of the MLflow run the rerun made (in the original run's experiment)."""
    def rest(method: str, path: str, **kwargs: Any) -> Any:
        return transport.json(method, f"/mlflow/api/2.0/mlflow/{path}", **kwargs)

    experiment = rest("GET", "runs/get", params={"run_id": original_run})["run"]["info"][
        "experiment_id"]
    runs = rest("POST", "runs/search", json={
        "experiment_ids": [experiment], "filter": f"tags.`cumulo.job_id` = '{job_id}'",
        "max_results": 1}).get("runs", [])
    if not runs:
        return {}
    return {m["key"]: float(m["value"]) for m in runs[0].get("data", {}).get("metrics", [])}
