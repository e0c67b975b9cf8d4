"""Databases and tables in projects: a database made in one (``--project``) holds its tables
there, however they are made (a load, SQL, the crawler); listings filter by project; members
whose rights are bound in a project read, write and query its tables and no others, SQL
included (refused before DuckDB sees a table). Against one real server."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from cumulo.errors import Conflict, Forbidden, NotFound
from tests.services import Cumulo

ORDERS = b"id,amount\n1,9.5\n2,3.0\n"


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def admin(local_server: Cumulo) -> Any:
    return local_server.client()


@pytest.fixture(scope="module")
def member_token(local_server: Cumulo) -> str:
    token = "ana-token-" + uuid.uuid4().hex
    local_server.add_user("ana", token, project="team-a")  # a developer in team-a only
    return token


@pytest.fixture(scope="module")
def member(local_server: Cumulo, member_token: str) -> Any:
    return local_server.client(member_token)


@pytest.fixture(scope="module")
def others(admin: Any) -> dict[str, str]:
    """A database of project team-b and one of no project, a table in each."""
    admin.projects.create("team-b")
    theirs, plain = _name("theirs"), _name("plain")
    admin.tables.create_database(theirs, project="team-b")
    admin.tables.create_database(plain)
    for db in (theirs, plain):
        admin.tables.load(f"{db}.orders", ORDERS, format="csv")
    return {"team-b": theirs, "none": plain}


def test_a_member_works_with_tables_of_their_project(member: Any) -> None:
    tables = member.tables
    db = _name("sales")
    made = tables.create_database(db, project="team-a")
    assert made["project"] == "team-a"
    tables.load(f"{db}.orders", ORDERS, format="csv")  # a table made by a load
    assert tables.show(f"{db}.orders")["project"] == "team-a"
    assert tables.read(f"{db}.orders").num_rows == 2
    assert {d["name"]: d["project"] for d in tables.databases(project="team-a")}[db] == "team-a"
    listed = tables.list(db, project="team-a")
    assert [(t["name"], t["project"]) for t in listed] == [(f"{db}.orders", "team-a")]

    # SQL, run in the project: each table is then decided in its own.
    result = member.sql(f"SELECT sum(amount) AS s FROM {db}.orders", project="team-a")
    assert result.page == [{"s": 12.5}]
    assert result.to_arrow().num_rows == 1  # the results, fetched in the project too
    made_by_sql = member.sql(f"CREATE TABLE {db}.big AS SELECT * FROM {db}.orders "
                             "WHERE amount > 5", project="team-a")
    assert made_by_sql.written["rows_added"] == 1
    assert tables.show(f"{db}.big")["project"] == "team-a"
    assert [h["sql"][:6] for h in member.sql.history(project="team-a")][:2] == ["CREATE",
                                                                               "SELECT"]
    tables.drop(f"{db}.big")
    assert tables.drop_database(db, cascade=True)["tables_dropped"] == 1


def test_a_member_is_refused_outside_their_project(admin: Any, member: Any,
                                                   others: dict[str, str]) -> None:
    tables = member.tables
    with pytest.raises(Forbidden):
        tables.create_database(_name("nowhere"))
    with pytest.raises(Forbidden):
        tables.create_database(_name("theirs"), project="team-b")
    with pytest.raises(Forbidden):
        tables.databases()  # every database: platform-wide rights only
    with pytest.raises(Forbidden):
        tables.list()
    with pytest.raises(Forbidden):
        member.sql("SELECT 1")  # SQL outside any project
    for db in others.values():
        with pytest.raises(Forbidden):
            tables.show(f"{db}.orders")
        with pytest.raises(Forbidden):
            tables.read(f"{db}.orders")
        with pytest.raises(Forbidden):
            tables.load(f"{db}.orders", ORDERS, format="csv")
        with pytest.raises(Forbidden):
            tables.load(f"{db}.fresh", ORDERS, format="csv")  # a new table: the database's
        with pytest.raises(Forbidden):
            tables.drop_database(db, cascade=True)
        assert admin.tables.show(f"{db}.orders")["version"] == 0
        assert f"{db}.fresh" not in [t["name"] for t in admin.tables.list(db)]
    listed = [d["name"] for d in tables.databases(project="team-a")]
    assert not set(others.values()) & set(listed)


def test_sql_on_another_projects_table_is_refused_before_duckdb(
        local_server: Cumulo, admin: Any, member: Any, member_token: str,
        others: dict[str, str]) -> None:
    db = _name("mine")
    member.tables.create_database(db, project="team-a")
    member.tables.load(f"{db}.orders", ORDERS, format="csv")
    for other in others.values():
        statement = f"SELECT o.id FROM {db}.orders o JOIN {other}.orders t ON o.id = t.id"
        response = httpx.post(f"{local_server.url}/api/v1/sql", params={"project": "team-a"},
                              json={"sql": statement}, timeout=60,
                              headers={"authorization": f"Bearer {member_token}"})
        assert response.status_code == 403
        assert f"table/{other}/orders" in response.json()["error"]["message"]
        with pytest.raises(Forbidden):
            member.sql(f"CREATE TABLE {other}.copy AS SELECT * FROM {db}.orders",
                       project="team-a")
        assert f"{other}.copy" not in [t["name"] for t in admin.tables.list(other)]
    refused = [q for q in admin.sql.history(limit=20) if others["none"] in q["sql"]]
    assert refused and all(q["bytes_scanned"] is None for q in refused)  # nothing scanned


def test_admin_sees_projects_and_an_unknown_one_is_refused(admin: Any,
                                                           others: dict[str, str]) -> None:
    databases = {d["name"]: d["project"] for d in admin.tables.databases()}
    assert databases[others["team-b"]] == "team-b" and databases[others["none"]] is None
    assert {t["project"] for t in admin.tables.list(project="team-b")} == {"team-b"}
    assert admin.tables.show(f"{others['none']}.orders")["project"] is None
    ghost = _name("ghost")
    with pytest.raises(NotFound, match="no project 'no-such-project'"):
        admin.tables.create_database(ghost, project="no-such-project")
    assert ghost not in [d["name"] for d in admin.tables.databases()]
    with pytest.raises(NotFound, match="no-such-project"):
        admin.tables.databases(project="no-such-project")
    with pytest.raises(NotFound, match="no-such-project"):
        admin.tables.list(project="no-such-project")


def test_the_crawler_makes_its_tables_in_the_project(admin: Any, member: Any,
                                                     others: dict[str, str]) -> None:
    bucket = _name("raw").replace("_", "-")
    member.files.create_bucket(bucket, project="team-a")
    member.files.upload(b"id,amount\n1,2.0\n", f"{bucket}/sales/a.csv")
    db = _name("crawled")
    report = member.tables.crawl(f"{bucket}/", database=db, project="team-a")
    assert report["created"] == [f"{db}.sales"]
    assert member.tables.show(f"{db}.sales")["project"] == "team-a"
    assert {d["name"]: d["project"] for d in admin.tables.databases()}[db] == "team-a"
    with pytest.raises(Forbidden):  # a database of no project
        member.tables.crawl(f"{bucket}/", database=others["none"], project="team-a")
    with pytest.raises(Conflict, match="not in project team-a"):
        admin.tables.crawl(f"{bucket}/", database=others["team-b"], project="team-a")
    for other in others.values():
        assert [t["name"] for t in admin.tables.list(other)] == [f"{other}.orders"]


def test_cli_makes_and_lists_databases_in_a_project(local_server: Cumulo, admin: Any) -> None:
    db = _name("cli")
    made = local_server.cli("tables", "create-db", db, "--project", "team-a")
    assert made.returncode == 0, made.stderr
    assert f"created database {db} in project team-a" in made.stdout
    admin.tables.load(f"{db}.orders", ORDERS, format="csv")
    listed = local_server.cli("tables", "ls", "--project", "team-a", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {d["name"]: d["project"] for d in json.loads(listed.stdout)}[db] == "team-a"
    table = local_server.cli("tables", "ls", db, "--project", "team-a")
    assert "PROJECT" in table.stdout.upper() and "team-a" in table.stdout
    shown = local_server.cli("tables", "show", f"{db}.orders")
    assert "team-a" in shown.stdout
    query = local_server.cli("sql", f"SELECT count(*) AS n FROM {db}.orders", "--project",
                             "team-a", "--json")
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout)["page"] == [{"n": 2}]
