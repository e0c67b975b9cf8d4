"""Cumulo: the ML cloud you run yourself.

``cumulo.Client()`` talks to a running server; the server starts with ``cumulo up``.
``%load_ext cumulo`` in IPython or Jupyter gives the ``%%sql`` and ``%cumulo`` magics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__", "load_ipython_extension"]

if TYPE_CHECKING:
    from cumulo.client import Client


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext cumulo``: the lake's magics (:mod:`cumulo.notebooks.magic`), imported only
    then."""
    from cumulo.notebooks.magic import load_ipython_extension as load

    load(ipython)


def __getattr__(name: str) -> Any:
    # The SDK is imported on first use, so 'import cumulo' stays light.
    if name == "Client":
        from cumulo.client import Client

        return Client
    raise AttributeError(f"module 'cumulo' has no attribute {name!r}")
