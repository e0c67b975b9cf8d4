"""A budget's scale-endpoints-to-zero against a real server and a real endpoint: its replicas
stop when the budget is crossed and stay stopped (a request is refused with 503 and
Retry-After, naming the budget, instead of waking a replica), and its settings come back when
the month turns."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.metering.test_costs import add_usage
from tests.services import Cumulo, register_churn, start_cumulo


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    cumulo = start_cumulo(tmp_path_factory.mktemp("budget-endpoints") / ".cumulo",
                          {"CUMULO_BUDGET_CHECK_SECONDS": "3600"})
    yield cumulo
    cumulo.stop()


def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return found


def test_scale_endpoints_to_zero_and_back(server: Cumulo) -> None:
    c = server.client()
    register_churn(server, "churn", "budget-tests")
    c.endpoints.create("churn", "churn:1", min_replicas=1, wait=True)
    ready = _until(lambda: (i := c.endpoints.show("churn"))["replicas"] and i, 60,
                   "a replica")
    assert ready["min_replicas"] == 1 and ready["scale_to_zero_after"] == 300
    c.budgets.create("serving", amount=5, scope="service:endpoint",
                     action="100%:scale-endpoints-to-zero")
    add_usage(server, "2026-06-10", 8.0, kind="endpoint", ref="churn")

    crossed = next(b for b in c.budgets.check(at="2026-06-10T18:00:00Z")["budgets"]
                   if b["budget"] == "serving")
    assert crossed["took"] == ["scale-endpoints-to-zero"]
    assert c.budgets.show("serving")["scaled"] == ["churn"]
    info = c.endpoints.show("churn")
    assert (info["min_replicas"], info["scale_to_zero_after"]) == (0, 0)
    _until(lambda: not c.endpoints.show("churn")["replicas"], 60, "scaling to zero")
    assert info["held"] == "budget serving"
    shown = server.cli("endpoints", "show", "churn")
    assert "held at zero" in shown.stdout and "budget serving" in shown.stdout, shown.stdout
    # Held: a request, at the endpoint's own address or through the control plane, is
    # refused at once, and wakes no replica.
    auth = {"Authorization": f"Bearer {server.token}"}
    body = {"dataframe_records": [{"tenure": 3, "spend": 25.0}]}
    for url in (f"{info['url']}/invocations", f"{server.url}/endpoints/churn/invocations"):
        refused = httpx.post(url, headers=auth, json=body, timeout=10)
        assert refused.status_code == 503, (url, refused.text)
        assert refused.headers.get("retry-after") == "3600", (url, refused.headers)
        assert "held at zero replicas by budget serving" in \
            refused.json()["error"]["message"], refused.text
    time.sleep(1.5)  # two steps of the endpoint manager
    assert not c.endpoints.show("churn")["replicas"]

    turned = next(b for b in c.budgets.check(at="2026-07-01T00:05:00Z")["budgets"]
                  if b["budget"] == "serving")
    assert turned["undid"] == ["scale-endpoints-to-zero"]
    info = c.endpoints.show("churn")
    assert (info["min_replicas"], info["scale_to_zero_after"]) == (1, 300)
    assert c.budgets.show("serving")["scaled"] == [] and info["held"] is None
    _until(lambda: c.endpoints.show("churn")["replicas"], 60, "a replica again")
    answered = httpx.post(f"{info['url']}/invocations", headers=auth, json=body, timeout=30)
    assert answered.status_code == 200, answered.text
