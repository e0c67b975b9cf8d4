"""Saved logins through the real CLI against real servers: a profile per server, --profile and
CUMULO_PROFILE, whoami, logout, signing in with a password, and what the first ``cumulo up`` of
a new home saves."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cumulo.errors import Unauthorized
from tests.services import ADMIN_TOKEN, CUMULO, Cumulo, free_port, start_cumulo

OTHER_TOKEN = "cml_other-admin-token-0123456789abcdef"
ALICE_TOKEN = "cml_alice-token-0123456789abcdef"


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    """A second server, with an admin token of its own."""
    server = start_cumulo(tmp_path_factory.mktemp("other") / ".cumulo",
                          {"CUMULO_ADMIN_TOKEN": OTHER_TOKEN})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alice(local_server: Cumulo) -> str:
    local_server.add_user("alice", ALICE_TOKEN)
    return ALICE_TOKEN


def cli(creds: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: no CUMULO_URL or CUMULO_TOKEN unless given, logins saved in
    ``creds``, ``stdin`` on its standard input."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CUMULO_")}
    return subprocess.run([CUMULO, *args], env={**base, "CUMULO_CREDENTIALS": str(creds), **env},
                          capture_output=True, text=True, timeout=60, input=stdin)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def whoami(creds: Path, *args: str, **env: str) -> dict[str, Any]:
    return json.loads(ok(cli(creds, *args, "whoami", "--json", **env)))  # type: ignore[no-any-return]


def saved(creds: Path) -> dict[str, Any]:
    return tomllib.loads(creds.read_text())


def name(server: Cumulo) -> str:
    return server.url.removeprefix("http://")


def test_a_login_per_server_chosen_by_profile(local_server: Cumulo, other: Cumulo,
                                              tmp_path: Path) -> None:
    creds = tmp_path / "credentials.toml"
    out = ok(cli(creds, "login", "--url", local_server.url, "--token", ADMIN_TOKEN))
    assert out.strip() == (f"logged in to {local_server.url} as admin; saved as profile "
                           f"'{name(local_server)}' (now current) in {creds}")
    ok(cli(creds, "login", "--url", other.url + "/", "--token", OTHER_TOKEN))
    doc = saved(creds)
    assert doc == {"current": name(other), "profiles": {
        name(local_server): {"url": local_server.url, "token": ADMIN_TOKEN, "user": "admin"},
        name(other): {"url": other.url, "token": OTHER_TOKEN, "user": "admin"}}}
    listed = json.loads(ok(cli(creds, "profiles", "ls", "--json")))
    assert [(p["name"], p["current"]) for p in listed] == [(name(local_server), False),
                                                           (name(other), True)]
    assert "token" not in ok(cli(creds, "profiles", "ls"))

    assert whoami(creds)["url"] == other.url
    assert whoami(creds, "--profile", name(local_server))["url"] == local_server.url
    assert whoami(creds, CUMULO_PROFILE=name(local_server))["url"] == local_server.url
    # CUMULO_URL alone picks that server's saved login, not the current one of another.
    assert whoami(creds, CUMULO_URL=local_server.url)["profile"] == name(local_server)
    # CUMULO_URL and CUMULO_TOKEN still win over CUMULO_PROFILE; --profile wins over them.
    from_env = whoami(creds, CUMULO_URL=local_server.url, CUMULO_TOKEN=ADMIN_TOKEN,
                      CUMULO_PROFILE=name(other))
    assert (from_env["url"], from_env["profile"]) == (local_server.url, None)
    assert whoami(creds, "--profile", name(other), CUMULO_URL=local_server.url,
                  CUMULO_TOKEN=ADMIN_TOKEN)["url"] == other.url

    ok(cli(creds, "profiles", "use", name(local_server)))
    assert whoami(creds)["url"] == local_server.url
    ok(cli(creds, "--profile", name(other), "files", "mb", "on-other"))
    assert [b["name"] for b in other.client(token=OTHER_TOKEN).files.buckets()] == ["on-other"]

    missing = cli(creds, "--profile", "nope", "files", "ls")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: no saved login named 'nope'")


def test_a_profile_of_another_server_is_not_replaced_unasked(local_server: Cumulo, other: Cumulo,
                                                             tmp_path: Path) -> None:
    creds = tmp_path / "credentials.toml"
    ok(cli(creds, "login", "--url", local_server.url, "--token", ADMIN_TOKEN, "--profile", "work"))
    before = creds.read_bytes()
    refused = cli(creds, "login", "--url", other.url, "--token", OTHER_TOKEN, "--profile", "work")
    assert refused.returncode == 1
    assert refused.stderr.split("\n")[0] == (
        f"error: profile 'work' holds the login of admin at {local_server.url}, not of admin at "
        f"{other.url}: name another with --profile, or replace it with --force")
    assert creds.read_bytes() == before
    # Logging in again to the profile's own server needs no URL.
    ok(cli(creds, "login", "--profile", "work", "--token", ADMIN_TOKEN))
    ok(cli(creds, "login", "--url", other.url, "--token", OTHER_TOKEN, "--profile", "work",
           "--force"))
    assert saved(creds)["profiles"] == {"work": {"url": other.url, "token": OTHER_TOKEN,
                                                 "user": "admin"}}
    not_a_url = cli(creds, "login", "--url", "127.0.0.1:8080", "--token", OTHER_TOKEN)
    assert not_a_url.stderr.startswith("error: '127.0.0.1:8080' is not a server URL; give one "
                                       "like http://127.0.0.1:8080")
    bad = cli(creds, "login", "--url", other.url, "--token", "cml_wrong-token-0123456789abcdef")
    assert bad.returncode == 1 and "token is not valid" in bad.stderr
    assert list(saved(creds)["profiles"]) == ["work"]  # a refused token is not saved


def test_whoami_names_the_user_and_token(local_server: Cumulo, alice: str,
                                         tmp_path: Path) -> None:
    creds = tmp_path / "credentials.toml"
    ok(cli(creds, "login", "--url", local_server.url, "--token", ADMIN_TOKEN))
    ok(cli(creds, "login", "--url", local_server.url, "--token", alice))
    # Another user of the same server: a profile of their own, the admin's kept.
    assert list(saved(creds)["profiles"]) == [name(local_server), f"alice@{name(local_server)}"]
    me = whoami(creds)
    assert {k: me[k] for k in ("profile", "url", "user", "is_admin", "token_name")} == {
        "profile": f"alice@{name(local_server)}", "url": local_server.url, "user": "alice",
        "is_admin": False, "token_name": "alice"}
    lines = [line.strip().split(None, 1) for line in ok(cli(creds, "whoami")).splitlines()]
    assert lines == [["profile:", f"alice@{name(local_server)}"],
                     ["server:", local_server.url], ["user:", "alice"], ["admin:", "no"],
                     ["token:", f"alice (id {me['token_id']})"]]
    assert whoami(creds, "--profile", name(local_server))["user"] == "admin"
    from_env = ok(cli(creds, "whoami", CUMULO_URL=local_server.url, CUMULO_TOKEN=ADMIN_TOKEN))
    assert "none (the token comes from CUMULO_TOKEN or --token)" in from_env


def test_logout_removes_only_its_profile(local_server: Cumulo, other: Cumulo,
                                         tmp_path: Path) -> None:
    creds = tmp_path / "credentials.toml"
    laptop = local_server.client().tokens.create("laptop")["token"]
    ok(cli(creds, "login", "--url", other.url, "--token", OTHER_TOKEN))
    ok(cli(creds, "login", "--url", local_server.url, "--token", laptop, "--profile", "laptop"))
    kept = saved(creds)["profiles"][name(other)]

    out = ok(cli(creds, "logout", "--revoke"))  # the login in use: laptop
    assert out.splitlines() == [
        f"logged out: removed profile 'laptop' (admin at {local_server.url}) from {creds}; "
        f"revoked its token 'laptop' on {local_server.url}",
        f"no current login now; 'cumulo profiles use NAME' picks one of: {name(other)}"]
    assert saved(creds) == {"profiles": {name(other): kept}}
    with pytest.raises(Unauthorized, match="revoked"):
        local_server.client(token=laptop).whoami()

    gone = cli(creds, "logout", "--profile", "laptop")
    assert gone.returncode == 1 and "no saved login named 'laptop'" in gone.stderr
    nothing = cli(creds, "logout")
    assert nothing.returncode == 1 and "no saved login is in use here" in nothing.stderr
    ok(cli(creds, "logout", "--profile", name(other)))
    assert saved(creds) == {"profiles": {}}


def test_a_refused_saved_token_names_its_profile(local_server: Cumulo, tmp_path: Path) -> None:
    creds = tmp_path / "credentials.toml"
    secret = local_server.client().tokens.create("soon-revoked")["token"]
    ok(cli(creds, "login", "--url", local_server.url, "--token", secret, "--profile", "old"))
    local_server.client().tokens.revoke("soon-revoked")
    refused = cli(creds, "files", "ls")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"error: token 'soon-revoked' was revoked; use another "
                                      f"token (the token of profile 'old' in {creds})")
    none = cli(creds, "files", "ls", CUMULO_URL=f"http://127.0.0.1:{free_port()}")
    assert "cannot reach Cumulo" in none.stderr


def test_login_with_a_user_name_and_password(local_server: Cumulo, tmp_path: Path) -> None:
    from sqlalchemy.orm import Session

    from cumulo.access.models import User
    from cumulo.access.passwords import hash_password
    from cumulo.db import make_engine, utcnow

    password = "tangerine-otter-lamp-42"
    with Session(make_engine(f"sqlite:///{local_server.home / 'cumulo.db'}")) as session:
        session.add(User(name="dora", created_at=utcnow(), password_hash=hash_password(password)))
        session.commit()
    creds = tmp_path / "credentials.toml"
    here = name(local_server)

    wrong = cli(creds, "login", "--url", local_server.url, "--user", "dora", "--password-stdin",
                stdin="not-her-password-at-all\n")
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("error: the user name or the password is wrong")
    assert not creds.exists()  # nothing saved

    out = ok(cli(creds, "login", "--url", local_server.url, "--user", "dora",
                 "--password-stdin", stdin=password + "\n"))
    assert out.startswith(f"logged in to {local_server.url} as dora; saved as profile "
                          f"'{here}' (now current) in {creds}; the session ends at ")
    assert out.rstrip().endswith("UTC, then 'cumulo login --user dora' again")
    profile = saved(creds)["profiles"][here]
    assert profile["user"] == "dora" and profile["token"].startswith("cml_")
    me = whoami(creds)
    assert me["user"] == "dora" and me["token_name"].startswith("signin-")

    both = cli(creds, "login", "--user", "dora", "--token", ADMIN_TOKEN)
    assert both.returncode == 1 and "--user (to sign in with a password) or --token" in both.stderr
    empty = cli(creds, "login", "--user", "dora", "--password-stdin")
    assert empty.returncode == 1 and "--password-stdin read no password" in empty.stderr


def test_the_first_format_still_reads(local_server: Cumulo, other: Cumulo,
                                      tmp_path: Path) -> None:
    creds = tmp_path / "credentials.toml"
    creds.write_text(f'url = "{local_server.url}"\ntoken = "{ADMIN_TOKEN}"\n')
    assert whoami(creds)["profile"] == name(local_server)
    ok(cli(creds, "login", "--url", other.url, "--token", OTHER_TOKEN))
    assert saved(creds) == {"current": name(other), "profiles": {
        name(local_server): {"url": local_server.url, "token": ADMIN_TOKEN},
        name(other): {"url": other.url, "token": OTHER_TOKEN, "user": "admin"}}}
    assert whoami(creds, "--profile", name(local_server))["user"] == "admin"


def test_first_start_of_a_new_home_keeps_the_other_logins(tmp_path: Path) -> None:
    """The issue: the first 'cumulo up' of any new home replaced the saved login, and with it
    the only copy of another home's admin token."""
    creds = tmp_path / "credentials.toml"
    creds.write_text('current = "prod"\n[profiles.prod]\nurl = "https://cumulo.example.com"\n'
                     'token = "prod-token"\n')
    port = free_port()
    env = {"CUMULO_ADMIN_TOKEN": "", "CUMULO_CREDENTIALS": str(creds)}  # tokens made at start

    first = start_cumulo(tmp_path / "one" / ".cumulo", env, port=port)
    first.stop()
    here = f"127.0.0.1:{port}"
    assert (f"saved to {creds} as profile '{here}'; the CLI still uses profile 'prod' "
            f"(https://cumulo.example.com): 'cumulo profiles use {here}' switches"
            ) in first.log.read_text()
    after_first = saved(creds)

    second = start_cumulo(tmp_path / "two" / ".cumulo", env, port=port)  # the same address
    try:
        doc = saved(creds)
        assert doc["current"] == "prod"
        assert {k: doc["profiles"][k] for k in ("prod", here)} == after_first["profiles"]
        assert whoami(creds, "--profile", f"{here}-2")["url"] == second.url
        # The first home's token, shown once, is not the second's.
        assert cli(creds, "--profile", here, "whoami").returncode == 1
    finally:
        second.stop()
    first = start_cumulo(tmp_path / "one" / ".cumulo", env, port=port)
    try:
        assert whoami(creds, "--profile", here)["user"] == "admin"
        assert saved(creds) == doc  # a restart saves nothing
    finally:
        first.stop()
