"""Identity and access in the console: users, groups, roles, policies, grants and the
simulator, projects and the audit log, as an admin; and what a viewer sees: the same lists with
no administration entries and no buttons for what they may not do."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from playwright.sync_api import expect

from tests.console import notice
from tests.console.conftest import Watched
from tests.services import Cumulo

PASSWORD = "tangerine-otter-lamp-42"
ADMINISTRATION = ["Users", "Groups", "Roles", "Policies", "Access", "Projects", "Audit log"]


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _row(page, text: str):  # type: ignore[no-untyped-def]
    """The table row whose first cell is the link `text`."""
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=text, exact=True))


@contextmanager
def _answered(page, about: str) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Wait, after the block, until the page has drawn its answer to POST /me/can (the one that
    asks about `about`): before the answer nothing is shown, so a button absent then proves
    nothing."""
    with page.expect_response(lambda r: r.url.endswith("/api/v1/me/can")
                              and about in (r.request.post_data or "")) as answer:
        yield
    answer.value.finished()
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => "
                  "requestAnimationFrame(done)))")


def test_every_administration_page_opens_without_errors(page) -> None:  # type: ignore[no-untyped-def]
    page.goto("/")
    nav = page.get_by_role("navigation", name="Services")
    for label in ADMINISTRATION:
        expect(nav.get_by_role("link", name=label, exact=True)).to_be_visible()
    for path in ("users", "groups", "roles", "policies", "access", "projects", "audit"):
        page.goto(f"/{path}")
        expect(page.locator("main h1")).to_be_visible()
        expect(page.get_by_role("alert")).to_have_count(0)


def test_create_disable_and_delete_a_user(page, rest: httpx.Client, shot) -> None:  # type: ignore[no-untyped-def]
    name = _name("ana")
    page.goto("/users")
    expect(_row(page, "admin")).to_contain_text("admin")
    form = page.get_by_role("form", name="Create a user")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Role").select_option("viewer")
    # A weak password: the server's own reason, and no user made.
    form.get_by_label("Password").fill("password1234")
    form.get_by_role("button", name="Create user").click()
    expect(form.get_by_role("alert")).to_contain_text("400")
    expect(form.get_by_role("alert")).to_contain_text("password")
    assert rest.get(f"/users/{name}").status_code == 404
    form.get_by_label("Password").fill(PASSWORD)
    form.get_by_role("button", name="Create user").click()
    expect(notice(page, f"Created {name}")).to_be_visible()
    row = _row(page, name)
    expect(row).to_contain_text("viewer")
    expect(row).to_contain_text("enabled")
    made = rest.get(f"/users/{name}").json()
    assert made["roles"] == ["viewer"] and made["has_password"] and made["kind"] == "person"
    shot(page, "users")

    page.get_by_role("button", name=f"Disable {name}").click()
    expect(row).to_contain_text("disabled")
    assert rest.get(f"/users/{name}").json()["disabled"] is True
    page.get_by_role("button", name=f"Enable {name}").click()
    expect(row).to_contain_text("enabled")
    assert rest.get(f"/users/{name}").json()["disabled"] is False

    # The user's page: what was given to them, and a grant in a project.
    project = _name("p")
    assert rest.post("/projects", json={"name": project}).status_code == 201
    row.get_by_role("link", name=name).click()
    expect(page).to_have_url(re.compile(f"/users/{name}$"))
    given = page.get_by_role("table", name=f"Given to {name}")
    expect(given).to_contain_text("viewer")
    grant = page.get_by_role("form", name="Grant a role or policy")
    grant.get_by_label("Role or policy").select_option("role:developer")
    grant.get_by_label("Where").select_option(project)
    grant.get_by_role("button", name="Grant").click()
    expect(given).to_contain_text(f"developer in project {project}")
    assert f"developer in project {project}" in rest.get(f"/users/{name}").json()["roles"]

    # Deleting asks first.
    page.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog", name=f"Delete user {name}?")
    dialog.get_by_role("button", name="Delete user").click()
    expect(page).to_have_url(re.compile(r"/users$"))
    expect(_row(page, name)).to_have_count(0)
    assert rest.get(f"/users/{name}").status_code == 404


def test_create_a_group_add_a_member_and_give_it_a_role(page, rest: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    group, member = _name("sales"), _name("bo")
    assert rest.post("/users", json={"name": member, "kind": "service"}).status_code == 201
    page.goto("/groups")
    form = page.get_by_role("form", name="Create a group")
    form.get_by_label("Name").fill(group)
    form.get_by_label("Description").fill("the sales team")
    form.get_by_role("button", name="Create group").click()
    expect(_row(page, group)).to_contain_text("the sales team")

    _row(page, group).get_by_role("link", name=group).click()
    add = page.get_by_role("form", name="Add a member")
    add.get_by_label("User").fill("ghost-nobody")
    add.get_by_role("button", name="Add member").click()
    expect(add.get_by_role("alert")).to_contain_text("404")
    add.get_by_label("User").fill(member)
    add.get_by_role("button", name="Add member").click()
    members = page.get_by_role("table", name="Members")
    expect(members.get_by_role("link", name=member)).to_be_visible()
    grant = page.get_by_role("form", name="Grant a role or policy")
    grant.get_by_label("Role or policy").select_option("role:analyst")
    grant.get_by_role("button", name="Grant").click()
    expect(page.get_by_role("table", name=f"Given to {group}")).to_contain_text("analyst")
    shown = rest.get(f"/groups/{group}").json()
    assert shown["members"] == [member] and shown["roles"] == ["analyst"]

    members.get_by_role("row", name=member).get_by_role("button", name="Remove").click()
    page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    expect(members.get_by_role("link", name=member)).to_have_count(0)
    assert rest.get(f"/groups/{group}").json()["members"] == []

    page.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog", name=f"Delete group {group}?")
    dialog.get_by_role("button", name="Delete group").click()
    expect(page).to_have_url(re.compile(r"/groups$"))
    assert rest.get(f"/groups/{group}").status_code == 404


def test_a_policy_shows_the_servers_message_then_saves(page, rest: httpx.Client, shot) -> None:  # type: ignore[no-untyped-def]
    name = _name("sales-read")
    page.goto("/policies")
    page.get_by_role("link", name="Create policy").click()
    form = page.get_by_role("form", name="Create a policy")
    form.get_by_label("Name").fill(name)
    document = form.get_by_label("Document (JSON)")
    document.fill('{"statements": [{"effect": "allow", "actions": ["tables:Wirte"], '
                  '"resources": ["table/sales/*"]}]}')
    form.get_by_role("button", name="Create policy").click()
    # Next to the document: the statement and field at fault, with the server's guess.
    problem = page.locator("#policy-problem")
    expect(problem.get_by_role("alert")).to_contain_text("did you mean 'tables:Write'")
    expect(document).to_have_attribute("aria-invalid", "true")
    assert rest.get(f"/policies/{name}").status_code == 404
    document.fill('{"statements": [')
    form.get_by_role("button", name="Create policy").click()
    expect(problem.get_by_role("alert")).to_contain_text("not JSON")

    document.fill('{"statements": [{"sid": "w", "effect": "allow", "actions": ["tables:Write"], '
                  '"resources": ["table/sales/*"]}]}')
    form.get_by_role("button", name="Create policy").click()
    expect(page).to_have_url(re.compile(f"/policies/{name}$"))
    saved = rest.get(f"/policies/{name}").json()
    assert saved["document"]["statements"][0]["actions"] == ["tables:Write"]

    # Edited in place; a bad change is refused and the saved document stays.
    editor = page.get_by_role("form", name=f"Policy {name}")
    editor.get_by_label("Document (JSON)").fill(
        '{"statements": [{"effect": "maybe", "actions": ["tables:Read"], "resources": ["*"]}]}')
    editor.get_by_role("button", name="Save policy").click()
    expect(page.locator("#policy-problem").get_by_role("alert")).to_contain_text("effect")
    assert rest.get(f"/policies/{name}").json()["document"] == saved["document"]
    editor.get_by_label("Document (JSON)").fill(
        '{"statements": [{"effect": "allow", "actions": ["tables:Read"], "resources": ["*"]}]}')
    editor.get_by_role("button", name="Save policy").click()
    expect(notice(page, "Saved")).to_be_visible()
    assert rest.get(f"/policies/{name}").json()["document"]["statements"][0]["actions"] == [
        "tables:Read"]
    shot(page, "policy")

    page.get_by_role("link", name="Policies").first.click()
    row = _row(page, name)
    expect(row).to_contain_text("1")
    row.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog", name=f"Delete policy {name}?").get_by_role(
        "button", name="Delete policy").click()
    expect(_row(page, name)).to_have_count(0)
    assert rest.get(f"/policies/{name}").status_code == 404


def test_grant_simulate_and_revoke(page, rest: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    user = _name("cy")
    assert rest.post("/users", json={"name": user, "kind": "service"}).status_code == 201
    page.goto("/access")
    simulator = page.get_by_role("form", name="Would this be allowed?")
    simulator.get_by_label("User").fill(user)
    simulator.get_by_label("Action").fill("tables:Read")
    simulator.get_by_label("Resource").fill("sales.orders")
    simulator.get_by_role("button", name="Check").click()
    decision = page.get_by_role("status", name="Decision")
    expect(decision).to_contain_text("deny")
    expect(decision).to_contain_text("table/sales/orders")

    grant = page.get_by_role("form", name="Grant a role or policy")
    grant.get_by_label("Name").fill(user)
    grant.get_by_label("Role or policy").select_option("role:analyst")
    grant.get_by_role("button", name="Grant").click()
    grants = page.get_by_role("table", name="Grants")
    row = grants.get_by_role("row").filter(has_text=f"user:{user}")
    expect(row).to_contain_text("analyst")

    simulator.get_by_role("button", name="Check").click()
    expect(decision).to_contain_text("allow")
    expect(decision).to_contain_text("role analyst")

    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(row).to_have_count(0)
    assert rest.get("/bindings", params={"user": user}).json() == []
    # A bad action: the API's message, in the form.
    simulator.get_by_label("Action").fill("tables:Nope")
    simulator.get_by_role("button", name="Check").click()
    expect(simulator.get_by_role("alert")).to_contain_text("is not an action")


def test_projects_quotas_and_the_audit_log(page, rest: httpx.Client, shot) -> None:  # type: ignore[no-untyped-def]
    name = _name("vision")
    page.goto("/projects")
    form = page.get_by_role("form", name="Create a project")
    form.get_by_label("Name").fill(name)
    form.get_by_label("CPUs").fill("16")
    form.get_by_label("Memory (GB)").fill("128")
    form.get_by_role("button", name="Create project").click()
    row = _row(page, name)
    expect(row).to_contain_text("CPUs 16")
    assert rest.get(f"/projects/{name}").json()["quotas"] == {"cpus": 16, "memory_gb": 128}

    row.get_by_role("link", name=name).click()
    edit = page.get_by_role("form", name="Edit the project")
    expect(edit.get_by_label("CPUs")).to_have_value("16")
    edit.get_by_label("GPUs").fill("2")
    edit.get_by_label("Memory (GB)").fill("")
    edit.get_by_role("button", name="Save").click()
    expect(notice(page, "Saved")).to_be_visible()
    assert rest.get(f"/projects/{name}").json()["quotas"] == {"cpus": 16, "gpus": 2}

    # The audit log holds those changes; filters and the chain's check.
    page.get_by_role("link", name="Audit log").click()
    entries = page.get_by_role("table", name="Audit entries")
    expect(entries.get_by_role("row").nth(1)).to_be_visible()
    filters = page.get_by_role("form", name="Filter the audit log")
    filters.get_by_label("Action").fill("projects:*")
    filters.get_by_label("Outcome").select_option("allowed")
    filters.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"action=projects%3A\*"))
    # Retried until the filtered page is drawn (the unfiltered one holds the project too).
    rows = entries.locator("tbody tr")
    expect(rows.filter(has_not_text="projects:")).to_have_count(0)
    expect(rows.filter(has_not_text="allowed")).to_have_count(0)
    expect(entries).to_contain_text(f"project/{name}")
    page.get_by_role("button", name="Verify chain").click()
    expect(page.get_by_role("status", name="Verification")).to_contain_text("intact",
                                                                             timeout=30_000)
    shot(page, "audit")


@pytest.fixture
def viewer_page(browser, console_server: Cumulo, rest: httpx.Client) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A page signed in as a new user with the viewer role (who signed in with a password),
    and the API requests it made that were refused."""
    name = _name("vi")
    made = rest.post("/users", json={"name": name, "kind": "person", "role": "viewer",
                                     "password": PASSWORD})
    assert made.status_code == 201, made.text
    signed = httpx.post(console_server.url + "/login", json={"user": name, "password": PASSWORD})
    assert signed.status_code == 200, signed.text
    context = browser.new_context(base_url=console_server.url,
                                  viewport={"width": 1366, "height": 860})
    context.set_default_timeout(20_000)
    context.add_cookies([{"name": "cumulo_token", "value": signed.json()["token"],
                          "url": console_server.url, "httpOnly": True, "sameSite": "Strict"}])
    page = context.new_page()
    watched = Watched(page, console_server)
    page.refused = []
    page.on("response", lambda r: r.status == 403 and page.refused.append(r.url))
    yield page
    context.close()
    watched.check()


def test_a_viewer_sees_no_administration_entries_or_destructive_buttons(  # type: ignore[no-untyped-def]
        viewer_page, rest: httpx.Client) -> None:
    page = viewer_page
    bucket, database = "b-" + uuid.uuid4().hex[:10], "db_" + uuid.uuid4().hex[:8]
    assert rest.post("/files/buckets", json={"name": bucket}).status_code == 201
    assert rest.post("/tables/databases", json={"name": database}).status_code == 201
    group = _name("g")
    assert rest.post("/groups", json={"name": group}).status_code == 201

    page.goto("/")
    nav = page.get_by_role("navigation", name="Services")
    expect(nav.get_by_role("link", name="Users", exact=True)).to_be_visible()
    for absent in ("Audit log", "SQL"):  # a viewer reads no audit log and runs no SQL
        expect(nav.get_by_role("link", name=absent, exact=True)).to_have_count(0)

    with _answered(page, "users:Manage"):
        page.goto("/users")
    expect(_row(page, "admin")).to_be_visible()
    expect(page.get_by_role("form", name="Create a user")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^(Disable|Enable|Delete)"))).to_have_count(0)
    with _answered(page, "users:Manage"):
        _row(page, "admin").get_by_role("link", name="admin").click()
    expect(page.get_by_role("table", name="Given to admin")).to_contain_text("admin")
    actions = re.compile("Disable|Delete|Revoke|Grant|Set password")
    expect(page.get_by_role("button", name=actions)).to_have_count(0)

    with _answered(page, "groups:Manage"):
        page.goto(f"/groups/{group}")
    expect(page.get_by_role("heading", name=group)).to_be_visible()
    expect(page.get_by_role("form")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Delete|Remove|Revoke"))).to_have_count(0)

    with _answered(page, "policies:Manage"):
        page.goto("/policies")
    expect(page.get_by_role("table", name="Policies")).to_be_visible()
    expect(page.get_by_role("link", name="Create policy")).to_have_count(0)
    with _answered(page, "policies:Manage"):
        page.goto("/access")
    expect(page.get_by_role("table", name="Grants")).to_contain_text("user:admin")
    expect(page.get_by_role("form")).to_have_count(0)  # no grant form, no simulator
    expect(page.get_by_role("button", name="Revoke")).to_have_count(0)
    with _answered(page, "projects:Manage"):
        page.goto("/projects")
    expect(page.get_by_role("table", name="Projects")).to_be_visible()
    expect(page.get_by_role("form", name="Create a project")).to_have_count(0)

    with _answered(page, f"bucket/{bucket}"):
        page.goto("/files")
    expect(page.get_by_role("link", name=bucket, exact=True)).to_be_visible()
    expect(page.get_by_role("form", name="Create a bucket")).to_have_count(0)
    expect(page.get_by_role("button", name=f"Delete bucket {bucket}")).to_have_count(0)
    with _answered(page, "tables:DropDatabase"):
        page.goto(f"/tables/{database}")
    expect(page.get_by_role("heading", name=database, exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Drop database")).to_have_count(0)
    expect(page.get_by_role("form", name="Create a database")).to_have_count(0)
    assert page.refused == [], f"the console asked what the viewer may not do: {page.refused}"

    # An address typed in still answers with the API's refusal, in the page.
    page.goto("/audit")
    expect(page.get_by_role("alert")).to_contain_text("403")
    expect(page.get_by_role("alert")).to_contain_text("audit:Read")
    expect(page.get_by_role("button", name="Verify chain")).to_have_count(0)


def test_a_project_member_works_in_their_project(  # type: ignore[no-untyped-def]
        browser, console_server: Cumulo, rest: httpx.Client) -> None:
    """Someone whose rights are all in one project starts in it: the menu shows what they may
    do there, lists are the project's, and a bucket made from the console is the project's."""
    project, name = _name("proj"), _name("pm")
    assert rest.post("/projects", json={"name": project}).status_code == 201
    made = rest.post("/users", json={"name": name, "kind": "person", "password": PASSWORD})
    assert made.status_code == 201, made.text
    granted = rest.post("/bindings", json={"user": name, "role": "developer",
                                           "project": project})
    assert granted.status_code in (200, 201), granted.text
    signed = httpx.post(console_server.url + "/login", json={"user": name, "password": PASSWORD})
    context = browser.new_context(base_url=console_server.url,
                                  viewport={"width": 1366, "height": 860})
    context.set_default_timeout(20_000)
    context.add_cookies([{"name": "cumulo_token", "value": signed.json()["token"],
                          "url": console_server.url, "httpOnly": True, "sameSite": "Strict"}])
    page = context.new_page()
    watched = Watched(page, console_server)
    refused: list[str] = []
    page.on("response", lambda r: r.status == 403 and refused.append(r.url))
    try:
        page.goto("/")
        expect(page.get_by_label("Project")).to_have_value(project)
        nav = page.get_by_role("navigation", name="Services")
        expect(nav.get_by_role("link", name="Files", exact=True)).to_be_visible()
        expect(nav.get_by_role("link", name="Users", exact=True)).to_have_count(0)
        bucket = "b-" + uuid.uuid4().hex[:10]
        page.goto("/files")
        page.get_by_label("Bucket name").fill(bucket)
        page.get_by_role("button", name="Create bucket").click()
        expect(page.get_by_role("link", name=bucket, exact=True).first).to_be_visible()
        theirs = rest.get("/files/buckets", params={"project": project}).json()["buckets"]
        assert [b["name"] for b in theirs] == [bucket]
        # Every page the menu shows opens without a refusal or an error.
        for link in nav.get_by_role("link").all():
            target = link.get_attribute("href")
            page.goto(target)
            expect(page.locator("main h1")).to_be_visible()
            # Every request the page makes has answered before the next page cancels it.
            page.wait_for_load_state("networkidle")
            expect(page.get_by_role("alert")).to_have_count(0)
        assert refused == [], f"the console asked what the member may not do: {refused}"
    finally:
        context.close()
    watched.check()
