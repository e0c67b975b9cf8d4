"""Jobs in container images (``--image``): run by Podman or Docker where one runs on this
machine. Where none does, the option is refused with that reason, before anything is queued."""

from __future__ import annotations

import shutil
import subprocess

from cumulo.errors import Invalid

__all__ = ["ENGINES", "find_engine", "refuse_or_engine"]

ENGINES = ("podman", "docker")


def find_engine() -> tuple[str | None, str]:
    """The first engine that answers (its command), or None and why none does."""
    reasons = []
    for name in ENGINES:
        path = shutil.which(name)
        if path is None:
            reasons.append(f"{name} is not installed")
            continue
        try:
            out = subprocess.run([path, "info", "--format", "{{.ServerVersion}}"
                                  if name == "docker" else "{{.Version.Version}}"],
                                 capture_output=True, text=True, timeout=15)
        except (OSError, subprocess.TimeoutExpired) as exc:
            reasons.append(f"{name} did not answer ({exc})")
            continue
        if out.returncode == 0:
            return path, ""
        said = " ".join((out.stderr or out.stdout).split())[:200]
        reasons.append(f"{name} is installed but its engine does not run ({said})")
    return None, "; ".join(reasons)


def refuse_or_engine(image: str) -> str:
    """The engine that will run ``image``; Invalid, saying why, where none can."""
    engine, why = find_engine()
    if engine is None:
        raise Invalid(f"--image {image}: no container engine runs on this machine: {why}. "
                      "Install and start Podman or Docker, or run the job without --image "
                      "(--requirements FILE or --env NAME give it its own Python packages)",
                      details={"image": image})
    raise Invalid(f"--image {image}: running jobs in containers with {engine} is not built "
                  "yet; use --requirements FILE or --env NAME for the job's own packages",
                  details={"image": image})
