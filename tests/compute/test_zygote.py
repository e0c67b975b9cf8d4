"""Jobs forked from the local cluster's preloading fork server (cumulo.forkserver), end to end.

The server here preloads only numpy (the real default, ``auto``, is the whole ML stack and is
what the ML tests' server runs); the fork, signal, exit-code and fallback paths are the same.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from cumulo.compute.executors.local import AUTO, uses_preloaded
from cumulo.config import load_settings
from cumulo.errors import Invalid
from cumulo.forkserver import parse_preload
from tests.services import Cumulo, start_cumulo

# Whether numpy was loaded before the job's own code ran; the job imports it after (so that
# it goes to the fork server, which takes jobs whose code imports what it preloaded).
PRELOADED = "import sys; print('preloaded', 'numpy' in sys.modules, flush=True); import numpy"


@pytest.fixture(scope="module")
def forking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    home = tmp_path_factory.mktemp("zygote") / ".cumulo"
    # MLflow settings left in the control plane's environment (by a tuner in the same
    # process, say) must not reach jobs: they get their own.
    server = start_cumulo(home, {"CUMULO_PRELOAD": "numpy", "CUMULO_JOB_GRACE_SECONDS": "1",
                                 "MLFLOW_REGISTRY_URI": "http://127.0.0.1:9/stale"})
    _wait_ready(server)
    yield server
    server.stop()


def _wait_ready(server: Cumulo, timeout: float = 60) -> None:
    c = server.client()
    deadline = time.monotonic() + timeout
    while c.clusters.show("local")["preloaded"] != ["numpy"]:
        assert time.monotonic() < deadline, "the fork server never became ready"
        time.sleep(0.2)


def _zygote(server: Cumulo) -> psutil.Process:
    found = [p for p in psutil.Process(server.proc.pid).children(recursive=True)
             if _is_jobs_fork_server(p)]
    assert len(found) == 1, found
    return found[0]


def _is_jobs_fork_server(proc: psutil.Process) -> bool:
    line = " ".join(proc.cmdline())
    return "cumulo.forkserver.server" in line and "cumulo.compute.runner" in line


def _run(server: Cumulo, code: str, **kwargs: object) -> tuple[dict, list[str]]:
    job = server.client().jobs.run(command=["python", "-c", code], **kwargs)  # type: ignore[arg-type]
    info = job.wait(60)
    return info, list(job.logs())


def test_parse_preload() -> None:
    assert parse_preload("none") == [] and parse_preload(None) == []
    assert parse_preload("auto", AUTO) == list(AUTO)
    assert parse_preload("auto,torch", AUTO)[-1] == "torch"
    assert parse_preload(" numpy , json,numpy") == ["numpy", "json"]
    assert parse_preload(["numpy", "os.path"]) == ["numpy", "os.path"]
    with pytest.raises(ValueError, match="'numpy;rm' is not a module name"):
        parse_preload("numpy;rm")


@pytest.mark.parametrize(("code", "uses"), [
    ("import numpy as np", True), ("import sys; import pandas", True),
    ("import os, sys as s, sklearn.metrics", True), ("from mlflow import log_metric", True),
    ("from cumulo.ml.checkpoint import save_checkpoint", True), ("import cumulo.job", False),
    ("from cumulo.client import Client", False), ("import cumulo.pipelines.step", True),
    ("pass", False), ("import numpyx", False), ("x = 'import numpy'", False)])
def test_which_jobs_use_the_preloaded_modules(code: str, uses: bool) -> None:
    assert uses_preloaded(["python", "-c", code], None, parse_preload("auto", AUTO)) is uses
    assert uses_preloaded(["python", "-m", "cumulo.ml.train"], None, ["mlflow", "cumulo.ml"])
    assert uses_preloaded(["python", "-m", "cumulo.pipelines.step"], None,
                          parse_preload("auto", AUTO))
    assert not uses_preloaded(["python", "-c", "import numpy"], None, [])


def test_bad_preload_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="setting preload: preload entry '-x'"):
        load_settings({"CUMULO_HOME": str(tmp_path), "CUMULO_PRELOAD": "auto,-x"})
    assert load_settings({"CUMULO_HOME": str(tmp_path)}).preload == "auto"


def test_python_job_starts_with_the_preloaded_modules(forking: Cumulo, code: Path) -> None:
    info, lines = _run(forking, PRELOADED)
    assert info["state"] == "succeeded" and lines == ["preloaded True"]
    # The same job with a Python start-up variable needs an interpreter of its own.
    info, lines = _run(forking, PRELOADED, env={"PYTHONHASHSEED": "0"})
    assert info["state"] == "succeeded" and lines == ["preloaded False"]
    # MLflow's usage telemetry is off in jobs (a job's --env may turn it back on), and its
    # registry is this control plane's.
    info, lines = _run(forking, PRELOADED + "; import os; print(os.environ["
                       "'MLFLOW_DISABLE_TELEMETRY'], os.environ['MLFLOW_REGISTRY_URI'])")
    assert lines == ["preloaded True", f"true {forking.url}/mlflow"]
    # Code that imports nothing preloaded starts sooner from a fresh warm worker.
    info, lines = _run(forking, "import sys; print('preloaded', 'numpy' in sys.modules)")
    assert info["state"] == "succeeded" and lines == ["preloaded False"]


def test_code_folder_that_imports_preloaded_modules(forking: Cumulo, code: Path,
                                                    tmp_path: Path) -> None:
    # The import is in a module of the folder, not in the entry point: the folder counts.
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "helpers.py").write_text("import numpy as np\n\ndef mean(xs):\n"
                                       "    return float(np.mean(xs))\n")
    (folder / "main.py").write_text(
        "import sys\nwas = 'numpy' in sys.modules\nimport cumulo.job as job\n"
        "from helpers import mean\nprint('preloaded', was, 'mean', mean([1, 2, 3]))\n"
        "job.log_metric('loss', 0.5, step=1)\n(job.output_dir / 'out.txt').write_text('x')\n")
    job = forking.client().jobs.run("main.py", code=folder)
    info = job.wait(60)
    assert info["state"] == "succeeded", info
    assert list(job.logs()) == ["preloaded True mean 2.0"]
    assert [(p["step"], p["value"]) for p in job.metrics()["loss"]] == [(1, 0.5)]
    assert [a["path"] for a in job.artifacts()] == ["out.txt"]
    assert 0 < info["usage"]["cpu_seconds"] < 5


def test_forked_jobs_are_separate_processes(forking: Cumulo) -> None:
    code = ("import os, numpy as np, subprocess\n"
            "print(os.getpid() == os.getpgid(0), np.random.randint(1 << 30),"
            " subprocess.run(['true']).returncode)\n"
            "from threadpoolctl import threadpool_info\n"
            "print(sorted({p['num_threads'] for p in threadpool_info()}))")
    draws = set()
    for _ in range(2):
        info, lines = _run(forking, code, cpus=1)
        assert info["state"] == "succeeded", lines
        leader, draw, child = lines[0].split()
        # Its own process group (cancel reaches all of it), a child's exit code seen (the
        # fork server's SIGCHLD handling is not inherited), thread pools sized to --cpus 1.
        assert (leader, child) == ("True", "0") and lines[1] == "[1]"
        draws.add(draw)
    assert len(draws) == 2, "each forked job must get fresh random state"


def test_exit_codes_and_signals(forking: Cumulo) -> None:
    c = forking.client()
    fork = PRELOADED + "\nimport signal, sys, time\n"
    job = c.jobs.run(command=["python", "-c", fork + "sys.exit(3)"])
    info = job.wait(60)
    assert info["state"] == "failed" and info["exit_code"] == 3
    assert list(job.logs()) == ["preloaded True"]
    stubborn = ("signal.signal(signal.SIGTERM, lambda *a: print('ignoring', flush=True))\n"
                "print('started', flush=True)\nwhile True:\n    time.sleep(0.1)\n")
    job = c.jobs.run(command=["python", "-c", fork + stubborn])
    _wait_log(job, "started")
    job.cancel()
    info = job.wait(30)
    assert info["state"] == "cancelled", info
    assert list(job.logs())[:3] == ["preloaded True", "started", "ignoring"]
    # Killed from outside, with no chance to write its exit record: the fork server reports
    # the signal.
    job = c.jobs.run(command=["python", "-c", fork + "print('sleeping', flush=True)\n"
                              "time.sleep(60)\n"])
    _wait_log(job, "sleeping")
    os.kill(job.refresh()["pid"], signal.SIGKILL)
    info = job.wait(30)
    assert info["state"] == "failed" and info["exit_code"] == 137, info
    assert info["reason"] == "killed by SIGKILL", info


def test_jobs_run_on_when_the_fork_server_dies(forking: Cumulo) -> None:
    _zygote(forking).kill()
    info, lines = _run(forking, PRELOADED)  # a warm worker takes it meanwhile
    assert info["state"] == "succeeded" and lines[0].startswith("preloaded")
    _wait_ready(forking)  # and a new fork server is started
    info, lines = _run(forking, PRELOADED)
    assert lines == ["preloaded True"]


def test_no_fork_server_when_preload_is_none(compute: Cumulo) -> None:
    assert compute.client().clusters.show("local")["preloaded"] == []
    assert not [p for p in psutil.Process(compute.proc.pid).children(recursive=True)
                if _is_jobs_fork_server(p)]


def _wait_log(job, text: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while text not in list(job.logs()):
        assert time.monotonic() < deadline, f"the job never printed {text!r}"
        time.sleep(0.1)
