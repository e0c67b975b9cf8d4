"""Signing in, the shell, errors shown as the API's message, and what the server answers."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

from tests.services import Cumulo, start_cumulo


def test_sign_in_with_a_password_or_a_token_and_out(  # type: ignore[no-untyped-def]
        fresh_page, console_server: Cumulo, shot) -> None:
    console_server.client().users.create("pat-console", role="viewer",
                                         password="a-long-console-passphrase-7")
    page = fresh_page
    page.goto("/")
    expect(page.get_by_role("heading", name="Cumulo")).to_be_visible()
    shot(page, "sign-in")
    # A user name and a password, first.
    page.get_by_label("User name").fill("pat-console")
    page.get_by_label("Password").fill("not-the-passphrase-at-all")
    page.get_by_role("button", name="Sign in", exact=True).click()
    # The API's own message, in the page.
    expect(page.get_by_role("alert")).to_contain_text("the user name or the password is wrong")
    page.get_by_label("Password").fill("a-long-console-passphrase-7")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator(".who")).to_have_text("pat-console")
    page.get_by_role("button", name="Sign out").click()

    # Or a token.
    page.get_by_role("button", name="Sign in with a token instead").click()
    page.get_by_label("Token").fill("cml_not-a-real-token")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("401")
    page.get_by_label("Token").fill(console_server.token)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("navigation", name="Services")).to_be_visible()
    expect(page.locator(".who")).to_have_text("admin")
    # The cookie lasts: a reload stays signed in.
    page.reload()
    expect(page.locator(".who")).to_have_text("admin")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("User name")).to_be_visible()
    page.reload()
    expect(page.get_by_label("User name")).to_be_visible()
    # No single sign-on on this server: no button for it.
    expect(page.get_by_text("Sign in with", exact=False)).to_have_count(1)  # the switch
    assert httpx.get(console_server.url + "/login/options").json() == {
        "password": True, "token": True, "sso": None}


def test_every_section_opens_without_errors(page, console_server: Cumulo) -> None:  # type: ignore[no-untyped-def]
    for section in ("files", "tables", "sql", "jobs", "models", "endpoints", "pipelines", "streams",
                    "costs"):
        page.goto(f"/{section}")
        expect(page.locator("main h1")).to_be_visible()
        expect(page.get_by_role("alert")).to_have_count(0)


def test_a_phone_sized_screen_has_a_menu(phone_page, shot) -> None:  # type: ignore[no-untyped-def]
    page = phone_page
    page.goto("/")
    nav = page.get_by_role("navigation", name="Services")
    expect(nav).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(nav).to_be_visible()
    nav.get_by_role("link", name="Tables").click()
    expect(page).to_have_url(re.compile(r"/tables$"))
    expect(nav).to_be_hidden()
    # Nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1


def test_the_server_serves_the_app_with_a_strict_policy(console_server: Cumulo) -> None:
    for path in ("/", "/tables/sales/orders", "/pipelines/churn", "/backups"):
        answer = httpx.get(console_server.url + path)
        assert answer.status_code == 200
        assert '<div id="root">' in answer.text
        policy = answer.headers["content-security-policy"]
        assert "connect-src 'self'" in policy and "script-src 'self'" in policy
    # The API's own 404 stays JSON, not the app.
    missing = httpx.get(console_server.url + "/api/v1/nothing-here",
                        headers={"authorization": f"Bearer {console_server.token}"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    index = httpx.get(console_server.url + "/").text
    script = index.split('src="')[1].split('"')[0]
    asset = httpx.get(console_server.url + script)
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]


def test_sign_in_answers_json_to_the_console(console_server: Cumulo) -> None:
    bad = httpx.post(console_server.url + "/login", data={"token": "nope", "next": "/"},
                     headers={"accept": "application/json"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"
    good = httpx.post(console_server.url + "/login",
                      data={"token": console_server.token, "next": "/"},
                      headers={"accept": "application/json"})
    assert good.status_code == 200 and good.json() == {"user": "admin"}
    assert "cumulo_token" in good.cookies


def test_a_server_without_a_built_console_says_how_to_build_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = start_cumulo(tmp_path / ".cumulo", {"CUMULO_CONSOLE_DIR": str(tmp_path / "none")})
    try:
        answer = httpx.get(server.url + "/tables")
        assert answer.status_code == 503
        assert "make console" in answer.text
        assert httpx.get(server.url + "/healthz").status_code == 200
        assert "console: not built" in server.log.read_text()
    finally:
        server.stop()


def test_the_console_works_from_the_keyboard(page) -> None:  # type: ignore[no-untyped-def]
    page.goto("/")
    expect(page.locator(".who")).to_have_text("admin")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    # On through the top bar to the services, then open one with Enter.
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Tables":
            break
    expect(page.get_by_role("navigation", name="Services").get_by_role("link", name="Tables")) \
        .to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/tables$"))
