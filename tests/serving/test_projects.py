"""Endpoints in projects: made in one, listed by it, held to it, counted by its endpoints
quota; invoked by whoever may invoke in the endpoint's project, on the control plane and on
the endpoint's own address; their replicas' time is metered to the project."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cumulo.errors import Forbidden, NotFound, QuotaExceeded
from tests.services import Cumulo
from tests.serving.conftest import ROWS

DANA = "cml_dana-serving-token-0123456789ab"
IVAN = "cml_ivan-serving-token-0123456789ab"
BODY = {"dataframe_records": ROWS.to_dict(orient="records")}


def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.05)
    return value


@pytest.fixture(scope="module")
def team(serving: Cumulo, churn: str) -> dict[str, Any]:
    """team-a's developer (dana) and invoker (ivan), dana's endpoint in team-a and the
    platform's own endpoint, both serving."""
    admin = serving.client()
    admin.projects.create("team-a")
    admin.projects.create("team-b")
    dana = serving.add_user("dana", DANA, project="team-a")
    ivan = serving.add_user("ivan", IVAN, role="invoker", project="team-a")
    mine = dana.endpoints.create("a-churn", "churn:1", project="team-a", wait=True)
    plain = admin.endpoints.create("plain", "churn:1", wait=True)
    return {"dana": dana, "ivan": ivan, "mine": mine, "plain": plain}


def test_a_member_serves_reads_and_lists_in_their_project(serving: Cumulo,
                                                         team: dict[str, Any]) -> None:
    dana = team["dana"]
    assert team["mine"]["project"] == "team-a"
    assert dana.endpoints.show("a-churn")["project"] == "team-a"
    assert dana.endpoints["a-churn"].predict(ROWS) == [1, 0]
    assert [e["name"] for e in dana.endpoints.list(project="team-a")] == ["a-churn"]
    assert dana.endpoints["a-churn"].update(max_wait_ms=3.0)["max_wait_ms"] == 3.0
    with pytest.raises(Forbidden):
        dana.endpoints.list()
    with pytest.raises(Forbidden):
        dana.endpoints.create("loose", "churn:1", min_replicas=0)
    with pytest.raises(Forbidden):
        dana.endpoints.create("elsewhere", "churn:1", min_replicas=0, project="team-b")
    for touch in (lambda: dana.endpoints.show("plain"),
                  lambda: dana.endpoints["plain"].predict(ROWS),
                  lambda: dana.endpoints["plain"].update(max_wait_ms=3.0),
                  lambda: dana.endpoints.delete("plain")):
        with pytest.raises(Forbidden):
            touch()
    shown = {e["name"]: e["project"] for e in serving.client().endpoints.list()}
    assert shown == {"a-churn": "team-a", "plain": None}


def test_an_invoker_in_the_project_invokes_its_endpoints_only(team: dict[str, Any]) -> None:
    ivan = team["ivan"]
    assert ivan.endpoints["a-churn"].predict(ROWS) == [1, 0]  # through the control plane
    with pytest.raises(Forbidden):
        ivan.endpoints["plain"].predict(ROWS)
    with pytest.raises(Forbidden):
        ivan.endpoints.show("a-churn")  # invoking is all an invoker does
    # The endpoints' own addresses: their replicas take ivan's token as the manager's token
    # sets say, for team-a's endpoint only.
    auth = {"Authorization": f"Bearer {IVAN}"}

    def direct(info: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{info['url']}/invocations", json=BODY, headers=auth, timeout=30)

    answered = _until(lambda: (r := direct(team["mine"])).status_code == 200 and r, 10,
                      "ivan's token taken by team-a's endpoint")
    assert answered.json() == {"predictions": [1, 0]}
    assert direct(team["plain"]).status_code == 401


def test_the_endpoints_quota_is_enforced_at_create(serving: Cumulo, churn: str) -> None:
    admin = serving.client()
    admin.projects.create("team-q", quotas={"endpoints": 1})
    admin.endpoints.create("q-one", "churn:1", min_replicas=0, project="team-q")
    with pytest.raises(QuotaExceeded) as refused:
        admin.endpoints.create("q-two", "churn:1", min_replicas=0, project="team-q")
    assert ("endpoint q-two would take project team-q past its endpoints quota: 1 endpoints "
            "in use + 1 asked > 1") in refused.value.message
    assert [e["name"] for e in admin.endpoints.list(project="team-q")] == ["q-one"]
    assert admin.projects.show("team-q")["usage"]["endpoints"] == 1
    admin.projects.update("team-q", quotas={"endpoints": 2})
    assert admin.endpoints.create("q-two", "churn:1", min_replicas=0,
                                  project="team-q")["project"] == "team-q"
    for name in ("q-one", "q-two"):
        admin.endpoints.delete(name)
    # Deleted endpoints count until their rows are gone, then not at all.
    _until(lambda: admin.projects.show("team-q")["usage"]["endpoints"] == 0, 30,
           "team-q's endpoints gone")


def test_an_unknown_project_is_not_found_and_nothing_is_made(serving: Cumulo,
                                                             churn: str) -> None:
    admin = serving.client()
    with pytest.raises(NotFound, match="no project 'nope'"):
        admin.endpoints.create("ghost", "churn:1", min_replicas=0, project="nope")
    with pytest.raises(NotFound, match="no endpoint 'ghost'"):
        admin.endpoints.show("ghost")
    with pytest.raises(NotFound, match="no project 'nope'"):
        admin.endpoints.list(project="nope")


def test_cli_project_option(serving: Cumulo, churn: str) -> None:
    made = serving.cli("endpoints", "create", "cli-b", "--model", "churn:1", "--min-replicas",
                       "0", "--project", "team-b", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["project"] == "team-b"
    listed = serving.cli("endpoints", "ls", "--project", "team-b")
    assert listed.returncode == 0, listed.stderr
    assert "project" in listed.stdout and "cli-b" in listed.stdout and "team-b" in listed.stdout
    assert "a-churn" not in listed.stdout
    shown = serving.cli("endpoints", "show", "cli-b")
    assert "project: team-b" in " ".join(shown.stdout.split()), shown.stdout
    assert serving.cli("endpoints", "rm", "cli-b").returncode == 0


def test_a_deleted_endpoints_replica_time_is_metered_to_its_project(
        serving: Cumulo, team: dict[str, Any]) -> None:
    admin = serving.client()
    team["dana"].endpoints.delete("a-churn")

    def metered() -> bool:
        rows = admin.costs(by="project", kind="endpoint")["rows"]
        return any(r["project"] == "team-a" and r["count"] >= 1 for r in rows)

    _until(metered, 30, "team-a's endpoint metered")
