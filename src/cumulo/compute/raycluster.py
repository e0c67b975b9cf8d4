"""Ray clusters: the same job spec, run as a Ray job with its resources mapped.

The entrypoint is Cumulo's runner (so Ray's nodes need ``pip install cumulo``); the code
snapshot is the job's ``working_dir``. The runner sends the output folder and its exit record
back to the control plane over HTTP with the job's own token.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

from cumulo.compute.local import ProcessExit
from cumulo.errors import Unavailable

__all__ = ["RayExecutor"]

log = logging.getLogger("cumulo.compute")


class RayExecutor:
    def __init__(self, name: str, address: str, home: Path) -> None:
        self.name = name
        self.address = address
        self.home = home
        self._client: Any = None
        self._running: dict[str, str] = {}  # job id -> Ray submission id
        self.running_now: set[str] = set()  # jobs Ray reports as RUNNING
        self._exit_files: dict[str, Path] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError as exc:
                raise Unavailable("Ray clusters need Ray: pip install 'cumulo[ray]'") from exc
            try:
                self._client = JobSubmissionClient(self.address)
            except Exception as exc:
                raise Unavailable(f"cannot reach the Ray cluster at {self.address}: {exc}") \
                    from exc
        return self._client

    @property
    def busy(self) -> int:
        return len(self._running)

    def launch(self, job_id: str, spec: dict[str, Any], *, submission_id: str, code_dir: Path,
               cpus: float, memory: int | None, gpus: int, exit_file: Path) -> str:
        spec = {**spec, "upload_outputs": True, "log": None, "exit_file": None}
        env = spec.pop("env")
        payload = base64.b64encode(json.dumps({**spec, "env": {}}).encode()).decode()
        # The spec rides on the command line; the environment (with the job's token) in
        # runtime_env, where the runner merges it in.
        self.client.submit_job(
            entrypoint=f"python -m cumulo.compute.runner --spec {payload}",
            submission_id=submission_id,
            runtime_env={"working_dir": str(code_dir), "env_vars": env},
            entrypoint_num_cpus=cpus, entrypoint_num_gpus=gpus or None,
            entrypoint_memory=memory, metadata={"cumulo_job": job_id},
        )
        self._running[job_id] = submission_id
        self._exit_files[job_id] = exit_file
        return submission_id

    def adopt(self, job_id: str, submission_id: str, exit_file: Path) -> None:
        self._running[job_id] = submission_id
        self._exit_files[job_id] = exit_file

    def poll(self, job_id: str) -> ProcessExit | None:
        sid = self._running.get(job_id)
        if sid is None:
            return ProcessExit(None)
        try:
            info = self.client.get_job_info(sid)
        except Unavailable:
            raise
        except Exception as exc:  # the cluster is away: keep waiting, say so in the log
            log.warning("cannot read Ray job %s: %s", sid, exc)
            return None
        status = str(info.status.value if hasattr(info.status, "value") else info.status)
        if status in ("PENDING", "RUNNING"):
            if status == "RUNNING":
                self.running_now.add(job_id)
            return None
        del self._running[job_id]
        self.running_now.discard(job_id)
        exit_file = self._exit_files.pop(job_id)
        record: dict[str, Any] = {}
        if exit_file.is_file():
            record = json.loads(exit_file.read_text())
        code = record.get("exit_code", info.driver_exit_code)
        if code is None and status == "SUCCEEDED":
            code = 0
        result = ProcessExit(code, record=record)
        if status == "FAILED" and not record:
            result.message = info.message  # e.g. the runtime environment could not be set up
        return result

    def signal(self, job_id: str, sig: int) -> None:
        sid = self._running.get(job_id)
        if sid is not None:
            try:
                self.client.stop_job(sid)
            except Exception as exc:
                log.warning("cannot stop Ray job %s: %s", sid, exc)

    def sample(self, job_id: str) -> tuple[float, int] | None:
        return None

    def logs(self, submission_id: str) -> str:
        try:
            return str(self.client.get_job_logs(submission_id))
        except Exception as exc:
            return f"(cannot read the Ray job's log: {exc})\n"

    def maintain(self, busy: int) -> None:
        return None

    def replenish(self, busy: int) -> None:
        return None

    def shutdown(self) -> None:
        return None
