"""Backups the server runs: schedules claimed once per cron time (a controlled clock, two
control planes on one database), a folder target run only on its machine, backups and drills
run now through the API and the CLI, failures shown by ``cumulo status`` until a later backup
succeeds, one-thing restores (a bucket through the API, a model version through the CLI), and
bad input refused by name."""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from cumulo.errors import Conflict, Forbidden, Invalid, NotFound
from tests.services import Cumulo, S3Server, register_churn, start_cumulo

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from cumulo.dr.schedules import BackupScheduler


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    home = tmp_path_factory.mktemp("scheduled") / ".cumulo"
    running = start_cumulo(home)
    c = running.client()
    c.files.create_bucket("raw")
    c.files.upload(b"id,v\n1,a\n", "raw/data.csv")
    c.files.upload(b"x" * 1000, "raw/more/blob.bin")
    try:
        yield running
    finally:
        running.stop()


# --- the clock: pure claims on a scratch database ----------------------------------------------

def test_a_cron_time_is_claimed_once_across_control_planes(tmp_path: Path) -> None:
    import cumulo.access.models  # noqa: F401 - users, whom schedules name as their makers
    from cumulo.config import load_settings
    from cumulo.db import make_engine, upgrade
    from cumulo.dr.models import BackupRun, BackupSchedule
    from cumulo.dr.schedules import BackupScheduler, create_schedule
    from cumulo.leases import ControlPlane, Membership

    settings = load_settings(overrides={"home": str(tmp_path / "home")})
    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    upgrade(engine)
    # Two control planes on one database, registered (their lease threads are not started,
    # nor their workers: only the claims are under test here; the backups they would run are
    # tested on a server below).
    planes = [Membership(engine, home=f"/h{i}", url=f"http://p{i}", version="t")
              for i in (1, 2)]
    for plane in planes:
        plane._register()
    one, two = (BackupScheduler(settings, engine, plane=p) for p in planes)
    t = datetime(2026, 12, 4, 1, 30, tzinfo=UTC)
    with one.sessions() as session:
        schedule = create_schedule(session, name="nightly", target=str(tmp_path / "b"),
                                   cron="0 2 * * *")
        schedule.last_at = t
        session.commit()
    assert one.fire(t + timedelta(minutes=29)) == []  # 01:59: not yet
    at_two = t + timedelta(minutes=30, seconds=5)
    fired = one.fire(at_two)
    assert len(fired) == 1
    assert two.fire(at_two) == []  # claimed by the first: never both
    assert one.fire(at_two + timedelta(minutes=1)) == []  # one backup per cron time
    # One running backup per schedule, whichever control plane is asked.
    with pytest.raises(Conflict, match="already queued or running"):
        two.run_now("nightly", by="ana")
    with one.sessions() as session:
        session.get(BackupRun, fired[0]).state = "succeeded"  # type: ignore[union-attr]
        session.commit()
    # Down for three days: missed=latest makes one backup, not three.
    assert len(two.fire(at_two + timedelta(days=3))) == 1
    with one.sessions() as session:
        runs = session.scalars(select(BackupRun).order_by(BackupRun.id)).all()
        assert [r.trigger for r in runs] == [
            "schedule nightly at 2026-12-04T02:00:00+00:00",
            "schedule nightly at 2026-12-07T02:00:00+00:00"]
        assert [r.owner for r in runs] == [planes[0].id, planes[1].id]
        assert session.scalar(select(BackupSchedule.last_at)) == datetime(2026, 12, 7, 2,
                                                                          tzinfo=UTC)
        # The second control plane's lease runs out: the first fails its running backup.
        session.get(ControlPlane, planes[1].id).lease_expires_at = t  # type: ignore[union-attr]
        session.commit()
    one.fire(at_two + timedelta(days=3))
    with one.sessions() as session:
        left = session.get(BackupRun, runs[-1].id)
        assert left is not None and left.state == "failed"
        assert "stopped while it ran" in (left.error or "")
    engine.dispose()


def _machines(tmp_path: Path, *hosts: str) -> tuple[Engine, list[BackupScheduler]]:
    """A scratch database and one registered control plane's scheduler per machine name (its
    lease and worker threads not started: only the claims are under test)."""
    import cumulo.access.models  # noqa: F401 - users, whom schedules name as their makers
    from cumulo.config import load_settings
    from cumulo.db import make_engine, upgrade
    from cumulo.dr.schedules import BackupScheduler
    from cumulo.leases import Membership

    settings = load_settings(overrides={"home": str(tmp_path / "home")})
    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    upgrade(engine)
    schedulers: list[BackupScheduler] = []
    for i, host in enumerate(hosts):
        plane = Membership(engine, home=f"/h{i}", url=f"http://p{i}", version="t")
        plane.host = host
        plane._register()
        scheduler = BackupScheduler(settings, engine, plane=plane)
        scheduler.host = host  # machines of their own, on this one
        schedulers.append(scheduler)
    return engine, schedulers


T = datetime(2026, 12, 4, 1, 30, tzinfo=UTC)  # half an hour before "0 2 * * *"


def test_a_folder_target_runs_only_on_the_machine_that_made_it(tmp_path: Path) -> None:
    from cumulo.dr.models import BackupRun, BackupSchedule
    from cumulo.dr.schedules import create_schedule

    engine, (a, b) = _machines(tmp_path, "machine-a", "machine-b")
    with a.sessions() as session:
        made = create_schedule(session, name="nightly", target=str(tmp_path / "b"),
                               cron="0 2 * * *", host=a.host)
        assert made.host == "machine-a"
        made.last_at = T
        session.commit()
    at_two = T + timedelta(minutes=30, seconds=5)
    assert b.fire(at_two) == []  # machine-b's folder of that name is another place
    assert b.fire(at_two + timedelta(days=2)) == []
    with b.sessions() as session:
        assert session.scalar(select(BackupSchedule.last_at)) == T  # not claimed: it waits
    # Asked on machine-b to run it now: refused, naming the schedule, the machine and the fix.
    with pytest.raises(Conflict, match=re.escape(
            "backup schedule 'nightly' backs up to a folder of machine 'machine-a'")) as refused:
        b.run_now("nightly", by="ana")
    assert ("this control plane runs on 'machine-b': run it through a control plane on "
            "machine-a, or give the schedule an s3:// target") in refused.value.message
    assert refused.value.details == {"schedule": "nightly", "host": "machine-a",
                                     "here": "machine-b"}
    # machine-a's control plane comes back two days later: missed=latest, one backup, there.
    fired = a.fire(at_two + timedelta(days=2))
    assert len(fired) == 1
    with a.sessions() as session:
        runs = session.scalars(select(BackupRun)).all()
        assert [(r.id, r.host, r.trigger) for r in runs] == [
            (fired[0], "machine-a", "schedule nightly at 2026-12-06T02:00:00+00:00")]
    engine.dispose()


def test_a_schedule_made_without_a_host_is_this_machines(tmp_path: Path) -> None:
    from cumulo.dr.schedules import create_schedule

    engine, (here,) = _machines(tmp_path, socket.gethostname())
    with here.sessions() as session:
        made = create_schedule(session, name="nightly", target=str(tmp_path / "b"),
                               cron="0 2 * * *")
        assert made.host == socket.gethostname() == here.host
    assert here.run_now("nightly", by="ana").host == here.host
    engine.dispose()


def test_an_s3_target_runs_on_any_machine(tmp_path: Path, s3: S3Server,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from cumulo.dr.models import BackupRun
    from cumulo.dr.schedules import create_schedule

    for name, value in s3.env().items():  # the [s3] settings the backups' client reads
        monkeypatch.setenv(name, value)
    target = s3.create_bucket("b" + uuid.uuid4().hex[:10])
    engine, (a, b) = _machines(tmp_path, "machine-a", "machine-b")
    with a.sessions() as session:
        made = create_schedule(session, name="offsite", target=target, cron="0 2 * * *",
                               host=a.host)
        assert made.host is None
        made.last_at = T
        session.commit()
    fired = b.fire(T + timedelta(minutes=30, seconds=5))
    assert len(fired) == 1  # the bucket is the same place from any machine
    with b.sessions() as session:
        run = session.get(BackupRun, fired[0])
        assert run is not None and run.host == "machine-b"
        run.state = "succeeded"
        session.commit()
    assert b.run_now("offsite", by="ana").host == "machine-b"
    engine.dispose()


# --- a real server --------------------------------------------------------------------------

def test_backup_and_drill_now_then_status(server: Cumulo, tmp_path: Path) -> None:
    target = tmp_path / "nightly"
    made = server.cli("backup", "schedule", "--cron", "0 2 * * *", "--to", str(target),
                      "--keep-last", "2", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["next_at"].endswith("02:00:00Z")
    c = server.client()
    done = c.backups.run("nightly", drill=True)
    assert done["state"] == "succeeded" and done["backup_id"]
    drill = done["drill"]
    assert drill["state"] == "succeeded", drill["error"]
    assert drill["rto_seconds"] > 0 and "objects" in drill["checked"]
    c.files.upload(b"changed", "raw/data.csv")
    second = c.backups.run("nightly")
    assert second["backup_id"] != done["backup_id"] and second["pruned"] == 0
    assert c.backups.list("nightly")[0]["id"] == second["backup_id"]  # newest first
    shown = c.backups.show("nightly", done["backup_id"])
    assert {"name": "raw", "objects": 2, "bytes": 1000 + 9} in shown["contents"]["buckets"]
    assert shown["prefixes"]["buckets/"]["files"] == 2
    status = c.status()["backups"]
    assert status["schedules"] == 1 and status["failing"] == []
    assert status["last_drill"]["rto_seconds"] == drill["rto_seconds"]
    out = server.cli("status")
    assert "last backup" in out.stdout and "last drill succeeded" in out.stdout
    listed = json.loads(server.cli("backup", "schedules", "--json").stdout)
    assert listed[0]["last_backup"]["backup_id"] == second["backup_id"]
    assert listed[0]["host"] == socket.gethostname()  # a folder: run on the server's machine
    assert f"{target} on {socket.gethostname()}" in server.cli("backup", "schedules").stdout
    # A bucket put back through the API, as the caller, from the first backup.
    restored = c.backups.restore("nightly", done["backup_id"], bucket="raw", into="raw-back")
    assert restored["restored"] == 2
    assert c.files.read_bytes("raw-back/data.csv") == b"id,v\n1,a\n"
    c.backups.unschedule("nightly")
    assert c.backups.schedules() == []
    assert target.is_dir()  # its backups stay


def test_a_failing_schedule_shows_in_status_until_a_backup_succeeds(server: Cumulo,
                                                                     tmp_path: Path) -> None:
    c = server.client()
    target = tmp_path / "flaky"
    c.backups.schedule("flaky", target=str(target), cron="0 3 * * *")
    # Someone empties the backup folder and leaves a file of theirs: no longer a backup folder.
    for entry in target.iterdir():
        entry.unlink() if entry.is_file() else None
    (target / "notes.txt").write_text("mine")
    with pytest.raises(Conflict, match="not empty and holds no Cumulo backup"):
        c.backups.run("flaky")
    failing = c.status()["backups"]["failing"]
    assert [(f["schedule"], f["kind"]) for f in failing] == [("flaky", "backup")]
    assert "FAILING: flaky" in server.cli("status").stdout
    assert c.backups.schedules()[0]["failing"] is True
    (target / "notes.txt").unlink()
    assert c.backups.run("flaky")["state"] == "succeeded"
    assert c.status()["backups"]["failing"] == []
    c.backups.unschedule("flaky")


def test_a_model_version_comes_back_as_a_new_version(server: Cumulo, tmp_path: Path) -> None:
    register_churn(server, "churn-dr", "dr-models")
    target = tmp_path / "models"
    assert server.cli("backup", "create", "--to", str(target), "--home",
                      str(server.home)).returncode == 0
    c = server.client()
    out = server.cli("backup", "restore", "--to", str(target), "--model", "churn-dr",
                     "--version", "1", "--json")
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout)
    assert done["from"] == "churn-dr v1" and str(done["version"]) == "2"
    assert len(c.models.versions("churn-dr")) == 2
    missing = server.cli("backup", "restore", "--to", str(target), "--model", "churn-dr",
                         "--version", "7")
    assert missing.returncode != 0 and "versions 1 of model 'churn-dr', not 7" in missing.stderr
    assert len(c.models.versions("churn-dr")) == 2  # nothing half-registered


def test_bad_schedules_are_refused_by_name(server: Cumulo, tmp_path: Path) -> None:
    c = server.client()
    with pytest.raises(Invalid, match="'every night' is not a cron expression"):
        c.backups.schedule("bad", target=str(tmp_path / "x"), cron="every night")
    with pytest.raises(Invalid, match="absolute path"):
        c.backups.schedule("bad", target="relative/folder", cron="0 2 * * *")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    with pytest.raises(Invalid, match=r"cannot use .*a-file as a backup folder"):
        c.backups.schedule("bad", target=str(a_file), cron="0 2 * * *")
    with pytest.raises(NotFound, match="no backup schedule 'nope'"):
        c.backups.run("nope")
    c.backups.schedule("twice", target=str(tmp_path / "t"), cron="0 2 * * *")
    with pytest.raises(Conflict, match="named 'twice' exists"):
        c.backups.schedule("twice", target=str(tmp_path / "t2"), cron="0 2 * * *")
    assert [s["name"] for s in c.backups.schedules()] == ["twice"]  # nothing half-made
    # Backups are an administrator's: a developer may not schedule, run or restore them.
    dev = server.add_user("dev-dr", "cml_test-dev-dr-0123456789abcdef0123", role="developer")
    with pytest.raises(Forbidden):
        dev.backups.schedule("mine", target=str(tmp_path / "m"), cron="0 2 * * *")
    with pytest.raises(Forbidden):
        dev.backups.run("twice")
    assert dev.status()["backups"] is None
    c.backups.unschedule("twice")
