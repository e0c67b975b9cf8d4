"""A control plane's lease across a pause: a laptop that slept, or a machine paused for a
snapshot (a 16 s pause of this machine fenced every test server at once and killed their
running jobs). On SQLite, a lease that ran out while no other control plane was live is
extended all the same; if another was live since, it is not (its work may be taken)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.engine import Engine


def _expire(engine: Engine, plane_id: str, seconds: float) -> None:
    from sqlalchemy.orm import Session

    from cumulo.db import utcnow
    from cumulo.leases import ControlPlane

    with Session(engine) as session:
        session.execute(update(ControlPlane).where(ControlPlane.id == plane_id).values(
            lease_expires_at=utcnow() - timedelta(seconds=seconds)))
        session.commit()


def test_a_lone_plane_keeps_its_lease_across_a_pause_and_a_contested_one_does_not(
        tmp_path: Path) -> None:
    from sqlalchemy.orm import Session

    from cumulo.db import make_engine, upgrade
    from cumulo.leases import ControlPlane, Membership

    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    upgrade(engine)
    # Registered, their lease threads not started: renew() is called as the thread would.
    lone = Membership(engine, home="/h1", url="http://p1", version="t")
    lone._register()
    _expire(engine, lone.id, 16)  # the machine was paused past the lease
    assert lone.renew()
    with Session(engine) as session:
        row = session.get(ControlPlane, lone.id)
        assert row is not None and row.stopped_at is None

    # Another control plane live since the lease ran out may have taken its work: fenced.
    other = Membership(engine, home="/h2", url="http://p2", version="t")
    other._register()
    _expire(engine, lone.id, 5)
    assert not lone.renew()
    # One that stopped before the lease ran out took nothing: extended again.
    other.stop()
    _expire(engine, other.id, 30)
    assert lone.renew()
    # And a plane given up (stopped) is never brought back.
    lone.stop()
    assert not lone.renew()
    engine.dispose()
