"""Who a replica answers: the check at the door of every invocation, with no database.

A replica (local, or a Ray Serve one) holds a :class:`Gate`. Before a request reaches the
request path it must

- name, in its ``Host`` header, an address the replica serves under (its bound address, the
  loopback names when it listens on loopback, the control plane's public URL, names set by the
  operator). A browser page of another site that resolves its own name to this machine (DNS
  rebinding) sends its own name, and is refused;
- carry ``Authorization: Bearer <token>`` with a live Cumulo token, unless the endpoint was
  created ``--public``. The replica knows the live tokens as their SHA-256 and expiry, pushed
  by the endpoint manager (:mod:`cumulo.serving.allowed`) whenever the set changes: a revoked
  token stops working within a second, and no request waits for the database.

A token seen before is found by its header's bytes in a small cache, so a request pays two dict
lookups and a clock read; a new one pays one SHA-256 first. The cache is dropped with every new
set. :meth:`Gate.check` answers None (go on) or the refusal's status and message.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import orjson

__all__ = ["TOKENS_POLL", "Gate", "host_names", "is_loopback", "read_tokens"]

TOKENS_POLL = 0.1  # seconds between a local replica's looks at the pushed token file
_SEEN_MAX = 4096  # header values remembered; past that the cache starts again
_MISSING = -1.0  # not in the set (an expiry is None or a time after 1970)

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def _wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bracketed(name: str) -> str:
    """An IPv6 address as a Host header writes it."""
    return f"[{name}]" if ":" in name and not name.startswith("[") else name


def _interface_names() -> list[str]:
    """This machine's own names and addresses: what a replica bound on every interface may be
    reached under."""
    names = [socket.gethostname(), socket.getfqdn()]
    try:
        import psutil

        for addresses in psutil.net_if_addrs().values():
            names += [a.address.split("%", 1)[0] for a in addresses
                      if a.family in (socket.AF_INET, socket.AF_INET6)]
    except Exception:  # psutil missing or the interfaces unreadable: names and loopback only
        pass
    return names


def host_names(bound: str, port: int, extra: Iterable[str] = ()) -> frozenset[bytes]:
    """The ``Host`` header values a replica bound on ``bound``:``port`` answers: each name alone
    and with the port, lower case. Loopback brings ``localhost`` and ``127.0.0.1``; every
    interface (``0.0.0.0``) brings this machine's names and addresses too; ``extra`` adds
    names (the control plane's public URL's, the operator's)."""
    names = [bound]
    if is_loopback(bound) or _wildcard(bound):
        names += _LOOPBACK_NAMES
    if _wildcard(bound):
        names += _interface_names()
    names += list(extra)
    out: set[bytes] = set()
    for name in names:
        if not name:
            continue
        name = _bracketed(name.lower())
        value = name.encode() if name.isascii() else name.encode("idna")
        out.add(value)
        out.add(b"%s:%d" % (value, port))
    return frozenset(out)


def read_tokens(path: Path) -> tuple[str, dict[str, float | None]] | None:
    """The token set pushed to ``path`` (:mod:`cumulo.serving.allowed`): its digest and
    ``{sha256 hex: expiry or None}``; None if there is none yet or it is being replaced."""
    try:
        doc = orjson.loads(path.read_bytes())
        return str(doc["digest"]), dict(doc["tokens"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Gate:
    """The check every invocation passes first; see the module's docstring."""

    __slots__ = ("_state", "digest", "hosts", "public")

    def __init__(self, hosts: frozenset[bytes], *, public: bool = False) -> None:
        self.hosts = hosts
        self.public = public
        self.digest = ""  # of the token set held; "" before the first one
        # (live tokens by hash, header value -> expiry): swapped whole, so that a request on
        # the replica's loop never sees one with the other's cache while a thread updates it.
        self._state: tuple[Mapping[str, float | None], dict[bytes, float | None]] = ({}, {})

    def allow(self, digest: str, tokens: Mapping[str, float | None]) -> None:
        """Take a new set of live tokens (SHA-256 hex -> expiry in Unix seconds, or None)."""
        self._state = (tokens, {})
        self.digest = digest

    def check(self, headers: Mapping[bytes, bytes]) -> tuple[int, str] | None:
        """None when the request may go on; else the status and message to answer."""
        host = headers.get(b"host")
        if host not in self.hosts and (host is None or host.lower() not in self.hosts):
            return self._misdirected(host)
        if self.public:
            return None
        auth = headers.get(b"authorization")
        if auth is None:
            return 401, ("this endpoint needs a token: send 'Authorization: Bearer <token>' "
                         "with a live Cumulo API token ('cumulo tokens create' makes one); "
                         "only an endpoint created --public takes requests without one")
        tokens, seen = self._state
        expires = seen.get(auth, _MISSING)
        if expires == _MISSING:
            expires = self._learn(auth, tokens, seen)
            if expires == _MISSING:
                return 401, ("the token is not valid here: it is unknown, revoked or "
                             "expired, its holder may not endpoints:Invoke this endpoint, or "
                             "it is not a bearer token ('Authorization: Bearer <token>')")
        if expires is not None and expires <= time.time():
            return 401, "the token expired; use another token"
        return None

    @staticmethod
    def _learn(auth: bytes, tokens: Mapping[str, float | None],
               seen: dict[bytes, float | None]) -> float | None:
        scheme, _, secret = auth.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not secret.strip():
            return _MISSING
        expires = tokens.get(hashlib.sha256(secret.strip()).hexdigest(), _MISSING)
        if expires != _MISSING:
            if len(seen) >= _SEEN_MAX:
                seen.clear()
            seen[auth] = expires
        return expires

    def _misdirected(self, host: bytes | None) -> tuple[int, str]:
        if host is None:
            return 400, ("the request has no Host header; send the endpoint's address as "
                         "its Host (HTTP/1.1 clients do)")
        shown = host[:100].decode("latin-1")
        return 421, (f"this replica does not answer for host {shown!r}: send the request to "
                     "the endpoint's own address ('url' in 'cumulo endpoints show')")
