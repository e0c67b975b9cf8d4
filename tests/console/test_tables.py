"""The Tables pages: loading files into tables through the page, schema, sample rows,
versions (history, chart, restore, compare), the crawler, and the API's errors."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from urllib.parse import unquote

import httpx
from playwright.sync_api import expect

from tests.console import notice


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_load_a_file_then_a_second_version(page, tmp_path: Path, shot) -> None:  # type: ignore[no-untyped-def]
    db = _name("shop")
    orders = tmp_path / "orders.csv"
    orders.write_text("id,amount,region\n1,9.5,eu\n2,3.25,us\n3,1.0,eu\n")
    page.goto("/tables")
    page.get_by_role("link", name="Load data").click()
    page.get_by_label("File", exact=True).set_input_files(orders)
    expect(page.get_by_label("Table", exact=True)).to_have_value("orders")  # named after the file
    page.get_by_label("Database", exact=True).fill(db)
    expect(page.get_by_text("a new database: created with the table")).to_be_visible()
    page.get_by_role("button", name="Load", exact=True).click()

    expect(page).to_have_url(re.compile(rf"/tables/{db}/orders$"))
    loaded = notice(page, f"Loaded 3 rows from orders.csv into {db}.orders: version 0")
    expect(loaded).to_be_visible()
    schema = page.get_by_role("tabpanel")
    expect(schema.get_by_role("row", name=re.compile(r"amount\s+double"))).to_be_visible()
    expect(schema.get_by_role("row", name=re.compile(r"id\s+int64"))).to_be_visible()
    expect(schema).to_contain_text(f"lake/{db}/orders")
    query = page.get_by_role("link", name="Query in SQL").first.get_attribute("href") or ""
    assert unquote(query) == f"/sql?q=SELECT * FROM {db}.orders LIMIT 100"

    page.get_by_role("tab", name="Sample").click()
    expect(page).to_have_url(re.compile(r"\?tab=sample$"))
    sample = page.get_by_role("tabpanel")
    expect(sample.locator("caption")).to_have_text(f"First 3 rows of {db}.orders at version 0")
    expect(sample.get_by_role("row", name=re.compile(r"2\s+3\.25\s+us"))).to_be_visible()

    # A second file, appended: version 1.
    more = tmp_path / "more.csv"
    more.write_text("id,amount,region\n4,7,us\n5,2.5,eu\n")
    page.get_by_role("link", name="Load data").click()
    expect(page.get_by_label("Database", exact=True)).to_have_value(db)
    expect(page.get_by_label("Table", exact=True)).to_have_value("orders")
    page.get_by_label("File", exact=True).set_input_files(more)
    expect(page.get_by_text("existing table: a new version")).to_be_visible()
    expect(page.get_by_label("Append the rows", exact=True)).to_be_checked()
    page.get_by_role("button", name="Load", exact=True).click()
    expect(notice(page, "Loaded 2 rows from more.csv")).to_be_visible()
    cards = page.get_by_label("Summary", exact=True)
    expect(cards).to_contain_text("v1")
    expect(cards).to_contain_text("5")
    page.get_by_role("tab", name="Sample").click()
    expect(page.get_by_role("tabpanel").locator("caption")).to_have_text(
        f"First 5 rows of {db}.orders at version 1")
    shot(page, "table")

    page.get_by_role("tab", name="History").click()
    history = page.get_by_role("tabpanel")
    expect(history.locator("caption")).to_have_text("2 versions, newest first")
    # version, time, operation, rows added, ..., rows in the table then
    v1 = re.compile(r"^v1 ?current .*WRITE \(append\)\s+2\b.*\b5\b")
    v0 = re.compile(r"^v0 .*WRITE \(append\)\s+3\b.*\b3\b")
    expect(history.get_by_role("row", name=v1)).to_be_visible()
    expect(history.get_by_role("row", name=v0)).to_be_visible()
    chart = history.get_by_role("figure", name="Rows at each version")
    expect(chart.locator("circle")).to_have_count(2)
    expect(chart.locator("polyline")).to_have_count(1)
    shot(page, "table-history")

    # The old version's rows, then a restore of it (asked first).
    history.get_by_role("button", name="View rows at version 0").click()
    expect(page.get_by_label("Version", exact=True)).to_have_value("0")
    expect(page.get_by_role("tabpanel").locator("caption")).to_have_text(
        f"First 3 rows of {db}.orders at version 0")
    page.get_by_role("tab", name="History").click()
    page.get_by_role("button", name="Restore version 0").click()
    page.get_by_role("dialog", name=f"Restore {db}.orders to version 0?") \
        .get_by_role("button", name="Restore").click()
    expect(notice(page, f"Restored {db}.orders to version 0: it is now version 2")).to_be_visible()
    expect(page.get_by_role("tabpanel").locator("caption")).to_have_text("3 versions, newest first")
    expect(cards).to_contain_text("v2")

    # Compare what the restore undid.
    compare = page.get_by_role("region", name="Compare versions")
    compare.get_by_label("From", exact=True).select_option("1")
    compare.get_by_label("to", exact=True).select_option("2")
    compare.get_by_role("button", name="Compare").click()
    expect(compare).to_contain_text("From v1 to v2: 0 rows added, 2 removed")


def test_crawl_files_into_a_table(page, rest: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    bucket = "crawl-" + uuid.uuid4().hex[:8]
    db = _name("raw")
    rest.post("/files/buckets", json={"name": bucket}).raise_for_status()
    rest.put(f"/files/buckets/{bucket}/objects/landing/sales/part-0.csv",
             content=b"day,amount\n2026-11-01,3.5\n2026-11-02,4.25\n").raise_for_status()
    page.goto("/tables")
    page.get_by_role("link", name="Run crawler").click()
    page.get_by_label("Bucket", exact=True).select_option(bucket)
    page.get_by_label("Prefix", exact=True).fill("landing/")
    page.get_by_label("Database", exact=True).fill(db)
    page.get_by_role("button", name="Run crawler").click()
    report = page.get_by_role("region", name="Crawler report")
    expect(report).to_contain_text("1 file scanned")
    expect(report).to_contain_text("1 table created")
    report.get_by_role("link", name=f"{db}.sales").click()

    expect(page).to_have_url(re.compile(rf"/tables/{db}/sales$"))
    expect(page.get_by_label("Summary", exact=True)).to_contain_text("external")
    expect(page.get_by_role("tab")).to_have_count(2)  # an external table has no history
    expect(page.get_by_role("tabpanel").get_by_role("row", name=re.compile(r"amount\s+double"))) \
        .to_be_visible()
    page.get_by_role("tab", name="Sample").click()
    page.get_by_role("button", name="Preview 100 rows").click()
    rows = page.get_by_role("tabpanel").get_by_role("row", name=re.compile(r"2026-11-02\s+4\.25"))
    expect(rows).to_be_visible()


def test_a_database_from_the_page_and_a_bad_file(page, rest: httpx.Client,  # type: ignore[no-untyped-def]
                                                 tmp_path: Path) -> None:
    db = _name("lab")
    page.goto("/tables")
    page.get_by_label("Database name", exact=True).fill(db)
    page.get_by_role("button", name="Create database").click()
    expect(page).to_have_url(re.compile(rf"/tables/{db}$"))
    expect(page.get_by_text(f"No tables in {db} yet")).to_be_visible()

    # A file that is not what its name says: the API's own message, and no table is left.
    bad = tmp_path / "bad.parquet"
    bad.write_text("id,name\n1,a\n")
    page.get_by_role("link", name="Load data").first.click()
    expect(page.get_by_label("Database", exact=True)).to_have_value(db)
    page.get_by_label("File", exact=True).set_input_files(bad)
    page.get_by_role("button", name="Load", exact=True).click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("bad.parquet is not a Parquet file")
    expect(alert).to_contain_text("400")
    assert rest.get(f"/tables/{db}/bad").status_code == 404
    # Into a database the page makes for the load: that database goes again with the failure.
    fresh = _name("fresh")
    page.get_by_label("Database", exact=True).fill(fresh)
    with page.expect_response(lambda r: r.request.method == "DELETE"
                              and r.url.endswith(f"/tables/databases/{fresh}")) as dropped:
        page.get_by_role("button", name="Load", exact=True).click()
    assert dropped.value.ok
    expect(alert).to_contain_text("bad.parquet is not a Parquet file")
    assert fresh not in [d["name"] for d in rest.get("/tables/databases").json()]
    page.get_by_label("Database", exact=True).fill(db)

    # The right format for it, chosen by hand, loads.
    page.get_by_label("Format", exact=True).select_option("csv")
    page.get_by_role("button", name="Load", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/tables/{db}/bad$"))
    expect(notice(page, "Loaded 1 row from bad.parquet")).to_be_visible()
