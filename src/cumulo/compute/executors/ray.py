"""Ray clusters: the same job spec, run as a Ray job with its resources mapped.

The entrypoint is Cumulo's runner (so Ray's nodes need ``pip install cumulo``); the code
snapshot is the job's ``working_dir``. The runner sends the output folder and its exit record
back to the control plane over HTTP with the job's own token.

A job with an environment (``--requirements``, ``--env NAME``) takes its resolved pins to Ray
as the job's ``runtime_env`` ``pip`` field: Ray builds a virtual environment over the
interpreter it runs on, on each node that runs the job (once per node and set of pins), and
the runner starts in it, as do the Ray tasks the job starts itself. Ray's ``pip`` plugin is
used rather than its ``uv`` one because pip reads the node's own pip configuration (its
indexes, find-links, constraints and certificate), as Cumulo's local builds do; uv would need
index options worked out on the control plane, the wrong machine for a remote cluster.
"""

from __future__ import annotations

import base64
import json
import logging
import shlex
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from cumulo.compute.executors import Attempt, Found, Launch, Launched, ProcessExit, Resources
from cumulo.errors import Invalid, Unavailable

__all__ = ["RayExecutor", "RayProbe", "pip_runtime_env", "probe_ray_head"]

log = logging.getLogger("cumulo.compute")


# Run by the interpreter named for the head; it says which one it is, what the cluster holds,
# and whether Cumulo (which runs every job there) is installed beside Ray.
_PROBE = """
import importlib.util, json, sys
try:
    import ray
except ImportError as exc:
    print("CUMULO_PROBE", json.dumps({"python": sys.executable, "error": str(exc)}))
    raise SystemExit(3)
ray.init(logging_level="ERROR")
print("CUMULO_PROBE", json.dumps({
    "python": sys.executable, "resources": ray.cluster_resources(),
    "cumulo": importlib.util.find_spec("cumulo") is not None}))
"""


class RayProbe(NamedTuple):
    """What a probe job found on a Ray cluster."""

    endpoint: str  # the job API's URL that the address leads to
    resources: dict[str, float]  # the cluster's totals: CPU, memory (bytes), GPU, ...
    python: str  # the interpreter that ran the probe on the head (its sys.executable)


def _probe_entrypoint(python: str) -> str:
    # Ray runs an entrypoint in the head's own working folder, and `python -c` imports from
    # the folder it runs in first: a folder named `ray` there would be imported instead of
    # Ray. So the probe runs in an empty folder of its own, removed after.
    return (f'dir=$(mktemp -d) && cd "$dir" && {shlex.quote(python)} -c {shlex.quote(_PROBE)}; '
            'status=$?; cd / && [ -n "$dir" ] && rm -rf "$dir"; exit $status')


def probe_ray_head(address: str, *, python: str | None = None,
                   timeout: float = 120.0) -> RayProbe:
    """Find a Ray cluster's job API, read its total resources (CPU, memory, GPU), and find
    the interpreter that runs Cumulo there.

    ``address`` is anything Ray's job client takes: the dashboard (``http://head:8265``),
    ``ray://head:10001``, ``head:6379`` or ``auto``. The probe is a tiny Ray job, so what it
    finds is what a job there would see. It runs ``python`` (an interpreter on the head,
    like ``/opt/venv/bin/python``), or else whatever ``python`` the head's PATH finds.
    """
    from cumulo.compute.raylogs import user_output

    try:
        from ray.job_submission import JobStatus, JobSubmissionClient
    except ImportError as exc:
        raise Invalid("Ray clusters need Ray: pip install 'cumulo[ray]'") from exc
    try:
        client = JobSubmissionClient(address)
        sid = client.submit_job(entrypoint=_probe_entrypoint(python or "python"),
                                entrypoint_num_cpus=0)
        deadline = time.monotonic() + timeout
        while not (status := client.get_job_status(sid)).is_terminal():
            if time.monotonic() > deadline:
                client.stop_job(sid)
                raise Unavailable(f"the Ray cluster at {address} did not run a probe job in "
                                  f"{timeout:.0f}s")
            time.sleep(0.2)
        logs = user_output(client.get_job_logs(sid))
        client.delete_job(sid)
    except Unavailable:
        raise
    except Exception as exc:
        raise Unavailable(f"cannot reach the Ray cluster at {address}: {exc}") from exc
    found = [json.loads(line.split(" ", 1)[1]) for line in logs.splitlines()
             if line.startswith("CUMULO_PROBE ")]
    which = "named with --python" if python else "the python on the head's PATH"
    fix = "name the head's interpreter that has Cumulo and Ray with --python"
    if found and "error" in found[0]:
        raise Unavailable(f"on the Ray cluster at {address}, {found[0]['python']} ({which}) "
                          f"cannot import Ray ({found[0]['error']}): {fix}")
    if status != JobStatus.SUCCEEDED or not found:
        last = (logs.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"the Ray cluster at {address} could not run a probe job with "
                          f"{python or 'python'} ({which}): {last}"
                          + ("" if python else f"; {fix}"))
    if not found[0]["cumulo"]:
        raise Unavailable(f"on the Ray cluster at {address}, {found[0]['python']} ({which}) "
                          "has Ray but not Cumulo, which runs every job there: pip install "
                          f"'cumulo[ray]' there, or {fix}")
    return RayProbe(str(client.get_address()), found[0]["resources"],
                    found[0]["python"] or python or "python")


def pip_runtime_env(environment: dict[str, Any]) -> dict[str, Any]:
    """The ``pip`` field of a Ray ``runtime_env`` that installs a job's environment
    (``Launch.environment``: its digest, lock, python and isolated).

    The lock is a complete resolution, so it is installed as it is (``--no-deps``), as a local
    build installs it; pins the node's interpreter already meets are left as they are. pip's
    cache is kept (Ray turns it off by default): a second node, or the same pins after Ray
    forgot them, installs from it. Ray's virtual environment always sees the packages of the
    interpreter it is made from (it is cloned from it, or made with
    ``--system-site-packages``), which is what keeps Cumulo and Ray importable in a layered
    environment; for the same reason an isolated one cannot be honoured, and is refused."""
    digest = str(environment.get("digest", ""))[:12]
    if environment.get("isolated"):
        raise Invalid(f"environment {digest} is isolated, and a Ray cluster cannot run an "
                      "isolated environment: Ray installs a job's packages over the "
                      "interpreter it runs on, whose own packages (Ray's, Cumulo's) stay "
                      "visible. Leave --isolated out (the pins still come first), or run the "
                      "job on a local cluster")
    pins = [line.strip() for line in str(environment.get("lock") or "").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    return {"packages": pins, "pip_check": False,
            "pip_install_options": ["--no-deps", "--disable-pip-version-check"]}


class RayExecutor:
    remote = True

    def __init__(self, name: str, *, home: Path, wake: threading.Event,
                 address: str | None = None, preload: str = "none") -> None:
        self.name = name
        self.address = address or "auto"
        self.home = home
        self._client: Any = None
        self._running: dict[str, str] = {}  # job id -> Ray submission id
        self.running_now: set[str] = set()  # jobs Ray reports as RUNNING
        self._exit_files: dict[str, Path] = {}
        self.python = "python"  # the head's interpreter that has Cumulo (configure sets it)

    @classmethod
    def probe(cls, address: str | None, *, python: str | None = None) -> Found:
        if not address:
            raise Invalid("a ray cluster needs --address (ray://host:10001 or auto)")
        head = probe_ray_head(address, python=python)
        return Found(Resources(head.resources.get("CPU", 0.0),
                               int(head.resources.get("memory", 0)),
                               int(head.resources.get("GPU", 0))),
                     endpoint=head.endpoint, python=python or head.python)

    def configure(self, cluster: Any) -> None:
        from cumulo.compute.clusters import ray_python

        address = cluster.endpoint or cluster.address or "auto"
        if address != self.address:
            self.address, self._client = address, None
        self.python = ray_python(cluster)

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

    def launch(self, launch: Launch) -> Launched:
        code = launch.code
        if code is None:
            code = launch.job_dir / "work"
            code.mkdir(exist_ok=True)
        submission_id = f"cumulo-{launch.job_id}-{launch.attempt}"
        spec = {**launch.spec, "upload_outputs": True, "log": None, "exit_file": None}
        env = spec.pop("env")
        payload = base64.b64encode(json.dumps({**spec, "env": {}}).encode()).decode()
        # The spec rides on the command line; the environment (with the job's token) in
        # runtime_env, where the runner merges it in.
        runtime_env: dict[str, Any] = {"working_dir": str(code), "env_vars": env}
        python = shlex.quote(self.python)
        metadata = {"cumulo_job": launch.job_id}
        if launch.environment is not None:
            runtime_env["pip"] = pip_runtime_env(launch.environment)
            # Ray activates the environment it built for the entrypoint: its `python` is
            # first on PATH (the cluster's named interpreter would bypass it).
            python = "python"
            metadata["cumulo_environment"] = launch.environment["digest"][:12]
        try:
            self.client.submit_job(
                entrypoint=f"{python} -m cumulo.compute.runner --spec {payload}",
                submission_id=submission_id, runtime_env=runtime_env,
                entrypoint_num_cpus=launch.cpus, entrypoint_num_gpus=launch.gpus or None,
                entrypoint_memory=launch.memory, metadata=metadata,
            )
        except Exception as exc:
            # A control plane killed between submitting this attempt and recording it left it
            # running on Ray: the id is this very attempt's, so watch that one rather than
            # fail the attempt and run the job a second time.
            if f"{submission_id} already exists" not in str(exc):
                raise
            log.info("Ray job %s was submitted before (by a control plane that stopped): "
                     "watching it", submission_id)
        self._running[launch.job_id] = submission_id
        self._exit_files[launch.job_id] = launch.exit_file
        return Launched(backend_ref=submission_id, running=False)

    def adopt(self, attempt: Attempt) -> bool:
        if not attempt.backend_ref:  # never submitted
            return False
        self._running[attempt.job_id] = attempt.backend_ref
        self._exit_files[attempt.job_id] = attempt.exit_file
        return True

    def running(self, job_id: str) -> bool:
        return job_id in self.running_now

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

    def logs(self, backend_ref: str) -> str | None:
        """The job's own output, without Ray's set-up lines. Filtered here only, so that the
        live log (read by offset) and the stored one are the same text."""
        from cumulo.compute.raylogs import user_output

        try:
            text = str(self.client.get_job_logs(backend_ref))
        except Exception as exc:
            return f"(cannot read the Ray job's log: {exc})\n"
        return user_output(text)

    @property
    def idle(self) -> int:
        return 0

    @property
    def preloaded(self) -> list[str]:
        return []

    def maintain(self, busy: int, *, ended: bool = False) -> None:
        return None

    def shutdown(self) -> None:
        return None
