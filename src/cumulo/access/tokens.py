"""API tokens: created with a random secret shown once, stored as its SHA-256, revocable; and
whether a user may use theirs at all (a disabled user's tokens are refused)."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cumulo import units
from cumulo.access.models import Binding, Token, User
from cumulo.db import utcnow
from cumulo.errors import Conflict, Invalid, NotFound, Unauthorized
from cumulo.principal import Principal

__all__ = [
    "TokenCache",
    "authenticate",
    "bootstrap_admin",
    "create_token",
    "disable_user",
    "enable_user",
    "forget_cached",
    "issue_token",
    "list_tokens",
    "live_token_hashes",
    "live_tokens",
    "revocations",
    "revoke_token",
    "revoke_token_id",
]

SECRET_PREFIX = "cml_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# A token's last use is written at most this often, so reads do not turn into writes.
_TOUCH_EVERY = timedelta(seconds=60)
# Bumped when this process revokes a token or disables a user, so that its TokenCache forgets at
# once what it knew; another process's change reaches the cache within its ttl.
_revoked = [0]


def _hash(secret: str) -> str:
    # Secrets are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _add_token(
    session: Session, user: User, name: str, secret: str, *, created_by: int | None,
    expires_at: datetime | None = None,
) -> Token:
    token = Token(
        user_id=user.id, name=name, prefix=secret[:12], secret_hash=_hash(secret),
        expires_at=expires_at, created_by=created_by,
    )
    session.add(token)
    return token


def bootstrap_admin(session: Session, admin_token: str | None) -> str | None:
    """On first start, create the admin user and token; return the secret, else None."""
    if session.scalar(select(func.count()).select_from(User)):
        return None
    if admin_token is not None and len(admin_token) < 16:
        raise Invalid("CUMULO_ADMIN_TOKEN must be at least 16 characters long")
    secret = admin_token or _new_secret()
    admin = User(name="admin", is_admin=True)
    session.add(admin)
    session.flush()
    session.add(Binding(subject_kind="user", subject_id=admin.id, role="admin",
                        created_by=admin.id))
    _add_token(session, admin, "admin", secret, created_by=admin.id)
    session.commit()
    return secret


def authenticate(session: Session, secret: str) -> Principal:
    """Resolve a bearer secret to its principal, or raise Unauthorized."""
    row = session.execute(
        select(Token, User).join(User, Token.user_id == User.id)
        .where(Token.secret_hash == _hash(secret))
    ).first()
    if row is None:
        raise Unauthorized(
            "the token is not valid; check CUMULO_TOKEN or the saved login ('cumulo login'). "
            "The token 'cumulo up' printed at first start works, and its holder can make "
            "more with 'cumulo tokens create'"
        )
    token, user = row
    now = utcnow()
    if user.disabled_at is not None:
        raise Unauthorized(f"user {user.name} is disabled; an admin can enable it with "
                           f"'cumulo users enable {user.name}'")
    if token.revoked_at is not None:
        raise Unauthorized(f"token {token.name!r} was revoked; use another token")
    if token.expires_at is not None and token.expires_at <= now:
        raise Unauthorized(f"token {token.name!r} expired at {token.expires_at.isoformat()}")
    if token.last_used_at is None or now - token.last_used_at > _TOUCH_EVERY:
        token.last_used_at = now
        session.commit()
    return Principal(user_id=user.id, user_name=user.name, is_admin=user.is_admin,
                     token_id=token.id, via_job=token.kind == "job", token_name=token.name)


def create_token(
    session: Session, principal: Principal, name: str, *, expires_in: str | None = None,
    user_name: str | None = None,
) -> tuple[Token, str]:
    """A new token for the caller, or (``user_name``, for whoever may manage that user) for
    another user: a service account's, say. Returns the row and the secret (shown once)."""
    if not _NAME.match(name):
        raise Invalid(
            f"token name {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    principal.require("tokens:Manage", f"token/{name}")
    if user_name is not None and user_name != principal.user_name:
        principal.require("users:Manage", f"user/{user_name}")
        user = session.scalar(select(User).where(User.name == user_name))
        if user is None:
            raise NotFound(f"no user {user_name!r}; 'cumulo users ls' lists them")
        if user.kind != "service":  # a person's token would be that person, admin or not
            raise Invalid(f"{user_name} is a person: tokens are made for others only for "
                          "service accounts; a person makes their own", details={"user":
                                                                                 user_name})
    else:
        user = session.get(User, principal.user_id)
        if user is None:
            raise Unauthorized("the token's user no longer exists")
    live = select(Token).where(
        Token.user_id == user.id, Token.name == name, Token.revoked_at.is_(None)
    )
    if session.scalar(live) is not None:
        whose = "you already have" if user.id == principal.user_id else f"{user.name} has"
        raise Conflict(f"{whose} a token named {name!r}; revoke it or pick another name")
    expires_at = (utcnow() + timedelta(seconds=units.parse_duration(expires_in,
                                                                    what="--expires-in"))
                  if expires_in else None)
    secret = _new_secret()
    token = _add_token(session, user, name, secret, created_by=principal.user_id,
                       expires_at=expires_at)
    session.commit()
    return token, secret


def issue_token(session: Session, user_id: int, name: str, *,
                expires_at: datetime, kind: str = "job") -> tuple[Token, str]:
    """A token made by the platform: for work it runs as a user (kind "job": a job's, say), or
    for a user who signed in with a password (kind "session"). Added, not committed, so it
    lands with the change that needs it."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} no longer exists")
    secret = _new_secret()
    token = _add_token(session, user, name, secret, created_by=user_id, expires_at=expires_at)
    token.kind = kind
    return token, secret


def revoke_token_id(session: Session, token_id: int) -> None:
    """Revoke a platform-made token (not committed)."""
    token = session.get(Token, token_id)
    if token is not None and token.revoked_at is None:
        token.revoked_at = utcnow()
        forget_cached()


def revocations() -> int:
    """How many revokes this process has made: a cache of callers (tokens', access keys')
    forgets what it knew when this moves."""
    return _revoked[0]


def forget_cached() -> None:
    """Make every TokenCache of this process look each token up again at its next use: for a
    change that refuses tokens (a revoke, a user disabled), once it is committed."""
    _revoked[0] += 1


def disable_user(session: Session, user: User) -> None:
    """Disable ``user``: their tokens are refused from now on (in this process at once, in
    another within its cache's second), and they cannot sign in. Commits the session, with
    whatever else it holds (the audit entry of the change, say)."""
    if user.disabled_at is None:
        user.disabled_at = utcnow()
    session.commit()
    forget_cached()


def enable_user(session: Session, user: User) -> None:
    """Undo ``disable_user``: the tokens the user still has work again. Commits the session."""
    user.disabled_at = None
    session.commit()
    forget_cached()


def list_tokens(session: Session, principal: Principal, *, all_users: bool = False) -> list[Token]:
    principal.require("tokens:Manage", "token/*")
    query = select(Token).where(Token.kind == "user").order_by(Token.id)
    if not (all_users and principal.is_admin):
        query = query.where(Token.user_id == principal.user_id)
    return list(session.scalars(query))


def revoke_token(session: Session, principal: Principal, ref: str) -> Token:
    """Revoke a token by id or name. Admins may revoke anyone's; others only their own."""
    principal.require("tokens:Manage", f"token/{ref}")
    query = select(Token)
    if ref.isdigit():
        query = query.where(Token.id == int(ref))
    else:
        query = query.where(Token.name == ref, Token.user_id == principal.user_id)
    if not principal.is_admin:
        query = query.where(Token.user_id == principal.user_id)
    token = session.scalar(query.order_by(Token.revoked_at.is_(None).desc(), Token.id.desc()))
    if token is None:
        raise NotFound(f"no token {ref!r} of yours; 'cumulo tokens ls' lists them")
    if token.revoked_at is not None:
        raise Conflict(f"token {token.name!r} (id {token.id}) is already revoked")
    token.revoked_at = utcnow()
    session.commit()
    forget_cached()
    return token


def live_token_hashes(session: Session) -> dict[str, float | None]:
    """Every token that works now, as its SHA-256 (hex) and when it expires (Unix seconds, or
    None): what a process that checks tokens without the database (an endpoint's replica) is
    given to check against. A secret's hash is ``hashlib.sha256(secret.encode()).hexdigest()``.
    """
    return {h: expires for h, (expires, _) in live_tokens(session).items()}


def live_tokens(session: Session) -> dict[str, tuple[float | None, Principal]]:
    """Every token that works now: its SHA-256 (hex), when it expires, and who it is (to ask
    what it may do: which endpoints it may invoke, say)."""
    now = utcnow()
    rows = session.execute(
        select(Token.secret_hash, Token.expires_at, Token.id, Token.name, Token.kind, User.id,
               User.name, User.is_admin).join(User, Token.user_id == User.id).where(
            Token.revoked_at.is_(None), User.disabled_at.is_(None),
            (Token.expires_at.is_(None)) | (Token.expires_at > now))
    ).all()
    return {h: (e.timestamp() if e is not None else None,
                Principal(user_id=uid, user_name=uname, is_admin=admin, token_id=tid,
                          via_job=kind == "job", token_name=tname))
            for h, e, tid, tname, kind, uid, uname, admin in rows}


class TokenCache:
    """Who a secret belongs to, from memory: each token is looked up in the database at most
    once per ``ttl`` seconds, in a session of its own held for that lookup only, so a request
    holds no database connection for its authentication, and a token revoked (or its user
    disabled) anywhere stops working within ``ttl``: at once when this process did it.

    ``cached`` is the fast path (no database; None when the answer must be looked up), and
    ``authenticate`` the whole check: call it off the event loop. ``refresh_due`` says, once per
    half ``ttl``, that a busy token's answer should be looked up again ahead of time (``lookup``,
    in the background), so that under steady use no request waits for the database: without
    it, every request in flight when an answer turns a second old would look it up at once.
    """

    def __init__(self, sessions: sessionmaker[Session], *, ttl: float = 1.0,
                 size: int = 50_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self.size = size
        self.clock = clock
        # hash -> (principal or why it is refused, expires at (epoch s) or None, checked at,
        # revokes seen then)
        self._known: OrderedDict[str, tuple[Principal | str, float | None, float, int]] = \
            OrderedDict()
        self._lock = threading.Lock()
        self._refreshing: dict[str, float] = {}  # hash -> when a look-ahead was claimed
        # The async side's lookups in flight, one per token (server/auth.py).
        self.pending: dict[str, object] = {}

    def cached(self, secret: str) -> Principal | None:
        """The caller, when a fresh answer is at hand; raises the refusal the same way."""
        entry = self._known.get(_hash(secret))
        if entry is None:
            return None
        answer, expires, checked, revokes = entry
        if self.clock() - checked >= self.ttl or revokes != _revoked[0]:
            return None
        if isinstance(answer, str):
            raise Unauthorized(answer)
        if expires is not None and expires <= time.time():
            return None  # the full check says "expired"
        return answer

    def refresh_due(self, secret: str) -> bool:
        """Whether the caller should look this token up again now, ahead of its answer going
        stale: True for one caller once the answer is half ``ttl`` old (again after another
        half ``ttl`` if that lookup never came back)."""
        key = _hash(secret)
        entry = self._known.get(key)
        now = self.clock()
        if entry is None or now - entry[2] < self.ttl / 2:
            return False
        with self._lock:
            claimed = self._refreshing.get(key)
            if claimed is not None and now - claimed < self.ttl / 2:
                return False
            self._refreshing[key] = now
        return True

    def authenticate(self, secret: str) -> Principal:
        """The caller, from memory or from one short database lookup; raises Unauthorized."""
        found = self.cached(secret)
        if found is not None:
            return found
        return self.lookup(secret)

    def lookup(self, secret: str) -> Principal:
        """The caller from the database, remembered for ``ttl``; raises Unauthorized."""
        revokes = _revoked[0]
        expires: float | None = None
        with self.sessions() as session:
            try:
                principal = authenticate(session, secret)
                answer: Principal | str = principal
                token = session.get(Token, principal.token_id)
                if token is not None and token.expires_at is not None:
                    expires = token.expires_at.timestamp()
            except Unauthorized as refused:
                answer = refused.message
        key = _hash(secret)
        with self._lock:
            self._known[key] = (answer, expires, self.clock(), revokes)
            self._known.move_to_end(key)
            self._refreshing.pop(key, None)
            while len(self._known) > self.size:
                self._known.popitem(last=False)
        if isinstance(answer, str):
            raise Unauthorized(answer)
        return answer
