"""The SDK client a CLI command uses, built once from the root options."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from cumulo.client import Client

__all__ = ["client"]


def client(ctx: typer.Context) -> Client:
    from cumulo.client import Client

    root = ctx.find_root()
    if not isinstance(root.obj, dict):
        root.obj = {}
    if "client" not in root.obj:
        root.obj["client"] = Client(root.obj.get("url"), token=root.obj.get("token"),
                                    profile=root.obj.get("profile"))
    return root.obj["client"]  # type: ignore[no-any-return]
