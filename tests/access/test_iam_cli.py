"""``cumulo users``, ``groups``, ``roles``, ``policies``, ``access`` and ``projects`` as a
user types them, and the same through the SDK (``client.users``...), against one real server.

Each test names what it makes after itself, so that the tests do not depend on each other's
order; only the user ``admin`` (the server's first) holds the admin role, which the last-admin
test relies on."""

from __future__ import annotations

import json
import os
import pty
import select
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cumulo.errors import Conflict, Forbidden, Invalid, NotFound
from tests.services import CUMULO, Cumulo

PASSWORD = "tangerine-otter-lamp-42"


@dataclass
class Ran:
    code: int
    out: str
    err: str


def cumulo(server: Cumulo, *args: str, stdin: str | None = None,
           token: str | None = None) -> Ran:
    """The real ``cumulo`` command; ``stdin`` is sent on its standard input."""
    done = server.cli(*args, input=None if stdin is None else stdin.encode(), token=token)
    out, err = done.stdout, done.stderr
    if isinstance(out, bytes):
        out, err = out.decode(), err.decode()
    return Ran(done.returncode, out, err)


def ok(server: Cumulo, *args: str, stdin: str | None = None, token: str | None = None) -> str:
    ran = cumulo(server, *args, stdin=stdin, token=token)
    assert ran.code == 0, f"cumulo {' '.join(args)}: {ran.err}"
    return ran.out


def as_json(server: Cumulo, *args: str) -> Any:
    return json.loads(ok(server, *args, "--json"))


def refused(server: Cumulo, *args: str, stdin: str | None = None,
            token: str | None = None) -> str:
    """The one error line of a command that failed with status 1."""
    ran = cumulo(server, *args, stdin=stdin, token=token)
    assert ran.code == 1, f"cumulo {' '.join(args)} did not fail: {ran.out}"
    assert ran.err.startswith("error: ") and ran.err.count("\n") == 1, ran.err  # no traceback
    return ran.err


def in_terminal(server: Cumulo, *args: str, answers: list[str]) -> tuple[int, str]:
    """The real ``cumulo`` in a terminal of its own (a pty), as a person runs it: each answer
    is typed after the next prompt (text ending in ': '); the exit status and all it showed."""
    env = {**server.env, "CUMULO_URL": server.url, "CUMULO_TOKEN": server.token}
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes the command, its terminal the pty
        try:
            os.execve(CUMULO, [CUMULO, *args], env)
        finally:
            os._exit(127)
    shown = b""
    try:
        for answer in answers:
            while not shown.endswith(b": "):
                shown += _read(fd)
            os.write(fd, answer.encode() + b"\n")
            shown += b"<typed>"
        while chunk := _read(fd):
            shown += chunk
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode()


def _read(fd: int) -> bytes:
    ready, _, _ = select.select([fd], [], [], 60)
    assert ready, "the command showed nothing for 60 s"
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: the command ended and closed the terminal
        return b""


def sign_in(server: Cumulo, user: str, password: str) -> httpx.Response:
    return httpx.post(f"{server.url}/login", json={"user": user, "password": password},
                      headers={"accept": "application/json"}, timeout=60)


@pytest.fixture(scope="module")
def iam(local_server: Cumulo) -> Cumulo:
    return local_server


def write_policy(path: Path, *statements: dict[str, Any]) -> str:
    path.write_text(json.dumps({"statements": list(statements)}))
    return str(path)


# --- users ---------------------------------------------------------------------------------

def test_a_person_with_a_password_from_stdin_and_a_service_account(iam: Cumulo) -> None:
    made = ok(iam, "users", "create", "ana", "--email", "ana@example.com", "--role",
              "analyst", "--password-stdin", stdin=PASSWORD + "\n")
    assert made.strip() == "created user ana; roles: analyst"
    ana = as_json(iam, "users", "show", "ana")
    assert ana["kind"] == "person" and ana["email"] == "ana@example.com"
    assert ana["has_password"] and ana["roles"] == ["analyst"] and not ana["is_admin"]
    # The password is the line sent, without its newline: she signs in with it.
    assert sign_in(iam, "ana", PASSWORD).status_code == 200

    assert ok(iam, "users", "create", "ci-bot", "--service").strip() == \
        "created service account ci-bot"
    shown = ok(iam, "users", "show", "ci-bot")
    assert "service account (tokens only)" in shown and "password: none" in shown
    listed = {u["name"]: u for u in as_json(iam, "users", "ls")}
    assert listed["ci-bot"]["kind"] == "service" and listed["ana"]["kind"] == "person"
    table = ok(iam, "users", "ls")
    assert table.splitlines()[0].split()[:5] == ["name", "kind", "email", "admin", "state"]

    err = refused(iam, "users", "create", "ci-bot2", "--service", "--password-stdin",
                  stdin=PASSWORD)
    assert "service account" in err and "tokens" in err
    assert "no user 'ci-bot2'" in refused(iam, "users", "show", "ci-bot2")


def test_a_password_is_asked_twice_unseen(iam: Cumulo) -> None:
    code, shown = in_terminal(iam, "users", "create", "tess", "--password-prompt",
                              answers=[PASSWORD, "not-the-same-one-at-all", PASSWORD, PASSWORD])
    assert code == 0, shown
    assert shown.count("Password for tess: ") == 2 and "do not match" in shown
    assert "created user tess" in shown
    assert PASSWORD not in shown  # not echoed
    assert sign_in(iam, "tess", PASSWORD).status_code == 200


def test_a_weak_password_is_refused_and_no_user_is_made(iam: Cumulo) -> None:
    err = refused(iam, "users", "create", "weakling", "--password-stdin",
                  stdin="Password2024!\n")
    assert "the password is a common password" in err
    assert "at least 12" in refused(iam, "users", "create", "weakling", "--password-stdin",
                                    stdin="short\n")
    assert "read no password" in refused(iam, "users", "create", "weakling",
                                         "--password-stdin", stdin="")
    assert "no user 'weakling'" in refused(iam, "users", "show", "weakling")


def test_passwords_are_changed_by_their_owner_or_an_admin(iam: Cumulo) -> None:
    ok(iam, "users", "create", "pat", "--password-stdin", stdin=PASSWORD)
    token = sign_in(iam, "pat", PASSWORD).json()["token"]
    # pat has no role at all, yet changes their own password (no name: their own), with
    # the current one: a token alone (perhaps leaked) cannot take the account over.
    mine = "violet-harbour-kettle-9"
    assert "needs your current one" in refused(iam, "users", "passwd", "--password-stdin",
                                               stdin=f"wrong-guess-1234\n{mine}\n",
                                               token=token)
    assert ok(iam, "users", "passwd", "--password-stdin", stdin=f"{PASSWORD}\n{mine}\n",
              token=token).strip() == "changed the password of pat"
    assert sign_in(iam, "pat", mine).status_code == 200
    # ...but no one else's, and makes no users.
    assert "users:Manage" in refused(iam, "users", "passwd", "ana", "--password-stdin",
                                     stdin=mine, token=token)
    refused(iam, "users", "create", "pat2", token=token)
    # An admin sets anyone's; a weak one is refused and the old one still works.
    assert "contains the user name" in refused(iam, "users", "passwd", "pat",
                                               "--password-stdin", stdin="pat-pat-pat-pat-1")
    ok(iam, "users", "passwd", "pat", "--password-stdin", stdin=PASSWORD)
    assert sign_in(iam, "pat", PASSWORD).status_code == 200


def test_disable_enable_and_remove(iam: Cumulo) -> None:
    ok(iam, "users", "create", "dee", "--role", "analyst")
    assert ok(iam, "users", "disable", "dee").startswith("disabled user dee")
    assert as_json(iam, "users", "show", "dee")["disabled"]
    check = cumulo(iam, "access", "check", "dee", "tables:Read", "sales.orders")
    assert check.code == 1 and "(user dee is disabled)" in check.out
    ok(iam, "users", "enable", "dee")
    assert cumulo(iam, "access", "check", "dee", "tables:Read", "sales.orders").code == 0
    assert "you cannot disable yourself" in refused(iam, "users", "disable", "admin")

    # Without --yes it asks; no answer keeps the user.
    asked = cumulo(iam, "users", "rm", "dee", stdin="")
    assert asked.code == 1 and "Remove user dee" in asked.out
    assert as_json(iam, "users", "show", "dee")["name"] == "dee"
    assert ok(iam, "users", "rm", "dee", stdin="y\n").strip().endswith("removed user dee")
    assert "no user 'dee'" in refused(iam, "users", "show", "dee")
    ok(iam, "users", "create", "dee2")
    assert ok(iam, "users", "rm", "dee2", "--yes").strip() == "removed user dee2"
    assert "no user 'dee2'" in refused(iam, "users", "rm", "dee2", "--yes")


# --- groups --------------------------------------------------------------------------------

def test_groups_and_their_members(iam: Cumulo) -> None:
    for name in ("gia", "gus"):
        ok(iam, "users", "create", name)
    assert ok(iam, "groups", "create", "readers", "--description", "people who read") \
        .strip() == "created group readers"
    assert ok(iam, "groups", "add", "readers", "gia", "gus").strip() == \
        "added gia, gus to readers; members: gia, gus"
    group = as_json(iam, "groups", "show", "readers")
    assert group["members"] == ["gia", "gus"] and group["description"] == "people who read"
    assert as_json(iam, "users", "show", "gia")["groups"] == ["readers"]
    assert any(g["name"] == "readers" for g in as_json(iam, "groups", "ls"))
    assert "gia, gus" in ok(iam, "groups", "ls")

    ok(iam, "groups", "remove", "readers", "gus")
    assert as_json(iam, "groups", "show", "readers")["members"] == ["gia"]
    assert "gus is not a member of readers" in refused(iam, "groups", "remove", "readers",
                                                       "gus")
    assert "no user 'ghost'" in refused(iam, "groups", "add", "readers", "ghost")
    assert "no group 'nobody'" in refused(iam, "groups", "add", "nobody", "gia")
    assert "no group 'nobody'" in refused(iam, "groups", "show", "nobody")
    assert "there is already a group 'readers'" in refused(iam, "groups", "create", "readers")

    assert ok(iam, "groups", "rm", "readers").strip() == "removed group readers"
    assert as_json(iam, "users", "show", "gia")["groups"] == []


# --- roles, policies, grants and the simulator ---------------------------------------------

def test_roles_are_listed_and_shown_as_policy_documents(iam: Cumulo, tmp_path: Path) -> None:
    roles = as_json(iam, "roles", "ls")
    assert [r["name"] for r in roles] == ["admin", "developer", "data-scientist", "analyst",
                                          "viewer", "invoker"]
    assert "reads tables and runs SQL" in ok(iam, "roles", "ls")
    shown = cumulo(iam, "roles", "show", "analyst")
    document = json.loads(shown.out)
    assert shown.err.strip() == "role analyst: reads tables and runs SQL"
    assert document["statements"][0]["sid"] == "query"
    assert as_json(iam, "roles", "show", "analyst")["document"] == document
    # A role's document is a start for a custom policy.
    copy = tmp_path / "analyst.json"
    copy.write_text(shown.out)
    ok(iam, "policies", "create", "analyst-copy", "--file", str(copy))
    assert as_json(iam, "policies", "show", "analyst-copy")["document"] == document
    assert "no role 'root'; the roles are admin, developer" in refused(iam, "roles", "show",
                                                                       "root")

    actions = as_json(iam, "access", "actions")
    assert actions["tables:Read"] == "read a table's rows and schema"
    assert "access:Check" in ok(iam, "access", "actions")


def test_a_custom_policy_granted_to_a_group_and_checked(iam: Cumulo, tmp_path: Path) -> None:
    ok(iam, "users", "create", "cleo")
    ok(iam, "groups", "create", "sales")
    ok(iam, "groups", "add", "sales", "cleo")
    policy = write_policy(
        tmp_path / "sales.json",
        {"sid": "read", "effect": "allow", "actions": ["tables:Read", "tables:List"],
         "resources": ["table/sales/*"]},
        {"sid": "office", "effect": "allow", "actions": ["tables:Write"],
         "resources": ["table/sales/*"], "conditions": {"source_ip": ["10.0.0.0/8"]}},
        {"sid": "not-pay", "effect": "deny", "actions": ["tables:*"],
         "resources": ["table/sales/pay*"]})
    made = ok(iam, "policies", "create", "sales-read", "--file", policy, "--description",
              "read the sales tables")
    assert made.strip() == "created policy sales-read (3 statement(s))"
    listed = {p["name"]: p for p in as_json(iam, "policies", "ls")}
    assert listed["sales-read"]["description"] == "read the sales tables"

    assert ok(iam, "access", "grant", "--group", "sales", "--policy", "sales-read").strip() \
        == "gave policy sales-read to group:sales"
    allow = cumulo(iam, "access", "check", "cleo", "tables:Read", "sales.orders")
    assert allow.code == 0
    assert allow.out.strip() == ("allow  tables:Read on table/sales/orders  (statement 1 "
                                 "(read) of policy sales-read (group sales))")
    # Explicit deny wins over the allow of statement 1, and says so.
    deny = cumulo(iam, "access", "check", "cleo", "tables:Read", "table/sales/payroll")
    assert deny.code == 1
    assert deny.out.strip() == ("deny   tables:Read on table/sales/payroll  (statement 3 "
                                "(not-pay) of policy sales-read (group sales))")
    nothing = cumulo(iam, "access", "check", "cleo", "tables:Drop", "sales.orders")
    assert nothing.code == 1
    assert "(no statement allows tables:Drop on table/sales/orders)" in nothing.out
    # A condition: writes only from the office network.
    inside = cumulo(iam, "access", "check", "cleo", "tables:Write", "sales.orders",
                    "--source-ip", "10.1.2.3")
    outside = cumulo(iam, "access", "check", "cleo", "tables:Write", "sales.orders",
                     "--source-ip", "192.168.1.9")
    assert (inside.code, outside.code) == (0, 1)
    assert "statement 2 (office)" in inside.out
    result = json.loads(cumulo(iam, "access", "check", "cleo", "tables:Write", "sales.orders",
                               "--source-ip", "10.1.2.3", "--json").out)
    assert result["allowed"] and result["statement"] == 2 and result["sid"] == "office"

    # A role given to the user directly adds to the group's policy.
    ok(iam, "access", "grant", "--user", "cleo", "--role", "analyst")
    by_role = cumulo(iam, "access", "check", "cleo", "sql:Run", "sql")
    assert by_role.code == 0 and "of role analyst" in by_role.out
    assert [b["given"] for b in as_json(iam, "access", "ls", "--user", "cleo")] == ["analyst"]
    assert [b["given"] for b in as_json(iam, "access", "ls", "--group", "sales")] == \
        ["policy sales-read"]
    assert "group:sales" in ok(iam, "access", "ls")

    # A new document applies at once; taking the policy back ends it.
    write_policy(tmp_path / "sales.json", {"effect": "deny", "actions": ["tables:Read"],
                                           "resources": ["table/sales/orders"]})
    assert ok(iam, "policies", "update", "sales-read", "--file", policy).strip() == \
        "updated policy sales-read (1 statement(s))"
    assert cumulo(iam, "access", "check", "cleo", "tables:Read", "sales.orders").code == 1
    assert ok(iam, "access", "revoke", "--group", "sales", "--policy", "sales-read").strip() \
        == "took policy sales-read from group sales"
    assert cumulo(iam, "access", "check", "cleo", "tables:Read", "sales.orders").code == 0
    assert "sales has no policy sales-read" in refused(iam, "access", "revoke", "--group",
                                                       "sales", "--policy", "sales-read")
    assert ok(iam, "policies", "rm", "sales-read").strip() == "removed policy sales-read"
    assert "no policy 'sales-read'" in refused(iam, "policies", "show", "sales-read")


def test_a_policy_from_standard_input_shown_back(iam: Cumulo) -> None:
    document = {"statements": [{"effect": "allow", "actions": ["endpoints:Invoke"],
                                "resources": ["endpoint/churn"],
                                "conditions": {"hours_utc": "09:00-18:00",
                                               "weekdays": ["mon", "fri"]}}]}
    ok(iam, "policies", "create", "churn-hours", "--file", "-", stdin=json.dumps(document))
    shown = cumulo(iam, "policies", "show", "churn-hours")
    assert json.loads(shown.out) == document and "policy churn-hours" in shown.err
    ok(iam, "users", "create", "hal")
    ok(iam, "access", "grant", "--user", "hal", "--policy", "churn-hours")
    # 2026-06-12 is a Friday.
    at_work = cumulo(iam, "access", "check", "hal", "endpoints:Invoke", "churn", "--at",
                     "2026-06-12T10:00:00Z")
    at_night = cumulo(iam, "access", "check", "hal", "endpoints:Invoke", "churn", "--at",
                      "2026-06-12T22:00:00Z")
    assert (at_work.code, at_night.code) == (0, 1)
    assert "allow  endpoints:Invoke on endpoint/churn" in at_work.out


def test_a_malformed_policy_names_the_statement_and_field(iam: Cumulo, tmp_path: Path) -> None:
    typo = write_policy(tmp_path / "typo.json",
                        {"effect": "allow", "actions": ["tables:Read"], "resources": ["*"]},
                        {"sid": "write", "effect": "allow", "actions": ["tables:Wirte"],
                         "resources": ["*"]})
    err = refused(iam, "policies", "create", "typo", "--file", typo)
    assert "statement 2 ('write'), field 'actions'" in err
    assert "did you mean 'tables:Write'?" in err
    condition = write_policy(tmp_path / "cond.json",
                             {"effect": "allow", "actions": ["tables:Read"], "resources": ["*"],
                              "conditions": {"source_ips": ["10.0.0.0/8"]}})
    err = refused(iam, "policies", "create", "typo", "--file", condition)
    assert "statement 1, field 'conditions.source_ips'" in err
    assert "did you mean 'source_ip'?" in err
    (tmp_path / "broken.json").write_text('{"statements": [')
    err = refused(iam, "policies", "create", "typo", "--file", str(tmp_path / "broken.json"))
    assert "broken.json is not valid JSON" in err
    err = refused(iam, "policies", "create", "typo", "--file", str(tmp_path / "none.json"))
    assert "cannot read the policy file" in err and "none.json" in err
    assert "no policy 'typo'" in refused(iam, "policies", "show", "typo")  # nothing made


def test_unknown_names_are_named(iam: Cumulo) -> None:
    ok(iam, "users", "create", "una")
    assert "no user 'ghost'" in refused(iam, "access", "grant", "--user", "ghost", "--role",
                                        "analyst")
    assert "no group 'ghosts'" in refused(iam, "access", "grant", "--group", "ghosts",
                                          "--role", "analyst")
    err = refused(iam, "access", "grant", "--user", "una", "--role", "root")
    assert "no role 'root'; the roles are admin, developer, data-scientist" in err
    assert "no policy 'nope'" in refused(iam, "access", "grant", "--user", "una", "--policy",
                                         "nope")
    assert "no project 'nowhere'" in refused(iam, "access", "grant", "--user", "una",
                                             "--role", "analyst", "--project", "nowhere")
    assert "--user or --group" in refused(iam, "access", "grant", "--role", "analyst")
    assert "--role or --policy" in refused(iam, "access", "grant", "--user", "una")
    assert "no user 'ghost'" in refused(iam, "access", "check", "ghost", "tables:Read")
    assert "'tables:*' is not an action" in refused(iam, "access", "check", "una", "tables:*")
    assert "no user 'ghost'" in refused(iam, "users", "disable", "ghost")
    assert as_json(iam, "access", "ls", "--user", "una") == []  # nothing was given


def test_the_last_admin_keeps_the_admin_role(iam: Cumulo) -> None:
    err = refused(iam, "access", "revoke", "--user", "admin", "--role", "admin")
    assert "the last admin would be locked out" in err
    assert [b["given"] for b in as_json(iam, "access", "ls", "--user", "admin")] == ["admin"]
    assert as_json(iam, "users", "show", "admin")["is_admin"]
    assert cumulo(iam, "access", "check", "admin", "users:Manage", "user/x").code == 0


# --- projects ------------------------------------------------------------------------------

def test_projects_and_their_quotas(iam: Cumulo) -> None:
    made = ok(iam, "projects", "create", "vision", "--description", "image models",
              "--quota", "cpus=8", "--quota", "memory_gb=64")
    assert made.strip() == "created project vision; quotas: cpus=8, memory_gb=64"
    assert as_json(iam, "projects", "show", "vision")["quotas"] == {"cpus": 8, "memory_gb": 64}
    updated = ok(iam, "projects", "update", "vision", "--quota", "gpus=2", "--no-quota", "cpus",
                 "--description", "vision models")
    assert updated.strip() == "updated project vision; quotas: gpus=2, memory_gb=64"
    shown = as_json(iam, "projects", "show", "vision")
    assert shown["quotas"] == {"gpus": 2, "memory_gb": 64}
    assert shown["description"] == "vision models"
    assert any(p["name"] == "vision" for p in as_json(iam, "projects", "ls"))
    assert "gpus=2, memory_gb=64" in ok(iam, "projects", "ls")

    assert "'bogus' is not a quota; the quotas are cpus" in refused(
        iam, "projects", "update", "vision", "--quota", "bogus=1")
    assert "quota cpus='lots' is not a number" in refused(iam, "projects", "update", "vision",
                                                          "--quota", "cpus=lots")
    assert "not KEY=VALUE" in refused(iam, "projects", "create", "other", "--quota", "cpus")
    assert as_json(iam, "projects", "show", "vision")["quotas"] == {"gpus": 2, "memory_gb": 64}

    # A role given in a project holds there only.
    ok(iam, "users", "create", "vic")
    assert ok(iam, "access", "grant", "--user", "vic", "--role", "developer", "--project",
              "vision").strip() == "gave developer in project vision to user:vic"
    inside = cumulo(iam, "access", "check", "vic", "endpoints:Create", "endpoint/seg",
                    "--project", "vision")
    elsewhere = cumulo(iam, "access", "check", "vic", "endpoints:Create", "endpoint/seg")
    assert (inside.code, elsewhere.code) == (0, 1)
    assert ok(iam, "projects", "rm", "vision").strip() == "removed project vision"
    assert as_json(iam, "access", "ls", "--user", "vic") == []  # its grants went with it
    assert "no project 'vision'" in refused(iam, "projects", "show", "vision")


# --- the SDK -------------------------------------------------------------------------------

def test_the_sdk_manages_users_and_groups(iam: Cumulo) -> None:
    client = iam.client()
    made = client.users.create("sam", email="sam@example.com", password=PASSWORD,
                               role="viewer")
    assert made["roles"] == ["viewer"] and made["has_password"]
    assert client.users.create("sdk-bot", kind="service")["kind"] == "service"
    assert {"sam", "sdk-bot"} <= {u["name"] for u in client.users.list()}
    assert client.users.ls() == client.users.list()
    assert client.users.update("sam", email="sam@example.org")["email"] == "sam@example.org"
    assert client.users.disable("sam")["disabled"]
    assert not client.users.enable("sam")["disabled"]
    with pytest.raises(Invalid, match="common password"):
        client.users.passwd("sam", password="password123456")
    client.users.passwd("sam", password="maple-glacier-trumpet-5")
    assert sign_in(iam, "sam", "maple-glacier-trumpet-5").status_code == 200

    client.groups.create("sdk-team", description="made by the SDK")
    assert client.groups.add("sdk-team", "sam", "sdk-bot")["members"] == ["sam", "sdk-bot"]
    assert client.groups.remove("sdk-team", "sdk-bot")["members"] == ["sam"]
    assert client.groups.show("sdk-team")["description"] == "made by the SDK"
    with pytest.raises(NotFound, match="no user 'ghost'"):
        client.groups.add("sdk-team", "ghost")
    client.groups.delete("sdk-team")
    with pytest.raises(NotFound, match="no group 'sdk-team'"):
        client.groups.show("sdk-team")

    client.users.delete("sdk-bot")
    with pytest.raises(NotFound, match="no user 'sdk-bot'"):
        client.users.show("sdk-bot")
    token = sign_in(iam, "sam", "maple-glacier-trumpet-5").json()["token"]
    with pytest.raises(Forbidden):
        iam.client(token).users.create("not-allowed")
    with pytest.raises(Forbidden, match="needs your current one"):
        iam.client(token).users.passwd(password=PASSWORD)
    assert iam.client(token).users.passwd(password=PASSWORD,
                                          current_password="maple-glacier-trumpet-5")[
        "name"] == "sam"


def test_the_sdk_manages_policies_grants_and_projects(iam: Cumulo) -> None:
    client = iam.client()
    assert client.roles.show("invoker")["document"]["statements"][0]["actions"] == \
        ["endpoints:Invoke"]
    with pytest.raises(NotFound, match="no role 'root'; the roles are admin"):
        client.roles.show("root")
    document = {"statements": [{"sid": "models", "effect": "allow",
                                "actions": ["models:Approve"], "resources": ["model/*"]}]}
    policy = client.policies.create("approver", document=document, description="approves")
    assert policy["document"] == document
    with pytest.raises(Invalid, match="statement 1, field 'effect'"):
        client.policies.update("approver", document={"statements": [
            {"effect": "Allow", "actions": ["models:Approve"], "resources": ["*"]}]})
    updated = client.policies.update("approver", document=json.dumps(document),
                                     description="approves models")
    assert updated["description"] == "approves models"
    assert "approver" in {p["name"] for p in client.policies.list()}

    client.users.create("reviewer")
    client.projects.create("fraud", description="fraud models", quotas={"cpus": 4})
    binding = client.access.grant(user="reviewer", policy="approver", project="fraud")
    assert binding["subject"] == "user:reviewer"
    assert binding["given"] == "policy approver in project fraud"
    assert client.access.list(user="reviewer") == [binding]
    allowed = client.access.check("reviewer", "models:Approve", "model/churn", project="fraud")
    assert allowed["allowed"] and allowed["source"] == "policy approver in project fraud"
    assert allowed["statement"] == 1 and allowed["sid"] == "models"
    assert not client.access.check("reviewer", "models:Approve", "model/churn")["allowed"]
    assert client.access.actions()["models:Approve"].startswith("approve a model version")
    assert client.access.revoke(user="reviewer", policy="approver",
                                project="fraud") == {"removed": 1}
    with pytest.raises(NotFound, match="reviewer has no policy approver in project fraud"):
        client.access.revoke(user="reviewer", policy="approver", project="fraud")
    with pytest.raises(Conflict, match="last admin"):
        client.access.revoke(user="admin", role="admin")

    project = client.projects.update("fraud", quotas={"cpus": None, "gpus": 1})
    assert project["quotas"] == {"gpus": 1}
    assert client.projects.show("fraud")["description"] == "fraud models"
    client.projects.delete("fraud")
    assert "fraud" not in {p["name"] for p in client.projects.list()}
    client.policies.delete("approver")
    with pytest.raises(NotFound, match="no policy 'approver'"):
        client.policies.show("approver")
