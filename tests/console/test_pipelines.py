"""The pipeline designer: draw by dragging from the palette, connect typed ports, set
parameters, save, run and watch each step on the canvas; refused connections and bad
parameters; a pipeline written in Python opens drawn top to bottom, readable."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from playwright.sync_api import expect

from tests.services import Cumulo

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "churn"


def _handle(page, node: str, port: str, kind: str):  # type: ignore[no-untyped-def]
    return page.locator(f'.react-flow__handle.{kind}[data-nodeid="{node}"][data-handleid="{port}"]')


def _connect(page, source: str, output: str, target: str, input_: str) -> None:  # type: ignore[no-untyped-def]
    """Drag from an output handle to an input handle, as a person does."""
    start = _handle(page, source, output, "source").bounding_box()
    end = _handle(page, target, input_, "target").bounding_box()
    assert start and end
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=8)
    page.mouse.up()


def _drop(page, title: str, x: float, y: float) -> None:  # type: ignore[no-untyped-def]
    """Drag a component from the palette onto the canvas (HTML5 drag and drop), at a share
    of the canvas's width and height."""
    pane = page.locator(".react-flow__pane")
    box = pane.bounding_box()
    item = page.get_by_role("complementary", name="Components").get_by_role(
        "button", name=f"{title}: add to the canvas")
    item.drag_to(pane, target_position={"x": box["width"] * x, "y": box["height"] * y})


def _step_panel(page, node: str):  # type: ignore[no-untyped-def]
    page.get_by_test_id(f"step-{node}").locator(".step-head").click()
    return page.get_by_role("region", name=f"Step {node}")


def _without_positions(definition: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in definition.items() if k != "version"}
    out["nodes"] = [{k: v for k, v in n.items() if k != "position"} for n in definition["nodes"]]
    return out


def test_draw_connect_save_and_run_a_pipeline(page, console_server: Cumulo, shot) -> None:  # type: ignore[no-untyped-def]
    suffix = uuid.uuid4().hex[:6]
    c = console_server.client()
    db = f"designer_{suffix}"
    c.tables.create_database(db)
    c.tables.write(f"{db}.orders", pd.DataFrame({
        "id": [1, 2, 3, 4], "amount": [10.0, 20.0, 30.0, 40.0], "note": list("abcd")}))
    name = f"drawn-{suffix}"

    page.goto("/pipelines/new")
    expect(page.get_by_role("heading", name="New pipeline")).to_be_visible()
    _drop(page, "Import Data", 0.2, 0.15)
    _drop(page, "SQL Transform", 0.5, 0.42)
    _drop(page, "Select Columns", 0.8, 0.7)
    expect(page.locator(".react-flow__node")).to_have_count(3)
    _connect(page, "import_data", "table", "sql_transform", "t1")
    _connect(page, "sql_transform", "table", "select_columns", "table")
    expect(page.locator(".react-flow__edge")).to_have_count(2)

    panel = _step_panel(page, "import_data")
    panel.get_by_label(re.compile(r"^source")).select_option("table")
    panel.get_by_label(re.compile(r"^table")).fill(f"{db}.orders")
    panel = _step_panel(page, "sql_transform")
    panel.get_by_label(re.compile(r"^query")).fill(
        "select id, amount * 2 as doubled, note from t1 where amount > 10")
    panel = _step_panel(page, "select_columns")
    panel.get_by_label(re.compile(r"^columns")).fill("id, doubled")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Description").fill("Drawn in the designer")

    page.get_by_role("button", name="Save").click()
    expect(page.locator(".status-line")).to_have_text("Saved version 1.")
    expect(page).to_have_url(re.compile(f"/pipelines/{name}$"))

    # What is stored is what was drawn, in the export format (defaults filled in, as a Python
    # pipeline's export), with where each node was drawn.
    stored = c.pipelines.show(name)
    assert stored["source"] == "json"
    drawn = {
        "name": name, "description": "Drawn in the designer", "parameters": {},
        "nodes": [
            {"id": "import_data", "component": "import_data",
             "params": {"source": "table", "table": f"{db}.orders"}},
            {"id": "sql_transform", "component": "sql_transform", "params": {
                "query": "select id, amount * 2 as doubled, note from t1 where amount > 10"}},
            {"id": "select_columns", "component": "select_columns",
             "params": {"columns": ["id", "doubled"]}},
        ],
        "edges": [{"from": "import_data.table", "to": "sql_transform.t1"},
                  {"from": "sql_transform.table", "to": "select_columns.table"}],
    }
    assert _without_positions(stored["definition"]) == c.pipelines.validate(drawn)
    xs = [n["position"]["x"] for n in stored["definition"]["nodes"]]
    assert xs == sorted(xs) and xs[2] - xs[0] > 200  # where they were dropped

    # Run: each node shows its state live, and every one reaches succeeded.
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page).to_have_url(re.compile(f"/pipelines/{name}/runs/run-"))
    run_panel = page.get_by_role("region", name="Run")
    expect(page.locator(".step-badge.badge-succeeded")).to_have_count(3, timeout=90_000)
    expect(run_panel.locator(".state").first).to_have_text("succeeded")
    expect(run_panel.locator('a[href^="/jobs/"]')).to_have_count(3)  # each step's job
    shot(page, "pipeline-designer")
    run_id = page.url.rsplit("/", 1)[1]
    run = c.pipelines.get_run(run_id)
    out = {s["node"]: s for s in run["steps"]}["select_columns"]["outputs"]["table"]
    rows = c.tables.read(out, to="pandas")
    assert list(rows.columns) == ["id", "doubled"] and sorted(rows["doubled"]) == [40.0, 60.0, 80.0]

    # The run's address draws the graph with that run's states.
    page.reload()
    expect(page.locator(".step-badge.badge-succeeded")).to_have_count(3)
    expect(page.locator(".react-flow__edge")).to_have_count(2)

    page.goto("/pipelines")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))
    expect(row).to_contain_text("succeeded")
    expect(page.get_by_role("link", name=run_id)).to_be_visible()
    shot(page, "pipelines")


def test_bad_connections_and_parameters_are_refused(page, console_server: Cumulo) -> None:  # type: ignore[no-untyped-def]
    name = f"refused-{uuid.uuid4().hex[:6]}"
    page.goto("/pipelines/new")
    _drop(page, "Import Data", 0.2, 0.15)
    _drop(page, "Evaluate Model", 0.75, 0.5)
    expect(page.locator(".react-flow__node")).to_have_count(2)

    # A table into a model input: refused as it is drawn, and said why.
    _connect(page, "import_data", "table", "evaluate_model", "model")
    expect(page.locator(".status-line")).to_contain_text(
        "Not connected: import_data.table is a table and evaluate_model.model takes a model")
    expect(page.locator(".react-flow__edge")).to_have_count(0)
    # The same drag into the table input is drawn; a second edge into it is refused.
    _connect(page, "import_data", "table", "evaluate_model", "table")
    expect(page.locator(".react-flow__edge")).to_have_count(1)

    # From the keyboard: select a palette item, press Enter; it lands at the canvas's centre.
    page.get_by_role("button", name="Split Data: add to the canvas").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".react-flow__node")).to_have_count(3)
    panel = page.get_by_role("region", name="Step split_data")
    fraction = panel.get_by_label(re.compile(r"^fraction"))
    expect(fraction).to_have_value("0.8")  # the component's default
    fraction.fill("1.5")
    expect(fraction).to_have_attribute("aria-invalid", "true")
    expect(panel).to_contain_text("expected at most 1, got 1.5")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("button", name="Save").click()
    problems = page.get_by_role("alert", name="Problems")
    expect(problems).to_contain_text(
        "nodes[2] (split_data).params.fraction: expected at most 1, got 1.5")
    expect(page.locator(".status-line")).to_have_text("Not saved: fix the problems first.")
    answer = httpx.get(f"{console_server.url}/api/v1/pipelines/{name}",
                       headers={"authorization": f"Bearer {console_server.token}"})
    assert answer.status_code == 404  # nothing was stored

    # Fixed, the API's own validation names what is left, and the canvas marks its nodes.
    fraction.fill("0.7")
    expect(fraction).not_to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name="Validate").click()
    expect(problems).to_contain_text("input 'table' (table) is not connected")
    expect(problems).to_contain_text("evaluate_model needs parameter 'target'")
    expect(page.get_by_test_id("step-split_data")).to_have_class(re.compile("step-problem"))
    expect(page.get_by_test_id("step-evaluate_model")).to_have_class(re.compile("step-problem"))

    # Delete a step with the Delete key: its edge goes with it.
    page.get_by_test_id("step-evaluate_model").locator(".step-head").click()
    page.keyboard.press("Delete")
    expect(page.locator(".react-flow__node")).to_have_count(2)
    expect(page.locator(".react-flow__edge")).to_have_count(0)

    # Leaving for another page with unsaved changes asks first; staying keeps the drawing.
    services = page.get_by_role("navigation", name="Services")
    services.get_by_role("link", name="Jobs").click()
    leave = page.get_by_role("dialog", name="Leave without saving?")
    expect(leave).to_be_visible()
    leave.get_by_role("button", name="Cancel").click()
    expect(leave).to_be_hidden()
    expect(page).to_have_url(re.compile(r"/pipelines/new$"))
    expect(page.locator(".react-flow__node")).to_have_count(2)
    services.get_by_role("link", name="Jobs").click()
    leave.get_by_role("button", name="Leave").click()
    expect(page).to_have_url(re.compile(r"/jobs$"))


def _boxes(page) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    """Each step's box on the screen, all read in one frame (the view may be moving)."""
    return page.evaluate("""() => Object.fromEntries(
        [...document.querySelectorAll('.step-node')].map((el) => {
            const r = el.getBoundingClientRect();
            return [el.dataset.testid.slice(5), {x: r.x, y: r.y, width: r.width, height: r.height}];
        }))""")


def _reads_downward(page, definition: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    """Every edge goes down the canvas: a step below each step it takes input from (waited
    for: a layout reaches the screen a frame after the page says it is done)."""
    pairs = [[e["from"].rsplit(".", 1)[0], e["to"].rsplit(".", 1)[0]] for e in definition["edges"]]
    page.wait_for_function("""(pairs) => pairs.every(([above, below]) => {
        const box = (id) => document.querySelector(`[data-testid="step-${id}"]`)
            .getBoundingClientRect();
        return box(above).bottom < box(below).top;
    })""", arg=pairs, timeout=5000)


def test_a_python_pipeline_opens_drawn_top_to_bottom_and_readable(  # type: ignore[no-untyped-def]
        page, phone_page, console_server: Cumulo, shot) -> None:
    # The example of docs/pipelines.md: ten steps in one chain, which fit-to-view used to show
    # as a row of boxes too small to read.
    created = console_server.cli("pipelines", "create", str(EXAMPLE / "pipeline.py"))
    assert created.returncode == 0, created.stderr
    c = console_server.client()
    definition = c.pipelines.show("churn")["definition"]
    assert len(definition["nodes"]) == 10 and not any("position" in n for n in definition["nodes"])

    page.goto("/pipelines/churn")
    expect(page.get_by_role("heading", name="churn", exact=True)).to_be_visible()
    expect(page.locator(".react-flow__node")).to_have_count(10)
    expect(page.locator(".react-flow__edge")).to_have_count(len(definition["edges"]))
    viewport = page.locator(".react-flow__viewport")
    expect(viewport).not_to_have_attribute("style", re.compile(r"scale\(1\)"))  # fitted
    canvas = page.locator(".canvas").bounding_box()
    # Laid out in layers, top to bottom; each step drawn big enough to read (220 px wide at
    # full size); the view opens on the first steps, the rest a scroll away.
    _reads_downward(page, definition)
    boxes = _boxes(page)
    assert len(boxes) == 10 and all(box["width"] >= 120 for box in boxes.values()), boxes
    first = boxes["import_data"]
    assert canvas["y"] <= first["y"]
    assert first["y"] + first["height"] <= canvas["y"] + canvas["height"]
    shot(page, "pipeline-python")
    # The last steps a scroll away (scrolling moves the canvas, as a page); Fit view goes back.
    opened = viewport.get_attribute("style")
    page.mouse.move(canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2)
    for _ in range(20):  # scrolled down a little at a time, until the last step shows
        last = _boxes(page)["deploy_to_endpoint"]
        if last["y"] + last["height"] <= canvas["y"] + canvas["height"]:
            break
        page.mouse.wheel(0, 200)
        page.wait_for_timeout(50)
    assert canvas["y"] <= last["y"] and last["y"] + last["height"] <= canvas["y"] + canvas["height"]
    assert last["width"] == boxes["deploy_to_endpoint"]["width"]  # moved, not zoomed
    page.get_by_role("button", name="Fit view").click()
    expect(viewport).to_have_attribute("style", opened or "")

    # A step out of view is reached from the keyboard: focused, Enter selects it.
    page.locator('.react-flow__node[data-id="train_model"]').focus()
    page.keyboard.press("Enter")
    panel = page.get_by_role("region", name="Step train_model")
    expect(panel.get_by_role("textbox", name=re.compile(r"^target"))).to_have_value("churned")
    expect(panel.get_by_label("train", exact=False).first).to_have_value("split_data.train")
    # Its parameters are asked for when it runs.
    page.get_by_role("button", name="Run", exact=True).click()
    dialog = page.get_by_role("dialog", name="Run the pipeline")
    expect(dialog.get_by_label("threshold")).to_have_value("0.75")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    # Saved from the designer, it is the same definition, now with where its nodes are drawn.
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".status-line")).to_have_text("Saved version 2.")
    again = c.pipelines.show("churn")["definition"]
    assert all("position" in n for n in again["nodes"])
    assert _without_positions(again) == _without_positions(definition)

    # One drawn before (a row, left to right) keeps where it was drawn; Arrange lays it out
    # top to bottom.
    row = {**{k: v for k, v in again.items() if k != "version"},
           "nodes": [{**n, "position": {"x": 280 * i, "y": 0}}
                     for i, n in enumerate(again["nodes"])]}
    assert c.pipelines.create(row)["version"] == 3
    page.reload()
    expect(page.locator(".react-flow__node")).to_have_count(10)
    assert len({round(box["y"]) for box in _boxes(page).values()}) == 1
    page.get_by_role("button", name="Arrange top to bottom").click()
    expect(page.locator(".status-line")).to_have_text("Arranged top to bottom.")
    _reads_downward(page, definition)
    expect(page.get_by_text("unsaved changes")).to_be_visible()
    shot(page, "pipeline-arranged")

    # On a phone: the palette folds above the canvas, and nothing is wider than the screen.
    phone_page.goto("/pipelines/churn")
    expect(phone_page.locator(".react-flow__node")).to_have_count(10)
    toggle = phone_page.get_by_role("button", name=re.compile("^Components"))
    expect(phone_page.get_by_label("Search components")).to_be_hidden()
    toggle.click()
    expect(phone_page.get_by_label("Search components")).to_be_visible()
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
