"""How the CLI prints: tables for people, ``--json`` for scripts, one line for an error.

A command that shows things takes ``json: bool = JsonOpt`` and ends in one of
:func:`show_rows` (a list: a table, or a JSON array), :func:`show_record` (one thing: a
label per line, or a JSON object) or :func:`show_result` (what it did: a line, or the API's
answer as JSON).

The root options ``--output json|table|csv`` and ``--query EXPR`` (JMESPath) reach every
such command through here, not through each command: :func:`use_format` keeps them for the
invocation, ``JsonOpt`` turns ``--json`` on for ``--output json`` or a query, and
:func:`print_json` applies the query to the JSON a command would print.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.errors import MarkupError
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
from rich.text import Text

from cumulo.errors import Invalid

__all__ = [
    "OUTPUTS",
    "Cell",
    "JsonOpt",
    "ProjectOpt",
    "console",
    "err",
    "human_bytes",
    "print_json",
    "prints_tables",
    "progress_bar",
    "show_record",
    "show_result",
    "show_rows",
    "use_format",
    "when",
]

console = Console(highlight=False, soft_wrap=True)
if not console.is_terminal:
    console.width = max(console.width, 200)  # piped output: do not wrap tables at 80 columns
err = Console(stderr=True, highlight=False, soft_wrap=True)

OUTPUTS = ("json", "table", "csv")


@dataclass(frozen=True)
class _Format:
    """The root's ``--output`` (None: not given) and ``--query`` (as typed, and compiled)."""

    output: str | None = None
    query: str | None = None
    compiled: Any = None


_PLAIN = _Format()  # frozen: safe to share
_format: ContextVar[_Format] = ContextVar("cumulo_output_format", default=_PLAIN)


def use_format(*, output: str | None, query: str | None) -> Callable[[], None]:
    """Check ``--output`` and ``--query`` and print with them until the returned function is
    called. Both are checked here, before the command runs, so a typo loses nothing (a
    ``tokens create`` whose secret could not be printed, say)."""
    if output is not None and output not in OUTPUTS:
        raise Invalid(f"--output {output!r} is not an output: use json, table or csv")
    compiled = None if query is None else _compile(query)
    token = _format.set(_Format(output, query, compiled))
    return lambda: _format.reset(token)


def _compile(query: str) -> Any:
    import jmespath
    from jmespath.exceptions import EmptyExpressionError, JMESPathError, LexerError

    try:
        return jmespath.compile(query)
    except EmptyExpressionError:
        raise Invalid("--query is empty: give a JMESPath expression like '[].id'") from None
    except LexerError as exc:
        raise Invalid(f"--query {query!r} is not JMESPath: {exc.message} at position "
                      f"{exc.lex_position}") from None
    except JMESPathError as exc:  # a ParseError: where it went wrong, and on what
        token = getattr(exc, "token_value", None)
        what = (f"{getattr(exc, 'msg', 'invalid token')} {token!r}" if token is not None
                else "the expression ends too soon")
        raise Invalid(f"--query {query!r} is not JMESPath: {what} at position "
                      f"{getattr(exc, 'lex_position', '?')}") from None


def prints_tables() -> bool:
    """Whether this invocation prints tables for people (no ``--output csv`` or ``json``):
    a command's extra lines for people belong only there."""
    return _format.get().output in (None, "table")


def _json_wanted(value: bool) -> bool:
    """``--json``, or the root's ``--output json`` or ``--query`` (which works on the JSON)."""
    fmt = _format.get()
    if value and fmt.output in ("table", "csv") and fmt.query is None:
        raise Invalid(f"--json and --output {fmt.output} ask for different output: give one")
    return value or fmt.output == "json" or fmt.query is not None


JsonOpt = typer.Option(False, "--json", callback=_json_wanted,
                       help="Print JSON for scripts instead of a table (as --output json); "
                       "--query EXPR picks from it.")
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
    """``value`` as JSON; with ``--query``, what the query picks from it, as JSON or (with
    ``--output table`` or ``csv``) as a table, CSV, or a line of text for a plain value."""
    fmt = _format.get()
    if fmt.compiled is not None:
        value = _search(fmt, value)
        if fmt.output in ("table", "csv"):
            _show_found(value, as_csv=fmt.output == "csv")
            return
    sys.stdout.write(orjson.dumps(value, default=_default, option=orjson.OPT_INDENT_2).decode())
    sys.stdout.write("\n")


def _search(fmt: _Format, value: Any) -> Any:
    from jmespath.exceptions import JMESPathError

    document = orjson.loads(orjson.dumps(value, default=_default))  # what --json prints
    try:
        return fmt.compiled.search(document)
    except JMESPathError as exc:  # a function given the wrong type, say: only known here
        raise Invalid(f"--query {fmt.query!r} failed on this command's JSON: {exc}") from None


def _plain_value(value: object) -> str:
    """A value the query found, as text: strings as they are, the rest as compact JSON."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _show_found(value: Any, *, as_csv: bool) -> None:
    """What a query found, for ``--output table`` or ``csv``: a list of objects as rows, an
    object as one record, anything else a value a line."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        headers = list(dict.fromkeys(key for item in value for key in item))
        rows = [[_plain_value(item[k]) if item.get(k) is not None else "" for k in headers]
                for item in value]
    elif isinstance(value, dict):
        headers = list(value)
        rows = [["" if v is None else _plain_value(v) for v in value.values()]]
    else:
        for item in value if isinstance(value, list) else [value]:
            sys.stdout.write(_plain_value(item) + "\n")
        return
    if as_csv:
        _write_csv(headers, rows)
        return
    table = Table(box=None)
    for header in headers:
        table.add_column(escape(header))
    for row in rows:
        table.add_row(*(escape(cell) if cell else "-" for cell in row))
    console.print(table)


def _write_csv(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(headers)
    out.writerows(rows)


def _unmarked(text: str) -> str:
    """A table cell's text without its Rich markup (colours), for CSV."""
    try:
        return Text.from_markup(text).plain
    except MarkupError:
        return text


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


def _csv_cell(row: Any, cell: Cell) -> str:
    if not callable(cell):
        value = row[cell] if isinstance(row, Mapping) else getattr(row, cell)
        if value is None:
            return ""
    return _unmarked(_cell(row, cell))


def show_rows(rows: Sequence[Any], columns: Mapping[str, Cell], *, as_json: bool,
              data: Any = None, right: Collection[str] = ()) -> None:
    """A list as a table for people, a row a line under ``columns`` (header: cell), or as a
    JSON array for scripts (``data`` instead, where scripts get more than the rows).
    Columns named in ``right`` are right-aligned (numbers); None shows as '-' (empty in
    ``--output csv``, which writes the same columns as CSV)."""
    if as_json:
        print_json(list(rows) if data is None else data)
        return
    if _format.get().output == "csv":
        _write_csv(list(columns), ([_csv_cell(row, cell) for cell in columns.values()]
                                   for row in rows))
        return
    table = Table(box=None)
    for header in columns:
        table.add_column(header, justify="right" if header in right else "left")
    for row in rows:
        table.add_row(*(_cell(row, cell) for cell in columns.values()))
    console.print(table)


def show_record(record: Any, fields: Iterable[tuple[str, object]], *, as_json: bool) -> None:
    """One thing as ``label: value`` lines for people (a field whose value is None is left
    out), or ``record`` as JSON for scripts; with ``--output csv``, the labels as a header
    and the values as one row."""
    if as_json:
        print_json(record)
        return
    if _format.get().output == "csv":
        shown = list(fields)
        _write_csv([label for label, _ in shown],
                   [["" if value is None else _text(value) for _, value in shown]])
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
