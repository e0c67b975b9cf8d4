"""Triggers on a stream's volume: a pipeline run once a stream has received N records (or B
bytes) since the last run, and not before; the run told what it covers; counted once across
control planes; and each bad input refused. First on a scratch database with a real stream
engine and a controlled ``fire``, then through a real server and its CLI."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from cumulo.errors import Invalid, NotFound
from cumulo.pipelines import schedules
from cumulo.pipelines.models import PipelineRun, PipelineSchedule
from cumulo.principal import Principal
from cumulo.storage.backends.local import LocalBackend
from cumulo.streams import service
from cumulo.streams.service import StreamEngine
from tests.services import Cumulo

ADMIN = Principal(1, "admin", True, 1)

# One step that reports the records its run covers.
PIPELINE = {
    "name": "on-clicks",
    "parameters": {"stream": {"type": "string", "default": ""},
                   "stream_range": {"type": "string", "default": "{}"},
                   "stream_records": {"type": "integer", "default": 0}},
    "nodes": [{"id": "count", "component": "python_script", "params": {
        "code": "def f(n=0, name=''):\n    return {'n': n}\n", "function": "f",
        "outputs": {"metrics": "metrics"},
        "args": {"n": {"$param": "stream_records"}, "name": {"$param": "stream"}}}}],
    "edges": [],
}


@dataclass
class Scratch:
    sessions: sessionmaker[Session]
    storage: LocalBackend
    streams: StreamEngine

    def put(self, stream: str, sizes: list[int]) -> None:
        """Records of these many bytes each, with keys spread over the shards."""
        keys = [f"k{i}-{time.monotonic_ns()}" for i in range(len(sizes))]
        with self.sessions() as session:
            row = service.get_stream(session, stream)
            self.streams.put(session, row, [
                (key, b"x" * size, service.hash_key_of(key)) for key, size in zip(
                    keys, sizes, strict=True)])

    def fire(self, session: Session | None = None) -> list[str]:
        if session is not None:
            return schedules.fire(session, self.storage, owner="a", streams=self.streams)
        with self.sessions() as fresh:
            return schedules.fire(fresh, self.storage, owner="a", streams=self.streams)

    def schedule(self) -> PipelineSchedule:
        with self.sessions() as session:
            found = session.query(PipelineSchedule).one()
            return found

    def run(self, run_id: str) -> PipelineRun:
        with self.sessions() as session:
            found = session.get(PipelineRun, run_id)
            assert found is not None
            return found

    def finish(self, run_id: str) -> None:
        with self.sessions() as session:
            session.get(PipelineRun, run_id).state = "succeeded"  # type: ignore[union-attr]
            session.commit()


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Scratch]:
    """A scratch database with its admin, the local cluster, the pipeline and a stream of two
    shards; no orchestrator runs: ``fire`` is called by the test."""
    from cumulo.access.models import User
    from cumulo.compute.clusters import ensure_local_cluster
    from cumulo.db import make_engine, upgrade
    from cumulo.pipelines.service import create_pipeline

    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    upgrade(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    streams = StreamEngine(tmp_path / "home")
    with sessions() as session:
        session.add(User(id=1, name="admin", is_admin=True))
        session.commit()
        ensure_local_cluster(session)
        create_pipeline(session, ADMIN, PIPELINE)
        service.create_stream(session, ADMIN, "clicks", shards=2)
    yield Scratch(sessions, LocalBackend(tmp_path / "storage"), streams)
    streams.close()
    engine.dispose()


def _covered(ranges: dict[str, list[str]]) -> int:
    """Records in a run's stream_range: per shard, first to last sequence, included."""
    low = (1 << 64) - 1
    return sum((int(last) & low) - (int(first) & low) + 1 for first, last in ranges.values())


def test_a_run_starts_once_the_count_is_reached_and_not_before(scratch: Scratch) -> None:
    scratch.put("clicks", [10] * 3)  # before the trigger: not counted
    with scratch.sessions() as session:
        made = schedules.create_schedule(session, scratch.storage, ADMIN, "on-clicks",
                                         stream="clicks", every=5, streams=scratch.streams)
        assert made.name == "on-clicks-stream"
        doc = schedules.schedule_doc(made)
    assert (doc["stream"], doc["every_records"], doc["pending_records"]) == ("clicks", 5, 0)
    scratch.put("clicks", [10] * 4)
    assert scratch.fire() == []
    assert scratch.schedule().stream_state["records"] == 4  # type: ignore[index]
    assert scratch.fire() == []  # nothing new: nothing written either
    scratch.put("clicks", [10])
    fired = scratch.fire()
    assert len(fired) == 1
    run = scratch.run(fired[0])
    assert run.trigger == "stream clicks: 5 new records"
    assert run.parameters["stream"] == "clicks" and run.parameters["stream_records"] == 5
    ranges = json.loads(run.parameters["stream_range"])
    assert set(ranges) <= {"shardId-000000000000", "shardId-000000000001"}
    assert _covered(ranges) == 5
    assert scratch.schedule().stream_state["records"] == 0  # type: ignore[index]
    # One run at a time: what comes meanwhile waits for it, and then starts one run.
    scratch.put("clicks", [10] * 7)
    assert scratch.fire() == []
    scratch.finish(fired[0])
    again = scratch.fire()
    assert len(again) == 1
    run = scratch.run(again[0])
    assert run.parameters["stream_records"] == 7
    assert _covered(json.loads(run.parameters["stream_range"])) == 7
    # The ranges follow on: the second run's first record is after the first run's last.
    assert scratch.fire() == []


def test_a_trigger_on_bytes(scratch: Scratch) -> None:
    with scratch.sessions() as session:
        schedules.create_schedule(session, scratch.storage, ADMIN, "on-clicks",
                                  stream="clicks", every="1KB", streams=scratch.streams,
                                  name="by-size")
    scratch.put("clicks", [300] * 3)
    assert scratch.fire() == []
    assert scratch.schedule().stream_state["bytes"] == 900  # type: ignore[index]
    scratch.put("clicks", [200])
    fired = scratch.fire()
    assert len(fired) == 1
    assert scratch.run(fired[0]).trigger == "stream clicks: 4 new records, 1100 bytes"


def test_two_control_planes_count_what_came_once(scratch: Scratch) -> None:
    with scratch.sessions() as session:
        schedules.create_schedule(session, scratch.storage, ADMIN, "on-clicks",
                                  stream="clicks", every=5, streams=scratch.streams)
    one, two = scratch.sessions(), scratch.sessions()
    seen_by_two = schedules.list_schedules(two)  # read before one counts: held here
    scratch.put("clicks", [10] * 4)
    assert scratch.fire(one) == []
    assert scratch.fire(two) == []  # its count of the same 4 is refused: one counted them
    assert scratch.schedule().stream_state["records"] == 4  # type: ignore[index]
    assert seen_by_two  # (kept until here)
    scratch.put("clicks", [10])
    fired = scratch.fire()
    assert len(fired) == 1 and scratch.run(fired[0]).parameters["stream_records"] == 5
    one.close()
    two.close()


def test_bad_stream_triggers_are_refused(scratch: Scratch) -> None:
    def make(**options: Any) -> None:
        with scratch.sessions() as session:
            schedules.create_schedule(session, scratch.storage, ADMIN, "on-clicks",
                                      streams=scratch.streams, **options)

    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"stream": "nope", "every": 10}, NotFound, "stream 'nope' does not exist"),
        ({"stream": "clicks", "every": 0}, Invalid, "--every 0: a trigger waits for 1 to "
                                                    "1,000,000,000,000,000 records"),
        ({"stream": "clicks", "every": "-3"}, Invalid, "--every '-3': a trigger waits"),
        ({"stream": "clicks", "every": 10**20}, Invalid, "a trigger waits for 1 to"),
        ({"stream": "clicks", "every": "lots"}, Invalid, "--every 'lots' is not a size"),
        ({"stream": "clicks", "every": "0KB"}, Invalid, "--every '0KB' must be more than zero"),
        ({"stream": "clicks"}, Invalid, "--on-stream needs --every: a number of records (1000) "
                                        "or a size (5MB)"),
        ({"cron": "0 * * * *", "every": 10}, Invalid, "--every counts a stream's records: "
                                                      "give it with --on-stream"),
        ({"cron": "0 * * * *", "stream": "clicks", "every": 10}, Invalid,
         "either --cron or --on-table or --on-stream"),
    ]
    for options, error, match in cases:
        with pytest.raises(error, match=re.escape(match)):
            make(**options)
    with scratch.sessions() as session:
        assert schedules.list_schedules(session) == []


def test_a_stream_trigger_through_the_server(local_server: Cumulo) -> None:
    c = local_server.client()
    c.pipelines.create(PIPELINE)
    c.streams.create("visits", shards=2)
    out = local_server.cli("pipelines", "schedule", "on-clicks", "--on-stream", "visits",
                           "--every", "5", "--name", "on-visits")
    assert out.returncode == 0, out.stderr
    assert "each 5 records that come to stream visits" in out.stdout
    c.streams.put_records("visits", [{"partition_key": f"u{i}", "data": "{}"}
                                     for i in range(4)])
    time.sleep(3)  # the orchestrator looks every second
    assert c.pipelines.runs(pipeline="on-clicks") == []
    listed = local_server.cli("pipelines", "schedules", "ls")
    assert "stream visits every 5 records (4 records so far)" in listed.stdout, listed.stdout
    c.streams.put("visits", "{}", partition_key="u9")
    deadline = time.monotonic() + 30
    while not (runs := c.pipelines.runs(pipeline="on-clicks")):
        assert time.monotonic() < deadline, "no run"
        time.sleep(0.3)
    assert [r["trigger"] for r in runs] == ["stream visits: 5 new records"]
    finished = c.pipelines.wait(runs[0]["id"], 300)
    assert finished["state"] == "succeeded", finished
    assert finished["parameters"]["stream_records"] == 5
    # Bad input, through the API and the CLI: the error says what to give.
    with pytest.raises(NotFound, match="stream 'gone' does not exist"):
        c.pipelines.schedule("on-clicks", stream="gone", every=5)
    bad = local_server.cli("pipelines", "schedule", "on-clicks", "--on-stream", "visits",
                           "--every", "0")
    assert bad.returncode != 0 and "--every '0': a trigger waits for 1 to" in bad.stderr, \
        bad.stderr
    c.pipelines.unschedule("on-visits")
