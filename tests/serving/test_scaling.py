"""Autoscaling, scale to zero, metering, traffic shifting and data capture, end to end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest

from cumulo.errors import Conflict, Invalid, NotFound
from tests.services import ADMIN_TOKEN, Cumulo
from tests.serving.conftest import ROWS

# The endpoint's own address asks for a token (tests/serving/test_replica_auth.py).
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

BODY = {"dataframe_records": ROWS.to_dict(orient="records")}


def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def models(serving: Cumulo, churn: str) -> dict[str, str]:
    """churn:2, which answers the opposite of churn:1; 'slow', 50 ms a call; 'faulty', which
    loads but raises on every row."""
    import mlflow
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"tenure": [1, 3, 5, 40, 50, 60], "spend": [20.0, 25, 30, 70, 80, 90]})
    flipped = [0, 0, 0, 1, 1, 1]
    with mlflow.start_run():
        mlflow.sklearn.log_model(LogisticRegression().fit(frame, flipped), name="model",
                                 registered_model_name="churn",
                                 signature=infer_signature(frame, flipped),
                                 serialization_format="pickle")

    class Slow(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def predict(self, context, model_input):  # type: ignore[no-untyped-def]
            time.sleep(0.05)
            return [0] * len(model_input)

    class Faulty(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def predict(self, context, model_input):  # type: ignore[no-untyped-def]
            raise ValueError("this version is broken")

    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="model", python_model=Slow(), registered_model_name="slow",
                                signature=False)
    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="model", python_model=Faulty(),
                                registered_model_name="faulty", signature=False)
    return {"good": "churn:2", "slow": "slow:1", "faulty": "faulty:1"}


class _Load:
    """Threads that post to an endpoint until stopped, counting answers by status."""

    def __init__(self, url: str, threads: int, body: dict[str, Any] = BODY) -> None:
        self.url, self.body = url, body
        self.stop = threading.Event()
        self.statuses: dict[int, int] = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=60, headers=AUTH) as http:
            while not self.stop.is_set():
                try:
                    status = http.post(f"{self.url}/invocations", json=self.body).status_code
                except httpx.TransportError:
                    status = 0
                with self.lock:
                    self.statuses[status] = self.statuses.get(status, 0) + 1

    def __enter__(self) -> _Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def _show_until(c: Any, name: str, check: Callable[[dict[str, Any]], bool], timeout: float,
                what: str) -> dict[str, Any]:
    def look() -> dict[str, Any] | None:
        info: dict[str, Any] = c.endpoints.show(name)
        return info if check(info) else None

    return _until(look, timeout, what)  # type: ignore[no-any-return]


def _serving(info: dict[str, Any]) -> int:
    return len([r for r in info["replicas"] if r["ready"] and not r["stopping"]])


def test_scales_out_under_load_and_back_in_after_the_cooldown(
        serving: Cumulo, models: dict[str, str]) -> None:
    c = serving.client()
    info = c.endpoints.create("busy", models["slow"], min_replicas=1, max_replicas=2,
                              target_in_flight=2, scale_in_cooldown=2, max_batch_size=1,
                              wait=True)
    assert info["max_replicas"] == 2 and info["target_in_flight"] == 2
    with _Load(info["url"], threads=8) as load:
        info = _show_until(c, "busy", lambda i: _serving(i) == 2, 60, "scaling out to 2")
    assert load.statuses.get(200, 0) > 0 and set(load.statuses) == {200}
    out = info["scaling"][-1]
    assert (out["from"], out["to"]) == (1, 2) and "in flight" in out["reason"]
    # Idle now: after the 2 s cooldown it goes back to its minimum, one replica.
    info = _show_until(c, "busy", lambda i: len(i["replicas"]) == 1, 30, "scaling in to 1")
    assert (info["scaling"][-1]["from"], info["scaling"][-1]["to"]) == (2, 1)
    c.endpoints.delete("busy")


def test_scales_to_zero_a_request_wakes_it_and_replica_time_is_metered(
        serving: Cumulo, churn: str) -> None:
    c = serving.client()
    info = c.endpoints.create("sleepy", "churn:1", min_replicas=0, max_replicas=1,
                              scale_to_zero_after=1, wait=True)
    assert c.endpoints["sleepy"].predict(ROWS) == [1, 0]
    info = _show_until(c, "sleepy", lambda i: not i["replicas"], 30, "scaling to zero")
    assert info["state"] == "in_service" and "idle" in info["scaling"][-1]["reason"]
    costs = _until(lambda: [r for r in c.costs(by="item", kind="endpoint")["rows"]
                            if r["item"] == "endpoint sleepy"], 10, "a usage record")
    assert costs[0]["wall_seconds"] > 0 and costs[0]["cpu_seconds"] > 0
    assert costs[0]["cost_usd"] > 0
    time.sleep(1.5)  # no replica: nothing more is metered
    again = [r for r in c.costs(by="item")["rows"] if r["item"] == "endpoint sleepy"]
    assert again == costs
    # A request while at zero waits for a replica instead of failing.
    t0 = time.monotonic()
    answer = httpx.post(f"{info['url']}/invocations", headers=AUTH, json=BODY, timeout=60)
    woke = time.monotonic() - t0
    assert answer.status_code == 200 and answer.json() == {"predictions": [1, 0]}
    info = c.endpoints.show("sleepy")
    assert len(info["replicas"]) == 1
    assert info["replicas"][0]["forked"]  # from the fork server: well under a second
    runtime = c.endpoints.runtime()["fork_server"]
    assert runtime["state"] == "ready" and "mlflow.pyfunc" in runtime["modules"]
    assert info["scaling"][-1]["reason"] == "a request arrived while scaled to zero"
    print(f"from zero replicas to an answer in {woke:.2f}s")
    c.endpoints.delete("sleepy")


def test_canary_shift_bakes_then_removes_the_old_variant(
        serving: Cumulo, models: dict[str, str]) -> None:
    c = serving.client()
    info = c.endpoints.create("canary", "churn:1", wait=True)
    seen: set[str] = set()
    with _Load(info["url"], threads=2) as load:
        info = c.endpoints["canary"].update(models["good"], strategy="canary",
                                            canary_percent=50, bake_s=2)
        assert info["state"] == "updating"
        assert [(v["name"], v["weight"]) for v in info["variants"]] == [
            ("churn-1", 50.0), ("churn-2", 50.0)]
        while c.endpoints.show("canary")["state"] == "updating":
            answer = httpx.post(f"{info['url']}/invocations", headers=AUTH, json=BODY)
            seen.add(answer.headers["x-cumulo-variant"])
            time.sleep(0.05)
    assert set(load.statuses) == {200}, load.statuses  # no request failed during the shift
    assert seen == {"churn-1", "churn-2"}
    info = c.endpoints.show("canary")
    assert info["state"] == "in_service" and info["rollout"]["state"] == "done"
    assert [(v["name"], v["weight"]) for v in info["variants"]] == [("churn-2", 1.0)]
    assert [e["event"] for e in info["rollout"]["log"]][-1].startswith("done")
    assert c.endpoints["canary"].predict(ROWS) == [0, 1]  # the new model answers
    c.endpoints.delete("canary")


def test_a_failing_new_variant_is_rolled_back_during_its_bake(
        serving: Cumulo, models: dict[str, str]) -> None:
    c = serving.client()
    info = c.endpoints.create("guarded", "churn:1", wait=True)
    with _Load(info["url"], threads=2) as load:
        c.endpoints["guarded"].update(models["faulty"], strategy="linear", step_percent=50,
                                      bake_s=30, max_error_rate=0.05)
        info = _show_until(c, "guarded", lambda i: i["state"] == "in_service", 60,
                           "the rollback")
    assert info["rollout"]["state"] == "rolled_back"
    assert "faulty-1 answered" in info["rollout"]["reason"] and "limit is 5.0%" in \
        info["rollout"]["reason"]
    assert [(v["name"], v["weight"]) for v in info["variants"]] == [("churn-1", 1.0)]
    assert load.statuses.get(500, 0) > 0  # the canary's errors, until it was rolled back
    # Once rolled back, every request is served by the old variant again.
    for _ in range(10):
        assert httpx.post(f"{info['url']}/invocations", headers=AUTH,
                          json=BODY).status_code == 200
    c.endpoints.delete("guarded")


def test_manual_rollback_and_bad_updates(serving: Cumulo, models: dict[str, str]) -> None:
    c = serving.client()
    ep = c.endpoints["manual"]
    c.endpoints.create("manual", "churn:1", wait=True)
    with pytest.raises(Conflict, match="not shifting traffic"):
        ep.rollback()
    with pytest.raises(Invalid, match="unknown strategy 'sideways'"):
        ep.update(models["good"], strategy="sideways")
    with pytest.raises(Invalid, match="--canary-percent"):
        ep.update(models["good"], strategy="canary", canary_percent=100)
    with pytest.raises(Conflict, match="has a variant 'churn-1' already"):
        ep.update("churn:1")
    with pytest.raises(NotFound, match="no version"):
        ep.update("churn:99")
    with pytest.raises(Invalid, match="max-replicas"):
        ep.update(min_replicas=3, max_replicas=2)
    with pytest.raises(Invalid, match="capture-percent must be 0-100"):
        ep.update(capture_percent=150)
    info = ep.show()  # refused updates changed nothing
    assert info["state"] == "in_service" and info["rollout"] is None
    assert [v["name"] for v in info["variants"]] == ["churn-1"] and info["max_replicas"] == 1
    ep.update(models["good"], strategy="linear", step_percent=25, bake_s=600)
    with pytest.raises(Conflict, match="shifting traffic already"):
        ep.update(models["slow"])
    info = ep.rollback()
    assert info["state"] == "updating" and info["rollout"]["state"] == "rolling_back"
    info = ep.wait(60)  # in service again once every replica serves the old variants
    assert info["rollout"]["state"] == "rolled_back"
    assert info["rollout"]["reason"].startswith("rolled back by")
    assert [(v["name"], v["weight"]) for v in info["variants"]] == [("churn-1", 1.0)]
    assert ep.predict(ROWS) == [1, 0]
    c.endpoints.delete("manual")


def test_data_capture_writes_sampled_requests_to_a_table(serving: Cumulo, churn: str) -> None:
    c = serving.client()
    with pytest.raises(NotFound, match="database 'nowhere' does not exist"):
        c.endpoints.create("taped", "churn:1", capture_percent=100,
                           capture_table="nowhere.t")
    with pytest.raises(Invalid, match="capture-table needs --capture-percent"):
        c.endpoints.create("taped", "churn:1", capture_table="x.t")
    assert c.endpoints.list() == []
    info = c.endpoints.create("taped", "churn:1", capture_percent=100, wait=True)
    assert info["capture_table"] == "endpoints.taped_capture"
    for _ in range(5):
        httpx.post(f"{info['url']}/invocations", headers=AUTH, json=BODY)
    httpx.post(f"{info['url']}/invocations", content=b"tenure,spend\n50,80\n",
               headers={**AUTH, "content-type": "text/csv"})
    httpx.post(f"{info['url']}/invocations", headers=AUTH,
               json={"dataframe_records": [{"tenure": "x"}]})

    def captured() -> Any:
        try:
            table = c.tables.read("endpoints.taped_capture", to="pandas")
        except NotFound:
            return None
        return [table] if len(table) >= 7 else None

    table = _until(captured, 30, "7 captured requests")[0]
    assert set(table["variant"]) == {"churn-1"} and set(table["endpoint"]) == {"taped"}
    assert sorted(table["status"]) == [200] * 6 + [400]
    ok = table[table["content_type"] == "text/csv"].iloc[0]
    assert ok["request"] == "tenure,spend\n50,80\n" and ok["response"] == '{"predictions":[0]}'
    assert (table["latency_ms"] >= table["model_latency_ms"]).all()
    # SQL over it, as over any table.
    result = c.sql("select status, count(*) as n from endpoints.taped_capture group by status "
                   "order by status")
    assert result.to_pandas().to_dict(orient="records") == [{"status": 200, "n": 6},
                                                             {"status": 400, "n": 1}]
    # Capture can be turned down, and stops.
    c.endpoints["taped"].update(capture_percent=0)
    c.endpoints.delete("taped")


def test_a_replica_killed_under_load_costs_under_one_percent_of_requests(
        serving: Cumulo, churn: str) -> None:
    import os
    import signal

    c = serving.client()
    info = c.endpoints.create("loaded", "churn:1", min_replicas=2, wait=True)
    info = _show_until(c, "loaded", lambda i: _serving(i) == 2, 60, "two replicas")
    victim = info["replicas"][0]["pid"]
    with _Load(info["url"], threads=4) as load:
        time.sleep(2)
        os.kill(victim, signal.SIGKILL)
        _show_until(c, "loaded", lambda i: _serving(i) == 2 and victim not in
                    [r["pid"] for r in i["replicas"]], 60, "a replacement")
        time.sleep(1)
    total = sum(load.statuses.values())
    failed = total - load.statuses.get(200, 0)
    print(f"{failed} of {total} requests failed while a replica was killed and replaced")
    assert total > 200 and failed / total < 0.01, load.statuses
    assert c.endpoints.show("loaded")["restarts"] == 1
    c.endpoints.delete("loaded")
