"""Streams in the console: create one, watch records put through the SDK arrive in the live
tail (paused and resumed without losing any, and on into a split shard's children), its shards
and throughput, put one from the page, delete it; a consumer group's lag; and what a data
scientist (who may put but not create or delete) sees on a phone."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import expect

from tests.console.conftest import Watched
from tests.services import Cumulo

SEEN_MS = 15_000  # what the page learns from the stream's figures, asked every 2 s


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _tail_row(page, text: str):  # type: ignore[no-untyped-def]
    return page.get_by_role("table", name="Records").get_by_role("row").filter(has_text=text)


def test_create_tail_pause_put_and_delete(page, console_server: Cumulo,  # type: ignore[no-untyped-def]
                                          rest: httpx.Client, shot) -> None:
    name = _unique("clicks")
    page.goto("/")
    page.get_by_role("navigation", name="Services").get_by_role("link", name="Streams").click()
    expect(page.locator("main h1")).to_have_text("Streams")
    form = page.get_by_role("form", name="Create a stream")
    form.get_by_label("Stream name").fill("bad name!")
    expect(form.get_by_role("alert")).to_contain_text("The name must be 1-128 letters")
    expect(form.get_by_role("button", name="Create stream")).to_be_disabled()
    form.get_by_label("Stream name").fill(name)
    form.get_by_label("Shards").fill("2")
    form.get_by_label("Retention").fill("2d")
    form.get_by_role("button", name="Create stream").click()
    row = page.get_by_role("table", name="Streams").get_by_role("row").filter(
        has=page.get_by_role("link", name=name, exact=True))
    expect(row).to_contain_text("active")
    expect(row.locator("td").nth(2)).to_have_text("2")
    expect(row.locator("td").nth(3)).to_have_text("2 d")
    shot(page, "streams")

    row.get_by_role("link", name=name).click()
    expect(page).to_have_url(re.compile(f"/streams/{name}$"))
    shards = page.get_by_role("table", name="Shards")
    expect(shards.get_by_role("row", name=re.compile("^shardId-"))).to_have_count(2)
    first = shards.get_by_role("row", name=re.compile("^shardId-000000000000"))
    expect(first).to_contain_text("0 \u2013 170141\u2026105727")  # the ends of its range
    expect(first).to_contain_text("50% of the keys")
    expect(first).to_contain_text("open")
    expect(page.get_by_role("status").filter(has_text="Following 2 shards live")).to_be_visible()

    # Records put through the SDK reach the tail through its long polls, newest first.
    sdk = console_server.client()
    for i in range(6):
        sdk.streams.put(name, json.dumps({"n": i}), partition_key=f"user-{i}")
    sdk.streams.put(name, b"\xff\xfe", partition_key="binary")
    records = page.get_by_role("table", name="Records")
    expect(records.locator("tbody tr")).to_have_count(7)
    expect(_tail_row(page, '{"n": 5}')).to_contain_text("user-5")
    expect(_tail_row(page, "base64://4=")).to_contain_text("binary")
    expect(records.locator("tbody tr").first).to_contain_text("binary")
    expect(page.get_by_label("Records kept", exact=True)).to_have_text("7", timeout=SEEN_MS)
    # The throughput chart has points (one per two answers of the stream's figures).
    expect(page.get_by_role("figure", name="Records per second").locator("circle").nth(1)) \
        .to_be_attached(timeout=SEEN_MS)

    # Paused, the tail shows nothing new; resumed, it shows what came meanwhile.
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status").filter(has_text="Paused")).to_be_visible()
    sdk.streams.put(name, "while paused", partition_key="later")
    expect(page.get_by_label("Records kept", exact=True)).to_have_text("8", timeout=SEEN_MS)
    expect(_tail_row(page, "while paused")).to_have_count(0)
    page.get_by_role("button", name="Resume").click()
    expect(_tail_row(page, "while paused")).to_contain_text("later")

    # Put from the page.
    put = page.get_by_role("form", name="Put a record")
    put.get_by_label("Partition key").fill("from-page")
    put.get_by_label("Data").fill("hello from the console")
    put.get_by_role("button", name="Put").click()
    expect(put.get_by_role("status")).to_contain_text("Written to shardId-")
    expect(_tail_row(page, "hello from the console")).to_contain_text("from-page")

    # A split (from elsewhere) closes shard 0: the tail reads it to its end and goes on into its
    # children, which take the records whose keys shard 0 took.
    split = rest.post(f"/streams/{name}/split", json={"shard": "shardId-000000000000"})
    assert split.status_code == 200, split.text
    expect(first).to_contain_text("closed", timeout=SEEN_MS)
    children = shards.get_by_role("row").filter(
        has=page.get_by_title("split of shardId-000000000000"))
    expect(children).to_have_count(2)
    keys = [k for k in (f"key-{i}" for i in range(100))
            if int(hashlib.md5(k.encode()).hexdigest(), 16) < 2**127][:4]
    for key in keys:
        sdk.streams.put(name, f"after the split ({key})", partition_key=key)
    expect(page.get_by_role("status").filter(has_text="Following 3 shards live")).to_be_visible(
        timeout=SEEN_MS)
    for key in keys:
        expect(_tail_row(page, f"after the split ({key})")).to_contain_text("shardId-00000000000",
                                                                            timeout=SEEN_MS)
    expect(page.get_by_label("Records kept", exact=True)).to_have_text("13", timeout=SEEN_MS)
    page.locator("main h1").scroll_into_view_if_needed()
    shot(page, "stream")

    page.get_by_role("button", name="Delete", exact=True).click()
    dialog = page.get_by_role("dialog", name=f"Delete stream {name}?")
    expect(dialog).to_contain_text("13 records kept")
    dialog.get_by_role("button", name="Delete stream").click()
    expect(page).to_have_url(re.compile(r"/streams$"))
    expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
    assert rest.get(f"/streams/{name}").status_code == 404


@pytest.fixture
def scientist_phone(browser, console_server: Cumulo) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A page on a phone-sized screen, signed in as a new data scientist: they list, read and
    put records, but neither create nor delete streams."""
    token = "ds-" + uuid.uuid4().hex
    console_server.add_user(_unique("ds"), token, role="data-scientist")
    context = browser.new_context(base_url=console_server.url,
                                  viewport={"width": 390, "height": 844})
    context.set_default_timeout(20_000)
    context.add_cookies([{"name": "cumulo_token", "value": token, "url": console_server.url,
                          "httpOnly": True, "sameSite": "Strict"}])
    watched = Watched(context.new_page(), console_server)
    yield watched.page
    context.close()
    watched.check()


def test_a_data_scientist_puts_but_neither_creates_nor_deletes(  # type: ignore[no-untyped-def]
        scientist_phone, rest: httpx.Client) -> None:
    page = scientist_phone
    name = _unique("events")
    assert rest.post("/streams", json={"name": name, "shards": 1}).status_code == 201
    page.goto("/streams")
    link = page.get_by_role("link", name=name, exact=True)
    expect(link).to_be_visible()
    expect(page.get_by_role("form", name="Create a stream")).to_have_count(0)
    expect(page.get_by_role("button", name=f"Delete stream {name}")).to_have_count(0)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1

    link.click()
    expect(page.get_by_role("status").filter(has_text="Following 1 shard live")).to_be_visible()
    expect(page.get_by_role("button", name="Delete", exact=True)).to_have_count(0)
    put = page.get_by_role("form", name="Put a record")
    put.get_by_label("Partition key").fill("k")
    put.get_by_label("Data").fill("one\ntwo\nthree")
    put.get_by_label("One record a line").check()
    put.get_by_role("button", name="Put").click()
    expect(put.get_by_role("status")).to_contain_text("3 records written")
    expect(page.get_by_role("table", name="Records").locator("tbody tr")).to_have_count(3)
    expect(page.get_by_role("alert")).to_have_count(0)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    rest.delete(f"/streams/{name}")


def test_a_consumer_groups_lag(page, console_server: Cumulo,  # type: ignore[no-untyped-def]
                               rest: httpx.Client) -> None:
    name = _unique("orders")
    sdk = console_server.client()
    sdk.streams.create(name, shards=1)
    for i in range(5):
        sdk.streams.put(name, f"order {i}", partition_key=f"o{i}")
    # A member joins and leaves before it checkpoints anything: the group is 5 records behind.
    sdk.streams.consume(name, group="billing").close()
    page.goto(f"/streams/{name}")
    group = page.get_by_role("table", name="Consumer group billing")
    expect(group.get_by_role("row").filter(has_text="shardId-000000000000")).to_contain_text("5")
    expect(page.get_by_role("heading", name="billing")).to_contain_text("5 records behind")
    expect(page.get_by_role("figure", name="Records behind")).to_be_visible()
    expect(page.get_by_role("table", name="Deliveries")).to_have_count(0)
    expect(page.get_by_text("None yet. A delivery writes the stream")).to_be_visible()
    rest.delete(f"/streams/{name}")
