"""Signing in with a user name and password through a real server: the form (a cookie), the
console's fetch (JSON and a cookie), the CLI's JSON (a token, no cookie); one answer for an
unknown user and a wrong password; the lock after five; the rate per address (429 with
Retry-After, raised by the SDK as TooManyRequests); disabled users and service accounts.

Users are added to the server's SQLite database directly, with a password hashed by
``cumulo.access.passwords``. Each test signs in from an address of its own (127.0.0.N), so
that the server's rate per address counts each test's tries apart."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.access.models import User
from cumulo.access.passwords import hash_password
from cumulo.access.tokens import disable_user, enable_user
from cumulo.client.transport import Transport
from cumulo.db import make_engine, utcnow
from cumulo.errors import TooManyRequests, Unauthorized
from tests.services import Cumulo

PASSWORD = "tangerine-otter-lamp-42"
WRONG = "the user name or the password is wrong"
PAGE = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JSON = {"accept": "application/json"}


def _session(server: Cumulo) -> Session:
    return Session(make_engine(f"sqlite:///{server.home / 'cumulo.db'}"))


@pytest.fixture(scope="module")
def people(local_server: Cumulo) -> Cumulo:
    """People with passwords, and a service account, in the server's database."""
    with _session(local_server) as session:
        for name in ("alice", "bob", "carol"):
            session.add(User(name=name, kind="person", created_at=utcnow(),
                             password_hash=hash_password(PASSWORD)))
        session.add(User(name="robot", kind="service", created_at=utcnow()))
        session.commit()
    return local_server


def _from(server: Cumulo, n: int, *, cookies: httpx.Cookies | None = None) -> httpx.Client:
    """A client whose requests come from 127.0.0.n."""
    return httpx.Client(base_url=server.url, timeout=60, follow_redirects=False,
                        transport=httpx.HTTPTransport(local_address=f"127.0.0.{n}"),
                        cookies=cookies)


_addresses = itertools.count(10)


@pytest.fixture
def browser(people: Cumulo) -> Iterator[httpx.Client]:
    """A client of the server from an address no other test here uses."""
    with _from(people, next(_addresses)) as client:
        yield client


def test_the_page_offers_a_password_and_a_token(browser: httpx.Client) -> None:
    page = browser.get("/login", params={"next": "/mlflow/"})
    assert page.status_code == 200
    for field in ('name="user"', 'name="password"', 'type="password" name="token"',
                  'value="/mlflow/"', 'autocomplete="current-password"'):
        assert field in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_a_browser_signs_in_with_the_form(people: Cumulo, browser: httpx.Client) -> None:
    signed = browser.post("/login", data={"user": "alice", "password": PASSWORD,
                                          "next": "/mlflow/"}, headers=PAGE)
    assert signed.status_code == 303 and signed.headers["location"] == "/mlflow/"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith("cumulo_token=cml_")
    assert all(part in cookie for part in ("HttpOnly", "SameSite=strict", "Path=/"))
    with _from(people, 99, cookies=signed.cookies) as signed_in:
        me = signed_in.get("/api/v1/me")
        assert me.status_code == 200, me.text
        assert me.json()["user"] == "alice" and me.json()["token_name"].startswith("signin-")
        assert not me.json()["is_admin"]


def test_the_console_signs_in_with_fetch(browser: httpx.Client) -> None:
    signed = browser.post("/login", data={"user": "alice", "password": PASSWORD, "next": "/"},
                          headers=JSON)
    assert signed.status_code == 200 and signed.json() == {"user": "alice"}
    assert "cumulo_token" in signed.cookies
    refused = browser.post("/login", data={"user": "alice", "password": "not-hers-at-all"},
                           headers=JSON)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert "set-cookie" not in refused.headers


def test_the_cli_gets_a_token_in_json_and_no_cookie(people: Cumulo,
                                                    browser: httpx.Client) -> None:
    before = utcnow()
    signed = browser.post("/login", json={"user": "alice", "password": PASSWORD})
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert set(body) == {"token", "user", "expires_at"} and body["user"] == "alice"
    assert "set-cookie" not in signed.headers and signed.headers["cache-control"] == "no-store"
    expires = datetime.fromisoformat(body["expires_at"])
    assert before + timedelta(hours=12) - timedelta(seconds=1) <= expires
    assert expires <= utcnow() + timedelta(hours=12)
    me = httpx.get(f"{people.url}/api/v1/me",
                   headers={"authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.json()["user"] == "alice"


def test_an_unknown_user_and_a_wrong_password_get_the_same_answer(
        browser: httpx.Client) -> None:
    answers = []
    for user, password in (("alice", "not-her-password-at-all"), ("nobody", PASSWORD)):
        refused = browser.post("/login", json={"user": user, "password": password})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        answers.append(refused.json())
        page = browser.post("/login", data={"user": user, "password": password}, headers=PAGE)
        assert page.status_code == 401 and "set-cookie" not in page.headers
        assert f"Sign-in refused: {WRONG}" in page.text
        assert f'value="{user}"' in page.text  # the name stays filled in
    assert answers[0] == answers[1] and answers[0]["error"]["message"].startswith(WRONG)


def test_sign_ins_are_in_the_audit_log(people: Cumulo, browser: httpx.Client) -> None:
    assert browser.post("/login", json={"user": "alice", "password": PASSWORD}).status_code == 200
    assert browser.post("/login", json={"user": "nobody", "password": "x"}).status_code == 401
    audit = people.client().audit
    deadline = time.monotonic() + 10  # written off the request, by the server's audit thread
    while time.monotonic() < deadline:
        entries = audit.list(action="auth:SignIn", limit=50)["events"]
        seen = {(e["user"], e["outcome"]) for e in entries}
        if {("alice", "allowed"), (None, "denied")} <= seen:
            break
        time.sleep(0.1)
    assert {("alice", "allowed"), (None, "denied")} <= seen, entries
    # A name that is no user's is not kept (often a password typed in the wrong box).
    refused = next(e for e in entries if e["user"] is None)
    assert refused["source"] and refused["details"]["how"] == "password"
    assert "nobody" not in str(refused)


def test_the_sixth_try_after_five_wrong_passwords_is_locked(browser: httpx.Client,
                                                           people: Cumulo) -> None:
    for _ in range(5):
        refused = browser.post("/login", json={"user": "bob", "password": "not-his-at-all"})
        assert refused.status_code == 401 and WRONG in refused.json()["error"]["message"]
    locked = browser.post("/login", json={"user": "bob", "password": PASSWORD})
    assert locked.status_code == 401
    error = locked.json()["error"]
    # The answer a wrong password gets, naming the lock; the admin sees until when.
    assert WRONG in error["message"] and "or the account is locked" in error["message"]
    shown = people.client().users.show("bob")
    until = datetime.fromisoformat(shown["locked_until"])
    assert timedelta(minutes=14) < until - utcnow() <= timedelta(minutes=15)


def test_an_address_over_its_rate_gets_429_with_retry_after(people: Cumulo) -> None:
    # From 127.0.0.1, through the SDK's transport: the only test here that signs in from it.
    sdk = Transport(people.url, None)
    try:
        for _ in range(10):
            with pytest.raises(Unauthorized):
                sdk.json("POST", "/login", json={"user": "nobody", "password": PASSWORD})
        refused = httpx.post(f"{people.url}/login",
                             json={"user": "alice", "password": PASSWORD})
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 6
        error = refused.json()["error"]
        assert error["code"] == "too_many_requests"
        assert error["message"].startswith("too many sign-in attempts from 127.0.0.1 (at most "
                                           "10 a minute); try again in ")
        with pytest.raises(TooManyRequests) as raised:
            sdk.json("POST", "/login", json={"user": "alice", "password": PASSWORD})
        assert raised.value.retry_after is not None and 1 <= raised.value.retry_after <= 6
    finally:
        sdk.close()
    page = httpx.post(f"{people.url}/login", data={"user": "alice", "password": PASSWORD},
                      headers=PAGE)
    assert page.status_code == 429 and "retry-after" in page.headers
    assert "Sign-in refused: too many sign-in attempts" in page.text
    with _from(people, 98) as elsewhere:  # another address is not held back
        assert elsewhere.post("/login", json={"user": "alice",
                                              "password": PASSWORD}).status_code == 200


def test_a_disabled_users_token_is_refused_within_the_second(people: Cumulo,
                                                             browser: httpx.Client) -> None:
    token = browser.post("/login", json={"user": "carol", "password": PASSWORD}).json()["token"]
    bearer = {"authorization": f"Bearer {token}"}
    assert httpx.get(f"{people.url}/api/v1/me", headers=bearer).status_code == 200
    with _session(people) as session:
        carol = session.scalar(select(User).where(User.name == "carol"))
        assert carol is not None
        disable_user(session, carol)
        disabled_at = time.monotonic()
    while True:  # the server is another process: its cache hears of it within its second
        me = httpx.get(f"{people.url}/api/v1/me", headers=bearer)
        if me.status_code == 401 or time.monotonic() - disabled_at > 1.5:
            break
        time.sleep(0.05)
    assert me.status_code == 401
    assert me.json()["error"]["message"] == ("user carol is disabled; an admin can enable it "
                                             "with 'cumulo users enable carol'")
    again = browser.post("/login", json={"user": "carol", "password": PASSWORD})
    assert again.status_code == 401 and "carol is disabled" in again.json()["error"]["message"]

    with _session(people) as session:
        carol = session.scalar(select(User).where(User.name == "carol"))
        assert carol is not None
        enable_user(session, carol)
    time.sleep(1.1)
    assert httpx.get(f"{people.url}/api/v1/me", headers=bearer).status_code == 200


def test_a_service_account_cannot_sign_in_with_a_password(browser: httpx.Client) -> None:
    refused = browser.post("/login", json={"user": "robot", "password": PASSWORD})
    assert refused.status_code == 401
    assert "Service accounts sign in with tokens" in refused.json()["error"]["message"]


@pytest.mark.parametrize(("body", "problem"), [
    ('["alice", "x"]', 'a sign-in is {"user": "NAME", "password": "..."}'),
    ('{"user": "alice"}', 'a sign-in is {"user": "NAME", "password": "..."}'),
    ("{not json", "the sign-in request is not JSON"),
    ('{"user": "alice", "password": ""}', "enter a user name and a password"),
])
def test_a_malformed_sign_in_is_invalid(people: Cumulo, body: str, problem: str) -> None:
    with _from(people, 97) as client:
        answer = client.post("/login", content=body,
                             headers={"content-type": "application/json"})
    assert answer.status_code == 400 and problem in answer.json()["error"]["message"]


def test_a_form_without_a_password_says_what_is_missing(browser: httpx.Client) -> None:
    page = browser.post("/login", data={"user": "alice", "password": ""}, headers=PAGE)
    assert page.status_code == 400 and "enter a user name and a password" in page.text
    forged = browser.post("/login", data={"user": "alice", "password": PASSWORD},
                          headers={"origin": "https://evil.example"})
    assert forged.status_code == 403 and "set-cookie" not in forged.headers
