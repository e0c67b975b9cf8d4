"""Several control planes on one database: a schedule's firing is claimed once (a controlled
clock, two control planes' ``fire`` on one scratch database); each run is moved on by its
owner only, and a run whose owner's lease ran out is taken over by exactly one other; a control
plane whose lease is not renewed acts on no run. Then, on PostgreSQL + S3, a pipeline started
through a control plane that is SIGKILLed mid-run finishes through the other."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from cumulo.leases import Membership
from cumulo.pipelines import schedules
from cumulo.pipelines.models import PipelineRun, PipelineSchedule, StepRun
from cumulo.pipelines.runs import Orchestrator, claim_run, start_run
from cumulo.principal import Principal
from cumulo.storage.backends.local import LocalBackend
from tests.conftest import two_control_planes
from tests.services import Cumulo

ADMIN = Principal(1, "admin", True, 1)

# Two steps, the second fed by the first: one tick of its owner submits the first step's job.
PIPELINE = {
    "name": "pair",
    "nodes": [
        {"id": "first", "component": "python_script", "params": {
            "code": "import time\n\ndef f(wait=0):\n    time.sleep(wait)\n    return {'n': 1}\n",
            "function": "f", "outputs": {"metrics": "metrics"}, "args": {"wait": 6}}},
        {"id": "second", "component": "python_script", "params": {
            "code": "def g(m):\n    return {'n': m['n'] + 1}\n",
            "function": "g", "inputs": {"m": "metrics"}, "outputs": {"metrics": "metrics"}}},
    ],
    "edges": [{"from": "first.metrics", "to": "second.m"}],
}


@dataclass
class Scratch:
    engine: Engine
    storage: LocalBackend
    sessions: sessionmaker[Session]
    home: Path

    def plane(self, name: str) -> Membership:
        """A control plane registered on this database (its lease renewed while it lives)."""
        plane = Membership(self.engine, home=str(self.home / name), url=f"http://{name}",
                           version="test")
        plane.start()
        return plane

    def orchestrator(self, plane: Membership) -> Orchestrator:
        return Orchestrator(self.engine, self.storage, fire_schedules=schedules.fire,
                            plane=plane)

    def tick(self, orchestrator: Orchestrator) -> bool:
        with self.sessions() as session:  # a session per step, as the orchestrator's thread
            return orchestrator.tick(session)

    def run(self, run_id: str) -> PipelineRun:
        with self.sessions() as session:
            found = session.get(PipelineRun, run_id)
            assert found is not None
            return found

    def jobs(self, run_id: str) -> list[str]:
        """The jobs submitted for the run's steps (a step submitted twice shows twice)."""
        from cumulo.compute.models import Job

        with self.sessions() as session:
            return [j.id for j in session.scalars(select(Job)) if f"pipeline-run:{run_id}"
                    in j.tags]


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Scratch]:
    """A scratch database with its admin, the local cluster and the pipeline; a storage
    folder. No job supervisor runs: a step's job stays queued."""
    from cumulo.access.models import User
    from cumulo.compute.clusters import ensure_local_cluster
    from cumulo.db import make_engine, upgrade
    from cumulo.pipelines.service import create_pipeline

    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    upgrade(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    with sessions() as session:
        session.add(User(id=1, name="admin", is_admin=True))
        session.commit()
        ensure_local_cluster(session)
        create_pipeline(session, ADMIN, PIPELINE)
    yield Scratch(engine, LocalBackend(tmp_path / "storage"), sessions, tmp_path)
    engine.dispose()


def test_a_cron_time_fires_once_across_control_planes(scratch: Scratch) -> None:
    a, b = scratch.plane("a"), scratch.plane("b")
    t = datetime(2026, 12, 4, 1, 30, tzinfo=UTC)
    with scratch.sessions() as session:
        made = schedules.create_schedule(session, scratch.storage, ADMIN, "pair",
                                         cron="0 2 * * *")
        made.last_at = t
        session.commit()
    one, two = scratch.sessions(), scratch.sessions()
    assert schedules.fire(one, scratch.storage, t + timedelta(minutes=29), owner=a.id) == []
    # b reads the schedule before a fires it, as a control plane looking at the same moment
    # (its session keeps what it read: the rows are held here).
    seen_by_b = schedules.list_schedules(two)
    assert [s.last_at for s in seen_by_b] == [t]
    at_two = t + timedelta(minutes=30, seconds=5)
    fired = schedules.fire(one, scratch.storage, at_two, owner=a.id)
    assert len(fired) == 1
    assert schedules.fire(two, scratch.storage, at_two, owner=b.id) == []  # its claim fails
    with scratch.sessions() as fresh:
        assert schedules.fire(fresh, scratch.storage, at_two, owner=b.id) == []  # nothing due
    run = scratch.run(fired[0])
    assert run.owner == a.id and run.trigger == "schedule pair-cron at 2026-12-04T02:00:00+00:00"
    # One run of a schedule at a time: the next day's time waits while it is going.
    with scratch.sessions() as fresh:
        assert schedules.fire(fresh, scratch.storage, at_two + timedelta(days=1),
                              owner=b.id) == []
        assert fresh.scalar(select(PipelineSchedule.last_run)) == fired[0]
        fresh.get(PipelineRun, fired[0]).state = "succeeded"  # type: ignore[union-attr]
        fresh.commit()
    # It ended; down for three days: missed=latest starts one run, owned by who fired it.
    with scratch.sessions() as fresh:
        later = schedules.fire(fresh, scratch.storage, at_two + timedelta(days=3), owner=b.id)
    assert len(later) == 1
    run = scratch.run(later[0])
    assert run.owner == b.id and run.trigger.endswith("2026-12-07T02:00:00+00:00")
    with scratch.sessions() as session:
        assert session.scalar(select(PipelineSchedule.last_at)) == datetime(2026, 12, 7, 2,
                                                                            tzinfo=UTC)
        assert len(session.scalars(select(PipelineRun)).all()) == 2
    one.close()
    two.close()
    a.stop()
    b.stop()


def test_a_run_is_moved_on_by_its_owner_only(scratch: Scratch) -> None:
    a, b = scratch.plane("a"), scratch.plane("b")
    on_a, on_b = scratch.orchestrator(a), scratch.orchestrator(b)
    with scratch.sessions() as session:
        run = start_run(session, ADMIN, "pair", owner=a.id)
    assert scratch.tick(on_b) is False  # a's, and a is live: b leaves it be
    assert scratch.run(run.id).state == "queued" and scratch.jobs(run.id) == []
    assert scratch.tick(on_a) is True
    assert scratch.run(run.id).state == "running" and len(scratch.jobs(run.id)) == 1
    for _ in range(3):
        scratch.tick(on_b)
        scratch.tick(on_a)
    assert len(scratch.jobs(run.id)) == 1  # the first step's job, submitted once
    assert scratch.run(run.id).owner == a.id
    a.stop()
    b.stop()


def test_a_run_whose_owner_is_gone_is_taken_over_by_exactly_one(scratch: Scratch) -> None:
    gone, a, b = scratch.plane("gone"), scratch.plane("a"), scratch.plane("b")
    gone.stop()  # its lease ends now, as when it was killed and its lease ran out
    with scratch.sessions() as session:
        runs = [start_run(session, ADMIN, "pair", owner=gone.id).id for _ in range(3)]
        runs.append(start_run(session, ADMIN, "pair").id)  # from before control planes
        # The claim itself: two claims naming the same old owner, one wins.
        first = start_run(session, ADMIN, "pair", owner=gone.id).id
        assert claim_run(session, first, old=gone.id, owner=b.id) is True
        assert claim_run(session, first, old=gone.id, owner=a.id) is False
        assert claim_run(session, runs[-1], old=gone.id, owner=a.id) is False  # it is no one's
    assert scratch.run(first).owner == b.id
    on_a, on_b = scratch.orchestrator(a), scratch.orchestrator(b)
    # Both look at the same moment, again and again.
    start = threading.Barrier(2)
    failed: list[BaseException] = []

    def look(orchestrator: Orchestrator) -> None:
        try:
            start.wait(5)
            for _ in range(4):
                scratch.tick(orchestrator)
        except BaseException as exc:  # reported below, in the test's thread
            failed.append(exc)

    threads = [threading.Thread(target=look, args=(o,)) for o in (on_a, on_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failed == []
    for run_id in [*runs, first]:
        run = scratch.run(run_id)
        assert run.owner in (a.id, b.id) and run.state == "running", (run.owner, run.message)
        assert len(scratch.jobs(run_id)) == 1, run_id  # moved on by one control plane only
    a.stop()
    b.stop()


def test_a_control_plane_whose_lease_is_not_renewed_acts_on_no_run(scratch: Scratch) -> None:
    a = scratch.plane("a")
    with scratch.sessions() as session:
        mine = start_run(session, ADMIN, "pair", owner=a.id).id
        orphan = start_run(session, ADMIN, "pair").id
    on_a = scratch.orchestrator(a)
    a.fenced.set()  # what the lease thread does when it cannot renew
    assert scratch.tick(on_a) is False
    assert scratch.run(mine).state == "queued" and scratch.run(orphan).owner is None
    with scratch.sessions() as session:
        assert session.scalars(select(StepRun.job_id).where(
            StepRun.job_id.is_not(None))).all() == []
    a.fenced.clear()
    assert scratch.tick(on_a) is True
    assert scratch.run(orphan).owner == a.id and len(scratch.jobs(orphan)) == 1
    a.stop()


# --- two real control planes on PostgreSQL + S3 --------------------------------------------------

@pytest.fixture(scope="module")
def planes(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cumulo, Cumulo]]:
    with two_control_planes(request, tmp_path_factory.mktemp("planes")) as pair:
        yield pair


def test_a_run_whose_control_plane_is_killed_finishes_through_another(
        planes: tuple[Cumulo, Cumulo]) -> None:
    a, b = planes
    ca, cb = a.client(), b.client()
    ca.pipelines.create(PIPELINE)
    started = ca.pipelines.run("pair")  # owned by a, which started it
    assert started["owner"] is not None
    # The first step's job sleeps 6 s: a is killed while it runs.
    deadline = time.monotonic() + 60
    while {s["node"]: s for s in ca.pipelines.get_run(started["id"])["steps"]}["first"][
            "state"] != "running":
        assert time.monotonic() < deadline, "the first step did not start"
        time.sleep(0.2)
    a.stop(signal.SIGKILL)
    done = cb.pipelines.wait(started["id"], 120)
    assert done["state"] == "succeeded", done
    steps = {s["node"]: s for s in done["steps"]}
    assert steps["second"]["outputs"]["metrics"] == {"n": 2.0}
    assert done["owner"] != started["owner"]  # taken over by b
