"""The costs' background work: storage samples, SQL metering, budgets and anomalies.

:class:`CostWatch` runs on a thread of its own, every ``budget_check_seconds``: it samples
storage when ``storage_sample_seconds`` have passed, meters finished SQL queries, then checks
each budget (:func:`cumulo.metering.budgets.decide`) and the day's cost for an anomaly
(:func:`cumulo.metering.forecast.anomaly`), and does what they say: alerts
(:mod:`cumulo.metering.alerts`), and the budgets' actions, each written to the audit log.
Nothing here is on a request's path: a job submission only reads which budgets stop new jobs
(:func:`refuse_stopped_jobs`, one small query).

With metering off (the setting ``metering``: :func:`cumulo.metering.usage.metering_on`) a round
only moves the samplers' marks, so nothing of that time is billed later; budgets and anomalies
are neither checked nor enforced.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cumulo.access import projects
from cumulo.access.models import User
from cumulo.access.users import user_names
from cumulo.config import Prices, Settings
from cumulo.db import utcnow
from cumulo.errors import Conflict, CumuloError, QuotaExceeded
from cumulo.metering import alerts, budgets, forecast, sampler, sheets, usage
from cumulo.metering.models import Budget, MeterMark, UsageRecord
from cumulo.principal import Principal
from cumulo.storage.backends import Backend
from cumulo.storage.requests import TALLY

if TYPE_CHECKING:
    from cumulo.access.trail import Trail

__all__ = ["CostWatch", "Submitted", "daily_costs", "refuse_stopped_jobs", "spent"]

log = logging.getLogger("cumulo.metering")


class Submitted(Protocol):
    """A job about to be queued, as compute's submission guards are given it."""

    @property
    def user(self) -> str: ...
    @property
    def project(self) -> str | None: ...
    @property
    def tags(self) -> tuple[str, ...]: ...


def refuse_stopped_jobs(session: Session, job: Submitted) -> None:
    """A submission guard: refuse a job in the scope of a budget whose stop-new-jobs is in
    force, naming the budget and how to lift it."""
    if not usage.metering_on():  # budgets are not checked, so none is enforced either
        return
    stopping = [b for b in session.scalars(select(Budget)) if "stop-new-jobs" in b.acting]
    if not stopping:
        return
    work = budgets.Work(service=usage.service_of_tags("job", job.tags), project=job.project,
                        user=job.user, tags=tuple(job.tags))
    for budget in stopping:
        if budgets.parse_scope(budget.scope).covers(work):
            raise QuotaExceeded(
                f"budget {budget.name!r} ({budget.scope}, ${budget.amount:g} a "
                f"{budget.period}) has spent ${budget.spent:.2f} and stops new jobs in its "
                f"scope until the {budget.period} turns; raise it with 'cumulo budgets update "
                f"{budget.name} --amount N' or remove it",
                details={"budget": budget.name, "scope": budget.scope,
                         "amount": budget.amount, "spent": budget.spent})


def _sheet(settings: Settings, name: str) -> Prices | None:
    """The prices of the own sheet, or None to use the cost each record was written with."""
    return sheets.own_sheet(settings.prices, settings.hardware) if name == "own" else None


def _cost(row: Any, own: Prices | None) -> float:
    if own is None:
        return float(row.cost_usd)
    return usage.price(own, cpu_seconds=row.cpu_seconds, memory_gb_seconds=row.memory_gb_seconds,
                       gpu_seconds=row.gpu_seconds, quantities=row.quantities)


_COLUMNS = (UsageRecord.day, UsageRecord.kind, UsageRecord.tags, UsageRecord.user_id,
            UsageRecord.project, UsageRecord.cost_usd, UsageRecord.cpu_seconds,
            UsageRecord.memory_gb_seconds, UsageRecord.gpu_seconds, UsageRecord.quantities)


def daily_costs(session: Session, settings: Settings, *, start: str, end: str,
                scope: budgets.Scope | None = None, sheet: str | None = None
                ) -> dict[str, float]:
    """Dollars by day (YYYY-MM-DD) from ``start`` to ``end``, of the work in ``scope``, by
    ``sheet`` (the settings' by default). Checked every minute for every budget, so what SQL
    can narrow down it does (a sum by day, a project's or a user's records), and only the
    columns needed are read."""
    own = _sheet(settings, sheet or settings.cost_sheet)
    everything = scope is None or scope.kind == "all"
    in_days = (UsageRecord.day >= start, UsageRecord.day <= end)
    if everything and own is None:
        return {day: float(total or 0.0) for day, total in session.execute(
            select(UsageRecord.day, func.sum(UsageRecord.cost_usd)).where(*in_days)
            .group_by(UsageRecord.day))}
    query = select(*_COLUMNS).where(*in_days)
    if scope is not None and scope.kind == "project":
        query = query.where(UsageRecord.project == scope.value)
    elif scope is not None and scope.kind == "user":
        query = query.where(UsageRecord.user_id == select(User.id).where(
            User.name == scope.value).scalar_subquery())
    elif scope is not None and scope.kind == "service":
        kind = "job" if scope.value in ("pipeline", "notebook", "monitor") else scope.value
        query = query.where(UsageRecord.kind == kind)
    found = session.execute(query).all()
    names = (user_names(session, (r.user_id for r in found))
             if scope is not None and scope.kind == "user" else {})
    days: dict[str, float] = defaultdict(float)
    for row in found:
        if not everything:
            assert scope is not None
            work = budgets.Work(service=usage.service_of_tags(row.kind, row.tags or ()),
                                project=row.project,
                                user=names.get(row.user_id) if row.user_id else None,
                                tags=tuple(row.tags or ()))
            if not scope.covers(work):
                continue
        days[row.day] += _cost(row, own)
    return dict(days)


def spent(session: Session, settings: Settings, budget: Budget, now: datetime) -> float:
    """What the budget's scope spent in the period ``now`` falls in."""
    first, last = budgets.period_days(budget.period, now)
    return sum(daily_costs(session, settings, start=first.isoformat(), end=last.isoformat(),
                           scope=budgets.parse_scope(budget.scope)).values())


class CostWatch:
    """Samples, meters, and checks budgets and anomalies, on a thread of its own."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], storage: Backend,
                 *, trail: Trail | None = None,
                 endpoints_changed: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.trail = trail
        self.endpoints_changed = endpoints_changed
        self._lock = threading.Lock()  # one check at a time: the loop's, or one asked for
        self._sampling = threading.Lock()  # one storage sample at a time
        self._requests_since = utcnow()  # S3 requests tallied since then are not written yet
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sender = alerts.WebhookSender(
            sessions, allow_internal=settings.allow_internal_urls,
            timeout=settings.webhook_timeout_seconds, attempts=settings.webhook_attempts)

    def start(self) -> None:
        self.sender.start()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="cost-watch")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.sender.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.budget_check_seconds):
            try:
                self.tick()
            except Exception:  # a bad round must not end the watch
                log.exception("metering: checking costs failed")

    def tick(self, *, now: datetime | None = None) -> dict[str, Any]:
        """One round: sample storage if due, meter SQL, check budgets and anomalies."""
        now = now or utcnow()
        if not usage.metering_on():
            TALLY.take()  # not billed, now or later
            self._requests_since = now
            with self._sampling, self.sessions() as session:
                sampler.pass_over(session, now=now)
            return {"storage_records": 0, "sql_records": 0, "budgets": [], "anomaly": None}
        # Sampling (a listing of folders, perhaps long) holds the samplers' lock only: a
        # budget made or changed meanwhile is checked at once.
        with self._sampling, self.sessions() as session:
            mark = session.get(MeterMark, "storage")
            sampled = 0
            if mark is None or (now - mark.at).total_seconds() >= \
                    self.settings.storage_sample_seconds:
                sampled = sampler.sample_storage(session, self.storage, self.settings.prices,
                                                 now=now)
            queries = sampler.meter_sql(session, self.settings.prices, now=now)
            self._meter_requests(session, now)
        with self._lock, self.sessions() as session:
            done = self.check_budgets(session, now=now)
            anomaly = self.check_anomaly(session, now=now)
        return {"storage_records": sampled, "sql_records": queries, "budgets": done,
                "anomaly": anomaly}

    def sample_now(self, *, now: datetime | None = None) -> int:
        """Sample storage now, whenever the last sample was (``cumulo costs sample``)."""
        if not usage.metering_on():
            raise Conflict("metering is off on this server (setting metering, "
                           "CUMULO_METERING=false): nothing is sampled; turn it on and restart "
                           "the server to sample storage")
        with self._sampling, self.sessions() as session:
            written = sampler.sample_storage(session, self.storage, self.settings.prices,
                                             now=now)
            written += sampler.meter_sql(session, self.settings.prices, now=now)
            written += self._meter_requests(session, now or utcnow())
            return written

    def _meter_requests(self, session: Session, now: datetime) -> int:
        written = sampler.meter_requests(session, self.settings.prices, TALLY,
                                         since=self._requests_since, now=now)
        self._requests_since = now
        return written

    # --- budgets ------------------------------------------------------------------------------

    def check_one(self, name: str, *, now: datetime | None = None) -> dict[str, Any] | None:
        """Check one budget now: a new or changed one says (and does) what it must at once;
        with metering off, nothing is checked."""
        if not usage.metering_on():
            return None
        with self._lock, self.sessions() as session:
            return self.check_budget(session, budgets.get_budget(session, name),
                                     now=now or utcnow())

    def remove(self, name: str) -> None:
        """Undo what the budget has in force, then delete it."""
        with self._lock, self.sessions() as session:
            budget = budgets.get_budget(session, name)
            for action in list(budget.acting):
                self._undo(session, budget, action, why="the budget was removed")
            session.delete(budget)
            session.commit()

    def check_budgets(self, session: Session, *, now: datetime) -> list[dict[str, Any]]:
        done = []
        for budget in budgets.list_budgets(session):
            try:
                outcome = self.check_budget(session, budget, now=now)
            except Exception:  # one budget's failure must not stop the others'
                session.rollback()
                log.exception("metering: checking budget %s failed", budget.name)
                continue
            if outcome:
                done.append(outcome)
        return done

    def check_budget(self, session: Session, budget: Budget, *,
                     now: datetime) -> dict[str, Any] | None:
        """Decide and do what the budget says now; what was done, or None for nothing."""
        # A new period's spend is counted from its first day: a period that turned is decided
        # on the new period's figures.
        amount = spent(session, self.settings, budget, now)
        decision = budgets.decide(
            period=budget.period, amount=budget.amount, thresholds=list(budget.thresholds),
            actions=list(budget.actions), state_key=budget.period_key,
            alerted=list(budget.alerted), acting=list(budget.acting), spent=amount, now=now)
        budget.spent, budget.evaluated_at = round(amount, 9), now
        if decision.empty and budget.period_key == decision.period_key:
            session.commit()
            return None
        if decision.turned:
            budget.alerted, budget.acting = [], []
        budget.period_key = decision.period_key
        for action in decision.undo:
            self._undo(session, budget, action, why="the period turned" if decision.turned
                       else f"the budget (${budget.amount:g}) is above what was spent")
        for threshold in decision.alert:
            severity = "critical" if threshold >= 100 else "warning"
            alerts.notify(
                session, source="budget", subject=budget.name, severity=severity,
                message=f"budget {budget.name} ({budget.scope}) has spent ${amount:.2f} of "
                        f"${budget.amount:g} this {budget.period} ({decision.percent:.0f}%), "
                        f"past its {threshold:g}% alert",
                details={"budget": budget.name, "scope": budget.scope, "spent": amount,
                         "amount": budget.amount, "threshold": threshold,
                         "period": decision.period_key},
                webhook=budget.webhook)
        budget.alerted = sorted({*budget.alerted, *decision.alert})
        for action in decision.take:
            self._take(session, budget, action, amount)
        session.commit()
        return {"budget": budget.name, "period": decision.period_key, "spent": amount,
                "percent": decision.percent, "turned": decision.turned,
                "alerted": decision.alert, "took": decision.take, "undid": decision.undo}

    def _audit(self, budget: Budget, what: str, details: dict[str, Any]) -> None:
        log.warning("budget %s: %s %s", budget.name, what, details)
        if self.trail is not None:
            self.trail.event(user=f"budget:{budget.name}", action=f"budgets:{what}",
                             resource=f"budget/{budget.name}", outcome="allowed", source=None,
                             details=details)

    def _take(self, session: Session, budget: Budget, action: str, amount: float) -> None:
        details: dict[str, Any] = {"action": action, "spent": amount, "amount": budget.amount,
                                   "scope": budget.scope, "period": budget.period_key}
        if action == "scale-endpoints-to-zero":
            details["endpoints"] = self._scale_to_zero(session, budget)
        budget.acting = sorted({*budget.acting, action})
        self._audit(budget, "Act", details)
        alerts.notify(session, source="budget", subject=budget.name, severity="critical",
                      message=f"budget {budget.name} took its action {action} at "
                              f"${amount:.2f} of ${budget.amount:g}",
                      details=details, webhook=budget.webhook)

    def _undo(self, session: Session, budget: Budget, action: str, *, why: str) -> None:
        details: dict[str, Any] = {"action": action, "why": why, "scope": budget.scope}
        if action == "scale-endpoints-to-zero":
            details["endpoints"] = self._restore(session, budget)
        budget.acting = [a for a in budget.acting if a != action]
        self._audit(budget, "Undo", details)
        alerts.notify(session, source="budget", subject=budget.name, severity="info",
                      message=f"budget {budget.name} undid {action}: {why}", details=details,
                      webhook=budget.webhook)

    def _actor(self, budget: Budget) -> Principal:
        return Principal(user_id=budget.created_by or 0, user_name=f"budget:{budget.name}",
                         is_admin=True, token_id=0)

    def _scale_to_zero(self, session: Session, budget: Budget) -> list[str]:
        from cumulo.serving import endpoints as serving

        scope = budgets.parse_scope(budget.scope)
        found = serving.list_endpoints(session)
        names = user_names(session, (e.created_by for e in found))
        project_names = projects.names_of(session, (e.project_id for e in found))
        scaled = dict(budget.scaled or {})
        done = []
        for endpoint in found:
            work = budgets.Work(service="endpoint",
                                project=project_names.get(endpoint.project_id)
                                if endpoint.project_id is not None else None,
                                user=names.get(endpoint.created_by), tags=())
            if not scope.covers(work) or endpoint.name in scaled:
                continue
            before = {"min_replicas": endpoint.min_replicas,
                      "scale_to_zero_after": endpoint.scale_to_zero_after}
            try:
                serving.update_endpoint(session, self._actor(budget), endpoint.name,
                                        serving.EndpointChange(min_replicas=0,
                                                               scale_to_zero_after=0.0),
                                        registry=_no_registry)
            except CumuloError as exc:  # creating, failed: left as it is, and said so
                log.warning("budget %s: cannot scale endpoint %s to zero: %s", budget.name,
                            endpoint.name, exc)
                continue
            # Held there: a request is refused (503), not answered by a replica started
            # for it, until the budget lets it go.
            endpoint.held = f"budget {budget.name}"
            scaled[endpoint.name] = before
            done.append(endpoint.name)
        budget.scaled = scaled
        if done and self.endpoints_changed is not None:
            self.endpoints_changed()
        return done

    def _restore(self, session: Session, budget: Budget) -> list[str]:
        from cumulo.serving import endpoints as serving

        done = []
        for name, before in dict(budget.scaled or {}).items():
            try:
                serving.update_endpoint(session, self._actor(budget), name,
                                        serving.EndpointChange(
                                            min_replicas=int(before["min_replicas"]),
                                            scale_to_zero_after=float(
                                                before["scale_to_zero_after"])),
                                        registry=_no_registry)
                serving.get_endpoint(session, name).held = None
                done.append(name)
            except CumuloError as exc:  # deleted since, say
                log.warning("budget %s: cannot restore endpoint %s: %s", budget.name, name,
                            exc)
        budget.scaled = {}
        if done and self.endpoints_changed is not None:
            self.endpoints_changed()
        return done

    # --- anomalies ----------------------------------------------------------------------------

    def check_anomaly(self, session: Session, *, now: datetime) -> dict[str, Any] | None:
        """Alert (once a day) when today's cost so far is far above the trailing mean."""
        today = now.date()
        start = today - timedelta(days=forecast.ANOMALY_WINDOW)
        costs = daily_costs(session, self.settings, start=start.isoformat(),
                            end=today.isoformat())
        found = forecast.anomaly(costs, today)
        if found is None:
            return None
        mark = session.get(MeterMark, "anomaly")
        if mark is not None and mark.note == today.isoformat():
            return None  # alerted already today
        if mark is None:
            session.add(MeterMark(name="anomaly", at=now, note=today.isoformat()))
        else:
            mark.at, mark.note = now, today.isoformat()
        alerts.notify(
            session, source="anomaly", subject=today.isoformat(), severity="warning",
            message=f"costs on {today.isoformat()} are ${found['cost_usd']:.2f} so far, "
                    f"{found['factor']:g}x the {forecast.ANOMALY_WINDOW}-day mean "
                    f"(${found['trailing_mean_usd']:.2f} a day)",
            details={"day": today.isoformat(), **found},
            webhook=self.settings.anomaly_webhook or None)
        session.commit()
        return {"day": today.isoformat(), **found}


def _no_registry() -> Any:
    # Scaling changes no variant, so the model registry is never asked for.
    raise RuntimeError("a budget's scaling does not use the model registry")
