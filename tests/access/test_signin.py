"""Signing in: the rate per address and the lockout as pure decisions under clocks the test
controls, and ``sign_in`` against a real SQLite database: one message for an unknown user and
a wrong password, locks that double, a session token, disabled users and service accounts; a
user disabled here is refused by this process's token cache at once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from cumulo.access.models import Token, User
from cumulo.access.passwords import hash_password, verify_password
from cumulo.access.signin import LOCKOUT, Lockout, RateLimiter, SignedIn, sign_in
from cumulo.access.tokens import (
    TokenCache,
    authenticate,
    bootstrap_admin,
    disable_user,
    enable_user,
    live_token_hashes,
)
from cumulo.db import make_engine, upgrade, utcnow
from cumulo.errors import Invalid, TooManyRequests, Unauthorized

PASSWORD = "tangerine-otter-lamp-42"
WRONG = "the user name or the password is wrong"


class Seconds:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Wall:
    """A UTC wall clock the test moves."""

    def __init__(self) -> None:
        self.now = utcnow().replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


# --- the rate per address ---------------------------------------------------------------------


def test_an_address_gets_its_burst_then_one_try_every_six_seconds() -> None:
    clock = Seconds()
    limiter = RateLimiter(clock=clock)  # 10 a minute, bursts of 10
    for _ in range(10):
        limiter.check("10.0.0.1")
    assert limiter.take("10.0.0.1") == pytest.approx(6.0)
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("10.0.0.1")
    assert refused.value.retry_after == pytest.approx(6.0)
    assert refused.value.message == ("too many sign-in attempts from 10.0.0.1 (at most 10 a "
                                     "minute); try again in 6 s")
    limiter.check("10.0.0.2")  # another address has its own bucket
    clock.now += 3
    assert limiter.take("10.0.0.1") == pytest.approx(3.0)  # refused tries are not counted
    clock.now += 3
    limiter.check("10.0.0.1")
    assert limiter.take("10.0.0.1") == pytest.approx(6.0)
    # A quiet hour fills the bucket again, to its burst and no further.
    clock.now += 3600
    for _ in range(10):
        limiter.check("10.0.0.1")
    assert limiter.take("10.0.0.1") > 0


def test_memory_is_bounded_forgetting_the_address_that_tried_longest_ago() -> None:
    clock = Seconds()
    limiter = RateLimiter(burst=2, size=3, clock=clock)
    for source in ("a", "a", "b", "c"):
        limiter.check(source)
    assert limiter.take("a") > 0  # "a" used its burst
    limiter.check("b")  # "b" tried last now; "c", then "a", tried longer ago
    limiter.check("d")
    assert limiter.remembered == 3
    limiter.check("e")  # "c" and "a" are forgotten in turn...
    assert limiter.remembered == 3
    limiter.check("a")  # ...so "a" starts again with a full bucket
    assert limiter.remembered == 3


# --- the lockout ------------------------------------------------------------------------------


def test_locks_begin_at_five_in_a_row_double_and_stop_at_a_day() -> None:
    policy = Lockout()
    assert [policy.lock_for(n) for n in range(1, 5)] == [None] * 4
    assert policy.lock_for(5) == timedelta(minutes=15)
    assert [policy.lock_for(n) for n in range(6, 10)] == [None] * 4
    assert policy.lock_for(10) == timedelta(minutes=30)
    assert policy.lock_for(15) == timedelta(hours=1)
    assert policy.lock_for(35) == timedelta(hours=16)
    assert policy.lock_for(40) == timedelta(hours=24)
    assert policy.lock_for(5 * 10_000) == timedelta(hours=24)


def test_the_lockout_on_a_users_row() -> None:
    now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    user = User(name="alice", failed_logins=0)
    for _ in range(4):
        assert LOCKOUT.failed(user, now) is None
    assert LOCKOUT.locked_until(user, now) is None
    assert LOCKOUT.failed(user, now) == now + timedelta(minutes=15)
    assert user.failed_logins == 5 and user.locked_until == now + timedelta(minutes=15)
    assert LOCKOUT.locked_until(user, now + timedelta(minutes=14)) == user.locked_until
    assert LOCKOUT.locked_until(user, now + timedelta(minutes=15)) is None
    LOCKOUT.reset(user)
    assert user.failed_logins == 0 and user.locked_until is None


# --- sign_in against a real database ----------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'cumulo.db'}")
    upgrade(engine)
    with Session(engine) as session:
        bootstrap_admin(session, "cml_admin-secret-for-the-signin-tests")
    yield engine
    engine.dispose()


def _add(engine: Engine, name: str, *, kind: str = "person",
         password_hash: str | None = "PASSWORD") -> None:
    if password_hash == "PASSWORD":
        password_hash = hash_password(PASSWORD) if kind == "person" else None
    with Session(engine) as session:
        session.add(User(name=name, kind=kind, created_at=utcnow(), password_hash=password_hash))
        session.commit()


def _sign_in(engine: Engine, name: str, password: str, clock: Wall,
             limiter: RateLimiter | None = None) -> SignedIn:
    with Session(engine, expire_on_commit=False) as session:
        return sign_in(session, name, password, source="10.1.2.3",
                       limiter=RateLimiter(burst=1000) if limiter is None else limiter, clock=clock)


def _row(engine: Engine, name: str) -> User:
    with Session(engine) as session:
        user = session.scalar(select(User).where(User.name == name))
        assert user is not None
        session.expunge(user)
        return user


def test_a_sign_in_gives_a_session_token_of_twelve_hours(engine: Engine) -> None:
    _add(engine, "alice")
    clock = Wall()
    signed = _sign_in(engine, "alice", PASSWORD, clock)
    assert signed.user == "alice" and signed.secret.startswith("cml_")
    assert signed.expires_at == clock.now + timedelta(hours=12)
    with Session(engine) as session:
        me = authenticate(session, signed.secret)
        assert me.user_name == "alice" and not me.via_job and not me.is_admin
        token = session.get(Token, signed.token_id)
        assert token is not None and token.kind == "session"
        assert token.name == f"signin-{clock.now:%Y%m%d-%H%M%S}"
        assert token.expires_at == clock.now + timedelta(hours=12)


def test_an_unknown_user_and_a_wrong_password_get_one_message(engine: Engine) -> None:
    _add(engine, "alice")
    _add(engine, "nopass", password_hash=None)  # a person without a password (single sign-on)
    clock = Wall()
    answers = []
    for name, password in (("alice", "not-her-password-at-all"), ("nobody", PASSWORD),
                           ("nopass", PASSWORD)):
        with pytest.raises(Unauthorized) as refused:
            _sign_in(engine, name, password, clock)
        answers.append(refused.value.message)
    assert answers[0].startswith(WRONG) and len(set(answers)) == 1
    assert _row(engine, "alice").failed_logins == 1


def test_five_wrong_passwords_lock_the_account_and_locks_double(engine: Engine) -> None:
    _add(engine, "alice")
    clock = Wall()
    for _ in range(5):
        with pytest.raises(Unauthorized, match=WRONG):
            _sign_in(engine, "alice", "not-her-password-at-all", clock)
    until = clock.now + timedelta(minutes=15)
    assert _row(engine, "alice").locked_until == until
    # Locked: the right password is refused too, with the answer an unknown user or a wrong
    # password gets (which names the lock), so that it tells nothing about the account.
    for password in (PASSWORD, "not-her-password-at-all"):
        with pytest.raises(Unauthorized) as locked:
            _sign_in(engine, "alice", password, clock)
        assert locked.value.message.startswith(WRONG) and "or the account is locked" in (
            locked.value.message)
        assert locked.value.details == {}
    with pytest.raises(Unauthorized) as unknown:
        _sign_in(engine, "nobody-at-all", PASSWORD, clock)
    assert unknown.value.message == locked.value.message
    assert _row(engine, "alice").failed_logins == 5  # tries while locked are not counted

    # The lock ends; five more wrong in a row lock it for twice as long.
    clock.now = until
    for _ in range(5):
        with pytest.raises(Unauthorized, match=WRONG):
            _sign_in(engine, "alice", "not-her-password-at-all", clock)
    assert _row(engine, "alice").locked_until == clock.now + timedelta(minutes=30)
    clock.now += timedelta(minutes=29)
    with pytest.raises(Unauthorized, match=WRONG):
        _sign_in(engine, "alice", PASSWORD, clock)

    # The right password once the lock is over: signed in, and the count starts again.
    clock.now += timedelta(minutes=1)
    assert _sign_in(engine, "alice", PASSWORD, clock).user == "alice"
    row = _row(engine, "alice")
    assert row.failed_logins == 0 and row.locked_until is None
    for _ in range(4):
        with pytest.raises(Unauthorized, match=WRONG):
            _sign_in(engine, "alice", "not-her-password-at-all", clock)
    assert _sign_in(engine, "alice", PASSWORD, clock).user == "alice"


def test_wrong_passwords_sent_at_once_are_each_counted(engine: Engine) -> None:
    """Two sign-ins that read the row before either writes: the database counts, not them."""
    _add(engine, "alice")
    clock = Wall()
    with Session(engine) as first, Session(engine) as second:
        for session in (first, second):
            session.scalar(select(User).where(User.name == "alice"))  # both read 0
        for session in (first, second):
            with pytest.raises(Unauthorized):
                sign_in(session, "alice", "not-her-password-at-all", source="10.1.2.3",
                        limiter=RateLimiter(), clock=clock)
    assert _row(engine, "alice").failed_logins == 2


def test_an_address_over_its_rate_is_refused_before_any_password_is_checked(
        engine: Engine) -> None:
    _add(engine, "alice")
    clock, seconds = Wall(), Seconds()
    limiter = RateLimiter(per_minute=10, burst=2, clock=seconds)
    with pytest.raises(Unauthorized):
        _sign_in(engine, "alice", "not-her-password-at-all", clock, limiter)
    _sign_in(engine, "alice", PASSWORD, clock, limiter)
    with pytest.raises(TooManyRequests, match="try again in 6 s") as refused:
        _sign_in(engine, "alice", PASSWORD, clock, limiter)
    assert refused.value.retry_after == pytest.approx(6.0)
    assert refused.value.details == {"retry_after": 6}
    assert _row(engine, "alice").failed_logins == 0
    seconds.now += 6
    _sign_in(engine, "alice", PASSWORD, clock, limiter)


def test_missing_or_oversized_fields_are_invalid(engine: Engine) -> None:
    clock = Wall()
    for name, password in (("", PASSWORD), ("alice", ""), ("alice", "x" * 1025)):
        with pytest.raises(Invalid):
            _sign_in(engine, name, password, clock)


def test_a_service_account_signs_in_with_tokens_only(engine: Engine) -> None:
    # Refused as an unknown name is, so that the answer does not say that the account exists
    # (the message names service accounts and tokens for whoever tried one in earnest).
    _add(engine, "robot", kind="service")
    with pytest.raises(Unauthorized) as refused:
        _sign_in(engine, "robot", PASSWORD, Wall())
    assert refused.value.message.startswith(WRONG)
    assert "Service accounts sign in with tokens" in refused.value.message
    assert _row(engine, "robot").failed_logins == 0


def test_an_old_hash_is_made_again_at_sign_in(engine: Engine) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    _add(engine, "alice", password_hash=weak)
    _sign_in(engine, "alice", PASSWORD, Wall())
    renewed = _row(engine, "alice").password_hash
    assert renewed != weak and renewed is not None and verify_password(renewed, PASSWORD)
    assert "t=3" in renewed


def test_a_disabled_user_is_refused_at_once_here_and_within_the_second_elsewhere(
        engine: Engine) -> None:
    _add(engine, "alice")
    clock = Wall()
    secret = _sign_in(engine, "alice", PASSWORD, clock).secret
    seconds = Seconds()
    sessions = sessionmaker(engine)
    cache = TokenCache(sessions, clock=seconds)
    assert cache.authenticate(secret).user_name == "alice"
    with Session(engine) as session:
        assert len(live_token_hashes(session)) == 2  # the admin's and alice's

    # Disabled through cumulo.access.tokens in this process: refused at the next request,
    # though the cache's second is not up.
    with sessions() as session:
        user = session.scalar(select(User).where(User.name == "alice"))
        assert user is not None
        disable_user(session, user)
    with pytest.raises(Unauthorized) as refused:
        cache.authenticate(secret)
    assert refused.value.message == ("user alice is disabled; an admin can enable it with "
                                     "'cumulo users enable alice'")
    with Session(engine) as session:
        assert len(live_token_hashes(session)) == 1  # endpoints' replicas refuse it too
    # Signing in: the right password hears that the user is disabled; a wrong one does not.
    with pytest.raises(Unauthorized, match=WRONG):
        _sign_in(engine, "alice", "not-her-password-at-all", clock)
    with pytest.raises(Unauthorized, match="user alice is disabled"):
        _sign_in(engine, "alice", PASSWORD, clock)

    with sessions() as session:
        user = session.scalar(select(User).where(User.name == "alice"))
        assert user is not None
        enable_user(session, user)
    assert cache.authenticate(secret).user_name == "alice"  # at once again

    # Disabled by another process (a script on the database): within the cache's second.
    with sessions() as session:
        session.execute(update(User).where(User.name == "alice").values(disabled_at=utcnow()))
        session.commit()
    assert cache.authenticate(secret).user_name == "alice"
    seconds.now += 1.0
    with pytest.raises(Unauthorized, match="disabled"):
        cache.authenticate(secret)
