"""Fetching from an address a user gave, without reaching what only the server can reach.

A URL load asks the server to download from wherever the user says. Unguarded, that reads the
machine's and the network's internal services: MLflow's port on loopback, a cloud's metadata
service at 169.254.169.254, other hosts on the private network. So, for every caller:

- the host is resolved once, and the request is refused (:class:`~cumulo.errors.Forbidden`)
  if any of its addresses is internal (:func:`internal_kind`): loopback, private, link-local,
  unspecified, multicast, reserved, or one of those written as IPv4-mapped, NAT64 or 6to4 IPv6,
  unless the server's setting ``allow_internal_urls`` is on;
- the connection goes to the address that was checked, not to the name: a second lookup could
  answer differently (DNS rebinding). The Host header, and for https the TLS server name and the
  certificate check, stay the URL's host;
- every request goes through the check, so each hop of a redirect is checked the same way.

:func:`client` is an ``httpx.Client`` that does all three. No proxy from the environment is
used: a proxy would make the connection on its own lookup.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from cumulo.errors import Forbidden, Invalid

__all__ = ["SETTING", "Address", "GuardedTransport", "Resolver", "check_url", "client",
           "internal_kind", "resolve"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], Iterable[str]]
"""A host name to its addresses, as text; :func:`resolve` asks the system."""

SETTING = "allow_internal_urls (CUMULO_ALLOW_INTERNAL_URLS)"

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits


def resolve(host: str) -> list[str]:
    """The system's answer for ``host``, each address once, in its order."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded(address: Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 one stands for, and the form it takes."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    return None


def internal_kind(address: Address) -> str | None:
    """What makes ``address`` internal ("loopback", "link-local", ...), or None for a public
    address. An IPv6 form of an IPv4 address is judged by the IPv4 address it carries."""
    embedded = _embedded(address)
    if embedded is not None:
        inner, form = embedded
        kind = internal_kind(inner)
        return None if kind is None else f"{kind}: the {form} form of {inner}"
    checks: tuple[tuple[str, bool], ...] = (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),  # is_global holds for most multicast
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for kind, holds in checks:
        if holds:
            return kind
    # What is left: shared address space (100.64.0.0/10) and the like.
    return None if address.is_global else "not public"


def _lookup(host: str, resolver: Resolver, *, shown: str) -> list[Address]:
    try:
        addresses = [ipaddress.ip_address(a) for a in resolver(host)]
    except (OSError, UnicodeError, ValueError) as exc:
        raise Invalid(f"cannot resolve {shown}: {exc}") from exc
    if not addresses:
        raise Invalid(f"cannot resolve {shown}: no addresses")
    return addresses


def check_url(url: str | httpx.URL, *, allow_internal: bool,
              resolver: Resolver = resolve) -> list[Address]:
    """The addresses to connect to for ``url``'s host, each one checked: resolved once (an
    address as host is taken as it is); :class:`Forbidden` if any is internal, unless
    ``allow_internal``."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise Invalid(f"{str(url)!r} is not an http(s) URL")
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded, as DNS wants it
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = [literal] if literal is not None else _lookup(host, resolver, shown=parsed.host)
    if allow_internal:
        return addresses
    for address in addresses:
        kind = internal_kind(address)
        if kind is not None:
            what = (str(address) if literal is not None
                    else f"{parsed.host} resolves to {address}, which")
            raise Forbidden(
                f"{what} is internal ({kind}): the server fetches from no loopback, private, "
                "link-local (a cloud's metadata service) or other internal address, whoever "
                f"asks, unless its setting {SETTING} is on")
    return addresses


class GuardedTransport(httpx.BaseTransport):
    """Checks each request's host (:func:`check_url`) and sends the request to a checked
    address, trying them in turn while they refuse the connection."""

    def __init__(self, *, allow_internal: bool, resolver: Resolver = resolve,
                 verify: ssl.SSLContext | bool = True,
                 network: httpx.BaseTransport | None = None) -> None:
        self._allow_internal = allow_internal
        self._resolver = resolver
        # No keep-alive: a pooled connection is keyed by the address, and must not carry a
        # request for one host over a TLS session opened (and its certificate checked) for
        # another one on the same address.
        self._network = network or httpx.HTTPTransport(
            verify=verify, limits=httpx.Limits(max_keepalive_connections=0))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        addresses = check_url(request.url, allow_internal=self._allow_internal,
                              resolver=self._resolver)
        extensions: dict[str, Any] = dict(request.extensions)
        if request.url.scheme == "https":
            extensions["sni_hostname"] = request.url.raw_host.decode("ascii")
        failed: httpx.TransportError | None = None
        for address in addresses:
            pinned = httpx.Request(request.method, request.url.copy_with(host=str(address)),
                                   headers=request.headers,  # Host: the URL's host, as sent
                                   stream=request.stream, extensions=extensions)
            try:
                return self._network.handle_request(pinned)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failed = exc
        assert failed is not None  # check_url returns at least one address
        raise failed

    def close(self) -> None:
        self._network.close()


def client(*, allow_internal: bool, timeout: float = 60, resolver: Resolver = resolve,
           verify: ssl.SSLContext | bool = True,
           network: httpx.BaseTransport | None = None) -> httpx.Client:
    """An ``httpx.Client`` for URLs a user gave: every request, redirects included, guarded
    by :class:`GuardedTransport`. Redirects are followed only where a request asks
    (``follow_redirects=True``), each hop guarded the same way; ``network`` stands in for the
    network (tests)."""
    transport = GuardedTransport(allow_internal=allow_internal, resolver=resolver,
                                 verify=verify, network=network)
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False,
                        trust_env=False)
