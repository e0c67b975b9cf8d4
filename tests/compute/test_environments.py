"""Environments: jobs with their own packages, built with uv (from PyPI or this machine's
package cache) on a real server; named environments; the bad input the issue names.

The packages asked for are small and pure Python (six, tabulate), pinned to versions the server's
own environment does not have, so that what the job imports proves which environment it ran in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cumulo.errors import Conflict, Invalid, NotFound
from tests.services import Cumulo

SIX = "six==1.15.0"  # the server has a newer six (python-dateutil needs one)


@pytest.fixture(scope="module")
def envcode(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("envcode")
    (folder / "which.py").write_text(
        "import sys, six, cumulo.job, cumulo.client\n"
        "print('six', six.__version__, flush=True)\n"
        "print('python', sys.executable, flush=True)\n")
    (folder / "requirements.txt").write_text(f"# what the job needs\n{SIX}\n")
    return folder


def _log(job: object) -> list[str]:
    return list(job.logs())  # type: ignore[attr-defined]


def test_a_job_runs_with_its_own_requirements(local_server: Cumulo, envcode: Path) -> None:
    c = local_server.client()
    job = c.jobs.run("which.py", code=envcode, requirements=envcode / "requirements.txt")
    info = job.wait(300)
    assert info["state"] == "succeeded", (info["reason"], _log(job))
    lines = _log(job)
    assert "six 1.15.0" in lines
    python = next(line for line in lines if line.startswith("python "))
    assert info["environment"] and info["environment"] in python  # its own interpreter
    assert info["environment_label"] == "requirements.txt"
    assert info["env_ready_at"] is not None
    # The same requirements again: the same environment, found, not built again.
    again = c.jobs.run("which.py", code=envcode, requirements=[SIX])
    assert again.wait(120)["environment"] == info["environment"]
    assert "six 1.15.0" in _log(again)
    env = c.envs.show(info["environment"][:12])
    assert env["state"] == "ready" and env["jobs"] >= 2 and "six==1.15.0" in env["lock"]
    assert env["installed"] >= 1 and env["size"] > 0
    # The server's own environment is untouched.
    import six

    assert six.__version__ != "1.15.0"


def test_named_environments(local_server: Cumulo, envcode: Path) -> None:
    c = local_server.client()
    env = c.envs.create("six15", envcode / "requirements.txt")
    assert env["state"] == "ready" and "six15" in env["names"]
    job = c.jobs.run("which.py", code=envcode, environment="six15")
    assert job.wait(120)["state"] == "succeeded"
    assert "six 1.15.0" in _log(job)
    listed = {e["digest"]: e for e in c.envs.list()}
    assert "six15" in listed[env["digest"]]["names"]
    out = local_server.cli("envs", "ls", "--json")
    assert out.returncode == 0, out.stderr
    assert any("six15" in e["names"] for e in json.loads(out.stdout))
    shown = local_server.cli("envs", "show", "six15")
    assert "six==1.15.0" in shown.stdout and shown.returncode == 0
    # From the CLI: --env NAME runs in it, --env K=V still sets a variable.
    run = local_server.cli("jobs", "run", "--code", str(envcode), "--entry", "which.py",
                           "--env", "six15", "--env", "X=1", "--wait")
    assert run.returncode == 0, run.stderr
    assert "six 1.15.0" in run.stdout
    c.envs.delete("six15")
    with pytest.raises(NotFound):
        c.envs.show("six15")
    with pytest.raises(NotFound, match="no environment 'six15'"):
        c.jobs.run("which.py", code=envcode, environment="six15")


def test_a_requirement_that_does_not_resolve_is_refused_naming_its_line(
        local_server: Cumulo, envcode: Path) -> None:
    c = local_server.client()
    before = len(c.jobs.list())
    with pytest.raises(Invalid, match=r"line 2: cumulo-no-such-package==1\.0 has no version"):
        c.jobs.run("which.py", code=envcode,
                   requirements=["six", "cumulo-no-such-package==1.0"])
    with pytest.raises(Invalid, match=r"line 1: six==0\.0\.1 has no version"):
        c.envs.create("nope", ["six==0.0.1"])
    assert len(c.jobs.list()) == before  # nothing queued
    with pytest.raises(NotFound):
        c.envs.show("nope")  # nothing named


def test_a_pin_that_conflicts_with_cumulos_runtime_is_named(local_server: Cumulo,
                                                            envcode: Path) -> None:
    with pytest.raises(Conflict, match=r"httpx==0\.20\.0.*Cumulo's own runtime.*httpx>="):
        local_server.client().jobs.run("which.py", code=envcode,
                                       requirements=["httpx==0.20.0"])


def test_pip_options_and_bad_lines_are_refused(local_server: Cumulo, envcode: Path) -> None:
    c = local_server.client()
    with pytest.raises(Invalid, match="line 2: '--index-url x': pip options are not taken"):
        c.envs.create("opts", ["six", "--index-url x"])
    with pytest.raises(Invalid, match="line 1: 'six===' is not a requirement"):
        c.envs.create("bad", ["six==="])
    with pytest.raises(Invalid, match="environment name"):
        c.envs.create("Bad Name", ["six"])
    with pytest.raises(Invalid, match=r"--python 3\.99: no such interpreter"):
        c.jobs.run("which.py", code=envcode, requirements=["six"], python="3.99")


def test_image_is_refused_without_a_container_engine(local_server: Cumulo,
                                                     envcode: Path) -> None:
    # No container engine runs on these machines (a docker client may be installed): the
    # refusal says which engines were looked for and why each cannot run the job.
    run = local_server.cli("jobs", "run", "--code", str(envcode), "--entry", "which.py",
                           "--image", "python:3.11-slim")
    assert run.returncode == 1
    assert "no container engine runs on this machine" in run.stderr
    assert "podman" in run.stderr and "docker" in run.stderr


def test_isolated_environment_sees_none_of_the_servers_packages(local_server: Cumulo,
                                                                 envcode: Path) -> None:
    (envcode / "bare.py").write_text(
        "import importlib.util, six, cumulo.client, cumulo.job\n"
        "print('pandas', importlib.util.find_spec('pandas') is not None, flush=True)\n"
        "print('six', six.__version__, flush=True)\n")
    job = local_server.client().jobs.run("bare.py", code=envcode, requirements=[SIX],
                                         isolated=True)
    info = job.wait(300)
    assert info["state"] == "succeeded", (info["reason"], _log(job))
    assert _log(job)[:2] == ["pandas False", "six 1.15.0"]


def test_runtime_packages_cover_what_cumulo_imports_inside() -> None:
    """RUNTIME_PACKAGES (what an isolated environment gets besides the user's pins) is what
    the SDK, the job runtime and the serving worker really import."""
    from cumulo.compute.environments.build import RUNTIME_PACKAGES

    probe = (
        "import sys, json\n"
        "from importlib.metadata import packages_distributions\n"
        "import cumulo.client, cumulo.job, cumulo.compute.runner\n"
        "import cumulo.serving.http, cumulo.serving.formats, cumulo.serving.stats\n"
        "dists = packages_distributions()\n"
        "found = set()\n"
        "for name in list(sys.modules):\n"
        "    top = name.split('.')[0]\n"
        "    if top in sys.stdlib_module_names or top.startswith('_') or top == 'cumulo':\n"
        "        continue\n"
        "    found.update(d.lower() for d in dists.get(top, []))\n"
        "print(json.dumps(sorted(found)))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    imported = set(json.loads(out.stdout))
    declared = {p.lower() for p in RUNTIME_PACKAGES}
    # Imported only where installed, and done without otherwise: httpx's optional decoders
    # (zstd, brotli), and typing_extensions on older Pythons.
    optional = {"typing-extensions", "zstandard", "brotli", "brotlicffi"}
    assert imported <= declared | optional, imported - declared
