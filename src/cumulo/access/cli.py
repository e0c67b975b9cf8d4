"""``cumulo tokens``: create, list and revoke API tokens."""

from __future__ import annotations

import typer
from rich.table import Table

from cumulo.cli.context import client
from cumulo.cli.output import JsonOpt, console, err, print_json, when

__all__ = ["app"]

app = typer.Typer(help="API tokens: create, list, revoke.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="a name to recognise it by, e.g. 'ci'"),
    expires_in: str | None = typer.Option(
        None, "--expires-in", help="e.g. 12h, 30d; default never"
    ),
    json: bool = JsonOpt,
) -> None:
    """Create a token. Its secret is printed this once and never again."""
    token = client(ctx).tokens.create(name, expires_in=expires_in)
    if json:
        print_json(token)
        return
    console.print(token["token"])
    err.print(f"token {token['name']!r} (id {token['id']}) created; store it now, it is not "
              "shown again")


@app.command("ls")
def list_(ctx: typer.Context, all_users: bool = typer.Option(False, "--all",
          help="Every user's tokens (admins only)."), json: bool = JsonOpt) -> None:
    """List tokens (never their secrets)."""
    tokens = client(ctx).tokens.list(all_users=all_users)
    if json:
        print_json(tokens)
        return
    table = Table("id", "name", "user", "prefix", "created", "expires", "last used", "state",
                  box=None)
    for t in tokens:
        state = "revoked" if t["revoked_at"] else "live"
        table.add_row(str(t["id"]), t["name"], t["user"] or "-", t["prefix"] + "…",
                      when(t["created_at"]), when(t["expires_at"]), when(t["last_used_at"]),
                      state)
    console.print(table)


app.command("list", hidden=True)(list_)


@app.command("revoke")
def revoke(ctx: typer.Context, ref: str = typer.Argument(..., help="token id or name"),
           json: bool = JsonOpt) -> None:
    """Revoke a token: it stops working at once."""
    token = client(ctx).tokens.revoke(ref)
    print_json(token) if json else console.print(f"revoked token {token['name']!r} "
                                                 f"(id {token['id']})")
