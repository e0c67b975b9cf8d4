"""``client.costs``: what work used and cost; ``client.budgets`` and ``client.alerts``."""

from __future__ import annotations

from typing import Any

from cumulo.client.transport import Transport
from cumulo.units import day_of

__all__ = ["AlertsClient", "BudgetsClient", "CostsClient"]


def _day(text: str | None, what: str) -> str | None:
    # Usage is summed by day and the server reads days, so a time or a span back from now
    # goes as the day it falls on.
    if text is None:
        return None
    return day_of(text, what=what, start=what == "--since").isoformat()


class CostsClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def _params(self, **given: Any) -> dict[str, Any]:
        given["since"] = _day(given.get("since"), "--since")
        given["until"] = _day(given.get("until"), "--until")
        return {k: v for k, v in given.items() if v is not None}

    def __call__(self, *, by: str = "day", since: str | None = None, until: str | None = None,
                 kind: str | None = None, project: str | None = None,
                 sheet: str = "both") -> dict[str, Any]:
        """Usage and cost summed ``by`` day, service, user, project, tag, resource, cluster or
        kind (of one project's work with ``project``), from the day of ``since`` to the day of
        ``until`` (both counted): dates like ``2026-11-26``, times like
        ``2026-11-26T10:00:00Z``, or spans back from now like ``7d`` or ``1h30m``. Each group
        has ``cost_usd`` by the primary sheet and, with ``sheet="both"``, ``cloud_usd`` and
        ``own_usd``. Quantities (``shard_hours``, ``storage_gb_hours``, ``bytes_scanned``...)
        show in the groups that have any."""
        params = self._params(by=by, since=since, until=until, kind=kind, project=project,
                              sheet=sheet)
        return self._t.json("GET", "/api/v1/costs", params=params)  # type: ignore[no-any-return]

    def csv(self, *, by: str = "day", since: str | None = None, until: str | None = None,
            kind: str | None = None, project: str | None = None, sheet: str = "both") -> str:
        """The same figures as a CSV file's text, a row a group and a total row."""
        params = self._params(by=by, since=since, until=until, kind=kind, project=project,
                              sheet=sheet, format="csv")
        return self._t.request("GET", "/api/v1/costs", params=params).text

    def forecast(self, *, project: str | None = None) -> dict[str, Any]:
        """This month so far and its month-end forecast, by each sheet."""
        params = {"project": project} if project else {}
        return self._t.json("GET", "/api/v1/costs/forecast",  # type: ignore[no-any-return]
                            params=params)

    def sheets(self) -> dict[str, Any]:
        """The cloud and own-hardware price sheets."""
        return self._t.json("GET", "/api/v1/costs/sheets")  # type: ignore[no-any-return]

    def sample(self) -> int:
        """Sample what storage holds and meter finished SQL queries now; records written."""
        return int(self._t.json("POST", "/api/v1/costs/sample")["records"])


class BudgetsClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, name: str, *, amount: float | str, period: str = "month", scope: str = "all",
               alert: str | None = None, action: str | None = None,
               webhook: str | None = None) -> dict[str, Any]:
        """A budget of ``amount`` dollars a ``period`` (day, week, month) for ``scope`` (all,
        project:NAME, user:NAME, tag:K=V, service:NAME); ``alert``: ``"50%,80%,100%"``;
        ``action``: ``"100%:stop-new-jobs,scale-endpoints-to-zero"``; ``webhook``: where
        alerts are POSTed."""
        body = {"name": name, "amount": amount, "period": period, "scope": scope,
                "alert": alert, "action": action, "webhook": webhook}
        return self._t.json("POST", "/api/v1/budgets", json=body)  # type: ignore[no-any-return]

    def list(self) -> list[dict[str, Any]]:
        return self._t.json("GET", "/api/v1/budgets")  # type: ignore[no-any-return]

    def show(self, name: str) -> dict[str, Any]:
        return self._t.json("GET", f"/api/v1/budgets/{name}")  # type: ignore[no-any-return]

    def update(self, name: str, *, amount: float | str | None = None, alert: str | None = None,
               action: str | None = None, webhook: str | None = None) -> dict[str, Any]:
        """Change what is given (``webhook=""`` sends none); raised above what was spent, the
        budget's actions are undone."""
        body = {k: v for k, v in {"amount": amount, "alert": alert, "action": action,
                                  "webhook": webhook}.items() if v is not None}
        return self._t.json("PATCH", f"/api/v1/budgets/{name}",  # type: ignore[no-any-return]
                            json=body)

    def delete(self, name: str) -> None:
        self._t.request("DELETE", f"/api/v1/budgets/{name}")

    def check(self, *, at: str | None = None) -> dict[str, Any]:
        """Check every budget and the day's costs now (as of ``at``: admins)."""
        return self._t.json("POST", "/api/v1/budgets/check",  # type: ignore[no-any-return]
                            json={"at": at})


class AlertsClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list(self, *, source: str | None = None, all: bool = False) -> list[dict[str, Any]]:
        """Alerts not dismissed (every one with ``all``), newest first."""
        params: dict[str, Any] = {"all": all}
        if source:
            params["source"] = source
        return self._t.json("GET", "/api/v1/alerts",  # type: ignore[no-any-return]
                            params=params)

    def dismiss(self, alert_id: int | None = None) -> int:
        """Dismiss one alert, or all; how many were."""
        params = {"id": alert_id} if alert_id is not None else {}
        return int(self._t.json("POST", "/api/v1/alerts/dismiss", params=params)["dismissed"])
