"""URL loads and internal addresses (issue 18): refused for every caller unless the setting
``allow_internal_urls`` is on, and the connection goes to the address that was checked.

The downloads that succeed here come from real HTTP(S) servers on loopback, so they run with
the guard's ``allow_internal`` on; the refusals run the real guard with it off. A name such as
``data.example`` reaches those servers through a resolver the test hands to the guard (the
guard's own seam for it, no patching), which also counts the lookups.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import re
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from cumulo import netguard
from cumulo.config import load_settings
from cumulo.errors import Forbidden, Invalid, NotFound
from tests.services import Cumulo

SETTING = "allow_internal_urls (CUMULO_ALLOW_INTERNAL_URLS)"


class _Site(http.server.ThreadingHTTPServer):
    """Answers every path with ``body``, and ``/hop?to=URL`` with a redirect to URL; records
    each request's path and Host header."""

    def __init__(self, host: str, port: int, body: bytes) -> None:
        self.body = body
        self.seen: list[tuple[str, str]] = []
        super().__init__((host, port), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Site

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers["Host"]))
        target = parse_qs(urlsplit(self.path).query).get("to")
        self.send_response(302 if target else 200)
        if target:
            self.send_header("Location", target[0])
        self.send_header("Content-Length", "0" if target else str(len(self.server.body)))
        self.end_headers()
        if not target:
            self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _site(host: str = "127.0.0.1", port: int = 0, body: bytes = b"id\n1\n",
          tls: ssl.SSLContext | None = None) -> Iterator[_Site]:
    site = _Site(host, port, body)
    if tls is not None:
        site.socket = tls.wrap_socket(site.socket, server_side=True)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.shutdown()
        site.server_close()


def _answers(*answers: list[str]) -> tuple[Callable[[str], list[str]], list[str]]:
    """A resolver that gives ``answers`` in turn (the last one from then on), and the list of
    the hosts it was asked for."""
    asked: list[str] = []

    def resolver(host: str) -> list[str]:
        asked.append(host)
        return answers[min(len(asked), len(answers)) - 1]

    return resolver, asked


# --- which addresses are internal -------------------------------------------------------------

INTERNAL = [
    ("127.0.0.1", "loopback"), ("127.1.2.3", "loopback"), ("[::1]", "loopback"),
    ("10.0.0.5", "private"), ("172.16.0.1", "private"), ("172.31.255.254", "private"),
    ("192.168.1.1", "private"), ("[fc00::1]", "private"), ("[fd12:3456::1]", "private"),
    ("169.254.169.254", "link-local"), ("169.254.0.1", "link-local"),
    ("[fe80::1]", "link-local"), ("0.0.0.0", "unspecified"), ("[::]", "unspecified"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("[ff02::1]", "multicast"),
    ("[ff0e::1]", "multicast"), ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    ("100.64.0.1", "not public"), ("[fec0::1]", "site-local"),
    ("[::ffff:127.0.0.1]", "loopback: the IPv4-mapped form of 127.0.0.1"),
    ("[::ffff:169.254.169.254]", "link-local: the IPv4-mapped form of 169.254.169.254"),
    ("[64:ff9b::a9fe:a9fe]", "link-local: the NAT64 form of 169.254.169.254"),
    ("[64:ff9b::a00:1]", "private: the NAT64 form of 10.0.0.1"),
    ("[2002:7f00:1::1]", "loopback: the 6to4 form of 127.0.0.1"),
    ("[2002:a9fe:a9fe::1]", "link-local: the 6to4 form of 169.254.169.254"),
]


@pytest.mark.parametrize(("host", "kind"), INTERNAL)
def test_internal_addresses_are_refused_unless_the_setting_allows_them(host: str,
                                                                       kind: str) -> None:
    url = f"http://{host}:5000/latest/meta-data/"
    address = ipaddress.ip_address(host.strip("[]"))
    with pytest.raises(Forbidden) as refused:
        netguard.check_url(url, allow_internal=False)
    assert f"{address} is internal ({kind})" in str(refused.value)
    assert SETTING in str(refused.value)
    assert netguard.check_url(url, allow_internal=True) == [address]


@pytest.mark.parametrize("host", ["8.8.8.8", "[2606:4700:4700::1111]",
                                  "[64:ff9b::808:808]", "[2002:808:808::1]"])
def test_public_addresses_pass(host: str) -> None:
    """Public ones, and the NAT64 and 6to4 forms of one (an IPv6-only network with DNS64 gives
    every public host a NAT64 address)."""
    address = ipaddress.ip_address(host.strip("[]"))
    assert netguard.check_url(f"https://{host}/a.csv", allow_internal=False) == [address]


@pytest.mark.parametrize("host", ["localhost", "2130706433", "127.1", "0x7f.1"])
def test_names_and_odd_spellings_of_loopback_are_refused(host: str) -> None:
    """The system's own resolver: these never reach DNS (the hosts file, inet_aton)."""
    with pytest.raises(Forbidden, match=f"{host} resolves to 127.0.0.1, which is internal "
                                        r"\(loopback\)"):
        netguard.check_url(f"http://{host}:5000/", allow_internal=False)


def test_a_name_is_refused_if_any_of_its_addresses_is_internal() -> None:
    resolver, asked = _answers(["8.8.8.8", "10.1.2.3"])
    with pytest.raises(Forbidden, match=r"mixed.example resolves to 10.1.2.3, which is "
                                        r"internal \(private\)"):
        netguard.check_url("http://mixed.example/a.csv", allow_internal=False,
                           resolver=resolver)
    assert asked == ["mixed.example"]
    resolver, _ = _answers(["169.254.169.254"])
    with pytest.raises(Forbidden, match=r"resolves to 169\.254\.169\.254"):
        netguard.check_url("http://metadata.example/", allow_internal=False, resolver=resolver)

    def unknown(host: str) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(Invalid, match=r"cannot resolve nowhere\.example"):
        netguard.check_url("http://nowhere.example/", allow_internal=False, resolver=unknown)
    with pytest.raises(Invalid, match="not an http"):
        netguard.check_url("file:///etc/passwd", allow_internal=True)


# --- connecting to the address that was checked -----------------------------------------------


def test_the_download_goes_to_the_checked_address_and_looks_up_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebinding name: 127.0.0.1 when checked, 127.0.0.2 (another server, same port) on any
    later lookup. The download must come from the first, and the name be resolved once."""
    system_lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def spy(host: Any, *args: Any, **kwargs: Any) -> Any:
        # Not a stand-in: the real lookup, watched, to show that the connection itself never
        # resolves the name again (httpcore would ask getaddrinfo for it).
        system_lookups.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    resolver, asked = _answers(["127.0.0.1"], ["127.0.0.2"])
    with _site(body=b"checked") as checked, \
            _site("127.0.0.2", checked.server_address[1], body=b"rebound") as rebound:
        port = checked.server_address[1]
        with netguard.client(allow_internal=True, resolver=resolver) as http:
            answer = http.get(f"http://data.example:{port}/orders.csv")
    assert answer.content == b"checked"
    assert checked.seen == [("/orders.csv", f"data.example:{port}")]  # the Host header kept
    assert rebound.seen == []
    assert asked == ["data.example"]
    assert "data.example" not in system_lookups


def test_the_next_checked_address_is_tried_when_one_refuses() -> None:
    resolver, asked = _answers(["127.0.0.2", "127.0.0.1"])
    with _site(body=b"second") as site:
        port = site.server_address[1]  # nothing listens on 127.0.0.2 at this port
        with netguard.client(allow_internal=True, resolver=resolver) as http:
            assert http.get(f"http://two.example:{port}/").content == b"second"
    assert asked == ["two.example"]


def test_each_redirect_hop_is_resolved_once_and_checked() -> None:
    resolver, asked = _answers(["127.0.0.1"])
    with _site(body=b"moved") as site:
        port = site.server_address[1]
        hop = f"http://data.example:{port}/hop?to=http://other.example:{port}/data.csv"
        with netguard.client(allow_internal=True, resolver=resolver) as http:
            answer = http.get(hop, follow_redirects=True)
        assert answer.content == b"moved"
        assert [host for _, host in site.seen] == [f"data.example:{port}",
                                                   f"other.example:{port}"]
    assert asked == ["data.example", "other.example"]


def test_a_redirect_to_an_internal_address_is_refused() -> None:
    """The first hop is a public address, which this machine cannot reach: ``network`` stands
    in for the internet (an httpx.MockTransport), and shows what the guard sends it."""
    sent: list[httpx.Request] = []

    def internet(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        where = {"/meta": "http://169.254.169.254/latest/meta-data/",
                 "/rebind": "http://rebind.example/"}[request.url.path]
        return httpx.Response(302, headers={"Location": where})

    names = {"files.example": ["93.184.216.34"], "rebind.example": ["127.0.0.1"]}
    with netguard.client(allow_internal=False, resolver=names.__getitem__,
                         network=httpx.MockTransport(internet)) as http:
        with pytest.raises(Forbidden, match=r"^169.254.169.254 is internal \(link-local\)"):
            http.get("https://files.example/meta", follow_redirects=True)
        with pytest.raises(Forbidden, match=r"rebind\.example resolves to 127\.0\.0\.1"):
            http.get("https://files.example/rebind", follow_redirects=True)
    assert len(sent) == 2  # the first hops only
    for request in sent:
        assert request.url.host == "93.184.216.34"
        assert request.headers["Host"] == "files.example"
        assert request.extensions["sni_hostname"] == "files.example"


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``name``, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_checks_the_certificate_against_the_urls_host(tmp_path: Path) -> None:
    """Connecting to the address must not turn the TLS check into one against the address:
    the server name sent (SNI) and the name the certificate must hold are the URL's host."""
    cert, key = _certificate(tmp_path, "data.example")
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    names: list[str | None] = []

    def sni(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        names.append(name)

    server_side.sni_callback = sni
    trust = ssl.create_default_context(cafile=str(cert))
    resolver, asked = _answers(["127.0.0.1"])
    with _site(body=b"secret", tls=server_side) as site:
        port = site.server_address[1]
        with netguard.client(allow_internal=True, resolver=resolver, verify=trust) as http:
            assert http.get(f"https://data.example:{port}/a.csv").content == b"secret"
            with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
                http.get(f"https://other.example:{port}/a.csv")
    assert names[0] == "data.example"
    assert site.seen == [("/a.csv", f"data.example:{port}")]
    assert asked == ["data.example", "other.example"]


# --- the setting, and the server ------------------------------------------------------------


def test_the_setting_is_off_unless_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).allow_internal_urls is False
    assert load_settings({"CUMULO_ALLOW_INTERNAL_URLS": "1"}).allow_internal_urls is True
    with pytest.raises(Invalid, match="allow_internal_urls: 'maybe' is not true or false"):
        load_settings({"CUMULO_ALLOW_INTERNAL_URLS": "maybe"})
    (tmp_path / "cumulo.toml").write_text("allow_internal_urls = true\n")
    assert load_settings({}).allow_internal_urls is True


def test_an_admin_cannot_load_from_internal_addresses(local_server: Cumulo) -> None:
    """The bug: an admin's URL load reached loopback (MLflow's port, the server's own) and the
    metadata service. The module's server runs with the setting off, as by default."""
    client = local_server.client()
    db = "db_" + uuid.uuid4().hex[:8]
    client.tables.create_database(db)
    port = urlsplit(local_server.url).port
    with _site() as site:
        here = site.server_address[1]
        for url in (f"http://127.0.0.1:{here}/orders.csv", f"http://localhost:{port}/healthz",
                    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
                    f"http://[::ffff:127.0.0.1]:{here}/orders.csv"):
            with pytest.raises(Forbidden, match=f"is internal.*{re.escape(SETTING)} is on"):
                client.tables.load_from(f"{db}.web", url, format="csv")
        assert site.seen == []  # refused before any connection
    with pytest.raises(NotFound):
        client.tables.show(f"{db}.web")
