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

import httpx

__all__ = [
    "DATA", "MIB", "REPO", "TOKEN", "cpu_seconds", "free_port", "own_cpu_seconds",
    "proc_mem_mb", "register_model", "reset_peak", "start_server", "stop_server",
    "wait_preloaded",
]

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "bench" / ".data"
MIB = 1 << 20
TOKEN = "cml_bench-admin-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = Path(sys.executable).parent / "cumulo"
    cumulo = str(exe) if exe.exists() else shutil.which("cumulo")
    if not cumulo:
        sys.exit("cannot find the 'cumulo' command; run 'make bench' (it installs the project)")
    port = free_port()
    # No CUMULO_* from the caller's environment: a throwaway home, database and credentials.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUMULO_")}
    env.update({
        "CUMULO_HOME": str(work / "home"),
        "CUMULO_PORT": str(port),
        "CUMULO_ADMIN_TOKEN": TOKEN,
        "CUMULO_CREDENTIALS": str(work / "credentials.toml"),
        "CUMULO_LOG_LEVEL": "warning",
    })
    log = work / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([cumulo, "up"], env=env, cwd=work, stdout=out,
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
