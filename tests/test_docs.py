"""The docs cannot drift from the CLI: every ``cumulo ...`` command in a code block of README.md
or docs/*.md names commands and options that exist, checked against the CLI's own parser (the
Click tree Typer builds). What a command is given as arguments (a table's name, a file) is the
reader's; what it is named and which options it takes are checked.

The README's tour runs end to end as written in tests/test_readme_tour.py.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from cumulo.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\s*$")
# Where a command starts on a line: at its start (after a "$ " prompt and VAR=value words),
# or after a pipe, &&, ;, or inside $( ).
_STARTS = re.compile(r"(?:^|\$\(|\|\s*|&&\s*|;\s*)((?:[A-Z_][A-Z0-9_]*=\S*\s+)*)cumulo\s")


@dataclass(frozen=True)
class Command:
    file: str
    line: int
    text: str  # from "cumulo" on

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def _open_quote(text: str) -> bool:
    """Whether a quote opened in ``text`` is still open at its end (the string goes on)."""
    quote = None
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and quote is None:
            break
    return quote is not None


def _logical_lines(block: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """A code block's lines with backslash continuations and quoted strings that go on over
    lines joined, each with its first line's number."""
    joined: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, text in block:
        if pending is not None:
            pending = (pending[0], pending[1] + " " + text.strip())
        else:
            pending = (number, text)
        if pending[1].rstrip().endswith("\\"):
            pending = (pending[0], pending[1].rstrip()[:-1])
            continue
        if _open_quote(pending[1]):
            continue
        joined.append(pending)
        pending = None
    if pending is not None:
        joined.append(pending)
    return joined


def _without_comment(text: str) -> str:
    """The line up to an unquoted '#' that starts a word (a shell comment)."""
    quote = None
    escaped = False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i]
    return text


_INLINE = re.compile(r"`(cumulo [^`]+)`")


def commands(path: Path) -> list[Command]:
    """Every ``cumulo`` command in the shell code blocks of a Markdown file (blocks tagged sh,
    bash, shell or console, or untagged; a line of an untagged block counts only after a
    "$ " prompt, as the rest of such a block is output), and in its inline code
    (`` `cumulo tables read` ``)."""
    found: list[Command] = []
    lines = path.read_text().splitlines()
    block: list[tuple[int, str]] | None = None
    language = ""
    for number, text in enumerate(lines, 1):
        if block is None and not text.strip().startswith("```"):
            found += [Command(_shown(path), number, _one_command(m.group(1)))
                      for m in _INLINE.finditer(text)]
        fence = _FENCE.match(text.strip())
        if fence and block is None:
            block, language = [], fence.group(1)
            continue
        if text.strip() == "```" and block is not None:
            if language in ("sh", "bash", "shell", "console", ""):
                found += _block_commands(path, block, prompt_only=language in ("", "console"))
            block = None
            continue
        if block is not None:
            block.append((number, text))
    return found


def _block_commands(path: Path, block: list[tuple[int, str]], *,
                    prompt_only: bool) -> list[Command]:
    found = []
    for number, text in _logical_lines(block):
        line = text.strip()
        if prompt_only:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        line = _without_comment(line)
        for match in _STARTS.finditer(line):
            rest = line[match.end(1):]
            # A command ends at the next pipe, &&, ; or ) that is not quoted.
            found.append(Command(_shown(path), number, _one_command(rest)))
    return found


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _one_command(text: str) -> str:
    quote = None
    depth = 0
    escaped = False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                return text[:i]
            depth -= 1
        elif char in "|;" or text.startswith("&&", i):
            return text[:i]
    return text


def _words(command: Command) -> list[str]:
    try:
        return shlex.split(command.text)[1:]  # without "cumulo"
    except ValueError as exc:
        pytest.fail(f"{command}: not a shell command ({exc})")


def problems(command: Command, root: Any) -> list[str]:
    """What in ``command`` the CLI does not know: a command name, or an option. ``root`` is
    the Click group Typer builds (Typer brings its own Click: duck-typed here)."""
    words = _words(command)
    ctx = root.context_class(root, info_name="cumulo")
    current = root
    known_here = _options(root)
    found: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            break
        if word.startswith("-") and len(word) > 1 and not _placeholder(word):
            name = word.split("=", 1)[0]
            if name not in known_here and name not in ("--help",):
                found.append(f"{' '.join(_path(ctx))} has no option {name}")
            elif name in known_here and known_here[name] and "=" not in word:
                i += 1  # the option's value
            i += 1
            continue
        if hasattr(current, "list_commands"):  # a group
            if _placeholder(word):
                return found  # "cumulo <command>": a placeholder for any
            sub = current.get_command(ctx, word)
            if sub is None and "/" in word:  # "cumulo users create/ls/rm": each must exist
                found += [f"{' '.join(_path(ctx))} has no command {one!r}"
                          for one in word.split("/") if current.get_command(ctx, one) is None]
                return found
            if sub is None:
                found.append(f"{' '.join(_path(ctx))} has no command {word!r}")
                return found
            ctx = sub.context_class(sub, info_name=word, parent=ctx)
            current = sub
            known_here = {**_options(root), **_options(sub)}
        i += 1
    return found


def _placeholder(word: str) -> bool:
    return word.startswith("<") or word in ("...", "COMMAND") or "…" in word


def _path(ctx: Any) -> list[str]:
    names = []
    while ctx is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return list(reversed(names))


def _options(command: Any) -> dict[str, bool]:
    """A command's option names -> whether the option takes a value."""
    known: dict[str, bool] = {}
    for param in command.params:
        if param.param_type_name == "option":
            takes = not param.is_flag and not param.count
            for name in [*param.opts, *param.secondary_opts]:
                known[name] = takes
    return known


def _all_commands() -> list[Command]:
    return [command for path in DOCS for command in commands(path)]


def test_the_docs_name_commands_and_options_the_cli_has() -> None:
    root = typer.main.get_command(app)
    found = _all_commands()
    assert len(found) > 300, "the collector found too few commands: is it broken?"
    wrong = [f"{command}\n    {problem}" for command in found
             for problem in problems(command, root)]
    assert not wrong, "the docs name what the CLI lacks:\n" + "\n".join(wrong)


def test_the_checker_catches_a_wrong_command_and_option() -> None:
    root = typer.main.get_command(app)

    def check(text: str) -> list[str]:
        return problems(Command("x.md", 1, text), root)

    assert check("cumulo jobs ls --tag demo") == []
    assert check("cumulo jobs frobnicate") == ["cumulo jobs has no command 'frobnicate'"]
    assert check("cumulo jobs ls --colour red") == ["cumulo jobs ls has no option --colour"]
    assert check("cumulo --profile ana sql 'select 1'") == []
    assert check("cumulo jobs run --code ./job --entry t.py -- --lr 0.1") == []
    assert check("cumulo tokens create/ls/burn") == ["cumulo tokens has no command 'burn'"]


def test_the_collector_reads_prompts_pipes_and_substitutions(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("\n".join([
        "```sh",
        "cumulo jobs ls   # a comment --not-an-option",
        "printf 'x' | cumulo files cp - data/x && cumulo files ls data",
        "BO=$(cumulo tokens create bo --user bo)",
        "CUMULO_TOKEN=$BO cumulo files mb raw \\",
        "  --project team-a",
        "```",
        "```",
        "$ cumulo whoami",
        "cumulo output, not a command",
        "```",
        "```python",
        "cumulo.job.inputs",
        "```",
    ]))
    texts = [c.text.strip() for c in commands(page)]
    assert texts == ["cumulo jobs ls", "cumulo files cp - data/x", "cumulo files ls data",
                     "cumulo tokens create bo --user bo",
                     "cumulo files mb raw  --project team-a", "cumulo whoami"]
