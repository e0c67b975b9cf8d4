"""Notebooks in the console, in the real Chromium: a user signs in, creates a notebook from the
Notebooks page and opens it in a new tab, where JupyterLab (through Cumulo's proxy, on the
sign-in cookie alone) runs a `%%sql` cell on a table the user made through the SDK and trains a
small model on it; saved, stopped from the console (its address then says so, with a Start
button) and started again, the notebook file is still there, with its outputs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.console.conftest import Watched
from tests.services import Cumulo

# JupyterLab loads a few MB of scripts and starts a kernel; on a busy 2-core machine that
# takes tens of seconds. Generous, but each wait is bounded.
LAB_MS = 150_000
KERNEL_MS = 120_000
STATE_MS = 120_000
ROWS = 240
SAVED = "points.ipynb"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def user(console_server: Cumulo) -> tuple[str, str]:
    """A new user (a developer): their name and token."""
    name = _unique("nbuser")
    token = "nb-" + uuid.uuid4().hex
    console_server.add_user(name, token, role="developer")
    return name, token


@pytest.fixture
def context(browser, console_server: Cumulo) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A browser context with no sign-in yet; its console tab is watched for foreign hosts."""
    context = browser.new_context(base_url=console_server.url,
                                  viewport={"width": 1366, "height": 860})
    context.set_default_timeout(30_000)
    yield context
    context.close()


@pytest.fixture
def notebook(console_server: Cumulo) -> Iterator[str]:
    """A name for the test's notebook; deleted afterwards if the test left it (a notebook's
    job, like any job on the local cluster, would outlive the server)."""
    name = _unique("lab")
    yield name
    client = console_server.client()
    if any(n["name"] == name for n in client.notebooks.list()):
        client.notebooks.delete(name)


def _table(console_server: Cumulo, token: str) -> str:
    """A table of two features and a label the features separate (mostly), made by the user."""
    sdk = console_server.client(token)
    database = "nb_" + uuid.uuid4().hex[:8]
    sdk.tables.create_database(database)
    rng = np.random.default_rng(7)
    x1, x2 = rng.normal(size=ROWS), rng.normal(size=ROWS)
    sdk.tables.write(f"{database}.points", pd.DataFrame(
        {"x1": x1, "x2": x2, "label": (x1 + 0.5 * x2 > 0).astype("int64")}))
    return f"{database}.points"


def _type_cell(lab, text: str) -> None:  # type: ignore[no-untyped-def]
    """Put `text` in the active cell's editor as it is (no auto-indent, no closing brackets)."""
    editor = lab.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell.jp-mod-active .cm-content")
    editor.click()
    lab.keyboard.insert_text(text)


def _run_cell(lab) -> None:  # type: ignore[no-untyped-def]
    lab.keyboard.press("Shift+Enter")


def test_create_open_run_sql_and_a_model_stop_and_start(  # type: ignore[no-untyped-def]
        context, console_server: Cumulo, user: tuple[str, str], notebook: str, shot) -> None:
    user_name, token = user
    table = _table(console_server, token)
    name = notebook

    console = context.new_page()
    watched = Watched(console, console_server)
    console.goto("/")
    console.get_by_role("button", name="Sign in with a token instead").click()
    console.get_by_label("Token").fill(token)
    console.get_by_role("button", name="Sign in", exact=True).click()
    expect(console.locator(".who")).to_have_text(user_name)

    console.get_by_role("navigation", name="Services").get_by_role("link", name="Notebooks").click()
    expect(console.locator("main h1")).to_have_text("Notebooks")
    form = console.get_by_role("form", name="Create a notebook")
    form.get_by_label("Notebook name").fill("Not A Name!")
    expect(form.get_by_role("alert")).to_contain_text("The name must be")
    expect(form.get_by_role("button", name="Create notebook")).to_be_disabled()
    form.get_by_label("Notebook name").fill(name)
    form.get_by_label("Cluster").select_option("local")
    form.get_by_label("CPUs").fill("1")
    form.get_by_label("Memory").fill("2G")
    form.get_by_label("Idle timeout").fill("2h")
    form.get_by_role("button", name="Create notebook").click()
    row = console.get_by_role("table", name="Notebooks").get_by_role("row").filter(
        has=console.get_by_role("rowheader", name=re.compile(f"^{name}")))
    expect(row).to_contain_text("running", timeout=STATE_MS)
    expect(row).to_contain_text("local")
    expect(row).to_contain_text("1 CPU · 2.0 GB")
    expect(row).to_contain_text("2 h")
    shot(console, "notebooks")
    # What the server refuses, the form says in the server's words; nothing more is made.
    form.get_by_label("Notebook name").fill(name)
    form.get_by_label("CPUs").fill("4096")
    expect(form.get_by_role("alert")).to_contain_text("CPUs: cluster local has")
    form.get_by_label("CPUs").fill("1")
    form.get_by_role("button", name="Create notebook").click()
    expect(form.get_by_role("alert")).to_contain_text(f"there is already a notebook '{name}'")
    expect(console.get_by_role("table", name="Notebooks").locator("tbody tr")).to_have_count(1)

    # "Open" is a link to JupyterLab in a new tab, through the proxy.
    opener = row.get_by_role("link", name=f"Open notebook {name}")
    expect(opener).to_have_attribute("target", "_blank")
    expect(opener).to_have_attribute("rel", re.compile("noopener"))
    with context.expect_page() as opened:
        opener.click()
    lab = opened.value
    lab.wait_for_load_state()
    assert re.search(f"/notebooks/{name}/lab", lab.url), lab.url
    launcher = lab.locator('.jp-LauncherCard[data-category="Notebook"]').first
    expect(launcher).to_be_visible(timeout=LAB_MS)

    # A new notebook: load the extension, read the table with %%sql, train a model on it.
    launcher.click()
    expect(lab.locator(".jp-NotebookPanel .jp-Cell.jp-mod-active .cm-content")).to_be_visible(
        timeout=LAB_MS)
    # Its kernel, started and connected (through the proxy's WebSocket), runs the first cell.
    expect(lab.locator(".jp-StatusBar-Widget").filter(has_text=re.compile(r"\| Idle"))
           ).to_have_count(1, timeout=KERNEL_MS)
    _type_cell(lab, "%load_ext cumulo")
    _run_cell(lab)
    expect(lab.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputPrompt").first
           ).to_have_text("[1]:", timeout=KERNEL_MS)
    _type_cell(lab, f"%%sql\nSELECT * FROM {table} ORDER BY x1")
    _run_cell(lab)
    _type_cell(lab, "\n".join([
        "from sklearn.linear_model import LogisticRegression",
        "points = _",
        "features = points[['x1', 'x2']]",
        "model = LogisticRegression().fit(features, points['label'])",
        "print(f'rows={len(points)} score={model.score(features, points[\"label\"]):.3f}')",
    ]))
    _run_cell(lab)
    outputs = lab.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output")
    # The %%sql cell's DataFrame, as pandas draws it (240 rows are more than it shows).
    expect(outputs.filter(has_text=f"{ROWS} rows \u00d7 3 columns")).to_have_count(
        1, timeout=KERNEL_MS)
    printed = outputs.filter(has_text="score=")
    expect(printed).to_have_count(1, timeout=KERNEL_MS)
    expect(printed).to_contain_text(f"rows={ROWS}")
    score = float(re.search(r"score=([0-9.]+)", printed.inner_text())[1])  # type: ignore[index]
    assert 0.9 <= score <= 1.0, printed.inner_text()
    assert lab.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']") \
        .filter(has_text="Error").count() == 0
    shot(lab, "notebook-lab")

    # Saved: JupyterLab asks for a name on an untitled notebook's first save.
    lab.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar "
                "[data-command='docmanager:save']").click()
    rename = lab.locator(".jp-Dialog").filter(has_text="Rename file")
    rename.get_by_placeholder("File name").fill(SAVED)
    rename.get_by_role("button", name="Rename and Save").click()
    tab = lab.locator(".lm-TabBar-tab.jp-mod-current")
    expect(tab).to_have_text(SAVED)
    expect(tab).not_to_have_class(re.compile("jp-mod-dirty"), timeout=30_000)

    # Stopped from the console: its address says so, with a button to start it.
    console.bring_to_front()
    row.get_by_role("button", name=f"Stop notebook {name}").click()
    expect(row.locator("td").first).to_have_text("stopped", timeout=STATE_MS)
    expect(row).to_contain_text(f"stopped by {user_name}")  # when and why, in its own column
    expect(row.get_by_role("link", name=f"Open notebook {name}")).to_have_count(0)
    lab.goto(f"/notebooks/{name}/lab")
    expect(lab.locator("body")).to_contain_text("stopped", timeout=30_000)
    expect(lab.get_by_role("button", name=re.compile("^Start"))).to_be_visible()

    # Started again (from the console): the file is there, outputs and all.
    row.get_by_role("button", name=f"Start notebook {name}").click()
    expect(row).to_contain_text("running", timeout=STATE_MS)
    lab.goto(f"/notebooks/{name}/lab")
    listed = lab.locator(".jp-DirListing-content .jp-DirListing-item").filter(has_text=SAVED)
    expect(listed).to_be_visible(timeout=LAB_MS)
    listed.dblclick()
    expect(lab.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output")
           .filter(has_text=f"rows={ROWS} score=")).to_have_count(1, timeout=LAB_MS)

    # And in Files: the user's folder of the notebooks bucket.
    console.goto(f"/files/notebooks/{user_name}/")
    expect(console.get_by_role("button", name=f"{SAVED}: details")).to_be_visible()

    console.goto("/notebooks")
    row.get_by_role("button", name=f"Delete notebook {name}").click()
    console.get_by_role("dialog", name=f"Delete notebook {name}?").get_by_role(
        "button", name="Delete notebook").click()
    expect(row).to_have_count(0, timeout=STATE_MS)
    watched.check()



def test_the_notebooks_page_is_the_consoles_but_not_the_paths_below_it(  # type: ignore[no-untyped-def]
        console_server: Cumulo) -> None:
    page = httpx.get(console_server.url + "/notebooks")
    assert page.status_code == 200 and '<div id="root">' in page.text
    # Below it are the notebooks themselves: none of them is the console's page.
    below = httpx.get(console_server.url + f"/notebooks/{_unique('none')}/lab",
                      cookies={"cumulo_token": console_server.token})
    assert '<div id="root">' not in below.text
