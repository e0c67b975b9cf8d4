"""Policy documents and decisions: patterns, IAM's deny-wins rule, every condition, strict
parsing with messages that name the statement and field, and a large set checked against a
plain reading of the rules. Pure functions; the tests set the clock."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cumulo.access.actions import ACTIONS, RESOURCE_KINDS, SERVICES, known, matches
from cumulo.access.policy import (
    MAX_DOCUMENT_BYTES,
    Context,
    Decision,
    Policy,
    PolicySet,
    parse_policy,
)
from cumulo.errors import Invalid, TooLarge

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)  # a Wednesday, noon


def stmt(effect: str, actions: list[str], resources: list[str], *, sid: str | None = None,
         **conditions: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"effect": effect, "actions": actions, "resources": resources}
    if sid:
        out["sid"] = sid
    if conditions:
        out["conditions"] = conditions
    return out


def policy(*statements: dict[str, Any], name: str = "p") -> Policy:
    return parse_policy({"statements": list(statements)}, name=name)


def ctx(**kwargs: Any) -> Context:
    return Context(**{"user": "ann", "now": NOW, **kwargs})


def one(*statements: dict[str, Any]) -> PolicySet:
    return PolicySet([("policy p", policy(*statements), None)])


# -- the registry and patterns ---------------------------------------------------------------


def test_the_registry() -> None:
    assert len(ACTIONS) == 102 and all(n.count(":") == 1 for n in ACTIONS)
    assert {"files", "tables", "sql", "access", "audit", "costs", "tokens"} <= SERVICES
    assert {"bucket", "table", "query", "audit", "token"} <= set(RESOURCE_KINDS)
    assert known("tables:Read") and known("tables:*") and known("*") and known("*:Read")
    assert known("models:App*") and known("jobs:?ancel")
    assert not known("tables:Reed") and not known("nope:*") and not known("tables:read")


def test_wildcards() -> None:
    assert matches("table/sales/*", "table/sales/orders")
    assert matches("table/sales/*", "table/sales/2026/orders")  # * crosses /
    assert matches("table/sales/*", "table/sales/")
    assert not matches("table/sales/*", "table/sale")
    assert matches("table/s?les/x", "table/sales/x")
    assert not matches("table/s?les/x", "table/sles/x")
    assert matches("table/[sales]", "table/[sales]")  # [ is literal, not a class
    assert not matches("table/[sales]", "table/s")
    assert matches("bucket/a.b", "bucket/a.b") and not matches("bucket/a.b", "bucket/axb")
    assert matches("bucket/(x|y)+", "bucket/(x|y)+") and not matches("bucket/(x|y)+", "bucket/x")
    assert not matches("table/Sales", "table/sales")  # case-sensitive
    assert matches("*:Read", "tables:Read") and not matches("*:Read", "tables:ReadAll")
    assert matches("*", "") and matches("a**b", "ab") and matches("*b*", "abc")


def test_many_stars_on_a_long_name_stay_quick() -> None:
    # A backtracking translation would try every split of the name: effectively forever.
    assert not matches("*a*a*a*a*a*a*a*a*a*a*a*b", "a" * 3000)
    assert matches("*a*a*a*a*a*a*a*a*a*a*a*b", "a" * 3000 + "b")


def _glob(pattern: str, value: str) -> bool:
    """The reference: a textbook dynamic program over pattern and value."""
    p, v = len(pattern), len(value)
    ok = [[False] * (v + 1) for _ in range(p + 1)]
    ok[0][0] = True
    for i in range(1, p + 1):
        char = pattern[i - 1]
        ok[i][0] = ok[i - 1][0] and char == "*"
        for j in range(1, v + 1):
            if char == "*":
                ok[i][j] = ok[i - 1][j] or ok[i][j - 1]
            else:
                ok[i][j] = ok[i - 1][j - 1] and char in ("?", value[j - 1])
    return ok[p][v]


def test_wildcards_agree_with_the_reference() -> None:
    rng = random.Random(19)
    for _ in range(5000):
        pattern = "".join(rng.choices("ab*?/[.", k=rng.randint(0, 10)))
        value = "".join(rng.choices("ab/[.", k=rng.randint(0, 12)))
        if rng.random() < 0.5:  # a value made from the pattern, so that half may match
            value = "".join("".join(rng.choices("ab/", k=rng.randint(0, 3))) if c == "*"
                            else rng.choice("ab") if c == "?" else c for c in pattern)
        assert matches(pattern, value) == _glob(pattern, value), (pattern, value)


# -- deciding ------------------------------------------------------------------------------


def test_an_allow_names_its_statement() -> None:
    rules = one(stmt("allow", ["tables:List"], ["*"]),
                stmt("allow", ["tables:Read"], ["table/sales/*"], sid="read-sales"),
                stmt("allow", ["tables:*"], ["table/sales/*"]))
    decision = rules.decide("tables:Read", "table/sales/orders", ctx())
    assert decision == Decision(True, "allow", "policy p", 2, "read-sales", "tables:Read",
                                "table/sales/orders")
    assert decision.reason == "allowed by statement 2 (read-sales) of policy p"
    assert str(rules.decide("tables:Write", "table/sales/orders", ctx())) == (
        "allowed by statement 3 of policy p")


def test_the_implicit_deny_names_the_action_and_resource() -> None:
    decision = one(stmt("allow", ["tables:Read"], ["table/sales/*"])).decide(
        "tables:Write", "table/sales/orders", ctx())
    assert not decision.allowed and decision.effect is None and decision.source is None
    assert decision.reason == "no statement allows tables:Write on table/sales/orders"
    empty = PolicySet().decide("sql:Run", "sql", ctx())
    assert empty.reason == "no statement allows sql:Run on sql"


@pytest.mark.parametrize("deny_first", [True, False])
def test_an_explicit_deny_wins_wherever_it_is(deny_first: bool) -> None:
    allow = ("role admin", policy(stmt("allow", ["*"], ["*"])), None)
    deny = ("policy guard", policy(stmt("allow", ["tables:List"], ["*"]),
                                   stmt("deny", ["tables:Drop", "tables:Write"],
                                        ["table/prod/*"], sid="no-prod")), None)
    rules = PolicySet([deny, allow] if deny_first else [allow, deny])
    decision = rules.decide("tables:Drop", "table/prod/orders", ctx())
    assert not decision.allowed and decision.effect == "deny"
    assert decision.reason == "denied by statement 2 (no-prod) of policy guard"
    assert rules.decide("tables:Drop", "table/dev/orders", ctx()).allowed
    # within one policy too
    inside = one(stmt("allow", ["tables:*"], ["*"]), stmt("deny", ["tables:Drop"], ["*"]))
    assert inside.decide("tables:Drop", "table/a/b", ctx()).statement == 2


def test_a_deny_that_does_not_apply_leaves_the_allow() -> None:
    rules = one(stmt("deny", ["*"], ["*"], not_source_ip=["10.0.0.0/8"]),
                stmt("allow", ["*"], ["*"]))
    assert rules.decide("jobs:Submit", "job/1", ctx(source_ip="10.2.3.4")).allowed
    outside = rules.decide("jobs:Submit", "job/1", ctx(source_ip="8.8.8.8"))
    assert not outside.allowed and outside.statement == 1
    assert not rules.decide("jobs:Submit", "job/1", ctx()).allowed  # no source: deny applies


def test_action_patterns() -> None:
    rules = one(stmt("allow", ["*:Read"], ["*"]), stmt("allow", ["models:App*"], ["model/m"]))
    assert rules.decide("clusters:Read", "cluster/c", ctx()).allowed
    assert not rules.decide("clusters:Delete", "cluster/c", ctx()).allowed
    assert rules.decide("models:Approve", "model/m", ctx()).statement == 2
    assert not rules.decide("models:Approve", "model/n", ctx()).allowed
    # an action outside the registry is decided too, and simply matches fewer statements
    assert rules.decide("future:Read", "x", ctx()).allowed
    assert not rules.decide("future:Write", "x", ctx()).allowed


def test_resource_patterns_of_every_shape() -> None:
    rules = one(stmt("allow", ["files:Get"], ["bucket/raw/2026/*", "bucket/*/public/*",
                                              "bucket/logs/day-??", "bucket/exact"]))
    allowed = {r for r in ["bucket/raw/2026/a.csv", "bucket/x/public/y", "bucket/logs/day-01",
                           "bucket/exact", "bucket/raw/2025/a.csv", "bucket/logs/day-001",
                           "bucket/exact/more", "bucket/[x]/public/y"]
               if rules.decide("files:Get", r, ctx()).allowed}
    assert allowed == {"bucket/raw/2026/a.csv", "bucket/x/public/y", "bucket/logs/day-01",
                       "bucket/exact", "bucket/[x]/public/y"}


# -- conditions ------------------------------------------------------------------------------


def _allowed(conditions: dict[str, Any], **context: Any) -> bool:
    rules = one(stmt("allow", ["sql:Run"], ["sql"], **conditions))
    return rules.decide("sql:Run", "sql", ctx(**context)).allowed


def test_source_ip_with_ipv4_and_ipv6_networks() -> None:
    nets = {"source_ip": ["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"]}
    assert _allowed(nets, source_ip="10.200.0.1")
    assert _allowed(nets, source_ip="127.0.0.1")
    assert not _allowed(nets, source_ip="127.0.0.2")
    assert _allowed(nets, source_ip="2001:db8:1::5")
    assert not _allowed(nets, source_ip="2001:db9::1")
    assert _allowed(nets, source_ip="::ffff:10.1.1.1")  # IPv4 through an IPv6 socket
    assert not _allowed(nets)  # no source: not satisfied
    assert not _allowed(nets, source_ip="not-an-address")
    assert _allowed({"source_ip": ["10.1.2.3/8"]}, source_ip="10.9.9.9")  # host bits ignored


def test_not_source_ip() -> None:
    cond = {"not_source_ip": ["192.168.0.0/16", "::1"]}
    assert _allowed(cond, source_ip="10.0.0.1")
    assert not _allowed(cond, source_ip="192.168.4.4")
    assert not _allowed(cond, source_ip="::1")
    assert _allowed(cond)  # no source: satisfied


def test_after_and_before() -> None:
    window = {"after": "2026-06-01T00:00:00Z", "before": "2026-07-01T00:00:00+02:00"}
    assert _allowed(window)
    assert not _allowed(window, now=datetime(2026, 5, 31, 23, 59, tzinfo=UTC))
    assert _allowed(window, now=datetime(2026, 6, 1, tzinfo=UTC))  # after is inclusive
    assert _allowed(window, now=datetime(2026, 6, 30, 21, 59, tzinfo=UTC))
    assert not _allowed(window, now=datetime(2026, 6, 30, 22, 0, tzinfo=UTC))  # before is not
    assert _allowed({"after": "2026-06-10T11:00:00"})  # a time without a zone is UTC


def test_hours_including_a_window_over_midnight() -> None:
    day, night = {"hours_utc": "09:00-18:00"}, {"hours_utc": "22:00-06:00"}
    at = {h: NOW.replace(hour=h, minute=m) for h, m in [(8, 59), (9, 0), (17, 59), (18, 0),
                                                         (23, 30), (5, 59), (6, 0), (21, 59)]}
    assert [_allowed(day, now=at[h]) for h in (8, 9, 17, 18)] == [False, True, True, False]
    assert [_allowed(night, now=at[h]) for h in (23, 5, 6, 21)] == [True, True, False, False]
    assert _allowed({"hours_utc": "00:00-24:00"}, now=at[23])
    # the window is read in UTC: 10:00 in Tokyo is 01:00 UTC
    assert not _allowed(day, now=datetime(2026, 6, 10, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo")))


def test_weekdays_in_utc() -> None:
    weekdays = {"weekdays": ["mon", "tue", "wed", "thu", "fri"]}
    assert _allowed(weekdays)  # Wednesday
    assert not _allowed(weekdays, now=datetime(2026, 6, 13, 12, tzinfo=UTC))  # Saturday
    assert _allowed({"weekdays": ["SAT"]}, now=datetime(2026, 6, 13, tzinfo=UTC))
    # Friday 23:00 in New York is Saturday in UTC
    friday_night = datetime(2026, 6, 12, 23, 0, tzinfo=ZoneInfo("America/New_York"))
    assert not _allowed(weekdays, now=friday_night)


def test_owner_self() -> None:
    cond = {"owner": "self"}
    assert _allowed(cond, owner="ann")
    assert not _allowed(cond, owner="bob")
    assert not _allowed(cond)  # owner unknown: not satisfied


def test_all_conditions_must_hold() -> None:
    both = {"source_ip": ["10.0.0.0/8"], "owner": "self", "weekdays": ["wed"]}
    assert _allowed(both, source_ip="10.0.0.1", owner="ann")
    assert not _allowed(both, source_ip="10.0.0.1", owner="bob")
    assert not _allowed(both, source_ip="11.0.0.1", owner="ann")


def test_project_scoped_entries() -> None:
    rules = PolicySet([
        ("policy ml-team", policy(stmt("allow", ["models:Approve"], ["*"])), "ml"),
        ("policy ml-guard", policy(stmt("deny", ["models:Delete"], ["*"])), "ml"),
        ("role developer", policy(stmt("allow", ["models:Read", "models:Delete"], ["*"])), None),
    ])
    assert rules.decide("models:Approve", "model/m", ctx(project="ml")).source == "policy ml-team"
    assert not rules.decide("models:Approve", "model/m", ctx(project="web")).allowed
    assert not rules.decide("models:Approve", "model/m", ctx()).allowed
    assert not rules.decide("models:Delete", "model/m", ctx(project="ml")).allowed
    assert rules.decide("models:Delete", "model/m", ctx(project="web")).source == "role developer"


def test_actions_allowed() -> None:
    rules = one(stmt("allow", ["tables:*"], ["table/sales/*"]),
                stmt("deny", ["tables:Drop", "tables:Grant"], ["*"]),
                stmt("allow", ["sql:Run"], ["sql"]),
                stmt("allow", ["jobs:Cancel"], ["*"], owner="self"))
    assert rules.actions_allowed("table/sales/orders", ctx()) == {
        "tables:List", "tables:Read", "tables:Write", "tables:Create", "tables:CreateDatabase",
        "tables:DropDatabase"}
    assert rules.actions_allowed("job/7", ctx(owner="ann")) == {"jobs:Cancel"}
    assert rules.actions_allowed("job/7", ctx(owner="bob")) == set()
    assert rules.actions_allowed("table/sales/x", ctx(), ["tables:Read", "tables:Drop"]) == {
        "tables:Read"}


def test_a_naive_now_is_utc_and_an_aware_one_is_converted() -> None:
    assert Context(user="a", now=datetime(2026, 1, 1, 12)).now == datetime(2026, 1, 1, 12,
                                                                          tzinfo=UTC)
    assert Context(user="a").now.tzinfo is UTC


# -- parsing -------------------------------------------------------------------------------


def test_a_policy_keeps_its_document_and_reads_json_text() -> None:
    document = {"statements": [stmt("allow", ["tables:Read"], ["table/a/*"], sid="s",
                                    hours_utc="09:00-17:00", weekdays=["mon"])]}
    parsed = parse_policy(json.dumps(document), name="p")
    assert parsed.document == document and parsed == parse_policy(document, name="p")
    (only,) = parsed.statements
    assert (only.index, only.sid, only.effect, only.label) == (1, "s", "allow", "statement 1 (s)")
    assert only.conditions is not None and only.conditions.hours_utc == (540, 1020)
    assert parse_policy(json.dumps(document).encode()).name == ""


GOOD = {"effect": "allow", "actions": ["tables:Read"], "resources": ["*"]}


def _with(**changes: Any) -> dict[str, Any]:
    out = {**GOOD, **changes}
    return {"statements": [GOOD, {k: v for k, v in out.items() if v is not None}]}


def _conditioned(**conditions: Any) -> dict[str, Any]:
    return _with(conditions=conditions)


# (document, statement, field, words the message must hold)
MALFORMED: list[tuple[object, int | None, str | None, str]] = [
    ([GOOD], None, None, "must be a JSON object"),
    ("[1, 2", None, None, "not valid JSON"),
    ({"statements": [GOOD], "version": 1}, None, "version", "unknown key"),
    ({}, None, "statements", "missing"),
    ({"statements": []}, None, "statements", "is empty"),
    ({"statements": GOOD}, None, "statements", "must be a list"),
    ({"statements": [GOOD, "allow"]}, 2, None, "must be an object"),
    (_with(sid=7), 2, "sid", "short label"),
    (_with(Effect="allow"), 2, "Effect", "did you mean 'effect'"),
    (_with(effect=None), 2, "effect", "missing: give 'allow' or 'deny'"),
    (_with(effect="permit"), 2, "effect", "'permit' is not an effect"),
    (_with(effect="Deny"), 2, "effect", "lower case"),
    (_with(actions=None), 2, "actions", "missing"),
    (_with(actions=[]), 2, "actions", "is empty"),
    (_with(actions="tables:Read"), 2, "actions", "write ['tables:Read']"),
    (_with(actions=["tables:Read", 3]), 2, "actions", "item 2 must be a non-empty string"),
    (_with(actions=["tables:Reed"]), 2, "actions", "did you mean 'tables:Read'"),
    (_with(actions=["nothing:*"]), 2, "actions", "matches no action"),
    (_with(resources=None), 2, "resources", "missing"),
    (_with(resources=[]), 2, "resources", "is empty"),
    (_with(resources=[""]), 2, "resources", "non-empty string"),
    (_with(resources=["tables/sales/*"]), 2, "resources", "did you mean 'table'"),
    (_with(resources=["/x"]), 2, "resources", "not a kind of resource"),
    (_with(conditions=["owner"]), 2, "conditions", "must be an object"),
    (_conditioned(source_ip=["10.0.0.0/33"]), 2, "conditions.source_ip", "'10.0.0.0/33'"),
    (_conditioned(source_ip="10.0.0.0/8"), 2, "conditions.source_ip", "write ['10.0.0.0/8']"),
    (_conditioned(not_source_ip=["fe80::zz"]), 2, "conditions.not_source_ip", "IP address"),
    (_conditioned(not_source_ip=[]), 2, "conditions.not_source_ip", "is empty"),
    (_conditioned(after="next week"), 2, "conditions.after", "ISO 8601"),
    (_conditioned(before=20270101), 2, "conditions.before", "not a date and time"),
    (_conditioned(after="2027-01-01T00:00:00Z", before="2026-01-01T00:00:00Z"), 2,
     "conditions.before", "never apply"),
    (_conditioned(hours_utc="9-17"), 2, "conditions.hours_utc", "HH:MM-HH:MM"),
    (_conditioned(hours_utc="09:00-25:00"), 2, "conditions.hours_utc", "HH:MM-HH:MM"),
    (_conditioned(hours_utc="09:00-09:00"), 2, "conditions.hours_utc", "different ends"),
    (_conditioned(weekdays=["mon", "funday"]), 2, "conditions.weekdays", "item 2, 'funday'"),
    (_conditioned(weekdays="mon"), 2, "conditions.weekdays", "must be a list"),
    (_conditioned(owner="me"), 2, "conditions.owner", "only value is 'self'"),
    (_conditioned(ip=["10.0.0.0/8"]), 2, "conditions.ip", "unknown condition"),
]


@pytest.mark.parametrize(("document", "statement", "field", "words"), MALFORMED)
def test_a_malformed_policy_is_refused_with_the_place_and_the_fix(
        document: object, statement: int | None, field: str | None, words: str) -> None:
    with pytest.raises(Invalid) as raised:
        parse_policy(document, name="sales-read")
    error = raised.value
    assert words in error.message
    assert error.message.startswith("policy 'sales-read'")
    assert error.details["statement"] == statement and error.details["field"] == field
    assert error.details["policy"] == "sales-read"
    if statement is not None:
        assert f"statement {statement}" in error.message
    if field is not None:
        assert f"field {field!r}" in error.message


def test_the_message_names_the_sid_when_there_is_one() -> None:
    bad = {"statements": [{**GOOD, "sid": "read-sales", "actions": ["tables:Reed"]}]}
    with pytest.raises(Invalid, match=r"^statement 1 \('read-sales'\), field 'actions': item 1, "
                                      r"'tables:Reed', matches no action; did you mean "
                                      r"'tables:Read'\?$"):
        parse_policy(bad)


def test_size_limits() -> None:
    def statement(n_actions: int = 1, n_resources: int = 1) -> dict[str, Any]:
        return {"effect": "allow", "actions": ["tables:Read"] * n_actions,
                "resources": [f"table/db/t{i}" for i in range(n_resources)]}

    parse_policy({"statements": [statement(100, 100)] * 3})
    parse_policy({"statements": [statement()] * 100})
    with pytest.raises(Invalid, match="101 statements; at most 100") as raised:
        parse_policy({"statements": [statement()] * 101})
    assert raised.value.details["field"] == "statements"
    with pytest.raises(Invalid, match=r"statement 1, field 'actions': has 101 items; at most 100"):
        parse_policy({"statements": [statement(n_actions=101)]})
    with pytest.raises(Invalid, match=r"field 'resources': has 101 items; at most 100"):
        parse_policy({"statements": [statement(n_resources=101)]})
    big = {"statements": [{"effect": "allow", "actions": ["files:Get"],
                           "resources": [f"bucket/b/{'k' * 1000}{i}" for i in range(70)]}]}
    with pytest.raises(TooLarge, match="at most 64 KiB"):
        parse_policy(big, name="big")
    with pytest.raises(TooLarge):
        parse_policy(" " * (MAX_DOCUMENT_BYTES + 1) + json.dumps({"statements": [GOOD]}))


def test_a_document_that_is_not_json_is_refused() -> None:
    with pytest.raises(Invalid, match="not a JSON document"):
        parse_policy({"statements": [{**GOOD, "sid": datetime(2026, 1, 1)}]})
    with pytest.raises(Invalid, match="not UTF-8"):
        parse_policy(b"\xff\xfe")


# -- a large set, checked against a plain reading of the rules --------------------------------


def _reference(entries: list[tuple[str, Policy, str | None]], action: str, resource: str,
               context: Context) -> tuple[bool, str | None, str | None, int | None]:
    """Every statement in order: the first deny that applies, else the first allow."""
    first_allow = None
    for label, pol, project in entries:
        for s in pol.statements:
            applies = (any(matches(a, action) for a in s.actions)
                       and any(matches(r, resource) for r in s.resources)
                       and (project is None or project == context.project)
                       and (s.conditions is None or s.conditions.hold(context)))
            if applies and s.effect == "deny":
                return False, "deny", label, s.index
            if applies and first_allow is None:
                first_allow = (True, "allow", label, s.index)
    return first_allow or (False, None, None, None)


def _random_policies(rng: random.Random) -> list[tuple[str, Policy, str | None]]:
    verbs = list(ACTIONS)
    action_choices = [*verbs, "tables:*", "files:*", "*:Read", "*:List", "jobs:*", "models:?pdate"]
    resources = ([f"table/db{d}/t{t}" for d in range(10) for t in range(10)]
                 + [f"table/db{d}/*" for d in range(10)]
                 + [f"bucket/b{b}/*" for b in range(10)] + ["bucket/b?/raw/*", "table/*/t1"]
                 + ["job/*", "model/m*", "*"])
    entries = []
    for i in range(1000):
        statements = []
        for _ in range(3):
            conditions: dict[str, Any] = {}
            if rng.random() < 0.1:
                conditions["source_ip"] = ["10.0.0.0/8"]
            if rng.random() < 0.1:
                conditions["owner"] = "self"
            statements.append(stmt("deny" if rng.random() < 0.05 else "allow",
                                   rng.sample(action_choices, rng.randint(1, 3)),
                                   rng.sample(resources, rng.randint(1, 3)), **conditions))
        project = f"proj{i % 7}" if rng.random() < 0.2 else None
        entries.append((f"policy source{i % 100}", policy(*statements, name=f"p{i}"), project))
    return entries


def test_a_thousand_policies_from_a_hundred_sources_decide_as_the_rules_say() -> None:
    rng = random.Random(19)
    entries = _random_policies(rng)
    rules = PolicySet(entries)
    assert rules.statements == 3000
    names = list(ACTIONS)
    resources = ([f"table/db{d}/t{t}" for d in range(10) for t in range(12)]
                 + [f"bucket/b{b}/raw/x.csv" for b in range(12)] + ["job/1", "model/m1", "sql"])
    outcomes = set()
    for _ in range(3000):
        action, resource = rng.choice(names), rng.choice(resources)
        context = ctx(source_ip=rng.choice([None, "10.1.1.1", "8.8.8.8"]),
                      owner=rng.choice([None, "ann", "bob"]),
                      project=rng.choice([None, "proj1", "proj2"]))
        decision = rules.decide(action, resource, context)
        got = (decision.allowed, decision.effect, decision.source, decision.statement)
        assert got == _reference(entries, action, resource, context), (action, resource, context)
        outcomes.add(decision.effect)
    assert outcomes == {"allow", "deny", None}  # the sample exercised every kind of answer
