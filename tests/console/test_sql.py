"""The SQL editor: completion, running, paging, charts, downloads, history, errors, cancel."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import expect

ROWS = 250


def shown(first: int, last: int, total: int) -> str:
    """The pager's words for rows first to last of total."""
    return f"Rows {first}\u2013{last} of {total}"


@dataclass
class Lake:
    database: str
    table: str

    @property
    def name(self) -> str:
        return f"{self.database}.{self.table}"


@pytest.fixture(scope="module")
def lake(rest: httpx.Client) -> Lake:
    """A table of 250 rows (more than a page) loaded from a CSV through the REST API."""
    tag = uuid.uuid4().hex[:6]
    found = Lake(f"sqlui_{tag}", f"hits_{tag}")
    rest.post("/tables/databases", json={"name": found.database}).raise_for_status()
    lines = ["id,city,visits,revenue,day"] + [
        f"{i},{['Lyon', 'Oslo', 'Lima', 'Pune', 'Kobe'][i % 5]},{i % 17 + 1},{i * 1.25:.2f},"
        f"2026-01-{i % 28 + 1:02d}" for i in range(ROWS)]
    answer = rest.put(f"/tables/{found.database}/{found.table}/data", params={"format": "csv"},
                     content="\n".join(lines).encode())
    answer.raise_for_status()
    assert answer.json()["rows_added"] == ROWS
    return found


def test_write_with_completion_run_page_chart_download_and_reopen(page, lake: Lake, shot) -> None:  # type: ignore[no-untyped-def]
    page.goto("/sql")
    editor = page.get_by_label("SQL query")
    editor.click()
    editor.press_sequentially("select id, city, visits, revenue from ")
    # Part of the table's name offers database.table; Tab takes it.
    editor.press_sequentially(lake.table[:7])
    expect(page.get_by_role("option", name=re.compile(re.escape(lake.name)))).to_be_visible()
    editor.press("Tab")
    expect(editor).to_have_value(f"select id, city, visits, revenue from {lake.name}")
    # The columns of the table the query names are offered too; Enter takes one.
    editor.press_sequentially(" where visi")
    expect(page.get_by_role("option", name=re.compile("visits"))).to_be_visible()
    editor.press("Enter")
    editor.press_sequentially(" > 0 order by id")
    sql = f"select id, city, visits, revenue from {lake.name} where visits > 0 order by id"
    expect(editor).to_have_value(sql)

    editor.press("Control+Enter")
    results = page.get_by_role("region", name="Results")
    expect(results.get_by_text(shown(1, 100, ROWS))).to_be_visible()
    rows = results.locator("tbody tr")
    expect(rows).to_have_count(100)
    expect(rows.first.locator("td").first).to_have_text("0")
    expect(results.get_by_text("Data scanned")).to_be_visible()
    expect(results.locator(".sql-stats")).to_contain_text("$")
    shot(page, "sql")

    # Server-side pages: the next one starts at row 101.
    results.get_by_role("button", name="Next page").click()
    expect(results.get_by_text(shown(101, 200, ROWS))).to_be_visible()
    expect(rows.first.locator("td").first).to_have_text("100")
    results.get_by_role("button", name="Next page").click()
    expect(results.get_by_text(shown(201, ROWS, ROWS))).to_be_visible()
    expect(results.get_by_role("button", name="Next page")).to_be_disabled()
    results.get_by_role("button", name="Previous page").click()
    expect(results.get_by_text(shown(101, 200, ROWS))).to_be_visible()

    # A bar chart of visits by id, drawn from the result's rows.
    results.get_by_role("button", name="Chart").click()
    results.get_by_label("Chart type").select_option("bar")
    results.get_by_label("X axis").select_option("id")
    results.get_by_label("visits", exact=True).check()
    results.get_by_label("revenue", exact=True).uncheck()
    chart = results.get_by_role("figure", name="visits by id")
    expect(chart.locator("svg rect").first).to_be_visible()
    expect(chart.locator("svg rect")).to_have_count(ROWS)  # every row, not only the page shown

    # Every row as CSV, through the results' download link (the cookie signs the GET in).
    with page.expect_download() as caught:
        results.get_by_role("link", name="Download CSV").click()
    lines = Path(caught.value.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0].replace('"', "") == "id,city,visits,revenue"
    assert len(lines) == ROWS + 1
    href = results.get_by_role("link", name="Download Parquet").get_attribute("href")
    assert href is not None and "format=parquet" in href

    # The history has it, with what it scanned; opening it brings back its text and results.
    page.get_by_role("button", name="Clear").click()
    expect(editor).to_have_value("")
    page.get_by_role("tab", name="History").click()
    opener = page.get_by_role("button", name=f"Open query {sql}")
    entry = page.get_by_role("row").filter(has=opener).first
    expect(entry).to_contain_text("succeeded")
    expect(entry).to_contain_text(re.compile(r"\d+(\.\d)? (B|KB|MB)"))
    expect(entry).to_contain_text("$")
    entry.get_by_role("button", name=f"Open query {sql}").click()
    expect(editor).to_have_value(sql)
    expect(page.get_by_role("tab", name="Results")).to_have_attribute("aria-selected", "true")
    expect(results.get_by_text(shown(1, 100, ROWS))).to_be_visible()
    expect(rows).to_have_count(100)

    # Two series of an aggregate, side by side.
    editor.fill(f"select city, sum(visits) as visits, sum(revenue) as revenue from {lake.name}\n"
                "group by city order by city")
    editor.press("Control+Enter")
    expect(results.get_by_text(shown(1, 5, 5))).to_be_visible()
    results.get_by_role("button", name="Chart").click()
    results.get_by_label("Chart type").select_option("bar")
    results.get_by_label("revenue", exact=True).check()
    chart = results.get_by_role("figure", name="visits, revenue by city")
    expect(chart.locator("svg rect")).to_have_count(10)
    expect(chart).to_contain_text("Lyon")
    shot(page, "sql-chart")


def test_errors_show_the_apis_message(page, lake: Lake, rest: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    missing = f"select * from {lake.database}.nothing_here"
    said = rest.post("/sql", json={"sql": missing}).json()["error"]["message"]
    page.goto("/sql?q=" + quote(missing))
    editor = page.get_by_label("SQL query")
    expect(editor).to_have_value(missing)  # ?q= fills the editor
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_role("alert")).to_contain_text(said)
    expect(editor).to_have_value(missing)

    editor.fill("select 1\nfrom")
    editor.press("Control+Enter")
    expect(page.get_by_role("alert")).to_contain_text("syntax error")
    expect(editor).to_have_value("select 1\nfrom")


def test_schema_sidebar_inserts_names(page, lake: Lake) -> None:  # type: ignore[no-untyped-def]
    page.goto("/sql")
    editor = page.get_by_label("SQL query")
    editor.fill("select ")
    # Arrow keys move through the suggestions; a function comes with its parentheses.
    editor.press_sequentially("co")
    options = page.locator("main").get_by_role("option")  # not the top bar's project picker
    expect(options.first).to_have_attribute("aria-selected", "true")
    count = options.filter(has_text=re.compile(r"^f?count")).first
    for _ in range(10):
        if count.get_attribute("aria-selected") == "true":
            break
        editor.press("ArrowDown")
    expect(count).to_have_attribute("aria-selected", "true")
    editor.press("Enter")
    editor.press_sequentially("*")
    expect(editor).to_have_value("select count(*)")
    # Tab indents; Escape then Tab leaves the editor.
    editor.press("End")
    editor.press("Tab")
    expect(editor).to_have_value("select count(*)  ")
    editor.press("Escape")
    editor.press("Tab")
    expect(editor).not_to_be_focused()

    editor.fill("select ")
    sidebar = page.get_by_role("region", name="Tables")
    sidebar.get_by_label("Filter tables").fill(lake.table)
    sidebar.get_by_role("button", name=f"Columns of {lake.name}").click()
    sidebar.get_by_role("button", name="revenue", exact=True).click()
    editor.press_sequentially(" from ")
    sidebar.get_by_role("button", name=lake.table, exact=True).click()
    expect(editor).to_have_value(f"select revenue from {lake.name}")
    # Preview runs the table's first rows, and leaves the query being written as it was.
    sidebar.get_by_role("button", name=f"Preview {lake.name}").click()
    results = page.get_by_role("region", name="Results")
    expect(results.get_by_text(shown(1, 100, 100))).to_be_visible()
    expect(editor).to_have_value(f"select revenue from {lake.name}")


def test_a_long_query_shows_its_time_and_can_be_cancelled(page) -> None:  # type: ignore[no-untyped-def]
    page.goto("/sql")
    editor = page.get_by_label("SQL query")
    editor.fill(f"select count(*) from range(100000000000) a -- {uuid.uuid4().hex[:8]}")
    editor.press("Control+Enter")
    expect(page.get_by_role("status").filter(has_text="Running…")).to_be_visible()
    cancel = page.get_by_role("button", name="Cancel")
    expect(cancel).to_be_enabled()
    cancel.click()
    expect(page.get_by_role("alert")).to_contain_text("cancelled")
    page.get_by_role("tab", name="History").click()
    expect(page.get_by_role("row").filter(has_text="range(100000000000)").first).to_contain_text("cancelled")


def test_a_phone_screen_scrolls_nothing_sideways(phone_page, lake: Lake) -> None:  # type: ignore[no-untyped-def]
    page = phone_page
    page.goto("/sql?q=" + quote(f"select * from {lake.name}"))
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_role("region", name="Results").get_by_text(f"of {ROWS}")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
