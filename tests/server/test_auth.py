"""Every route needs a token; tokens are created, listed, revoked, and stored only as hashes."""

from __future__ import annotations

import json
import re
import sqlite3

import httpx
import pytest

from cumulo.errors import Conflict, Invalid, NotFound, Unauthorized
from tests.services import ADMIN_TOKEN, Cumulo


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x-value", path)


def test_every_route_in_the_openapi_document_needs_a_token(local_server: Cumulo) -> None:
    doc = httpx.get(f"{local_server.url}/openapi.json").json()
    checked = 0
    for path, methods in doc["paths"].items():
        for method in methods:
            response = httpx.request(method.upper(), local_server.url + _concrete(path))
            if path == "/healthz":
                assert response.status_code == 200
                continue
            assert response.status_code == 401, (method, path, response.text)
            if method != "head":  # a HEAD answer has no body
                assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked >= 12  # the document really lists the API, not just /healthz


@pytest.mark.parametrize("header", ["Bearer wrong-token", "Bearer", "Basic YWRtaW46eA==",
                                    f"bearer-ish {ADMIN_TOKEN}"])
def test_wrong_tokens_are_refused(local_server: Cumulo, header: str) -> None:
    response = httpx.get(f"{local_server.url}/api/v1/status", headers={"authorization": header})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_token_lifecycle(local_server: Cumulo) -> None:
    admin = local_server.client()
    created = admin.tokens.create("ci-lifecycle")
    secret = created["token"]
    assert secret.startswith("cml_") and created["prefix"] == secret[:12]
    user = local_server.client(token=secret)
    assert user.whoami()["user"] == "admin"
    listed = {t["name"]: t for t in admin.tokens.list()}
    assert "token" not in listed["ci-lifecycle"]
    assert listed["ci-lifecycle"]["revoked_at"] is None
    assert listed["ci-lifecycle"]["state"] == "live"
    with pytest.raises(Conflict, match="already have a token named"):
        admin.tokens.create("ci-lifecycle")

    admin.tokens.revoke("ci-lifecycle")
    assert {t["name"]: t for t in admin.tokens.list()}["ci-lifecycle"]["state"] == "revoked"
    with pytest.raises(Unauthorized, match="was revoked"):
        user.whoami()
    with pytest.raises(Conflict, match="already revoked"):
        admin.tokens.revoke("ci-lifecycle")
    with pytest.raises(NotFound, match="no token 'never-made'"):
        admin.tokens.revoke("never-made")
    assert admin.whoami()["user"] == "admin"  # other tokens keep working


def test_expired_token(local_server: Cumulo) -> None:
    import time

    admin = local_server.client()
    secret = admin.tokens.create("short-lived", expires_in="1s")["token"]
    time.sleep(1.2)
    with pytest.raises(Unauthorized, match="expired"):
        local_server.client(token=secret).whoami()
    # Listed as what it is: it used to show as "live" until revoked.
    assert {t["name"]: t for t in admin.tokens.list()}["short-lived"]["state"] == "expired"
    shown = local_server.cli("tokens", "ls")
    assert any("short-lived" in line and "expired" in line for line in shown.stdout.splitlines())


@pytest.mark.parametrize(("name", "expires", "match"), [
    ("bad name", None, "token name"), ("", None, "token name"), ("ok", "soon", "duration"),
    ("ok", "0d", "duration"),
])
def test_bad_token_requests(local_server: Cumulo, name: str, expires: str | None,
                            match: str) -> None:
    with pytest.raises(Invalid, match=match):
        local_server.client().tokens.create(name, expires_in=expires)


def test_only_hashes_are_stored(local_server: Cumulo) -> None:
    secret = local_server.client().tokens.create("hash-check")["token"]
    with sqlite3.connect(local_server.home / "cumulo.db") as db:
        rows = db.execute("select secret_hash from tokens").fetchall()
        dump = "\n".join(db.iterdump())
    assert ADMIN_TOKEN not in dump and secret not in dump
    assert all(len(h) == 64 for (h,) in rows)


def test_tokens_cli(local_server: Cumulo) -> None:
    made = local_server.cli("tokens", "create", "from-cli")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("cml_")
    assert "not shown again" in made.stderr
    listed = local_server.cli("tokens", "ls")
    assert "from-cli" in listed.stdout and secret not in listed.stdout
    assert local_server.cli("status", token=secret).returncode == 0
    revoked = local_server.cli("tokens", "revoke", "from-cli")
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    refused = local_server.cli("status", token=secret)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: token 'from-cli' was revoked; use another token"
    assert "Traceback" not in refused.stderr


def test_token_lifetimes_take_the_one_grammar(local_server: Cumulo) -> None:
    from datetime import UTC, datetime

    made = local_server.cli("tokens", "create", "ninety-minutes", "--expires-in", "1h30m",
                            "--json")
    assert made.returncode == 0, made.stderr
    left = datetime.fromisoformat(json.loads(made.stdout)["expires_at"]).replace(tzinfo=UTC) \
        - datetime.now(UTC)
    assert 5300 < left.total_seconds() <= 5400
    bad = local_server.cli("tokens", "create", "never", "--expires-in", "soon")
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "error: --expires-in 'soon' is not a duration: use forms like 90s, 30m, 1h30m, 7d, 2w")
    assert "never" not in local_server.cli("tokens", "ls").stdout
