"""The audit log through a real server: the REST routes, the SDK and the CLI, the copy in the
lake read with SQL, and a tampered entry found by ``cumulo audit verify``.

Entries are written into the server's SQLite database from here, as a second control plane
would (the chain takes writers from other processes). The server records entries of its own
too, so each check looks only at this module's users."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from cumulo.access.audit import AuditLog
from cumulo.db import make_engine
from cumulo.errors import Invalid, NotFound
from tests.services import Cumulo

ANA, BO = "audit-ana", "audit-bo"


@pytest.fixture(scope="module")
def recorded(local_server: Cumulo) -> Iterator[Cumulo]:
    """Five of ANA's entries, then three denials of BO's."""
    engine = make_engine(f"sqlite:///{local_server.home / 'cumulo.db'}")
    log = AuditLog(sessionmaker(engine))
    for i, action in enumerate(("tables:Write", "tables:Drop", "files:Get", "tables:Read",
                                "jobs:Submit")):
        log.record(user=ANA, action=action, resource=f"audit-test/{i}", outcome="allowed",
                   source="10.0.0.7", request_id=f"req-{i}", details={"i": i})
    for i in range(3):
        log.record(user=BO, action="tables:Drop", resource=f"audit-test/bo/{i}",
                   outcome="denied", source="10.0.0.8", details={"why": "no statement allows"})
    engine.dispose()
    yield local_server


def _seqs(page: dict[str, Any]) -> list[int]:
    return [e["seq"] for e in page["events"]]


def test_entries_are_listed_newest_first_in_pages(recorded: Cumulo) -> None:
    client = recorded.client()
    first = client.audit.list(user=ANA, limit=2)
    assert [e["action"] for e in first["events"]] == ["jobs:Submit", "tables:Read"]
    event = first["events"][0]
    assert (event["user"], event["resource"], event["outcome"], event["source"],
            event["request_id"], event["details"]) == (
        ANA, "audit-test/4", "allowed", "10.0.0.7", "req-4", {"i": 4})
    assert len(event["hash"]) == 64 and len(event["prev_hash"]) == 64
    second = client.audit.list(user=ANA, limit=2, before=first["next"])
    third = client.audit.list(user=ANA, limit=2, before=second["next"])
    seqs = _seqs(first) + _seqs(second) + _seqs(third)
    assert len(seqs) == 5 and seqs == sorted(seqs, reverse=True)
    assert third["next"] is None

    assert [e["action"] for e in client.audit.list(user=ANA, action="tables:*")["events"]] == [
        "tables:Read", "tables:Drop", "tables:Write"]
    assert len(client.audit.list(user=BO, outcome="denied")["events"]) == 3
    assert client.audit.list(user=BO, outcome="allowed")["events"] == []
    assert len(client.audit.list(user=ANA, since="1h")["events"]) == 5
    assert client.audit.list(user=ANA, until="1h")["events"] == []


def test_times_and_limits_are_checked(recorded: Cumulo) -> None:
    client = recorded.client()
    # relative times are read by the server too, for callers other than the SDK
    page = client.transport.json("GET", "/api/v1/audit/events",
                                 params={"user": BO, "since": "7d"})
    assert len(page["events"]) == 3
    with pytest.raises(Invalid, match="since 'soon' is not a time"):
        client.transport.json("GET", "/api/v1/audit/events", params={"since": "soon"})
    with pytest.raises(Invalid, match="since 'soon' is not a time"):
        client.audit.list(since="soon")
    with pytest.raises(Invalid):
        client.audit.list(limit=0)
    with pytest.raises(Invalid):
        client.audit.list(outcome="maybe")


def test_the_cli_lists_entries(recorded: Cumulo) -> None:
    out = recorded.cli("audit", "ls", "--user", ANA, "--json")
    assert out.returncode == 0, out.stderr
    page = json.loads(out.stdout)
    assert len(page["events"]) == 5 and page["next"] is None

    out = recorded.cli("audit", "ls", "--user", BO, "--outcome", "denied", "--limit", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("denied") == 2 and "audit-test/bo/2" in out.stdout
    assert "more: add --before" in out.stderr

    out = recorded.cli("audit", "ls", "--since", "yesterday-ish")
    assert out.returncode == 1 and "is not a time" in out.stderr


def test_the_log_is_copied_to_the_lake_for_sql(recorded: Cumulo) -> None:
    client = recorded.client()
    query = "select count(*) as n from audit.events where resource like 'audit-test/%'"
    deadline = time.monotonic() + 60
    while True:
        try:
            if client.sql(query).page == [{"n": 8}]:
                break
        except NotFound:  # audit.events is made by the first copy
            pass
        assert time.monotonic() < deadline, "the entries did not reach audit.events"
        time.sleep(0.5)
    out = recorded.cli("sql", "select action, outcome from audit.events "
                       "where resource = 'audit-test/bo/1'")
    assert out.returncode == 0, out.stderr
    assert "tables:Drop" in out.stdout and "denied" in out.stdout


def test_verify_passes_then_finds_an_edited_entry(recorded: Cumulo) -> None:
    """Last in the module: it breaks the server's chain for good."""
    client = recorded.client()
    report = client.audit.verify()
    assert report["ok"] is True and report["first_bad"] is None and report["entries"] >= 8
    out = recorded.cli("audit", "verify")
    assert out.returncode == 0, out.stderr
    assert "the audit log is intact" in out.stdout

    bo = client.audit.list(user=BO, limit=1)["events"][0]
    engine = make_engine(f"sqlite:///{recorded.home / 'cumulo.db'}")
    with engine.begin() as conn:  # someone with the database's file hides a denial
        conn.execute(text("UPDATE audit_events SET outcome = 'allowed' WHERE seq = :seq"),
                     {"seq": bo["seq"]})
    engine.dispose()

    report = client.audit.verify()
    assert (report["ok"], report["first_bad"], report["where"]) == (False, bo["seq"], "database")
    assert f"seq {bo['seq']} was changed" in report["problem"]
    out = recorded.cli("audit", "verify")
    assert out.returncode == 1
    assert "the audit log is broken" in out.stderr and f"seq {bo['seq']}" in out.stderr
    out = recorded.cli("audit", "verify", "--json")
    assert out.returncode == 1 and json.loads(out.stdout)["first_bad"] == bo["seq"]
