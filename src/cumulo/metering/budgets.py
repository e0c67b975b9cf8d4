"""Budgets: an amount a scope may spend a period, alerts at thresholds, actions past them.

The grammar (``cumulo budgets create``):

- scope: ``all``, ``project:NAME``, ``user:NAME``, ``tag:K=V`` (a job tagged ``K=V``) or
  ``service:NAME`` (job, endpoint, pipeline, notebook, stream, storage, sql, environment);
- ``--alert 50%,80%,100%``: thresholds, in percent of the amount;
- ``--action 100%:stop-new-jobs,scale-endpoints-to-zero``: actions, each at the percent
  before it (an action with none is at 100%).

What to do is decided by :func:`decide`, a pure function of the budget's state, what was
spent and the time (tested with a clock the test controls, like serving/rollout.py): a
threshold alerts once a period, an action is taken once when crossed, and undone when the
period turns or the amount is raised above what was spent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.errors import Conflict, Invalid, NotFound
from cumulo.metering.models import Budget

__all__ = ["ACTIONS", "PERIODS", "SCOPE_KINDS", "SERVICES", "Decision", "Scope", "Work",
           "check_name", "decide", "parse_actions", "parse_amount", "parse_scope",
           "parse_thresholds", "period_days", "period_key"]

PERIODS = ("day", "week", "month")
SCOPE_KINDS = ("all", "project", "user", "tag", "service")
SERVICES = ("job", "endpoint", "pipeline", "notebook", "monitor", "stream", "storage", "sql",
            "environment")
ACTIONS = ("stop-new-jobs", "scale-endpoints-to-zero")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class Scope:
    kind: str  # all | project | user | tag | service
    value: str = ""

    def __str__(self) -> str:
        return "all" if self.kind == "all" else f"{self.kind}:{self.value}"

    def covers(self, work: Work) -> bool:
        """Whether the work (a usage record's, or a job about to be submitted) is in scope."""
        if self.kind == "all":
            return True
        if self.kind == "project":
            return work.project == self.value
        if self.kind == "user":
            return work.user == self.value
        if self.kind == "service":
            return work.service == self.value
        key, _, value = self.value.partition("=")  # tag:K=V matches a tag K=V (or K:V)
        return f"{key}={value}" in work.tags or f"{key}:{value}" in work.tags


@dataclass(frozen=True)
class Work:
    """Whose and what some work is, as scopes see it."""

    service: str
    project: str | None
    user: str | None
    tags: tuple[str, ...] = ()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise Invalid(f"budget name {name!r} must be 1-63 lowercase letters, digits and dashes, "
                      "starting with a letter or digit")
    return name


def parse_scope(text: str) -> Scope:
    """``all``, ``project:NAME``, ``user:NAME``, ``tag:K=V`` or ``service:NAME``."""
    text = text.strip()
    if text == "all":
        return Scope("all")
    kind, sep, value = text.partition(":")
    if kind not in SCOPE_KINDS or kind == "all" or not sep:
        raise Invalid(f"--scope {text!r} is not a scope: use all, project:NAME, user:NAME, "
                      "tag:K=V or service:NAME")
    if not value:
        raise Invalid(f"--scope {text!r} names no {kind}: use {kind}:NAME")
    if kind == "tag" and ("=" not in value or value.startswith("=")):
        raise Invalid(f"--scope {text!r}: a tag scope is tag:KEY=VALUE")
    if kind == "service" and value not in SERVICES:
        raise Invalid(f"--scope {text!r}: unknown service {value!r}; use one of "
                      f"{', '.join(SERVICES)}")
    return Scope(kind, value)


def _percent(text: str, option: str) -> float:
    raw = text.strip()
    number = raw[:-1] if raw.endswith("%") else raw
    try:
        value = float(number)
    except ValueError:
        raise Invalid(f"{option} {raw!r} is not a percent like 80%") from None
    if not 0 < value <= 1000:
        raise Invalid(f"{option} {raw!r} must be above 0% and at most 1000%")
    return value


def parse_thresholds(text: str | None) -> list[float]:
    """``50%,80%,100%`` -> [50.0, 80.0, 100.0]; none given: 100% only."""
    if text is None or not text.strip():
        return [100.0]
    return sorted({_percent(part, "--alert") for part in text.split(",")})


def parse_actions(text: str | None) -> list[dict[str, Any]]:
    """``100%:stop-new-jobs,scale-endpoints-to-zero`` -> each action with the percent it is
    taken at (the last percent given before it; 100% when none was)."""
    if text is None or not text.strip():
        return []
    found: list[dict[str, Any]] = []
    at = 100.0
    for part in text.split(","):
        part = part.strip()
        if ":" in part:
            percent, _, part = part.partition(":")
            at = _percent(percent, "--action")
        if part not in ACTIONS:
            raise Invalid(f"--action: unknown action {part!r}; use {' or '.join(ACTIONS)}")
        if any(a["action"] == part for a in found):
            raise Invalid(f"--action: {part} is given twice")
        found.append({"at": at, "action": part})
    return found


def parse_amount(value: float | str) -> float:
    try:
        amount = float(value)
    except (TypeError, ValueError):
        raise Invalid(f"--amount {value!r} is not a number of dollars") from None
    if not amount > 0 or amount != amount or amount == float("inf"):
        raise Invalid(f"--amount must be more than 0 dollars, not {value!r}")
    return amount


def check_period(period: str) -> str:
    if period not in PERIODS:
        raise Invalid(f"--period {period!r} is not one of {', '.join(PERIODS)}")
    return period


def period_key(period: str, now: datetime) -> str:
    """The period ``now`` falls in: ``2026-12-04`` (day), ``2026-W49`` (ISO week),
    ``2026-12`` (month); all in UTC."""
    if period == "day":
        return now.date().isoformat()
    if period == "week":
        year, week, _ = now.isocalendar()
        return f"{year}-W{week:02d}"
    return now.strftime("%Y-%m")


def period_days(period: str, now: datetime) -> tuple[date, date]:
    """The first and last day of the period ``now`` falls in."""
    today = now.date()
    if period == "day":
        return today, today
    if period == "week":
        start = today - timedelta(days=today.weekday())
        return start, start + timedelta(days=6)
    start = today.replace(day=1)
    following = (start + timedelta(days=32)).replace(day=1)
    return start, following - timedelta(days=1)


@dataclass
class Decision:
    """What to do about a budget now."""

    period_key: str
    turned: bool  # a new period began: what was alerted and done is reset
    alert: list[float] = field(default_factory=list)  # thresholds newly crossed
    take: list[str] = field(default_factory=list)  # actions to take now
    undo: list[str] = field(default_factory=list)  # actions in force to undo now
    percent: float = 0.0

    @property
    def empty(self) -> bool:
        return not (self.turned or self.alert or self.take or self.undo)


def decide(*, period: str, amount: float, thresholds: list[float],
           actions: list[dict[str, Any]], state_key: str | None, alerted: list[float],
           acting: list[str], spent: float, now: datetime) -> Decision:
    """What to do, from the budget, what it did so far this period, what its scope spent this
    period, and the time."""
    key = period_key(period, now)
    turned = state_key is not None and key != state_key
    if turned:  # last period's alerts and actions no longer hold
        undo = list(acting)
        alerted, acting = [], []
    else:
        undo = []
    percent = spent / amount * 100.0 if amount > 0 else 0.0
    decision = Decision(period_key=key, turned=turned, undo=undo, percent=percent)
    decision.alert = [t for t in thresholds if percent >= t and t not in alerted]
    due = {a["action"] for a in actions if percent >= float(a["at"])}
    decision.take = [a["action"] for a in actions
                     if a["action"] in due and a["action"] not in acting]
    # Raised above what was spent (or the action dropped): what is in force is undone.
    decision.undo += [a for a in acting if a not in due]
    return decision


# --- budgets' rows ----------------------------------------------------------------------------


def get_budget(session: Session, name: str) -> Budget:
    budget = session.scalar(select(Budget).where(Budget.name == name))
    if budget is None:
        raise NotFound(f"no budget named {name!r}; 'cumulo budgets ls' lists them")
    return budget


def list_budgets(session: Session) -> list[Budget]:
    return list(session.scalars(select(Budget).order_by(Budget.name)))


def ensure_new(session: Session, name: str) -> None:
    if session.scalar(select(Budget.id).where(Budget.name == name)) is not None:
        raise Conflict(f"budget {name!r} exists; 'cumulo budgets update {name}' changes it")


def check_scope(session: Session, text: str) -> Scope:
    """A scope, parsed, whose project or user exists."""
    from cumulo.access.models import User
    from cumulo.access.projects import find_project

    scope = parse_scope(text)
    if scope.kind == "project":
        find_project(session, scope.value)  # NotFound names it
    elif scope.kind == "user" and session.scalar(
            select(User.id).where(User.name == scope.value)) is None:
        raise NotFound(f"--scope {text!r}: no user named {scope.value!r}")
    return scope


def create_budget(session: Session, *, name: str, amount: float | str, period: str,
                  scope: str, alert: str | None, action: str | None, webhook: str | None,
                  created_by: int | None) -> Budget:
    """Check everything, then write the budget; nothing is written if a check fails."""
    from cumulo.metering.alerts import check_webhook

    check_name(name)
    budget = Budget(name=name, amount=parse_amount(amount), period=check_period(period),
                    scope=str(check_scope(session, scope)), thresholds=parse_thresholds(alert),
                    actions=parse_actions(action), webhook=check_webhook(webhook),
                    created_by=created_by, alerted=[], acting=[], spent=0.0, scaled={})
    ensure_new(session, name)
    session.add(budget)
    session.commit()
    return budget


def update_budget(session: Session, name: str, *, amount: float | str | None = None,
                  alert: str | None = None, action: str | None = None,
                  webhook: str | None = None) -> Budget:
    """Change a budget's amount, alerts, actions or webhook (``""`` clears the webhook);
    a raise above what was spent undoes its actions at the next check."""
    from cumulo.db import utcnow
    from cumulo.metering.alerts import check_webhook

    budget = get_budget(session, name)
    new_amount = parse_amount(amount) if amount is not None else budget.amount
    thresholds = parse_thresholds(alert) if alert is not None else budget.thresholds
    actions = parse_actions(action) if action is not None else budget.actions
    hook = check_webhook(webhook) if webhook is not None else budget.webhook
    budget.amount, budget.thresholds, budget.actions, budget.webhook = (
        new_amount, thresholds, actions, hook)
    # Thresholds now above what was spent may alert again when crossed again.
    percent = budget.spent / new_amount * 100.0
    budget.alerted = [t for t in budget.alerted if t <= percent]
    budget.updated_at = utcnow()
    session.commit()
    return budget


def budget_doc(budget: Budget) -> dict[str, Any]:
    return {"name": budget.name, "amount": budget.amount, "period": budget.period,
            "scope": budget.scope, "alerts": budget.thresholds, "actions": budget.actions,
            "webhook": budget.webhook, "spent": budget.spent,
            "percent": round(budget.spent / budget.amount * 100.0, 2) if budget.amount else 0,
            "period_key": budget.period_key, "alerted": budget.alerted,
            "acting": budget.acting, "scaled": sorted(budget.scaled or {}),
            "evaluated_at": budget.evaluated_at.isoformat() if budget.evaluated_at else None,
            "created_at": budget.created_at.isoformat(),
            "updated_at": budget.updated_at.isoformat() if budget.updated_at else None}
