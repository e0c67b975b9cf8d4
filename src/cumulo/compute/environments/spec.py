"""What an environment is asked for: requirements (a file's text, a project's ``pyproject.toml``
and ``uv.lock``, or a model's ``requirements.txt`` and ``python_env.yaml``), an interpreter, and
whether it may see the server's own packages. Everything here is pure: parsing and checking,
with errors that name the file and line."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from cumulo.errors import Invalid

__all__ = ["MAX_REQUIREMENTS_BYTES", "EnvSpec", "Line", "from_model", "from_pyproject",
           "parse_requirements"]

MAX_REQUIREMENTS_BYTES = 256 * 1024
MAX_LINES = 2000
# pip options a requirements file may hold that mean nothing to an environment's build here
# (the machine's index settings are used): refused, so nothing is silently ignored.
_OPTION = re.compile(r"^\s*-")
_PYTHON = re.compile(r"^(\d+)\.(\d+)(\.\d+)?$")


@dataclass(frozen=True)
class Line:
    """One requirement, with where it came from (for errors that name the line)."""

    text: str  # as written, less comments and surrounding space
    number: int  # 1-based line of ``source``
    name: str  # the distribution's canonical name


@dataclass(frozen=True)
class EnvSpec:
    """An environment as asked for, before it is resolved."""

    lines: tuple[Line, ...]
    source: str = "requirements.txt"  # what the lines came from, for errors
    python: str | None = None  # "3.12", or an interpreter's path; None: the server's
    isolated: bool = False  # True: nothing of the server's own packages is visible in it
    extra: dict[str, Any] = field(default_factory=dict)  # what else fixes the result

    @property
    def text(self) -> str:
        return "".join(f"{line.text}\n" for line in self.lines)

    def key(self) -> str:
        """The digest of what was asked (not of what it resolves to): the same request again
        is a lookup, not a resolution."""
        body = json.dumps({"requirements": [line.text for line in self.lines],
                           "python": self.python, "isolated": self.isolated,
                           "extra": self.extra}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()

    def line_of(self, name: str) -> Line | None:
        """The line that asks for distribution ``name``, if one does."""
        wanted = canonicalize_name(name)
        return next((line for line in self.lines if line.name == wanted), None)


def check_python(python: str | None) -> str | None:
    """``3.12``, a path to an interpreter, or None; refused otherwise."""
    if python is None or python == "":
        return None
    python = python.strip()
    if _PYTHON.match(python) or python.startswith("/"):
        return python
    raise Invalid(f"--python {python!r} must be a version like 3.12 or an interpreter's path "
                  "like /usr/bin/python3.12")


def parse_requirements(text: str, *, source: str = "requirements.txt",
                       python: str | None = None, isolated: bool = False) -> EnvSpec:
    """A requirements file's text as a spec. Each requirement is PEP 508 (``name[extra]
    specifier; marker`` or ``name @ url``); comments and blank lines are skipped; pip's options
    (``-r``, ``--index-url``, ``-e``) are refused, naming the line."""
    if len(text.encode()) > MAX_REQUIREMENTS_BYTES:
        raise Invalid(f"{source} is {len(text.encode()):,} bytes; at most "
                      f"{MAX_REQUIREMENTS_BYTES:,} are taken")
    lines: list[Line] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not stripped:
            continue
        if _OPTION.match(stripped):
            raise Invalid(f"{source} line {number}: {stripped!r}: pip options are not taken "
                          "here; the machine's index settings are used, and each line must be "
                          "a requirement (name, specifier, or name @ url)")
        try:
            req = Requirement(stripped)
        except InvalidRequirement as exc:
            raise Invalid(f"{source} line {number}: {stripped!r} is not a requirement: "
                          f"{exc}") from exc
        name = canonicalize_name(req.name)
        if name in seen:
            raise Invalid(f"{source} line {number}: {req.name} is asked for again (first on "
                          f"line {seen[name]}); say it once")
        seen[name] = number
        lines.append(Line(stripped, number, name))
        if len(lines) > MAX_LINES:
            raise Invalid(f"{source} has more than {MAX_LINES} requirements")
    if not lines:
        raise Invalid(f"{source} names no requirement; give at least one (name or name==version)")
    return EnvSpec(tuple(lines), source=source, python=check_python(python), isolated=isolated)


def from_pyproject(files: dict[str, str], *, python: str | None = None,
                   isolated: bool = False) -> tuple[EnvSpec, str | None]:
    """The spec a code folder's ``pyproject.toml`` asks for (its ``[project].dependencies``),
    and the folder's ``uv.lock`` if it has one (its pins are then what is installed).
    ``files`` maps those names to their text."""
    if "pyproject.toml" not in files:
        raise Invalid("--env pyproject needs a pyproject.toml at the top of --code; there is "
                      "none (or give --requirements FILE)")
    try:
        project = tomllib.loads(files["pyproject.toml"]).get("project", {})
    except tomllib.TOMLDecodeError as exc:
        raise Invalid(f"pyproject.toml is not valid TOML: {exc}") from exc
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise Invalid("pyproject.toml: [project].dependencies must be a list of strings")
    wanted = python
    if wanted is None and isinstance(project.get("requires-python"), str):
        wanted = None  # the server's, if it satisfies requires-python: checked at resolution
    spec = parse_requirements("\n".join(deps), source="pyproject.toml", python=wanted,
                              isolated=isolated)
    lock = files.get("uv.lock")
    if lock is not None:
        spec = EnvSpec(spec.lines, source="uv.lock", python=spec.python,
                       isolated=isolated,
                       extra={"uv.lock": hashlib.sha256(lock.encode()).hexdigest()})
    return spec, lock


def from_model(folder: Path, *, isolated: bool = False) -> EnvSpec:
    """What an MLflow model recorded it needs: its ``requirements.txt``, and the Python of its
    ``python_env.yaml`` (its minor version; the server's when that is the same)."""
    reqs = folder / "requirements.txt"
    if not reqs.is_file():
        raise Invalid(f"the model at {folder.name} has no requirements.txt (MLflow writes one "
                      "when a model is logged); serve it with --env server")
    text = reqs.read_text()
    python = None
    env_file = folder / "python_env.yaml"
    if env_file.is_file():
        import yaml

        try:
            found = str((yaml.safe_load(env_file.read_text()) or {}).get("python") or "")
        except yaml.YAMLError:
            found = ""
        match = _PYTHON.match(found)
        if match:
            python = f"{match.group(1)}.{match.group(2)}"
    return parse_requirements(text, source="the model's requirements.txt", python=python,
                              isolated=isolated)
