"""Jobs in container images (``--image``): run by Podman or Docker where one runs on this
machine. Where none does, the option is refused with that reason, before anything is queued.

A job in an image runs the same runner as every local job (``python -m cumulo.compute.runner``,
its spec on stdin), inside ``ENGINE run``: the job's folder (its code, output and checkpoints,
its log and exit record) is mounted at the same path inside, so every path in the spec holds;
the ``cumulo`` package is mounted read-only and put on ``PYTHONPATH`` (the runner and
``cumulo.job`` need only the standard library; the image needs Python 3.11 or newer); inputs
kept as local files are mounted read-only where the job expects them; the container shares the
host's network, so the job reaches the control plane at the same URL. The container is named
``cumulo-JOB-ATTEMPT``: cancelling the job stops it, and killing it removes it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from cumulo.errors import Invalid

__all__ = ["ENGINES", "container_name", "find_engine", "refuse_or_engine", "remove",
           "run_command", "send_signal"]

ENGINES = ("podman", "docker")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")
_CACHE_SECONDS = 30.0
_found: dict[str, tuple[float, str | None, str]] = {}


def find_engine() -> tuple[str | None, str]:
    """The first engine that answers (its command), or None and why none does; looked up at
    most every 30 s."""
    cached = _found.get("engine")
    if cached is not None and time.monotonic() - cached[0] < _CACHE_SECONDS:
        return cached[1], cached[2]
    engine, why = _probe()
    _found["engine"] = (time.monotonic(), engine, why)
    return engine, why


def _probe() -> tuple[str | None, str]:
    reasons = []
    for name in ENGINES:
        path = shutil.which(name)
        if path is None:
            reasons.append(f"{name} is not installed")
            continue
        try:
            out = subprocess.run([path, "info"], capture_output=True, text=True, timeout=15)
        except (OSError, subprocess.TimeoutExpired) as exc:
            reasons.append(f"{name} did not answer ({exc})")
            continue
        if out.returncode == 0:
            return path, ""
        said = " ".join((out.stderr or out.stdout).split())[-200:]
        reasons.append(f"{name} is installed but its engine does not run ({said})")
    return None, "; ".join(reasons)


def refuse_or_engine(image: str, *, cluster_type: str = "local") -> str:
    """The engine that will run ``image``; Invalid, saying why, where none can."""
    if not _IMAGE.match(image):
        raise Invalid(f"--image {image!r} is not an image reference (like python:3.12-slim or "
                      "registry.example.com/team/train:1.4)")
    if cluster_type != "local":
        raise Invalid(f"--image runs jobs on local clusters (Podman or Docker on this machine); "
                      f"a {cluster_type} cluster runs its own workers: use --requirements or "
                      "--env NAME there")
    engine, why = find_engine()
    if engine is None:
        raise Invalid(f"--image {image}: no container engine runs on this machine: {why}. "
                      "Install and start Podman or Docker, or run the job without --image "
                      "(--requirements FILE or --env NAME give it its own Python packages)",
                      details={"image": image})
    return engine


def container_name(job_id: str, attempt: int) -> str:
    return f"cumulo-{job_id}-{attempt}"


@functools.cache
def _package() -> Path:
    import cumulo

    return Path(cumulo.__file__).resolve().parent


def run_command(engine: str, image: str, *, name: str, job_dir: Path,
                env: dict[str, Any], cpus: float, memory: int | None, gpus: list[int]
                ) -> list[str]:
    """``ENGINE run ...`` for a job's runner in ``image`` (its spec comes on stdin)."""
    cmd = [engine, "run", "--rm", "-i", "--name", name, "--network", "host",
           "--user", f"{os.getuid()}:{os.getgid()}", "--cpus", f"{cpus:g}",
           "-v", f"{job_dir}:{job_dir}", "-v", f"{_package()}:/opt/cumulo/cumulo:ro",
           "-e", "PYTHONPATH=/opt/cumulo", "-w", str(job_dir / "work")]
    if memory:
        cmd += ["--memory", str(memory)]
    if gpus:
        cmd += ["--gpus", "device=" + ",".join(str(g) for g in gpus)] if "docker" in \
            Path(engine).name else ["--device", *(f"nvidia.com/gpu={g}" for g in gpus)]
    for path in _input_paths(env):
        cmd += ["-v", f"{path}:{path}:ro"]
    return [*cmd, image, "python", "-m", "cumulo.compute.runner"]


def _input_paths(env: dict[str, Any]) -> list[str]:
    """Inputs the job reads as local files (their paths, mounted read-only)."""
    try:
        inputs = json.loads(env.get("CUMULO_JOB_INPUTS") or "{}")
    except ValueError:
        return []
    paths = [spec["path"] for spec in inputs.values()
             if isinstance(spec, dict) and isinstance(spec.get("path"), str)]
    return sorted(set(paths))


def send_signal(engine: str, name: str, sig: int) -> None:
    """``sig`` to the container's processes (the engine delivers it)."""
    subprocess.run([engine, "kill", "--signal", str(sig), name], capture_output=True,
                   timeout=30, check=False)


def remove(engine: str, name: str) -> None:
    """Stop and remove the container, whatever it is doing."""
    subprocess.run([engine, "rm", "-f", name], capture_output=True, timeout=60, check=False)
