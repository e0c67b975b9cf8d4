"""How the CLI prints: tables for people, ``--json`` for scripts, one line for an error.

A command that shows things takes ``json: bool = JsonOpt`` and ends in one of
:func:`show_rows` (a list: a table, or a JSON array), :func:`show_record` (one thing: a
label per line, or a JSON object) or :func:`show_result` (what it did: a line, or the API's
answer as JSON).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

__all__ = [
    "Cell",
    "JsonOpt",
    "ProjectOpt",
    "console",
    "err",
    "human_bytes",
    "print_json",
    "progress_bar",
    "show_record",
    "show_result",
    "show_rows",
    "when",
]

console = Console(highlight=False, soft_wrap=True)
if not console.is_terminal:
    console.width = max(console.width, 200)  # piped output: do not wrap tables at 80 columns
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts instead of a table.")
# The project (workspace) a command works in: what it makes belongs to it, what it lists is
# that project's, and rights bound in the project apply.
ProjectOpt = typer.Option(None, "--project", envvar="CUMULO_PROJECT", show_envvar=True,
                          help="The project to work in: what is made belongs to it, what is "
                               "listed is its.")

# A table column: the key (or attribute) of each row to show, or a function of the row giving
# the text (Rich markup allowed, for colours).
Cell = str | Callable[[Any], object]


def _default(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, default=_default, option=orjson.OPT_INDENT_2).decode())
    sys.stdout.write("\n")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def when(value: str | datetime | None) -> str:
    if value is None:
        return "-"
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    return dt.strftime("%Y-%m-%d %H:%M:%S")


@contextmanager
def progress_bar(label: str, total: int | None, *, quiet: bool = False) -> Iterator[Any]:
    """A transfer bar on stderr; silent when stderr is not a terminal or ``quiet`` is set."""
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), console=err, disable=quiet or not err.is_terminal, transient=True,
    )
    with progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _cell(row: Any, cell: Cell) -> str:
    if callable(cell):
        return _text(cell(row))
    value = row[cell] if isinstance(row, Mapping) else getattr(row, cell)
    return escape(_text(value))  # data, not markup: a name like '[draft]' shows as is


def show_rows(rows: Sequence[Any], columns: Mapping[str, Cell], *, as_json: bool,
              data: Any = None, right: Collection[str] = ()) -> None:
    """A list as a table for people, a row a line under ``columns`` (header: cell), or as a
    JSON array for scripts (``data`` instead, where scripts get more than the rows).
    Columns named in ``right`` are right-aligned (numbers); None shows as '-'."""
    if as_json:
        print_json(list(rows) if data is None else data)
        return
    table = Table(box=None)
    for header in columns:
        table.add_column(header, justify="right" if header in right else "left")
    for row in rows:
        table.add_row(*(_cell(row, cell) for cell in columns.values()))
    console.print(table)


def show_record(record: Any, fields: Iterable[tuple[str, object]], *, as_json: bool) -> None:
    """One thing as ``label: value`` lines for people (a field whose value is None is left
    out), or ``record`` as JSON for scripts."""
    if as_json:
        print_json(record)
        return
    grid = Table.grid(padding=(0, 1, 0, 0))
    grid.add_column(justify="right", style="bold")
    grid.add_column()
    for label, value in fields:
        if value is not None:
            grid.add_row(escape(f"{label}:"), escape(_text(value)))
    console.print(grid)


def show_result(value: Any, message: str, *, as_json: bool) -> None:
    """What a command did: one line for people, or the API's answer as JSON for scripts."""
    if as_json:
        print_json(value)
    else:
        console.print(message)
