"""The endpoint rules of cumulo.serving.endpoints, on a real SQLite database in tmp_path:
what is refused (and that nothing changed), and what other services read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import cumulo.access.models  # noqa: F401  (the users table, which endpoints refer to)
from cumulo.db import make_engine, upgrade, utcnow
from cumulo.errors import Conflict, Forbidden, Invalid, NotFound
from cumulo.principal import Principal
from cumulo.serving import endpoints
from cumulo.serving.models import Endpoint

ANN = Principal(user_id=1, user_name="ann", is_admin=False, token_id=7)
VARIANTS = [{"name": "a", "model": "churn", "version": "1", "weight": 3.0, "shadow": False},
            {"name": "s", "model": "churn", "version": "2", "weight": 1.0, "shadow": True}]


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'cumulo.db'}")
    upgrade(engine)
    with sessionmaker(engine, expire_on_commit=False)() as s:
        for name, state in (("live", "in_service"), ("new", "creating"), ("old", "deleting")):
            s.add(Endpoint(name=name, state=state, variants=[dict(v) for v in VARIANTS],
                           port=9000, token_id=7 if name == "live" else None,
                           updated_at=utcnow()))
        s.commit()
        yield s
    engine.dispose()


def _no_registry() -> Any:
    raise AssertionError("the registry is asked only once the other checks passed")


def test_reading_endpoints(session: Session) -> None:
    assert endpoints.get_endpoint(session, "live").state == "in_service"
    with pytest.raises(NotFound, match="no endpoint 'old'"):  # being deleted: gone already
        endpoints.get_endpoint(session, "old")
    assert [e.name for e in endpoints.list_endpoints(session)] == ["live", "new"]
    assert endpoints.live_variants(session, "live") == VARIANTS
    assert endpoints.live_variants(session, "new") is None
    assert endpoints.live_variants(session, "nope") is None
    served = endpoints.endpoints_serving(session, "churn", "2")
    assert [(s["endpoint"], s["variant"]) for s in served] == [
        ("live", "s"), ("new", "s"), ("old", "s")]
    assert endpoints.endpoint_url(session, endpoints.get_endpoint(session, "live"),
                                  host="127.0.0.1") == "http://127.0.0.1:9000"


def test_only_the_endpoints_own_token_reports(session: Session) -> None:
    assert endpoints.check_reporter(session, ANN, "live").name == "live"
    with pytest.raises(Forbidden, match="own replicas"):
        endpoints.check_reporter(session, ANN, "new")


@pytest.mark.parametrize(("spec", "error"), [
    ({"name": "Bad_Name", "model": "churn"}, "lower-case"),
    ({"name": "x"}, "either model"),
    ({"name": "x", "model": "churn", "variants": [{"model": "churn"}]}, "either model"),
    ({"name": "x", "variants": [{"model": "churn", "shadow": True}]}, "take traffic"),
    ({"name": "x", "variants": [{"model": "a", "weight": 1}, {"model": "b", "weight": -1}]},
     "negative"),
    ({"name": "x", "model": "churn", "min_replicas": 3, "max_replicas": 2}, "replicas"),
    ({"name": "x", "model": "churn", "target_in_flight": 0}, "target-in-flight"),
    ({"name": "x", "model": "churn", "max_batch_size": 0}, "batching"),
    ({"name": "x", "model": "churn", "max_body": "1"}, "max-body"),
])
def test_a_refused_create_makes_nothing(session: Session, spec: dict[str, Any],
                                        error: str) -> None:
    with pytest.raises(Invalid, match=error):
        endpoints.create_endpoint(session, ANN, endpoints.EndpointSpec(**spec),
                                  registry=_no_registry, host="127.0.0.1", ray_serve_port=8000)
    assert session.scalar(select(Endpoint).where(Endpoint.name == "x")) is None


def test_a_name_taken_even_by_an_endpoint_being_deleted_conflicts(session: Session) -> None:
    with pytest.raises(Conflict, match="'old' already exists"):
        endpoints.create_endpoint(session, ANN, endpoints.EndpointSpec("old", model="churn"),
                                  registry=_no_registry, host="127.0.0.1", ray_serve_port=8000)


def test_weights_are_set_at_once_and_checked(session: Session) -> None:
    change = endpoints.EndpointChange
    with pytest.raises(Invalid, match="no variant 'b'; its variants: a, s"):
        endpoints.update_endpoint(session, ANN, "live", change(weights={"b": 1}),
                                  registry=_no_registry)
    with pytest.raises(Invalid, match="take traffic"):
        endpoints.update_endpoint(session, ANN, "live", change(weights={"a": 0}),
                                  registry=_no_registry)
    with pytest.raises(Invalid, match="not both"):
        endpoints.update_endpoint(session, ANN, "live", change(model="churn", weights={"a": 1}),
                                  registry=_no_registry)
    with pytest.raises(Conflict, match="'new' is creating"):
        endpoints.update_endpoint(session, ANN, "new", change(weights={"a": 1}),
                                  registry=_no_registry)
    assert endpoints.get_endpoint(session, "live").variants == VARIANTS  # nothing changed
    live = endpoints.update_endpoint(session, ANN, "live", change(weights={"a": 5}),
                                     registry=_no_registry)
    assert [v["weight"] for v in live.variants] == [5.0, 1.0] and live.state == "in_service"


def test_rollback_needs_a_shift_under_way(session: Session) -> None:
    with pytest.raises(Conflict, match="not shifting traffic"):
        endpoints.rollback_endpoint(session, ANN, "live")
    endpoint = endpoints.get_endpoint(session, "live")
    endpoint.state = "updating"
    endpoint.rollout = {"state": "baking", "previous": VARIANTS[:1], "log": []}
    session.commit()
    rolled = endpoints.rollback_endpoint(session, ANN, "live")
    assert rolled.variants == VARIANTS[:1] and rolled.rollout is not None
    assert rolled.rollout["state"] == "rolling_back"
    assert rolled.rollout["reason"] == "rolled back by ann"
    with pytest.raises(Conflict, match="rolling back already"):
        endpoints.rollback_endpoint(session, ANN, "live")


def test_delete_marks_it_deleting(session: Session) -> None:
    endpoints.delete_endpoint(session, "live")
    with pytest.raises(NotFound):
        endpoints.get_endpoint(session, "live")
    with pytest.raises(NotFound):
        endpoints.delete_endpoint(session, "live")
