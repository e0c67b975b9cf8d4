"""``client.models``: the model registry."""

from __future__ import annotations

import builtins
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
