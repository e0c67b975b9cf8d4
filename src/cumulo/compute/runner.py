"""The process a job runs in.

On a local cluster the supervisor starts this module ahead of time (a warm worker): the
interpreter is up and waiting on stdin for one job's spec, so a job's first line of user code
runs milliseconds after it is handed over, not after an interpreter start. It runs one job and
exits. On a Ray cluster it is the Ray job's entrypoint, with the spec on the command line.

It runs Python entry points in this process (``runpy``) and anything else as a child in the
same process group, so that cancelling the group stops both. It is a child subreaper
(:mod:`cumulo.forkserver.reaper`): a process the job starts stays below it even after a double
fork and setsid, where the executor meters and signals it, and whatever the job leaves running
is killed and reaped before the runner exits. (Orphans of an in-process Python job that end
before it does wait as zombies until then: reaping them sooner means waiting for any child,
which would take the exit codes of the job's own subprocesses.) At the end it writes an exit
record (code, CPU-seconds, peak memory) beside the log, which is how the supervisor learns the
outcome even after a restart of its own. Only the standard library is imported before the job
starts; the job's own imports are its own. What the runner itself needs to start a job is
imported while the worker waits, not after the job arrives.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import dataclasses
import json
import os
import resource
import runpy
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import cumulo.job  # noqa: F401 - warm for the job's own 'import cumulo.job'
from cumulo import jobenv
from cumulo.forkserver import reaper

_exit_code = 1
_spec: dict[str, Any] = {}
_cpu_at_start = 0.0  # what the warm worker used before its job arrived: not the job's


def _usage() -> dict[str, Any]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu_seconds": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
        - _cpu_at_start,
        "peak_memory_bytes": max(_own_peak(me.ru_maxrss), kids.ru_maxrss) * 1024,
    }


def _own_peak(maxrss_kib: int) -> int:
    """This process's peak resident memory in KiB since it started running Python.

    ru_maxrss survives exec on Linux, so it would count the forking parent's memory too;
    /proc's VmHWM belongs to this image alone.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return maxrss_kib


def _write_exit() -> None:
    """Last of the atexit handlers (registered first): what the job left running goes (its
    CPU time then counts among this process's children's), then the job's code and use are
    written, atomically."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    reaper.end_descendants()
    record = {"exit_code": _exit_code, "finished_at": time.time(), **_usage()}
    exit_file = _spec.get("exit_file")
    if exit_file:
        tmp = exit_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, exit_file)
    if _spec.get("upload_outputs"):
        try:
            _upload_outputs(record)
        finally:
            import shutil

            job = jobenv.current()
            if job is not None and job.job_dir is not None:
                shutil.rmtree(job.job_dir, ignore_errors=True)


def _upload_outputs(record: dict[str, Any]) -> None:
    """On a remote cluster: send the output folder and the exit record to the control plane."""
    from cumulo.job import _upload_outputs as upload

    upload(record)


def _redirect(log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def _python_argv(argv: list[str]) -> bool:
    """A ``python`` command this interpreter can run itself: a script, ``-m`` or ``-c``.
    Other interpreter options (-u, -X, -W, ...) need an interpreter started with them."""
    name = os.path.basename(argv[0]) if argv else ""
    if name not in ("python", "python3", os.path.basename(sys.executable)) or len(argv) < 2:
        return False
    return argv[1] in ("-m", "-c") or not argv[1].startswith("-")


def _run_python(argv: list[str]) -> None:
    """``python -m mod args``, ``python script.py args`` or ``python -c code`` in-process."""
    if len(argv) >= 3 and argv[1] == "-m":
        sys.argv = [argv[2], *argv[3:]]
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    elif len(argv) >= 3 and argv[1] == "-c":
        sys.argv = ["-c", *argv[3:]]
        exec(compile(argv[2], "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = argv[1:]
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[1])))
        runpy.run_path(argv[1], run_name="__main__")


def job_argv(spec: dict[str, Any]) -> list[str]:
    """The command line a job's spec stands for."""
    entry, command = spec.get("entry"), spec.get("command")
    args: list[str] = list(spec.get("args", []))
    if entry:
        return ([sys.executable, entry] if entry.endswith(".py")
                else ["bash", entry] if entry.endswith(".sh") else [f"./{entry}"]) + args
    return [*(command if isinstance(command, list) else shlex.split(command)), *args]


def runs_in_process(spec: dict[str, Any]) -> bool:
    """Whether the job is Python this interpreter runs itself, rather than a child process.
    Python's own start-up variables can't apply to a running interpreter: those start one."""
    fresh = any(k.startswith("PYTHON") and k not in ("PYTHONUNBUFFERED", "PYTHONPATH")
                for k in spec.get("env", {}))
    return _python_argv(job_argv(spec)) and not fresh


def _run(spec: dict[str, Any]) -> int:
    global _exit_code, _cpu_at_start
    reaper.become_subreaper()
    _cpu_at_start = _usage()["cpu_seconds"]
    atexit.register(_write_exit)
    if spec.get("log"):
        _redirect(spec["log"])
    os.environ.update(spec["env"])
    os.chdir(spec["workdir"])
    sys.path.insert(0, spec["workdir"])
    argv = job_argv(spec)
    try:
        job = jobenv.current()
        if spec.get("upload_outputs") and job is not None and job.attempt > 1:
            from cumulo.job import _restore_checkpoints

            _restore_checkpoints()  # on a remote node: its last attempt's checkpoints, fetched
        if runs_in_process(spec):
            for path in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
                if path:
                    sys.path.insert(0, path)
            _run_python(argv)
            code = 0
        else:
            try:
                child = subprocess.Popen(argv)
                code = child.returncode = reaper.wait_reaping(child.pid)
            except (FileNotFoundError, PermissionError) as exc:
                print(f"cumulo: cannot run {argv[0]!r}: {exc.strerror}", file=sys.stderr)
                code = 127
            code = 128 - code if code < 0 else code  # killed by a signal: the shell's convention
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    _exit_code = code
    return code


def forked(args: dict[str, Any], fds: list[int]) -> int:
    """The fork server's entry point for a job (:mod:`cumulo.forkserver`): run the spec in
    this forked child, as a warm worker would."""
    global _spec
    spec = args["spec"]
    if not spec.get("log"):  # the fork server's own log is no place for a job's output
        spec["log"] = os.devnull
    argv = job_argv(spec)
    if len(argv) >= 3 and argv[1] == "-m":
        sys.modules.pop(argv[2], None)  # runpy runs it afresh as __main__, without a warning
    _spec = spec
    return _run(spec)


def main(argv: list[str] | None = None) -> int:
    global _spec
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--spec"]:
        _spec = json.loads(base64.b64decode(argv[1]))
        _spec["workdir"] = os.getcwd()
        # A Ray worker's own scratch space; the outputs are sent home when the job ends.
        # The job's environment came with Ray's runtime_env; only the scratch paths are new.
        job = jobenv.current()
        assert job is not None, "a remote job's environment names its job"
        scratch = Path(tempfile.mkdtemp(prefix=f"cumulo-{job.job_id}-"))
        job = dataclasses.replace(job, job_dir=scratch, remote=True)
        job.output_dir.mkdir()
        job.checkpoint_dir.mkdir()
        _spec["env"] = job.variables()
    else:
        line = sys.stdin.buffer.readline()  # warm: wait for the supervisor to hand over a job
        if not line:
            return 0  # let go while idle, or the supervisor went away
        _spec = json.loads(line)
    return _run(_spec)


if __name__ == "__main__":
    sys.exit(main())
