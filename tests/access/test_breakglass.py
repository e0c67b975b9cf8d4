"""``cumulo break-glass``: the platform's only admin disabled, locked out, stripped of the admin
role and denied everything through a group's policy (what the server itself refuses to let
happen, so done here straight in the database, as a bad hand-made change or a restore would)
gets back an admin with a new token, and the audit log says what was done."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import httpx
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cumulo.access.models import Binding, Group, GroupMember, Policy, User
from cumulo.db import make_engine, utcnow
from tests.services import Cumulo


def _lock_admin_out(server: Cumulo) -> None:
    engine = make_engine(f"sqlite:///{server.home / 'cumulo.db'}")
    with Session(engine) as session:
        admin = session.scalar(select(User).where(User.name == "admin"))
        assert admin is not None
        now = utcnow()
        admin.disabled_at = now
        admin.failed_logins, admin.locked_until = 9, now + timedelta(hours=1)
        session.execute(delete(Binding).where(Binding.subject_kind == "user",
                                              Binding.subject_id == admin.id))
        group = Group(name="everyone-denied", description="", created_at=now)
        policy = Policy(name="deny-everything", description="", updated_at=now, created_at=now,
                        document={"statements": [{"effect": "deny", "actions": ["*"],
                                                  "resources": ["*"]}]})
        session.add_all([group, policy])
        session.flush()
        session.add(GroupMember(group_id=group.id, user_id=admin.id))
        session.add(Binding(subject_kind="group", subject_id=group.id, policy_id=policy.id,
                            created_at=now))
        session.commit()
    engine.dispose()


def _status(server: Cumulo, token: str, path: str) -> int:
    return httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {token}"},
                     timeout=30).status_code


def _eventually(server: Cumulo, token: str, path: str, status: int) -> None:
    deadline = time.monotonic() + 10
    while (got := _status(server, token, path)) != status:
        assert time.monotonic() < deadline, f"{path} still answers {got}, not {status}"
        time.sleep(0.2)


def test_break_glass_gives_a_locked_out_platform_its_admin_back(local_server: Cumulo) -> None:
    _lock_admin_out(local_server)
    _eventually(local_server, local_server.token, "/api/v1/users", 401)

    done = local_server.cli("break-glass", "--home", str(local_server.home), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["user"] == "admin" and out["token_name"].startswith("break-glass-")
    assert out["changes"] == ["enabled admin", "cleared admin's sign-in lockout",
                              "bound role admin to admin everywhere",
                              "took admin out of group everyone-denied"]
    token = out["token"]
    _eventually(local_server, token, "/api/v1/policies", 200)
    assert _status(local_server, token, "/api/v1/users") == 200
    # enabled again (the server's cached refusal lasts a second)
    _eventually(local_server, local_server.token, "/api/v1/users", 200)

    admin = local_server.client(token)
    entries = admin.audit.list(action="access:BreakGlass")["events"]
    assert len(entries) == 1 and entries[0]["user"] == "admin"
    assert "took admin out of group everyone-denied" in entries[0]["details"]["changes"]

    # Again, with nothing to repair: a new token all the same, and the table form says so.
    again = local_server.cli("break-glass", "--home", str(local_server.home))
    assert again.returncode == 0, again.stderr
    assert "nothing to repair" in again.stderr
    _eventually(local_server, again.stdout.strip(), "/api/v1/users", 200)


def test_break_glass_makes_a_named_admin_who_did_not_exist(local_server: Cumulo) -> None:
    done = local_server.cli("break-glass", "--home", str(local_server.home), "--user",
                            "ops-rescue", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["changes"][:2] == ["created user ops-rescue",
                                  "bound role admin to ops-rescue everywhere"]
    _eventually(local_server, out["token"], "/api/v1/policies", 200)
