"""Telling a local path from a Cumulo path (BUCKET/KEY) on the command line."""

from __future__ import annotations

import os

__all__ = ["is_local"]


def is_local(arg: str) -> bool:
    """Local: starts with /, ./, ../ or ~, is '-' or '.', or exists here. A Cumulo path can be
    forced with the cumulo:// prefix."""
    if arg.startswith("cumulo://"):
        return False
    return (arg == "-" or arg.startswith(("/", "./", "../", "~")) or arg in (".", "..")
            or os.path.exists(arg))
