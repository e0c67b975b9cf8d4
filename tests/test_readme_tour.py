"""The README's short tour runs as written, end to end, on a fresh server: its shell block
command by command in one shell (so its variables carry on), then its Python block. A command
whose comment says it is refused ("# refused", "deny (exit 1)") must fail; every other one must
succeed. Only the server's address is changed, from the 127.0.0.1:8080 the README names to
the test server's. The tour ends by deleting what it made, as a reader's would.

This is the suite's slowest test (it trains, tunes, serves and runs a pipeline twice); it is
the one place that proves a newcomer's first half hour works.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.services import base_env, start_cumulo

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
_REFUSED = re.compile(r"#.*(\brefused\b|\(exit 1\)|\bdeny\b)")
_MARK = "::tour::"
_HEREDOC = re.compile(r"<<-?\s*'?\"?(\w+)")


def _block(text: str, after: str, language: str) -> str:
    """The first ```language block after the line ``after``."""
    start = text.index(after)
    opening = text.index(f"```{language}\n", start) + len(f"```{language}\n")
    return text[opening:text.index("\n```", opening)]


def _commands(block: str) -> list[tuple[str, bool]]:
    """The block's commands (continuations and multi-line strings joined), each with whether
    it is meant to be refused. Comment lines and blank lines are left out."""
    commands: list[tuple[str, bool]] = []
    pending = ""
    until = None  # the end of a here-document being read
    for line in block.splitlines():
        if until is not None:
            pending += f"\n{line}"
            if line.strip() == until:
                commands.append((pending, False))
                pending, until = "", None
            continue
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending = f"{pending}\n{line}" if pending else line
        if line.rstrip().endswith("\\"):
            continue
        heredoc = _HEREDOC.search(line)
        if heredoc:
            until = heredoc.group(1)
            continue
        commands.append((pending, bool(_REFUSED.search(pending.splitlines()[-1]))))
        pending = ""
    return commands


def _script(commands: list[tuple[str, bool]]) -> str:
    """One bash script: each command, then a line on stderr saying how it went."""
    parts = []
    for number, (command, refused) in enumerate(commands):
        parts.append(command)
        parts.append(f'__rc=$?; echo "{_MARK} {number} $__rc {int(refused)} $SECONDS" >&2')
    return "\n".join(parts) + "\n"


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    text = README.read_text()
    shell = _block(text, "## A short tour", "sh")
    python = _block(text, "The same from Python", "python")
    work = tmp_path / "tour"
    work.mkdir()
    (work / ".venv").symlink_to(ROOT / ".venv")
    (work / "examples").symlink_to(ROOT / "examples")
    credentials = tmp_path / "credentials.toml"
    server = start_cumulo(work / ".cumulo", {"CUMULO_CREDENTIALS": str(credentials)})
    try:
        address = server.url.removeprefix("http://")
        shell = shell.replace("127.0.0.1:8080", address)
        python = python.replace("127.0.0.1:8080", address)
        # The reader's environment: the saved login of the server's first start, no
        # CUMULO_URL or CUMULO_TOKEN.
        env = {**{k: v for k, v in base_env(work / ".cumulo").items()
                  if k not in ("CUMULO_URL", "CUMULO_TOKEN", "CUMULO_HOME", "CUMULO_PORT")},
               "CUMULO_CREDENTIALS": str(credentials), "HOME": str(tmp_path),
               "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
        commands = _commands(shell)
        assert len(commands) > 80, "the tour's block was not found whole"
        ran = subprocess.run(["bash", "-c", _script(commands)], cwd=work, env=env,
                             capture_output=True, text=True, timeout=900)
        outcomes, took, last = {}, [], 0
        for line in ran.stderr.splitlines():
            if line.startswith(_MARK):
                number, rc, refused, at = map(int, line.split()[1:])
                outcomes[number] = (rc, bool(refused))
                took.append((at - last, commands[number][0].splitlines()[0][:100]))
                last = at
        # Where the tour's time goes (shown with -s, or when it fails): the slowest commands.
        print("the tour's slowest commands (s):",
              *(f"{t:4d}  {c}" for t, c in sorted(took, reverse=True)[:12]), sep="\n")
        log = f"stdout:\n{ran.stdout[-6000:]}\nstderr:\n{ran.stderr[-6000:]}"
        assert len(outcomes) == len(commands), f"the tour stopped early\n{log}"
        wrong = [f"{'succeeded' if rc == 0 else f'failed (exit {rc})'}, but "
                 f"{'should be refused' if refused else 'should work'}: {commands[n][0]}"
                 for n, (rc, refused) in outcomes.items() if (rc != 0) != refused]
        assert not wrong, "\n".join(wrong) + "\n" + log

        (work / "tour.py").write_text(python)
        done = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "tour.py"], cwd=work,
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    finally:
        server.stop()
