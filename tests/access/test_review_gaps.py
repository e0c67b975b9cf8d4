"""Gaps a security review of identity and access found, each closed and kept closed: model
approval through MLflow's own API, the audit log's lake copy read as a table, the crawler
making tables its caller could not, the sandbox's internal names, forwarded source addresses,
and a token alone adding a password to an account."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cumulo.errors import Conflict, Forbidden, NotFound
from tests.services import Cumulo


@pytest.fixture(scope="module")
def people(local_server: Cumulo) -> Iterator[dict[str, str]]:
    admin = local_server.client()
    tokens = {}
    for name, role in (("dev-r", "developer"), ("ana-r", "analyst"), ("view-r", "viewer")):
        admin.users.create(name, kind="service", role=role)
        tokens[name] = admin.tokens.create("t", user=name)["token"]
    # A person with a token and no password (as after single sign-on): made as the API
    # would, with this token, since tokens are made for others only for service accounts.
    local_server.add_user("tok-only", "cml_tok-only-token-0123456789abcd")
    tokens["tok-only"] = "cml_tok-only-token-0123456789abcd"
    yield tokens


def _as(server: Cumulo, token: str, method: str, path: str, *,
        headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{server.url}{path}", timeout=60, **kwargs,
                         headers={"Authorization": f"Bearer {token}", **(headers or {})})


def test_approving_a_model_through_mlflows_api_is_models_approve(
        local_server: Cumulo, people: dict[str, str]) -> None:
    dev = people["dev-r"]
    tag = _as(local_server, dev, "POST", "/mlflow/api/2.0/mlflow/model-versions/set-tag",
              json={"name": "churn", "version": "1", "key": "cumulo.approval",
                    "value": "approved"})
    assert tag.status_code == 403 and "models:Approve on model/churn" in tag.text
    stage = _as(local_server, dev, "POST",
                "/mlflow/api/2.0/mlflow/model-versions/transition-stage",
                json={"name": "churn", "version": "1", "stage": "Production"})
    assert stage.status_code == 403
    # Registering stays a developer's right (MLflow answers; Cumulo does not refuse).
    made = _as(local_server, dev, "POST", "/mlflow/api/2.0/mlflow/registered-models/create",
               json={"name": "dev-model"})
    assert made.status_code != 403, made.text


def test_the_audit_copy_is_read_only_with_audit_read(local_server: Cumulo,
                                                     people: dict[str, str]) -> None:
    admin = local_server.client()
    admin.files.create_bucket("audited")  # a change: an entry, copied within seconds
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if admin.tables.show("audit.events"):
                break
        except NotFound:  # not copied yet
            time.sleep(0.3)
    sql = _as(local_server, people["ana-r"], "POST", "/api/v1/sql",
              json={"sql": "select count(*) from audit.events"})
    assert sql.status_code == 403 and "audit:Read" in sql.text, sql.text
    for who in ("ana-r", "view-r"):  # both read every table, but this one is the audit log
        data = _as(local_server, people[who], "GET", "/api/v1/tables/audit/events/data")
        assert data.status_code == 403 and "audit:Read" in data.text
    assert admin.sql("select count(*) n from audit.events").page[0]["n"] >= 1


def test_the_crawler_makes_only_what_its_caller_could(local_server: Cumulo,
                                                      people: dict[str, str]) -> None:
    admin = local_server.client()
    admin.files.create_bucket("payroll")
    admin.files.upload(b"name,salary\nann,250000\n", "payroll/salaries/2026.csv")
    # A developer who may not read the payroll bucket: tables:Create is not enough.
    admin.users.create("crawl-r", kind="service", role="developer")
    admin.policies.create("no-payroll", document={"statements": [{
        "effect": "deny", "actions": ["files:*"], "resources": ["bucket/payroll*"]}]})
    admin.access.grant(user="crawl-r", policy="no-payroll")
    token = admin.tokens.create("t", user="crawl-r")["token"]
    crawled = _as(local_server, token, "POST", "/api/v1/tables/crawl",
                  json={"path": "payroll/salaries", "database": "loot"})
    assert crawled.status_code == 403 and "files:" in crawled.text
    assert "loot" not in [d["name"] for d in admin.tables.databases()]
    into_audit = _as(local_server, local_server.token, "POST", "/api/v1/tables/crawl",
                     json={"path": "payroll/salaries", "database": "audit"})
    assert into_audit.status_code == 403 and "audit" in into_audit.text


def test_the_sandboxs_own_names_cannot_be_named(local_server: Cumulo,
                                                people: dict[str, str]) -> None:
    sneaky = ("SELECT d.* FROM (WITH __ds_0 AS (SELECT 1 AS x) SELECT 1) t, __ds_0 d, "
              "sales_nope.t")
    answer = _as(local_server, people["ana-r"], "POST", "/api/v1/sql", json={"sql": sneaky})
    assert answer.status_code == 400 and "'__ds_0' is not allowed here" in answer.text


def test_a_forwarded_address_is_not_taken_from_the_caller(local_server: Cumulo,
                                                          people: dict[str, str]) -> None:
    admin = local_server.client()
    answer = _as(local_server, people["view-r"], "DELETE", "/api/v1/files/buckets/audited",
                 headers={"X-Forwarded-For": "10.9.9.9"})
    assert answer.status_code == 403
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        entries = admin.audit.list(user="view-r", outcome="denied")["events"]
        if entries:
            break
        time.sleep(0.2)
    assert entries and all(e["source"] != "10.9.9.9" for e in entries)


def test_a_token_alone_cannot_give_an_account_a_password(local_server: Cumulo,
                                                         people: dict[str, str]) -> None:
    answer = _as(local_server, people["tok-only"], "PATCH", "/api/v1/users/tok-only",
                 json={"password": "a-brand-new-password-9"})
    assert answer.status_code == 403 and "has no password" in answer.text
    # An admin sets the first one; the change is in the audit log.
    local_server.client().users.passwd("tok-only", password="a-brand-new-password-9")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        changed = local_server.client().audit.list(action="users:Manage")["events"]
        if any(e["resource"] == "user/tok-only" for e in changed):
            break
        time.sleep(0.2)
    assert any(e["resource"] == "user/tok-only" for e in changed)


def test_tokens_for_others_are_for_service_accounts_only(local_server: Cumulo) -> None:
    """Else whoever may manage users could mint an admin's token and be admin."""
    made = _as(local_server, local_server.token, "POST", "/api/v1/tokens",
               json={"name": "mine-now", "user": "tok-only"})
    assert made.status_code == 400 and "is a person" in made.text


def test_developers_do_not_manage_who_sees_what(local_server: Cumulo,
                                                people: dict[str, str]) -> None:
    admin = local_server.client()
    admin.tables.create_database("hr")
    admin.tables.load("hr.emp", b"name,ssn\nann,123-45-6789\n", format="csv")
    drop = _as(local_server, people["dev-r"], "POST", "/api/v1/sql",
               json={"sql": "ALTER TABLE hr.emp ALTER COLUMN ssn DROP MASK FOR GROUP devs"})
    assert drop.status_code == 403 and "tables:Grant" in drop.text, drop.text


def test_a_conditional_deny_cannot_lock_the_last_admin_out(local_server: Cumulo) -> None:
    """The last-admin rule reads conditions against the admins: a deny that holds only from
    some addresses, or at some hours, counts as holding. (Last in this module: were it to
    fail, the server's admin would be locked out.)"""
    admin = local_server.client()
    for name, conditions in (("everywhere-but-nowhere", {"source_ip": ["0.0.0.0/0", "::/0"]}),
                             ("at-night", {"hours_utc": "00:00-23:59"})):
        admin.policies.create(name, document={"statements": [{
            "effect": "deny", "actions": ["*"], "resources": ["*"],
            "conditions": conditions}]})
        with pytest.raises(Conflict, match="last admin would be locked out"):
            admin.access.grant(user="admin", policy=name)
    assert admin.users.show("admin")["is_admin"]
    assert admin.users.list()  # still administrable


def test_a_creation_is_audited_with_the_name_of_what_it_made(local_server: Cumulo) -> None:
    # The route declares users:Manage on user/* (the name is in the body, not the path): the
    # audit entry names the user made, from the answer.
    admin = local_server.client()
    admin.users.create("made-here", kind="service", role="viewer")
    admin.groups.create("made-group")
    deadline = time.monotonic() + 10
    wanted = {("users:Manage", "user/made-here"), ("groups:Manage", "group/made-group")}
    seen: set[tuple[str, str]] = set()
    while time.monotonic() < deadline and not wanted <= seen:
        seen = {(e["action"], e["resource"]) for e in admin.audit.list(limit=100)["events"]}
        time.sleep(0.2)
    assert wanted <= seen, seen
    assert not any(resource.endswith("/*") for _, resource in seen
                   if resource.startswith(("user/", "group/")))


def test_a_job_reading_a_prefix_is_decided_on_each_object_under_it(
        local_server: Cumulo) -> None:
    admin = local_server.client()
    admin.files.create_bucket("gapfiles")
    admin.files.upload(b"x\n1\n", "gapfiles/open/a.csv")
    admin.files.upload(b"x\n2\n", "gapfiles/private/pay.csv")
    admin.users.create("prefix-r", kind="service", role="developer")
    admin.policies.create("no-private-files", document={"statements": [
        {"effect": "deny", "actions": ["files:Get"],
         "resources": ["bucket/gapfiles/private/*"]}]})
    admin.access.grant(user="prefix-r", policy="no-private-files")
    dev = local_server.client(admin.tokens.create("t", user="prefix-r")["token"])
    # The prefix itself is allowed; an object under it is not: the job is refused.
    with pytest.raises(Forbidden, match=r"bucket/gapfiles/private/pay\.csv"):
        dev.jobs.run(command="true", inputs={"raw": "gapfiles/"})
    job = dev.jobs.run(command="true", inputs={"raw": "gapfiles/open/"})
    assert job.wait(timeout=60)["state"] == "succeeded"

    # Deleting by prefix: the same, for files:Delete; nothing is deleted when one is refused.
    admin.policies.create("keep-private-files", document={"statements": [
        {"effect": "deny", "actions": ["files:Delete"],
         "resources": ["bucket/gapfiles/private/*"]}]})
    admin.access.grant(user="prefix-r", policy="keep-private-files")
    time.sleep(1.1)  # rights are read again within a second
    with pytest.raises(Forbidden, match=r"files:Delete on bucket/gapfiles/private/pay\.csv"):
        dev.files.delete("gapfiles/", recursive=True)
    assert admin.files.exists("gapfiles/open/a.csv")
    assert dev.files.delete("gapfiles/open/", recursive=True) == 1
    assert admin.files.exists("gapfiles/private/pay.csv")
