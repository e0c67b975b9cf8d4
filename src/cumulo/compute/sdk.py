"""``client.clusters`` and ``client.jobs``: run code on a cluster and follow it."""

from __future__ import annotations

import builtins
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cumulo.client.transport import Transport
from cumulo.errors import Invalid, NotFound

__all__ = ["ClustersClient", "Job", "JobsClient"]

FINISHED = ("succeeded", "failed", "cancelled", "timed_out")


class ClustersClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list(self, *, project: str | None = None) -> list[dict[str, Any]]:
        """Every cluster, or those of ``project``."""
        params = {"project": project} if project else {}
        return self._t.json("GET", "/api/v1/clusters",  # type: ignore[no-any-return]
                            params=params)

    def show(self, name: str) -> dict[str, Any]:
        return self._t.json("GET", f"/api/v1/clusters/{name}")  # type: ignore[no-any-return]

    def create(self, name: str, *, type: str = "local", address: str | None = None,
               max_cpus: float | None = None, max_memory: str | int | None = None,
               max_gpus: int | None = None, min_workers: int = 0,
               max_workers: int | None = None, idle_timeout: str | float = "10m",
               python: str | None = None, project: str | None = None,
               timeout: float = 120) -> dict[str, Any]:
        """Register a cluster (in ``project``). A ray cluster's ``python`` is the interpreter
        on its head that has Cumulo and Ray (default: the ``python`` its PATH finds, kept as
        its path)."""
        body = {"name": name, "type": type, "address": address, "max_cpus": max_cpus,
                "max_memory": max_memory, "max_gpus": max_gpus, "min_workers": min_workers,
                "max_workers": max_workers, "idle_timeout": idle_timeout, "python": python,
                "project": project}
        return self._t.json("POST", "/api/v1/clusters", json=body,  # type: ignore[no-any-return]
                            timeout=timeout)

    def delete(self, name: str) -> None:
        self._t.json("DELETE", f"/api/v1/clusters/{name}")


class Job:
    """A handle on a submitted job."""

    def __init__(self, transport: Transport, info: dict[str, Any]) -> None:
        self._t = transport
        self.id: str = info["id"]
        self.info = info

    def __repr__(self) -> str:
        return f"Job({self.id!r}, state={self.state!r})"

    @property
    def state(self) -> str:
        return str(self.info["state"])

    @property
    def done(self) -> bool:
        return self.state in FINISHED

    def refresh(self) -> dict[str, Any]:
        self.info = self._t.json("GET", f"/api/v1/jobs/{self.id}")
        return self.info

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job ends; return its final state. Raises TimeoutError.

        Long polls: the server answers as soon as the job ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            left = 30.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"job {self.id} still {self.state} after {timeout}s")
            self.info = self._t.json("GET", f"/api/v1/jobs/{self.id}",
                                     params={"wait": min(30.0, left)}, timeout=60)
        return self.info

    def cancel(self) -> dict[str, Any]:
        self.info = self._t.json("POST", f"/api/v1/jobs/{self.id}/cancel")
        return self.info

    def retry(self) -> dict[str, Any]:
        """Run a job that failed, was cancelled or timed out again, as its next attempt: it
        starts with the checkpoints the last attempt left (``cumulo.job.checkpoint_dir``)."""
        self.info = self._t.json("POST", f"/api/v1/jobs/{self.id}/retry")
        return self.info

    def logs(self, *, follow: bool = False, attempt: int | None = None) -> Iterator[str]:
        """The job's output, line by line; ``follow`` streams it live until the attempt ends
        (and then each retry's, in turn)."""
        number = attempt
        while True:
            params: dict[str, Any] = {"follow": str(follow).lower()}
            if number is not None:
                params["attempt"] = number
            pending = b""
            with self._t.stream("GET", f"/api/v1/jobs/{self.id}/logs", params=params,
                                timeout=None) as response:
                shown = int(response.headers.get("x-job-attempt", "1"))
                for chunk in response.iter_raw():
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        yield line.decode("utf-8", "replace")
            if pending:
                yield pending.decode("utf-8", "replace")
            if not follow or attempt is not None:
                return
            info = self.refresh()
            if info["attempt"] == shown:
                return
            number = shown + 1

    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        return self._t.json("GET", f"/api/v1/jobs/{self.id}/metrics")  # type: ignore[no-any-return]

    def checkpoints(self) -> builtins.list[dict[str, Any]]:
        """The checkpoint files kept for the next attempt: ``[{"path", "size"}]``."""
        files: builtins.list[dict[str, Any]] = self._t.json(
            "GET", f"/api/v1/jobs/{self.id}/checkpoints")
        return files

    def artifacts(self) -> builtins.list[dict[str, Any]]:
        return self._t.json("GET", f"/api/v1/jobs/{self.id}/artifacts")  # type: ignore[no-any-return]

    def download(self, dest: str | os.PathLike[str] = ".") -> builtins.list[Path]:
        """Save every artifact under ``dest``; return the paths written."""
        written = []
        for artifact in self.artifacts():
            target = Path(dest) / artifact["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            with self._t.stream("GET", f"/api/v1/jobs/{self.id}/artifacts/{artifact['path']}",
                                timeout=None) as response, open(target, "wb") as out:
                for chunk in response.iter_raw():
                    out.write(chunk)
            written.append(target)
        return written


def read_requirements(
        requirements: str | os.PathLike[str] | builtins.list[str] | None,
) -> tuple[str | None, str | None]:
    """A requirements file's text and name, from its path or from a list of requirements."""
    if requirements is None:
        return None, None
    if isinstance(requirements, list):
        return "".join(f"{r}\n" for r in requirements), "requirements"
    path = Path(requirements)
    try:
        return path.read_text(), path.name
    except OSError as exc:
        raise Invalid(f"cannot read the requirements file {path}: {exc.strerror or exc}") from exc


class JobsClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport
        self._uploaded: set[str] = set()  # digests this server is known to hold

    def upload_code(self, folder: str | os.PathLike[str], *, project: str | None = None) -> str:
        """Upload a code folder as a snapshot, unless the server has it already; its digest.
        ``project``: the project of the job it is for (where the caller may submit jobs)."""
        from cumulo.compute.snapshot import scan

        snap = scan(folder)
        if snap.digest in self._uploaded:
            return snap.digest
        params = {"project": project} if project else {}
        try:
            self._t.json("GET", f"/api/v1/jobs/code/{snap.digest}", params=params)
            self._uploaded.add(snap.digest)
            return snap.digest
        except NotFound:
            pass
        with tempfile.TemporaryFile() as tmp:
            snap.write_tar(tmp)
            tmp.seek(0)
            self._t.json("PUT", f"/api/v1/jobs/code/{snap.digest}", content=tmp, params=params,
                         headers={"content-type": "application/gzip"}, timeout=None)
        self._uploaded.add(snap.digest)
        return snap.digest

    def run(self, entry: str | None = None, *, code: str | os.PathLike[str] | None = None,
            command: str | builtins.list[str] | None = None,
            args: builtins.list[str] | None = None, cluster: str = "local", cpus: float = 1,
            memory: str | int | None = None, gpus: int = 0,
            env: dict[str, str] | None = None, inputs: dict[str, str] | None = None,
            max_runtime: str | float | None = None, retries: int = 0, priority: int = 0,
            tags: builtins.list[str] | None = None, name: str | None = None,
            project: str | None = None,
            requirements: str | os.PathLike[str] | builtins.list[str] | None = None,
            environment: str | None = None, python: str | None = None,
            isolated: bool = False, image: str | None = None) -> Job:
        """Submit a job: ``entry`` (a file in ``code``) or ``command``; returns a handle. In
        ``project``, it counts toward that project's quotas and is refused past one
        (:class:`~cumulo.errors.QuotaExceeded`).

        Its own packages: ``requirements`` (a requirements file's path, or a list of
        requirements), or ``environment`` (a named one from ``client.envs``, or
        ``"pyproject"`` for the code folder's pyproject.toml and uv.lock); ``python`` (3.12,
        or an interpreter's path) and ``isolated`` (nothing of the server's packages) say how
        it is built. The first job to ask for an environment waits for its build; the rest
        find it built.

        >>> job = client.jobs.run("train.py", code="./src", args=["--lr", "0.1"])  # doctest: +SKIP
        >>> job.wait()["state"]                                     # doctest: +SKIP
        'succeeded'
        """
        if code is not None and entry is not None:
            folder = Path(code)
            if folder.is_dir() and not (folder / entry).is_file():
                held = sorted(p.name for p in folder.glob("*.py"))[:5]
                raise Invalid(f"entry point {entry!r} is not in the code folder {folder}; it "
                              f"holds {', '.join(held) or 'no Python files'}")
        if entry is not None and code is None:
            raise Invalid("an entry point needs a code folder: code='./src'")
        reqs_text, reqs_file = read_requirements(requirements)
        digest = self.upload_code(code, project=project) if code is not None else None
        body = {"cluster": cluster, "code": digest, "entry": entry, "command": command,
                "args": [str(a) for a in (args or [])], "cpus": cpus, "memory": memory,
                "gpus": gpus, "env": env or {}, "inputs": inputs or {},
                "max_runtime": max_runtime, "retries": retries, "priority": priority,
                "tags": tags or [], "name": name, "project": project,
                "requirements": reqs_text, "requirements_file": reqs_file,
                "environment": environment, "python": python, "isolated": isolated,
                "image": image}
        return Job(self._t, self._t.json("POST", "/api/v1/jobs", json=body))

    def get(self, job_id: str) -> Job:
        return Job(self._t, self._t.json("GET", f"/api/v1/jobs/{job_id}"))

    def list(self, *, state: str | None = None, cluster: str | None = None,
             tag: str | None = None, project: str | None = None,
             limit: int = 100) -> builtins.list[Job]:
        params = {k: v for k, v in {"state": state, "cluster": cluster, "tag": tag,
                                    "project": project, "limit": limit}.items()
                  if v is not None}
        return [Job(self._t, info) for info in self._t.json("GET", "/api/v1/jobs",
                                                            params=params)]

    def wait_any(self, jobs: builtins.list[Job], timeout: float = 30.0) -> builtins.list[Job]:
        """Block until one of ``jobs`` has ended, or ``timeout`` seconds; refresh them all
        (one request) and return those that have ended, if any.

        >>> ended = client.jobs.wait_any([a, b], timeout=10)  # doctest: +SKIP
        """
        if not jobs:
            return []
        deadline = time.monotonic() + timeout
        # Jobs of one project are asked for in it, where a member's rights hold.
        places = {j.info.get("project") for j in jobs}
        project = places.pop() if len(places) == 1 else None
        while True:
            left = deadline - time.monotonic()
            params: dict[str, Any] = {"ids": ",".join(j.id for j in jobs),
                                      "wait": max(0.0, min(30.0, left))}
            if project:
                params["project"] = project
            infos = self._t.json("GET", "/api/v1/jobs", params=params, timeout=60)
            for job, info in zip(jobs, infos, strict=True):
                job.info = info
            ended = [j for j in jobs if j.done]
            if ended or deadline - time.monotonic() <= 0:
                return ended

    def cancel(self, job_id: str) -> Job:
        return Job(self._t, self._t.json("POST", f"/api/v1/jobs/{job_id}/cancel"))

    def retry(self, job_id: str) -> Job:
        """Queue an ended job (failed, cancelled or timed out) again as its next attempt."""
        return Job(self._t, self._t.json("POST", f"/api/v1/jobs/{job_id}/retry"))

    def delete(self, job_id: str) -> None:
        self._t.json("DELETE", f"/api/v1/jobs/{job_id}")


