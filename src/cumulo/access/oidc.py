"""Single sign-on with OpenID Connect: Cumulo as a relying party of an organisation's provider
(Keycloak, Okta, Entra ID, Google, Dex...), and as the authorization server of its own CLI.

The browser's way, the authorization code flow with PKCE::

    begin()     a state, a nonce and a PKCE verifier, kept here (bounded, ten minutes, single
                use); the provider's authorization URL to send the browser to
    take()      the state back, once, from the provider's redirect
    complete()  the code exchanged at the token endpoint (client_secret_basic, or _post when
                the provider offers only that); the ID token verified: its signature against the
                provider's keys (JWKS, cached, fetched again once for a key not seen yet),
                issuer, audience and authorized party, expiry and issue time (60 s leeway),
                nonce; missing claims asked of the userinfo endpoint
    sign_in()   the user found by ``oidc_subject`` ("<issuer>|<sub>") or created, their mapped
                groups set to what the provider says, and a session token of 12 hours

The CLI's way (``cumulo login --sso``) is the device flow of RFC 8628 with Cumulo as the
authorization server (:class:`DeviceFlows`): the CLI gets a device code and a user code, the
browser confirms the user code on Cumulo's page and goes through the code flow above, and the
CLI's poll then gets the session token. So it works with any provider that has the code flow.

Every refusal is an :class:`~cumulo.errors.Unauthorized` (an :class:`~cumulo.errors.Unavailable`
when the provider cannot be reached) whose message says what was wrong, and whose
``details["reason"]`` names it for the audit log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import httpx
from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import ECKey, Key, KeySet, RSAKey
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cumulo.access import authz, grants
from cumulo.access.directory import _EMAIL, _NAME
from cumulo.access.models import Binding, Group, GroupMember, User
from cumulo.access.roles import role as role_named
from cumulo.access.signin import SESSION_TTL, SignedIn
from cumulo.access.tokens import issue_token
from cumulo.config import OidcSettings
from cumulo.db import utcnow
from cumulo.errors import Invalid, NotFound, Unauthorized, Unavailable

__all__ = ["ALGORITHMS", "FLOW_TTL_S", "LEEWAY_S", "DeviceFlows", "DevicePoll",
           "DeviceRequest", "Flow", "Flows", "Identity", "OidcClient", "ProviderInfo",
           "SsoSignIn", "binding_hash", "check_settings", "cumulo_name", "issue_for_device",
           "sign_in"]

ALGORITHMS = ("RS256", "ES256")  # what an ID token may be signed with
_KEY_TYPES: dict[str, type[Key]] = {"RS256": RSAKey, "ES256": ECKey}
LEEWAY_S = 60  # for clocks that differ: an ID token's exp and iat
FLOW_TTL_S = 600  # a sign-in started must come back within this
_CACHE_S = 3600  # how long the discovery document and the keys are kept
_TIMEOUT = httpx.Timeout(10.0)


def _refused(message: str, reason: str, **details: Any) -> Unauthorized:
    return Unauthorized(message, details={"reason": reason, **details})


def check_settings(settings: OidcSettings) -> None:
    """What ``cumulo.config`` cannot check alone: the default role is a built-in role, and
    each mapped group name is one Cumulo accepts. Raises Invalid."""
    if settings.default_role is not None:
        try:
            role_named(settings.default_role)
        except NotFound as exc:
            raise Invalid(f"setting oidc.default_role: {exc.message}") from exc
    for outside, names in settings.group_map.items():
        for name in names:
            if not _NAME.match(name):
                raise Invalid(f"setting oidc.group_map: {outside!r} maps to {name!r}, which is "
                              "not a Cumulo group name (1-64 lower-case letters, digits, '.', "
                              "'_' or '-', starting with a letter)")


def binding_hash(secret: str) -> str:
    """What a flow keeps of the browser's binding cookie: its SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()


# --- the flows under way ---------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """One sign-in under way: what the provider's answer is checked against."""

    state: str
    nonce: str
    verifier: str  # PKCE: the provider gets its SHA-256, the token endpoint the verifier
    redirect_uri: str
    next: str  # where the browser goes once signed in
    binding: str  # binding_hash of the cookie of the browser that began it
    device_code: str | None = None  # set when the browser signs in for a CLI's device flow
    started: float = 0.0


class Flows:
    """The flows under way, by state: at most ``size`` (the oldest forgotten first), each for
    ``ttl`` seconds, each taken once. A state taken is remembered until its time is up, so
    that a second use of it is named for what it is: a replay."""

    def __init__(self, *, ttl: float = FLOW_TTL_S, size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        # a flow, or (taken) when it began
        self._flows: OrderedDict[str, Flow | float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._flows)

    def add(self, flow: Flow) -> None:
        with self._lock:
            self._expire(self.clock())
            self._flows[flow.state] = flow
            while len(self._flows) > self.size:
                self._flows.popitem(last=False)

    def take(self, state: str, binding: str) -> Flow:
        """The flow of ``state``, once; Unauthorized when it is unknown, used, expired, or
        began in another browser (``binding``: the hash of this browser's cookie)."""
        now = self.clock()
        with self._lock:
            self._expire(now)
            found = self._flows.get(state)
            if isinstance(found, Flow):
                self._flows[state] = found.started
        if isinstance(found, float):
            raise _refused("this sign-in's state was used already: a replayed answer from the "
                           "provider is refused; sign in again", "state_replayed")
        if found is None:
            raise _refused(f"this sign-in is unknown or took over {self.ttl / 60:g} minutes "
                           "(or the server restarted since it began); sign in again",
                           "state_unknown")
        if not hmac.compare_digest(found.binding, binding):
            raise _refused("this sign-in began in another browser (its cookie is missing or "
                           "differs): refused, so that nobody can sign you in as them; sign in "
                           "again from this browser", "browser_mismatch")
        return found

    def _expire(self, now: float) -> None:
        while self._flows:
            state, value = next(iter(self._flows.items()))
            began = value.started if isinstance(value, Flow) else value
            if now - began < self.ttl:
                break
            del self._flows[state]


# --- the provider ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderInfo:
    """What the provider's discovery document says, of what Cumulo uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    token_auth_methods: tuple[str, ...]
    pkce_methods: tuple[str, ...] | None  # None: not said (S256 is sent all the same)


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in: ``subject`` is "<issuer>|<sub>"."""

    subject: str
    claims: dict[str, Any]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OidcClient:
    """Cumulo's side of the code flow with one provider. Thread-safe; ``http`` is closed by
    :meth:`close` only when this client made it."""

    def __init__(self, settings: OidcSettings, *, http: httpx.Client | None = None,
                 flows: Flows | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.flows = flows or Flows()
        self.clock = clock  # Unix seconds, for the ID token's times
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=_TIMEOUT, follow_redirects=False)
        self._provider: tuple[ProviderInfo, float] | None = None
        self._keys: tuple[KeySet, float] | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def __enter__(self) -> OidcClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- talking to the provider

    def _get_json(self, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
        try:
            answer = self.http.get(url, **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot reach the single sign-on provider for its {what} at "
                              f"{url}: {exc}") from exc
        if answer.status_code != 200:
            raise Unavailable(f"the single sign-on provider answered {answer.status_code} for "
                              f"its {what} at {url}")
        try:
            document = answer.json()
        except ValueError as exc:
            raise Unavailable(f"the single sign-on provider's {what} at {url} is not JSON")\
                from exc
        if not isinstance(document, dict):
            raise Unavailable(f"the single sign-on provider's {what} at {url} is not a JSON "
                              "object")
        return document

    def _endpoint(self, document: dict[str, Any], name: str, *, required: bool = True
                  ) -> str | None:
        url = document.get(name)
        if url is None and not required:
            return None
        scheme = urlsplit(url).scheme if isinstance(url, str) else ""
        if scheme != "https" and not (scheme == "http" and self.settings.allow_http):
            raise Unavailable(f"the single sign-on provider's discovery document has no https "
                              f"{name} (it says {url!r})")
        assert isinstance(url, str)
        return url

    def provider(self) -> ProviderInfo:
        """The discovery document (``/.well-known/openid-configuration``), kept an hour."""
        with self._lock:
            if self._provider is not None and self.clock() - self._provider[1] < _CACHE_S:
                return self._provider[0]
        issuer = self.settings.issuer
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = self._get_json(url, "discovery document")
        if document.get("issuer") != issuer:
            raise Unavailable(f"the discovery document at {url} names the issuer "
                              f"{document.get('issuer')!r}, not {issuer!r} as oidc.issuer says: "
                              "set oidc.issuer to exactly what the provider calls itself")
        methods = document.get("code_challenge_methods_supported")
        info = ProviderInfo(
            issuer=issuer,
            authorization_endpoint=str(self._endpoint(document, "authorization_endpoint")),
            token_endpoint=str(self._endpoint(document, "token_endpoint")),
            jwks_uri=str(self._endpoint(document, "jwks_uri")),
            userinfo_endpoint=self._endpoint(document, "userinfo_endpoint", required=False),
            token_auth_methods=tuple(document.get("token_endpoint_auth_methods_supported")
                                     or ("client_secret_basic",)),
            pkce_methods=tuple(methods) if isinstance(methods, list) else None,
        )
        if info.pkce_methods is not None and "S256" not in info.pkce_methods:
            raise Unavailable("the single sign-on provider does not offer PKCE with S256 "
                              f"(it offers {', '.join(info.pkce_methods) or 'none'}), which "
                              "Cumulo requires")
        with self._lock:
            self._provider = (info, self.clock())
        return info

    def _key_set(self, *, fresh: bool = False) -> KeySet:
        with self._lock:
            if (not fresh and self._keys is not None
                    and self.clock() - self._keys[1] < _CACHE_S):
                return self._keys[0]
        url = self.provider().jwks_uri
        document = self._get_json(url, "signing keys (JWKS)")
        keys = [entry for entry in document.get("keys", []) if isinstance(entry, dict)
                and entry.get("use", "sig") == "sig" and entry.get("kty") in ("RSA", "EC")]
        try:
            key_set = KeySet.import_key_set({"keys": keys})
        except (JoseError, ValueError, TypeError) as exc:
            raise Unavailable(f"the single sign-on provider's signing keys at {url} cannot be "
                              f"read: {exc}") from exc
        with self._lock:
            self._keys = (key_set, self.clock())
        return key_set

    # --- the flow

    def begin(self, redirect_uri: str, *, next: str = "/", binding: str,
              device_code: str | None = None) -> tuple[str, Flow]:
        """Start a sign-in: the URL to send the browser to, and the flow kept for its return.
        ``binding`` is :func:`binding_hash` of a cookie given to the browser."""
        provider = self.provider()
        flow = Flow(state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
                    verifier=secrets.token_urlsafe(48), redirect_uri=redirect_uri, next=next,
                    binding=binding, device_code=device_code, started=self.flows.clock())
        challenge = _b64(hashlib.sha256(flow.verifier.encode()).digest())
        query = urlencode({
            "response_type": "code", "client_id": self.settings.client_id,
            "redirect_uri": redirect_uri, "scope": " ".join(self.settings.scopes),
            "state": flow.state, "nonce": flow.nonce, "code_challenge": challenge,
            "code_challenge_method": "S256"})
        self.flows.add(flow)
        separator = "&" if "?" in provider.authorization_endpoint else "?"
        return f"{provider.authorization_endpoint}{separator}{query}", flow

    def complete(self, flow: Flow, code: str, *, iss: str | None = None) -> Identity:
        """The provider's answer to ``flow`` (taken from :attr:`flows`): the code exchanged,
        the ID token verified, and who it says signed in."""
        if iss is not None and iss != self.settings.issuer:  # RFC 9207: a mix-up of providers
            raise _refused(f"the answer comes from issuer {iss!r}, not {self.settings.issuer!r}",
                           "wrong_issuer")
        tokens = self.exchange(code, redirect_uri=flow.redirect_uri, verifier=flow.verifier)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise _refused("the provider's token answer has no ID token (is 'openid' among "
                           "oidc.scopes?)", "no_id_token")
        claims = self.verify_id_token(id_token, nonce=flow.nonce)
        access = tokens.get("access_token")
        if isinstance(access, str) and self._lacks_claims(claims):
            claims = {**self.userinfo(access, sub=claims["sub"]), **claims}
        return Identity(subject=f"{self.settings.issuer}|{claims['sub']}", claims=claims)

    def exchange(self, code: str, *, redirect_uri: str, verifier: str) -> dict[str, Any]:
        """The token endpoint's answer for ``code``; Unauthorized when the provider refuses
        it (used already, expired, not for this client)."""
        provider = self.provider()
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": redirect_uri, "code_verifier": verifier}
        headers = {"accept": "application/json"}
        client_id, secret = self.settings.client_id, self.settings.client_secret
        if "client_secret_basic" in provider.token_auth_methods:
            pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"  # RFC 6749 2.3.1
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif "client_secret_post" in provider.token_auth_methods:
            form.update(client_id=client_id, client_secret=secret)
        else:
            raise Unavailable("the single sign-on provider offers neither client_secret_basic "
                              "nor client_secret_post at its token endpoint (it offers "
                              f"{', '.join(provider.token_auth_methods)})")
        try:
            answer = self.http.post(provider.token_endpoint, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot reach the single sign-on provider's token endpoint at "
                              f"{provider.token_endpoint}: {exc}") from exc
        try:
            sent: Any = answer.json()
        except ValueError:
            sent = {}
        body: dict[str, Any] = sent if isinstance(sent, dict) else {}
        if answer.status_code == 200:
            return body
        error = str(body.get("error", f"HTTP {answer.status_code}"))
        described = f" ({body['error_description']})" if body.get("error_description") else ""
        if error == "invalid_grant":
            raise _refused(f"the provider refused the sign-in code: invalid_grant{described}. "
                           "A code works once and for a minute or so: it was used already, "
                           "or it expired; sign in again", "code_refused")
        if answer.status_code >= 500:
            raise Unavailable(f"the single sign-on provider's token endpoint failed: "
                              f"{error}{described}")
        raise _refused(f"the provider refused to exchange the sign-in code: {error}{described}"
                       "; check oidc.client_id, oidc.client_secret and the redirect URI "
                       f"registered there ({redirect_uri})", "exchange_refused")

    def verify_id_token(self, token: str, *, nonce: str) -> dict[str, Any]:
        """The claims of an ID token, once its signature, issuer, audience, authorized party,
        times and nonce are checked; Unauthorized naming the first that is wrong."""
        try:
            compact = jws.extract_compact(token.encode())
        except (JoseError, ValueError) as exc:
            raise _refused(f"the ID token is not a signed JWT: {exc}", "malformed") from exc
        header = compact.headers()
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise _refused(f"the ID token is signed with {alg!r}; Cumulo accepts "
                           f"{' and '.join(ALGORITHMS)}", "bad_algorithm")
        kid = header.get("kid")
        self._check_signature(token, alg, kid if isinstance(kid, str) else None)
        try:
            claims: Any = json.loads(compact.payload)
        except ValueError as exc:
            raise _refused("the ID token's claims are not JSON", "malformed") from exc
        if not isinstance(claims, dict):
            raise _refused("the ID token's claims are not a JSON object", "malformed")
        self._check_claims(claims, nonce)
        return claims

    def _check_signature(self, token: str, alg: str, kid: str | None) -> None:
        for fresh in (False, True):  # the keys cached, then once more from the provider
            candidates = [key for key in self._key_set(fresh=fresh)
                          if isinstance(key, _KEY_TYPES[alg]) and (kid is None or key.kid == kid)
                          and key.get("alg") in (None, alg)]
            if candidates:
                break
        else:
            raise _refused(f"the ID token names signing key {kid!r}, which the provider does "
                           f"not publish for {alg}: it is forged, or from another provider",
                           "unknown_key")
        for key in candidates:
            try:
                jws.deserialize_compact(token, key, algorithms=[alg])
                return
            except BadSignatureError:
                continue
            except (JoseError, ValueError) as exc:
                raise _refused(f"the ID token cannot be verified: {exc}", "malformed") from exc
        raise _refused(f"the ID token's signature does not verify with the provider's key "
                       f"{kid!r}: it was forged or altered", "bad_signature")

    def _check_claims(self, claims: dict[str, Any], nonce: str) -> None:
        issuer, client_id = self.settings.issuer, self.settings.client_id
        if claims.get("iss") != issuer:
            raise _refused(f"the ID token's issuer is {claims.get('iss')!r}, not {issuer!r}",
                           "wrong_issuer")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if client_id not in audiences:
            raise _refused(f"the ID token is for {aud!r}, not for this server's client "
                           f"{client_id!r}", "wrong_audience")
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != client_id:
            raise _refused(f"the ID token has several audiences and its authorized party is "
                           f"{azp!r}, not {client_id!r}", "wrong_audience")
        now = self.clock()
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise _refused("the ID token lacks its expiry (exp) or issue time (iat)",
                           "malformed")
        if now > exp + LEEWAY_S:
            when = datetime.fromtimestamp(exp, UTC).isoformat(timespec="seconds")
            raise _refused(f"the ID token expired at {when}; sign in again", "expired")
        if iat > now + LEEWAY_S:
            raise _refused("the ID token was issued in the future: this server's clock and "
                           "the provider's differ by over a minute", "issued_in_future")
        sent = claims.get("nonce")
        if not isinstance(sent, str):
            raise _refused("the ID token has no nonce: it was not made for this sign-in",
                           "missing_nonce")
        if not hmac.compare_digest(sent.encode(), nonce.encode()):
            raise _refused("the ID token's nonce is not this sign-in's: a replayed token",
                           "wrong_nonce")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not 0 < len(sub) <= 255:
            raise _refused("the ID token has no subject (sub)", "malformed")

    def _lacks_claims(self, claims: dict[str, Any]) -> bool:
        wanted = ["email", "preferred_username"]
        if self.settings.group_map:
            wanted.append(self.settings.groups_claim)
        return any(name not in claims for name in wanted)

    def userinfo(self, access_token: str, *, sub: str) -> dict[str, Any]:
        """The userinfo endpoint's claims (none when the provider has none): some providers
        put email and groups there and not in the ID token."""
        url = self.provider().userinfo_endpoint
        if url is None:
            return {}
        claims = self._get_json(url, "userinfo", headers={
            "authorization": f"Bearer {access_token}", "accept": "application/json"})
        if claims.get("sub") != sub:
            raise _refused("the provider's userinfo is about another subject than the ID "
                           "token", "userinfo_mismatch")
        return claims


# --- users -------------------------------------------------------------------------------------


def cumulo_name(wanted: str) -> str:
    """A user name Cumulo accepts, made from what the provider calls the user: lower case,
    other characters as '-', starting with a letter, at most 64 characters."""
    name = re.sub(r"[^a-z0-9._-]+", "-", wanted.strip().lower())
    name = re.sub(r"^[^a-z]+", "", name)[:64].rstrip("-.")
    return name or "user"


def _free_name(session: Session, claims: dict[str, Any]) -> str:
    wanted = next((str(claims[k]) for k in ("preferred_username", "email", "sub")
                   if isinstance(claims.get(k), str) and claims[k]), "user")
    base = cumulo_name(wanted.split("@", 1)[0])  # an address's local part: "ana@x.com" is ana
    taken = set(session.scalars(select(User.name).where(User.name.like(f"{base[:56]}%"))))
    if base not in taken:
        return base
    for n in range(2, 10_000):
        name = f"{base[:64 - len(str(n)) - 1]}-{n}"
        if name not in taken:
            return name
    return f"{base[:51]}-{secrets.token_hex(6)}"


@dataclass(frozen=True)
class SsoSignIn:
    """A single sign-on: who, their session token (None when none was asked for: a device
    flow's CLI gets its own when it polls), and what it changed."""

    user: str
    user_id: int
    signed: SignedIn | None
    created: bool
    added: list[str] = field(default_factory=list)  # Cumulo groups joined
    removed: list[str] = field(default_factory=list)  # Cumulo groups left


def _mapped_groups(settings: OidcSettings, claims: dict[str, Any]) -> set[str]:
    said = claims.get(settings.groups_claim)
    outside = [said] if isinstance(said, str) else said if isinstance(said, list) else []
    return {name for group in outside if isinstance(group, str)
            for name in settings.group_map.get(group, ())}


def _sync_groups(session: Session, settings: OidcSettings, user: User,
                 claims: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Make the user's membership of the mapped groups exactly what the claim says; groups
    that are not mapped are left as they are."""
    mapped = {name for names in settings.group_map.values() for name in names}
    if not mapped:
        return [], []
    wanted = _mapped_groups(settings, claims)
    groups = {g.name: g for g in session.scalars(select(Group).where(Group.name.in_(mapped)))}
    member_of = set(session.scalars(select(Group.name).join(
        GroupMember, GroupMember.group_id == Group.id).where(
        GroupMember.user_id == user.id, Group.name.in_(mapped))))
    added, removed = sorted(wanted - member_of), sorted(member_of - wanted)
    for name in added:
        if name not in groups:
            groups[name] = Group(name=name, description=f"mapped from single sign-on "
                                 f"({settings.name})")
            session.add(groups[name])
            session.flush()
        session.add(GroupMember(group_id=groups[name].id, user_id=user.id))
    if removed:
        session.execute(delete(GroupMember).where(
            GroupMember.user_id == user.id,
            GroupMember.group_id.in_([groups[name].id for name in removed])))
    return added, removed


def sign_in(session: Session, settings: OidcSettings, identity: Identity, *,
            token: bool = True, clock: Callable[[], datetime] = utcnow) -> SsoSignIn:
    """The user ``identity`` is (created the first time), their mapped groups set to what the
    provider says, and (``token``) a session token of 12 hours. Unauthorized for a disabled
    user or a service account; Conflict when the groups' change would lock the last admin
    out."""
    try:
        return _sign_in(session, settings, identity, token, clock())
    except IntegrityError:  # the same person's first two sign-ins at once: the other won
        session.rollback()
        return _sign_in(session, settings, identity, token, clock())


def _sign_in(session: Session, settings: OidcSettings, identity: Identity, with_token: bool,
             now: datetime) -> SsoSignIn:
    claims = identity.claims
    user = session.scalar(select(User).where(User.oidc_subject == identity.subject))
    created = user is None
    email = claims.get("email")
    email = email if isinstance(email, str) and _EMAIL.match(email) else None
    if user is None:
        user = User(name=_free_name(session, claims), kind="person", email=email,
                    is_admin=False, oidc_subject=identity.subject)
        session.add(user)
        session.flush()
        if settings.default_role is not None:
            session.add(Binding(subject_kind="user", subject_id=user.id,
                                role=settings.default_role))
    elif user.disabled_at is not None:
        raise _refused(f"user {user.name} is disabled; an admin can enable it with 'cumulo "
                       f"users enable {user.name}'", "disabled", user=user.name)
    elif user.kind != "person":
        raise _refused(f"{user.name} is a service account, which signs in with tokens only",
                       "service_account", user=user.name)
    elif email is not None:
        user.email = email
    added, removed = _sync_groups(session, settings, user, claims)
    session.flush()
    if created or added or removed:
        grants.guard_admins(session, f"the single sign-on of {user.name}")
    signed = _session_token(session, user, "sso", now) if with_token else None
    name, user_id = user.name, user.id
    session.commit()
    if created or added or removed:
        authz.changed()
    return SsoSignIn(user=name, user_id=user_id, signed=signed, created=created, added=added,
                     removed=removed)


def _session_token(session: Session, user: User, prefix: str, now: datetime) -> SignedIn:
    token, secret = issue_token(session, user.id, f"{prefix}-{now:%Y%m%d-%H%M%S}",
                                expires_at=now + SESSION_TTL, kind="session")
    session.flush()
    return SignedIn(user=user.name, user_id=user.id, token_id=token.id, secret=secret,
                    expires_at=now + SESSION_TTL)


# --- the CLI's device flow (RFC 8628), Cumulo as the authorization server ----------------------

_USER_CODE_LETTERS = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels (no words), none that look alike


@dataclass
class DeviceRequest:
    """One CLI waiting for its user to sign in in a browser."""

    device_code: str  # the CLI's secret
    user_code: str  # what the person checks on the page: "WDJB-MJHT"
    started: float
    interval: int
    last_poll: float | None = None
    user_id: int | None = None  # set once the browser signed in
    refused: str | None = None  # why the browser's sign-in was refused


@dataclass(frozen=True)
class DevicePoll:
    status: Literal["authorization_pending", "slow_down", "approved"]
    interval: int
    user_id: int | None = None


class DeviceFlows:
    """The device flows under way: at most ``size``, each for ``ttl`` seconds; a CLI that
    polls more often than ``interval`` is told to slow down (and the interval grows by 5 s,
    as RFC 8628 says); an approved request gives its token once."""

    def __init__(self, *, ttl: float = FLOW_TTL_S, interval: int = 5, size: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.interval = interval
        self.size = size
        self.clock = clock
        self._by_device: OrderedDict[str, DeviceRequest] = OrderedDict()
        self._by_user: dict[str, str] = {}
        self._lock = threading.Lock()

    def start(self) -> DeviceRequest:
        letters = "".join(secrets.choice(_USER_CODE_LETTERS) for _ in range(8))
        request = DeviceRequest(device_code=secrets.token_urlsafe(32),
                                user_code=f"{letters[:4]}-{letters[4:]}",
                                started=self.clock(), interval=self.interval)
        with self._lock:
            self._expire()
            self._by_device[request.device_code] = request
            self._by_user[letters] = request.device_code
            while len(self._by_device) > self.size:
                self._forget(next(iter(self._by_device)))
        return request

    def expires_in(self, request: DeviceRequest) -> int:
        return max(0, int(request.started + self.ttl - self.clock()))

    def by_user_code(self, user_code: str) -> DeviceRequest:
        """The request whose user code this is, waiting for a browser; NotFound otherwise."""
        letters = re.sub(r"[\s-]", "", user_code.upper())
        with self._lock:
            self._expire()
            device_code = self._by_user.get(letters)
            request = self._by_device.get(device_code) if device_code else None
        if request is None or request.user_id is not None or request.refused is not None:
            raise NotFound(f"no sign-in waits for code {user_code!r}: check it against what "
                           "'cumulo login --sso' shows, or run it again (a code works for "
                           f"{self.ttl / 60:g} minutes, once)")
        return request

    def approve(self, device_code: str, user_id: int) -> bool:
        """Give the request its user; False when it is gone (expired, or its CLI stopped) or
        was settled already (the first browser to finish wins)."""
        with self._lock:
            request = self._by_device.get(device_code)
            if request is None or request.refused is not None or request.user_id is not None:
                return False
            request.user_id = user_id
            return True

    def refuse(self, device_code: str, why: str) -> None:
        with self._lock:
            request = self._by_device.get(device_code)
            if request is not None and request.user_id is None:
                request.refused = why

    def poll(self, device_code: str) -> DevicePoll:
        """What the CLI polling with ``device_code`` is told; Unauthorized (its details'
        reason: expired_token, access_denied) when it should stop."""
        now = self.clock()
        with self._lock:
            request = self._by_device.get(device_code)
            if request is not None and now - request.started >= self.ttl:
                self._forget(device_code)
                request = None
            if request is None:
                raise _refused("this sign-in expired (it waits "
                               f"{self.ttl / 60:g} minutes for the browser) or is unknown; "
                               "run 'cumulo login --sso' again", "expired_token")
            if request.refused is not None:
                self._forget(device_code)
                raise _refused(f"the sign-in in the browser was refused: {request.refused}",
                               "access_denied")
            if request.user_id is not None:
                self._forget(device_code)
                return DevicePoll("approved", request.interval, request.user_id)
            early = request.last_poll is not None and now - request.last_poll < request.interval
            request.last_poll = now
            if early:
                request.interval += 5
                return DevicePoll("slow_down", request.interval)
            return DevicePoll("authorization_pending", request.interval)

    def _forget(self, device_code: str) -> None:
        request = self._by_device.pop(device_code, None)
        if request is not None:
            self._by_user.pop(request.user_code.replace("-", ""), None)

    def _expire(self) -> None:
        now = self.clock()
        while self._by_device:
            request = next(iter(self._by_device.values()))
            if now - request.started < self.ttl:
                break
            self._forget(request.device_code)


def issue_for_device(session: Session, user_id: int, *,
                     clock: Callable[[], datetime] = utcnow) -> SignedIn:
    """The session token an approved device flow gives its CLI; Unauthorized when the user
    was disabled or deleted meanwhile."""
    user = session.get(User, user_id)
    if user is None or user.disabled_at is not None:
        raise _refused("the user who signed in in the browser is disabled or was deleted "
                       "since", "access_denied")
    signed = _session_token(session, user, "sso-cli", clock())
    session.commit()
    return signed
