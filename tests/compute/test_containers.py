"""Jobs in container images (``--image``).

No container engine runs on these machines (a docker client may be installed, without its
daemon), so the path where one runs is tested with a stand-in: a ``docker`` program on the
server's PATH that answers ``info``, records each command, and carries out ``run`` by running
the image's command on this machine with the mounts and variables it was given (it maps the
read-only ``cumulo`` mount to the package's real folder). That checks what Cumulo asks of the
engine and that the job round-trips through it; what a real engine does with it is documented,
not tested here. The refusal where no engine runs is tested in test_environments.py.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import cumulo
from cumulo.errors import Invalid
from tests.services import Cumulo, start_cumulo

FAKE_DOCKER = '''#!{python}
import json, os, subprocess, sys
calls = {calls!r}
args = sys.argv[1:]
with open(calls, "a") as f:
    f.write(json.dumps(args) + "\\n")
if args[:1] == ["info"]:
    print("Server Version: stand-in"); sys.exit(0)
if args[:1] in (["kill"], ["rm"]):
    name = args[-1]
    pidfile = os.path.join(os.path.dirname(calls), name + ".pid")
    if os.path.exists(pidfile):
        import signal
        sig = int(args[args.index("--signal") + 1]) if "--signal" in args else 9
        try:
            os.killpg(int(open(pidfile).read()), sig)
        except ProcessLookupError:
            pass
    sys.exit(0)
if args[:1] != ["run"]:
    sys.exit(2)
env = dict(os.environ)
i, name, workdir, mounts = 1, None, None, []
while not args[i].startswith("python:"):
    flag = args[i]
    if flag in ("--rm", "-i"):
        i += 1; continue
    value = args[i + 1]
    if flag == "--name": name = value
    elif flag == "-w": workdir = value
    elif flag == "-v": mounts.append(value)
    elif flag == "-e":
        k, _, v = value.partition("="); env[k] = v
    i += 2
image, command = args[i], args[i + 1:]
env["PYTHONPATH"] = {package_parent!r}  # the read-only cumulo mount, as it is on this machine
command = [sys.executable if command[0] == "python" else command[0], *command[1:]]
proc = subprocess.Popen(command, env=env, cwd=workdir, start_new_session=True)
with open(os.path.join(os.path.dirname(calls), name + ".pid"), "w") as f:
    f.write(str(proc.pid))
sys.exit(proc.wait())
'''


@pytest.fixture(scope="module")
def engine_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cumulo, Path]]:
    root = tmp_path_factory.mktemp("engine")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    calls = root / "calls.jsonl"
    fake = bin_dir / "docker"
    fake.write_text(FAKE_DOCKER.format(python=sys.executable, calls=str(calls),
                                       package_parent=str(Path(cumulo.__file__).parent.parent)))
    fake.chmod(0o755)
    import os

    server = start_cumulo(root / ".cumulo", {"PATH": f"{bin_dir}:{os.environ['PATH']}",
                                             "CUMULO_JOB_GRACE_SECONDS": "1"})
    try:
        yield server, calls
    finally:
        server.stop()


def _calls(path: Path, verb: str) -> list[list[str]]:
    return [c for c in map(json.loads, path.read_text().splitlines()) if c[:1] == [verb]]


def test_a_job_runs_in_an_image_through_the_engine(engine_server: tuple[Cumulo, Path],
                                                   code: Path) -> None:
    server, calls = engine_server
    c = server.client()
    job = c.jobs.run("ok.py", code=code, image="python:3.12-slim")
    info = job.wait(60)
    assert info["state"] == "succeeded", (info["reason"], list(job.logs()))
    assert info["image"] == "python:3.12-slim" and info["environment"] is None
    run = _calls(calls, "run")[-1]
    assert run[run.index("--name") + 1] == f"cumulo-{job.id}-1"
    assert run[run.index("--network") + 1] == "host"
    mounts = [run[i + 1] for i, a in enumerate(run) if a == "-v"]
    assert any(m.endswith("/cumulo:ro") and ":/opt/cumulo/cumulo:" in m for m in mounts)
    assert any(job.id in m.split(":")[0] for m in mounts)  # its folder, at the same path
    assert run[-4:] == ["python:3.12-slim", "python", "-m", "cumulo.compute.runner"]
    shown = server.cli("jobs", "show", job.id)
    assert "container image python:3.12-slim" in shown.stdout


def test_cancelling_stops_the_container(engine_server: tuple[Cumulo, Path],
                                        code: Path) -> None:
    server, calls = engine_server
    c = server.client()
    job = c.jobs.run("sleep.py", code=code, args=["60"], image="python:3.12-slim")
    assert next(job.logs(follow=True)) == "sleeping"
    job.cancel()
    assert job.wait(60)["state"] == "cancelled"
    name = f"cumulo-{job.id}-1"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(c[-1] == name for c in _calls(calls, "kill")):
        time.sleep(0.1)
    assert any(c[-1] == name for c in _calls(calls, "kill"))


def test_image_with_requirements_is_refused(engine_server: tuple[Cumulo, Path],
                                            code: Path) -> None:
    c = engine_server[0].client()
    with pytest.raises(Invalid, match="--image brings its own Python"):
        c.jobs.run("ok.py", code=code, image="python:3.12-slim", requirements=["six"])
    with pytest.raises(Invalid, match="is not an image reference"):
        c.jobs.run("ok.py", code=code, image="bad image!")
