"""``client.envs``: Python environments for jobs, pipeline steps and endpoints."""

from __future__ import annotations

import builtins
import os
import time
from typing import Any

from cumulo.client.transport import Transport
from cumulo.errors import Conflict, Invalid

__all__ = ["EnvsClient"]


class EnvsClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, name: str, requirements: str | os.PathLike[str] | builtins.list[str], *,
               python: str | None = None, isolated: bool = False, project: str | None = None,
               wait: bool = True, timeout: float = 1800) -> dict[str, Any]:
        """Make (or point ``name`` at) the environment ``requirements`` resolve to: a
        requirements file's path, or a list of requirements. Resolved at once (a requirement
        that cannot be met raises Invalid naming its line); built in the background, waited
        for unless ``wait=False``. A build that fails raises Conflict with uv's reason (the
        whole log: ``show(digest, log=True)``), and the name is not given.

        >>> client.envs.create("sk13", ["scikit-learn==1.3.2"])["state"]  # doctest: +SKIP
        'ready'
        """
        from cumulo.compute.sdk import read_requirements

        text, source = read_requirements(requirements)
        body = {"name": name, "requirements": text, "requirements_file": source,
                "python": python, "isolated": isolated, "project": project}
        env: dict[str, Any] = self._t.json("POST", "/api/v1/envs", json=body, timeout=600)
        if not wait:
            return env
        deadline = time.monotonic() + timeout
        delay = 0.05  # a build from a warm cache takes about a second: look soon, then less
        while env["state"] in ("resolved", "building") or (
                env["state"] == "ready" and name not in env["names"]):
            if time.monotonic() > deadline:
                raise Invalid(f"environment {name} was still building after {timeout:g}s; "
                              f"follow it with 'cumulo envs show {env['digest'][:12]}'")
            time.sleep(delay)
            delay = min(1.0, delay * 1.5)
            env = self.show(env["digest"])
        if env["state"] == "failed":
            raise Conflict(f"environment {name} could not be built: {env['error']} (the "
                           f"build log: cumulo envs show {env['digest'][:12]} --log)",
                           details={"digest": env["digest"]})
        return env

    def list(self, *, project: str | None = None) -> builtins.list[dict[str, Any]]:
        params = {"project": project} if project else {}
        return self._t.json("GET", "/api/v1/envs", params=params)  # type: ignore[no-any-return]

    def show(self, ref: str, *, log: bool = False) -> dict[str, Any]:
        """An environment by name or digest (a prefix of 8 or more): its requirements, its
        pins (``lock``), its state, and with ``log`` its last build's log."""
        return self._t.json("GET", f"/api/v1/envs/{ref}",  # type: ignore[no-any-return]
                            params={"log": "true"} if log else {})

    def delete(self, name: str) -> None:
        """Remove the name; refused (Conflict) while a job or endpoint uses it."""
        self._t.request("DELETE", f"/api/v1/envs/{name}")

    def prune(self, *, unused: str = "30d", dry_run: bool = False) -> builtins.list[dict[str, Any]]:
        """Remove environments not used for ``unused`` (named ones keep their pins and are
        built again on their next use)."""
        return self._t.json("POST", "/api/v1/envs/prune",  # type: ignore[no-any-return]
                            json={"unused": unused, "dry_run": dry_run})
