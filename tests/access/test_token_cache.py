"""The token cache: a request's caller from memory, the database asked at most once a second
per token, a revoke felt at once here and within the second from anywhere else. A real SQLite
database; a controlled clock for the cache's own time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from cumulo.access.models import Token
from cumulo.access.tokens import TokenCache, bootstrap_admin, issue_token, revoke_token_id
from cumulo.db import make_engine, upgrade, utcnow
from cumulo.errors import Unauthorized

SECRET = "cml_admin-secret-for-the-cache-tests"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'cumulo.db'}")
    upgrade(engine)
    with Session(engine) as session:
        bootstrap_admin(session, SECRET)
    yield engine
    engine.dispose()


def _counting(engine: Engine) -> list[str]:
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, sql, *rest: statements.append(sql))
    return statements


def test_a_caller_comes_from_memory_and_is_checked_again_each_second(engine: Engine) -> None:
    clock = Clock()
    cache = TokenCache(sessionmaker(engine), clock=clock)
    statements = _counting(engine)
    assert cache.cached(SECRET) is None  # never seen: the full check is needed
    admin = cache.authenticate(SECRET)
    assert admin.user_name == "admin" and admin.is_admin
    looked_up = len(statements)
    assert looked_up >= 1
    for _ in range(100):
        assert cache.cached(SECRET) == admin
        assert cache.authenticate(SECRET) == admin
    assert len(statements) == looked_up  # no database at all
    clock.now += 1.0
    assert cache.cached(SECRET) is None
    assert cache.authenticate(SECRET) == admin
    assert len(statements) > looked_up
    # The lookup's connection went back to the pool: nothing is checked out.
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_revoke_here_is_felt_at_once_and_one_elsewhere_within_the_second(
        engine: Engine) -> None:
    clock = Clock()
    sessions = sessionmaker(engine)
    cache = TokenCache(sessions, clock=clock)
    with sessions() as session:
        token, secret = issue_token(session, 1, "job-1-1", expires_at=utcnow() + timedelta(hours=1))
        session.commit()
        job_token = token.id
    assert cache.authenticate(secret).via_job
    assert cache.authenticate(SECRET).is_admin

    # Revoked by this process: refused at the next request.
    with sessions() as session:
        revoke_token_id(session, job_token)
        session.commit()
    with pytest.raises(Unauthorized, match="revoked"):
        cache.authenticate(secret)

    # Revoked by another process (another control plane, a script on the database): the cache
    # has no word of it, and answers from memory until its second is up.
    assert cache.authenticate(SECRET).is_admin  # looked up again after the revoke above
    with sessions() as session:
        session.execute(update(Token).where(Token.name == "admin").values(revoked_at=utcnow()))
        session.commit()
    clock.now += 0.5
    assert cache.authenticate(SECRET).is_admin
    clock.now += 0.5
    with pytest.raises(Unauthorized, match="revoked"):
        cache.authenticate(SECRET)
    with pytest.raises(Unauthorized, match="revoked"):  # and the refusal is remembered too
        cache.cached(SECRET)


def test_an_unknown_or_expired_token_is_refused_without_asking_each_time(
        engine: Engine) -> None:
    clock = Clock()
    sessions = sessionmaker(engine)
    cache = TokenCache(sessions, clock=clock, size=3)
    statements = _counting(engine)
    for _ in range(5):
        with pytest.raises(Unauthorized, match="not valid"):
            cache.authenticate("cml_nobody")
    assert 1 <= len(statements) <= 2  # looked up once

    # A token that expires while the cache remembers it stops working at its expiry, not a
    # second later.
    with sessions() as session:
        _, secret = issue_token(session, 1, "short", expires_at=utcnow() + timedelta(seconds=1))
        session.commit()
    assert cache.authenticate(secret).user_name == "admin"
    import time

    time.sleep(1.1)
    assert cache.cached(secret) is None
    with pytest.raises(Unauthorized, match="expired"):
        cache.authenticate(secret)

    # The cache holds at most `size` tokens: the oldest answers go first.
    for n in range(5):
        with pytest.raises(Unauthorized):
            cache.authenticate(f"cml_stranger-{n}")
    assert len(cache._known) == 3


def test_a_busy_token_is_looked_up_ahead_of_time_by_one_caller(engine: Engine) -> None:
    clock = Clock()
    cache = TokenCache(sessionmaker(engine), clock=clock)
    assert not cache.refresh_due(SECRET)  # nothing known: the full check does it
    admin = cache.authenticate(SECRET)
    clock.now += 0.4
    assert not cache.refresh_due(SECRET)  # young
    clock.now += 0.1
    # Half a second old: one caller is told to look it up again, the others are not, and the
    # answer is still served from memory meanwhile.
    assert [cache.refresh_due(SECRET) for _ in range(50)].count(True) == 1
    assert cache.cached(SECRET) == admin
    # The look-ahead that was claimed never came back (the database down): claimed again
    # half a second later, while the old answer lasts its second and no longer.
    clock.now += 0.49
    assert not cache.refresh_due(SECRET) and cache.cached(SECRET) == admin
    clock.now += 0.01
    assert cache.cached(SECRET) is None
    statements = _counting(engine)
    assert cache.lookup(SECRET) == admin and statements  # asked, fresh again
    assert not cache.refresh_due(SECRET) and cache.cached(SECRET) == admin
    clock.now += 0.5
    assert cache.refresh_due(SECRET)


def test_requests_that_find_no_answer_share_one_lookup(engine: Engine) -> None:
    """``caller`` (server/auth.py) as a burst of requests meets it: 64 at once for a token
    nobody has asked about make one lookup between them; a refused one is refused to each."""
    import asyncio
    from types import SimpleNamespace

    from cumulo.server.auth import caller

    cache = TokenCache(sessionmaker(engine))
    running = SimpleNamespace(tokens=cache)
    statements = _counting(engine)
    TokenCache(sessionmaker(engine)).lookup(SECRET)
    one = len(statements)  # what a single lookup asks
    statements.clear()

    async def burst(secret: str) -> list[object]:
        return await asyncio.gather(*(caller(running, secret)  # type: ignore[arg-type]
                                      for _ in range(64)), return_exceptions=True)

    answers = asyncio.run(burst(SECRET))
    assert all(a == answers[0] for a in answers) and answers[0].is_admin  # type: ignore[attr-defined]
    assert 1 <= len(statements) <= one
    statements.clear()
    refused = asyncio.run(burst("cml_nobody"))
    assert all(isinstance(a, Unauthorized) for a in refused)
    assert 1 <= len(statements) <= one
    assert not cache.pending
