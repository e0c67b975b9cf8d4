"""The ``cumulo`` command."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Run the CLI; a CumuloError is one line on stderr and exit status 1, never a traceback."""
    from cumulo.cli.app import app
    from cumulo.errors import CumuloError

    try:
        app(standalone_mode=True)
    except CumuloError as exc:
        from rich.markup import escape

        from cumulo.cli.output import err

        err.print(f"[bold red]error:[/] {escape(exc.message)}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
