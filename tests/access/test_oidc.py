"""Single sign-on's protocol logic (``cumulo.access.oidc``) against a small provider of the
test's own: a real HTTP server on loopback serving a discovery document, a JWKS of keys the test
makes, a token endpoint and a userinfo endpoint, with ID tokens the test signs. Every refusal
the ID token check makes is sent and named; the flows and device flows run under clocks the
test controls; users are made and re-synced in a real SQLite database. The whole flow against
the real ``oidc-provider`` is tests/server/test_sso.py."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OctKey, RSAKey
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cumulo.access import authz
from cumulo.access.models import Binding, Group, GroupMember, User
from cumulo.access.oidc import (
    DeviceFlows,
    Flow,
    Flows,
    Identity,
    OidcClient,
    binding_hash,
    check_settings,
    cumulo_name,
    issue_for_device,
    sign_in,
)
from cumulo.access.tokens import authenticate, bootstrap_admin
from cumulo.config import OidcSettings, load_settings
from cumulo.db import make_engine, upgrade, utcnow
from cumulo.errors import Conflict, Invalid, NotFound, Unauthorized, Unavailable

CLIENT = "cumulo-web"
SECRET = "s3cret/with:odd&chars"
NONCE = "the-nonce-of-this-sign-in"
# Made once: RSA keys take a moment. OTHER has RSA's kid but is another key: a forger's.
RSA = RSAKey.generate_key(2048, {"kid": "rsa-1", "use": "sig", "alg": "RS256"})
EC = ECKey.generate_key("P-256", {"kid": "ec-1", "use": "sig", "alg": "ES256"})
OTHER = RSAKey.generate_key(2048, {"kid": "rsa-1", "use": "sig", "alg": "RS256"})
ROTATED = RSAKey.generate_key(2048, {"kid": "rsa-2", "use": "sig", "alg": "RS256"})


class Provider:
    """What the test's provider serves; a test changes it between requests."""

    def __init__(self) -> None:
        self.issuer = ""
        self.named_issuer: str | None = None  # what discovery says, when not the issuer
        self.keys: list[Key] = [RSA, EC]
        self.fetches = {"discovery": 0, "jwks": 0}
        self.auth_methods = ["client_secret_basic", "client_secret_post"]
        self.token_answer: tuple[int, dict[str, Any]] = (200, {})
        self.token_requests: list[tuple[dict[str, str], str | None]] = []
        self.userinfo: dict[str, Any] = {}

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.named_issuer or self.issuer,
                "authorization_endpoint": f"{self.issuer}/auth",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "token_endpoint_auth_methods_supported": self.auth_methods,
                "code_challenge_methods_supported": ["S256"]}


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                provider.fetches["discovery"] += 1
                self._send(200, provider.discovery())
            elif self.path == "/jwks":
                provider.fetches["jwks"] += 1
                self._send(200, {"keys": [k.as_dict(private=False) for k in provider.keys]})
            elif self.path == "/userinfo":
                self._send(200, provider.userinfo)
            else:
                self._send(404, {})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            provider.token_requests.append((form, self.headers.get("authorization")))
            self._send(*provider.token_answer)

    return Handler


@pytest.fixture
def provider() -> Iterator[Provider]:
    served = Provider()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    served.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served
    server.shutdown()
    server.server_close()


def oidc_settings(issuer: str, **changes: Any) -> OidcSettings:
    values: dict[str, Any] = {
        "issuer": issuer, "client_id": CLIENT, "client_secret": SECRET, "allow_http": True,
        "group_map": {"ml-team": ("data-science",), "admins": ("platform-admins",),
                      "analysts": ("analysts", "data-science")}}
    return OidcSettings(**{**values, **changes})


class Clock:
    """Unix seconds the test moves."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(provider: Provider, clock: Clock) -> Iterator[OidcClient]:
    with OidcClient(oidc_settings(provider.issuer), clock=clock) as made:
        yield made


def claims(provider: Provider, clock: Clock, **changes: Any) -> dict[str, Any]:
    now = int(clock.now)
    values: dict[str, Any] = {"iss": provider.issuer, "aud": CLIENT, "sub": "u-123",
                              "iat": now, "exp": now + 300, "nonce": NONCE, **changes}
    return {k: v for k, v in values.items() if v is not None}


def sign(payload: dict[str, Any], key: Key = RSA, alg: str = "RS256", *,
         kid: str | None = "same") -> str:
    kid = key.kid if kid == "same" else kid
    header = {"alg": alg, **({"kid": kid} if kid is not None else {})}
    return jwt.encode(header, payload, key, algorithms=[alg])


def expect_refused(call: Callable[[], object], reason: str, words: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as caught:
        call()
    assert caught.value.details["reason"] == reason, caught.value.message
    assert words in caught.value.message, caught.value.message
    return caught.value


# --- the ID token ------------------------------------------------------------------------------


def test_rs256_and_es256_tokens_verify_with_the_published_keys(
        client: OidcClient, provider: Provider, clock: Clock) -> None:
    for key, alg in ((RSA, "RS256"), (EC, "ES256")):
        verified = client.verify_id_token(sign(claims(provider, clock), key, alg), nonce=NONCE)
        assert verified["sub"] == "u-123" and verified["iss"] == provider.issuer
    assert provider.fetches == {"discovery": 1, "jwks": 1}  # both kept for the second


def test_an_expired_token_is_refused_after_a_minute_of_leeway(
        client: OidcClient, provider: Provider, clock: Clock) -> None:
    token = sign(claims(provider, clock, exp=int(clock.now) - 30))
    assert client.verify_id_token(token, nonce=NONCE)["sub"] == "u-123"  # within the leeway
    clock.now += 31
    expect_refused(lambda: client.verify_id_token(token, nonce=NONCE), "expired",
                   "the ID token expired at ")
    future = sign(claims(provider, clock, iat=int(clock.now) + 120))
    expect_refused(lambda: client.verify_id_token(future, nonce=NONCE), "issued_in_future",
                   "issued in the future")
    timeless = sign(claims(provider, clock, exp=None))
    expect_refused(lambda: client.verify_id_token(timeless, nonce=NONCE), "malformed",
                   "lacks its expiry")


def test_another_audience_or_authorized_party_is_refused(
        client: OidcClient, provider: Provider, clock: Clock) -> None:
    for aud in ("another-app", ["another-app", "a-third"], None):
        token = sign(claims(provider, clock, aud=aud))
        expect_refused(lambda t=token: client.verify_id_token(t, nonce=NONCE),
                       "wrong_audience", "not for this server's client 'cumulo-web'")
    several = sign(claims(provider, clock, aud=[CLIENT, "another-app"]))
    expect_refused(lambda: client.verify_id_token(several, nonce=NONCE), "wrong_audience",
                   "several audiences and its authorized party is None")
    for_other = sign(claims(provider, clock, aud=[CLIENT, "another-app"], azp="another-app"))
    expect_refused(lambda: client.verify_id_token(for_other, nonce=NONCE), "wrong_audience",
                   "authorized party is 'another-app'")
    ours = sign(claims(provider, clock, aud=[CLIENT, "another-app"], azp=CLIENT))
    assert client.verify_id_token(ours, nonce=NONCE)["azp"] == CLIENT


def test_another_issuer_is_refused(client: OidcClient, provider: Provider,
                                   clock: Clock) -> None:
    token = sign(claims(provider, clock, iss="https://evil.example.com"))
    expect_refused(lambda: client.verify_id_token(token, nonce=NONCE), "wrong_issuer",
                   "issuer is 'https://evil.example.com'")


def test_a_forged_signature_and_unsafe_algorithms_are_refused(
        client: OidcClient, provider: Provider, clock: Clock) -> None:
    forged = sign(claims(provider, clock), OTHER)  # the provider's kid, a forger's key
    expect_refused(lambda: client.verify_id_token(forged, nonce=NONCE), "bad_signature",
                   "does not verify with the provider's key 'rsa-1'")
    good = sign(claims(provider, clock))
    head, body, signature = good.split(".")
    altered = json.loads(base64.urlsafe_b64decode(body + "=="))
    altered["sub"] = "admin"
    body = base64.urlsafe_b64encode(json.dumps(altered).encode()).rstrip(b"=").decode()
    expect_refused(lambda: client.verify_id_token(f"{head}.{body}.{signature}", nonce=NONCE),
                   "bad_signature", "forged or altered")
    # HS256 keyed with something public (the client id), and "none": never accepted.
    hmac_token = sign(claims(provider, clock), OctKey.import_key(CLIENT.encode() * 4), "HS256")
    expect_refused(lambda: client.verify_id_token(hmac_token, nonce=NONCE), "bad_algorithm",
                   "signed with 'HS256'; Cumulo accepts RS256 and ES256")
    unsigned = "{}.{}.".format(*(base64.urlsafe_b64encode(json.dumps(part).encode())
                                 .rstrip(b"=").decode()
                                 for part in ({"alg": "none"}, claims(provider, clock))))
    expect_refused(lambda: client.verify_id_token(unsigned, nonce=NONCE), "bad_algorithm",
                   "signed with 'none'")
    expect_refused(lambda: client.verify_id_token("not-a-jwt", nonce=NONCE), "malformed",
                   "not a signed JWT")


def test_a_missing_or_other_nonce_is_refused(client: OidcClient, provider: Provider,
                                             clock: Clock) -> None:
    expect_refused(lambda: client.verify_id_token(sign(claims(provider, clock, nonce=None)),
                                                  nonce=NONCE),
                   "missing_nonce", "has no nonce")
    other = sign(claims(provider, clock, nonce="another-sign-in"))
    expect_refused(lambda: client.verify_id_token(other, nonce=NONCE), "wrong_nonce",
                   "a replayed token")


def test_an_unknown_key_is_fetched_again_once(client: OidcClient, provider: Provider,
                                              clock: Clock) -> None:
    client.verify_id_token(sign(claims(provider, clock)), nonce=NONCE)
    provider.keys = [ROTATED, EC]  # the provider rotates its key
    rotated = client.verify_id_token(sign(claims(provider, clock), ROTATED), nonce=NONCE)
    assert rotated["sub"] == "u-123" and provider.fetches["jwks"] == 2
    stranger = RSAKey.generate_key(2048, {"kid": "never-published"})
    expect_refused(lambda: client.verify_id_token(sign(claims(provider, clock), stranger),
                                                  nonce=NONCE),
                   "unknown_key", "names signing key 'never-published'")
    assert provider.fetches["jwks"] == 3  # once more, not in a loop
    # A token without a kid is checked against each published key of its type.
    assert client.verify_id_token(sign(claims(provider, clock), ROTATED, kid=None),
                                  nonce=NONCE)["sub"] == "u-123"


def test_discovery_must_name_the_configured_issuer(provider: Provider) -> None:
    provider.named_issuer = "https://someone-else.example.com"
    with OidcClient(oidc_settings(provider.issuer)) as client, \
            pytest.raises(Unavailable, match="names the issuer 'https://someone-else"):
        client.provider()
    with OidcClient(oidc_settings("http://127.0.0.1:9")) as client, \
            pytest.raises(Unavailable, match="cannot reach the single sign-on provider"):
        client.provider()


# --- the code flow -----------------------------------------------------------------------------


def _begin(client: OidcClient, binding: str = "browser-1") -> Flow:
    url, flow = client.begin("http://cumulo.test/login/sso/callback", next="/mlflow/",
                             binding=binding_hash(binding))
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(f"{client.settings.issuer}/auth?")
    assert query["state"] == flow.state and query["nonce"] == flow.nonce
    assert query["code_challenge_method"] == "S256" and query["response_type"] == "code"
    assert query["scope"] == "openid email profile groups" and query["client_id"] == CLIENT
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(flow.verifier.encode()).digest()).rstrip(b"=").decode()
    assert query["code_challenge"] == challenge
    return flow


def test_the_code_is_exchanged_with_basic_auth_then_post(
        client: OidcClient, provider: Provider, clock: Clock) -> None:
    flow = _begin(client)
    taken = client.flows.take(flow.state, binding_hash("browser-1"))
    provider.token_answer = (200, {"id_token": sign(claims(provider, clock, nonce=flow.nonce,
                                                           email="ana@example.com")),
                                   "access_token": "at-1"})
    provider.userinfo = {"sub": "u-123", "preferred_username": "ana",
                         "groups": ["ml-team"], "email": "not-this@example.com"}
    identity = client.complete(taken, "code-1", iss=provider.issuer)
    assert identity.subject == f"{provider.issuer}|u-123"
    # what the ID token lacked came from userinfo; what it said stands
    assert identity.claims["preferred_username"] == "ana"
    assert identity.claims["groups"] == ["ml-team"]
    assert identity.claims["email"] == "ana@example.com"
    form, authorization = provider.token_requests[-1]
    assert form == {"grant_type": "authorization_code", "code": "code-1",
                    "redirect_uri": "http://cumulo.test/login/sso/callback",
                    "code_verifier": flow.verifier}
    assert authorization is not None
    pair = base64.b64decode(authorization.removeprefix("Basic ")).decode()
    assert tuple(unquote(p) for p in pair.split(":")) == (CLIENT, SECRET)

    provider.auth_methods = ["client_secret_post"]
    with OidcClient(oidc_settings(provider.issuer), clock=clock) as post_client:
        flow = _begin(post_client)
        provider.token_answer = (200, {"id_token": sign(claims(provider, clock,
                                                               nonce=flow.nonce))})
        post_client.complete(post_client.flows.take(flow.state, binding_hash("browser-1")),
                             "code-2")
    form, authorization = provider.token_requests[-1]
    assert authorization is None
    assert form["client_id"] == CLIENT and form["client_secret"] == SECRET


def test_a_used_code_and_another_issuers_answer_are_refused(
        client: OidcClient, provider: Provider) -> None:
    flow = client.flows.take(_begin(client).state, binding_hash("browser-1"))
    provider.token_answer = (400, {"error": "invalid_grant",
                                   "error_description": "grant request is invalid"})
    expect_refused(lambda: client.complete(flow, "used-code"), "code_refused",
                   "invalid_grant (grant request is invalid). A code works once")
    expect_refused(lambda: client.complete(flow, "code", iss="https://mix-up.example.com"),
                   "wrong_issuer", "comes from issuer 'https://mix-up.example.com'")


def test_a_state_works_once_in_the_browser_that_began_it_for_ten_minutes() -> None:
    now = Clock(1000.0)
    flows = Flows(clock=now, size=3)

    def flow(state: str) -> Flow:
        return Flow(state=state, nonce="n", verifier="v", redirect_uri="r", next="/",
                    binding=binding_hash("mine"), started=now.now)

    flows.add(flow("a"))
    assert flows.take("a", binding_hash("mine")).state == "a"
    expect_refused(lambda: flows.take("a", binding_hash("mine")), "state_replayed",
                   "used already: a replayed answer")
    flows.add(flow("b"))
    expect_refused(lambda: flows.take("b", binding_hash("theirs")), "browser_mismatch",
                   "began in another browser")
    expect_refused(lambda: flows.take("b", binding_hash("mine")), "state_replayed",
                   "used already")  # a mismatch spends it: no second guess
    flows.add(flow("c"))
    now.now += 600
    expect_refused(lambda: flows.take("c", binding_hash("mine")), "state_unknown",
                   "took over 10 minutes")
    for state in "defgh":
        flows.add(flow(state))
    assert len(flows) == 3  # bounded: the oldest went first
    expect_refused(lambda: flows.take("d", binding_hash("mine")), "state_unknown", "unknown")
    assert flows.take("h", binding_hash("mine")).state == "h"


# --- the device flow ---------------------------------------------------------------------------


def test_the_device_flow_pends_slows_down_and_gives_its_user_once() -> None:
    now = Clock(1000.0)
    devices = DeviceFlows(clock=now, interval=5)
    started = devices.start()
    assert len(started.user_code) == 9 and started.user_code[4] == "-"
    assert devices.by_user_code(started.user_code.lower().replace("-", " ")) is started
    assert devices.poll(started.device_code).status == "authorization_pending"
    now.now += 1
    slow = devices.poll(started.device_code)
    assert slow.status == "slow_down" and slow.interval == 10
    now.now += 10
    assert devices.approve(started.device_code, 42)
    assert not devices.approve(started.device_code, 43)  # the first browser to finish wins
    with pytest.raises(NotFound, match="no sign-in waits for code"):
        devices.by_user_code(started.user_code)  # a code takes one browser
    approved = devices.poll(started.device_code)
    assert approved.status == "approved" and approved.user_id == 42
    expect_refused(lambda: devices.poll(started.device_code), "expired_token",
                   "expired (it waits 10 minutes for the browser) or is unknown")

    refused = devices.start()
    devices.refuse(refused.device_code, "user ana is disabled")
    expect_refused(lambda: devices.poll(refused.device_code), "access_denied",
                   "refused: user ana is disabled")

    late = devices.start()
    assert devices.expires_in(late) == 600
    now.now += 600
    expect_refused(lambda: devices.poll(late.device_code), "expired_token", "expired")
    with pytest.raises(NotFound):
        devices.by_user_code(late.user_code)


# --- users -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "made"), [
    ("ana", "ana"), ("Ana.Maria", "ana.maria"), ("John Smith", "john-smith"),
    ("José", "jos"), ("42-robots", "robots"), ("@@", "user"), ("x" * 80, "x" * 64),
])
def test_names_from_the_provider_are_made_valid(given: str, made: str) -> None:
    assert cumulo_name(given) == made


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'cumulo.db'}")
    upgrade(engine)
    with Session(engine) as session:
        bootstrap_admin(session, "cml_admin-secret-for-the-oidc-tests")
    yield engine
    engine.dispose()


ISSUER = "https://login.example.com"


def _groups(session: Session, name: str) -> list[str]:
    return sorted(session.scalars(
        select(Group.name).join(GroupMember, GroupMember.group_id == Group.id)
        .join(User, User.id == GroupMember.user_id).where(User.name == name)))


def test_a_first_sign_in_makes_the_user_and_later_ones_sync_mapped_groups(
        engine: Engine) -> None:
    settings = oidc_settings(ISSUER, default_role="developer")
    with Session(engine) as session:
        session.add(User(name="ana", kind="person"))  # a password user of that name exists
        session.add(Group(name="data-science"))
        session.add(Group(name="hand-made"))
        session.commit()
    identity = Identity(f"{ISSUER}|u-1", {"sub": "u-1", "preferred_username": "Ana",
                                          "email": "ana@example.com",
                                          "groups": ["ml-team", "not-mapped"]})
    generation = authz._generation[0]
    with Session(engine) as session:
        first = sign_in(session, settings, identity)
        assert first.created and first.user == "ana-2"  # never taken over by name
        assert first.added == ["data-science"] and first.removed == []
        assert first.signed is not None and authz._generation[0] > generation
        user = session.scalar(select(User).where(User.name == "ana-2"))
        assert user is not None and user.email == "ana@example.com"
        assert user.oidc_subject == f"{ISSUER}|u-1" and user.password_hash is None
        assert session.scalar(select(Binding.role).where(Binding.subject_id == user.id,
                                                         Binding.subject_kind == "user")) \
            == "developer"
        principal = authenticate(session, first.signed.secret)
        assert principal.user_name == "ana-2" and principal.token_name.startswith("sso-")
        hand_made = session.scalar(select(Group).where(Group.name == "hand-made"))
        assert hand_made is not None
        session.add(GroupMember(group_id=hand_made.id, user_id=user.id))
        session.commit()

    moved = Identity(identity.subject, {**identity.claims, "groups": ["analysts"]})
    with Session(engine) as session:
        again = sign_in(session, settings, moved)
        assert not again.created and again.user == "ana-2"
        # "analysts" maps to analysts and data-science: made, joined, kept
        assert again.added == ["analysts"] and again.removed == []
        assert _groups(session, "ana-2") == ["analysts", "data-science", "hand-made"]
    with Session(engine) as session:
        gone = sign_in(session, settings, Identity(identity.subject, {"sub": "u-1"}))
        assert gone.removed == ["analysts", "data-science"]
        assert _groups(session, "ana-2") == ["hand-made"]  # not mapped: left alone
        assert session.scalar(select(Group.description).where(Group.name == "analysts")) \
            .startswith("mapped from single sign-on")


def test_a_name_comes_from_the_username_the_email_or_the_subject(engine: Engine) -> None:
    settings = oidc_settings(ISSUER)
    for sub, given, made in (("s1", {"preferred_username": "Zed@Example.com"}, "zed"),
                             ("s2", {"email": "zed@example.org"}, "zed-2"),
                             ("s3", {}, "s3"), ("42", {}, "user")):
        with Session(engine) as session:
            assert sign_in(session, settings, Identity(f"{ISSUER}|{sub}", {
                "sub": sub, **given})).user == made


def test_a_disabled_user_or_a_service_account_is_refused(engine: Engine) -> None:
    settings = oidc_settings(ISSUER)
    with Session(engine) as session:
        session.add(User(name="bo", kind="person", oidc_subject=f"{ISSUER}|u-2",
                         disabled_at=utcnow()))
        session.add(User(name="robot", kind="service", oidc_subject=f"{ISSUER}|u-3"))
        session.commit()
    with Session(engine) as session:
        refused = expect_refused(lambda: sign_in(session, settings, Identity(
            f"{ISSUER}|u-2", {"sub": "u-2", "groups": ["ml-team"]})), "disabled",
            "user bo is disabled")
        assert refused.details["user"] == "bo"
        assert _groups(session, "bo") == []
        expect_refused(lambda: sign_in(session, settings, Identity(f"{ISSUER}|u-3",
                                                                   {"sub": "u-3"})),
                       "service_account", "signs in with tokens only")


def test_a_device_flows_token_is_refused_once_its_user_is_disabled(engine: Engine) -> None:
    with Session(engine) as session:
        done = sign_in(session, oidc_settings(ISSUER), Identity(f"{ISSUER}|u-4",
                                                                {"sub": "u-4"}), token=False)
        assert done.signed is None and done.user == "u-4"
        assert issue_for_device(session, done.user_id).user == "u-4"
        user = session.get(User, done.user_id)
        assert user is not None
        user.disabled_at = utcnow()
        session.commit()
        expect_refused(lambda: issue_for_device(session, done.user_id), "access_denied",
                       "disabled or was deleted")


def test_the_last_admin_is_not_taken_out_by_the_provider(engine: Engine) -> None:
    settings = oidc_settings(ISSUER)
    with Session(engine) as session:
        admin = session.scalar(select(User).where(User.name == "admin"))
        assert admin is not None
        admin.disabled_at = utcnow()
        session.add(Group(name="platform-admins"))
        session.flush()
        group = session.scalar(select(Group).where(Group.name == "platform-admins"))
        assert group is not None
        session.add(Binding(subject_kind="group", subject_id=group.id, role="admin"))
        session.commit()
    subject = Identity(f"{ISSUER}|boss", {"sub": "boss", "groups": ["admins"]})
    with Session(engine) as session:
        assert sign_in(session, settings, subject).added == ["platform-admins"]
        assert session.scalar(select(User.is_admin).where(User.name == "boss"))
    with Session(engine) as session, pytest.raises(Conflict, match="no enabled user able"):
        sign_in(session, settings, Identity(subject.subject, {"sub": "boss", "groups": []}))
    with Session(engine) as session:
        assert _groups(session, "boss") == ["platform-admins"]


# --- settings ----------------------------------------------------------------------------------


def test_settings_from_the_file_and_the_environment(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "staff.toml"
    path.write_text('[oidc]\nissuer = "https://login.example.com/realms/staff"\n'
                    'client_id = "cumulo"\nname = "Staff login"\n'
                    '[oidc.group_map]\n"ml-team" = "data-science"\n'
                    'admins = ["platform-admins", "data-science"]\n')
    loaded = load_settings({"CUMULO_CONFIG": str(path), "CUMULO_OIDC_CLIENT_SECRET": "shh",
                            "CUMULO_OIDC_SCOPES": "openid email groups"}).oidc
    assert loaded is not None and loaded.name == "Staff login"
    assert loaded.scopes == ("openid", "email", "groups") and loaded.client_secret == "shh"
    assert loaded.group_map == {"ml-team": ("data-science",),
                                "admins": ("platform-admins", "data-science")}
    assert loaded.groups_claim == "groups" and loaded.default_role is None
    assert "shh" not in repr(loaded)
    assert load_settings({"CUMULO_HOME": str(tmp_path)}).oidc is None
    from_env = load_settings({
        "CUMULO_OIDC_ISSUER": "http://127.0.0.1:9000", "CUMULO_OIDC_ALLOW_HTTP": "true",
        "CUMULO_OIDC_CLIENT_ID": "c", "CUMULO_OIDC_CLIENT_SECRET": "s",
        "CUMULO_OIDC_GROUP_MAP": '{"ml-team": ["data-science"]}',
        "CUMULO_OIDC_DEFAULT_ROLE": "viewer"}).oidc
    assert from_env is not None and from_env.allow_http and from_env.default_role == "viewer"


@pytest.mark.parametrize(("env", "message"), [
    ({"CUMULO_OIDC_ISSUER": "https://x.example.com"},
     "missing: client_id, client_secret"),
    ({"CUMULO_OIDC_NAME": "Staff"}, "missing: issuer, client_id, client_secret"),
    ({"CUMULO_OIDC_ISSUER": "http://x.example.com"}, "must be https"),
    ({"CUMULO_OIDC_ISSUER": "login.example.com"}, "is not a URL like"),
    ({"CUMULO_OIDC_ISSUER": "https://x.example.com?tenant=1"}, "no query or fragment"),
    ({"CUMULO_OIDC_SCOPES": "email profile"}, "must include 'openid'"),
    ({"CUMULO_OIDC_GROUP_MAP": "ml-team=data-science"}, "oidc.group_map is not JSON"),
    ({"CUMULO_OIDC_GROUP_MAP": '{"ml-team": 3}'}, "must map to a Cumulo group name"),
    ({"CUMULO_OIDC_ALLOW_HTTP": "maybe"}, "'maybe' is not true or false"),
])
def test_settings_that_are_wrong_say_what(env: dict[str, str], message: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    full = {"CUMULO_HOME": str(tmp_path), "CUMULO_OIDC_ISSUER": "https://x.example.com",
            "CUMULO_OIDC_CLIENT_ID": "c", "CUMULO_OIDC_CLIENT_SECRET": "s"}
    if "missing" in message:
        full = {"CUMULO_HOME": str(tmp_path)}
    with pytest.raises(Invalid, match=message.replace("?", "\\?")):
        load_settings({**full, **env})


def test_roles_and_group_names_are_checked_at_start() -> None:
    check_settings(oidc_settings(ISSUER, default_role="developer"))
    with pytest.raises(Invalid, match=r"oidc\.default_role: no role 'superuser'; the roles"):
        check_settings(oidc_settings(ISSUER, default_role="superuser"))
    with pytest.raises(Invalid, match="maps to 'Data Science', which is not a Cumulo group"):
        check_settings(oidc_settings(ISSUER, group_map={"ml": ("Data Science",)}))
