"""IPython magics for the lake, loaded with ``%load_ext cumulo``.

- ``%%sql`` runs the cell as SQL on the server (``client.sql``, with the notebook's
  credentials) and returns the result as a pandas DataFrame; ``%%sql df <<`` assigns it to
  ``df`` instead, as ipython-sql does.
- ``%cumulo tables [DATABASE]`` lists the tables (of one database); ``%cumulo databases``
  the databases; ``%cumulo help`` says all this.

The client is built as ``cumulo.Client()`` builds one: ``CUMULO_URL`` and ``CUMULO_TOKEN``
(what a notebook server and a notebook job set), else the saved login. A server's refusal
(a SQL error, a table one may not read) shows as its message, not as a traceback, and fails
the cell, so a notebook run all the way through (or as a job) stops there.

>>> %load_ext cumulo                                   # doctest: +SKIP
>>> %%sql                                              # doctest: +SKIP
... select region, sum(amount) from sales.orders group by 1
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from cumulo.errors import CumuloError

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from cumulo.client import Client

__all__ = ["CumuloMagics", "MagicError", "load_ipython_extension"]

_ASSIGN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*<<\s*$")
HELP = """\
%%sql                 the cell's SQL, run on the lake: returns a pandas DataFrame
%%sql df <<           ... and assigns it to df instead
%cumulo tables [DB]   the tables (of database DB)
%cumulo databases     the databases
%cumulo help          this
The server and the token: CUMULO_URL and CUMULO_TOKEN, else the saved login."""


class MagicError(Exception):
    """What the server (or the magic) refused, shown as its message alone: IPython draws
    an exception with ``_render_traceback_`` by that method instead of a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31m{self.message}\x1b[0m"]


@magics_class
class CumuloMagics(Magics):
    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            from cumulo.client import Client

            try:
                self._client = Client()
            except CumuloError as exc:
                raise MagicError(f"{type(exc).__name__}: {exc}") from None
        return self._client

    @cell_magic("sql")  # type: ignore[arg-type]
    def sql(self, line: str, cell: str) -> Any:
        """Run the cell as SQL on the lake; a pandas DataFrame (``%%sql NAME <<``: into
        NAME)."""
        target = None
        if line.strip():
            match = _ASSIGN.match(line)
            if match is None:
                raise MagicError(f"%%sql {line.strip()!r}: the line takes nothing, or "
                                 "'NAME <<' to assign the result to NAME")
            target = match.group(1)
        query = cell.strip()
        if not query:
            raise MagicError("%%sql: the cell holds no SQL")
        try:
            frame = self.client.sql(query).to_pandas()
        except CumuloError as exc:
            raise MagicError(f"{type(exc).__name__}: {exc}") from None
        if target is None:
            return frame
        assert self.shell is not None  # a registered Magics has its shell
        self.shell.user_ns[target] = frame
        print(f"{target}: {len(frame)} rows, {len(frame.columns)} columns")
        return None

    @line_magic("cumulo")  # type: ignore[arg-type]
    def cumulo(self, line: str) -> Any:
        """``%cumulo tables [DATABASE]``, ``%cumulo databases``, ``%cumulo help``."""
        words = shlex.split(line)
        verb, args = (words[0], words[1:]) if words else ("help", [])
        try:
            if verb == "tables" and len(args) <= 1:
                return self._tables(args[0] if args else None)
            if verb == "databases" and not args:
                return self._frame(self.client.tables.databases(),
                                   ["name", "tables", "project", "description"])
        except CumuloError as exc:
            raise MagicError(f"{type(exc).__name__}: {exc}") from None
        if verb == "help" and not args:
            print(HELP)
            return None
        raise MagicError(f"%cumulo {line.strip()}: not a command of it\n{HELP}")

    def _tables(self, database: str | None) -> Any:
        rows = self.client.tables.list(database)
        return self._frame(rows, ["name", "kind", "format", "project", "description",
                                  "updated_at"])

    @staticmethod
    def _frame(rows: list[dict[str, Any]], columns: list[str]) -> Any:
        import pandas as pd

        return pd.DataFrame([{c: row.get(c) for c in columns} for row in rows],
                            columns=columns)


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext cumulo``."""
    ipython.register_magics(CumuloMagics)
