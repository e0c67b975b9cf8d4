"""Who sees what of a table: GRANT and REVOKE through SQL, column masks and row filters seen
through every way a table is read, results kept to their author, and every malformed statement
or expression refused with a message that names it. Against one real server."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from cumulo.errors import Forbidden, Invalid, NotFound
from tests.services import Cumulo

ORDERS = (b"id,customer,email,region,amount,note\n"
          b"1,10,ann@x.com,EU,9.5,eu-one\n"
          b"2,11,bob@y.org,US,3.25,us-secret-two\n"
          b"3,10,cy@z.net,EU,1.0,eu-three\n")


@dataclass
class World:
    server: Cumulo
    db: str
    group: str
    ana: str  # in the group; no role, only running SQL: reads what GRANT gives her
    ana_token: str
    ben: str  # not in the group, granted SELECT himself: no mask or filter holds for him
    ben_token: str
    carl: str  # runs SQL, nothing else: for GRANT and REVOKE
    carl_token: str

    def admin(self) -> Any:
        return self.server.client()

    def as_(self, token: str) -> Any:
        return self.server.client(token)

    def sql(self, token: str, statement: str) -> list[dict[str, Any]]:
        return self.as_(token).sql(statement).page  # type: ignore[no-any-return]

    def post_sql(self, token: str, statement: str) -> httpx.Response:
        return httpx.post(f"{self.server.url}/api/v1/sql", json={"sql": statement},
                          headers={"authorization": f"Bearer {token}"}, timeout=60)


def _user(admin: Any, name: str) -> str:
    admin.users.create(name, kind="service")
    return str(admin.tokens.create(f"{name}-token", user=name)["token"])


@pytest.fixture(scope="module")
def world(local_server: Cumulo) -> World:
    tag = uuid.uuid4().hex[:6]
    db, group = f"ta_{tag}", f"analysts-{tag}"
    admin = local_server.client()
    admin.tables.create_database(db)
    admin.tables.load(f"{db}.orders", ORDERS, format="csv")
    admin.tables.load(f"{db}.orders", b"id,customer,email,region,amount,note\n"
                      b"4,12,dee@w.io,US,7.0,us-secret-four\n", format="csv")
    admin.tables.load(f"{db}.customers", b"id,name\n10,Ann\n11,Bob\n12,Dee\n", format="csv")
    admin.tables.create_database(f"{db}_out")
    # Running SQL and reading one's own queries, nothing about any table: what tables one
    # reads comes from GRANT.
    admin.policies.create(f"sql-only-{tag}", document={"statements": [
        {"effect": "allow", "actions": ["sql:Run"], "resources": ["sql"]},
        {"effect": "allow", "actions": ["sql:Read"], "resources": ["query/*"],
         "conditions": {"owner": "self"}}]})
    admin.groups.create(group)
    names = {who: f"{who}-{tag}" for who in ("ana", "ben", "carl")}
    tokens = {who: _user(admin, name) for who, name in names.items()}
    admin.groups.add(group, names["ana"])
    admin.access.grant(group=group, policy=f"sql-only-{tag}")
    for who in ("ben", "carl"):
        admin.access.grant(user=names[who], policy=f"sql-only-{tag}")
    return World(local_server, db, group, names["ana"], tokens["ana"], names["ben"],
                 tokens["ben"], names["carl"], tokens["carl"])


@pytest.fixture(scope="module")
def guarded(world: World) -> World:
    """The group reads every table of the database and writes its _out twin; on orders it
    sees left(email, 2) || '***', NULL amounts, and EU rows only."""
    admin, db, group = world.admin(), world.db, world.group
    admin.sql(f"GRANT SELECT ON {db}.* TO GROUP {group}")
    admin.sql(f"GRANT ALL PRIVILEGES ON {db}_out.* TO GROUP {group}")
    admin.sql(f"GRANT SELECT ON {db}.* TO USER {world.ben}")
    made = admin.sql(f"ALTER TABLE {db}.orders ALTER COLUMN email SET MASK "
                     f"left(email, 2) || '***'  -- two letters\nFOR GROUP {group}")
    assert made.page == [{"done": "masked", "table": f"{db}.orders", "column": "email",
                          "subject": f"group:{group}", "mask": "(\"left\"(email, 2) || '***')"}]
    admin.tables.filter(f"{db}.orders", "region = 'EU'", group=group)
    cli = world.server.cli("tables", "mask", f"{db}.orders", "amount", "--group", group,
                           "--with", "NULL")
    assert cli.returncode == 0, cli.stderr
    assert f"masked {db}.orders.amount for group {group}: NULL" in cli.stdout
    return world


def _eventually(check: Callable[[], None], within: float = 3.0) -> None:
    """Rights are read again within the authorization cache's second."""
    deadline = time.monotonic() + within
    while True:
        try:
            check()
            return
        except (AssertionError, Forbidden):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --- GRANT and REVOKE -------------------------------------------------------------------------


def test_grant_gives_and_revoke_takes_back(world: World) -> None:
    admin, carl, db = world.admin(), world.as_(world.carl_token), world.db
    with pytest.raises(Forbidden, match="tables:Read"):
        carl.sql(f"select count(*) n from {db}.orders")
    with pytest.raises(Forbidden, match="tables:Read"):
        carl.tables.read(f"{db}.customers")

    granted = admin.sql(f"grant select on table {db}.orders to user {world.carl};")
    assert granted.page == [{"done": "granted", "privilege": "SELECT", "table": f"{db}.orders",
                             "subject": f"user:{world.carl}",
                             "policy": f"grant.select.{db}.orders"}]
    _eventually(lambda: assert_rows(carl.sql(f"select count(*) n from {db}.orders").page,
                                    [{"n": 4}]))
    with pytest.raises(Forbidden):  # that table only
        carl.tables.read(f"{db}.customers")
    # Stored as what it stands for: the simulator and the bindings see it.
    check = admin.access.check(world.carl, "tables:Read", f"{db}.orders")
    assert check["allowed"] and check["source"] == f"policy grant.select.{db}.orders"
    assert any(b["given"] == f"policy grant.select.{db}.orders"
               for b in admin.access.list(user=world.carl))
    shown = admin.sql(f"SHOW GRANTS ON {db}.orders").page
    assert {"subject": f"user:{world.carl}", "privilege": "SELECT",
            "via": f"policy grant.select.{db}.orders"} in shown
    assert any(r["subject"] == "user:admin" and r["privilege"] == "ALL PRIVILEGES"
               and r["via"] == "role admin" for r in shown)
    # The audit log records it as a grant on the table, not as a query.
    _eventually(lambda: _audited(admin, f"table/{db}/orders"))

    again = admin.sql(f"GRANT SELECT ON {db}.orders TO USER {world.carl}")  # no change
    assert again.page[0]["done"] == "granted" and again.cost_usd == 0

    revoked = world.server.cli("sql", f"REVOKE SELECT ON {db}.orders FROM USER {world.carl}")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in revoked.stdout and f"grant.select.{db}.orders" in revoked.stdout
    _eventually(lambda: _refused(lambda: carl.sql(f"select 1 from {db}.orders")))
    with pytest.raises(NotFound, match=f"grant.select.{db}.orders"):
        admin.policies.show(f"grant.select.{db}.orders")  # nobody holds it: gone
    with pytest.raises(NotFound, match=f"has no SELECT on {db}.orders"):
        admin.sql(f"REVOKE SELECT ON {db}.orders FROM USER {world.carl}")


def assert_rows(got: Any, want: Any) -> None:
    assert got == want


def _audited(admin: Any, resource: str) -> None:
    events = admin.audit.list(action="tables:Grant", user="admin")["events"]
    assert any(e["resource"] == resource and e["outcome"] == "allowed" for e in events)


def _refused(call: Callable[[], Any]) -> None:
    try:
        call()
    except Forbidden:
        return
    raise AssertionError("still allowed")


def test_grant_needs_tables_grant(world: World) -> None:
    for statement in (f"GRANT SELECT ON {world.db}.orders TO USER {world.ana}",
                      f"ALTER TABLE {world.db}.orders SET ROW FILTER true FOR USER {world.ana}",
                      f"ALTER TABLE {world.db}.orders ALTER COLUMN email SET MASK NULL "
                      f"FOR USER {world.ana}"):
        response = world.post_sql(world.carl_token, statement)
        assert response.status_code == 403, response.text
        assert "tables:Grant" in response.json()["error"]["message"]
    with pytest.raises(Forbidden, match="tables:Grant"):
        world.as_(world.carl_token).tables.mask(f"{world.db}.orders", "email", "NULL",
                                                user=world.carl)
    # Who sees what is for whoever manages policies: a developer neither grants nor masks
    # (else they could drop a mask set for their own group).
    dev = world.server.add_user(f"dev-{uuid.uuid4().hex[:6]}", "cml_dev-" + uuid.uuid4().hex)
    with pytest.raises(Forbidden, match="tables:Grant"):
        dev.sql(f"GRANT SELECT ON {world.db}.orders TO USER {world.carl}")
    assert not [m for m in world.admin().tables.masks(f"{world.db}.orders")
                if m["subject"] == f"user:{world.ana}"]


# --- masks and filters, wherever the table is read ----------------------------------------------


def test_select_star_join_time_travel_aggregate(guarded: World) -> None:
    w, db = guarded, guarded.db
    rows = w.sql(w.ana_token, f"select * from {db}.orders order by id")
    assert rows == [
        {"id": 1, "customer": 10, "email": "an***", "region": "EU", "amount": None,
         "note": "eu-one"},
        {"id": 3, "customer": 10, "email": "cy***", "region": "EU", "amount": None,
         "note": "eu-three"}]
    joined = w.sql(w.ana_token, f"select o.id, o.email, c.name from {db}.orders o "
                                f"join {db}.customers c on c.id = o.customer order by o.id")
    assert joined == [{"id": 1, "email": "an***", "name": "Ann"},
                      {"id": 3, "email": "cy***", "name": "Ann"}]
    old = w.sql(w.ana_token, f"select id, email from {db}.orders VERSION AS OF 0 order by id")
    assert old == [{"id": 1, "email": "an***"}, {"id": 3, "email": "cy***"}]
    totals = w.sql(w.ana_token, f"select count(*) n, sum(amount) s, max(email) m "
                                f"from {db}.orders")
    assert totals == [{"n": 2, "s": None, "m": "cy***"}]
    # A condition on a masked column meets the masked value, never the stored one.
    assert w.sql(w.ana_token, f"select id from {db}.orders where email like 'ann%'") == []
    # Errors show only rows the filter keeps.
    failed = w.post_sql(w.ana_token, f"select * from {db}.orders where cast(note as int) = 1")
    assert failed.status_code == 400 and "secret" not in failed.text


def test_a_version_from_before_a_rename_keeps_the_masked_column_hidden(guarded: World) -> None:
    # Version 0 holds the address as "mail"; version 1 (an overwrite) renames it "email", and
    # the mask is set on "email". Reading version 0, no mask names "mail": every column the
    # table no longer has is shown NULL, since any of them may be the masked one.
    w, db, admin = guarded, guarded.db, guarded.admin()
    admin.tables.load(f"{db}.contacts", b"id,mail,city\n1,ann@x.com,Oslo\n", format="csv")
    admin.tables.load(f"{db}.contacts", b"id,email,city\n1,ann@x.com,Oslo\n", format="csv",
                      mode="overwrite")
    admin.sql(f"ALTER TABLE {db}.contacts ALTER COLUMN email SET MASK 'hidden' "
              f"FOR GROUP {w.group}")
    ana = w.as_(w.ana_token)

    def masked() -> None:
        assert w.sql(w.ana_token, f"select * from {db}.contacts") == [
            {"id": 1, "email": "hidden", "city": "Oslo"}]
    _eventually(masked)
    old = w.sql(w.ana_token, f"select * from {db}.contacts VERSION AS OF 0")
    assert old == [{"id": 1, "mail": None, "city": "Oslo"}]
    read = ana.tables.read(f"{db}.contacts", version=0)
    assert read.to_pylist() == [{"id": 1, "mail": None, "city": "Oslo"}]
    # Whoever no mask holds for sees the old version as it was.
    assert w.sql(w.ben_token, f"select mail from {db}.contacts VERSION AS OF 0") == [
        {"mail": "ann@x.com"}]


def test_ctas_holds_what_the_caller_saw(guarded: World) -> None:
    w, db = guarded, guarded.db
    made = w.as_(w.ana_token).sql(f"create table {db}_out.copy as select * from {db}.orders")
    assert made.written["rows_added"] == 2
    stored = w.admin().sql(f"select id, email, amount from {db}_out.copy order by id").page
    assert stored == [{"id": 1, "email": "an***", "amount": None},
                      {"id": 3, "email": "cy***", "amount": None}]


def test_read_route_sdk_and_cli(guarded: World) -> None:
    w, db = guarded, guarded.db
    ana = w.as_(w.ana_token)
    table = ana.tables.read(f"{db}.orders")
    assert table.column("email").to_pylist() == ["an***", "cy***"]
    assert table.column("amount").to_pylist() == [None, None]
    assert table.schema.field("amount").type == w.admin().tables.read(
        f"{db}.orders").schema.field("amount").type  # a mask keeps its column's type
    assert ana.tables.read(f"{db}.orders", limit=1).num_rows == 1
    assert ana.tables.read(f"{db}.orders", version=0).column("id").to_pylist() == [1, 3]
    preview = httpx.get(f"{w.server.url}/api/v1/tables/{db}/orders/data",
                        params={"format": "json"},
                        headers={"authorization": f"Bearer {w.ana_token}"})
    assert [r["email"] for r in preview.json()] == ["an***", "cy***"]
    head = w.server.cli("tables", "head", f"{db}.orders", token=w.ana_token)
    assert head.returncode == 0, head.stderr
    assert "an***" in head.stdout and "ann@x.com" not in head.stdout
    assert "bob" not in head.stdout
    query = w.server.cli("sql", f"select email from {db}.orders", token=w.ana_token)
    assert "cy***" in query.stdout and "cy@z.net" not in query.stdout
    # The diff route shows rows: refused to a caller with masks or filters on the table.
    with pytest.raises(Forbidden, match="column masks and row filters"):
        ana.tables.diff(f"{db}.orders", start=0)


def test_who_is_no_subject_sees_raw_values(guarded: World) -> None:
    w, db = guarded, guarded.db
    sql = f"select id, email, amount from {db}.orders order by id"
    raw = [{"id": 1, "email": "ann@x.com", "amount": 9.5},
           {"id": 2, "email": "bob@y.org", "amount": 3.25},
           {"id": 3, "email": "cy@z.net", "amount": 1.0},
           {"id": 4, "email": "dee@w.io", "amount": 7.0}]
    assert w.sql(w.ben_token, sql) == raw
    assert w.admin().sql(sql).page == raw  # admins are not subjects here: no exemption needed
    assert w.as_(w.ben_token).tables.read(f"{db}.orders").num_rows == 4
    # Asked again right after, the same statement by ana is still masked (no shared cache).
    assert [r["email"] for r in w.sql(w.ana_token, sql)] == ["an***", "cy***"]


def test_filters_are_anded_and_masks_applied_in_turn(guarded: World) -> None:
    w, db = guarded, guarded.db
    admin = w.admin()
    admin.sql(f"ALTER TABLE {db}.orders SET ROW FILTER customer = 10 AND id > 1 "
              f"FOR USER {w.ana}")
    admin.tables.mask(f"{db}.orders", "email", "upper(email)", user=w.ana)
    try:
        assert w.sql(w.ana_token, f"select id, email from {db}.orders") == [
            {"id": 3, "email": "CY***"}]
    finally:
        admin.sql(f"ALTER TABLE {db}.orders DROP ROW FILTER FOR USER {w.ana}")
        admin.tables.unmask(f"{db}.orders", "email", user=w.ana)
    assert [r["id"] for r in w.sql(w.ana_token, f"select id from {db}.orders order by 1")] \
        == [1, 3]


def test_policies_listed(guarded: World) -> None:
    w, db = guarded, guarded.db
    found = w.as_(w.ana_token).tables.policies(f"{db}.orders")  # reading is enough to see them
    assert {(m["column"], m["expression"], m["subject"]) for m in found["masks"]} == {
        ("amount", "NULL", f"group:{w.group}"),
        ("email", "(\"left\"(email, 2) || '***')", f"group:{w.group}")}
    assert [(f["predicate"], f["subject"], f["created_by"]) for f in found["filters"]] == [
        ("(region = 'EU')", f"group:{w.group}", "admin")]
    listed = w.server.cli("tables", "policies", f"{db}.orders")
    assert listed.returncode == 0, listed.stderr
    assert "left" in listed.stdout and "region = 'EU'" in listed.stdout
    assert f"group:{w.group}" in listed.stdout
    empty = w.server.cli("tables", "policies", f"{db}.customers")
    assert "no column masks and no row filters" in empty.stdout


def test_unmask_and_unfilter(guarded: World) -> None:
    w, db = guarded, guarded.db
    admin = w.admin()
    admin.tables.load(f"{db}.people", b"id,email\n1,a@b.c\n2,d@e.f\n", format="csv")
    admin.tables.mask(f"{db}.people", "email", "'***'", group=w.group)
    admin.tables.filter(f"{db}.people", "id = 1", group=w.group)
    assert w.sql(w.ana_token, f"select * from {db}.people") == [{"id": 1, "email": "***"}]
    out = w.server.cli("tables", "unmask", f"{db}.people", "email", "--group", w.group)
    assert f"unmasked {db}.people.email for group {w.group}" in out.stdout, out.stderr
    out = w.server.cli("tables", "unfilter", f"{db}.people", "--group", w.group)
    assert f"unfiltered {db}.people for group {w.group}" in out.stdout, out.stderr
    assert w.sql(w.ana_token, f"select * from {db}.people order by id") == [
        {"id": 1, "email": "a@b.c"}, {"id": 2, "email": "d@e.f"}]
    with pytest.raises(NotFound, match="has no mask on"):
        admin.tables.unmask(f"{db}.people", "email", group=w.group)
    # No one is exempt: an admin who is a subject sees the mask too.
    admin.tables.mask(f"{db}.people", "email", "'***'", user="admin")
    assert {r["email"] for r in admin.sql(f"select email from {db}.people").page} == {"***"}
    admin.tables.unmask(f"{db}.people", "email", user="admin")
    with pytest.raises(NotFound, match="has no row filter on"):
        admin.tables.unfilter(f"{db}.people", group=w.group)


# --- results are their author's ------------------------------------------------------------------


def test_a_dropped_table_takes_its_masks_along(guarded: World) -> None:
    w, db = guarded, guarded.db
    admin = w.admin()
    admin.tables.load(f"{db}.brief", b"id,secret\n1,s1\n", format="csv")
    admin.tables.mask(f"{db}.brief", "secret", "'***'", group=w.group)
    assert w.sql(w.ana_token, f"select secret from {db}.brief") == [{"secret": "***"}]
    admin.tables.drop(f"{db}.brief")
    admin.tables.load(f"{db}.brief", b"id,secret\n2,s2\n", format="csv")  # another table
    assert admin.tables.masks(f"{db}.brief") == []
    assert w.sql(w.ana_token, f"select secret from {db}.brief") == [{"secret": "s2"}]


def test_results_are_not_served_to_another_user(guarded: World) -> None:
    w, db = guarded, guarded.db
    mine = w.admin().sql(f"select * from {db}.orders")
    path = f"{w.server.url}/api/v1/sql/queries/{mine.id}/results"
    for token in (w.ana_token, w.ben_token):
        response = httpx.get(path, headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 403, response.text
        assert "ann@x.com" not in response.text
    theirs = w.as_(w.ana_token).sql(f"select * from {db}.orders")
    assert theirs.to_arrow().num_rows == 2  # the author reads them
    response = httpx.get(f"{w.server.url}/api/v1/sql/queries/{theirs.id}/results",
                         headers={"authorization": f"Bearer {w.server.token}"})
    assert response.status_code == 403
    assert "its author's" in response.json()["error"]["message"]
    history = w.as_(w.ana_token).sql.history(limit=1000)
    assert mine.id not in {q["id"] for q in history}  # nor is another's SQL listed


# --- every malformed statement or expression is refused, naming what is wrong ------------------


@pytest.mark.parametrize(("statement", "message"), [
    ("GRANT INSERT ON {db}.orders TO GROUP {g}", "not 'INSERT'"),
    ("GRANT SELECT {db}.orders TO GROUP {g}", "where ON should come"),
    ("GRANT SELECT ON orders TO GROUP {g}", "write the table as database.table"),
    ("GRANT SELECT ON {db}.orders TO ROLE {g}", "write USER name or GROUP name"),
    ("GRANT SELECT ON {db}.orders TO GROUP", "ends where the group's name should come"),
    ("GRANT SELECT ON {db}.orders TO GROUP {g} extra", "'extra' after its end"),
    ("REVOKE SELECT ON {db}.orders TO GROUP {g}", "where FROM should come"),
    ("GRANT SELECT ON {db}.nothing TO GROUP {g}", "does not exist"),
    ("GRANT SELECT ON {db}.orders TO GROUP nobody-here", "no group 'nobody-here'"),
    ("SHOW GRANTS {db}.orders", "SHOW GRANTS has"),
    ("ALTER TABLE {db}.orders RENAME TO x", "sets and drops column masks and row filters"),
    ("ALTER TABLE {db}.orders ALTER COLUMN email SET MASK '***'", "needs FOR USER name"),
    ("ALTER TABLE {db}.orders ALTER COLUMN email SET MASK FOR GROUP {g}", "needs the mask"),
    ("ALTER TABLE {db}.orders DROP ROW FILTER x FOR GROUP {g}", "takes nothing between"),
    ("ALTER TABLE {db}.orders ALTER COLUMN nope SET MASK '***' FOR GROUP {g}",
     "has no column 'nope'"),
    ("ALTER TABLE {db}.orders ALTER COLUMN email SET MASK (select 1) FOR GROUP {g}",
     "may not hold a subquery"),
    ("ALTER TABLE {db}.orders ALTER COLUMN email SET MASK "
     "(select email from {db}.customers) FOR GROUP {g}", "may not hold a subquery"),
    ("ALTER TABLE {db}.orders ALTER COLUMN email SET MASK read_csv('/etc/passwd') "
     "FOR GROUP {g}", "table function read_csv()"),
    ("ALTER TABLE {db}.orders ALTER COLUMN email SET MASK max(email) FOR GROUP {g}",
     "aggregate max()"),
    ("ALTER TABLE {db}.orders ALTER COLUMN email SET MASK row_number() OVER () FOR GROUP {g}",
     "window function"),
    ("ALTER TABLE {db}.orders ALTER COLUMN email SET MASK secret || 'x' FOR GROUP {g}",
     "names secret, which is not a column"),
    ("ALTER TABLE {db}.orders ALTER COLUMN email SET MASK getenv('HOME') FOR GROUP {g}",
     "getenv() is not allowed"),
    ("ALTER TABLE {db}.orders ALTER COLUMN email SET MASK email, note FOR GROUP {g}",
     "must be one expression"),
    ("ALTER TABLE {db}.orders ALTER COLUMN email SET MASK 'x' FROM t --  FOR GROUP {g}",
     "needs FOR USER name"),
    ("ALTER TABLE {db}.orders ALTER COLUMN email SET MASK left(email FOR GROUP {g}",
     "is not one SQL expression"),
    ("ALTER TABLE {db}.orders ALTER COLUMN amount SET MASK '***' FOR GROUP {g}",
     "a mask gives its column's type"),
    ("ALTER TABLE {db}.orders ALTER COLUMN email SET MASK no_such_fn(email) FOR GROUP {g}",
     "does not work on"),
    ("ALTER TABLE {db}.orders SET ROW FILTER region FOR GROUP {g}",
     "must be a condition (true or false), not a VARCHAR"),
    ("ALTER TABLE {db}.orders SET ROW FILTER id IN (select id from {db}.customers) "
     "FOR GROUP {g}", "may not hold a subquery"),
    ("ALTER TABLE {db}.orders SET ROW FILTER $1 FOR GROUP {g}", "parameter"),
])
def test_malformed_is_refused(world: World, statement: str, message: str) -> None:
    sql = statement.format(db=world.db, g=world.group)
    before = world.admin().tables.policies(f"{world.db}.orders")
    response = world.post_sql(world.server.token, sql)
    assert response.status_code in (400, 404), response.text
    assert message in response.json()["error"]["message"], response.json()["error"]["message"]
    assert world.admin().tables.policies(f"{world.db}.orders") == before


def test_malformed_through_rest_and_cli(world: World) -> None:
    admin, db = world.admin(), world.db
    with pytest.raises(Invalid, match="has no column 'missing'"):
        admin.tables.mask(f"{db}.orders", "missing", "NULL", group=world.group)
    with pytest.raises(Invalid, match="name one user or one group"):
        admin.tables.filter(f"{db}.orders", "true")
    with pytest.raises(Invalid, match="belong to the table"):
        admin.tables.masks(f"{db}.orders@v0")
    refused = world.server.cli("tables", "filter", f"{db}.orders", "--group", world.group,
                               "--where", "count(*) > 1")
    assert refused.returncode == 1 and "aggregate count_star()" in refused.stderr
    assert refused.stderr.startswith("error: ")
