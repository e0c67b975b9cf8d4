"""``client.pipelines``: store pipeline definitions (Python or JSON), read them back."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

from cumulo.client.transport import Transport

__all__ = ["PipelinesClient"]


class PipelinesClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, pipeline: Any) -> dict[str, Any]:
        """Store a pipeline: a ``@pipeline`` function, a definition (dict), or a file
        (``.py``, ``.json``, ``.yaml``). A changed definition becomes a new version.

        >>> client.pipelines.create(churn)  # doctest: +SKIP
        """
        from cumulo.pipelines.dsl import Pipeline, load

        if isinstance(pipeline, Pipeline):
            doc, source = pipeline.definition(), "python"
        elif isinstance(pipeline, str | Path):
            doc, source = load(str(pipeline))
        else:
            doc, source = pipeline, "json"
        return self._t.json("POST", "/api/v1/pipelines", json=doc,  # type: ignore[no-any-return]
                            params={"source": source})

    def validate(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The definition's canonical form, or Invalid naming each problem and its path."""
        return self._t.json("POST", "/api/v1/pipelines/-/validate",  # type: ignore[no-any-return]
                            json=doc)

    def list(self) -> builtins.list[dict[str, Any]]:
        return self._t.json("GET", "/api/v1/pipelines")  # type: ignore[no-any-return]

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

    def components(self) -> builtins.list[dict[str, Any]]:
        return self._t.json("GET", "/api/v1/pipelines/components")  # type: ignore[no-any-return]

    def schema(self) -> dict[str, Any]:
        return self._t.json("GET", "/api/v1/pipelines/schema")  # type: ignore[no-any-return]
