"""``client.pipelines``: store pipeline definitions (Python or JSON), read them back."""

from __future__ import annotations

import builtins
import time
from pathlib import Path
from typing import Any

from cumulo.client.transport import Transport

__all__ = ["PipelinesClient"]


class PipelinesClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, pipeline: Any, *, project: str | None = None) -> dict[str, Any]:
        """Store a pipeline: a ``@pipeline`` function, a definition (dict), or a file
        (``.py``, ``.json``, ``.yaml``). A changed definition becomes a new version.
        ``project``: the project a new pipeline belongs to (its runs' jobs too).

        >>> client.pipelines.create(churn)  # doctest: +SKIP
        """
        from cumulo.pipelines.dsl import Pipeline, load

        if isinstance(pipeline, Pipeline):
            doc, source = pipeline.definition(), "python"
        elif isinstance(pipeline, str | Path):
            doc, source = load(str(pipeline))
        else:
            doc, source = pipeline, "json"
        params = {"source": source, **({"project": project} if project else {})}
        return self._t.json("POST", "/api/v1/pipelines", json=doc,  # type: ignore[no-any-return]
                            params=params)

    def validate(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The definition's canonical form, or Invalid naming each problem and its path."""
        return self._t.json("POST", "/api/v1/pipelines/-/validate",  # type: ignore[no-any-return]
                            json=doc)

    def list(self, *, project: str | None = None) -> builtins.list[dict[str, Any]]:
        """Every pipeline, or one ``project``'s."""
        params = {"project": project} if project else {}
        return self._t.json("GET", "/api/v1/pipelines",  # type: ignore[no-any-return]
                            params=params)

    def show(self, name: str, version: int | None = None) -> dict[str, Any]:
        params = {"version": version} if version is not None else {}
        return self._t.json("GET", f"/api/v1/pipelines/{name}",  # type: ignore[no-any-return]
                            params=params)

    def export(self, name: str, version: int | None = None) -> dict[str, Any]:
        """The stored definition: the JSON the designer draws."""
        return self.show(name, version)["definition"]  # type: ignore[no-any-return]

    def versions(self, name: str) -> builtins.list[dict[str, Any]]:
        return self._t.json("GET",  # type: ignore[no-any-return]
                            f"/api/v1/pipelines/{name}/versions")

    def delete(self, name: str) -> None:
        self._t.request("DELETE", f"/api/v1/pipelines/{name}")

    # --- runs ----------------------------------------------------------------------------

    def run(self, name: str, parameters: dict[str, Any] | None = None, *,
            cluster: str = "local", version: int | None = None, wait: bool = False,
            timeout: float = 600.0) -> dict[str, Any]:
        """Run the pipeline: each step a job on ``cluster``. With ``wait``, return when the
        run has finished (a failed run is returned, not raised: its steps say why).

        >>> client.pipelines.run("churn", {"threshold": 0.8}, wait=True)  # doctest: +SKIP
        """
        run: dict[str, Any] = self._t.json("POST", f"/api/v1/pipelines/{name}/runs", json={
            "parameters": parameters or {}, "cluster": cluster, "version": version})
        return self.wait(run["id"], timeout) if wait else run

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._t.json("GET",  # type: ignore[no-any-return]
                            f"/api/v1/pipelines/-/runs/{run_id}")

    def runs(self, pipeline: str | None = None, limit: int = 50, *,
             project: str | None = None) -> builtins.list[dict[str, Any]]:
        """Your runs (everyone's for an admin), newest first: of one pipeline, or of one
        ``project``'s pipelines."""
        params: dict[str, Any] = {"limit": limit}
        if pipeline:
            params["pipeline"] = pipeline
        if project:
            params["project"] = project
        return self._t.json("GET", "/api/v1/pipelines/-/runs",  # type: ignore[no-any-return]
                            params=params)

    def wait(self, run_id: str, timeout: float = 600.0) -> dict[str, Any]:
        """The run once it has finished; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            run = self.get_run(run_id)
            if run["state"] in ("succeeded", "failed", "cancelled"):
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is still {run['state']} after {timeout:g}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def retry(self, run_id: str, *, wait: bool = False,
              timeout: float = 600.0) -> dict[str, Any]:
        """A new run that reuses the steps that succeeded and goes on from the failed one."""
        run: dict[str, Any] = self._t.json("POST", f"/api/v1/pipelines/-/runs/{run_id}/retry")
        return self.wait(run["id"], timeout) if wait else run

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self._t.json("POST",  # type: ignore[no-any-return]
                            f"/api/v1/pipelines/-/runs/{run_id}/cancel")

    def schedule(self, name: str, *, cron: str | None = None, table: str | None = None,
                 parameters: dict[str, Any] | None = None, cluster: str = "local",
                 missed: str = "latest", schedule_name: str | None = None,
                 stream: str | None = None, every: str | int | None = None) -> dict[str, Any]:
        """Run the pipeline on a ``cron`` schedule (UTC), whenever ``table`` gets a new
        version, or whenever ``stream`` has received ``every`` records (``1000``) or bytes
        (``"5MB"``) since the last run. ``missed`` cron times: ``skip``, ``latest`` (run
        once) or ``all``."""
        return self._t.json("POST", f"/api/v1/pipelines/{name}/schedules",  # type: ignore[no-any-return]
                            json={"name": schedule_name, "cron": cron, "table": table,
                                  "stream": stream, "every": every,
                                  "parameters": parameters or {}, "cluster": cluster,
                                  "missed": missed})

    def schedules(self, pipeline: str | None = None, *,
                  project: str | None = None) -> builtins.list[dict[str, Any]]:
        params = {k: v for k, v in (("pipeline", pipeline), ("project", project)) if v}
        return self._t.json("GET", "/api/v1/pipelines/-/schedules",  # type: ignore[no-any-return]
                            params=params)

    def unschedule(self, schedule_name: str) -> None:
        self._t.request("DELETE", f"/api/v1/pipelines/-/schedules/{schedule_name}")

    def lineage(self, *, table: str | None = None, model: str | None = None,
                endpoint: str | None = None) -> dict[str, Any]:
        """What produced a table (``sales.orders`` or ``sales.orders@v3``), a model version
        (``churn:3``) or an endpoint, back to the raw data, and what used it."""
        given = [(k, v) for k, v in (("table", table), ("model", model),
                                     ("endpoint", endpoint)) if v]
        if len(given) != 1:
            from cumulo.errors import Invalid

            raise Invalid("name one of table=, model= or endpoint=")
        kind, ref = given[0]
        return self._t.json("GET", f"/api/v1/lineage/{kind}/{ref}")  # type: ignore[no-any-return]

    def components(self) -> builtins.list[dict[str, Any]]:
        return self._t.json("GET", "/api/v1/pipelines/components")  # type: ignore[no-any-return]

    def schema(self) -> dict[str, Any]:
        return self._t.json("GET", "/api/v1/pipelines/schema")  # type: ignore[no-any-return]
