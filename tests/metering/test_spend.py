"""What a budget's scope spent: the sums budgets are checked against, by each kind of scope,
by both sheets (a real SQLite database, migrated as the server migrates it)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from cumulo.access.models import User
from cumulo.config import Prices, load_settings
from cumulo.db import make_engine, upgrade, utcnow
from cumulo.metering import budgets, sheets, usage
from cumulo.metering.watch import daily_costs

DOLLAR_A_CPU_SECOND = Prices(vcpu_hour=3600.0, gb_hour=0.0, gpu_hour=0.0)


@pytest.mark.parametrize(("scope", "expected"), [
    ("all", {"2026-11-01": 3.0, "2026-11-02": 12.0}),
    ("project:team-a", {"2026-11-01": 1.0}),
    ("user:ann", {"2026-11-01": 3.0}),
    ("tag:team=b", {"2026-11-01": 2.0}),
    ("service:pipeline", {"2026-11-02": 4.0}),
    ("service:endpoint", {"2026-11-02": 8.0}),
    ("service:job", {"2026-11-01": 3.0}),
])
def test_spend_by_scope(tmp_path: Path, scope: str, expected: dict[str, float]) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    settings = load_settings({"CUMULO_HOME": str(tmp_path)})
    with Session(engine) as session:
        ann = User(name="ann", is_admin=False, created_at=utcnow())
        session.add(ann)
        session.flush()
        for day, dollars, kind, project, tags, user in [
                (1, 1.0, "job", "team-a", [], ann.id),
                (1, 2.0, "job", None, ["team=b"], ann.id),
                (2, 4.0, "job", None, ["pipeline:daily"], None),
                (2, 8.0, "endpoint", None, [], None)]:
            when = datetime(2026, 11, day, 12, tzinfo=UTC)
            usage.record(session, DOLLAR_A_CPU_SECOND, kind=kind, ref="r", cluster=None,
                         user_id=user, tags=tags, started_at=when, ended_at=when,
                         cpu_seconds=dollars, project=project)
        session.commit()
        found = daily_costs(session, settings, start="2026-11-01", end="2026-11-30",
                            scope=budgets.parse_scope(scope))
        assert found == pytest.approx(expected)
        own = daily_costs(session, settings, start="2026-11-01", end="2026-11-30",
                          scope=budgets.parse_scope(scope), sheet="own")
        rate = sheets.own_sheet(settings.prices, settings.hardware).vcpu_hour / 3600
        assert own == pytest.approx({d: v * rate for d, v in expected.items()})
    engine.dispose()
