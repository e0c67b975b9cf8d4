"""``client.backups``: backup schedules the server runs, their runs, the backups they made, and
one-thing restores from them. (Whole-platform backups and restores are ``cumulo backup`` on
the server's machine: they read and write its home directly.)"""

from __future__ import annotations

import builtins
import time
from typing import Any
from urllib.parse import quote

from cumulo.client.transport import Transport
from cumulo.errors import Conflict

__all__ = ["BackupsClient"]


class BackupsClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def schedule(self, name: str, *, target: str, cron: str, key_file: str | None = None,
                 keep_last: int = 0, keep_daily: int = 0, keep_weekly: int = 0,
                 drill: bool = False, missed: str = "latest") -> dict[str, Any]:
        """Back the platform up to ``target`` (a folder of the server's machine, or
        s3://bucket/prefix) on ``cron`` (UTC), pruned by the keep rules, each backup drilled
        when ``drill``. A folder target is run only by control planes of the machine that
        made the schedule (its ``host``); an s3:// one by any."""
        body = {"name": name, "target": target, "cron": cron, "key_file": key_file,
                "keep_last": keep_last, "keep_daily": keep_daily, "keep_weekly": keep_weekly,
                "drill": drill, "missed": missed}
        found: dict[str, Any] = self._t.json("POST", "/api/v1/backups/schedules", json=body)
        return found

    def schedules(self) -> builtins.list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._t.json("GET", "/api/v1/backups/schedules")
        return found

    def unschedule(self, name: str) -> None:
        self._t.request("DELETE", f"/api/v1/backups/schedules/{quote(name, safe='')}")

    def run(self, name: str, *, drill: bool = False, wait: bool = True,
            timeout: float = 3600) -> dict[str, Any]:
        """Back up now with schedule ``name``'s target and rules (then drill, with ``drill`` or
        when the schedule drills); waited for unless ``wait=False``. A failed backup or drill
        raises Conflict with its error."""
        run: dict[str, Any] = self._t.json(
            "POST", f"/api/v1/backups/schedules/{quote(name, safe='')}/run",
            json={"drill": drill})
        if not wait:
            return run
        # A schedule that drills its backups drills this one too: wait for that as well.
        drill = drill or any(s["name"] == name and s["drill"] for s in self.schedules())
        deadline = time.monotonic() + timeout
        while True:
            runs = self.runs(schedule=name, limit=10)
            mine = next((r for r in runs if r["id"] == run["id"]), run)
            drill_run = next((r for r in runs if r["kind"] == "drill" and r["id"] > run["id"]),
                             None)
            done = mine["state"] != "running" and (
                not drill or mine["state"] == "failed" or
                (drill_run is not None and drill_run["state"] != "running"))
            if done:
                for r in (mine, drill_run):
                    if r is not None and r["state"] == "failed":
                        raise Conflict(f"{r['kind']} {r['id']} of schedule {name} failed: "
                                       f"{r['error']}")
                return {**mine, "drill": drill_run} if drill else mine
            if time.monotonic() > deadline:
                raise TimeoutError(f"backup {run['id']} of {name} still running after "
                                   f"{timeout:.0f}s")
            time.sleep(0.5)

    def runs(self, *, schedule: str | None = None,
             limit: int = 50) -> builtins.list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if schedule is not None:
            params["schedule"] = schedule
        found: list[dict[str, Any]] = self._t.json("GET", "/api/v1/backups/runs", params=params)
        return found

    def list(self, schedule: str) -> builtins.list[dict[str, Any]]:
        """The complete backups in ``schedule``'s target, newest first."""
        found: list[dict[str, Any]] = self._t.json(
            "GET", f"/api/v1/backups/schedules/{quote(schedule, safe='')}/backups")
        return found

    def show(self, schedule: str, backup: str = "latest") -> dict[str, Any]:
        """A backup's sizes by area, and what it can put back one at a time."""
        found: dict[str, Any] = self._t.json(
            "GET", f"/api/v1/backups/schedules/{quote(schedule, safe='')}/backups/"
            f"{quote(backup, safe='')}", timeout=300)
        return found

    def restore(self, schedule: str, backup: str = "latest", *, bucket: str | None = None,
                table: str | None = None, model: str | None = None,
                pipeline: str | None = None, version: int | None = None,
                into: str | None = None, replace: bool = False) -> dict[str, Any]:
        """Put one bucket, table (at ``version``), model version or pipeline back from a
        backup, as the caller; ``into`` is the name it comes back as."""
        body = {"schedule": schedule, "backup": backup, "bucket": bucket, "table": table,
                "model": model, "pipeline": pipeline, "version": version, "as": into,
                "replace": replace}
        found: dict[str, Any] = self._t.json("POST", "/api/v1/backups/restore", json=body,
                                             timeout=3600)
        return found
