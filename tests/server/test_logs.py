"""The control plane's own log through ``cumulo logs`` (``GET /api/v1/logs``), and request ids:
kept from the caller when sane, made otherwise, echoed, and on every line written for the
request. Endpoint replicas' logs are tested with a real endpoint in
tests/serving/test_endpoints.py."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.services import CUMULO, Cumulo, start_cumulo


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    cumulo = start_cumulo(tmp_path_factory.mktemp("logs") / ".cumulo")
    yield cumulo
    cumulo.stop()


def logged(server: Cumulo, *args: str, until: str | None = None) -> list[dict[str, object]]:
    """``cumulo logs ARGS`` as JSON records, asked again until a line holds ``until`` (the log
    is written in batches, a tenth of a second apart)."""
    deadline = time.monotonic() + 10
    while True:
        out = server.cli("logs", *args)
        assert out.returncode == 0, out.stderr
        if until is None or until in out.stdout or time.monotonic() > deadline:
            return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        time.sleep(0.2)


def test_a_request_id_links_the_request_to_its_log_lines(server: Cumulo) -> None:
    rid = "req-" + uuid.uuid4().hex[:12]
    answer = httpx.get(f"{server.url}/api/v1/jobs/nope", headers={
        "Authorization": f"Bearer {server.token}", "X-Request-Id": rid})
    assert answer.status_code == 404 and answer.headers["x-request-id"] == rid
    lines = [r for r in logged(server, until=rid) if r.get("request_id") == rid]
    assert [(r["logger"], r["path"], r["status"]) for r in lines] == [
        ("cumulo.access", "/api/v1/jobs/nope", 404)]
    # one service's lines only
    access = logged(server, "--service", "access", until=rid)
    assert access and {r["logger"] for r in access} == {"cumulo.access"}
    assert rid not in {r.get("request_id") for r in logged(server, "--service", "compute")}
    # from a time on: nothing is written in the future
    assert logged(server, "--since", "2999-01-01") == []


def test_an_id_that_is_not_sane_is_replaced(server: Cumulo) -> None:
    for given in ("has spaces in it", "x" * 65, "semi;colon"):
        answer = httpx.get(f"{server.url}/healthz", headers={"X-Request-Id": given})
        made = answer.headers["x-request-id"]
        assert made != given and len(made) == 16 and int(made, 16) >= 0
    none = httpx.get(f"{server.url}/healthz").headers["x-request-id"]
    assert len(none) == 16


def test_follow_streams_new_lines(server: Cumulo) -> None:
    env = {**server.env, "CUMULO_URL": server.url, "CUMULO_TOKEN": server.token}
    with subprocess.Popen([CUMULO, "logs", "-f", "--service", "access"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True) as follower:
        stopper = threading.Timer(20, follower.kill)  # a line that never comes fails, late
        stopper.start()
        time.sleep(1.0)  # following before the request is made
        rid = "follow-" + uuid.uuid4().hex[:10]
        httpx.get(f"{server.url}/api/v1/jobs", headers={
            "Authorization": f"Bearer {server.token}", "X-Request-Id": rid})
        assert follower.stdout is not None
        seen = None
        for line in follower.stdout:
            if rid in line:
                seen = json.loads(line)
                break
        stopper.cancel()
        follower.kill()
    assert seen is not None and seen["path"] == "/api/v1/jobs", "the new line never came"


def test_only_administrators_read_the_control_planes_log(server: Cumulo) -> None:
    viewer = "cml_log-viewer-0123456789abcdef01234"
    server.add_user("log-viewer", viewer, role="viewer")
    refused = server.cli("logs", token=viewer)
    assert refused.returncode == 1 and "server:ReadLogs" in refused.stderr
    assert httpx.get(f"{server.url}/api/v1/logs").status_code == 401


def test_a_bad_service_name_is_refused(server: Cumulo) -> None:
    bad = server.cli("logs", "--service", "Not A Service!")
    assert bad.returncode == 1 and "--service 'Not A Service!' is not a service's name" in \
        bad.stderr
