"""uv's errors made into one line a user can act on.

uv explains a failure over many lines: its own messages (``error:``, ``cause:``, drawn with
crosses and arrows in older versions), hints, and the whole output of a build it ran (a
package's ``setup.py`` traceback, a compiler's pages). A job's reason and ``envs create``'s
error carry uv's messages and, of a build's output, only its end (a traceback's exception),
led by the requirement it is about; a full disk is named as such, with what frees space. The
whole output stays in the build log (``cumulo envs show DIGEST --log``).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from cumulo.compute.environments.spec import EnvSpec

__all__ = ["explain_build", "explain_resolve", "is_disk_full", "reason"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# What uv draws around its messages (a cross, tree lines, arrows), stripped from each line.
_DECORATION = re.compile("^[\\s\u00d7\u2570\u2500\u25b6\u2502\u251c]+")
_CLAUSE = re.compile(r"^(?:error|cause|caused by|warning):\s*", re.I)
_PACKAGE = re.compile(r"\b(?:of|for|require[sd]?|build|building|Failed to build|"
                      r"Failed to download|Failed to fetch|Failed to install:?)\s+`?"
                      r"([A-Za-z0-9_.\-]+)", re.I)
_TRACEBACK = "Traceback (most recent call last):"
# What ends a traceback: its exception's line (``RuntimeError: ...``, ``KeyboardInterrupt``).
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Failure)"
                        r"\b(?::|$)|^[A-Za-z_][\w.]*: ")
MAX_CHARS = 1500
BLOCK_LINES = 3  # of a build's output: its last lines (a traceback counts as its exception)


def reason(stderr: str) -> str:
    """uv's messages on one line: its clauses joined by ': ', hints dropped, and of each
    build output it quotes (``[stderr]``, ``[stdout]``) the last few lines, a traceback
    shortened to its exception."""
    clauses: list[str] = []
    block: list[str] | None = None
    block_indent, traceback_indent = 0, -1

    def close_block() -> None:
        nonlocal block
        if block:
            clauses.extend(block[-BLOCK_LINES:])
        block = None

    for raw in _ANSI.sub("", stderr).splitlines():
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if stripped in ("[stderr]", "[stdout]"):
            close_block()
            block, block_indent, traceback_indent = [], indent, -1
            continue
        if block is not None and (not stripped or indent >= block_indent):
            if traceback_indent >= 0 and (not stripped or indent > traceback_indent
                                          or not _EXCEPTION.match(stripped)):
                continue  # a frame of the traceback (uv may wrap a frame's long lines)
            traceback_indent = -1
            if stripped == _TRACEBACK:
                traceback_indent = indent
            elif stripped:
                block.append(stripped)
            continue
        close_block()
        line = _DECORATION.sub("", raw).strip()
        if not line or line.lower().startswith(("help:", "hint:")):
            continue
        if _CLAUSE.match(line) or raw[:1] in ("\u00d7", "\u2570", "\u251c") or not clauses \
                or line != stripped:
            clauses.append(_CLAUSE.sub("", line))
        else:  # a message that goes on over a second line
            clauses[-1] += " " + line
    close_block()
    text = ": ".join(c.rstrip(": ") for c in clauses if c.strip(": "))
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS - 1] + "\u2026"
    return text or "uv failed without saying why"


def is_disk_full(stderr: str) -> bool:
    return "No space left on device" in stderr or "os error 28" in stderr


def explain_resolve(stderr: str, spec: EnvSpec) -> str:
    """A resolution's failure, led by the requirement line it is about."""
    core = reason(stderr)
    named = None
    for match in _PACKAGE.finditer(core):
        candidate = spec.line_of(match.group(1).split("==")[0].strip("`"))
        if candidate is not None:
            named = candidate
            break
    if named is None:
        for line in spec.lines:
            if re.search(rf"\b{re.escape(line.name)}\b", core.lower().replace("_", "-")):
                named = line
                break
    lowered = core.lower()
    if "no version of" in lowered or "not found in the package" in lowered:
        lead = "has no version matching it on the configured indexes"
    elif "failed to build" in lowered:
        lead = "failed to build"
    else:
        lead = "could not be installed"
    if named is not None:
        return f"{spec.source} line {named.number}: {named.text} {lead}: {core}"
    return f"{spec.source} could not be resolved: {core}"


def explain_build(stderr: str, *, doing: str, pins: list[str], root: Path,
                  free: int | None = None) -> str:
    """A build's failure: a full disk (``free``: the bytes free when the build began), or
    the pin it is about (one of ``pins``, the lines being installed) and uv's reason."""
    core = reason(stderr)
    if is_disk_full(stderr):
        return disk_full(root, core, free=free)
    named = _pin_named(core, pins)
    if named is not None and "failed to build" in core.lower():
        return f"{named} failed to build: {core}"
    if named is not None:
        return f"{doing} {named} failed: {core}"
    return f"{doing} failed: {core}"


def disk_full(root: Path, said: str | None = None, *, free: int | None = None) -> str:
    """What to say when a build ran out of space in ``root`` (``free`` bytes were free when
    it began), and what uv said of it."""
    if free is None:
        free = shutil.disk_usage(root).free if root.exists() else 0
    detail = ""
    if said:
        detail = " (uv: " + ": ".join(said.split(": ", 2)[:2]) + ": No space left on device)"
    return (f"the disk is full: building the environment in {root} ran out of space "
            f"({free / 2**20:.0f} MiB were free when it began){detail}; free some space "
            "('cumulo envs prune --unused 30d' removes environments not used in 30 days) and "
            "try again")


def _pin_named(core: str, pins: list[str]) -> str | None:
    by_name: dict[str, str] = {}
    for pin in pins:
        try:
            by_name[canonicalize_name(Requirement(pin.split(";", 1)[0].strip()).name)] = \
                pin.strip()
        except InvalidRequirement:
            continue
    for match in _PACKAGE.finditer(core):
        found = by_name.get(canonicalize_name(match.group(1).split("==")[0].strip("`")))
        if found is not None:
            return found
    return None
