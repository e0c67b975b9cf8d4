"""``client.models``: the model registry."""

from __future__ import annotations

import builtins
import re
from typing import Any
from urllib.parse import quote

from cumulo.client.transport import Transport

__all__ = ["ModelsClient"]


def _p(name: str) -> str:
    return "/api/v1/models/" + quote(name, safe="")


class ModelsClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def import_model(self, path: str, *, name: str) -> dict[str, Any]:
        """Register an MLflow model folder, or a pickled scikit-learn model (a pickle runs code
        when loaded: import only files you trust), as a new version of ``name``."""
        from cumulo.ml.imports import import_model

        if not self._t.token:
            from cumulo.errors import Unauthorized

            raise Unauthorized("importing a model needs a token: set CUMULO_TOKEN")
        return import_model(self._t.url, self._t.token, path, name=name)

    def list(self) -> builtins.list[dict[str, Any]]:
        return self._t.json("GET", "/api/v1/models", timeout=180)  # type: ignore[no-any-return]

    def show(self, name: str) -> dict[str, Any]:
        return self._t.json("GET", _p(name), timeout=180)  # type: ignore[no-any-return]

    def versions(self, name: str) -> builtins.list[dict[str, Any]]:
        return self._t.json("GET", _p(name) + "/versions")  # type: ignore[no-any-return]

    def version(self, name: str, version: str | int) -> dict[str, Any]:
        """One version with its lineage: run, job, code snapshot, hyperparameters, inputs."""
        return self._t.json("GET", f"{_p(name)}/versions/{version}")  # type: ignore[no-any-return]

    def set_alias(self, name: str, alias: str, version: str | int) -> dict[str, Any]:
        return self._t.json("PUT", f"{_p(name)}/aliases/{alias}",  # type: ignore[no-any-return]
                            json={"version": str(version)})

    def remove_alias(self, name: str, alias: str) -> dict[str, Any]:
        return self._t.json("DELETE", f"{_p(name)}/aliases/{alias}")  # type: ignore[no-any-return]

    def alias_history(self, name: str) -> builtins.list[dict[str, Any]]:
        return self._t.json("GET", f"{_p(name)}/aliases/history")  # type: ignore[no-any-return]

    def set_approval(self, name: str, version: str | int, status: str) -> dict[str, Any]:
        return self._t.json("PUT", f"{_p(name)}/versions/{version}/approval",  # type: ignore[no-any-return]
                            json={"status": status})

    def set_tag(self, name: str, key: str, value: str, *,
                version: str | int | None = None) -> None:
        self._t.json("POST", f"{_p(name)}/tags", json={
            "key": key, "value": value, "version": None if version is None else str(version)})

    def describe(self, name: str, description: str, *, version: str | int | None = None) -> None:
        self._t.json("PATCH", _p(name), json={
            "description": description, "version": None if version is None else str(version)})


_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def train(client: Any, *, table: str, target: str, name: str, algorithm: str = "lightgbm",
          features: builtins.list[str] | None = None,
          hyperparameters: dict[str, Any] | None = None, validation_split: float = 0.2,
          seed: int = 42, cluster: str = "local", cpus: float = 1,
          memory: str | None = None) -> Any:
    """Built-in training as a job; returns the job (``.wait()``, ``.logs()``)."""
    import json

    from cumulo.errors import Invalid
    from cumulo.ml.train import ALGORITHMS

    if algorithm not in ALGORITHMS:
        raise Invalid(f"algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
    if not _MODEL_NAME.match(name):
        raise Invalid(f"model name {name!r} must be 1-128 letters, digits, '.', '_' or '-', "
                      "starting with a letter or digit")
    if not 0 < validation_split < 1:
        raise Invalid(f"--validation-split must be between 0 and 1, not {validation_split}")
    columns = [c["name"] for c in client.tables.show(table)["columns"]]
    if target not in columns:
        raise Invalid(f"target column {target!r} is not in {table}; its columns are "
                      f"{', '.join(columns)}")
    missing = [f for f in features or [] if f not in columns]
    if missing:
        raise Invalid(f"feature column(s) {', '.join(missing)} are not in {table}")
    command = ["python", "-m", "cumulo.ml.train", "--target", target, "--algorithm", algorithm,
               "--features", ",".join(features or []),
               "--hyperparameters", json.dumps(hyperparameters or {}),
               "--validation-split", str(validation_split), "--seed", str(seed),
               "--name", name]
    return client.jobs.run(command=command, inputs={"train": table}, cluster=cluster,
                           cpus=cpus, memory=memory, name=f"train {name}",
                           tags=["train", f"model={name}"])
