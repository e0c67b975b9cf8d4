"""Endpoints in the console: create one from a registered model version, watch it become ready,
invoke it with the sample built from the model's signature, watch its live charts, shift
traffic to a new version and roll back, edit weights, delete it."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import expect

from tests.services import Cumulo, register_churn

READY_MS = 90_000  # replicas start as new processes here (CUMULO_SERVING_PRELOAD=0)


def _rest(server: Cumulo) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30,
                        headers={"authorization": f"Bearer {server.token}"})


@pytest.fixture(scope="module")
def model(console_server: Cumulo) -> str:
    """A logistic regression with a signature (tenure: long, spend: double), registered with
    MLflow's own client through the console server's /mlflow, as version 1 of a new model."""
    return register_churn(console_server, f"churn-{uuid.uuid4().hex[:6]}", "console-endpoints")


def _register_again(server: Cumulo, name: str) -> str:
    """Version 2 of the model: the same logged model, registered once more."""
    import mlflow

    with _rest(server) as rest:
        source = rest.get(f"/api/v1/models/{name}/versions").json()[0]["source"]
    return str(mlflow.register_model(source, name).version)


@pytest.fixture(scope="module")
def split(console_server: Cumulo, model: str) -> Iterator[str]:
    """An endpoint with two variants of version 1 (blue and green), made through REST at once so
    its replica starts while the first test runs."""
    name = f"split-{uuid.uuid4().hex[:6]}"
    with _rest(console_server) as rest:
        made = rest.post("/api/v1/endpoints", json={"name": name, "variants": [
            {"model": f"{model}:1", "name": "blue", "weight": 1},
            {"model": f"{model}:1", "name": "green", "weight": 1}]})
        assert made.status_code == 201, made.text
        yield name
        rest.delete(f"/api/v1/endpoints/{name}")


class Traffic:
    """Requests to an endpoint through the control plane, a few a second, until stopped: what
    the live charts draw."""

    def __init__(self, server: Cumulo, endpoint: str) -> None:
        self.server, self.endpoint = server, endpoint
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with _rest(self.server) as rest:
            while not self.stop.wait(0.15):
                rest.post(f"/endpoints/{self.endpoint}/invocations",
                          json={"dataframe_records": [{"tenure": 2, "spend": 30.0}]})

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def test_create_invoke_watch_shift_roll_back_and_delete(  # type: ignore[no-untyped-def]
        page, console_server: Cumulo, model: str, split: str, shot) -> None:
    name = f"churn-{uuid.uuid4().hex[:6]}"
    page.goto("/endpoints")
    page.get_by_role("link", name="Create endpoint").click()
    form = page.get_by_role("form", name="Create endpoint")
    form.get_by_label("Model", exact=True).select_option(model)
    expect(form.get_by_label("Version", exact=True)).to_have_value(f"{model}:1")
    # Checked before the API is asked: a bad name, fewer max than min replicas.
    form.get_by_label("Endpoint name").fill("Bad Name")
    form.get_by_label("Min replicas").fill("2")
    form.get_by_label("Max replicas").fill("1")
    form.get_by_role("button", name="Create endpoint").click()
    expect(form.get_by_text("The name must be 1-63 lower-case letters")).to_be_visible()
    expect(form.get_by_text("At least the minimum replicas")).to_be_visible()
    form.get_by_label("Endpoint name").fill(name)
    form.get_by_label("Min replicas").fill("1")
    expect(form.get_by_text(f"cumulo endpoints create {name} --model {model}:1")).to_be_visible()
    form.get_by_role("button", name="Create endpoint").click()

    # The endpoint's page follows it until it is in service.
    expect(page).to_have_url(re.compile(f"/endpoints/{name}$"))
    header = page.locator(".page-header")
    expect(header.get_by_text("in service")).to_be_visible(timeout=READY_MS)

    # The invoke panel's sample comes from the model's signature.
    invoke = page.get_by_role("form", name="Invoke the endpoint")
    body = invoke.get_by_label("Request body (JSON)")
    expect(body).to_have_value(re.compile(r'"tenure": 1,\s*"spend": 1.5'))
    invoke.get_by_role("button", name="Send").click()
    expect(page.get_by_label("Response")).to_contain_text('"predictions"')
    expect(page.get_by_text(f"answered by {model}-1")).to_be_visible()
    # A bad body: the API's own message.
    body.fill('{"dataframe_records": [{"tenure": "x", "spend": 1}]}')
    invoke.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_contain_text("400")
    expect(page.get_by_role("alert")).to_contain_text("column 'tenure'")

    traffic = Traffic(console_server, name)
    try:
        # The charts poll every 2 s and keep what they saw: the requests chart grows.
        expect(page.get_by_label("Requests per second now")).not_to_have_text(
            re.compile(r"^(0|—)$"), timeout=15_000)
        points = page.locator("figure[aria-label='Requests per second'] circle")
        expect(points.nth(3)).to_be_attached(timeout=15_000)
        shot(page, "endpoint")

        # A canary to version 2, baked long enough to still be under way when checked.
        version = _register_again(console_server, model)
        page.get_by_role("button", name="Update traffic").click()
        shift = page.get_by_role("form", name="Shift traffic to a new model")
        expect(shift.get_by_label("Version", exact=True)).to_have_value(f"{model}:{version}")
        shift.get_by_label("Canary traffic (%)").fill("20")
        shift.get_by_label("Bake time per step (s)").fill("600")
        shift.get_by_role("button", name="Start traffic shift").click()
        rollout = page.get_by_role("region", name=f"Traffic shift to {model}-{version}")
        expect(rollout).to_contain_text("gets 20%")
        with _rest(console_server) as rest:
            shown = rest.get(f"/api/v1/endpoints/{name}").json()
            assert shown["state"] == "updating"
            assert [(v["name"], v["weight"]) for v in shown["variants"]] == [
                (f"{model}-1", 80.0), (f"{model}-{version}", 20.0)]
            assert shown["rollout"]["strategy"] == "canary"
            assert shown["rollout"]["state"] in ("shifting", "baking")
            # Weights wait for the shift to end.
            refused = rest.patch(f"/api/v1/endpoints/{name}", json={"weights": {f"{model}-1": 1}})
            assert refused.status_code == 409 and "shifting traffic" in refused.text
        expect(page.get_by_role("progressbar", name="Shift progress")).to_be_visible()

        rollout.get_by_role("button", name="Roll back").click()
        expect(page.get_by_text("Last traffic shift")).to_be_visible(timeout=30_000)
        expect(header.get_by_text("in service")).to_be_visible()
        with _rest(console_server) as rest:
            shown = rest.get(f"/api/v1/endpoints/{name}").json()
            assert shown["rollout"]["state"] == "rolled_back"
            assert [v["name"] for v in shown["variants"]] == [f"{model}-1"]

        # The list: state, variants with their traffic, requests a second.
        page.get_by_role("link", name="Endpoints").first.click()
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))
        expect(row).to_contain_text("in service")
        expect(row).to_contain_text(f"{model}:1 · 100%")
        expect(row.locator("td").nth(4)).not_to_have_text(re.compile(r"^(0|—)$"), timeout=10_000)
        expect(page.get_by_role("row").filter(has_text=split)).to_be_visible()
        shot(page, "endpoints")

        # Home: the endpoint serving, with its traffic.
        page.get_by_role("link", name="Home").click()
        card = page.get_by_role("link", name=re.compile(r"^Endpoints: \d+"))
        expect(card).to_contain_text(re.compile(r"[1-9]\d* serving"))
        expect(card).not_to_contain_text(" 0 requests/s", timeout=10_000)
        mine = page.get_by_role("link", name=name, exact=True)
        home_row = page.get_by_role("row").filter(has=mine)
        expect(home_row).to_contain_text("in service")
        expect(home_row.locator("td").nth(4)).not_to_have_text(re.compile(r"^(0|—)$"),
                                                               timeout=10_000)
        page.go_back()
    finally:
        traffic.close()

    row.get_by_role("link", name=name).click()
    page.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog", name=f"Delete endpoint {name}?")
    dialog.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"/endpoints$"))
    expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
    with _rest(console_server) as rest:
        assert rest.get(f"/api/v1/endpoints/{name}").status_code == 404


def test_edit_weights_on_a_phone(phone_page, console_server: Cumulo, split: str) -> None:  # type: ignore[no-untyped-def]
    page = phone_page
    page.goto(f"/endpoints/{split}")
    expect(page.locator(".page-header").get_by_text("in service")).to_be_visible(timeout=READY_MS)
    page.get_by_role("button", name="Update traffic").click()
    page.get_by_role("tab", name="Edit weights").click()
    weights = page.get_by_role("form", name="Edit weights")
    weights.get_by_label("Weight of blue").fill("3")
    weights.get_by_label("Weight of green").fill("1")
    expect(weights.get_by_text("75% of the traffic")).to_be_visible()
    weights.get_by_role("button", name="Save weights").click()
    variants = page.get_by_role("region", name="Variants")
    expect(variants.get_by_role("row", name=re.compile("^blue"))).to_contain_text("75%")
    with _rest(console_server) as rest:
        shown = rest.get(f"/api/v1/endpoints/{split}").json()
        assert [(v["name"], v["weight"]) for v in shown["variants"]] == [("blue", 3.0),
                                                                         ("green", 1.0)]
        # The API's checks: a variant it does not have, weights with a new model.
        unknown = rest.patch(f"/api/v1/endpoints/{split}", json={"weights": {"red": 1}})
        assert unknown.status_code == 400 and "no variant 'red'" in unknown.text
        both = rest.patch(f"/api/v1/endpoints/{split}",
                          json={"weights": {"blue": 1}, "model": "x:1"})
        assert both.status_code == 400 and "not both" in both.text
    # No traffic at all: refused with the API's message, nothing changed.
    page.get_by_role("button", name="Update traffic").click()
    page.get_by_role("tab", name="Edit weights").click()
    weights.get_by_label("Weight of blue").fill("0")
    weights.get_by_label("Weight of green").fill("0")
    weights.get_by_role("button", name="Save weights").click()
    expect(weights.get_by_role("alert")).to_contain_text("at least one variant must take traffic")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    page.goto("/endpoints")
    expect(page.get_by_role("link", name=split)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
