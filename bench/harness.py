"""What the benchmarks share: a throwaway `cumulo up`, and reading a process's CPU and memory.

Each script in bench/ imports this module (it sits beside them on sys.path).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "DATA", "MIB", "OVERHEAD_GOAL", "OVERHEAD_SETTINGS", "REPO", "TOKEN", "cpu_seconds",
    "free_port", "overhead_summary", "overhead_verdict", "own_cpu_seconds", "proc_mem_mb",
    "register_model", "reset_peak", "start_server", "stop_server", "turns", "wait_preloaded",
]

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "bench" / ".data"
MIB = 1 << 20
TOKEN = "cml_bench-admin-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(work: Path, *,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """``cumulo up`` with its home, log and credentials in ``work``, and these settings
    (``env``: CUMULO_* variables) besides; the process and its URL, once it answers."""
    work.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).parent / "cumulo"
    cumulo = str(exe) if exe.exists() else shutil.which("cumulo")
    if not cumulo:
        sys.exit("cannot find the 'cumulo' command; run 'make bench' (it installs the project)")
    port = free_port()
    # No CUMULO_* from the caller's environment: a throwaway home, database and credentials.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CUMULO_")}
    environ.update({
        "CUMULO_HOME": str(work / "home"),
        "CUMULO_PORT": str(port),
        "CUMULO_ADMIN_TOKEN": TOKEN,
        "CUMULO_CREDENTIALS": str(work / "credentials.toml"),
        "CUMULO_LOG_LEVEL": "warning",
        **(env or {}),
    })
    log = work / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([cumulo, "up"], env=environ, cwd=work, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            sys.exit(f"cumulo up exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_server(proc)
            sys.exit(f"cumulo up did not answer in 60s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


# The --overhead modes of bench/serving.py and bench/jobs.py: two servers in one run, one with
# metrics and metering on (the defaults), one with both off; issue 27's goal for what they cost.
OVERHEAD_SETTINGS = {
    "on": {"CUMULO_METRICS": "true", "CUMULO_METERING": "true"},
    "off": {"CUMULO_METRICS": "false", "CUMULO_METERING": "false"},
}
OVERHEAD_GOAL = 1.02


def turns(rounds: int) -> list[tuple[str, str]]:
    """The order of each round's two measures: on, off, then off, on, and so on, so that a
    machine that drifts (warming, or another user's load coming and going) favours neither."""
    return [("on", "off") if r % 2 == 0 else ("off", "on") for r in range(rounds)]


def overhead_summary(ratios: list[float]) -> dict[str, Any]:
    """The median of per-round on/off ratios (above 1: on is slower), its interquartile range,
    and a 95% confidence interval for that median (from the order statistics: no assumption
    about the noise's shape; as wide as the figures themselves with under 6 rounds)."""
    import math
    import statistics

    ordered = sorted(ratios)
    n = len(ordered)
    q1, _, q3 = statistics.quantiles(ordered, n=4) if n > 1 else (ordered[0],) * 3
    # The widest k with P(Binomial(n, 1/2) < k) <= 2.5%: [k-th, (n+1-k)-th] holds the median.
    k, below = 0, 0.0
    while k < n // 2:
        below += math.comb(n, k) / 2**n
        if below > 0.025:
            break
        k += 1
    low, high = (ordered[k - 1], ordered[n - k]) if k else (ordered[0], ordered[-1])
    return {"ratio": round(statistics.median(ordered), 4), "q1": round(q1, 4),
            "q3": round(q3, 4), "iqr": round(q3 - q1, 4),
            "ci95": [round(low, 4), round(high, 4)]}


def overhead_verdict(summary: dict[str, Any]) -> str:
    """What an :func:`overhead_summary` says of the goal, noise included."""
    low, high = summary["ci95"]
    if high <= OVERHEAD_GOAL:
        return "met: the whole 95% CI is within the goal"
    if low > OVERHEAD_GOAL:
        return "NOT met: the whole 95% CI is past the goal"
    return ("not resolved: the 95% CI spans the goal, so the noise is larger than the "
            "difference sought; run more rounds, or on a quieter machine")


def register_model(url: str, model: Path, experiment: str, name: str = "churn") -> None:
    """Log the MLflow model saved at ``model`` to the server's MLflow and register it as
    ``name`` (version 1 on a fresh server), as a user's training script would."""
    import mlflow

    os.environ["MLFLOW_TRACKING_TOKEN"] = TOKEN
    mlflow.set_tracking_uri(f"{url}/mlflow")
    mlflow.set_registry_uri(f"{url}/mlflow")
    import mlflow.sklearn
    from mlflow.models import Model

    mlflow.set_experiment(experiment)
    with mlflow.start_run():
        mlflow.sklearn.log_model(mlflow.sklearn.load_model(str(model)), name="model",
                                 registered_model_name=name, serialization_format="pickle",
                                 signature=Model.load(str(model)).signature)


def wait_preloaded(client: object, timeout: float = 180) -> list[str]:
    """Wait for the local cluster's fork server to finish its imports (a server that has been
    up for a little while); the modules it preloaded."""
    deadline = time.monotonic() + timeout
    while not (loaded := client.clusters.show("local")["preloaded"]):  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            sys.exit("the local cluster's fork server did not get ready in time")
        time.sleep(0.2)
    return list(loaded)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def proc_mem_mb(pid: int) -> dict[str, float]:
    """VmHWM (peak RSS) and VmRSS of a process, in MiB."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                out[name] = int(rest.split()[0]) / 1024  # kB
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU time of this process (the SDK side) and its finished children (cp)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def reset_peak(pid: int) -> bool:
    """Set a process's VmHWM back to its current RSS (Linux 4.0+); False where not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
