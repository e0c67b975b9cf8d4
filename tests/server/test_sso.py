"""Single sign-on through a real server and a real OpenID Connect provider: `oidc-provider`
(tests/oidc/, installed by `make test`), started with a static client for this server and
accounts each test sets. A browser is an httpx client that follows the redirects and submits
the provider's own login and consent forms; the CLI is `cumulo login --sso` in a subprocess,
its browser side done by the same driver.

Covered: the link on /login; the browser's sign-in (the cookie works on /api/v1/me) making the
user with their mapped groups; the groups following the claim at the next sign-in; the device
flow end to end, and its refusals; a replayed state, a callback from another browser, the
provider saying no, a disabled user: each refused with its message and an audit entry."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import pytest

from cumulo.access.oidc import OidcClient
from cumulo.config import OidcSettings
from cumulo.errors import Unauthorized
from tests.services import CUMULO, Cumulo, free_port, start_cumulo, stop, wait_for

OIDC_DIR = Path(__file__).resolve().parents[1] / "oidc"
CLIENT_ID = "cumulo-test"
CLIENT_SECRET = "a-test-client-secret-0123456789"
PAGE = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
SITE = "cumulo.test"  # the server's name for Chromium, which maps it to 127.0.0.1
# Without these, Chromium reaches for Google's hosts at start (this machine has no network).
QUIET = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage"]


@dataclass
class IdP:
    """The test provider: its issuer URL, and its accounts (what each next sign-in says)."""

    issuer: str
    proc: subprocess.Popen[bytes]

    def account(self, name: str, **claims: Any) -> None:
        claims.setdefault("preferred_username", name)
        claims.setdefault("email", f"{name}@example.com")
        answer = httpx.put(f"{self.issuer}/_test/accounts/{name}", json=claims)
        assert answer.status_code == 204, answer.text


@pytest.fixture(scope="module")
def idp_and_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IdP, Cumulo]]:
    """The provider, with this server's callback registered, and a server signing in there."""
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the test provider is not installed: 'npm ci --prefix tests/oidc' (make "
                    "test does it)")
    tmp = tmp_path_factory.mktemp("sso")
    port, idp_port = free_port(), free_port()
    log = tmp / "oidc-provider.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["node", str(OIDC_DIR / "provider.mjs")], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PORT": str(idp_port), "CLIENT_ID": CLIENT_ID,
                 "CLIENT_SECRET": CLIENT_SECRET,
                 # the server as a browser of another site than the provider's reaches it
                 "REDIRECT_URIS": f"http://127.0.0.1:{port}/login/sso/callback,"
                                  f"http://{SITE}:{port}/login/sso/callback"})
    issuer = f"http://127.0.0.1:{idp_port}"
    server = None
    try:
        wait_for(f"{issuer}/.well-known/openid-configuration", proc, log)
        server = start_cumulo(tmp / ".cumulo", {
            "CUMULO_OIDC_ISSUER": issuer, "CUMULO_OIDC_ALLOW_HTTP": "1",
            "CUMULO_OIDC_CLIENT_ID": CLIENT_ID, "CUMULO_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "CUMULO_OIDC_NAME": "Test IdP", "CUMULO_OIDC_DEFAULT_ROLE": "viewer",
            "CUMULO_OIDC_GROUP_MAP": json.dumps({"ml-team": "data-science",
                                                 "analytics": ["analysts"]}),
        }, port=port)
        yield IdP(issuer, proc), server
    finally:
        if server is not None:
            server.stop()
        stop(proc)


@pytest.fixture(scope="module")
def idp(idp_and_server: tuple[IdP, Cumulo]) -> IdP:
    return idp_and_server[0]


@pytest.fixture(scope="module")
def server(idp_and_server: tuple[IdP, Cumulo]) -> Cumulo:
    return idp_and_server[1]


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30, follow_redirects=False, headers=PAGE) as client:
        yield client


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match is not None, f"no {pattern!r} in {text[:1000]}"
    return match[1]


def admin(server: Cumulo, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{server.url}/api/v1{path}", timeout=30,
                         headers={"authorization": f"Bearer {server.token}"}, **kwargs)


def to_callback(browser: httpx.Client, url: str, *, login: str | None,
                abort: bool = False) -> str:
    """Follow ``url`` through the provider (its login form as ``login``, its consent form)
    until it sends the browser back to Cumulo's callback; that URL, not yet followed."""
    for _ in range(20):
        answer = browser.get(url)
        while answer.status_code == 200 and 'name="prompt"' in answer.text:
            form = answer.text
            action = unescape(found(r'<form[^>]*action="([^"]+)"', form))
            prompt = found(r'name="prompt" value="(\w+)"', form)
            if abort:
                url = urljoin(str(answer.url), action.rstrip("/") + "/abort")
                break
            assert login is not None, "the provider asked who signs in"
            fields = {"prompt": prompt, **({"login": login, "password": "any"}
                                          if prompt == "login" else {})}
            answer = browser.post(urljoin(str(answer.url), action), data=fields)
        else:
            assert answer.status_code in (302, 303), (answer.status_code, answer.text[:500])
            url = urljoin(str(answer.url), answer.headers["location"])
            if "/login/sso/callback" in url:
                return url
    raise AssertionError("the provider never sent the browser back")


def sign_in(server: Cumulo, browser: httpx.Client, login: str,
            next_: str = "/mlflow/") -> httpx.Response:
    """The whole browser sign-in: /login/sso, the provider, the callback's answer."""
    started = browser.get(f"{server.url}/login/sso", params={"next": next_})
    assert started.status_code == 303, started.text
    return browser.get(to_callback(browser, started.headers["location"], login=login))


def sso_events(server: Cumulo, **query: str) -> list[dict[str, Any]]:
    answer = admin(server, "GET", "/audit/events", params={"action": "sso:SignIn", **query})
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def test_the_login_page_offers_single_sign_on(server: Cumulo, browser: httpx.Client) -> None:
    page = browser.get(f"{server.url}/login", params={"next": "/mlflow/#/runs"})
    assert page.status_code == 200
    assert '<a href="/login/sso?next=/mlflow/%23/runs">Sign in with Test IdP</a>' in page.text
    unsafe = browser.get(f"{server.url}/login/sso", params={"next": "//evil.example.com/"})
    assert unsafe.status_code == 400 and "is not a path on this site" in unsafe.text


def test_a_browser_signs_in_and_gets_its_mapped_groups(idp: IdP, server: Cumulo,
                                                       browser: httpx.Client) -> None:
    idp.account("ana", groups=["ml-team", "not-mapped"])
    done = sign_in(server, browser, "ana")
    assert done.status_code == 200, done.text
    assert "Signed in as <b>ana</b>" in done.text
    assert '<meta http-equiv="refresh" content="0;url=/mlflow/">' in done.text
    cookies = done.headers.get_list("set-cookie")
    token = next(c for c in cookies if c.startswith("cumulo_token=cml_"))
    assert all(part in token for part in ("HttpOnly", "SameSite=strict", "Path=/"))
    assert any(c.startswith('cumulo_sso=""') for c in cookies)  # the binding is spent

    me = browser.get(f"{server.url}/api/v1/me")
    assert me.status_code == 200, me.text
    assert me.json()["user"] == "ana" and me.json()["token_name"].startswith("sso-")
    ana = admin(server, "GET", "/users/ana").json()
    assert ana["groups"] == ["data-science"] and ana["roles"] == ["viewer"]
    assert ana["email"] == "ana@example.com" and not ana["has_password"]
    [event] = sso_events(server, user="ana")
    assert event["outcome"] == "allowed" and event["resource"] == "user/ana"
    assert event["details"]["created"] is True and event["details"]["via"] == "browser"
    assert event["details"]["groups_added"] == ["data-science"]
    assert event["details"]["subject"] == f"{idp.issuer}|ana"


def test_the_groups_follow_the_claim_at_the_next_sign_in(idp: IdP, server: Cumulo,
                                                         browser: httpx.Client) -> None:
    idp.account("ben", groups=["ml-team"])
    assert sign_in(server, browser, "ben").status_code == 200
    assert admin(server, "POST", "/groups", json={"name": "hand-made"}).status_code == 201
    assert admin(server, "PUT", "/groups/hand-made/members/ben").status_code < 300
    idp.account("ben", groups=["analytics"])
    again = sign_in(server, browser, "ben")  # the provider remembers ben: no form this time
    assert again.status_code == 200, again.text
    assert admin(server, "GET", "/users/ben").json()["groups"] == ["analysts", "hand-made"]
    latest = sso_events(server, user="ben")[0]["details"]
    assert latest["created"] is False
    assert (latest["groups_added"], latest["groups_removed"]) == (["analysts"],
                                                                  ["data-science"])


def test_a_replayed_state_is_refused(idp: IdP, server: Cumulo, browser: httpx.Client) -> None:
    idp.account("cy")
    started = browser.get(f"{server.url}/login/sso", params={"next": "/"})
    callback = to_callback(browser, started.headers["location"], login="cy")
    assert browser.get(callback).status_code == 200
    replayed = browser.get(callback)
    assert replayed.status_code == 401
    assert "used already: a replayed answer from the provider is refused" in replayed.text
    assert "set-cookie" not in replayed.headers
    denied = sso_events(server, outcome="denied")
    assert denied[0]["details"]["reason"] == "state_replayed"


def test_a_code_works_once_at_the_provider(idp: IdP, server: Cumulo,
                                           browser: httpx.Client) -> None:
    """The protocol's own client against the real provider: a code exchanged twice is
    refused the second time, by the provider, and said so."""
    idp.account("cal", groups=["ml-team"])
    settings = OidcSettings(issuer=idp.issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                            allow_http=True, group_map={"ml-team": ("data-science",)})
    with OidcClient(settings) as client:
        url, flow = client.begin(f"{server.url}/login/sso/callback", binding="b")
        callback = to_callback(browser, url, login="cal")
        query = dict(parse_qsl(urlsplit(callback).query))
        assert query["state"] == flow.state and query["iss"] == idp.issuer
        taken = client.flows.take(flow.state, "b")
        identity = client.complete(taken, query["code"], iss=query["iss"])
        assert identity.subject == f"{idp.issuer}|cal"
        assert identity.claims["groups"] == ["ml-team"]  # from userinfo: the ID token lacks it
        with pytest.raises(Unauthorized, match="invalid_grant") as refused:
            client.complete(taken, query["code"])
        assert refused.value.details["reason"] == "code_refused"


def test_a_callback_in_another_browser_is_refused(idp: IdP, server: Cumulo,
                                                  browser: httpx.Client) -> None:
    idp.account("dot")
    started = browser.get(f"{server.url}/login/sso", params={"next": "/"})
    callback = to_callback(browser, started.headers["location"], login="dot")
    with httpx.Client(timeout=30, headers=PAGE) as victim:  # sent the link by the attacker
        refused = victim.get(callback)
    assert refused.status_code == 401 and "began in another browser" in refused.text
    assert "cumulo_token" not in refused.headers.get("set-cookie", "")
    assert sso_events(server, outcome="denied")[0]["details"]["reason"] == "browser_mismatch"


def test_the_provider_saying_no_is_refused(idp: IdP, server: Cumulo,
                                           browser: httpx.Client) -> None:
    started = browser.get(f"{server.url}/login/sso", params={"next": "/"})
    callback = to_callback(browser, started.headers["location"], login=None, abort=True)
    refused = browser.get(callback)
    assert refused.status_code == 401
    assert "the provider did not sign you in: access_denied" in refused.text
    assert sso_events(server, outcome="denied")[0]["details"]["reason"] == "provider_refused"


def test_a_disabled_user_is_refused(idp: IdP, server: Cumulo, browser: httpx.Client) -> None:
    idp.account("eve", groups=["ml-team"])
    assert sign_in(server, browser, "eve").status_code == 200
    assert admin(server, "PATCH", "/users/eve", json={"disabled": True}).status_code == 200
    idp.account("eve", groups=[])
    refused = sign_in(server, browser, "eve")
    assert refused.status_code == 401
    assert "user eve is disabled; an admin can enable it" in refused.text
    assert admin(server, "GET", "/users/eve").json()["groups"] == ["data-science"]  # untouched
    [denied, _] = sso_events(server, user="eve")
    assert denied["outcome"] == "denied" and denied["details"]["reason"] == "disabled"


def test_a_real_browser_lands_signed_in_on_the_page_it_asked_for(idp: IdP,
                                                                 server: Cumulo) -> None:
    """Chromium, with the server on another site than the provider: the token's cookie is
    SameSite=Strict, which a browser holds back from every request of a redirect chain begun
    on another site; the callback's page moves on by itself, and the cookie goes with it."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is not installed: 'make test' installs it"
    idp.account("gus", groups=["ml-team"])
    site = server.url.replace("127.0.0.1", SITE)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=[
            *QUIET, f"--host-resolver-rules=MAP {SITE} 127.0.0.1"])
        try:
            page = browser.new_page()
            page.goto(f"{site}/login?next=/api/v1/me")
            page.click("text=Sign in with Test IdP")
            page.fill("input[name=login]", "gus")
            page.fill("input[name=password]", "any")
            page.click("button[type=submit]")
            page.click("text=Continue")  # the provider's consent
            page.wait_for_url(f"{site}/api/v1/me", timeout=30_000)
            me = json.loads(page.inner_text("body"))
        finally:
            browser.close()
    assert me["user"] == "gus" and me["token_name"].startswith("sso-")


# --- the CLI's device flow ---------------------------------------------------------------------


def cli_sign_in(server: Cumulo, creds: Path, login: str | None, *,
                abort: bool = False) -> subprocess.CompletedProcess[str]:
    """`cumulo login --sso` as a user runs it, with a browser (this driver) doing its part."""
    env = {k: v for k, v in server.env.items() if k not in ("CUMULO_URL", "CUMULO_TOKEN")}
    proc = subprocess.Popen([CUMULO, "login", "--sso", "--url", server.url],
                            env={**env, "CUMULO_CREDENTIALS": str(creds)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        shown = ""
        while "?user_code=" not in shown:
            line = proc.stderr.readline()
            assert line, f"the CLI showed no page to open: {shown}"
            shown += line
        page = found(r"(http://\S+\?user_code=\S+)", shown)
        code = found(r"shows the code (\w{4}-\w{4})", shown)
        with httpx.Client(timeout=30, follow_redirects=False, headers=PAGE) as browser:
            confirm = browser.get(page)
            assert confirm.status_code == 200 and f"<code>{code}</code>" in confirm.text
            assert "form-action 'self' http://127.0.0.1:" in \
                confirm.headers["content-security-policy"]
            started = browser.post(f"{server.url}/login/sso/device/confirm",
                                   data={"user_code": code},
                                   headers={"origin": server.url})
            assert started.status_code == 303, started.text
            done = browser.get(to_callback(browser, started.headers["location"], login=login,
                                           abort=abort))
            assert ("for the command line" in done.text) == (done.status_code == 200)
            assert "cumulo_token" not in done.headers.get("set-cookie", "")
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, shown + err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_cli_signs_in_with_the_device_flow(idp: IdP, server: Cumulo,
                                               tmp_path: Path) -> None:
    idp.account("fay", groups=["analytics"])
    creds = tmp_path / "credentials.toml"
    started = time.monotonic()
    result = cli_sign_in(server, creds, "fay")
    assert result.returncode == 0, result.stderr
    assert f"logged in to {server.url} as fay; saved as profile" in result.stdout
    assert "then 'cumulo login --sso' again" in result.stdout
    assert time.monotonic() - started < 30
    saved = creds.read_text()
    token = found(r'token = "(cml_[^"]+)"', saved)
    me = httpx.get(f"{server.url}/api/v1/me", headers={"authorization": f"Bearer {token}"})
    assert me.json()["user"] == "fay" and me.json()["token_name"].startswith("sso-cli-")
    assert admin(server, "GET", "/users/fay").json()["groups"] == ["analysts"]
    assert sso_events(server, user="fay")[0]["details"]["via"] == "device"


def test_the_cli_says_when_the_browser_was_refused(server: Cumulo, tmp_path: Path) -> None:
    result = cli_sign_in(server, tmp_path / "credentials.toml", None, abort=True)
    assert result.returncode == 1
    assert "error: the sign-in in the browser was refused: the provider did not sign you in: " \
           "access_denied" in result.stderr
    assert not (tmp_path / "credentials.toml").exists()


def test_the_device_endpoints_answer_as_rfc_8628_says(server: Cumulo,
                                                      browser: httpx.Client) -> None:
    started = httpx.post(f"{server.url}/login/sso/device")
    assert started.status_code == 200
    body = started.json()
    assert body["verification_uri"] == f"{server.url}/login/sso/device"
    assert body["interval"] == 5 and 590 <= body["expires_in"] <= 600
    poll = {"device_code": body["device_code"]}
    pending = httpx.post(f"{server.url}/login/sso/device/token", json=poll)
    assert pending.status_code == 202 and pending.json()["status"] == "authorization_pending"
    slow = httpx.post(f"{server.url}/login/sso/device/token", json=poll)
    assert slow.status_code == 429 and slow.json()["error"]["details"]["reason"] == "slow_down"
    assert slow.json()["error"]["details"]["interval"] == 10
    unknown = httpx.post(f"{server.url}/login/sso/device/token", json={"device_code": "nope"})
    assert unknown.status_code == 401
    assert unknown.json()["error"]["details"]["reason"] == "expired_token"
    wrong = browser.get(f"{server.url}/login/sso/device", params={"user_code": "BCDF-GHJK"})
    assert wrong.status_code == 404 and "no sign-in waits for code" in wrong.text
    elsewhere = browser.post(f"{server.url}/login/sso/device/confirm",
                             data={"user_code": body["user_code"]},
                             headers={"origin": "https://evil.example.com"})
    assert elsewhere.status_code == 403
