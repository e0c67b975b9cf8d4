"""An endpoint's own address checks who calls it: a live token (unless the endpoint is
public) and a Host header naming the address, on every replica, without the database."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from cumulo.errors import NotFound
from cumulo.serving.gate import Gate, host_names
from tests.services import Cumulo
from tests.serving.conftest import ROWS

BODY = {"dataframe_records": ROWS.to_dict(orient="records")}


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(every)
    return value


@pytest.fixture(scope="module")
def guarded(serving: Cumulo, churn: str) -> Iterator[dict[str, Any]]:
    """An endpoint made as by default (not public), capturing every request it answers."""
    c = serving.client()
    info = c.endpoints.create("guarded", "churn:1", capture_percent=100, wait=True)
    yield info
    c.endpoints.delete("guarded")


def _post(info: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{info['url']}/invocations", json=BODY, headers=headers, timeout=30)


def test_the_gate_checks_host_and_token_without_the_database() -> None:
    secret = b"cml_secret"
    gate = Gate(host_names("127.0.0.1", 8001, ["models.example.com"]))
    gate.allow("d1", {hashlib.sha256(secret).hexdigest(): None,
                      hashlib.sha256(b"cml_old").hexdigest(): time.time() - 1})
    ok = {b"host": b"127.0.0.1:8001", b"authorization": b"Bearer cml_secret"}
    assert gate.check(ok) is None
    assert gate.check({**ok, b"host": b"LOCALHOST:8001"}) is None
    assert gate.check({**ok, b"host": b"models.example.com"}) is None
    assert gate.check({**ok, b"authorization": b"bearer cml_secret"}) is None
    assert gate.check({**ok, b"host": b"rebound.attacker.example:8001"})[0] == 421  # type: ignore[index]
    assert gate.check({b"authorization": ok[b"authorization"]})[0] == 400  # type: ignore[index]
    status, message = gate.check({b"host": ok[b"host"]})  # type: ignore[misc]
    assert status == 401 and "Authorization: Bearer <token>" in message
    assert gate.check({**ok, b"authorization": b"Bearer cml_old"}) == (
        401, "the token expired; use another token")
    assert gate.check({**ok, b"authorization": b"Basic cml_secret"})[0] == 401  # type: ignore[index]
    gate.allow("d2", {})  # revoked: what the gate had seen is forgotten with the old set
    assert gate.check(ok)[0] == 401  # type: ignore[index]
    gate.public = True
    assert gate.check({b"host": ok[b"host"]}) is None
    assert gate.check({b"host": b"rebound.attacker.example:8001"})[0] == 421  # type: ignore[index]


def test_a_replica_process_takes_the_token_set_as_it_is_rewritten(
        model_dir: Path, tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    tokens = tmp_path / "tokens.json"

    def push(digest: str, *secrets: str) -> None:
        doc = {"digest": digest, "tokens": {hashlib.sha256(s.encode()).hexdigest(): None
                                            for s in secrets}}
        (tmp_path / ".next").write_text(json.dumps(doc))
        (tmp_path / ".next").replace(tokens)

    push("one", "cml_first")
    config = tmp_path / "replica.json"
    config.write_text(json.dumps({"endpoint": "e", "tokens_file": str(tokens), "variants": [
        {"name": "v1", "model_dir": str(model_dir)}]}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cumulo.serving.worker", "--fd", str(listener.fileno()),
         "--config", str(config)], pass_fds=[listener.fileno()], stdout=subprocess.PIPE)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/invocations"
    body = {"instances": [{"x": 5.0, "y": 0.9}]}
    try:
        assert proc.stdout is not None and "ready" in json.loads(proc.stdout.readline())
        assert httpx.post(url, json=body).status_code == 401
        assert httpx.post(url, json=body, headers=_bearer("cml_first")).json() == {
            "predictions": [1]}
        push("two", "cml_second")
        t0 = time.monotonic()
        _until(lambda: httpx.post(url, json=body, headers=_bearer("cml_first")).status_code
               == 401, 1.0, "the dropped token refused")
        assert time.monotonic() - t0 < 1.0
        assert httpx.post(url, json=body, headers=_bearer("cml_second")).status_code == 200
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        listener.close()


def test_a_replica_answers_only_with_a_live_token(serving: Cumulo,
                                                  guarded: dict[str, Any]) -> None:
    assert guarded["public"] is False
    anonymous = _post(guarded)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    error = anonymous.json()["error"]
    assert error["code"] == "unauthorized" and "Authorization: Bearer <token>" in error["message"]
    assert _post(guarded, _bearer("cml_not-a-token")).status_code == 401
    assert _post(guarded, {"Authorization": f"Basic {serving.token}"}).status_code == 401
    ok = _post(guarded, _bearer(serving.token))
    assert ok.status_code == 200 and ok.json() == {"predictions": [1, 0]}
    # Through the control plane, which checked the caller, as before.
    assert serving.client().endpoints["guarded"].predict(ROWS) == [1, 0]
    shown = serving.cli("endpoints", "show", "guarded")
    assert "Authorization: Bearer <token>" in shown.stdout


def test_a_revoked_token_stops_working_within_a_second(serving: Cumulo,
                                                       guarded: dict[str, Any]) -> None:
    secret = serving.client().tokens.create("short-lived")["token"]
    # A new token works on the replica as soon as the manager has pushed it.
    _until(lambda: _post(guarded, _bearer(secret)).status_code == 200, 2.0, "the new token")
    revoked = serving.cli("tokens", "revoke", "short-lived")
    assert revoked.returncode == 0, revoked.stderr
    t0 = time.monotonic()
    _until(lambda: _post(guarded, _bearer(secret)).status_code == 401, 1.0,
           "the revoked token refused by the replica")
    print(f"revoked token refused after {time.monotonic() - t0:.3f}s")


def test_only_holders_of_endpoints_invoke_are_answered(serving: Cumulo,
                                                       guarded: dict[str, Any]) -> None:
    """A replica answers a token only if its holder may endpoints:Invoke the endpoint, as the
    control plane's route decides; a right taken back stops working within about a second."""
    admin = serving.client()
    for name, role in (("reader-a", "analyst"), ("caller-i", "invoker")):
        admin.users.create(name, kind="service", role=role)
    analyst = admin.tokens.create("t", user="reader-a")["token"]
    invoker = admin.tokens.create("t", user="caller-i")["token"]
    _until(lambda: _post(guarded, _bearer(invoker)).status_code == 200, 2.0, "the invoker")
    refused = _post(guarded, _bearer(analyst))
    assert refused.status_code == 401 and "endpoints:Invoke" in refused.text
    # The same decision on the control plane's route: 403, naming what is missing.
    through = httpx.post(f"{serving.url}/endpoints/guarded/invocations",
                         json=BODY, headers=_bearer(analyst))
    assert through.status_code == 403 and "endpoints:Invoke" in through.text
    admin.access.revoke(user="caller-i", role="invoker")
    t0 = time.monotonic()
    _until(lambda: _post(guarded, _bearer(invoker)).status_code == 401, 2.5,
           "the invoker's right taken back")
    print(f"a right taken back was refused by the replica after {time.monotonic() - t0:.3f}s")


def test_an_expired_token_is_refused(serving: Cumulo, guarded: dict[str, Any]) -> None:
    made = time.time()
    secret = serving.client().tokens.create("three-seconds", expires_in="3s")["token"]
    _until(lambda: _post(guarded, _bearer(secret)).status_code == 200, 2.0, "the new token")
    time.sleep(max(0.0, made + 3.2 - time.time()))
    answer = _post(guarded, _bearer(secret))
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"


def test_a_request_for_another_host_is_refused(serving: Cumulo,
                                               guarded: dict[str, Any]) -> None:
    port = guarded["url"].rsplit(":", 1)[1]
    # What a page of another site whose name now points here (DNS rebinding) would send.
    rebound = _post(guarded, {**_bearer(serving.token), "Host": f"attacker.example:{port}"})
    assert rebound.status_code == 421
    assert rebound.json()["error"]["code"] == "misdirected"
    assert "attacker.example" in rebound.json()["error"]["message"]
    assert _post(guarded, {**_bearer(serving.token),
                           "Host": f"localhost:{port}"}).status_code == 200


def test_replicas_listen_on_loopback_by_default(serving: Cumulo,
                                                guarded: dict[str, Any]) -> None:
    port = int(guarded["url"].rsplit(":", 1)[1])
    listening = [c.laddr for c in psutil.Process(serving.proc.pid).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert [a.ip for a in listening] == ["127.0.0.1"]


def test_refused_requests_are_not_captured(serving: Cumulo, guarded: dict[str, Any]) -> None:
    c = serving.client()
    port = guarded["url"].rsplit(":", 1)[1]
    outsider = {"dataframe_records": [{"tenure": 999, "spend": 1.0}]}
    for headers in ({}, _bearer("cml_not-a-token"),
                    {**_bearer(serving.token), "Host": f"attacker.example:{port}"}):
        answer = httpx.post(f"{guarded['url']}/invocations", json=outsider, headers=headers)
        assert answer.status_code in (401, 421)
    insider = {"dataframe_records": [{"tenure": 777, "spend": 2.0}]}
    assert httpx.post(f"{guarded['url']}/invocations", json=insider,
                      headers=_bearer(serving.token)).status_code == 200

    def requests() -> list[str]:
        try:
            table = c.tables.read("endpoints.guarded_capture", to="pandas")
        except NotFound:
            return []
        return list(table["request"])

    captured = _until(lambda: [r for r in requests() if "777" in r], 30,
                      "the answered request captured", every=0.2)
    assert len(captured) == 1
    time.sleep(2.5)  # one more capture write (every 2 s): nothing of the refused ones
    assert not [r for r in requests() if "999" in r]


def test_a_public_endpoint_takes_requests_without_a_token(serving: Cumulo,
                                                          churn: str) -> None:
    c = serving.client()
    info = c.endpoints.create("open", "churn:1", public=True, wait=True)
    try:
        assert info["public"] is True
        assert "public" in serving.cli("endpoints", "show", "open").stdout
        assert _post(info).json() == {"predictions": [1, 0]}
        port = info["url"].rsplit(":", 1)[1]
        assert _post(info, {"Host": f"attacker.example:{port}"}).status_code == 421
        # Made private again: the replicas ask for a token once they take the new settings.
        updated = serving.cli("endpoints", "update", "open", "--private")
        assert updated.returncode == 0, updated.stderr
        _until(lambda: _post(info).status_code == 401, 10, "the endpoint made private",
               every=0.1)
        assert _post(info, _bearer(serving.token)).status_code == 200
    finally:
        c.endpoints.delete("open")
