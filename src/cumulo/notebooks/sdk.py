"""``client.notebooks``: JupyterLab servers run as jobs, opened through Cumulo."""

from __future__ import annotations

import os
from typing import Any

from cumulo.client.transport import Transport

__all__ = ["NotebooksClient"]


class NotebooksClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, name: str, *, cluster: str = "local", cpus: float = 1.0,
               memory: str | int | None = None, gpus: int = 0, environment: str | None = None,
               idle_timeout: str | float = "1h", project: str | None = None) -> dict[str, Any]:
        """Create a notebook and start it: JupyterLab as a job on ``cluster``, stopped once
        idle for ``idle_timeout`` (``30m``, ``1h``, seconds). Open it at :meth:`url`."""
        body = {"name": name, "cluster": cluster, "cpus": cpus, "memory": memory, "gpus": gpus,
                "environment": environment, "idle_timeout": idle_timeout, "project": project}
        return self._t.json("POST", "/api/v1/notebooks",  # type: ignore[no-any-return]
                            json={k: v for k, v in body.items() if v is not None})

    def list(self) -> list[dict[str, Any]]:
        return self._t.json("GET", "/api/v1/notebooks")  # type: ignore[no-any-return]

    def get(self, name: str) -> dict[str, Any]:
        """A notebook: its state (starting, running, stopping, stopped, failed) and, once
        stopped, when (``stopped_at``) and why (``reason``)."""
        return self._t.json("GET", f"/api/v1/notebooks/{name}")  # type: ignore[no-any-return]

    def stop(self, name: str) -> dict[str, Any]:
        return self._t.json("POST",  # type: ignore[no-any-return]
                            f"/api/v1/notebooks/{name}/stop")

    def start(self, name: str) -> dict[str, Any]:
        return self._t.json("POST",  # type: ignore[no-any-return]
                            f"/api/v1/notebooks/{name}/start")

    def delete(self, name: str) -> None:
        """Delete a notebook (stopping it); its files stay in storage."""
        self._t.json("DELETE", f"/api/v1/notebooks/{name}")

    def share(self, name: str, user: str) -> dict[str, Any]:
        """Let ``user`` open the notebook too."""
        return self._t.json("POST",  # type: ignore[no-any-return]
                            f"/api/v1/notebooks/{name}/shares", json={"user": user})

    def unshare(self, name: str, user: str) -> dict[str, Any]:
        return self._t.json("DELETE",  # type: ignore[no-any-return]
                            f"/api/v1/notebooks/{name}/shares/{user}")

    def url(self, name: str) -> str:
        """Where a browser opens the notebook's JupyterLab (signed in to Cumulo)."""
        return f"{self._t.url.rstrip('/')}/notebooks/{name}/lab"

    open = url

    def run(self, notebook: str | os.PathLike[str], **options: Any) -> Any:
        """Execute a local ``.ipynb`` headless as a job, with ``parameters`` (papermill); the
        executed notebook is the job's output. Returns the job (``.wait()``, ``.download()``).
        Options: parameters, cluster, cpus, memory, gpus, env, environment, requirements, name,
        tags, project (:func:`cumulo.notebooks.runs.run`)."""
        from cumulo.notebooks.runs import clients, run

        return run(clients(self._t), notebook, **options)

    def schedule(self, notebook: str | os.PathLike[str], *, cron: str,
                 **options: Any) -> dict[str, Any]:
        """Run a local ``.ipynb`` on a ``cron`` schedule (UTC): a pipeline of one Notebook
        step (:func:`cumulo.notebooks.runs.schedule`)."""
        from cumulo.notebooks.runs import clients, schedule

        return schedule(clients(self._t), notebook, cron=cron, **options)
