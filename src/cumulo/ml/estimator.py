"""``client.estimator(...)``: script-mode training shaped like the SageMaker SDK's Estimator.

>>> est = client.estimator(entry_point="train.py", code="./src",
...                        hyperparameters={"epochs": 5}, name="churn")  # doctest: +SKIP
>>> est.fit(inputs={"train": "sales.orders@v3"})                    # doctest: +SKIP
>>> est.model_version                                               # doctest: +SKIP
{'name': 'churn', 'version': '4', 'run_id': '...', 'model_uri': 'models:/m-...'}
>>> predictor = est.deploy(endpoint_name="churn", min_replicas=1)    # doctest: +SKIP
>>> predictor.predict(frame)                                        # doctest: +SKIP

The script runs as a job through :mod:`cumulo.ml.script`, which registers what it saves or
logs as a version of ``name``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from cumulo.errors import Conflict, CumuloError, Invalid, NotFound

__all__ = ["Estimator", "check_model_name"]

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_model_name(name: str) -> str:
    if not _MODEL_NAME.match(name):
        raise Invalid(f"model name {name!r} must be 1-128 letters, digits, '.', '_' or '-', "
                      "starting with a letter or digit")
    return name


def check_hyperparameters(hyperparameters: dict[str, Any] | None) -> dict[str, Any]:
    hp = dict(hyperparameters or {})
    for key in hp:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", str(key)):
            raise Invalid(f"hyperparameter name {key!r} must be letters, digits, '_', '.' or "
                          "'-' (it is passed to the script as --NAME VALUE)")
    try:
        json.dumps(hp)
    except TypeError as exc:
        raise Invalid(f"hyperparameters must be JSON values (numbers, text, lists): {exc}") \
            from None
    return hp


class Estimator:
    """A training script, its code folder, hyperparameters and resources; ``fit`` runs it."""

    def __init__(self, client: Any, *, entry_point: str, code: str | os.PathLike[str],
                 name: str | None = None, hyperparameters: dict[str, Any] | None = None,
                 cluster: str = "local", cpus: float = 1, memory: str | int | None = None,
                 gpus: int = 0, retries: int = 0, max_runtime: str | float | None = None,
                 env: dict[str, str] | None = None, tags: list[str] | None = None,
                 project: str | None = None) -> None:
        folder = Path(code)
        if not folder.is_dir():
            raise Invalid(f"code folder {folder} does not exist")
        if not (folder / entry_point).is_file():
            held = sorted(p.name for p in folder.glob("*.py"))[:5]
            raise Invalid(f"entry point {entry_point!r} is not in {folder}; it holds "
                          f"{', '.join(held) or 'no Python files'}")
        self._client = client
        self.entry_point, self.code = entry_point, folder
        self.name = check_model_name(name or folder.resolve().name)
        self.hyperparameters = check_hyperparameters(hyperparameters)
        self.options: dict[str, Any] = {"cluster": cluster, "cpus": cpus, "memory": memory,
                                        "gpus": gpus, "retries": retries,
                                        "max_runtime": max_runtime, "env": env or {},
                                        "project": project}  # its jobs' project
        self.tags = list(tags or [])
        self.job: Any = None

    def __repr__(self) -> str:
        return f"Estimator({self.entry_point!r}, name={self.name!r})"

    def command(self, hyperparameters: dict[str, Any], *, register: bool = True,
                parent_run: str | None = None) -> list[str]:
        command = ["python", "-m", "cumulo.ml.script", "--entry", self.entry_point,
                   "--name", self.name, "--hyperparameters", json.dumps(hyperparameters)]
        if not register:
            command.append("--no-register")
        if parent_run:
            command += ["--parent-run", parent_run]
        return command

    def submit(self, inputs: dict[str, str] | None = None, *,
               hyperparameters: dict[str, Any] | None = None, register: bool = True,
               parent_run: str | None = None, name: str | None = None,
               tags: list[str] | None = None) -> Any:
        """Submit one run of the script as a job (``fit`` and the tuner use this)."""
        hp = {**self.hyperparameters, **check_hyperparameters(hyperparameters)}
        return self._client.jobs.run(
            command=self.command(hp, register=register, parent_run=parent_run),
            code=self.code, inputs=inputs or {}, name=name or f"train {self.name}",
            tags=[*self.tags, "train", f"model={self.name}", *(tags or [])], **self.options)

    def fit(self, inputs: dict[str, str] | None = None, *, wait: bool = True,
            logs: bool = True) -> Estimator:
        """Run the script as a job on ``inputs`` (name -> ``db.table@vN`` or
        ``bucket/prefix``). With ``wait``, block until it ends (printing its log with
        ``logs``) and raise if it failed; the registered version is then ``model_version``."""
        self.job = self.submit(inputs)
        if not wait:
            return self
        if logs:
            for line in self.job.logs(follow=True):
                print(line, flush=True)
        info = self.job.wait()
        if info["state"] != "succeeded":
            raise CumuloError(f"training job {self.job.id} {info['state']}: {info['reason']}; "
                              f"its last lines:\n{info.get('log_tail') or ''}",
                              details={"job": self.job.id})
        return self

    @property
    def model_version(self) -> dict[str, Any] | None:
        """The version the last ``fit`` registered (None if it saved no model)."""
        if self.job is None:
            raise Invalid("call fit() first")
        try:
            body = self._client.transport.request(
                "GET", f"/api/v1/jobs/{self.job.id}/artifacts/model_version.json")
        except NotFound:
            return None
        return json.loads(body.content)  # type: ignore[no-any-return]

    def deploy(self, endpoint_name: str | None = None, *, min_replicas: int = 1,
               max_replicas: int | None = None, cluster: str | None = None,
               public: bool = False, project: str | None = None, wait: bool = True,
               timeout: float = 120.0, **options: Any) -> Any:
        """Serve the version the last ``fit`` registered on a new endpoint; returns its
        handle (``predict``, ``update``, ``delete``). See :meth:`ModelVersion.deploy
        <cumulo.ml.sdk.ModelVersion.deploy>`; ``project`` defaults to the estimator's."""
        if self.job is None:
            raise Invalid("deploy() serves the model fit() registers: call fit() first")
        info = self.job.refresh()
        if info["state"] != "succeeded":
            raise Conflict(f"training job {self.job.id} is {info['state']}: deploy() serves the "
                           "version it registers once it has succeeded (est.job.wait())",
                           details={"job": self.job.id, "state": info["state"]})
        version = self.model_version
        if version is None:
            raise Conflict(f"training job {self.job.id} registered no model version, so there "
                           "is nothing to deploy: the script must log a model or save one in "
                           "cumulo.job.model_dir (its log says what it found)",
                           details={"job": self.job.id})
        return self._client.models[version["name"]].version(version["version"]).deploy(
            endpoint_name, min_replicas=min_replicas, max_replicas=max_replicas,
            cluster=cluster, public=public,
            project=project if project is not None else self.options["project"], wait=wait,
            timeout=timeout, **options)
