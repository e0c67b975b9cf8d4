"""The built-in roles allow what their descriptions promise and nothing more, and combine with
custom grants (they never deny)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cumulo.access.actions import ACTIONS
from cumulo.access.policy import Context, PolicySet, parse_policy
from cumulo.access.roles import ROLES, role
from cumulo.errors import NotFound

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def ctx(**kwargs: Any) -> Context:
    return Context(**{"user": "ann", "now": NOW, **kwargs})


def as_role(name: str) -> PolicySet:
    return PolicySet([(f"role {name}", role(name), None)])


def allowed(name: str, action: str, resource: str = "*", **context: Any) -> bool:
    return as_role(name).decide(action, resource, ctx(**context)).allowed


def test_the_roles_and_their_shape() -> None:
    assert list(ROLES) == ["admin", "developer", "data-scientist", "analyst", "viewer", "invoker"]
    for name, (description, pol) in ROLES.items():
        assert description and pol.name == name
        assert all(s.effect == "allow" for s in pol.statements)  # allow-only: grants add up
        assert parse_policy(pol.document, name=name) == pol  # shown back, it parses again


def test_an_unknown_role_lists_the_roles() -> None:
    with pytest.raises(NotFound, match="no role 'root'; the roles are admin, developer, "
                                       "data-scientist, analyst, viewer, invoker"):
        role("root")


def test_admin_may_do_everything() -> None:
    rules = as_role("admin")
    assert rules.actions_allowed("table/sales/orders", ctx()) == set(ACTIONS)
    decision = rules.decide("audit:Verify", "audit", ctx())
    assert decision.reason == "allowed by statement 1 (everything) of role admin"


def test_developer() -> None:
    for action in ["tables:Write", "files:CreateBucket", "clusters:Delete",
                   "endpoints:Update", "pipelines:Schedule", "models:Register", "models:Delete",
                   "tracking:Write", "sql:Run", "jobs:Submit", "jobs:List", "costs:Read",
                   "tokens:Manage", "users:List", "groups:List", "projects:Read"]:
        assert allowed("developer", action), action
    for action in ["users:Manage", "users:Read", "models:Approve", "policies:Manage",
                   "tables:Grant",
                   "policies:Read", "groups:Manage", "projects:Manage", "audit:Read",
                   "audit:Verify", "costs:ReadAll", "access:Check"]:
        assert not allowed("developer", action), action
    assert allowed("developer", "jobs:Cancel", "job/7", owner="ann")
    assert not allowed("developer", "jobs:Cancel", "job/7", owner="bob")
    assert not allowed("developer", "jobs:Cancel", "job/7")  # owner unknown
    assert allowed("developer", "jobs:Read", "job/7", owner="ann")
    assert not allowed("developer", "jobs:Retry", "job/7", owner="bob")
    assert allowed("developer", "sql:Read", "query/q1", owner="ann")
    assert not allowed("developer", "sql:Read", "query/q1", owner="bob")


def test_data_scientist() -> None:
    for action in ["tables:List", "tables:Read", "sql:Run", "files:ListBuckets", "files:Get",
                   "files:Put", "jobs:Submit", "tracking:Write", "models:Register",
                   "models:Update", "endpoints:Invoke", "clusters:Read", "pipelines:Run",
                   "costs:Read", "tokens:Manage"]:
        assert allowed("data-scientist", action), action
    for action in ["tables:Write", "tables:Create", "files:Delete", "files:CreateBucket",
                   "models:Approve", "models:Delete", "endpoints:Create", "clusters:Create",
                   "pipelines:Create", "pipelines:Schedule", "users:List", "costs:ReadAll"]:
        assert not allowed("data-scientist", action), action
    assert allowed("data-scientist", "jobs:Retry", "job/3", owner="ann")
    assert not allowed("data-scientist", "jobs:Read", "job/3", owner="bob")
    assert not allowed("data-scientist", "sql:Read", "query/q", owner="bob")


def test_analyst() -> None:
    assert allowed("analyst", "tables:Read", "table/sales/orders")
    assert allowed("analyst", "sql:Run", "sql")
    assert not allowed("analyst", "tables:Write", "table/sales/orders")
    assert allowed("analyst", "sql:Read", "query/q", owner="ann")
    assert not allowed("analyst", "sql:Read", "query/q", owner="bob")
    assert as_role("analyst").actions_allowed("*", ctx()) == {
        "tables:List", "tables:Read", "sql:Run", "costs:Read", "tokens:Manage"}


def test_viewer_reads_everything_but_the_audit_log_and_changes_nothing() -> None:
    granted = as_role("viewer").actions_allowed("*", ctx())
    reads = {a for a in ACTIONS if a.endswith((":List", ":Read"))}
    assert granted == ((reads - {"audit:Read", "sql:Read"})
                       | {"tokens:Manage", "files:ListBuckets", "files:Get"})
    assert "costs:Read" in granted and "costs:ReadAll" not in granted
    # a query's results carry their author's row filters and masks: only one's own
    assert allowed("viewer", "sql:Read", "query/q", owner="ann")
    assert not allowed("viewer", "sql:Read", "query/q", owner="bob")


def test_invoker_only_invokes() -> None:
    assert as_role("invoker").actions_allowed("endpoint/churn", ctx()) == {"endpoints:Invoke"}


def test_a_role_and_a_project_grant_add_up() -> None:
    grant = parse_policy({"statements": [{"effect": "allow", "actions": ["models:Approve"],
                                          "resources": ["model/*"]}]}, name="approvers")
    rules = PolicySet([("role developer", role("developer"), None),
                       ("policy approvers", grant, "ml")])
    approve = rules.decide("models:Approve", "model/churn", ctx(project="ml"))
    assert approve.allowed and approve.source == "policy approvers"
    assert not rules.decide("models:Approve", "model/churn", ctx(project="web")).allowed
    assert rules.decide("models:Read", "model/churn", ctx(project="web")).source == (
        "role developer")
