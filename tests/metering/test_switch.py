"""The setting ``metering`` against a real server: on, a job, a SQL query and storage are
metered; off, the same work writes no usage record, the samplers only move past it, and an
admin's sample now is refused with the setting to change."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.config import load_settings
from cumulo.db import make_engine
from cumulo.errors import Conflict, Invalid
from cumulo.lake.models import SqlQuery
from cumulo.metering.models import MeterMark, UsageRecord
from tests.services import Cumulo, start_cumulo


def test_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).metering is True
    assert load_settings({"CUMULO_METERING": "off"}).metering is False
    (tmp_path / "cumulo.toml").write_text("metering = false\n")
    assert load_settings({}).metering is False
    with pytest.raises(Invalid, match="metering: 'maybe' is not true or false"):
        load_settings({"CUMULO_METERING": "maybe"})


@pytest.fixture(scope="module", params=[True, False], ids=["on", "off"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    # The watch's round every half second: the SQL metered (or passed over) soon after a query.
    cumulo = start_cumulo(tmp_path_factory.mktemp("switch") / ".cumulo", {
        "CUMULO_METERING": "true" if request.param else "false",
        "CUMULO_BUDGET_CHECK_SECONDS": "0.5"})
    yield cumulo
    cumulo.stop()


def _read(server: Cumulo) -> tuple[list[str], MeterMark | None, SqlQuery | None]:
    """The kinds of the usage records written, the SQL sampler's mark, and the last query."""
    engine = make_engine(f"sqlite:///{server.home / 'cumulo.db'}")
    try:
        with Session(engine) as session:
            kinds = sorted(session.scalars(select(UsageRecord.kind)))
            return kinds, session.get(MeterMark, "sql"), session.scalar(
                select(SqlQuery).order_by(SqlQuery.finished_at.desc()))
    finally:
        engine.dispose()


def test_a_job_and_a_query_are_metered_only_with_metering_on(server: Cumulo) -> None:
    on = server.env["CUMULO_METERING"] == "true"
    c = server.client()
    assert c.jobs.run(command=["python", "-c", "pass"]).wait(60)["state"] == "succeeded"
    c.tables.create_database("switch")
    c.tables.load("switch.t", b"id\n1\n2\n", format="csv")
    assert c.sql("select count(*) as n from switch.t").page == [{"n": 2}]

    # SQL is metered a few seconds after it finished (sampler.SQL_LAG_SECONDS), by the watch.
    deadline = time.monotonic() + 30
    while True:
        kinds, mark, query = _read(server)
        assert query is not None and query.finished_at is not None
        if (mark is not None and mark.at >= query.finished_at) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert mark is not None and mark.at >= query.finished_at, "the SQL sampler never ran"
    if on:
        assert c.costs.sample() >= 1  # the table, at least
        assert {"job", "sql", "storage"} <= set(_read(server)[0])
    else:
        assert kinds == []
        with pytest.raises(Conflict, match="CUMULO_METERING"):
            c.costs.sample()
        done = server.cli("costs", "--since", "1d", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["total"]["count"] == 0
