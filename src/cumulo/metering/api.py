"""``/api/v1/costs``: usage and cost, grouped, forecast and exported; ``/api/v1/budgets`` and
``/api/v1/alerts``: budgets, and the alerts the console's banner and ``cumulo status`` show."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from cumulo.db import get_session, utcnow
from cumulo.errors import Invalid, Unavailable
from cumulo.metering import alerts, budgets, forecast, sheets, usage
from cumulo.metering.watch import CostWatch, daily_costs
from cumulo.permissions import allow, query_project
from cumulo.principal import Principal, current_principal
from cumulo.services import services
from cumulo.units import parse_time

__all__ = ["alerts_router", "budgets_router", "router"]

router = APIRouter(prefix="/costs", tags=["costs"])
budgets_router = APIRouter(prefix="/budgets", tags=["costs"])
alerts_router = APIRouter(prefix="/alerts", tags=["costs"])
DbSession = Annotated[Session, Depends(get_session)]
Caller = Annotated[Principal, Depends(current_principal)]


def _watch(request: Request) -> CostWatch:
    watch = services(request).costs
    if watch is None:
        raise Unavailable("costs are not watched on this server")
    return watch


def _sheets(request: Request) -> dict[str, Any]:
    settings = services(request).settings
    own = sheets.own_sheet(settings.prices, settings.hardware)
    hw = settings.hardware
    return {"primary": settings.cost_sheet, "cloud": sheets.sheet_doc(settings.prices),
            "own": {**sheets.sheet_doc(own), "machine_hour": sheets.machine_hour(hw),
                    "machine": {"price": hw.price, "life_years": hw.life_years,
                                "watts": hw.watts, "kwh_price": hw.kwh_price,
                                "vcpus": hw.vcpus, "memory_gb": hw.memory_gb,
                                "gpus": hw.gpus, "disk_price_per_tb": hw.disk_price_per_tb}}}


def _csv(summary: dict[str, Any]) -> Response:
    by = summary["by"]
    rows = summary["rows"]
    names = [by, *dict.fromkeys(k for r in rows for k in r if k != by)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=names, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, 0) for k in names})
    writer.writerow({by: "total", **{k: summary["total"].get(k, 0) for k in names[1:]}})
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="costs-by-{by}.csv"'})


@router.get("", dependencies=[allow("costs:Read", project=query_project)],
            summary="Usage and cost, grouped (of one project's work with ?project=NAME: what "
                    "a project's members may read); ?format=csv for a CSV file")
def costs(session: DbSession, request: Request, by: str = "day", since: str | None = None,
          until: str | None = None, kind: str | None = None,
          project: str | None = None, sheet: str = "both", format: str = "json") -> Any:
    sheets.check_sheet(sheet)
    if format not in ("json", "csv"):
        raise Invalid(f"--format {format!r} is not json or csv")
    settings = services(request).settings
    own = sheets.own_sheet(settings.prices, settings.hardware)
    primary = settings.cost_sheet if sheet == "both" else sheet
    summary = usage.summarize(session, by=by, since=since, until=until, kind=kind,
                              project=project, own=own, primary=primary)
    summary["sheet"] = sheet
    summary["primary"] = primary
    if format == "csv":
        return _csv(summary)
    found = _sheets(request)
    summary["prices"] = found[primary]
    summary["sheets"] = found
    return summary


@router.get("/sheets", dependencies=[allow("costs:Read")],
            summary="The price sheets: the cloud's and your own hardware's, side by side")
def price_sheets(request: Request) -> dict[str, Any]:
    return _sheets(request)


@router.get("/forecast", dependencies=[allow("costs:Read", project=query_project)],
            summary="The month so far and its month-end forecast, by both sheets")
def month_forecast(session: DbSession, request: Request, project: str | None = None,
                   at: str | None = None) -> dict[str, Any]:
    settings = services(request).settings
    now = parse_time(at, what="--at") if at else utcnow()
    start = (now.date().replace(day=1) - timedelta(days=forecast.TRAILING_DAYS)).isoformat()
    scope = budgets.parse_scope(f"project:{project}") if project else None
    found = {name: forecast.forecast(daily_costs(session, settings, start=start,
                                                 end=now.date().isoformat(), scope=scope,
                                                 sheet=name), now)
             for name in sheets.SHEETS}
    return {"at": now.isoformat(), "project": project, "primary": settings.cost_sheet,
            **found[settings.cost_sheet], "sheets": found}


@router.post("/sample", dependencies=[allow("costs:ReadAll")],
             summary="Sample what storage holds, and meter finished SQL queries, now")
def sample(request: Request) -> dict[str, int]:
    return {"records": _watch(request).sample_now()}


# --- budgets ----------------------------------------------------------------------------------


class BudgetIn(BaseModel):
    name: str
    amount: float | str
    period: str = "month"
    scope: str = "all"
    alert: str | None = Field(None, description="thresholds: 50%,80%,100%")
    action: str | None = Field(None, description="100%:stop-new-jobs,scale-endpoints-to-zero")
    webhook: str | None = None


class BudgetChange(BaseModel):
    amount: float | str | None = None
    alert: str | None = None
    action: str | None = None
    webhook: str | None = Field(None, description="a URL, or '' to send no webhook")


class CheckIn(BaseModel):
    at: str | None = Field(None, description="check as of this time (admins: to see what a "
                                             "period's turn does); now when None")


def _doc(session: Session, budget: Any) -> dict[str, Any]:
    doc = budgets.budget_doc(budget)
    doc["alerts_raised"] = [alerts.alert_doc(a) for a in alerts.open_alerts(
        session, source="budget", subject=budget.name, include_dismissed=True, limit=20)]
    return doc


@budgets_router.post("", dependencies=[allow("budgets:Manage", "budget/*")], status_code=201,
                     summary="Create a budget")
def create_budget(body: BudgetIn, request: Request, session: DbSession,
                  caller: Caller) -> dict[str, Any]:
    budget = budgets.create_budget(session, name=body.name, amount=body.amount,
                                   period=body.period, scope=body.scope, alert=body.alert,
                                   action=body.action, webhook=body.webhook,
                                   created_by=caller.user_id)
    watch = services(request).costs
    if watch is not None:  # crossed already? say so (and act) now, not at the next check
        watch.check_one(budget.name)
        session.refresh(budget)
    return _doc(session, budget)


@budgets_router.get("", dependencies=[allow("budgets:List", "budget/*")],
                    summary="List budgets, with what they spent this period")
def list_budgets(session: DbSession) -> list[dict[str, Any]]:
    return [budgets.budget_doc(b) for b in budgets.list_budgets(session)]


@budgets_router.post("/check", dependencies=[allow("budgets:Manage", "budget/*")],
                     summary="Check every budget and the day's costs now (or as of ?at, for "
                             "admins)")
def check_budgets(body: CheckIn, request: Request, caller: Caller) -> dict[str, Any]:
    when: datetime | None = None
    if body.at is not None:
        if not caller.is_admin:
            raise Invalid("--at is for admins: a check as of another time changes what "
                          "budgets do")
        when = parse_time(body.at, what="--at")
    return _watch(request).tick(now=when)


@budgets_router.get("/{name}", dependencies=[allow("budgets:Read", "budget/{name}")],
                    summary="A budget: what it spent, its alerts and their webhooks' delivery, "
                            "the actions in force")
def show_budget(name: str, session: DbSession) -> dict[str, Any]:
    return _doc(session, budgets.get_budget(session, name))


@budgets_router.patch("/{name}", dependencies=[allow("budgets:Manage", "budget/{name}")],
                      summary="Change a budget (raise it: its actions are undone if it is now "
                              "above what was spent)")
def update_budget(name: str, body: BudgetChange, request: Request,
                  session: DbSession) -> dict[str, Any]:
    budget = budgets.update_budget(session, name, amount=body.amount, alert=body.alert,
                                   action=body.action, webhook=body.webhook)
    watch = services(request).costs
    if watch is not None:
        watch.check_one(name)
        session.refresh(budget)
    return _doc(session, budget)


@budgets_router.delete("/{name}", dependencies=[allow("budgets:Manage", "budget/{name}")],
                       status_code=204, summary="Remove a budget, undoing its actions")
def delete_budget(name: str, request: Request, session: DbSession) -> Response:
    budgets.get_budget(session, name)  # NotFound before anything is undone
    _watch(request).remove(name)
    return Response(status_code=204)


# --- alerts -----------------------------------------------------------------------------------


@alerts_router.get("", dependencies=[allow("alerts:List", "alert/*")],
                   summary="Alerts not dismissed (the console's banner), newest first")
def list_alerts(session: DbSession, source: str | None = None, all: bool = False,
                limit: int = 50) -> list[dict[str, Any]]:
    return [alerts.alert_doc(a) for a in alerts.open_alerts(
        session, source=source, include_dismissed=all, limit=max(1, min(limit, 500)))]


@alerts_router.post("/dismiss", dependencies=[allow("alerts:Dismiss", "alert/*")],
                    summary="Dismiss one alert (?id=N) or all of them")
def dismiss_alerts(session: DbSession, id: int | None = None) -> dict[str, int]:
    return {"dismissed": alerts.dismiss(session, id)}
