"""Home's control planes, against a real server: its own, live, and one whose lease ran out,
written into the server's database as a control plane killed an hour ago leaves it."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from playwright.sync_api import expect
from sqlalchemy import delete
from sqlalchemy.orm import Session

from cumulo.db import make_engine
from cumulo.leases import ControlPlane
from tests.services import Cumulo


def _planes(server: Cumulo) -> list[dict[str, object]]:
    answer = httpx.get(server.url + "/api/v1/status", timeout=30,
                       headers={"authorization": f"Bearer {server.token}"})
    answer.raise_for_status()
    planes: list[dict[str, object]] = answer.json()["control_planes"]
    return planes


def test_home_shows_each_control_plane_and_whose_lease_ran_out(  # type: ignore[no-untyped-def]
        page, console_server: Cumulo) -> None:
    [me] = _planes(console_server)
    assert me["live"] and me["this"]
    mine = str(me["id"])[:8]

    # One control plane: one line, live, the one that answered.
    page.goto("/")
    planes = page.get_by_role("region", name="Control planes")
    expect(planes).to_contain_text(mine)
    expect(planes).to_contain_text(str(me["url"]))
    expect(planes).to_contain_text("this one")
    expect(planes).to_contain_text(re.compile(r"renewed \d+ s ago"))
    expect(planes).to_contain_text("1 of 1 live")
    expect(planes).not_to_contain_text("ran out")
    expect(planes.get_by_role("table")).to_have_count(0)

    # A second one, killed an hour ago: its lease ran out, and it owns no work.
    engine = make_engine(f"sqlite:///{console_server.home / 'cumulo.db'}")
    gone = uuid.uuid4().hex
    now = datetime.now(UTC)
    with Session(engine) as session:
        session.add(ControlPlane(
            id=gone, host="gone-host", home="/srv/gone/.cumulo", url="http://gone-host:8080",
            pid=1, version="0.0.1", started_at=now - timedelta(hours=2),
            renewed_at=now - timedelta(hours=1, seconds=10),
            lease_expires_at=now - timedelta(hours=1), stopped_at=None, key_hash=None))
        session.commit()
    try:
        assert [p["live"] for p in _planes(console_server) if p["id"] == gone] == [False]
        # Home refreshes every 5 s: the second one shows without a reload (given a few
        # refreshes' time: the suite's other tests load this machine meanwhile).
        table = planes.get_by_role("table", name="Control planes")
        expect(table.get_by_role("row")).to_have_count(3, timeout=20_000)
        expect(planes).to_contain_text("1 of 2 live")
        dead = table.get_by_role("row").filter(has_text=gone[:8])
        expect(dead).to_contain_text("gone-host")
        expect(dead).to_contain_text("http://gone-host:8080")
        expect(dead).to_contain_text("lease ran out 1 h ago")
        expect(dead).not_to_contain_text("this one")
        expect(dead.locator(".home-lease-out")).to_have_css("color", "rgb(180, 35, 24)")
        alive = table.get_by_role("row").filter(has_text=mine)
        expect(alive).to_contain_text("this one")
        expect(alive).to_contain_text(re.compile(r"renewed \d+ s ago"))
        expect(alive).not_to_contain_text("ran out")
    finally:
        with Session(engine) as session:
            session.execute(delete(ControlPlane).where(ControlPlane.id == gone))
            session.commit()
        engine.dispose()

    # Gone from the database, gone from the page: one line again.
    page.reload()
    expect(planes).to_contain_text("1 of 1 live")
    expect(planes).not_to_contain_text(gone[:8])
