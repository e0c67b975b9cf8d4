"""Endpoints end to end: a real server, models in its registry, replicas as real processes."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import httpx
import pytest

from cumulo.errors import Conflict, CumuloError, Invalid, NotFound
from tests.services import ADMIN_TOKEN, Cumulo
from tests.serving.conftest import ROWS

# The endpoint's own address asks for a token (tests/serving/test_replica_auth.py).
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_create_predict_show_remove(serving: Cumulo, churn: str) -> None:
    c = serving.client()
    t0 = time.monotonic()
    info = c.endpoints.create("churn", "churn:1", wait=True)
    created_s = time.monotonic() - t0
    assert info["state"] == "in_service" and info["variants"][0]["name"] == "churn-1"
    assert len(info["replicas"]) == 1 and info["replicas"][0]["ready"]
    assert c.endpoints["churn"].predict(ROWS) == [1, 0]
    # The endpoint's own address, which the replicas answer directly.
    direct = httpx.post(f"{info['url']}/invocations", headers=AUTH,
                        json={"dataframe_records": ROWS.to_dict(orient="records")})
    assert direct.json() == {"predictions": [1, 0]}
    assert direct.headers["x-cumulo-variant"] == "churn-1"
    assert [e["name"] for e in c.endpoints.list()] == ["churn"]
    print(f"created and answering in {created_s:.2f}s")
    c.endpoints.delete("churn")
    assert c.endpoints.list() == []  # gone from the API at once
    with pytest.raises(NotFound, match="no endpoint 'churn'"):
        c.endpoints.show("churn")
    # Its replicas stop and its address closes within the manager's next steps.
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.post(f"{info['url']}/invocations", json={"instances": []}, timeout=2)
        except httpx.TransportError:
            break
        assert time.monotonic() < deadline, "the endpoint's address still answers"
        time.sleep(0.1)


def test_variants_share_traffic_and_a_shadow_gets_copies(serving: Cumulo, churn: str) -> None:
    c = serving.client()
    c.endpoints.create("split", variants=[
        {"model": "churn:1", "name": "blue", "weight": 1},
        {"model": "churn:1", "name": "green", "weight": 1},
        {"model": "churn", "name": "mirror", "shadow": True}], wait=True)
    info = c.endpoints.show("split")
    assert [(v["name"], v["version"], v["shadow"]) for v in info["variants"]] == [
        ("blue", "1", False), ("green", "1", False), ("mirror", "1", True)]
    seen = set()
    for _ in range(40):
        answer = httpx.post(f"{info['url']}/invocations", headers=AUTH,
                            json={"dataframe_records": ROWS.to_dict(orient="records")})
        assert answer.json() == {"predictions": [1, 0]}
        seen.add(answer.headers["x-cumulo-variant"])
    assert seen == {"blue", "green"}  # never the shadow
    assert c.endpoints["split"].predict(ROWS, variant="green") == [1, 0]
    # Weights change at once, as SageMaker's UpdateEndpointWeightsAndCapacities does.
    info = c.endpoints["split"].update(weights={"green": 0})
    assert [(v["name"], v["weight"]) for v in info["variants"]] == [
        ("blue", 1.0), ("green", 0.0), ("mirror", 1.0)]
    # The replicas take the new weights within moments: then every answer is blue's.
    deadline, run = time.monotonic() + 30, 0
    while run < 10:
        answer = httpx.post(f"{info['url']}/invocations", headers=AUTH,
                            json={"instances": [[1, 2.0]]})
        run = run + 1 if answer.headers["x-cumulo-variant"] == "blue" else 0
        assert time.monotonic() < deadline, "green still answers after its weight went to 0"
    with pytest.raises(Invalid, match="has no variant 'red'; its variants: blue, green"):
        c.endpoints["split"].update(weights={"red": 1})
    with pytest.raises(Invalid, match="must not be negative"):
        c.endpoints["split"].update(weights={"blue": -1})
    with pytest.raises(Invalid, match="at least one variant must take traffic"):
        c.endpoints["split"].update(weights={"blue": 0})
    with pytest.raises(Invalid, match=r"either model .* or weights"):
        c.endpoints["split"].update("churn:1", weights={"blue": 1})
    out = serving.cli("endpoints", "update", "split", "--weight", "blue=1", "--weight",
                      "green=3")
    assert out.returncode == 0, out.stderr
    assert "blue (churn:1, 25%), green (churn:1, 75%)" in out.stdout
    out = serving.cli("endpoints", "update", "split", "--weight", "green")
    assert out.returncode != 0 and "'green' is not VARIANT=WEIGHT" in out.stderr
    c.endpoints.delete("split")


def test_bad_requests_through_the_control_plane(serving: Cumulo, churn: str) -> None:
    c = serving.client()
    c.endpoints.create("checks", "churn", max_body="1K", wait=True)  # latest version
    t = c.transport
    answer = t._http.post("/endpoints/checks/invocations", content=b"{oops",
                          headers={"content-type": "application/json"})
    assert answer.status_code == 400 and "not valid JSON" in answer.json()["error"]["message"]
    answer = t._http.post("/endpoints/checks/invocations",
                          json={"dataframe_records": [{"tenure": "x", "spend": 1.0}]})
    assert answer.status_code == 400 and answer.json()["error"]["field"] == "tenure"
    answer = t._http.post("/endpoints/checks/invocations",
                          json={"dataframe_records": [{"tenure": 1, "spend": 1.0}] * 100})
    assert answer.status_code == 413
    assert t._http.post("/endpoints/nope/invocations", json={}).status_code == 404
    # The token is checked on the forwarded path.
    assert httpx.post(f"{serving.url}/endpoints/checks/invocations",
                      json={"instances": [[1, 2.0]]}).status_code == 401
    # A bearer token takes the server's short way (server/fastpath.py): the same checks.
    token = c.tokens.create("short-way")["token"]
    url = f"{serving.url}/endpoints/checks/invocations"
    ok = httpx.post(url, json={"instances": [[1, 2.0]]}, headers={
        "Authorization": f"Bearer {token}", "X-Request-ID": "short-way-1"})
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "short-way-1"
    assert "predictions" in ok.json()
    deadline = time.monotonic() + 5  # the access log's line is written after the answer
    while not (logged := any('"short-way-1"' in line and "invocations" in line
                             for line in serving.log_lines())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logged  # logged like any request
    c.tokens.revoke("short-way")
    refused = httpx.post(url, json={"instances": [[1, 2.0]]},
                         headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    assert refused.headers["www-authenticate"] == "Bearer"
    # The console's cookie goes the long way, with its same-origin check.
    cookie = {"cumulo_token": serving.token}
    assert httpx.post(url, json={"instances": [[1, 2.0]]}, cookies=cookie).status_code == 403
    assert httpx.post(url, json={"instances": [[1, 2.0]]}, cookies=cookie, headers={
        "Origin": serving.url}).status_code == 200
    c.endpoints.delete("checks")


def test_bad_endpoint_settings_are_refused(serving: Cumulo, churn: str) -> None:
    c = serving.client()
    with pytest.raises(NotFound, match="no version"):
        c.endpoints.create("bad", "churn:99")
    with pytest.raises(NotFound, match="no alias 'champion'"):
        c.endpoints.create("bad", "churn@champion")
    with pytest.raises(NotFound, match="no model 'ghost'"):
        c.endpoints.create("bad", "ghost")
    with pytest.raises(Invalid, match="endpoint name 'Bad_Name'"):
        c.endpoints.create("Bad_Name", "churn:1")
    with pytest.raises(Invalid, match="either model"):
        c.endpoints.create("bad")
    with pytest.raises(Invalid, match="at least one variant must take traffic"):
        c.endpoints.create("bad", variants=[{"model": "churn:1", "shadow": True}])
    with pytest.raises(Invalid, match="two variants are named"):
        c.endpoints.create("bad", variants=[{"model": "churn:1"}, {"model": "churn:1"}])
    # NaN passes every range check (it compares false) and would break the autoscaler's
    # arithmetic later: refused (400) where the body is read, naming the field.
    for field in ("target_in_flight", "max_wait_ms", "scale_in_cooldown"):
        answer = httpx.post(f"{serving.url}/api/v1/endpoints",
                            headers={"Authorization": f"Bearer {serving.token}",
                                     "Content-Type": "application/json"},
                            content=f'{{"name": "bad", "model": "churn:1", "{field}": NaN}}')
        assert answer.status_code == 400 and field in answer.text, answer.text
    assert c.endpoints.list() == []  # nothing half-made
    c.endpoints.create("twice", "churn:1")
    with pytest.raises(Conflict, match="already exists"):
        c.endpoints.create("twice", "churn:1")
    c.endpoints.delete("twice")


def test_a_killed_replica_is_replaced(serving: Cumulo, churn: str) -> None:
    c = serving.client()
    info = c.endpoints.create("sturdy", "churn:1", min_replicas=2, wait=True)
    deadline = time.monotonic() + 60
    while len([r for r in info["replicas"] if r["ready"]]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
        info = c.endpoints.show("sturdy")
    victim = info["replicas"][0]["pid"]
    os.kill(victim, signal.SIGKILL)
    assert c.endpoints["sturdy"].predict(ROWS) == [1, 0]  # the other one answers meanwhile
    while True:
        info = c.endpoints.show("sturdy")
        pids = [r["pid"] for r in info["replicas"] if r["ready"]]
        if len(pids) == 2 and victim not in pids:
            break
        assert time.monotonic() < deadline, info
        time.sleep(0.1)
    assert info["restarts"] == 1 and info["state"] == "in_service"
    c.endpoints.delete("sturdy")


def test_a_model_that_cannot_load_fails_the_endpoint_with_its_traceback(
        serving: Cumulo, churn: str) -> None:
    import mlflow.pyfunc

    class Broken(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def load_context(self, context):  # type: ignore[no-untyped-def]
            raise RuntimeError("weights are corrupt")

        def predict(self, context, model_input):  # type: ignore[no-untyped-def]
            return model_input

    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="model", python_model=Broken(),
                                registered_model_name="broken")
    c = serving.client()
    with pytest.raises(CumuloError, match="weights are corrupt"):
        c.endpoints.create("broken", "broken:1", wait=True, timeout=90)
    info = c.endpoints.show("broken")
    assert info["state"] == "failed" and "Traceback" in info["message"]
    assert info["replicas"] == []
    c.endpoints.delete("broken")


def test_endpoints_cli(serving: Cumulo, churn: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = serving.cli("endpoints", "create", "cli", "--model", "churn:1", "--wait")
    assert out.returncode == 0, out.stderr
    assert "endpoint cli: in service; churn-1 (churn:1, 100%)" in out.stdout
    body = '{"dataframe_records": [{"tenure": 2, "spend": 30.0}]}'
    out = serving.cli("endpoints", "invoke", "cli", "-d", body)
    assert out.returncode == 0 and out.stdout.strip() == '{"predictions":[1]}', out.stderr
    (tmp_path / "rows.csv").write_text("tenure,spend\n50,80\n")
    out = serving.cli("endpoints", "invoke", "cli", "--content-type", "text/csv",
                      "-d", f"@{tmp_path / 'rows.csv'}")
    assert out.stdout.strip() == '{"predictions":[0]}', out.stderr
    out = serving.cli("endpoints", "invoke", "cli", "-d",
                      '{"instances": [{"tenure": "x", "spend": 1}]}')
    assert out.returncode != 0 and "column 'tenure'" in out.stderr
    out = serving.cli("endpoints", "show", "cli")
    assert "in_service" in out.stdout and "ready" in out.stdout
    assert "1: pid " in out.stdout  # how many replicas, then each one's process
    assert serving.cli("endpoints", "ls").stdout.count("cli") >= 1
    out = serving.cli("endpoints", "update", "cli", "--scale-in-cooldown", "1h30m",
                      "--scale-to-zero-after", "2h", "--min-replicas", "0")
    assert out.returncode == 0, out.stderr
    shown = serving.cli("endpoints", "show", "cli")
    assert "scale in after 1h30m; to zero after 2h idle" in shown.stdout, shown.stdout
    assert serving.cli("endpoints", "rm", "cli").returncode == 0
    missing = serving.cli("endpoints", "show", "cli")
    assert missing.returncode != 0 and "no endpoint 'cli'" in missing.stderr


def test_metrics_per_variant_and_for_prometheus(serving: Cumulo, churn: str) -> None:
    c = serving.client()
    info = c.endpoints.create("measured", "churn:1", wait=True)
    for _ in range(30):
        httpx.post(f"{info['url']}/invocations", headers=AUTH,
                   json={"dataframe_records": ROWS.to_dict(orient="records")})
    httpx.post(f"{info['url']}/invocations", headers=AUTH,
               json={"dataframe_records": [{"tenure": 1}]})
    deadline = time.monotonic() + 10
    while (m := c.endpoints["measured"].metrics())["variants"].get("churn-1", {}).get(
            "requests", 0) < 31:
        assert time.monotonic() < deadline, m
        time.sleep(0.2)
    v = m["variants"]["churn-1"]
    assert v["errors_4xx"] == 1 and v["errors_5xx"] == 0 and v["requests_per_s"] > 0
    assert 0 < v["model_latency_p50_ms"] <= v["latency_p99_ms"]
    assert v["overhead_latency_p50_ms"] is not None and m["replicas"] == 1
    # For Prometheus: counters and histograms summed from the replicas' reports.
    scraped = _prometheus(c)
    assert scraped[("cumulo_endpoint_replicas", frozenset({("endpoint", "measured")}))] == 1
    one = frozenset({("endpoint", "measured"), ("variant", "churn-1")})
    assert scraped[("cumulo_endpoint_requests_total", one)] == 31
    assert scraped[("cumulo_endpoint_errors_total", one | {("code", "4xx")})] == 1
    assert scraped[("cumulo_endpoint_errors_total", one | {("code", "5xx")})] == 0
    for name in ("cumulo_endpoint_latency_seconds", "cumulo_endpoint_model_latency_seconds",
                 "cumulo_endpoint_overhead_latency_seconds"):
        assert scraped[(f"{name}_count", one)] == 31
        assert scraped[(f"{name}_bucket", one | {("le", "+Inf")})] == 31
        assert 0 < scraped[(f"{name}_sum", one)] < 31 * 10
    assert scraped[("cumulo_endpoint_latency_seconds_bucket", one | {("le", "60.0")})] == 31
    # its first replica was the autoscaler's decision to scale out from none
    assert scraped[("cumulo_endpoint_scaling_decisions_total",
                    frozenset({("endpoint", "measured"), ("direction", "out")}))] >= 1
    assert httpx.get(f"{serving.url}/metrics").status_code == 401  # behind the token
    # A replica that dies takes nothing back: its replacement's requests add to the totals.
    victim = c.endpoints.show("measured")["replicas"][0]["pid"]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        replicas = c.endpoints.show("measured")["replicas"]
        if [r for r in replicas if r["ready"] and r["pid"] != victim]:
            break
        assert time.monotonic() < deadline, replicas
        time.sleep(0.1)
    for _ in range(5):
        httpx.post(f"{info['url']}/invocations", headers=AUTH,
                   json={"dataframe_records": ROWS.to_dict(orient="records")})
    while _prometheus(c)[("cumulo_endpoint_requests_total", one)] < 36:
        assert time.monotonic() < deadline, "the new replica's requests were not counted"
        time.sleep(0.2)
    assert _prometheus(c)[("cumulo_endpoint_latency_seconds_count", one)] == 36
    # The replicas' log: their own lines, as JSON with each one's pid, through the API.
    lines = [json.loads(line) for line in c.endpoints["measured"].logs()
             if line.startswith("{")]
    serving_lines = [line for line in lines if "serving" in line["msg"]]
    pids = {line["replica"] for line in serving_lines}
    assert victim in pids and len(pids) == 2, lines
    only = serving.cli("endpoints", "logs", "measured", "--replica", str(victim))
    assert only.returncode == 0, only.stderr
    assert {json.loads(line)["replica"] for line in only.stdout.splitlines()
            if line.startswith("{")} == {victim}
    later = serving.cli("endpoints", "logs", "measured", "--since", "2999-01-01")
    assert later.returncode == 0 and later.stdout == ""
    missing = serving.cli("endpoints", "logs", "nothing-here")
    assert missing.returncode == 1 and "no endpoint 'nothing-here'" in missing.stderr
    c.endpoints.delete("measured")


def _prometheus(c: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """/metrics as prometheus_client's parser reads it: each sample by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    text = c.transport.request("GET", "/metrics").text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.parametrize(("args", "message"), [
    (["create", "x", "--model", "churn:1", "--scale-in-cooldown", "soon"],
     "--scale-in-cooldown 'soon' is not a duration: use forms like 90s, 30m, 1h30m, 7d, 2w"),
    (["create", "x", "--model", "churn:1", "--scale-to-zero-after", "-5m"],
     "--scale-to-zero-after '-5m' is not a duration"),
    (["create", "x", "--model", "churn:1", "--max-body", "6X"],
     "--max-body '6X' is not a size: use forms like 512M, 8G, 1.5GiB or a number of bytes"),
    (["update", "x", "--model", "churn:1", "--bake", "5x"], "--bake '5x' is not a duration"),
    (["update", "x", "--scale-in-cooldown", "1 hour"],
     "--scale-in-cooldown '1 hour' is not a duration"),
])
def test_endpoint_durations_and_sizes_are_refused_clearly(serving: Cumulo, args: list[str],
                                                          message: str) -> None:
    out = serving.cli("endpoints", *args)
    assert out.returncode == 1 and out.stderr.startswith(f"error: {message}"), out.stderr
    assert "x" not in [e["name"] for e in serving.client().endpoints.list()]
