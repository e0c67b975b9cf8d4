"""The decision point over a real SQLite database: a user's rights from their roles, groups
and policies; read again at once after a change here, within the ttl after one elsewhere, and
ahead of time for a busy user so that no decision waits; jobs' tokens limited; the audit log's
lake copy append-only for everyone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from cumulo.access import authz
from cumulo.access.authz import Authorizer
from cumulo.access.models import Binding, Group, GroupMember, User
from cumulo.access.tokens import bootstrap_admin
from cumulo.db import make_engine, upgrade, utcnow
from cumulo.principal import Principal


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'cumulo.db'}")
    upgrade(engine)
    with Session(engine) as session:
        bootstrap_admin(session, "cml_admin-secret-for-the-authz-tests")
        ann = User(name="ann", created_at=utcnow())
        team = Group(name="analysts", description="", created_at=utcnow())
        session.add_all([ann, team])
        session.flush()
        session.add(GroupMember(group_id=team.id, user_id=ann.id))
        session.add(Binding(subject_kind="group", subject_id=team.id, role="analyst",
                            created_at=utcnow()))
        session.commit()
    yield engine
    engine.dispose()


def _ann(engine: Engine, *, via_job: bool = False) -> Principal:
    with Session(engine) as session:
        ann = session.query(User).filter_by(name="ann").one()
        return Principal(ann.id, "ann", False, 0, via_job=via_job)


def test_rights_come_from_groups_and_are_read_again_after_a_change(engine: Engine) -> None:
    clock = Clock()
    decider = Authorizer(sessionmaker(engine), clock=clock)
    ann = _ann(engine)
    assert not decider.ready(ann)
    assert decider.check(ann, "tables:Read", "table/sales/orders") is None
    why = decider.check(ann, "tables:Write", "table/sales/orders")
    assert why == "no statement allows tables:Write on table/sales/orders"
    assert decider.ready(ann)
    with Session(engine) as session:  # given developer directly, by another process
        session.execute(insert(Binding).values(subject_kind="user", subject_id=ann.user_id,
                                               role="developer", created_at=utcnow()))
        session.commit()
    assert decider.check(ann, "tables:Write", "table/sales/orders") is not None  # not yet
    authz.changed()  # ... or said here: read again at once
    assert decider.check(ann, "tables:Write", "table/sales/orders") is None


def test_a_busy_users_rights_are_read_ahead_of_time(engine: Engine) -> None:
    clock = Clock()
    decider = Authorizer(sessionmaker(engine), clock=clock)
    ann = _ann(engine)
    decider.check(ann, "tables:Read", "table/a/b")
    reads: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: reads.append(a[2]))
    clock.now += 0.4
    decider.check(ann, "tables:Read", "table/a/b")
    assert not reads  # young: from memory
    clock.now += 0.2  # past half the ttl: answered from memory, read again in the background
    assert decider.check(ann, "tables:Read", "table/a/b") is None
    deadline = time.monotonic() + 5
    while not reads and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reads
    assert decider.ready(ann)


def test_a_jobs_token_never_administers_and_the_audit_copy_is_append_only(
        engine: Engine) -> None:
    decider = Authorizer(sessionmaker(engine))
    with Session(engine) as session:
        admin = session.query(User).filter_by(name="admin").one()
    as_admin = Principal(admin.id, "admin", True, 0)
    as_job = Principal(admin.id, "admin", True, 0, via_job=True)
    assert decider.check(as_admin, "users:Manage", "user/ann") is None
    why = decider.check(as_job, "tokens:Manage", "token/x")
    assert why is not None and "a job's token cannot manage tokens" in why
    assert decider.check(as_job, "users:Manage", "user/ann") is not None
    assert decider.check(as_job, "tables:Write", "table/sales/orders") is None
    for action in ("tables:Write", "tables:Drop"):
        why = decider.check(as_admin, action, "table/audit/events")
        assert why is not None and "audit-append-only" in why
    assert decider.check(as_admin, "tables:Read", "table/audit/events") is None


def test_a_refusal_is_handed_to_the_audit_log_unless_quiet(engine: Engine) -> None:
    seen: list[tuple[str, str, str]] = []
    decider = Authorizer(sessionmaker(engine),
                         on_denied=lambda p, a, r, why: seen.append((p.user_name, a, r)))
    ann = _ann(engine)
    decider.check(ann, "users:Manage", "user/admin")
    decider.check(ann, "users:Manage", "user/admin", quiet=True)
    decider.check(ann, "tables:Read", "table/x/y")
    assert seen == [("ann", "users:Manage", "user/admin")]
