"""The model registry: MLflow's registered models, with what SageMaker's registry adds on top.

Models and versions are MLflow's own (reached over MLflow's REST API on the tracking server),
so the MLflow client sees the same registry. Cumulo adds an approval status per version (a
version tag, ``pending`` until someone approves or rejects it), the history of every alias
move (which version was ``champion`` when), and each version's lineage from its run: the job,
the code snapshot, the hyperparameters and the exact table versions it was trained on.
"""

from __future__ import annotations

import builtins
import re
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.access.users import user_names
from cumulo.db import utcnow
from cumulo.errors import Conflict, CumuloError, Invalid, NotFound
from cumulo.ml.models import ModelAliasEvent
from cumulo.principal import Principal

__all__ = ["Registry"]

APPROVAL_TAG = "cumulo.approval"
APPROVALS = ("pending", "approved", "rejected")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")


class MlflowServer(Protocol):
    """How the registry reaches MLflow (:class:`cumulo.ml.tracking.TrackingServer`)."""

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response: ...

    def stream(self, method: str, path: str,
               **kwargs: Any) -> AbstractContextManager[httpx.Response]: ...


class Registry:
    def __init__(self, mlflow: MlflowServer) -> None:
        self.mlflow = mlflow

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.mlflow.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CumuloError(f"MLflow's tracking server did not answer: {exc}") from exc

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._send(method, f"api/2.0/mlflow/{path}", **kwargs)
        body = response.json() if response.content else {}
        if response.status_code >= 400:
            code, message = body.get("error_code", ""), body.get("message", response.text)
            if code == "RESOURCE_DOES_NOT_EXIST" or response.status_code == 404:
                raise NotFound(message)
            if code == "RESOURCE_ALREADY_EXISTS":
                raise Conflict(message)
            raise Invalid(message)
        return body

    def download(self, model: str, version: str, dest: Path) -> None:
        """A model version's files, written under ``dest`` (which must be empty): fetched
        over MLflow's artifact API, the way MLflow's own client does."""
        uri = self._call("GET", "model-versions/get-download-uri",
                         params={"name": model, "version": version})["artifact_uri"]
        root = _artifact_path(uri, model, version)
        pending = [root]
        while pending:
            folder = pending.pop()
            listing = self._artifacts("GET", "artifacts", params={"path": folder}).json()
            for item in listing.get("files", []):
                path = f"{folder}/{item['path'].rsplit('/', 1)[-1]}"
                if item.get("is_dir"):
                    pending.append(path)
                    continue
                relative = PurePosixPath(path).relative_to(root)
                if ".." in relative.parts:
                    raise Invalid(f"model {model} version {version} lists a file outside it: "
                                  f"{path!r}")
                target = dest.joinpath(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                url = f"api/2.0/mlflow-artifacts/artifacts/{quote(path)}"
                with self.mlflow.stream("GET", url) as got, open(target, "wb") as out:
                    if got.status_code >= 400:
                        raise CumuloError(f"MLflow's artifact store answered {got.status_code} "
                                          f"for {path}")
                    for chunk in got.iter_bytes(1 << 20):
                        out.write(chunk)

    def _artifacts(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._send(method, f"api/2.0/mlflow-artifacts/{path}", **kwargs)
        if response.status_code >= 400:
            raise CumuloError(f"MLflow's artifact store answered {response.status_code} for "
                              f"{path}: {response.text[:300]}")
        return response

    # --- models ------------------------------------------------------------------------------

    def list(self) -> builtins.list[dict[str, Any]]:
        models: builtins.list[dict[str, Any]] = []
        token = None
        while True:
            params: dict[str, Any] = {"max_results": 1000}
            if token:
                params["page_token"] = token
            body = self._call("GET", "registered-models/search", params=params)
            models.extend(_model(m) for m in body.get("registered_models", []))
            token = body.get("next_page_token")
            if not token:
                return models

    def get(self, name: str) -> dict[str, Any]:
        try:
            return _model(self._call("GET", "registered-models/get",
                                     params={"name": name})["registered_model"])
        except NotFound:
            raise NotFound(f"no model {name!r}; 'cumulo models ls' lists them",
                           details={"model": name}) from None

    def versions(self, name: str) -> builtins.list[dict[str, Any]]:
        self.get(name)
        body = self._call("GET", "model-versions/search",
                          params={"filter": f"name='{_quote(name)}'", "max_results": 10000})
        rows = [_version(v) for v in body.get("model_versions", [])]
        return sorted(rows, key=lambda v: int(v["version"]))

    def version(self, name: str, version: str) -> dict[str, Any]:
        self.get(name)
        try:
            row = _version(self._call("GET", "model-versions/get",
                                      params={"name": name, "version": version})["model_version"])
        except (NotFound, Invalid):
            raise NotFound(f"model {name!r} has no version {version!r}; 'cumulo models versions "
                           f"{name}' lists them") from None
        row["lineage"] = self._lineage(row.get("run_id"))
        return row

    def _lineage(self, run_id: str | None) -> dict[str, Any]:
        if not run_id:
            return {}
        try:
            run = self._call("GET", "runs/get", params={"run_id": run_id})["run"]
        except NotFound:
            return {"run_id": run_id}
        tags = {t["key"]: t["value"] for t in run.get("data", {}).get("tags", [])}
        params = {p["key"]: p["value"] for p in run.get("data", {}).get("params", [])}
        metrics = {m["key"]: m["value"] for m in run.get("data", {}).get("metrics", [])}
        return {
            "run_id": run_id, "job": tags.get("cumulo.job_id"), "code": tags.get("cumulo.code"),
            "inputs": {k.removeprefix("cumulo.input."): v for k, v in tags.items()
                       if k.startswith("cumulo.input.")},
            "hyperparameters": params, "metrics": metrics,
        }

    # --- changes -----------------------------------------------------------------------------

    def set_alias(self, session: Session, principal: Principal, name: str, alias: str,
                  version: str) -> dict[str, Any]:
        if not _ALIAS.match(alias) or alias.lower() == "latest" or re.fullmatch(r"v\d+", alias):
            raise Invalid(f"alias {alias!r} must be 1-63 letters, digits, '_' or '-', and not "
                          "'latest' or like v1")
        model = self.get(name)
        self.version(name, version)
        before = model["aliases"].get(alias)
        self._call("POST", "registered-models/alias",
                   json={"name": name, "alias": alias, "version": version})
        session.add(ModelAliasEvent(model=name, alias=alias, version=version,
                                    previous_version=before, created_by=principal.user_id,
                                    created_at=utcnow()))
        session.commit()
        return self.get(name)

    def remove_alias(self, session: Session, principal: Principal, name: str,
                     alias: str) -> dict[str, Any]:
        model = self.get(name)
        if alias not in model["aliases"]:
            raise NotFound(f"model {name!r} has no alias {alias!r}")
        self._call("DELETE", "registered-models/alias", json={"name": name, "alias": alias})
        session.add(ModelAliasEvent(model=name, alias=alias, version=None,
                                    previous_version=model["aliases"][alias],
                                    created_by=principal.user_id, created_at=utcnow()))
        session.commit()
        return self.get(name)

    def set_approval(self, name: str, version: str, status: str) -> dict[str, Any]:
        if status not in APPROVALS:
            raise Invalid(f"approval status {status!r} is not one of {', '.join(APPROVALS)}")
        self.version(name, version)
        self._call("POST", "model-versions/set-tag",
                   json={"name": name, "version": version, "key": APPROVAL_TAG, "value": status})
        return self.version(name, version)

    def set_tag(self, name: str, key: str, value: str, version: str | None = None) -> None:
        if key == APPROVAL_TAG:
            raise Invalid("set the approval status with 'cumulo models approve/reject'")
        if version is None:
            self.get(name)
            self._call("POST", "registered-models/set-tag",
                       json={"name": name, "key": key, "value": value})
        else:
            self.version(name, version)
            self._call("POST", "model-versions/set-tag",
                       json={"name": name, "version": version, "key": key, "value": value})

    def describe(self, name: str, description: str, version: str | None = None) -> None:
        if version is None:
            self.get(name)
            self._call("PATCH", "registered-models/update",
                       json={"name": name, "description": description})
        else:
            self.version(name, version)
            self._call("PATCH", "model-versions/update",
                       json={"name": name, "version": version, "description": description})

    def history(self, session: Session, name: str) -> builtins.list[dict[str, Any]]:
        self.get(name)
        events = list(session.scalars(select(ModelAliasEvent).where(ModelAliasEvent.model == name)
                                      .order_by(ModelAliasEvent.id)))
        names = user_names(session, (e.created_by for e in events))
        return [{"alias": e.alias, "version": e.version, "previous_version": e.previous_version,
                 "at": e.created_at, "by": names.get(e.created_by)} for e in events]


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


def _model(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": m["name"], "description": m.get("description", ""),
        "created_at": m.get("creation_timestamp"), "updated_at": m.get("last_updated_timestamp"),
        "latest_version": max((int(v["version"]) for v in m.get("latest_versions", [])),
                              default=None),
        "aliases": {a["alias"]: a["version"] for a in m.get("aliases", [])},
        "tags": {t["key"]: t["value"] for t in m.get("tags", [])},
    }


def _version(v: dict[str, Any]) -> dict[str, Any]:
    tags = {t["key"]: t["value"] for t in v.get("tags", [])}
    return {
        "name": v["name"], "version": v["version"], "run_id": v.get("run_id"),
        "source": v.get("source"), "status": v.get("status"),
        "description": v.get("description", ""), "created_at": v.get("creation_timestamp"),
        "aliases": v.get("aliases", []),
        "approval": tags.pop(APPROVAL_TAG, "pending"), "tags": tags,
    }


def _artifact_path(uri: str, model: str, version: str) -> str:
    """The path under MLflow's artifact store of an ``mlflow-artifacts:`` URI."""
    parts = urlsplit(uri)  # mlflow-artifacts:/1/models/m-…/artifacts, or with a //host
    if parts.scheme != "mlflow-artifacts":
        raise Invalid(f"model {model} version {version} is stored at {uri!r}, outside "
                      "Cumulo's artifact store; register it from a run logged to Cumulo")
    path = parts.path.strip("/")
    if not path:
        raise Invalid(f"model {model} version {version} has an artifact URI Cumulo cannot "
                      f"read: {uri!r}")
    return path

