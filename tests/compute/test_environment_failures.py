"""Environments under bad input and bad luck, on real servers: a package that does not build,
a name removed while jobs use it, a build killed halfway, a full disk, a project's
pyproject.toml and uv.lock; and what an environment is for once built: warm starts, and the
build's own line in the costs.

The packages that misbehave are source trees the tests write (setuptools builds them): one
whose wheel does not build (as a C extension that does not compile), one whose metadata
cannot even be made, and one whose build waits for the test, so that the test knows where the
build is when it kills it. The rest are small pure-Python pins (six) the server does not have.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from cumulo.errors import Conflict, Invalid, NotFound
from tests.services import VENV_BIN, Cumulo, start_cumulo

SIX = "six==1.15.0"  # the server has a newer six (python-dateutil needs one)
PANDAS = "pandas==2.2.3"  # some 60 MB installed, at a version the server does not have

# When its process started, as a Unix time: from its age since boot (/proc's clock ticks),
# precise to 10 ms (psutil's create_time counts from a boot time in whole seconds).
WHICH = """\
import importlib, os, sys, time
with open("/proc/self/stat") as f:
    ticks = int(f.read().rsplit(")", 1)[1].split()[19])
with open("/proc/uptime") as f:
    age = float(f.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
print("started", repr(time.time() - age), flush=True)
print("python", sys.executable, flush=True)
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    print(name, getattr(module, "__version__", None) or module.VERSION, flush=True)
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Jobs that say where they run: which.py (when its process started, its interpreter,
    and the version of each module named), sleep.py SECONDS, burn.py CPU-SECONDS."""
    folder = tmp_path_factory.mktemp("probe")
    (folder / "which.py").write_text(WHICH)
    (folder / "sleep.py").write_text(
        "import sys, time\nprint('sleeping', flush=True)\ntime.sleep(float(sys.argv[1]))\n")
    (folder / "burn.py").write_text(
        "import sys, time\nstart = time.process_time()\n"
        "while time.process_time() - start < float(sys.argv[1]):\n    pass\n"
        "print('burnt', flush=True)\n")
    return folder


def package(parent: Path, name: str, *, fail: str | None = None,
            started: Path | None = None, release: Path | None = None) -> str:
    """A source tree setuptools builds (what ``pip install ./folder`` takes), as a
    requirement: ``NAME @ file:///...``. ``fail``: ``"wheel"`` (building its wheel raises,
    its metadata is fine) or ``"always"`` (its setup.py raises whatever it is asked).
    ``started``, ``release``: building the wheel touches ``started``, then waits for
    ``release`` to exist."""
    folder = parent / name
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text('VERSION = "1.0"\n')
    wheel = []
    if started is not None:
        wheel.append(f"    pathlib.Path({str(started)!r}).touch()")
    if release is not None:
        wheel.append(f"    while not pathlib.Path({str(release)!r}).exists():\n"
                     "        time.sleep(0.05)")
    if fail == "wheel":
        wheel.append("    raise RuntimeError('broken on purpose: its extension does not compile')")
    body = ["import pathlib, sys, time", "from setuptools import setup"]
    if wheel:
        body += ["if 'bdist_wheel' in sys.argv:  # building the wheel, not reading metadata",
                 *wheel]
    if fail == "always":
        body.append("raise RuntimeError('broken on purpose: setup.py cannot run here')")
    body.append(f"setup(name={name!r}, version='1.0', py_modules=[{name!r}])")
    (folder / "setup.py").write_text("\n".join(body) + "\n")
    return f"{name} @ {folder.as_uri()}"


def squash(text: str) -> str:
    """The CLI's output with its line wrapping undone."""
    return " ".join(text.split())


def lines(job: object) -> list[str]:
    return list(job.logs())  # type: ignore[attr-defined]


def wait_for(check: Callable[[], object], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


# --- a package that does not build ------------------------------------------------------------


def test_a_package_that_does_not_build_fails_the_job_with_uvs_reason(
        local_server: Cumulo, probe: Path, tmp_path: Path) -> None:
    c = local_server.client()
    broken = package(tmp_path, "broken", fail="wheel")
    job = c.jobs.run("which.py", code=probe, args=["broken"], requirements=[broken])
    info = job.wait(180)
    assert info["state"] == "failed", info
    digest = info["environment"]
    reason = info["reason"]
    assert reason.startswith(f"its environment (requirements) could not be built: {broken} "
                             "failed to build: "), reason
    assert "RuntimeError: broken on purpose: its extension does not compile" in reason
    assert "Traceback" not in reason and "File \"" not in reason  # that is in the log
    assert reason.endswith(f"(the build log: cumulo envs show {digest[:12]} --log)")
    assert info["env_ready_at"] is None and lines(job) == []  # it never started

    log = local_server.cli("envs", "show", digest[:12], "--log")
    assert log.returncode == 0, log.stderr
    assert "$ uv pip install" in log.stdout and "Traceback (most recent call last)" in log.stdout
    assert "broken on purpose" in log.stdout
    env = local_server.client().envs.show(digest)
    assert env["state"] == "failed" and env["names"] == [] and not env["built_here"]
    assert "broken on purpose" in env["error"]

    # envs create: the same reason, and the name is not given.
    (tmp_path / "requirements.txt").write_text(f"{broken}\n")
    out = local_server.cli("envs", "create", "broken", "-r", str(tmp_path / "requirements.txt"))
    assert out.returncode == 1
    said = squash(out.stderr)
    assert "environment broken could not be built" in said and "broken on purpose" in said
    assert f"cumulo envs show {digest[:12]} --log" in said
    with pytest.raises(NotFound):
        c.envs.show("broken")
    assert not any("broken" in e["names"] for e in c.envs.list())

    # Fixed, the same requirement is built again when it is next asked for: nothing stuck.
    package(tmp_path, "broken")
    env = c.envs.create("broken", [broken])
    assert env["state"] == "ready" and env["names"] == ["broken"] and env["digest"] == digest
    ran = c.jobs.run("which.py", code=probe, args=["broken"], environment="broken")
    assert ran.wait(120)["state"] == "succeeded"
    assert "broken 1.0" in lines(ran)


def test_a_package_whose_metadata_fails_is_refused_naming_its_line(
        local_server: Cumulo, probe: Path, tmp_path: Path) -> None:
    c = local_server.client()
    nometa = package(tmp_path, "nometa", fail="always")
    before = len(c.jobs.list())
    with pytest.raises(Invalid, match=r"line 2: nometa @ file://\S+ failed to build: .*"
                       r"RuntimeError: broken on purpose: setup.py cannot run here"):
        c.jobs.run("which.py", code=probe, requirements=[SIX, nometa])
    assert len(c.jobs.list()) == before  # nothing queued
    with pytest.raises(Invalid, match="broken on purpose"):
        c.envs.create("nometa", [nometa])
    with pytest.raises(NotFound):
        c.envs.show("nometa")


# --- removing a name in use --------------------------------------------------------------------


def test_an_environment_in_use_cannot_be_removed(local_server: Cumulo, probe: Path) -> None:
    c = local_server.client()
    digest = c.envs.create("six15-busy", [SIX])["digest"]
    c.clusters.create("serial-envs", max_workers=1, max_cpus=1)
    running = c.jobs.run("sleep.py", code=probe, args=["60"], environment="six15-busy",
                         cluster="serial-envs")
    queued = c.jobs.run("sleep.py", code=probe, args=["60"], environment="six15-busy",
                        cluster="serial-envs")
    assert next(running.logs(follow=True)) == "sleeping"
    assert queued.refresh()["state"] == "queued"

    out = local_server.cli("envs", "rm", "six15-busy")
    assert out.returncode == 1
    assert "environment 'six15-busy' is in use by 2 queued or running job(s)" in \
        squash(out.stderr)
    running.cancel()
    assert running.wait(60)["state"] == "cancelled"
    assert next(queued.logs(follow=True)) == "sleeping"
    with pytest.raises(Conflict, match="in use by 1 queued or running job"):
        c.envs.delete("six15-busy")
    assert c.envs.show("six15-busy")["names"] == ["six15-busy"]  # refused: nothing removed

    queued.cancel()
    assert queued.wait(60)["state"] == "cancelled"
    out = local_server.cli("envs", "rm", "six15-busy")
    assert out.returncode == 0, out.stderr
    with pytest.raises(NotFound):
        c.envs.show("six15-busy")
    # The name is gone; the environment the jobs ran in is still known by its digest.
    assert c.envs.show(digest)["state"] == "ready"


# --- a build killed halfway --------------------------------------------------------------------


def test_a_build_killed_halfway_is_never_used_and_the_next_starts_clean(
        tmp_path: Path, probe: Path) -> None:
    started, release = tmp_path / "building", tmp_path / "release"
    slow = package(tmp_path, "slow", started=started, release=release)
    home = tmp_path / ".cumulo"
    envs = home / "envs"
    server = start_cumulo(home)
    port = int(server.url.rsplit(":", 1)[1])
    try:
        c = server.client()
        job = c.jobs.run("which.py", code=probe, args=["slow"], requirements=[slow])
        digest = job.refresh()["environment"]
        wait_for(started.exists, "the build to reach the slow package")
        partial = list(envs.glob(".tmp-*"))
        assert len(partial) == 1 and not (envs / digest).exists()

        # The machine goes down mid-build: the server and everything it started (uv, the
        # package's setup.py, the warm workers) are killed at once.
        tree = psutil.Process(server.proc.pid).children(recursive=True)
        assert any(p.name() == "uv" for p in tree)
        server.stop(signal.SIGKILL)
        for proc in tree:
            proc.kill()
        psutil.wait_procs(tree, timeout=10)
        assert partial[0].exists() and not (envs / digest).exists()  # half built, not used
        started.unlink()

        server = start_cumulo(home, port=port)
        assert not partial[0].exists()  # removed at start: nothing half built is left
        c = server.client()
        wait_for(started.exists, "the next build to reach the slow package")
        assert not (envs / digest).exists()
        assert c.jobs.get(job.id).refresh()["state"] == "queued"
        release.touch()
        info = c.jobs.get(job.id).wait(180)
        assert info["state"] == "succeeded", info
        out = lines(c.jobs.get(job.id))
        assert "slow 1.0" in out
        assert f"python {envs / digest}/bin/python" in out
        assert (envs / digest / ".cumulo-env.json").is_file()
        assert not list(envs.glob(".tmp-*"))
        assert c.envs.show(digest)["state"] == "ready"
    finally:
        server.stop()


# --- a full disk -------------------------------------------------------------------------------


def test_a_full_disk_is_named_and_nothing_is_half_registered(tmp_path: Path,
                                                             probe: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a small disk for the environments is a tmpfs mounted there: needs root")
    home = tmp_path / ".cumulo"
    envs = home / "envs"
    envs.mkdir(parents=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(envs)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        server = start_cumulo(home)
        try:
            c = server.client()
            with pytest.raises(Conflict, match=r"could not be built: the disk is full: building "
                               rf"the environment in {envs} ran out of space \(20 MiB were free "
                               r"when it began\) \(uv: .*No space left on device\); free some "
                               r"space \('cumulo envs prune"):
                c.envs.create("big", [PANDAS])
            with pytest.raises(NotFound):
                c.envs.show("big")
            job = c.jobs.run("which.py", code=probe, requirements=[PANDAS])
            info = job.wait(180)
            assert info["state"] == "failed" and "the disk is full" in info["reason"]
            env = c.envs.show(info["environment"], log=True)
            assert env["state"] == "failed" and env["names"] == [] and not env["built_here"]
            assert "No space left on device" in env["log"]
            assert not (envs / env["digest"]).exists() and not list(envs.glob(".tmp-*"))
            assert shutil.disk_usage(envs).used < 1 << 20  # what it wrote is gone
        finally:
            server.stop()
    finally:
        if subprocess.run(["umount", str(envs)]).returncode != 0:
            subprocess.run(["umount", "-l", str(envs)], check=True)
    assert not os.path.ismount(envs)


# --- a project's pyproject.toml and uv.lock ------------------------------------------------


def test_env_pyproject_takes_the_projects_dependencies_and_its_lock(
        local_server: Cumulo, probe: Path, tmp_path: Path) -> None:
    c = local_server.client()
    with pytest.raises(Invalid, match=r"--env pyproject needs a pyproject\.toml at the top "
                       r"of --code; there is none"):
        c.jobs.run("which.py", code=probe, environment="pyproject")

    project = tmp_path / "project"
    project.mkdir()
    (project / "which.py").write_text(WHICH)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0.1"\ndependencies = ["six==1.15.0"]\n')
    run = local_server.cli("jobs", "run", "--code", str(project), "--entry", "which.py",
                           "--env", "pyproject", "--wait", "--", "six")
    assert run.returncode == 0, run.stderr
    assert "six 1.15.0" in run.stdout

    (project / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0.1"\nrequires-python = ">=3.99"\n'
        'dependencies = ["six"]\n')
    with pytest.raises(Invalid, match=r"requires-python >=3\.99, and the server's Python is "
                       r"3\.\d+\.\d+; give --python"):
        c.jobs.run("which.py", code=project, environment="pyproject")

    # With a uv.lock, its pins: six 1.14.0, where the requirement alone would take the
    # server's own six.
    (project / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0.1"\nrequires-python = ">=3.11"\n'
        'dependencies = ["six>=1.14"]\n')
    lock = subprocess.run([str(VENV_BIN / "uv"), "lock", "--resolution", "lowest-direct"],
                          cwd=project, capture_output=True, text=True, timeout=120)
    assert lock.returncode == 0, f"uv lock needs an index it can reach: {lock.stderr}"
    assert 'name = "six"\nversion = "1.14.0"' in (project / "uv.lock").read_text()
    import six

    assert six.__version__ != "1.14.0"
    job = c.jobs.run("which.py", code=project, args=["six"], environment="pyproject")
    info = job.wait(180)
    assert info["state"] == "succeeded", (info["reason"], lines(job))
    assert "six 1.14.0" in lines(job)
    assert info["environment_label"] == "pyproject (uv.lock)"
    assert "six==1.14.0" in c.envs.show(info["environment"])["lock"]


# --- warm starts -------------------------------------------------------------------------------


def test_the_next_job_in_an_environment_starts_from_its_warm_worker(
        local_server: Cumulo, probe: Path) -> None:
    """After a job in an environment ends, a worker of that environment waits for the next;
    when the cluster's workers are all taken, the environment used longest ago gives its
    up. Whether a job found one is read from its process's start: a warm worker started
    before the job was submitted, a cold one after."""
    c = local_server.client()
    c.clusters.create("warm-envs", max_workers=2, max_cpus=2)  # no idle workers at rest
    versions = ("1.14.0", "1.15.0", "1.16.0")
    digests = {v: c.envs.create(f"six-{v}", [f"six=={v}"])["digest"] for v in versions}

    def run(version: str) -> tuple[float, float, list[str]]:
        submitted = time.time()
        job = c.jobs.run("which.py", code=probe, args=["six"], environment=f"six-{version}",
                         cluster="warm-envs")
        info = job.wait(120)
        assert info["state"] == "succeeded", (info["reason"], lines(job))
        out = lines(job)
        assert f"six {version}" in out
        assert f"python {local_server.home / 'envs' / digests[version]}/bin/python" in out
        return submitted, float(out[0].split()[1]), out

    for version in versions:  # each leaves a worker of its environment (two at most)
        run(version)
    wait_for(lambda: c.clusters.show("warm-envs")["workers"]["idle"] == 2,
             "the workers of the last two environments")
    submitted, started, _ = run("1.16.0")
    assert started < submitted, "a job in 1.16.0 found no warm worker of its environment"
    submitted, started, _ = run("1.15.0")
    assert started < submitted, "a job in 1.15.0 found no warm worker of its environment"
    # 1.14.0's worker made room for 1.16.0's: its next job starts a fresh one.
    submitted, started, _ = run("1.14.0")
    assert started > submitted


# --- metering ----------------------------------------------------------------------------------


def test_a_build_is_metered_as_its_own_kind(local_server: Cumulo, probe: Path,
                                            tmp_path: Path) -> None:
    """A build's usage record is kind ``environment``, with what uv and the builds it ran
    used: not what a job the server reaped meanwhile used."""
    c = local_server.client()
    started, release = tmp_path / "building", tmp_path / "release"
    meter = package(tmp_path, "meter", started=started, release=release)
    job = c.jobs.run("which.py", code=probe, args=["meter"], requirements=[meter])
    wait_for(started.exists, "the build to reach the meter package")
    burner = c.jobs.run("burn.py", code=probe, args=["3"])  # ends while the build waits
    assert burner.wait(120)["state"] == "succeeded"
    release.touch()
    info = job.wait(120)
    assert info["state"] == "succeeded", (info["reason"], lines(job))

    item = f"environment {info['environment'][:12]}"
    rows = {r["item"]: r for r in c.costs(by="item", kind="environment")["rows"]}
    assert rows[item]["count"] == 1 and rows[item]["wall_seconds"] > 0
    assert 0 < rows[item]["cpu_seconds"] < 2.5, rows[item]  # the burner's 3 CPU-s not in it
    assert {"job", "environment"} <= {r["kind"] for r in c.costs(by="kind")["rows"]}
    out = local_server.cli("costs", "--by", "item", "--kind", "environment")
    assert out.returncode == 0, out.stderr
    assert item in out.stdout


# --- the pure parts: uv's messages, what a dead build left --------------------------------------


def test_uvs_messages_are_made_one_line_with_the_end_of_a_builds_output() -> None:
    from cumulo.compute.environments.reasons import reason

    # uv 0.4's drawing, a message over two lines, a hint
    drawn = ("\u00d7 No solution found when resolving dependencies:\n"
             "  \u2570\u2500\u25b6 Because there is no version of six==0.0.1 and you require\n"
             "      six==0.0.1, we can conclude that your requirements are unsatisfiable.\n"
             "help: check the name\n")
    assert reason(drawn) == ("No solution found when resolving dependencies: Because there is "
                             "no version of six==0.0.1 and you require six==0.0.1, we can "
                             "conclude that your requirements are unsatisfiable.")
    # uv 0.13's clauses, and a build's output: compiler lines, then a traceback
    built = ("error: Failed to build `fast @ file:///src/fast`\n"
             "  cause: The build backend returned an error\n"
             "  cause: Call to `setuptools.build_meta.build_wheel` failed (exit status: 1)\n"
             "\n"
             "         [stderr]\n"
             "         gcc -c fast.c\n"
             "         fast.c:1:1: error: unknown type name 'nope'\n"
             "         Traceback (most recent call last):\n"
             "           File \"<string>\", line 11, in <module>\n"
             "             raise CompileError(msg)\n"
             "         distutils.errors.CompileError: command 'gcc' failed with exit code 1\n"
             "\n"
             "hint: This usually indicates a problem with the package\n")
    assert reason(built) == (
        "Failed to build `fast @ file:///src/fast`: The build backend returned an error: Call "
        "to `setuptools.build_meta.build_wheel` failed (exit status: 1): gcc -c fast.c: "
        "fast.c:1:1: error: unknown type name 'nope': distutils.errors.CompileError: command "
        "'gcc' failed with exit code 1")
    assert reason("") == "uv failed without saying why"


def test_clean_partial_removes_what_no_live_build_owns(tmp_path: Path) -> None:
    from cumulo.compute.environments.build import clean_partial

    hour_ago = time.time() - 3600
    parent = psutil.Process(os.getppid())  # started before any folder here was made
    dead = subprocess.Popen(["true"])
    dead.wait()
    reused = subprocess.Popen(["sleep", "30"])  # a process started after its folder was made
    try:
        folders = {
            "mine": tmp_path / f".tmp-{'a' * 16}-{os.getpid()}",  # this process, not building
            "building": tmp_path / f".tmp-{'b' * 16}-{os.getpid()}",
            "alive": tmp_path / f".tmp-{'c' * 16}-{parent.pid}",
            "dead": tmp_path / f".tmp-{'d' * 16}-{dead.pid}",
            "reused": tmp_path / f".tmp-{'e' * 16}-{reused.pid}",
            "removal": tmp_path / f".tmp-rm-{'f' * 16}-0",  # a removal that died halfway
        }
        for folder in folders.values():
            (folder / "lib").mkdir(parents=True)
        os.utime(folders["reused"], (hour_ago, hour_ago))
        (tmp_path / ("b" * 64)).mkdir()  # a finished environment: never touched
        assert clean_partial(tmp_path, building={"b" * 64}) == 4
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [folders["building"].name, folders["alive"].name, "b" * 64])
    finally:
        reused.kill()
        reused.wait()
