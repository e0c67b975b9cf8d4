"""Saved logins on the command line: ``cumulo login``, ``logout``, ``whoami``, ``profiles``.

The file and its rules are :mod:`cumulo.client.profiles`; which login a command uses is
``config.load_client_settings``. This module asks the server, and says what it did.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any

import httpx
import typer
from rich.markup import escape

from cumulo.cli.output import JsonOpt, console, err, show_record, show_rows
from cumulo.client import Client
from cumulo.client.profiles import editing, normalize_url, read_logins
from cumulo.config import client_password, credentials_path, load_client_settings
from cumulo.errors import (
    Invalid,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    error_from_payload,
)

__all__ = ["login", "logout", "profiles_app", "save_first_login", "whoami"]

profiles_app = typer.Typer(help="Saved logins, one per server: list them, pick one.",
                           no_args_is_help=True)

DEFAULT_URL = "http://127.0.0.1:8080"

ProfileOpt = typer.Option(None, "--profile", help="The saved login's name (default: the one "
                          "'cumulo --profile', CUMULO_PROFILE or the current login says).")


def _root(ctx: typer.Context) -> dict[str, Any]:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, dict) else {}


def login(
    ctx: typer.Context,
    url: str | None = typer.Option(None, "--url", help="The server (default: the profile's, "
                                   f"else {DEFAULT_URL})."),
    token: str | None = typer.Option(None, "--token", help="An API token (asked if neither "
                                     "it nor --user is given)."),
    user: str | None = typer.Option(None, "--user", help="Sign in as this user with their "
                                    "password (asked), for a session token of 12 hours."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="With --user: read "
                                        "the password from standard input (for scripts)."),
    sso: bool = typer.Option(False, "--sso", help="Sign in with the server's single sign-on "
                             "provider, in a browser (on any machine), for a session token of "
                             "12 hours."),
    profile: str | None = typer.Option(None, "--profile", help="Save as this name (default: "
                                       "the server's host:port)."),
    force: bool = typer.Option(False, "--force", help="Replace a profile of that name that "
                               "holds a login to another server or of another user."),
) -> None:
    """Sign in with a user name and password (--user) or single sign-on (--sso), or check a
    token with the server; save the token as a profile, and make that profile current."""
    root = _root(ctx)
    name = profile or root.get("profile")
    path = credentials_path()
    known = read_logins(path).profiles.get(name) if name else None
    target = normalize_url(url or root.get("url") or (known.url if known else DEFAULT_URL))
    ends = ""
    if sso:
        if user is not None or token or root.get("token") or password_stdin:
            raise Invalid("give --sso alone: it signs in in a browser, with no --user, "
                          "--password-stdin or --token")
        signed = _sso_sign_in(target)
        token, who = signed["token"], signed["user"]
        until = datetime.fromisoformat(signed["expires_at"])
        ends = (f"; the session ends at {until:%Y-%m-%d %H:%M} UTC, then 'cumulo login --sso' "
                "again")
    elif user is not None:
        if token or root.get("token"):
            raise Invalid("give --user (to sign in with a password) or --token, not both")
        signed = _sign_in(target, user, _password(user, from_stdin=password_stdin))
        token, who = signed["token"], signed["user"]
        until = datetime.fromisoformat(signed["expires_at"])
        ends = (f"; the session ends at {until:%Y-%m-%d %H:%M} UTC, then 'cumulo login --user "
                f"{who}' again")
    else:
        if password_stdin:
            raise Invalid("--password-stdin goes with --user NAME")
        token = token or root.get("token") or typer.prompt("Token", hide_input=True)
        with Client(target, token=token) as c:
            who = c.whoami()["user"]
    with editing(path) as logins:
        saved = logins.login(target, token, user=who, name=name, force=force)
    console.print(f"logged in to {target} as {who}; saved as profile {saved.name!r} "
                  f"(now current) in {path}{ends}")


def _password(user: str, *, from_stdin: bool) -> str:
    if not from_stdin:
        return client_password() or str(typer.prompt(f"Password for {user}", hide_input=True))
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise Invalid("--password-stdin read no password: send it on standard input, e.g. "
                      "'cumulo login --user NAME --password-stdin < file'")
    return password


def _post(url: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST JSON to a sign-in route, sent without the SDK (which would take a refusal for a
    missing token); the status and the JSON answer, or the server's error raised."""
    try:
        answer = httpx.post(f"{url}{path}", json=body, headers={"accept": "application/json"},
                            timeout=60)
    except httpx.TransportError as exc:
        raise Unavailable(f"cannot reach Cumulo at {url}: {exc}. Is it running? Start it with "
                          "'cumulo up', or give its address with --url") from exc
    try:
        payload: Any = answer.json()
    except ValueError:
        payload = answer.text
    if answer.status_code >= 400 or not isinstance(payload, dict):
        raise error_from_payload(answer.status_code, payload)
    return answer.status_code, payload


def _sign_in(url: str, user: str, password: str) -> dict[str, Any]:
    """A session token for a user name and password: ``{"token", "user", "expires_at"}``."""
    return _post(url, "/login", {"user": user, "password": password})[1]


def _sso_sign_in(url: str) -> dict[str, Any]:
    """A session token by single sign-on: the server's device flow (RFC 8628). The person
    opens the page shown, checks the code and signs in with the provider; meanwhile this
    polls the server until it answers ``{"token", "user", "expires_at"}``, or a refusal."""
    _, started = _post(url, "/login/sso/device", {})
    interval = float(started.get("interval", 5))
    err.print(f"To sign in, open this page in a browser (on any machine) and check that it "
              f"shows the code [bold]{escape(started['user_code'])}[/]:\n"
              f"  {escape(started['verification_uri_complete'])}\n"
              f"(or open {escape(started['verification_uri'])} and enter the code). Waiting...",
              soft_wrap=True)
    deadline = time.monotonic() + float(started.get("expires_in", 600))
    while time.monotonic() < deadline:
        time.sleep(interval)
        try:
            status, answer = _post(url, "/login/sso/device/token",
                                   {"device_code": started["device_code"]})
        except TooManyRequests as exc:  # slow_down: RFC 8628 says wait 5 s longer each time
            interval = float(exc.details.get("interval", interval + 5))
            continue
        if status == 200:
            return answer
        interval = float(answer.get("interval", interval))
    raise Unauthorized("the sign-in in the browser did not happen in time; run 'cumulo login "
                       "--sso' again")


def logout(
    ctx: typer.Context,
    profile: str | None = ProfileOpt,
    revoke: bool = typer.Option(False, "--revoke", help="Also revoke the token on the server, "
                                "so that no copy of it works any more."),
) -> None:
    """Forget a saved login (the one in use, or --profile NAME); the others stay as they are."""
    root = _root(ctx)
    path = credentials_path()
    name = profile or root.get("profile")
    if name is None:
        name = load_client_settings(root.get("url"), root.get("token")).profile
    if name is None:
        raise Invalid("no saved login is in use here (the token comes from CUMULO_TOKEN or "
                      "--token, or none is saved); name one with --profile ('cumulo profiles "
                      "ls')")
    saved = read_logins(path).get(name)
    revoked = ""
    if revoke:
        with Client(saved.url, token=saved.token) as c:
            try:
                token_id = c.whoami()["token_id"]
            except Unauthorized as exc:
                revoked = f"; the server already refuses its token ({exc.message})"
            else:
                token_name = c.tokens.revoke(token_id)["name"]
                revoked = f"; revoked its token {token_name!r} on {saved.url}"
    with editing(path) as logins:
        logins.remove(name)
        others = list(logins.profiles)
        current = logins.current
    console.print(f"logged out: removed profile {name!r} ({saved.describe()}) from {path}"
                  f"{revoked}")
    if current is None and others:
        console.print(f"no current login now; 'cumulo profiles use NAME' picks one of: "
                      f"{', '.join(others)}")


def whoami(ctx: typer.Context, profile: str | None = ProfileOpt, json: bool = JsonOpt) -> None:
    """Ask the server who the token in use belongs to."""
    root = _root(ctx)
    with Client(root.get("url"), token=root.get("token"),
                profile=profile or root.get("profile")) as c:
        me = c.whoami()
        token_name = me.get("token_name")
        record = {"profile": c.profile, "url": c.url, "user": me["user"],
                  "is_admin": me["is_admin"], "token_id": me["token_id"],
                  "token_name": token_name}
    token = f"{token_name} (id {me['token_id']})" if token_name else f"id {me['token_id']}"
    show_record(record, [
        ("profile", c.profile or "none (the token comes from CUMULO_TOKEN or --token)"),
        ("server", c.url), ("user", me["user"]), ("admin", me["is_admin"]), ("token", token),
    ], as_json=json)


@profiles_app.command("ls")
def list_profiles(json: bool = JsonOpt) -> None:
    """List the saved logins (never their tokens); * marks the current one."""
    logins = read_logins(credentials_path())
    rows = [{"name": p.name, "url": p.url, "user": p.user, "current": p.name == logins.current}
            for p in logins.profiles.values()]
    if not rows and not json:
        err.print(f"no saved logins in {logins.path}; 'cumulo login --url URL' saves one")
        return
    show_rows(rows, {"": lambda r: "*" if r["current"] else "", "name": "name", "url": "url",
                     "user": "user"}, as_json=json)


profiles_app.command("list", hidden=True)(list_profiles)


@profiles_app.command("use")
def use_profile(name: str = typer.Argument(..., help="a saved login, from 'cumulo profiles ls'")
                ) -> None:
    """Make a saved login the current one: the one commands use unless told otherwise."""
    path = credentials_path()
    with editing(path) as logins:
        saved = logins.use(name)
    console.print(f"now using profile {name!r}: {saved.describe()}")


def save_first_login(url: str, token: str) -> str:
    """What ``cumulo up`` does with the admin token of a new home: save it as a profile of its
    own, never over another login. Returns what to tell the user."""
    path = credentials_path()
    with editing(path) as logins:
        saved = logins.add_server(url, token, user="admin")
        current = logins.profiles.get(logins.current) if logins.current else None
    if current is None or current.name == saved.name:
        return (f"saved to {path} as profile {saved.name!r}, the current login: the CLI and "
                "SDK on this machine use it")
    return (f"saved to {path} as profile {saved.name!r}; the CLI still uses profile "
            f"{current.name!r} ({current.url}): 'cumulo profiles use {saved.name}' switches, "
            f"'cumulo --profile {saved.name} ...' picks it for one command")
