"""Cumulo: the ML cloud you run yourself.

``cumulo.Client()`` talks to a running server; the server starts with ``cumulo up``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from cumulo.client import Client


def __getattr__(name: str) -> Any:
    # The SDK is imported on first use, so 'import cumulo' stays light.
    if name == "Client":
        from cumulo.client import Client

        return Client
    raise AttributeError(f"module 'cumulo' has no attribute {name!r}")
