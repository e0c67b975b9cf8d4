"""Signing in with a user name and a password, for a session token.

Three decisions, each made here and nowhere else: whether an address may try now
(``RateLimiter``: a token bucket per source address), whether an account is locked after wrong
passwords (``Lockout``, kept on the user's row), and what each refusal says. ``sign_in`` puts
them together against the database; the policies are pure, with clocks a test controls.

A refusal does not tell whether a user exists: an unknown name, a wrong password, a locked
account and a service account (which has no password) get the same message, after the same
argon2 work; a disabled account says so only to whoever knows its password. Whoever is locked
out learns it from the message's mention of the lock, and an admin sees until when
(``cumulo users show``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cumulo.access.models import User
from cumulo.access.passwords import MAX_LENGTH, hash_password, needs_rehash, verify_password
from cumulo.access.tokens import issue_token
from cumulo.db import utcnow
from cumulo.errors import Invalid, TooManyRequests, Unauthorized

__all__ = ["LOCKOUT", "SESSION_TTL", "Lockout", "RateLimiter", "SignedIn", "sign_in"]

# How long a sign-in's token works: a working day; then the user signs in again.
SESSION_TTL = timedelta(hours=12)


class RateLimiter:
    """How often one source address may try: a bucket of ``burst`` tries per address, filled
    again at ``per_minute``. At most ``size`` addresses are remembered; past that the one that
    tried longest ago is forgotten (and starts again full), so memory stays bounded."""

    def __init__(self, *, per_minute: float = 10, burst: int = 10, size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.burst = burst
        self.size = size
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tries left, at
        self._lock = threading.Lock()

    def take(self, source: str) -> float:
        """Count one try from ``source``: 0.0 when it may go ahead, else the seconds until
        one would (and nothing is counted)."""
        now = self.clock()
        rate = self.per_minute / 60
        with self._lock:
            left, at = self._buckets.pop(source, (float(self.burst), now))
            left = min(float(self.burst), left + (now - at) * rate)
            wait = 0.0 if left >= 1 else (1 - left) / rate
            self._buckets[source] = (left - 1 if wait == 0 else left, now)
            while len(self._buckets) > self.size:
                self._buckets.popitem(last=False)
        return wait

    def check(self, source: str) -> None:
        """Count one try from ``source``, or raise TooManyRequests saying when to try again."""
        wait = self.take(source)
        if wait:
            raise TooManyRequests(
                f"too many sign-in attempts from {source} (at most {self.per_minute:g} a "
                f"minute); try again in {math.ceil(wait)} s", retry_after=wait)

    @property
    def remembered(self) -> int:
        """How many addresses the limiter holds a bucket for."""
        return len(self._buckets)


@dataclass(frozen=True)
class Lockout:
    """After ``after`` wrong passwords in a row an account is locked for ``first``; each
    further ``after`` in a row locks it for twice as long as the last, up to ``longest``. A
    right password (or a new one set by an admin) starts the count again."""

    after: int = 5
    first: timedelta = timedelta(minutes=15)
    longest: timedelta = timedelta(hours=24)

    def locked_until(self, user: User, now: datetime) -> datetime | None:
        """When the lock on ``user`` ends, or None when they may try now."""
        until = user.locked_until
        return until if until is not None and until > now else None

    def lock_for(self, failures: int) -> timedelta | None:
        """How long the ``failures``-th wrong password in a row locks the account for."""
        if failures < self.after or failures % self.after:
            return None
        doublings = min(failures // self.after - 1, 32)
        length: timedelta = min(self.first * (1 << doublings), self.longest)
        return length

    def failed(self, user: User, now: datetime, *, failures: int | None = None) -> datetime | None:
        """Note a wrong password on the row (``failures``: the count after it, when the
        database counted); returns when the lock it starts ends, or None."""
        user.failed_logins = (user.failed_logins or 0) + 1 if failures is None else failures
        length = self.lock_for(user.failed_logins)
        if length is None:
            return None
        user.locked_until = now + length
        return user.locked_until

    def reset(self, user: User) -> None:
        """A right password, or an admin's unlock: the count starts again."""
        user.failed_logins = 0
        user.locked_until = None


LOCKOUT = Lockout()


@dataclass(frozen=True)
class SignedIn:
    """Who signed in, and their new session token's secret (shown to them once)."""

    user: str
    user_id: int
    token_id: int
    secret: str
    expires_at: datetime


def _wrong(lockout: Lockout) -> Unauthorized:
    minutes = math.ceil(lockout.first.total_seconds() / 60)
    return Unauthorized(
        f"the user name or the password is wrong, or the account is locked (after "
        f"{lockout.after} wrong passwords in a row, for {minutes} minutes and longer each time "
        "after); try again later, or ask an admin to set a new password, which unlocks it. "
        "Service accounts sign in with tokens ('cumulo login --token')")


def _count_failure(session: Session, user: User, lockout: Lockout, now: datetime) -> None:
    # Counted by the database, so that wrong passwords sent at once are each counted.
    failures = session.scalar(
        update(User).where(User.id == user.id).values(failed_logins=User.failed_logins + 1)
        .returning(User.failed_logins).execution_options(synchronize_session=False))
    lockout.failed(user, now, failures=failures)
    session.commit()


def sign_in(session: Session, user_name: str, password: str, *, source: str,
            limiter: RateLimiter, lockout: Lockout = LOCKOUT,
            clock: Callable[[], datetime] = utcnow) -> SignedIn:
    """Check a user name and password sent from ``source`` (an address) and give a session
    token of 12 hours. Raises TooManyRequests (the address is over its rate), Invalid (a field
    missing or too long) or Unauthorized (unknown user or wrong password, one message for
    both; locked; disabled; a service account, which signs in with tokens only)."""
    if not user_name or not password:
        raise Invalid("enter a user name and a password")
    if len(password) > MAX_LENGTH:
        raise Invalid(f"a password is at most {MAX_LENGTH:,} characters")
    limiter.check(source)
    now = clock()
    user = session.scalar(select(User).where(User.name == user_name))
    locked = user is not None and lockout.locked_until(user, now) is not None
    # The same work whoever it is, so that time tells nothing either.
    right = verify_password(user.password_hash if user is not None else None, password)
    if user is None or user.kind == "service" or locked:
        raise _wrong(lockout)  # tries while locked are not counted
    if not right:
        _count_failure(session, user, lockout, now)
        raise _wrong(lockout)
    if user.disabled_at is not None:
        raise Unauthorized(f"user {user.name} is disabled; an admin can enable it with "
                           f"'cumulo users enable {user.name}'")
    lockout.reset(user)
    if user.password_hash and needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    token, secret = issue_token(session, user.id, f"signin-{now:%Y%m%d-%H%M%S}",
                                expires_at=now + SESSION_TTL, kind="session")
    session.flush()
    signed = SignedIn(user=user.name, user_id=user.id, token_id=token.id, secret=secret,
                      expires_at=now + SESSION_TTL)
    session.commit()
    return signed
