"""What constraints.txt pins on purpose, so that re-pinning (``make lock``) does not undo it.

jsonschema from 4.24 on imports ``rfc3987_syntax`` whenever it is installed (jupyter-events
asks for it through ``jsonschema[format-nongpl]``), and that module builds some 35 Earley
parsers at import: 0.8 CPU-seconds in every process that imports jsonschema. Ray imports it in
every worker, so each Ray job (its job supervisor) cost 3.5 CPU-seconds instead of 1.4; Jupyter
servers and papermill (nbformat) pay it too. jsonschema 4.23 checks the same formats without it
(no JSON schema Cumulo or Jupyter uses has an ``iri`` format)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.services import VENV_BIN

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return {name.lower(): version for name, _, version in
            (line.partition("==") for line in lines if "==" in line)}


def test_jsonschema_is_pinned_below_its_slow_iri_parser() -> None:
    pins = _pins()
    major, minor = (int(part) for part in pins["jsonschema"].split(".")[:2])
    assert (major, minor) < (4, 24), (
        f"jsonschema {pins['jsonschema']} pulls in rfc3987-syntax (0.8 s at every import); "
        "keep it at 4.23 (see this file's docstring)")
    assert "rfc3987-syntax" not in pins


def test_importing_ray_does_not_build_iri_parsers() -> None:
    """What `make test` installed follows the pin: jsonschema below 4.24, and importing Ray
    (so jsonschema's format checkers) leaves rfc3987_syntax out."""
    probe = ("import sys, importlib.metadata, ray, jsonschema._format; "
             "print(importlib.metadata.version('jsonschema'), 'rfc3987_syntax' in sys.modules)")
    out = subprocess.run([str(VENV_BIN / "python"), "-c", probe], capture_output=True,
                         text=True, timeout=120, check=True)
    version, loaded = out.stdout.split()
    assert tuple(int(p) for p in version.split(".")[:2]) < (4, 24), version
    assert loaded == "False", out.stderr
