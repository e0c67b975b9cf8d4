"""Resolving and building environments with uv (the PyPI package).

An environment is a virtual environment under ``<home>/envs/<digest>``. By default it is a layer
over the server's own environment: only what the resolution picked at a version the server does
not have is installed into it, and a ``.pth`` file puts the server's site-packages after its own,
so Cumulo's runtime (``cumulo.job``, the SDK, the serving worker) is importable and the user's
pins always come first. The resolution prefers the server's versions where the requirements
allow them, so a layer is usually small. An ``isolated`` environment (or one on another Python)
has nothing of the server's: Cumulo's runtime packages are resolved with the user's
requirements (a conflict is named by the resolver) and the ``cumulo`` package alone is made
importable.

A build happens in ``.tmp-<digest>-<pid>`` beside its final place and is renamed there when
complete, with a marker file written last: a build killed halfway leaves only a temporary folder
that the next build removes, and is never used.

uv is pointed at the same indexes pip uses on this machine (``pip config list``: index-url,
extra-index-url, find-links, cert, constraint), with pip's way of choosing among indexes.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from cumulo.compute.environments import reasons
from cumulo.compute.environments.spec import EnvSpec
from cumulo.config import child_env
from cumulo.errors import Conflict, CumuloError, Invalid

__all__ = ["MARKER", "RUNTIME_PACKAGES", "BuildFailed", "Built", "Interpreter", "base_packages",
           "build", "clean_partial", "find_python", "index_args", "lock_entries", "resolve",
           "uv_bin"]

MARKER = ".cumulo-env.json"  # written last into a finished environment
RESOLVE_TIMEOUT = 300.0
BUILD_TIMEOUT = 1800.0
# What Cumulo's own code imports inside an environment, beyond the standard library: the SDK
# (cumulo.client) and the serving worker's HTTP stack. tests/compute/test_environments.py checks
# this list against what those modules really import. cumulo.job and the job runner import the
# standard library only.
RUNTIME_PACKAGES = ("httpx", "httpcore", "h11", "anyio", "sniffio", "idna", "certifi", "rich",
                    "markdown-it-py", "mdurl", "pygments", "click", "orjson", "uvloop",
                    "httptools")


class BuildFailed(CumuloError):
    """An environment could not be resolved or built; ``log`` is uv's output."""

    status = 400
    code = "invalid"

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str  # major.minor

    @property
    def is_servers(self) -> bool:
        return self.version == f"{sys.version_info[0]}.{sys.version_info[1]}"


@dataclass(frozen=True)
class Built:
    size: int  # bytes the environment's folder holds
    installed: int  # distributions installed into it (the rest come from the server's)
    cpu_seconds: float  # what uv used building it
    seconds: float


def uv_bin() -> str:
    try:
        from uv import find_uv_bin
    except ImportError as exc:  # pragma: no cover - a dependency of Cumulo
        raise Invalid("uv is not installed; pip install uv (Cumulo's environments build with "
                      "it)") from exc
    return str(find_uv_bin())


@functools.cache
def _pip_config() -> dict[str, str]:
    """What ``pip config list`` says (files and PIP_* variables), by key without its scope."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                             capture_output=True, text=True, timeout=30, env=child_env()).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        name = key.rpartition(".")[2]
        found[name] = value.strip().strip("'\"")
    return found


def index_args() -> list[str]:
    """uv's options for the indexes pip uses on this machine."""
    config = _pip_config()
    args: list[str] = []

    def usable(url: str) -> bool:  # pip skips file:// indexes that are not there; so does uv
        return not url.startswith("file://") or Path(url[7:]).exists()

    if config.get("index-url") and usable(config["index-url"]):
        args += ["--index-url", config["index-url"]]
    extra = [u for u in config.get("extra-index-url", "").split() if usable(u)]
    for url in extra:
        args += ["--extra-index-url", url]
    if extra or config.get("index-url"):
        args += ["--index-strategy", "unsafe-best-match"]  # pip's: the best version anywhere
    for place in config.get("find-links", "").split():
        if (usable(place) and Path(place.removeprefix("file://")).exists()) or "://" in place:
            args += ["--find-links", place]
    for constraint in config.get("constraint", "").split():
        if Path(constraint).is_file():
            args += ["--constraint", constraint]
    return args


def _uv_env() -> dict[str, str]:
    env = child_env()
    cert = _pip_config().get("cert")
    if cert and "SSL_CERT_FILE" not in env and Path(cert).is_file():
        env["SSL_CERT_FILE"] = cert
    env.setdefault("UV_NO_PROGRESS", "1")
    env["UV_PYTHON_DOWNLOADS"] = "never"  # only interpreters this machine has
    env.pop("VIRTUAL_ENV", None)
    return env


@functools.cache
def _interpreter_of(path: str) -> Interpreter:
    try:
        out = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Invalid(f"--python {path}: cannot run it ({exc})") from exc
    if out.returncode != 0:
        raise Invalid(f"--python {path}: it did not run as Python: {out.stderr.strip()[-300:]}")
    return Interpreter(path, out.stdout.strip())


def find_python(wanted: str | None) -> Interpreter:
    """The interpreter ``wanted`` names (a version like 3.12, or a path), or the server's."""
    if wanted is None:
        return Interpreter(getattr(sys, "_base_executable", sys.executable) or sys.executable,
                           f"{sys.version_info[0]}.{sys.version_info[1]}")
    if wanted.startswith("/"):
        found = _interpreter_of(wanted)
    else:
        here = f"{sys.version_info[0]}.{sys.version_info[1]}"
        if wanted.count(".") == 1 and wanted == here:
            return find_python(None)
        out = subprocess.run([uv_bin(), "python", "find", wanted, "--no-project"],
                             capture_output=True, text=True, timeout=60, env=_uv_env())
        if out.returncode != 0 or not out.stdout.strip():
            raise Invalid(f"--python {wanted}: no such interpreter on this machine; install "
                          f"it (apt-get install python{wanted}, or 'uv python install "
                          f"{wanted}') or leave --python out for the server's {here}")
        found = _interpreter_of(out.stdout.strip())
    major, minor = (int(p) for p in found.version.split("."))
    if (major, minor) < (3, 11):
        raise Invalid(f"--python {wanted}: Python {found.version} is too old; Cumulo's runtime "
                      "inside an environment needs 3.11 or newer")
    return found


@functools.cache
def base_packages() -> dict[str, str]:
    """The server's own environment: canonical name -> version of every distribution."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist.version)
    return found


def _cumulo_specifiers() -> dict[str, SpecifierSet]:
    """What Cumulo's own metadata asks of its runtime packages (``httpx>=0.27``)."""
    wanted: dict[str, SpecifierSet] = {}
    with contextlib.suppress(metadata.PackageNotFoundError):
        for text in metadata.requires("cumulo") or []:
            req = Requirement(text)
            if req.marker is not None and "extra" in str(req.marker):
                continue
            name = canonicalize_name(req.name)
            if name in {canonicalize_name(p) for p in RUNTIME_PACKAGES}:
                wanted[name] = req.specifier
    return wanted


def lock_entries(lock: str) -> dict[str, str]:
    """``name==version`` lines of a resolution, by canonical name; others (urls) by name too."""
    entries: dict[str, str] = {}
    for line in lock.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("-"):
            continue
        text = line.split(" ;", 1)[0].split(";", 1)[0].strip()
        try:
            req = Requirement(text)
        except Exception:
            continue
        pinned = [s.version for s in req.specifier if s.operator == "=="]
        entries[canonicalize_name(req.name)] = pinned[0] if pinned and not req.url else text
    return entries


def _drain(stream: IO[bytes] | None, into: dict[str, bytes], key: str) -> None:
    if stream is not None:
        into[key] = stream.read()


class _Uv:
    """uv's runs for one resolution or build: what they said (the build log), and the CPU
    time their processes used (uv's own rusage, so that a job's process the server reaps
    meanwhile is not counted as the build's)."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.cpu_seconds = 0.0

    def __call__(self, args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        self.log.append("$ uv " + " ".join(args))
        proc = subprocess.Popen([uv_bin(), *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_uv_env())
        said: dict[str, bytes] = {}
        readers = [threading.Thread(target=_drain, args=(stream, said, name), daemon=True)
                   for name, stream in (("out", proc.stdout), ("err", proc.stderr))]
        for reader in readers:
            reader.start()
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            _, status, used = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        for reader in readers:
            reader.join()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        self.cpu_seconds += used.ru_utime + used.ru_stime
        stdout = said.get("out", b"").decode(errors="replace")
        stderr = said.get("err", b"").decode(errors="replace")
        self.log.append(stderr)
        if expired.is_set() and proc.returncode == -signal.SIGKILL:
            raise BuildFailed(f"uv took longer than {timeout:.0f}s; see the build log",
                              self.text)
        return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)

    @property
    def text(self) -> str:
        return "\n".join(self.log)


def resolve(spec: EnvSpec, python: Interpreter, *,
            locked: dict[str, str] | None = None) -> str:
    """The pinned set ``spec`` resolves to (one ``name==version`` a line), preferring the
    server's versions where the requirements allow them; with a project's ``uv.lock``
    (``locked``: its ``pyproject.toml`` and ``uv.lock`` by name), the lock's pins, with
    Cumulo's runtime resolved beside them where the environment is isolated. Raises
    BuildFailed naming the line of a requirement that cannot be met, and Conflict for a pin
    Cumulo's runtime cannot use."""
    import tempfile

    uv = _Uv()
    isolated = spec.isolated or not python.is_servers
    with tempfile.TemporaryDirectory(prefix="cumulo-resolve-") as tmp:
        body = spec.text
        if locked is not None:  # the lock's pins, exported, are what is asked
            for name in ("pyproject.toml", "uv.lock"):
                (Path(tmp) / name).write_text(locked[name])
            out = uv(["export", "--frozen", "--no-hashes", "--no-header", "--no-emit-project",
                      "--format", "requirements-txt", "--project", tmp, "--python", python.path],
                     timeout=RESOLVE_TIMEOUT)
            if out.returncode != 0:
                raise BuildFailed(reasons.explain_resolve(out.stderr, spec), uv.text)
            body = _clean(out.stdout)
        if isolated:  # Cumulo's runtime is installed with it: resolved together
            wanted = _cumulo_specifiers()
            body += "".join(f"{name}{wanted.get(canonicalize_name(name), '')}\n"
                            for name in RUNTIME_PACKAGES)
        reqs = Path(tmp) / "requirements.in"
        reqs.write_text(body)
        output = Path(tmp) / "resolved.txt"
        if python.is_servers:  # an existing output's pins are uv's preferences: the server's
            output.write_text("".join(f"{n}=={v}\n" for n, v in sorted(base_packages().items())))
        out = uv(["pip", "compile", str(reqs), "--python", python.path, "--no-header",
                  "--no-annotate", "--quiet", "-o", str(output), *index_args()],
                 timeout=RESOLVE_TIMEOUT)
        if out.returncode != 0:
            message = reasons.explain_resolve(out.stderr, spec)
            if isolated and any(canonicalize_name(p) in message.lower()
                                for p in RUNTIME_PACKAGES):
                message += " (Cumulo's own runtime needs " + ", ".join(
                    f"{n}{s}" for n, s in _cumulo_specifiers().items() if str(s)) + ")"
            raise BuildFailed(message, uv.text)
        lock = _clean(output.read_text())
    if not isolated:
        _check_runtime(spec, lock)
    return lock


def _clean(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return "".join(f"{line}\n" for line in lines)


def _check_runtime(spec: EnvSpec, lock: str) -> None:
    """A layer's pins come before the server's packages: one that Cumulo's runtime cannot
    use would break cumulo.client or the serving worker inside it. Refused, naming both."""
    entries = lock_entries(lock)
    for name, wanted in _cumulo_specifiers().items():
        version = entries.get(name)
        if version is None or not str(wanted):
            continue
        try:
            ok = Version(version) in wanted
        except InvalidVersion:
            continue
        if not ok:
            line = spec.line_of(name)
            where = (f"{spec.source} line {line.number} ({line.text})" if line
                     else f"a dependency of {spec.source}")
            raise Conflict(f"{where} gives {name}=={version}, which conflicts with what Cumulo's "
                           f"own runtime needs inside the environment: {name}{wanted}; pin a "
                           "version that satisfies both, or leave it out",
                           details={"package": name, "version": version,
                                    "cumulo_needs": str(wanted)})


def clean_partial(root: Path, building: set[str] = frozenset()) -> int:  # type: ignore[assignment]
    """Remove what builds that died halfway left, so that nothing half-built is ever taken
    for an environment (only a finished build is renamed to its digest): ``.tmp-DIGEST-PID``
    folders whose process is gone (or is another process, started after the folder was
    made, that was given the same pid), or this process's that no build of it
    (``building``: digests) is making now; and ``.tmp-rm-*`` folders a removal left."""
    removed = 0
    if not root.is_dir():
        return 0
    for path in root.glob(".tmp-*"):
        _, _, short_pid = path.name.partition("-")
        short, _, pid = short_pid.rpartition("-")
        alive = False
        if not short.startswith("rm-") and pid.isdigit() and int(pid) > 0:
            alive = _made_by(int(pid), path)
            if int(pid) == os.getpid():
                alive = any(d.startswith(short) for d in building)
        if not alive:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _made_by(pid: int, path: Path) -> bool:
    """Whether process ``pid`` lives and is old enough to have made ``path``."""
    import psutil

    try:
        started = float(psutil.Process(pid).create_time())
        made = path.stat().st_mtime
    except (psutil.Error, OSError):
        return False
    return started <= made + 1.0


def _site_packages(env: Path) -> Path:
    found = sorted(env.glob("lib/python*/site-packages"))
    if not found:
        raise BuildFailed(f"uv made no site-packages in {env}")
    return found[0]


def _base_sites() -> list[str]:
    """The server's site-packages folders, in its own order."""
    sites: list[str] = []
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths()[key]
        if path not in sites:
            sites.append(path)
    return sites


def build(lock: str, python: Interpreter, dest: Path, *, isolated: bool, log_path: Path,
          digest: str) -> Built:
    """Build the environment ``lock`` pins at ``dest`` (made afresh beside it and renamed
    there when complete). Raises BuildFailed with uv's log on failure (disk full named)."""
    started = time.monotonic()
    root = dest.parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{digest[:16]}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    free = shutil.disk_usage(root).free  # for a message, should the disk fill up
    uv = _Uv()
    layered = not isolated and python.is_servers
    base = base_packages() if layered else {}
    entries = lock_entries(lock)
    if layered:
        wanted = [line for line in lock.splitlines()
                  if entries.get(lock_name(line)) != base.get(lock_name(line))]
    else:
        wanted = lock.splitlines()
    try:
        out = uv(["venv", "--relocatable", "--quiet", "--python", python.path, str(tmp)],
                 timeout=120)
        if out.returncode != 0:
            raise BuildFailed(reasons.explain_build(
                out.stderr, doing="making the virtual environment", pins=[], root=root,
                free=free), uv.text)
        if wanted:
            reqs = tmp / "cumulo-layer.txt"
            reqs.write_text("".join(f"{line}\n" for line in wanted))
            out = uv(["pip", "install", "--no-deps", "--quiet", "--python",
                      str(tmp / "bin" / "python"), "-r", str(reqs), *index_args()],
                     timeout=BUILD_TIMEOUT)
            if out.returncode != 0:
                raise BuildFailed(reasons.explain_build(
                    out.stderr, doing="installing", pins=wanted, root=root, free=free),
                    uv.text)
        site = _site_packages(tmp)
        _link_runtime(site, layered=layered)
        size = _size(tmp)
        (tmp / MARKER).write_text(json.dumps({
            "digest": digest, "python": python.version, "layered": layered,
            "installed": len(wanted), "size": size, "built_at": time.time()}))
        if dest.exists():  # another build finished first: it is the same environment
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _write_log(log_path, [*uv.log, f"error: {exc}"])
        if exc.errno == errno.ENOSPC:
            raise BuildFailed(reasons.disk_full(root, free=free), uv.text) from exc
        raise BuildFailed(f"building the environment failed: {exc}", uv.text) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _write_log(log_path, uv.log)
        raise
    _write_log(log_path, uv.log)
    return Built(size=size, installed=len(wanted), cpu_seconds=uv.cpu_seconds,
                 seconds=time.monotonic() - started)


def lock_name(line: str) -> str:
    text = line.split(";", 1)[0].strip()
    try:
        return canonicalize_name(Requirement(text).name)
    except Exception:
        return text


def _link_runtime(site: Path, *, layered: bool) -> None:
    """Make Cumulo importable inside: the server's site-packages after the environment's own
    (a layer), or the ``cumulo`` package alone (isolated: its runtime was installed)."""
    import cumulo

    package = Path(cumulo.__file__).resolve().parent
    if layered:
        sites = [s for s in _base_sites() if Path(s).resolve() != site.resolve()]
        lines = [f"import site; site.addsitedir({s!r})" for s in sites]
        # An editable install of Cumulo is found through the server's own .pth files.
        (site / "zz_cumulo_server.pth").write_text("\n".join(lines) + "\n")
        return
    holder = site.parent.parent.parent / "cumulo-runtime"
    holder.mkdir(exist_ok=True)
    link = holder / "cumulo"
    if not link.exists():
        link.symlink_to(package, target_is_directory=True)
    # Relative to site-packages (as .pth lines may be): the folder is renamed once built.
    (site / "zz_cumulo_runtime.pth").write_text(f"{os.path.relpath(holder, site)}\n")


def _size(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _write_log(path: Path, log: list[str]) -> None:
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(log))


def digest_of(lock: str, python: Interpreter, *, isolated: bool) -> str:
    """What an environment is: its pins, its Python, and (for a layer) the server's versions
    of what it takes from the server's environment."""
    layered = not isolated and python.is_servers
    body = {"lock": lock, "python": python.version, "layered": layered}
    if layered:
        base = base_packages()
        body["base"] = {n: base.get(n) for n in sorted(lock_entries(lock))}
        with contextlib.suppress(metadata.PackageNotFoundError):
            body["cumulo"] = metadata.version("cumulo")
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
