"""S3 access keys (``cumulo keys``): an access key id and secret that sign S3 requests
(:mod:`cumulo.storage.s3api`) as a Cumulo token does API calls.

Each key acts as a token: one made with it for a person's key (``cumulo keys create``), or a
job's own token for the key its job is given, so a key is scoped as its token is (a job's key
works only while its job runs) and a revoked token takes its keys with it. Who the key's
caller is (user, admin, grants) is decided as for the token, in the same place.

The secret is shown once, when the key is made; the server keeps it, because Signature
Version 4 signs with the secret itself (an HMAC), not with something derived from a hash.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cumulo.access import tokens
from cumulo.access.models import AccessKey, Token, User
from cumulo.db import utcnow
from cumulo.errors import Conflict, NotFound, Unauthorized
from cumulo.principal import Principal

__all__ = ["KeyCache", "create_key", "job_key", "key_of_token", "list_keys", "principal_of",
           "revoke_key"]

_ID_CHARS = string.ascii_uppercase + string.digits
_TOUCH_EVERY = timedelta(minutes=1)


def _new_id() -> str:
    return "CK" + "".join(secrets.choice(_ID_CHARS) for _ in range(18))


def _new_secret() -> str:
    return secrets.token_urlsafe(30)  # 40 characters, as AWS's


def create_key(session: Session, principal: Principal, name: str, *,
               expires_in: int | None = None) -> tuple[AccessKey, str]:
    """A new key of the caller's, with a token of its own (named after the key): returns the
    key and its secret, shown once. Commits."""
    principal.require("tokens:Manage", "key/*")
    name = name.strip() or "s3"
    if len(name) > 64:
        raise Conflict(f"a key's name is at most 64 characters, not {len(name)}")
    expires = utcnow() + timedelta(seconds=expires_in) if expires_in else None
    key_id = _new_id()
    token, _ = tokens.issue_token(session, principal.user_id, f"s3 key {key_id}",
                                  expires_at=expires or utcnow() + timedelta(days=36500),
                                  kind="key")
    if expires is None:
        token.expires_at = None
    session.flush()
    secret = _new_secret()
    key = AccessKey(access_key_id=key_id, secret=secret, token_id=token.id,
                    user_id=principal.user_id, name=name, created_by=principal.user_id)
    session.add(key)
    session.commit()
    return key, secret


def job_key(session: Session, token: Token) -> tuple[str, str]:
    """A key for the work ``token`` was made for (a job's, a notebook's), acting as it: gone
    when the token is revoked. Added, not committed: it lands with the change that needs it."""
    key_id, secret = _new_id(), _new_secret()
    session.add(AccessKey(access_key_id=key_id, secret=secret, token_id=token.id,
                          user_id=token.user_id, name=token.name[:64],
                          created_by=token.user_id))
    return key_id, secret


def key_of_token(session: Session, principal: Principal) -> tuple[str, str]:
    """A key that acts as the caller's own token (made once, then reused): what the server
    signs the caller's presigned URLs with, so a URL stops working when that token does.
    Commits."""
    key = session.scalar(select(AccessKey).where(AccessKey.token_id == principal.token_id,
                                                 AccessKey.revoked_at.is_(None))
                         .order_by(AccessKey.id))
    if key is not None:
        return key.access_key_id, key.secret
    token = session.get(Token, principal.token_id)
    if token is None:
        raise Unauthorized("the caller's token is gone")
    found = job_key(session, token)
    session.commit()
    return found


def list_keys(session: Session, principal: Principal, *,
              all_users: bool = False) -> list[AccessKey]:
    """The caller's keys made with ``cumulo keys create`` (or everyone's, for an admin who
    asks), revoked ones included."""
    principal.require("tokens:Manage", "key/*")
    query = (select(AccessKey).join(Token, Token.id == AccessKey.token_id)
             .where(Token.kind == "key").order_by(AccessKey.id))
    if not (all_users and principal.is_admin):
        query = query.where(AccessKey.user_id == principal.user_id)
    return list(session.scalars(query))


def revoke_key(session: Session, principal: Principal, key_id: str) -> AccessKey:
    """Revoke a key (and the token it acts as). Admins may revoke anyone's. Commits."""
    principal.require("tokens:Manage", f"key/{key_id}")
    query = select(AccessKey).where(AccessKey.access_key_id == key_id)
    if not principal.is_admin:
        query = query.where(AccessKey.user_id == principal.user_id)
    key = session.scalar(query)
    if key is None:
        raise NotFound(f"no access key {key_id!r} of yours; 'cumulo keys ls' lists them",
                       details={"key": key_id})
    if key.revoked_at is not None:
        raise Conflict(f"access key {key_id} is already revoked")
    key.revoked_at = utcnow()
    token = session.get(Token, key.token_id)
    if token is not None and token.kind == "key" and token.revoked_at is None:
        token.revoked_at = key.revoked_at
    session.commit()
    tokens.forget_cached()
    return key


def principal_of(session: Session, key_id: str) -> tuple[str, Principal]:
    """The key's secret and who it acts as; Unauthorized (S3's InvalidAccessKeyId) if it is
    unknown, revoked, or its token or user no longer works."""
    row = session.execute(
        select(AccessKey, Token, User).join(Token, Token.id == AccessKey.token_id)
        .join(User, User.id == AccessKey.user_id)
        .where(AccessKey.access_key_id == key_id)).first()
    if row is None:
        raise Unauthorized(f"the access key {key_id!r} does not exist; 'cumulo keys create' "
                           "makes one")
    key, token, user = row
    now = utcnow()
    if key.revoked_at is not None:
        raise Unauthorized(f"the access key {key_id} was revoked")
    if token.revoked_at is not None:
        raise Unauthorized(f"the access key {key_id} was revoked with its token "
                           f"{token.name!r}")
    if token.expires_at is not None and token.expires_at <= now:
        raise Unauthorized(f"the access key {key_id} expired at {token.expires_at.isoformat()}")
    if user.disabled_at is not None:
        raise Unauthorized(f"user {user.name} is disabled")
    if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY:
        key.last_used_at = now
        session.commit()
    return key.secret, Principal(user_id=user.id, user_name=user.name, is_admin=user.is_admin,
                                 token_id=token.id, via_job=token.kind == "job",
                                 token_name=token.name)


class KeyCache:
    """Keys' secrets and callers from memory, each looked up at most once per ``ttl``
    seconds, and again at once after a revoke in this process (as :class:`cumulo.access.
    tokens.TokenCache` does for tokens)."""

    def __init__(self, sessions: sessionmaker[Session], *, ttl: float = 1.0,
                 size: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.sessions, self.ttl, self.size, self.clock = sessions, ttl, size, clock
        self._known: OrderedDict[str, tuple[tuple[str, Principal] | str, float, int]] = \
            OrderedDict()
        self._lock = threading.Lock()

    def resolve(self, key_id: str) -> tuple[str, Principal]:
        """Call off the event loop: it may read the database."""
        entry = self._known.get(key_id)
        if entry is not None and self.clock() - entry[1] < self.ttl and \
                entry[2] == tokens.revocations():
            answer = entry[0]
        else:
            revokes = tokens.revocations()
            try:
                with self.sessions() as session:
                    answer = principal_of(session, key_id)
            except Unauthorized as exc:
                answer = exc.message
            with self._lock:
                self._known[key_id] = (answer, self.clock(), revokes)
                self._known.move_to_end(key_id)
                while len(self._known) > self.size:
                    self._known.popitem(last=False)
        if isinstance(answer, str):
            raise Unauthorized(answer)
        return answer
