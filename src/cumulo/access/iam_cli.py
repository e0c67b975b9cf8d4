"""``cumulo users``, ``groups``, ``roles``, ``policies``, ``access`` and ``projects``: identity
and access on the command line, over :mod:`cumulo.access.iam_sdk`."""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from cumulo.access.iam_sdk import Access, Groups, Policies, Projects, Roles, Users
from cumulo.cli.context import client
from cumulo.cli.output import (
    JsonOpt,
    console,
    err,
    print_json,
    show_record,
    show_result,
    show_rows,
    when,
)
from cumulo.errors import Invalid
from cumulo.units import parse_time

__all__ = ["access_app", "groups_app", "policies_app", "projects_app", "roles_app",
           "users_app"]

users_app = typer.Typer(help="Users: people who sign in, and service accounts for automation.",
                        no_args_is_help=True)
groups_app = typer.Typer(help="Groups of users, given roles and policies together.",
                         no_args_is_help=True)
roles_app = typer.Typer(help="The built-in roles (admin, developer, analyst...).",
                        no_args_is_help=True)
policies_app = typer.Typer(help="Custom policies: which actions, on which resources, when.",
                           no_args_is_help=True)
access_app = typer.Typer(help="Who may do what: grant and revoke roles and policies, and "
                              "check a decision with the simulator.", no_args_is_help=True)
projects_app = typer.Typer(help="Projects: workspaces with members and quotas.",
                           no_args_is_help=True)


def _joined(values: list[str]) -> str:
    return ", ".join(values) if values else "-"


def _state(user: dict[str, Any]) -> str:
    if user["disabled"]:
        return "disabled"
    if user.get("locked_until"):
        return (f"enabled; password sign-in locked until {when(user['locked_until'])} (a new "
                f"password unlocks it: 'cumulo users passwd {user['name']}')")
    return "enabled"


# --- users ---------------------------------------------------------------------------------

def _users(ctx: typer.Context) -> Users:
    # Built on the root client's transport, as the audit commands are: this module does not
    # depend on which attributes the root Client names.
    return Users(client(ctx).transport)


PasswordStdinOpt = typer.Option(False, "--password-stdin", help="Read the password from the "
                                "first line of standard input (for scripts).")


def _password_from_stdin() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise Invalid("--password-stdin read no password: send it as the first line of "
                      "standard input, e.g. '--password-stdin < password.txt'")
    return password


def _ask_password(prompt: str) -> str:
    # Asked twice: a typo in a hidden password would otherwise lock its owner out.
    return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=True))


def _user_line(user: dict[str, Any]) -> str:
    what = "service account" if user["kind"] == "service" else "user"
    roles = f"; roles: {', '.join(user['roles'])}" if user["roles"] else ""
    return f"{what} {user['name']}{roles}"


@users_app.command("create")
def create_user(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="lower-case, e.g. 'alice' or 'ci-bot'"),
    email: str | None = typer.Option(None, "--email", help="their address"),
    service: bool = typer.Option(False, "--service", help="A service account: no password, "
                                 "it works with API tokens only."),
    role: str | None = typer.Option(None, "--role", help="A built-in role to give everywhere "
                                    "('cumulo roles ls')."),
    password_prompt: bool = typer.Option(False, "--password-prompt", help="Ask for a password "
                                         "(twice, hidden) so that they can sign in."),
    password_stdin: bool = PasswordStdinOpt,
    json: bool = JsonOpt,
) -> None:
    """Create a user (a person) or, with --service, a service account."""
    if password_prompt and password_stdin:
        raise Invalid("give --password-prompt or --password-stdin, not both")
    password = (_password_from_stdin() if password_stdin
                else _ask_password(f"Password for {name}") if password_prompt else None)
    user = _users(ctx).create(name, kind="service" if service else "person", email=email,
                              password=password, role=role)
    show_result(user, f"created {_user_line(user)}", as_json=json)


@users_app.command("ls")
def list_users(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """List users and service accounts."""
    show_rows(_users(ctx).list(), {
        "name": "name", "kind": "kind", "email": "email", "admin": "is_admin",
        "state": _state, "groups": lambda u: escape(_joined(u["groups"])),
        "roles": lambda u: escape(_joined(u["roles"])), "tokens": "tokens",
        "created": lambda u: when(u["created_at"]),
    }, as_json=json, right=("tokens",))


users_app.command("list", hidden=True)(list_users)


@users_app.command("show")
def show_user(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """One user: groups, roles given directly, live tokens."""
    u = _users(ctx).show(name)
    show_record(u, [
        ("name", u["name"]),
        ("kind", "service account (tokens only)" if u["kind"] == "service" else "person"),
        ("email", u["email"]),
        ("admin", u["is_admin"]),
        ("state", _state(u)),
        ("password", "set" if u["has_password"] else "none"),
        ("groups", _joined(u["groups"])),
        ("roles", _joined(u["roles"])),
        ("tokens", u["tokens"]),
        ("created", when(u["created_at"])),
    ], as_json=json)


@users_app.command("disable")
def disable_user(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """Disable a user: they cannot sign in and their tokens stop working, until enabled."""
    user = _users(ctx).disable(name)
    show_result(user, f"disabled {_user_line(user)}", as_json=json)


@users_app.command("enable")
def enable_user(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """Enable a disabled user again."""
    user = _users(ctx).enable(name)
    show_result(user, f"enabled {_user_line(user)}", as_json=json)


@users_app.command("passwd")
def passwd(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="whose password (default: your own)"),
    password_stdin: bool = PasswordStdinOpt,
) -> None:
    """Set a password: your own (your current one is asked first), or (as an admin) another
    user's. Asked twice, hidden. With --password-stdin, your own takes two lines: the current
    password, then the new one."""
    me = str(client(ctx).whoami()["user"])
    who = name or me
    current = None
    if password_stdin:
        if who == me:
            current = _password_from_stdin()
        password = _password_from_stdin()
    else:
        if who == me:
            current = str(typer.prompt("Current password (empty if you have none)",
                                       hide_input=True, default="", show_default=False))
        password = _ask_password(f"New password for {who}")
    _users(ctx).passwd(who, password=password, current_password=current or None)
    console.print(f"changed the password of {who}")


@users_app.command("rm")
def remove_user(
    ctx: typer.Context, name: str,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Remove a user, their tokens, and every role and policy given to them."""
    if not yes:
        typer.confirm(f"Remove user {name}, their tokens and what was given to them?",
                      abort=True)
    _users(ctx).delete(name)
    console.print(f"removed user {name}")


# --- groups --------------------------------------------------------------------------------

def _groups(ctx: typer.Context) -> Groups:
    return Groups(client(ctx).transport)


@groups_app.command("create")
def create_group(ctx: typer.Context, name: str,
                 description: str = typer.Option("", "--description", "-d"),
                 json: bool = JsonOpt) -> None:
    """Create a group; 'cumulo groups add' puts users in it, 'cumulo access grant --group'
    gives it roles."""
    group = _groups(ctx).create(name, description=description)
    show_result(group, f"created group {group['name']}", as_json=json)


@groups_app.command("ls")
def list_groups(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """List groups, their members and roles."""
    show_rows(_groups(ctx).list(), {
        "name": "name", "description": "description",
        "members": lambda g: escape(_joined(g["members"])),
        "roles": lambda g: escape(_joined(g["roles"])),
        "created": lambda g: when(g["created_at"]),
    }, as_json=json)


groups_app.command("list", hidden=True)(list_groups)


@groups_app.command("show")
def show_group(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """One group: members, and the roles and policies it holds."""
    g = _groups(ctx).show(name)
    show_record(g, [
        ("name", g["name"]),
        ("description", g["description"] or None),
        ("members", _joined(g["members"])),
        ("roles", _joined(g["roles"])),
        ("created", when(g["created_at"])),
    ], as_json=json)


@groups_app.command("add")
def add_members(ctx: typer.Context, group: str,
                users: list[str] = typer.Argument(..., help="one or more user names"),
                json: bool = JsonOpt) -> None:
    """Add users to a group."""
    g = _groups(ctx).add(group, *users)
    show_result(g, f"added {', '.join(users)} to {group}; members: {_joined(g['members'])}",
                as_json=json)


@groups_app.command("remove")
def remove_members(ctx: typer.Context, group: str,
                   users: list[str] = typer.Argument(..., help="one or more user names"),
                   json: bool = JsonOpt) -> None:
    """Take users out of a group."""
    g = _groups(ctx).remove(group, *users)
    show_result(g, f"removed {', '.join(users)} from {group}; members: "
                   f"{_joined(g['members'])}", as_json=json)


@groups_app.command("rm")
def remove_group(ctx: typer.Context, name: str) -> None:
    """Remove a group, and every role and policy given to it (its users stay)."""
    _groups(ctx).delete(name)
    console.print(f"removed group {name}")


# --- roles ---------------------------------------------------------------------------------

@roles_app.command("ls")
def list_roles(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """The built-in roles and what each is for."""
    show_rows(Roles(client(ctx).transport).list(), {"name": "name",
                                                    "description": "description"},
              as_json=json)


roles_app.command("list", hidden=True)(list_roles)


@roles_app.command("show")
def show_role(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """A role's policy document, as JSON (a start for a custom policy); --json adds its name
    and description."""
    role = Roles(client(ctx).transport).show(name)
    if not json:
        err.print(f"role {escape(role['name'])}: {escape(role['description'])}")
    print_json(role if json else role["document"])


# --- policies ------------------------------------------------------------------------------

def _policies(ctx: typer.Context) -> Policies:
    return Policies(client(ctx).transport)


FileOpt = typer.Option(..., "--file", "-f", help="The policy document, a JSON file; '-' reads "
                       "it from standard input.")


def _document(file: str) -> Any:
    """The JSON document in ``file`` (``-``: standard input); its statements are checked by
    the server, which names the statement and field at fault."""
    source = "standard input" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise Invalid(f"cannot read the policy file {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise Invalid(f"the policy file {file} is not UTF-8 text") from None
    try:
        return jsonlib.loads(text)
    except ValueError as exc:
        raise Invalid(f"the policy in {source} is not valid JSON: {exc}") from None


def _statements(policy: dict[str, Any]) -> int:
    return len(policy["document"].get("statements", []))


@policies_app.command("create")
def create_policy(ctx: typer.Context, name: str, file: str = FileOpt,
                  description: str = typer.Option("", "--description", "-d"),
                  json: bool = JsonOpt) -> None:
    """Create a policy from a JSON document: {"statements": [{"effect": "allow", "actions":
    [...], "resources": [...], "conditions": {...}}]}. 'cumulo access grant --policy' gives
    it to someone."""
    policy = _policies(ctx).create(name, document=_document(file), description=description)
    show_result(policy, f"created policy {policy['name']} ({_statements(policy)} "
                        "statement(s))", as_json=json)


@policies_app.command("ls")
def list_policies(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """List custom policies ('cumulo roles ls' lists the built-in roles)."""
    show_rows(_policies(ctx).list(), {
        "name": "name", "description": "description", "statements": _statements,
        "updated": lambda p: when(p["updated_at"]),
    }, as_json=json, right=("statements",))


policies_app.command("list", hidden=True)(list_policies)


@policies_app.command("show")
def show_policy(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """A policy's document, as JSON (edit it, then 'cumulo policies update'); --json adds its
    name, description and times."""
    policy = _policies(ctx).show(name)
    if not json:
        about = f": {policy['description']}" if policy["description"] else ""
        err.print(f"policy {escape(policy['name'])}{escape(about)} (updated "
                  f"{when(policy['updated_at'])})")
    print_json(policy if json else policy["document"])


@policies_app.command("update")
def update_policy(ctx: typer.Context, name: str, file: str = FileOpt,
                  description: str | None = typer.Option(None, "--description", "-d"),
                  json: bool = JsonOpt) -> None:
    """Replace a policy's document; it applies at once to everyone who holds it."""
    policy = _policies(ctx).update(name, document=_document(file), description=description)
    show_result(policy, f"updated policy {policy['name']} ({_statements(policy)} "
                        "statement(s))", as_json=json)


@policies_app.command("rm")
def remove_policy(ctx: typer.Context, name: str) -> None:
    """Remove a policy, and take it from everyone who holds it."""
    _policies(ctx).delete(name)
    console.print(f"removed policy {name}")


# --- access --------------------------------------------------------------------------------

def _access(ctx: typer.Context) -> Access:
    return Access(client(ctx).transport)


UserOpt = typer.Option(None, "--user", "-u", help="A user (or --group).")
GroupOpt = typer.Option(None, "--group", "-g", help="A group (or --user).")
RoleOpt = typer.Option(None, "--role", "-r", help="A built-in role (or --policy).")
PolicyOpt = typer.Option(None, "--policy", "-p", help="A custom policy (or --role).")
ProjectOpt = typer.Option(None, "--project", help="Only in this project (default: "
                          "everywhere).")


@access_app.command("grant")
def grant(ctx: typer.Context, user: str | None = UserOpt, group: str | None = GroupOpt,
          role: str | None = RoleOpt, policy: str | None = PolicyOpt,
          project: str | None = ProjectOpt, json: bool = JsonOpt) -> None:
    """Give a role or a policy to a user or a group, everywhere or in one project."""
    binding = _access(ctx).grant(user=user, group=group, role=role, policy=policy,
                                 project=project)
    show_result(binding, f"gave {binding['given']} to {binding['subject']}", as_json=json)


@access_app.command("revoke")
def revoke(ctx: typer.Context, user: str | None = UserOpt, group: str | None = GroupOpt,
           role: str | None = RoleOpt, policy: str | None = PolicyOpt,
           project: str | None = ProjectOpt, json: bool = JsonOpt) -> None:
    """Take a role or a policy back from a user or a group."""
    answer = _access(ctx).revoke(user=user, group=group, role=role, policy=policy,
                                 project=project)
    given = f"role {role}" if role else f"policy {policy}"
    where = f" in project {project}" if project else ""
    subject = f"user {user}" if user else f"group {group}"
    show_result(answer, f"took {given}{where} from {subject}", as_json=json)


@access_app.command("ls")
def list_bindings(ctx: typer.Context,
                  user: str | None = typer.Option(None, "--user", "-u",
                                                  help="Only what this user was given."),
                  group: str | None = typer.Option(None, "--group", "-g",
                                                   help="Only what this group was given."),
                  json: bool = JsonOpt) -> None:
    """Who was given which role or policy (a user's groups' grants show under the group)."""
    show_rows(_access(ctx).list(user=user, group=group),
              {"id": "id", "subject": "subject", "given": "given"}, as_json=json, right=("id",))


access_app.command("list", hidden=True)(list_bindings)


def _why(result: dict[str, Any]) -> str:
    if result["statement"] is None:
        return str(result["reason"])
    sid = f" ({result['sid']})" if result["sid"] else ""
    return f"statement {result['statement']}{sid} of {result['source']}"


@access_app.command("check")
def check(
    ctx: typer.Context,
    user: str = typer.Argument(..., help="who"),
    action: str = typer.Argument(..., help="one action, e.g. tables:Read ('cumulo access "
                                 "actions')"),
    resource: str = typer.Argument("*", help="e.g. table/sales/orders, or the short "
                                   "sales.orders"),
    source_ip: str | None = typer.Option(None, "--source-ip", help="the caller's address"),
    owner: str | None = typer.Option(None, "--owner", help="who owns the resource"),
    project: str | None = typer.Option(None, "--project", help="the resource's project"),
    at: str | None = typer.Option(None, "--at", help="when: 2026-06-10T12:00:00Z (UTC unless "
                                  "it says), or 1h for an hour ago; default now"),
    json: bool = JsonOpt,
) -> None:
    """Would USER be allowed ACTION on RESOURCE, and which statement decides? Exits with
    status 0 when allowed and 1 when denied."""
    result = _access(ctx).check(user, action, resource, source_ip=source_ip, owner=owner,
                                project=project,
                                at=parse_time(at, what="--at") if at is not None else None)
    if json:
        print_json(result)
    else:
        verdict = "[green]allow[/]" if result["allowed"] else "[red]deny[/] "
        console.print(f"{verdict}  {escape(result['action'])} on {escape(result['resource'])}"
                      f"  ({escape(_why(result))})")
    if not result["allowed"]:
        raise typer.Exit(1)


@access_app.command("actions")
def list_actions(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """Every action a policy can name, and what it allows."""
    actions = _access(ctx).actions()
    show_rows([{"action": a, "description": d} for a, d in actions.items()],
              {"action": "action", "description": "description"}, as_json=json, data=actions)


# --- projects ------------------------------------------------------------------------------

def _projects(ctx: typer.Context) -> Projects:
    return Projects(client(ctx).transport)


QuotaOpt = typer.Option([], "--quota", "-q", help="KEY=VALUE, repeatable: cpus, gpus, "
                        "memory_gb, endpoints, storage_gb.")


def _quotas(pairs: list[str]) -> dict[str, str]:
    quotas: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise Invalid(f"--quota {pair!r} is not KEY=VALUE, e.g. --quota cpus=8")
        quotas[key.strip()] = value.strip()  # the server checks the name and the number
    return quotas


def _quota_text(project: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(project["quotas"].items())) or "-"


@projects_app.command("create")
def create_project(ctx: typer.Context, name: str,
                   description: str = typer.Option("", "--description", "-d"),
                   quota: list[str] = QuotaOpt, json: bool = JsonOpt) -> None:
    """Create a project; 'cumulo access grant --project' gives roles in it."""
    project = _projects(ctx).create(name, description=description, quotas=_quotas(quota))
    show_result(project, f"created project {project['name']}; quotas: "
                         f"{_quota_text(project)}", as_json=json)


@projects_app.command("ls")
def list_projects(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """List projects and their quotas."""
    show_rows(_projects(ctx).list(), {
        "name": "name", "description": "description", "quotas": _quota_text,
        "created": lambda p: when(p["created_at"]),
    }, as_json=json)


projects_app.command("list", hidden=True)(list_projects)


@projects_app.command("show")
def show_project(ctx: typer.Context, name: str, json: bool = JsonOpt) -> None:
    """One project: its quotas and what is in use of each, and what belongs to it."""
    p = _projects(ctx).show(name)
    quotas, usage = p["quotas"], p.get("usage") or {}
    in_use = ", ".join(
        f"{k} {v:g}" + (f" of {quotas[k]:g}" if k in quotas else "")
        for k, v in sorted(usage.items())) or "-"
    holds = ", ".join(f"{count} {kind.replace('_', ' ')}"
                      for kind, count in sorted((p.get("holds") or {}).items())) or "nothing"
    show_record(p, [
        ("name", p["name"]),
        ("description", p["description"] or None),
        ("quotas", _quota_text(p)),
        ("in use", in_use),
        ("holds", holds),
        ("created", when(p["created_at"])),
    ], as_json=json)


@projects_app.command("update")
def update_project(
    ctx: typer.Context, name: str,
    description: str | None = typer.Option(None, "--description", "-d"),
    quota: list[str] = QuotaOpt,
    no_quota: list[str] = typer.Option([], "--no-quota", help="Remove this quota, "
                                       "repeatable."),
    json: bool = JsonOpt,
) -> None:
    """Change a project's description, set quotas (the others stay) or remove them."""
    quotas: dict[str, str | None] = {**_quotas(quota)}
    for key in no_quota:
        if key in quotas:
            raise Invalid(f"--quota and --no-quota both name {key!r}")
        quotas[key] = None
    project = _projects(ctx).update(name, description=description, quotas=quotas or None)
    show_result(project, f"updated project {project['name']}; quotas: "
                         f"{_quota_text(project)}", as_json=json)


@projects_app.command("rm")
def remove_project(ctx: typer.Context, name: str) -> None:
    """Remove a project, and every role and policy given in it."""
    _projects(ctx).delete(name)
    console.print(f"removed project {name}")
