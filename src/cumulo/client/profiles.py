"""Saved logins: the credentials file, one named profile per server (and user).

The file (``~/.config/cumulo/credentials.toml``; ``config.credentials_path`` says where)::

    current = "127.0.0.1:8080"

    [profiles."127.0.0.1:8080"]
    url = "http://127.0.0.1:8080"
    token = "cml_..."
    user = "admin"

A profile is named after its server unless told otherwise. Nothing here replaces a login to
another server, or another user's, without being asked (``force``): a token ``cumulo up``
printed once would be lost for good. A file of the first format (``url`` and ``token`` at the
top) reads as one profile named after its server and current, and is written in this format at
the next change, that login kept.

Changes go through :func:`editing`: read, change and write under a lock, the file replaced
whole (never half written), readable by its owner only, in a folder made for its owner only.
"""

from __future__ import annotations

import fcntl
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w

from cumulo.errors import Conflict, Invalid, NotFound

__all__ = ["Logins", "Profile", "editing", "normalize_url", "read_logins", "same_server",
           "server_name"]


def normalize_url(url: str) -> str:
    """``url`` without a trailing slash, or Invalid when it is not an http(s) URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"{url!r} is not a server URL; give one like http://127.0.0.1:8080")
    return url.strip().rstrip("/")


def server_name(url: str) -> str:
    """The default profile name of a server: its host and port (and path), e.g.
    ``127.0.0.1:8080``."""
    parts = urlsplit(url)
    return (parts.netloc.lower() + parts.path).rstrip("/")


def same_server(a: str, b: str) -> bool:
    def key(url: str) -> tuple[str, str, int | None, str]:
        parts = urlsplit(url.strip())
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/")

    return key(a) == key(b)


@dataclass(frozen=True)
class Profile:
    name: str
    url: str
    token: str
    user: str | None = None  # who the token belongs to, as the server said when it was saved

    def describe(self) -> str:
        return f"{self.user or 'an unknown user'} at {self.url}"


@dataclass
class Logins:
    """What the credentials file holds; changed in memory, written by :func:`editing`."""

    path: Path
    profiles: dict[str, Profile] = field(default_factory=dict)
    current: str | None = None

    def get(self, name: str) -> Profile:
        profile = self.profiles.get(name)
        if profile is None:
            saved = ", ".join(self.profiles) or "none"
            raise NotFound(f"no saved login named {name!r} in {self.path} (saved: {saved}); "
                           f"'cumulo login --url URL --profile {name}' saves one")
        return profile

    def pick(self, name: str | None, url: str | None) -> Profile | None:
        """The login to use: the one named, else the current one if it is for ``url``, else
        the first saved for ``url``, else (no ``url``) the current one."""
        if name is not None:
            return self.get(name)
        current = self.profiles.get(self.current) if self.current else None
        if url is None:
            return current
        if current is not None and same_server(current.url, url):
            return current
        return next((p for p in self.profiles.values() if same_server(p.url, url)), None)

    def login(self, url: str, token: str, *, user: str, name: str | None = None,
              force: bool = False) -> Profile:
        """Save a checked login and make it current. Without a ``name``, the profile is named
        after the server, or ``user@server`` where that name holds another user's login. A
        name that holds a login to another server or of another user is replaced only with
        ``force``."""
        if name is None:
            base = server_name(url)
            name = next((n for n in (base, f"{user}@{base}")
                         if self._fits(n, url, user)), f"{user}@{base}")
        old = self.profiles.get(name)
        if old is not None and not force and not self._fits(name, url, user):
            raise Conflict(
                f"profile {name!r} holds the login of {old.describe()}, not of {user} at "
                f"{url}: name another with --profile, or replace it with --force")
        self.profiles[name] = Profile(name, url, token, user)
        self.current = name
        return self.profiles[name]

    def add_server(self, url: str, token: str, *, user: str) -> Profile:
        """Save the admin token of a server's first start. Another home may have run at the
        same address before, with a token of its own: that profile is kept and this one gets
        the next free name (``127.0.0.1:8080-2``). It becomes current when there is no
        current login, or when the current one is for this address (where it would be sent
        to this server, which does not know it)."""
        base = server_name(url)
        names = (base if n == 1 else f"{base}-{n}" for n in range(1, len(self.profiles) + 2))
        name = next(n for n in names if n not in self.profiles
                    or (same_server(self.profiles[n].url, url)
                        and self.profiles[n].token == token))
        self.profiles[name] = Profile(name, url, token, user)
        current = self.profiles.get(self.current) if self.current else None
        if current is None or same_server(current.url, url):
            self.current = name
        return self.profiles[name]

    def use(self, name: str) -> Profile:
        profile = self.get(name)
        self.current = name
        return profile

    def remove(self, name: str) -> Profile:
        profile = self.get(name)
        del self.profiles[name]
        if self.current == name:
            self.current = None
        return profile

    def _fits(self, name: str, url: str, user: str) -> bool:
        """Whether ``name`` is free, or holds this user's login to this server."""
        old = self.profiles.get(name)
        return old is None or (same_server(old.url, url) and old.user == user)


def read_logins(path: Path) -> Logins:
    """The saved logins in ``path``; none when it does not exist."""
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return Logins(path)
    except tomllib.TOMLDecodeError as exc:
        raise Invalid(f"{path} is not valid TOML: {exc}; fix it, or move it away and "
                      "'cumulo login' again") from exc
    logins = Logins(path, current=doc.get("current") or None)
    tables = doc.get("profiles", {})
    if not isinstance(tables, dict):
        raise Invalid(f"{path}: 'profiles' must be a table of [profiles.NAME] entries")
    for name, table in tables.items():
        logins.profiles[name] = _profile(path, name, table)
    if "url" in doc or "token" in doc:  # the first format: one login, at the top
        first = _profile(path, "", {"url": doc.get("url"), "token": doc.get("token")})
        base = server_name(first.url)
        name = next(n for n in (base if i == 1 else f"{base}-{i}" for i in range(1, 1000))
                    if n not in logins.profiles or logins.profiles[n] == Profile(
                        n, first.url, first.token))
        logins.profiles[name] = Profile(name, first.url, first.token)
        logins.current = logins.current or name
    return logins


def _profile(path: Path, name: str, table: Any) -> Profile:
    label = f"profile {name!r}" if name else "the login at the top"
    if not isinstance(table, dict):
        raise Invalid(f"{path}: {label} must be a table with url and token")
    url, token, user = table.get("url"), table.get("token"), table.get("user")
    if not isinstance(url, str) or not isinstance(token, str) or not token:
        raise Invalid(f"{path}: {label} needs a url and a token (strings); fix it, or remove "
                      "it and 'cumulo login' again")
    return Profile(name, url, token, user if isinstance(user, str) else None)


def _document(logins: Logins) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if logins.current in logins.profiles:
        doc["current"] = logins.current
    doc["profiles"] = {
        p.name: {k: v for k, v in (("url", p.url), ("token", p.token), ("user", p.user))
                 if v is not None}
        for p in logins.profiles.values()
    }
    return doc


@contextmanager
def editing(path: Path) -> Iterator[Logins]:
    """Read the saved logins, let the caller change them, and write them back, under a lock
    (two ``cumulo up`` or ``cumulo login`` at once would otherwise lose one of the two). An
    exception leaves the file as it was."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        logins = read_logins(path)
        yield logins
        _write(path, _document(logins))
    finally:
        os.close(fd)  # and the lock with it


def _write(path: Path, doc: dict[str, Any]) -> None:
    """Replace the file whole: a reader sees the old one or the new one, never half of one.
    The secret is written into a file only its owner can read from the start."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            tomli_w.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # O_CREAT's mode only applies to a file it creates
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
