"""Consumer groups: the lease decisions as pure functions with a clock the test sets, then
members of a group against a real server, in threads and in a subprocess killed mid-batch:
one member a shard, fair shares when one joins, takeover when one dies, resume from the
checkpoint after a restart, records read and not checkpointed come again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cumulo.errors import Invalid, NotFound
from cumulo.streams.groups import LeaseView, Take, fair_share, plan, ready
from tests.services import Cumulo, start_cumulo

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=10)


def _lease(shard: str, owner: str | None = None, *, until: datetime | None = LATER,
           counter: int = 1, done: bool = False, parents: tuple[str, ...] = ()) -> LeaseView:
    return LeaseView(shard, owner, until if owner else None, counter, done, parents)


def _shards(n: int, owner: str | None = None) -> list[LeaseView]:
    return [_lease(f"s{i}", owner) for i in range(n)]


# --- decisions -----------------------------------------------------------------------------------


def test_a_lone_member_takes_every_free_lease() -> None:
    takes = plan(_shards(4), ["a"], "a", NOW)
    assert sorted(t.shard for t in takes) == ["s0", "s1", "s2", "s3"]
    assert all(t.stolen_from is None and t.counter == 1 for t in takes)


def test_members_joining_at_once_take_their_share_of_free_leases() -> None:
    leases = _shards(4)
    takes = plan(leases, ["a", "b"], "a", NOW)
    assert len(takes) == 2 == fair_share(4, 2)
    # The other takes its two in its own order (often others): two claims never both win.
    assert len(plan(leases, ["a", "b"], "b", NOW)) == 2


def test_a_joining_member_steals_one_lease_a_call_from_the_busiest() -> None:
    leases = _shards(4, "a")
    first = plan(leases, ["a", "b"], "b", NOW)
    assert len(first) == 1 and first[0].stolen_from == "a"
    # a still holds 3, over its share of 2: b steals once more...
    leases = [_lease(s.shard, "b" if s.shard == first[0].shard else "a", counter=2
                     if s.shard == first[0].shard else 1) for s in leases]
    second = plan(leases, ["a", "b"], "b", NOW)
    assert len(second) == 1 and second[0].stolen_from == "a"
    assert second[0].shard != first[0].shard
    # ... and then they are even: no one takes anything.
    even = [_lease(s.shard, "b" if s.shard in (first[0].shard, second[0].shard) else "a")
            for s in leases]
    assert plan(even, ["a", "b"], "b", NOW) == [] and plan(even, ["a", "b"], "a", NOW) == []


def test_no_stealing_back_and_forth_at_an_odd_count() -> None:
    # 3 shards, 2 members: a holds 2 (its share), b holds 1. b needs one more to reach the
    # share, but a is at the share and b needs only one: nothing moves.
    leases = [_lease("s0", "a"), _lease("s1", "a"), _lease("s2", "b")]
    assert plan(leases, ["a", "b"], "b", NOW) == []
    # 4 shards, 3 members: c holds none; a and b hold 2 each (the share): c needs 2, so it
    # steals one; then needing 1 from members at the share, it waits.
    leases = [_lease("s0", "a"), _lease("s1", "a"), _lease("s2", "b"), _lease("s3", "b")]
    takes = plan(leases, ["a", "b", "c"], "c", NOW)
    assert len(takes) == 1 and takes[0].stolen_from in ("a", "b")


def test_a_dead_members_leases_are_free_once_they_run_out() -> None:
    leases = [_lease("s0", "a", until=NOW + timedelta(seconds=1)),
              _lease("s1", "b", until=NOW + timedelta(seconds=20))]
    # a stopped renewing: before its lease runs out, b holds its share and takes nothing.
    assert plan(leases, ["b"], "b", NOW) == []
    later = NOW + timedelta(seconds=2)
    assert plan(leases, ["b"], "b", later) == [Take("s0", 1)]


def test_children_wait_for_their_parents_to_be_done() -> None:
    parent = _lease("s0")
    children = [_lease("s1", parents=("s0",)), _lease("s2", parents=("s0",))]
    assert [v.shard for v in ready([parent, *children])] == ["s0"]
    assert [t.shard for t in plan([parent, *children], ["a"], "a", NOW)] == ["s0"]
    done = _lease("s0", done=True)
    assert [v.shard for v in ready([done, *children])] == ["s1", "s2"]
    # A merge's child waits for both parents.
    merged = _lease("s3", parents=("s1", "s2"))
    assert [v.shard for v in ready([done, _lease("s1", done=True), _lease("s2"), merged])] == [
        "s2"]
    assert [v.shard for v in ready([done, _lease("s1", done=True), _lease("s2", done=True),
                                    merged])] == ["s3"]


def test_a_member_at_its_share_takes_nothing() -> None:
    leases = [_lease("s0", "a"), _lease("s1", "b"), _lease("s2")]
    assert plan(leases, ["a", "b"], "a", NOW) == [Take("s2", 1)]  # share 2: a takes s2
    leases = [_lease("s0", "a"), _lease("s1", "a"), _lease("s2")]
    assert plan(leases, ["a", "b"], "a", NOW) == []  # a at its share: s2 is b's to take


# --- against a real server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    cumulo = start_cumulo(tmp_path_factory.mktemp("groups") / ".cumulo")
    yield cumulo
    cumulo.stop()


def _name() -> str:
    return "g" + uuid.uuid4().hex[:10]


def _fill(server: Cumulo, name: str, shards: int, count: int) -> list[str]:
    c = server.client()
    c.streams.create(name, shards=shards)
    sent = [f"r{i}" for i in range(count)]
    for start in range(0, count, 500):
        c.streams.put_records(name, [{"partition_key": f"k{i}", "data": sent[i]}
                                     for i in range(start, min(count, start + 500))])
    return sent


def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.1)


class Member:
    """A consumer in a thread: records what it reads, checkpoints each batch."""

    def __init__(self, server: Cumulo, name: str, group: str, **options: Any) -> None:
        self.consumer = server.client().streams.consume(name, group=group, wait=0.5,
                                                        **options)
        self.seen: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for batch in self.consumer:
            self.seen += [r["data"].decode() for r in batch]
            batch.checkpoint()
            if self.stop.is_set():
                return

    def close(self) -> None:
        self.stop.set()
        self.consumer.close()
        self.thread.join(10)


_MEMBER = """
import json, sys
from cumulo import Client
client = Client(sys.argv[1], token=sys.argv[2])
consumer = client.streams.consume(sys.argv[3], group=sys.argv[4], lease=2.0, renew=0.3,
                                  wait=0.5)
for batch in consumer:
    batch.checkpoint()
    print(json.dumps([r["data"].decode() for r in batch]), flush=True)
"""


def _member_process(server: Cumulo, name: str, group: str) -> tuple[
        subprocess.Popen[str], list[str], threading.Thread]:
    """A member in a process of its own (killed with SIGKILL: it dies without letting go),
    and the records it has checkpointed so far."""
    proc = subprocess.Popen([sys.executable, "-c", _MEMBER, server.url, server.token, name,
                             group], stdout=subprocess.PIPE, text=True)
    seen: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.extend(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return proc, seen, reader


def _holders(server: Cumulo, name: str, group: str) -> dict[str, str | None]:
    shown = next(g for g in server.client().streams.groups(name) if g["group"] == group)
    return {s["shard_id"]: s["owner"] for s in shown["shards"]}


def test_members_share_the_shards_and_take_over(server: Cumulo) -> None:
    name, group = _name(), "sessionizer"
    sent = _fill(server, name, 4, 200)
    lease = {"lease": 2.0, "renew": 0.3}
    a, a_seen, reader = _member_process(server, name, group)
    try:
        _until(lambda: len(a_seen) == 200)
        assert sorted(a_seen) == sorted(sent)
        (a_member,) = set(_holders(server, name, group).values())
        # b joins: it steals until each holds two; a shard is held by one member at a time.
        b = Member(server, name, group, **lease)
        _until(lambda: len(b.consumer.shards) == 2
               and list(_holders(server, name, group).values()).count(a_member) == 2)
        held = _holders(server, name, group)
        assert sorted(held) == sorted(b.consumer.shards + [s for s, m in held.items()
                                                           if m == a_member])
        shown = server.client().streams.groups(name)[0]
        assert len(shown["members"]) == 2 and shown["behind"] == 0
        # New records go to whichever member holds their shard, each to one.
        more = [f"m{i}" for i in range(100)]
        server.client().streams.put_records(name, [{"partition_key": f"k{i}", "data": d}
                                                   for i, d in enumerate(more)])
        _until(lambda: len([d for d in a_seen + b.seen if d.startswith("m")]) >= 100)
        assert sorted(d for d in a_seen + b.seen if d.startswith("m")) == sorted(more)
        # a dies without letting go: once its leases run out, b holds all four.
        a.send_signal(signal.SIGKILL)
        _until(lambda: len(b.consumer.shards) == 4, timeout=20)
        assert set(_holders(server, name, group).values()) == {b.consumer.member}
        b.close()
        assert set(_holders(server, name, group).values()) == {None}  # let go at once
        # The group's checkpoints stay: a member started again reads nothing old again.
        c = Member(server, name, group, **lease)
        _until(lambda: len(c.consumer.shards) == 4)
        server.client().streams.put(name, "after-restart", partition_key="z")
        _until(lambda: c.seen == ["after-restart"])
        c.close()
        listed = server.cli("streams", "groups", name)
        assert listed.returncode == 0 and group in listed.stdout, listed.stderr
        assert group in server.cli("streams", "show", name).stdout
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        reader.join(10)
        assert a.stdout is not None
        a.stdout.close()


_CRASHING = """
import json, sys
from cumulo import Client
client = Client(sys.argv[1], token=sys.argv[2])
consumer = client.streams.consume(sys.argv[3], group="crashy", lease=2.0, renew=0.3,
                                  limit=10, wait=0.5)
done = 0
for batch in consumer:
    records = [r["data"].decode() for r in batch]
    if done >= 3:  # the fourth batch: read, and the process dies before its checkpoint
        print(json.dumps({"unfinished": records}), flush=True)
        sys.stdin.readline()
    batch.checkpoint()
    done += 1
    print(json.dumps({"checkpointed": records}), flush=True)
"""


def test_a_member_that_crashes_mid_batch_has_it_read_again(server: Cumulo) -> None:
    """Records read and not checkpointed come again to the next holder; none is skipped."""
    name = _name()
    sent = _fill(server, name, 1, 100)
    proc = subprocess.Popen([sys.executable, "-c", _CRASHING, server.url, server.token, name],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    checkpointed: list[str] = []
    unfinished: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            doc = json.loads(line)
            checkpointed += doc.get("checkpointed", [])
            if "unfinished" in doc:
                unfinished = doc["unfinished"]
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for pipe in (proc.stdin, proc.stdout):
            assert pipe is not None
            pipe.close()
    assert checkpointed == sent[:30] and unfinished == sent[30:40]
    rest: list[str] = []
    with server.client().streams.consume(name, group="crashy", lease=2.0, renew=0.3,
                                         wait=0.5) as again:
        for batch in again:  # after the dead member's lease runs out
            rest += [r["data"].decode() for r in batch]
            batch.checkpoint()
            if len(rest) >= 70:
                break
    assert rest == sent[30:]  # the unfinished batch again, then the rest: none skipped
    shown = server.client().streams.groups(name)[0]
    assert shown["behind"] == 0 and shown["shards"][0]["checkpoint"]


def test_a_group_finishes_parents_before_children(server: Cumulo) -> None:
    name = _name()
    c = server.client()
    c.streams.create(name, shards=1)
    c.streams.put_records(name, [{"partition_key": f"k{i}", "data": f"p{i}"} for i in range(5)])
    c.streams.split(name, "shardId-000000000000")
    c.streams.put_records(name, [{"partition_key": f"k{i}", "data": f"c{i}"} for i in range(5)])
    seen: list[str] = []
    with c.streams.consume(name, group="lineage", lease=2.0, renew=0.3, wait=0.3) as member:
        for batch in member:
            seen += [r["data"].decode() for r in batch]
            batch.checkpoint()
            if len(seen) >= 10:
                break
    assert seen[:5] == [f"p{i}" for i in range(5)]
    assert sorted(seen[5:]) == sorted(f"c{i}" for i in range(5))
    parent = next(s for s in c.streams.groups(name)[0]["shards"]
                  if s["shard_id"] == "shardId-000000000000")
    assert parent["checkpoint"] == "SHARD_END"


def test_a_new_group_at_latest_and_bad_input(server: Cumulo) -> None:
    name = _name()
    _fill(server, name, 2, 10)
    c = server.client()
    with c.streams.consume(name, group="late", start="LATEST", lease=2.0, renew=0.3,
                           wait=0.3) as member:
        c.streams.put(name, "fresh", partition_key="x")
        batch = next(iter(member))
        assert [r["data"] for r in batch] == [b"fresh"]
        assert batch.checkpoint()
    with pytest.raises(NotFound, match="stream 'no-such' does not exist"):
        c.streams.consume("no-such", group="g")
    with pytest.raises(Invalid, match="group name"):
        c.streams.consume(name, group="bad group!")
    with pytest.raises(Invalid, match="TRIM_HORIZON or LATEST"):
        c.streams.consume(name, group="g", start="NOW")
    with pytest.raises(Invalid, match="a lease lasts 1 to 300 seconds"):
        c.streams.consume(name, group="g", lease=0.1)
    with pytest.raises(NotFound, match="no consumer group 'never'"):
        c.streams.delete_group(name, "never")
    c.streams.delete_group(name, "late")
    assert "late" not in [g["group"] for g in c.streams.groups(name)]
