"""``cumulo tokens``: create, list and revoke API tokens."""

from __future__ import annotations

import typer

from cumulo.cli.context import client
from cumulo.cli.output import JsonOpt, console, err, print_json, show_result, show_rows, when

__all__ = ["app"]

app = typer.Typer(help="API tokens: create, list, revoke.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="a name to recognise it by, e.g. 'ci'"),
    expires_in: str | None = typer.Option(
        None, "--expires-in", help="how long it works, e.g. 12h, 1h30m, 30d; default forever"
    ),
    user: str | None = typer.Option(
        None, "--user", help="for another user (a service account): needs users:Manage on them"
    ),
    json: bool = JsonOpt,
) -> None:
    """Create a token. Its secret is printed this once and never again."""
    token = client(ctx).tokens.create(name, expires_in=expires_in, user=user)
    if json:
        print_json(token)
        return
    console.print(token["token"])
    expires = f", expiring {when(token['expires_at'])} UTC" if token.get("expires_at") else ""
    err.print(f"token {token['name']!r} (id {token['id']}) created{expires}; store it now, it "
              "is not shown again")


@app.command("ls")
def list_(ctx: typer.Context, all_users: bool = typer.Option(False, "--all",
          help="Every user's tokens (admins only)."), json: bool = JsonOpt) -> None:
    """List tokens (never their secrets)."""
    show_rows(client(ctx).tokens.list(all_users=all_users), {
        "id": "id", "name": "name", "user": "user",
        "prefix": lambda t: t["prefix"] + "…",
        "created": lambda t: when(t["created_at"]),
        "expires": lambda t: when(t["expires_at"]),
        "last used": lambda t: when(t["last_used_at"]),
        "state": "state",
    }, as_json=json)


app.command("list", hidden=True)(list_)


@app.command("revoke")
def revoke(ctx: typer.Context, ref: str = typer.Argument(..., help="token id or name"),
           json: bool = JsonOpt) -> None:
    """Revoke a token: it stops working at once."""
    token = client(ctx).tokens.revoke(ref)
    show_result(token, f"revoked token {token['name']!r} (id {token['id']})", as_json=json)


keys_app = typer.Typer(help="S3 access keys: create, list, revoke (for boto3, aws, rclone).",
                       no_args_is_help=True)


@keys_app.command("create")
def create_key(
    ctx: typer.Context,
    name: str = typer.Argument("s3", help="a name to recognise it by, e.g. 'laptop'"),
    expires_in: str | None = typer.Option(None, "--expires-in",
                                          help="how long it works, e.g. 30d; default forever"),
    json: bool = JsonOpt,
) -> None:
    """Create an S3 access key with your rights. Its secret is printed this once."""
    c = client(ctx)
    key = c.keys.create(name, expires_in=expires_in)
    if json:
        print_json(key)
        return
    console.print(f"AWS_ACCESS_KEY_ID={key['access_key_id']}")
    console.print(f"AWS_SECRET_ACCESS_KEY={key['secret_access_key']}")
    console.print(f"AWS_ENDPOINT_URL={c.url}")
    err.print(f"key {key['access_key_id']} ({key['name']!r}) created; store the secret now, it "
              "is not shown again. boto3.client('s3', endpoint_url=...) and the aws command "
              "take these variables as they are.")


@keys_app.command("ls")
def list_keys(ctx: typer.Context, all_users: bool = typer.Option(False, "--all",
              help="Every user's keys (admins only)."), json: bool = JsonOpt) -> None:
    """List S3 access keys (never their secrets)."""
    show_rows(client(ctx).keys.list(all_users=all_users), {
        "access key id": "access_key_id", "name": "name", "user": "user",
        "created": lambda k: when(k["created_at"]),
        "last used": lambda k: when(k["last_used_at"]), "state": "state",
    }, as_json=json)


@keys_app.command("revoke")
def revoke_key(ctx: typer.Context, key_id: str = typer.Argument(..., help="the access key id"),
               json: bool = JsonOpt) -> None:
    """Revoke a key: S3 requests signed with it fail at once."""
    key = client(ctx).keys.revoke(key_id)
    show_result(key, f"revoked access key {key['access_key_id']}", as_json=json)
