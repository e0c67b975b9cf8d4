"""What an environment is asked for: requirements (a file's text, a project's ``pyproject.toml``
and ``uv.lock``, or a model's ``requirements.txt`` and ``python_env.yaml``), an interpreter, and
whether it may see the server's own packages. Everything here is pure: parsing and checking,
with errors that name the file and line."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
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
                   isolated: bool = False) -> tuple[EnvSpec, dict[str, str] | None]:
    """The spec a code folder's ``pyproject.toml`` asks for (its ``[project].dependencies``),
    and, when the folder has a ``uv.lock``, the project's files (``pyproject.toml`` and
    ``uv.lock``, by name): the lock's pins are then what is installed. ``files`` maps those
    names to their text. A ``requires-python`` the interpreter does not meet is refused."""
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
    _check_requires_python(project.get("requires-python"), check_python(python))
    spec = parse_requirements("\n".join(deps), source="pyproject.toml", python=python,
                              isolated=isolated)
    lock = files.get("uv.lock")
    if lock is None:
        return spec, None
    # The lock's pins depend on the whole project file (its sources, its groups): both count.
    extra = {name: hashlib.sha256(files[name].encode()).hexdigest()
             for name in ("pyproject.toml", "uv.lock")}
    spec = EnvSpec(spec.lines, source="uv.lock", python=spec.python, isolated=isolated,
                   extra=extra)
    return spec, {"pyproject.toml": files["pyproject.toml"], "uv.lock": lock}


def _check_requires_python(requires: object, python: str | None) -> None:
    """Refuse a project whose ``requires-python`` the environment's Python (``--python``'s
    version, or the server's) does not meet; an interpreter given by path is checked when
    it is resolved."""
    if requires is None:
        return
    if not isinstance(requires, str):
        raise Invalid("pyproject.toml: [project].requires-python must be a string like >=3.11")
    try:
        allowed = SpecifierSet(requires)
    except InvalidSpecifier as exc:
        raise Invalid(f"pyproject.toml: requires-python {requires!r} is not a version "
                      "specifier like >=3.11") from exc
    if python is not None and python.startswith("/"):
        return
    version = python or ".".join(map(str, sys.version_info[:3]))
    if not allowed.contains(version, prereleases=True):
        whose = "the server's Python is" if python is None else "--python asks for"
        raise Invalid(f"pyproject.toml says requires-python {requires}, and {whose} "
                      f"{version}; give --python with a version that meets it (like "
                      f"--python 3.12)")


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
