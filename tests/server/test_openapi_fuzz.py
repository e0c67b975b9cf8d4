"""The OpenAPI document, and every operation in it fuzzed with schemathesis against one real
server: no answer is a 5xx, and each answer is one the document declares, in its shape.

The server is seeded first (a bucket, a table with two versions, a finished job, a query, a
pipeline with a run and a schedule, a registered model), and the fuzz is told those names, so
that its requests reach the routes' logic instead of stopping at 404. Deleting operations get
things of their own, so that they do not take the seeds from the operations after them.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cumulo.errors import Unavailable
from cumulo.server.errors import RETRY_AFTER_S, install_error_handlers
from tests.services import ADMIN_TOKEN, VENV_BIN, Cumulo

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ERROR_REF = "#/components/schemas/Error"

# Operations the fuzz leaves alone, each with its reason. Nothing else is left out.
EXCLUDED = {
    "DELETE /api/v1/tokens/{ref}": "revoking the admin's own token ('admin') would answer every "
                                   "later request 401, and the fuzz would test nothing after it",
}
# How much of the fuzz: schemathesis' coverage phase (each declared bound, type and required
# field, kept and broken) and its fuzzing phase (MAX_EXAMPLES cases an operation), generated
# deterministically (Hypothesis' derandomize: no seed), so that a run is the same each time.
MAX_EXAMPLES = 25
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")


def _api(server: Cumulo) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/api/v1", headers=AUTH, timeout=120)


def _ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, (response.request.url, response.text)
    return response.json()


@pytest.fixture(scope="module")
def doc(local_server: Cumulo) -> dict[str, Any]:
    return httpx.get(f"{local_server.url}/openapi.json").raise_for_status().json()


@pytest.fixture(scope="module")
def seeds(local_server: Cumulo) -> dict[str, str]:
    return seed(local_server)


def seed(server: Cumulo) -> dict[str, str]:
    """Things for the fuzz to find: their names, by path parameter."""
    with _api(server) as api:
        for bucket in ("fuzz", "doomed"):
            _ok(api.post("/files/buckets", json={"name": bucket}))
            _ok(api.put(f"/files/buckets/{bucket}/objects/data.csv", content=b"a,b\n1,x\n"))
        for db in ("fuzz", "doomed"):
            _ok(api.post("/tables/databases", json={"name": db}))
        for table, rows in (("t", b"a,b\n1,x\n2,y\n"), ("t", b"a,b\n3,z\n"), ("doomed", b"a\n1\n")):
            _ok(api.put(f"/tables/fuzz/{table}/data", params={"format": "csv"}, content=rows))
        jobs = [_ok(api.post("/jobs", json={"command": ["echo", "hi"]}))["id"] for _ in range(2)]
        query = _ok(api.post("/sql", json={"sql": "select * from fuzz.t"}))["id"]
        for pipeline in ("fuzz", "doomed"):
            _ok(api.post("/pipelines", json={"name": pipeline, "nodes": [{
                "id": "a", "component": "import_data",
                "params": {"source": "table", "table": "fuzz.t"}}]}))
        run = _ok(api.post("/pipelines/fuzz/runs", json={}))["id"]
        schedule = _ok(api.post("/pipelines/fuzz/schedules", json={"cron": "0 0 * * *"}))["name"]
        for job in jobs:
            assert _ok(api.get(f"/jobs/{job}", params={"wait": 60}))["state"] == "succeeded"
    _ok(httpx.post(f"{server.url}/mlflow/api/2.0/mlflow/registered-models/create",
                   headers=AUTH, json={"name": "fuzz"}, timeout=120))
    return {"bucket": "fuzz", "database": "fuzz", "table": "t", "job_id": jobs[0],
            "doomed_job": jobs[1], "query_id": query, "run_id": run, "schedule": schedule}


def _toml(value: Any) -> str:
    # TOML's basic strings read the same as JSON's for these names; inline tables are {k = v}.
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def config(seeds: dict[str, str]) -> str:
    """schemathesis.toml: the checks, and the seeds by path parameter, some by the operations
    they are for. (Checks named on the command line would win over an operation's own.)"""
    lines = ["[checks]", "enabled = false"] + [f"{check} = {{ enabled = true }}"
                                                for check in CHECKS]
    lines += ["", "[parameters]"] + [
        f'"path.{name}" = {_toml(seeds[name])}'
        for name in ("bucket", "database", "table", "job_id", "query_id", "run_id", "schedule")]
    scoped: list[tuple[str, str, dict[str, Any]]] = [
        # `name` names a different thing under each prefix
        ("include-path-regex", "^/api/v1/models/", {"path.name": "fuzz"}),
        ("include-path-regex", "^/api/v1/pipelines/", {"path.name": "fuzz"}),
        ("include-path-regex", "^/api/v1/clusters/", {"path.name": "local"}),
        # deletions get things of their own
        ("include-name", "DELETE /api/v1/files/buckets/{bucket}", {"path.bucket": "doomed"}),
        ("include-name", "DELETE /api/v1/files/buckets/{bucket}/objects",
         {"path.bucket": "doomed"}),
        ("include-name", "DELETE /api/v1/tables/databases/{database}",
         {"path.database": "doomed"}),
        ("include-name", "DELETE /api/v1/tables/{database}/{table}", {"path.table": "doomed"}),
        ("include-name", "DELETE /api/v1/jobs/{job_id}", {"path.job_id": seeds["doomed_job"]}),
        ("include-name", "DELETE /api/v1/pipelines/{name}", {"path.name": "doomed"}),
        # a subscription holds its answer open for `seconds` (five minutes unless told)
        ("include-name", "GET /api/v1/streams/{name}/subscribe", {"query.seconds": 1}),
        # a followed log is answered until the caller goes away
        ("include-name", "GET /api/v1/logs", {"query.follow": False}),
        ("include-name", "GET /api/v1/endpoints/{name}/logs", {"query.follow": False}),
    ]
    for key, value, parameters in scoped:
        lines += ["", "[[operations]]", f"{key} = {_toml(value)}",
                  f"parameters = {_toml(parameters)}"]
    return "\n".join(lines) + "\n"


def test_every_operation_is_fuzzed_without_a_5xx_or_an_undeclared_answer(
        local_server: Cumulo, seeds: dict[str, str], doc: dict[str, Any],
        tmp_path: Path) -> None:
    settings = tmp_path / "schemathesis.toml"
    settings.write_text(config(seeds))
    command = [
        str(VENV_BIN / "schemathesis"), "--config-file", str(settings), "run",
        f"{local_server.url}/openapi.json", "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
        "--phases", "coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES), "--generation-deterministic",
        # Hypothesis' health checks judge the generation (too slow on a busy machine, too many
        # cases filtered for a path pattern), not the API: they would only make the run flaky
        "--suppress-health-check", "all",
        # one worker: the same requests in the same order each run (and hypothesis' lambda
        # descriptions are not thread-safe on Python 3.11: "AST constructor recursion depth")
        "--workers", "1", "--request-timeout", "60", "--continue-on-failure", "--no-color",
        *(arg for name in EXCLUDED for arg in ("--exclude-name", name)),
    ]
    started = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)  # its .hypothesis and reports stay in tmp_path
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-20_000:]
    operations = sum(len(item) for item in doc["paths"].values())
    assert f"Tested: {operations - len(EXCLUDED)}" in report, report[-5_000:]
    print(f"fuzzed {operations - len(EXCLUDED)} operations in "
          f"{time.monotonic() - started:.0f}s")


def test_every_operation_declares_cumulo_errors_and_no_422(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert schemas["Error"]["required"] == ["error"]
    assert schemas["ErrorBody"]["required"] == ["code", "message", "details"]
    checked = 0
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            answers = operation["responses"]
            where = f"{method.upper()} {path}"
            assert "422" not in answers, where
            errors = {status: answer for status, answer in answers.items()
                      if status.startswith(("4", "5"))}
            if path == "/healthz":
                assert not errors
                continue
            assert errors, where
            for status, answer in errors.items():
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (where, status)
            assert {"401", "403"} <= set(errors), where  # every other route needs a token
            if operation.get("parameters") or "requestBody" in operation:
                assert {"400", "404"} <= set(errors), where
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                assert "413" in errors, where
            if method in ("post", "put", "patch", "delete"):
                assert "409" in errors, where
            assert "Retry-After" in errors["503"]["headers"], where
            checked += 1
    assert checked >= 90
    # a route's own: the object's bytes in its own type, a part of them, a range outside them
    get_object = doc["paths"]["/api/v1/files/buckets/{bucket}/objects/{key}"]["get"]
    assert {"200", "206", "416"} <= set(get_object["responses"])
    assert "*/*" in get_object["responses"]["200"]["content"]


def test_a_503_says_when_to_try_again() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/away")
    def away() -> None:
        raise Unavailable("the storage is away")

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://cumulo") as client:
            return await client.get("/away")

    answer = asyncio.run(get())
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == str(RETRY_AFTER_S)
    assert answer.json()["error"] == {"code": "unavailable", "message": "the storage is away",
                                      "details": {}}


def _snapshot(files: dict[str, bytes]) -> tuple[str, bytes]:
    """A code snapshot as the document describes it: a tar.gz, named by the SHA-256 of each
    file's path, SHA-256 and executable bit (compute/snapshot.py)."""
    digest = hashlib.sha256()
    body = io.BytesIO()
    with gzip.GzipFile(fileobj=body, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w|") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
            digest.update(f"{name}\0{hashlib.sha256(data).hexdigest()}\0" "0\n".encode())
    return digest.hexdigest(), body.getvalue()


def test_a_client_made_from_the_document_uploads_code_a_job_then_runs(
        local_server: Cumulo, doc: dict[str, Any]) -> None:
    """PUT /api/v1/jobs/code/{digest} as a generated client calls it: the URL from the path
    template, the body in the first media type the operation declares, nothing else known."""
    path = "/api/v1/jobs/code/{digest}"
    operation = doc["paths"][path]["put"]
    body = operation["requestBody"]
    assert body["required"] is True
    media, spec = next(iter(body["content"].items()))
    assert spec["schema"] == {"type": "string", "format": "binary"}
    assert set(body["content"]) == {"application/gzip", "application/octet-stream"}
    [param] = operation["parameters"]
    assert (param["name"], param["in"], param["required"]) == ("digest", "path", True)

    digest, tar = _snapshot({"main.py": b"print('hello from the snapshot')\n"})
    url = local_server.url + path.format(digest=digest)
    answer = httpx.put(url, content=tar, headers={**AUTH, "content-type": media})
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"digest": digest, "files": 1, "size": 33}
    assert httpx.get(url, headers=AUTH).json()["files"] == 1

    wrong = httpx.put(local_server.url + path.format(digest="0" * 64), content=tar,
                      headers={**AUTH, "content-type": media})
    assert wrong.status_code == 400 and "hash to" in wrong.json()["error"]["message"]

    with _api(local_server) as api:
        job = _ok(api.post("/jobs", json={"code": digest, "entry": "main.py"}))
        done = _ok(api.get(f"/jobs/{job['id']}", params={"wait": 60}))
        assert done["state"] == "succeeded", done
        logs = api.get(f"/jobs/{job['id']}/logs")
        assert "hello from the snapshot" in logs.text
