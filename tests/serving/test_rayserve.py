"""Endpoints on a Ray cluster: a real local Ray head node running Ray Serve, the same API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import httpx
import pytest

from cumulo.errors import CumuloError, Forbidden, Invalid, NotFound
from tests.metering.test_costs import add_usage
from tests.services import ADMIN_TOKEN, Cumulo, RayHead, free_port, ray_head, start_cumulo
from tests.serving.conftest import ROWS

pytest.importorskip("ray.serve")


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    """This module's server: Ray Serve, where it starts it, listens on a free port."""
    server = start_cumulo(tmp_path_factory.mktemp("rayserve") / ".cumulo",
                          {"CUMULO_RAY_SERVE_PORT": str(free_port())})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHead]:
    with ray_head(tmp_path_factory.mktemp("ray")) as head:
        yield head


@pytest.fixture(scope="module")
def ray_cluster(serving: Cumulo, ray: RayHead) -> Iterator[str]:
    c = serving.client()
    c.clusters.create("ray1", type="ray", address="auto")
    yield "ray1"


def _until(get: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := get()):
        assert time.monotonic() < deadline, f"no {what} after {seconds}s"
        time.sleep(0.5)
    return value


def _served(c: Any, name: str) -> dict[str, Any] | None:
    variant = c.endpoints[name].metrics()["variants"].get("churn-1")
    return variant if variant and variant["requests"] >= 3 else None


def _captured(c: Any) -> list[dict[str, Any]]:
    try:
        frame = c.sql("select variant, status from endpoints.onray_capture order by status")
    except NotFound:  # the table is made with the first write
        return []
    rows: list[dict[str, Any]] = frame.to_pandas().to_dict(orient="records")
    return rows if len(rows) >= 3 else []


def test_an_endpoint_on_ray_serve_answers_like_a_local_one(
        serving: Cumulo, churn: str, ray_cluster: str, ray: RayHead) -> None:
    c = serving.client()
    info = c.endpoints.create("onray", "churn:1", cluster=ray_cluster, min_replicas=1,
                              max_replicas=2, capture_percent=100, wait=True, timeout=240)
    assert info["state"] == "in_service" and info["cluster"] == "ray1"
    assert info["url"].endswith("/onray")
    # Its own address (Ray Serve's proxy), and through the control plane, with the token:
    # the Serve replicas check it themselves, as local ones do.
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    rows = {"dataframe_records": ROWS.to_dict(orient="records")}
    anonymous = httpx.post(f"{info['url']}/invocations", json=rows, timeout=60)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    port = info["url"].split("/")[2].rsplit(":", 1)[1]
    assert httpx.post(f"{info['url']}/invocations", json=rows, timeout=60, headers={
        **auth, "Host": f"attacker.example:{port}"}).status_code == 421
    direct = httpx.post(f"{info['url']}/invocations", json=rows, headers=auth, timeout=60)
    assert direct.status_code == 200 and direct.json() == {"predictions": [1, 0]}
    assert direct.headers["x-cumulo-variant"] == "churn-1"
    assert c.endpoints["onray"].predict(ROWS) == [1, 0]
    bad = httpx.post(f"{info['url']}/invocations", headers=auth,
                     json={"dataframe_records": [{"tenure": "x", "spend": 1.0}]}, timeout=60)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "tenure"
    deadline = time.monotonic() + 30
    while True:
        shown = c.endpoints.show("onray")
        if any(r["ready"] for r in shown["replicas"]):
            break
        assert time.monotonic() < deadline, shown
        time.sleep(0.5)
    apps = httpx.get(f"{ray.dashboard}/api/serve/applications/", timeout=30).json()
    assert apps["applications"]["onray"]["status"] == "RUNNING"
    # The replicas report what they served, as local ones do: metrics, captured requests.
    metrics = _until(lambda: _served(c, "onray"), 30, "the replicas' reports")
    assert metrics["requests"] >= 3 and metrics["errors_4xx"] >= 1
    assert metrics["latency_p99_ms"] > 0
    captured = _until(lambda: _captured(c), 30, "captured requests")
    assert captured[-1] == {"variant": "churn-1", "status": 400} and len(captured) >= 3
    # Reports come from the endpoint's own replicas only, with its token.
    with pytest.raises(Forbidden, match="own replicas"):
        c.transport.request("POST", "/api/v1/endpoints/onray/reports", json={"replica": "x"})

    # A budget's scale-endpoints-to-zero holds it at zero on Ray too: in the model's place a
    # small deployment answers 503 with Retry-After, at its own address and through the
    # control plane, and no replica of the model runs; raised, the budget lets it go.
    add_usage(serving, date.today().isoformat(), 8.0, kind="endpoint", ref="elsewhere")
    c.budgets.create("rayserving", amount=5, scope="service:endpoint",
                     action="100%:scale-endpoints-to-zero")
    invoke = f"{info['url']}/invocations"
    _until(lambda: httpx.post(invoke, json=rows, headers=auth, timeout=60).status_code == 503,
           120, "the endpoint held at zero")
    for url in (invoke, f"{serving.url}/endpoints/onray/invocations"):
        refused = httpx.post(url, json=rows, headers=auth, timeout=60)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "3600", url
        assert "held at zero replicas by budget rayserving" in \
            refused.json()["error"]["message"], refused.text
    _until(lambda: not c.endpoints.show("onray")["replicas"], 60, "its replicas gone")
    deployments = httpx.get(f"{ray.dashboard}/api/serve/applications/", timeout=30).json()[
        "applications"]["onray"]["deployments"]
    assert set(deployments) == {"held"}, deployments
    c.budgets.update("rayserving", amount=1000)
    _until(lambda: httpx.post(invoke, json=rows, headers=auth, timeout=60).status_code == 200,
           240, "the model served again")
    assert c.endpoints.show("onray")["held"] is None
    c.budgets.delete("rayserving")
    c.endpoints.delete("onray")
    # Its replicas' time is metered, on the cluster it ran on.
    costs = _until(lambda: [r for r in c.costs(by="item", kind="endpoint")["rows"]
                            if r["item"] == "endpoint onray"], 30, "a usage record")
    assert costs[0]["wall_seconds"] > 0 and costs[0]["cost_usd"] > 0
    deadline = time.monotonic() + 60
    while "onray" in httpx.get(f"{ray.dashboard}/api/serve/applications/",
                               timeout=30).json()["applications"]:
        assert time.monotonic() < deadline, "the Serve application was not deleted"
        time.sleep(0.5)


def test_a_model_that_fails_on_ray_fails_the_endpoint_with_why(
        serving: Cumulo, churn: str, ray_cluster: str) -> None:
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
        c.endpoints.create("brokenray", "broken:1", cluster=ray_cluster, wait=True,
                           timeout=240)
    c.endpoints.delete("brokenray")


def test_bad_ray_endpoints_are_refused(serving: Cumulo, churn: str, ray_cluster: str) -> None:
    c = serving.client()
    with pytest.raises(NotFound, match="no cluster 'nope'"):
        c.endpoints.create("x", "churn:1", cluster="nope")
    with pytest.raises(Invalid, match="capture"):
        c.endpoints.create("x", "churn:1", cluster=ray_cluster, capture_percent=101)
    # Ray Serve's replicas run in the cluster's own Python: no environment built here.
    with pytest.raises(Invalid, match="--env model: an endpoint on a Ray cluster runs in the "
                                      "cluster's own Python environment"):
        c.endpoints.create("x", "churn:1", cluster=ray_cluster, env="model")
    assert [e["name"] for e in c.endpoints.list()] == []
