"""``client.monitors``: model monitors of endpoints, their runs and reports."""

from __future__ import annotations

import builtins
import time
from typing import Any
from urllib.parse import quote

from cumulo.client.transport import Transport

__all__ = ["MonitorsClient"]


class MonitorsClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def _path(self, name: str, tail: str = "") -> str:
        return f"/api/v1/monitors/{quote(name, safe='')}{tail}"

    def create(self, name: str, *, endpoint: str, baseline: str, schedule: str | None = None,
               window: float | str | None = None,
               thresholds: dict[str, float] | str | None = None, labels: str | None = None,
               key: str | None = None, label_column: str | None = None,
               prediction_column: str | None = None,
               webhook: str | None = None) -> dict[str, Any]:
        """Watch ``endpoint``'s captured requests against ``baseline`` (``DB.TABLE@vN``), on
        ``schedule`` (cron, UTC) or when :meth:`run`; alerts past ``thresholds``
        (``"psi=0.2,ks=0.1"``)."""
        made: dict[str, Any] = self._t.json("POST", "/api/v1/monitors", json={
            "name": name, "endpoint": endpoint, "baseline": baseline, "schedule": schedule,
            "window": window, "thresholds": thresholds, "labels": labels, "key": key,
            "label_column": label_column, "prediction_column": prediction_column,
            "webhook": webhook})
        return made

    def list(self, *, endpoint: str | None = None) -> builtins.list[dict[str, Any]]:
        found: builtins.list[dict[str, Any]] = self._t.json(
            "GET", "/api/v1/monitors", params={"endpoint": endpoint} if endpoint else None)
        return found

    def show(self, name: str) -> dict[str, Any]:
        shown: dict[str, Any] = self._t.json("GET", self._path(name))
        return shown

    def delete(self, name: str) -> None:
        """Remove the monitor and its runs; its report table stays."""
        self._t.request("DELETE", self._path(name))

    def run(self, name: str, *, wait: bool = True, timeout: float = 600.0) -> dict[str, Any]:
        """Run it now over what was captured since its last run: its job reads the window and
        computes the figures. With ``wait`` (the default), the run once it has ended, with
        its figures (``state`` ``failed`` and ``message`` when it could not); else the run as
        started (``running``: follow it with :meth:`show_run`). TimeoutError past
        ``timeout`` seconds, naming the run, which goes on."""
        run: dict[str, Any] = self._t.json("POST", self._path(name, "/runs"))
        if not wait:
            return run
        deadline = time.monotonic() + timeout
        pause = 0.1
        while run["state"] in ("running", "recording"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run['id']} of monitor {name!r} is still "
                                   f"{run['state']} after {timeout:g} s (its job "
                                   f"{run.get('job')}); 'cumulo monitors reports {name}' "
                                   "shows it when it ends")
            time.sleep(pause)
            pause = min(pause * 1.5, 1.0)
            run = self.show_run(name, run["id"])
        return run

    def show_run(self, name: str, run_id: int) -> dict[str, Any]:
        """One run, with its figures once it has ended."""
        shown: dict[str, Any] = self._t.json("GET", self._path(name, f"/runs/{run_id}"))
        return shown

    def reports(self, name: str, *, limit: int = 50) -> builtins.list[dict[str, Any]]:
        """Its runs, newest first, each with its figures per feature."""
        runs: builtins.list[dict[str, Any]] = self._t.json(
            "GET", self._path(name, "/runs"), params={"limit": limit})
        return runs
