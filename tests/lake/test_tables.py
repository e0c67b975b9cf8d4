"""Databases, managed tables, loads, versions: through the SDK against a real server."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from cumulo.errors import Conflict, Invalid, NotFound
from tests.services import Cumulo, start_cumulo

ORDERS = "id,amount,region\n1,9.5,eu\n2,3.25,us\n3,1.0,eu\n"


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    """The embedded defaults, but for internal URLs allowed: the URL loads here come from a
    server on loopback (tests/lake/test_url_guard.py shows them refused by default)."""
    cumulo = start_cumulo(tmp_path_factory.mktemp("cumulo") / ".cumulo",
                          {"CUMULO_ALLOW_INTERNAL_URLS": "1"})
    yield cumulo
    cumulo.stop()


@pytest.fixture
def db(local_server: Cumulo) -> str:
    name = "db_" + uuid.uuid4().hex[:8]
    local_server.client().tables.create_database(name, description="test data")
    return name


def _csv(tmp_path: Path, text: str, name: str = "orders.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_show_read(local_server: Cumulo, db: str, tmp_path: Path) -> None:
    tables = local_server.client().tables
    out = tables.load(f"{db}.orders", _csv(tmp_path, ORDERS), partition_by=["region"])
    assert (out["version"], out["rows_added"]) == (0, 3)
    info = tables.show(f"{db}.orders")
    assert info["rows"] == 3 and info["version"] == 0 and info["kind"] == "managed"
    assert [c["name"] for c in info["columns"]] == ["id", "amount", "region"]
    assert info["partition_columns"] == ["region"]
    assert info["location"] == f"lake/{db}/orders" and info["bytes"] > 0
    data = tables.read(f"{db}.orders")
    assert sorted(data.column("id").to_pylist()) == [1, 2, 3]
    assert tables.read(f"{db}.orders", to="pandas").shape == (3, 3)
    assert tables.read(f"{db}.orders", to="polars").height == 3
    assert [t["name"] for t in tables.list(db)] == [f"{db}.orders"]
    assert next(d for d in tables.databases() if d["name"] == db)["tables"] == 1


def test_modes_and_versions(local_server: Cumulo, db: str, tmp_path: Path) -> None:
    tables = local_server.client().tables
    name = f"{db}.orders"
    tables.load(name, _csv(tmp_path, ORDERS))
    tables.load(name, _csv(tmp_path, "id,amount,region\n4,7,us\n", "more.csv"))
    merged = tables.load(name, _csv(tmp_path, "id,amount,region\n1,100,eu\n5,5,us\n", "up.csv"),
                         mode="merge", keys=["id"])
    assert (merged["version"], merged["rows_added"], merged["rows_updated"]) == (2, 1, 1)
    now = tables.read(name).sort_by("id")
    assert now.column("id").to_pylist() == [1, 2, 3, 4, 5]
    assert now.column("amount").to_pylist()[0] == 100.0
    assert tables.read(f"{name}@v0").num_rows == 3
    assert tables.read(name, version=1).num_rows == 4
    history = tables.history(name)
    assert [h["version"] for h in history] == [2, 1, 0]
    assert [h["operation"] for h in history] == ["MERGE", "WRITE", "WRITE"]
    assert history[2]["rows_added"] == 3 and history[0]["user"] == "admin"
    when = history[1]["timestamp"]
    assert tables.read(f"{name}@{when}").num_rows == 4

    restored = tables.restore(name, version=0)
    assert restored["version"] == 3
    assert tables.read(name).num_rows == 3
    assert tables.show(f"{name}@v2")["rows"] == 5  # the old versions are all still there

    replaced = tables.load(name, _csv(tmp_path, "id,amount,region\n9,9,eu\n", "o.csv"),
                           mode="overwrite")
    assert replaced["version"] == 4 and tables.read(name).num_rows == 1


def test_write_dataframes(local_server: Cumulo, db: str) -> None:
    import pandas as pd
    import polars as pl

    tables = local_server.client().tables
    tables.write(f"{db}.frames", pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    tables.write(f"{db}.frames", pl.DataFrame({"a": [3], "b": ["z"]}))
    tables.write(f"{db}.frames", pa.table({"a": [4], "b": ["w"]}))
    assert sorted(tables.read(f"{db}.frames").column("a").to_pylist()) == [1, 2, 3, 4]
    with pytest.raises(Invalid, match="cannot write a list"):
        tables.write(f"{db}.frames", [1, 2])


def test_schema_enforcement_commits_nothing(local_server: Cumulo, db: str,
                                            tmp_path: Path) -> None:
    tables = local_server.client().tables
    name = f"{db}.orders"
    tables.load(name, _csv(tmp_path, ORDERS))
    with pytest.raises(Invalid) as caught:
        tables.load(name, _csv(tmp_path, "id,amount,region,extra\n4,x,us,1\n", "bad.csv"))
    diff = caught.value.details["diff"]
    assert {d["column"]: d["problem"] for d in diff} == {
        "amount": "type does not match", "extra": "not in the table (pass --evolve to add it)"}
    assert "Nothing was written" in caught.value.message
    assert tables.show(name)["version"] == 0
    evolved = tables.load(name, _csv(tmp_path, "id,amount,region,extra\n4,2,us,1\n", "ok.csv"),
                          evolve=True)
    assert evolved["version"] == 1
    assert [c["name"] for c in tables.show(name)["columns"]] == ["id", "amount", "region", "extra"]
    # Narrower types widen: integers load into a double column.
    tables.load(name, _csv(tmp_path, "id,amount,region,extra\n5,3,eu,2\n", "int.csv"))
    assert tables.show(name)["version"] == 2


def test_malformed_csv_names_file_and_line(local_server: Cumulo, db: str,
                                           tmp_path: Path) -> None:
    tables = local_server.client().tables
    bad = _csv(tmp_path, "id,amount,region\n1,2,eu\n2,3\n", "broken.csv")
    with pytest.raises(Invalid, match=r"broken\.csv, line 3: expected 3 columns, got 2"):
        tables.load(f"{db}.fresh", bad)
    with pytest.raises(NotFound):  # a table whose first load failed is not half-registered
        tables.show(f"{db}.fresh")
    tables.load(f"{db}.kept", _csv(tmp_path, ORDERS))
    with pytest.raises(Invalid, match="line 3"):
        tables.load(f"{db}.kept", bad)
    assert tables.show(f"{db}.kept")["rows"] == 3


def test_bad_values_late_in_a_big_csv(local_server: Cumulo, db: str, tmp_path: Path) -> None:
    # Past the first 16 MiB block, whose rows decide the column types.
    rows = "".join(f"{i},{i * 2}\n" for i in range(1, 2_000_000))
    path = _csv(tmp_path, "id,value\n" + rows + "2000000,oops\n", "late.csv")
    with pytest.raises(Invalid, match=r"late\.csv: line 2000001, column 2: 'oops'"):
        local_server.client().tables.load(f"{db}.late", path)


def test_formats(local_server: Cumulo, db: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    tables = local_server.client().tables
    pq.write_table(pa.table({"id": [1, 2], "v": ["a", "b"]}), tmp_path / "d.parquet")
    (tmp_path / "d.jsonl").write_text('{"id": 3, "v": "c"}\n{"id": 4, "v": "d"}\n')
    (tmp_path / "d.json").write_text('[{"id": 5, "v": "e"}]')
    for f in ("d.parquet", "d.jsonl", "d.json"):
        tables.load(f"{db}.mixed", tmp_path / f)
    assert sorted(tables.read(f"{db}.mixed").column("id").to_pylist()) == [1, 2, 3, 4, 5]
    (tmp_path / "x.txt").write_text("id\n1\n")
    with pytest.raises(Invalid, match="cannot tell the format"):
        tables.load(f"{db}.mixed", tmp_path / "x.txt")
    (tmp_path / "bad.json").write_text('[{"id": 1},\n {"id": }]')
    with pytest.raises(Invalid, match=r"bad\.json, line 2: not valid JSON"):
        tables.load(f"{db}.mixed", tmp_path / "bad.json")


def test_catalog_errors(local_server: Cumulo, db: str, tmp_path: Path) -> None:
    tables = local_server.client().tables
    with pytest.raises(Conflict, match="already exists"):
        tables.create_database(db)
    for bad in ("Sales", "1db", "with-dash", "x" * 64):
        with pytest.raises(Invalid, match="database name"):
            tables.create_database(bad)
    with pytest.raises(NotFound, match="did you mean"):
        tables.show(f"{db[:-1]}x.orders")
    tables.load(f"{db}.orders", _csv(tmp_path, ORDERS))
    with pytest.raises(NotFound, match=f"did you mean {db}.orders"):
        tables.show(f"{db}.order")
    with pytest.raises(NotFound, match="no version 7"):
        tables.read(f"{db}.orders@v7")
    with pytest.raises(NotFound, match="did not exist yet"):
        tables.read(f"{db}.orders@2001-01-01T00:00:00Z")
    with pytest.raises(Invalid, match="is not a time: use a date like"):
        tables.read(f"{db}.orders@yesterday")
    with pytest.raises(Invalid, match="needs its database"):
        tables.show("orders")
    with pytest.raises(Invalid, match="merge needs key columns"):
        tables.load(f"{db}.orders", _csv(tmp_path, ORDERS), mode="merge")
    with pytest.raises(Conflict, match="holds 1 table"):
        tables.drop_database(db)
    assert tables.drop_database(db, cascade=True)["tables_dropped"] == 1
    assert not (local_server.home / "storage" / "lake" / db / "orders").exists()


def test_concurrent_writers_both_land_in_order(local_server: Cumulo, db: str,
                                               tmp_path: Path) -> None:
    tables = local_server.client().tables
    tables.load(f"{db}.busy", _csv(tmp_path, ORDERS))
    errors: list[BaseException] = []

    def append(i: int) -> None:
        try:
            tables.load(f"{db}.busy", f"id,amount,region\n{10 + i},1,eu\n".encode(),
                        format="csv")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [h["version"] for h in tables.history(f"{db}.busy")] == [4, 3, 2, 1, 0]
    assert tables.show(f"{db}.busy")["rows"] == 7


def test_tables_stay_open_to_other_engines(local_server: Cumulo, db: str,
                                           tmp_path: Path) -> None:
    import duckdb
    import polars as pl
    from deltalake import DeltaTable

    tables = local_server.client().tables
    tables.load(f"{db}.open", _csv(tmp_path, ORDERS))
    location = local_server.home / "storage" / tables.show(f"{db}.open")["location"]
    assert DeltaTable(str(location)).to_pyarrow_table().num_rows == 3
    assert pl.read_delta(str(location)).height == 3
    files = DeltaTable(str(location)).file_uris()
    assert duckdb.sql(f"select count(*) from read_parquet({files!r})").fetchall() == [(3,)]


def test_load_from_storage_and_urls(local_server: Cumulo, db: str, tmp_path: Path) -> None:
    import functools
    import http.server

    client = local_server.client()
    bucket = "src-" + uuid.uuid4().hex[:8]
    client.files.create_bucket(bucket)
    client.files.upload(ORDERS.encode(), f"{bucket}/raw/2026/01/orders.csv")
    client.files.upload(b"id,amount,region\n4,4,us\n", f"{bucket}/raw/2026/02/orders.csv")
    client.files.upload(b"ignored", f"{bucket}/raw/_SUCCESS")

    one = client.tables.load_from(f"{db}.one", f"{bucket}/raw/2026/01/orders.csv")
    assert one["rows_added"] == 3
    every = client.tables.load_from(f"{db}.every", f"{bucket}/raw/")
    assert every["version"] == 0 and client.tables.show(f"{db}.every")["rows"] == 4
    with pytest.raises(NotFound, match="no objects under"):
        client.tables.load_from(f"{db}.none", f"{bucket}/nothing/")
    with pytest.raises(NotFound, match="no object"):
        client.tables.load_from(f"{db}.none", f"{bucket}/raw/missing.csv")

    (tmp_path / "web.csv").write_text(ORDERS)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{web.server_address[1]}"
        assert client.tables.load_from(f"{db}.web", f"{url}/web.csv")["rows_added"] == 3
        with pytest.raises(Invalid, match="answered 404"):
            client.tables.load_from(f"{db}.web", f"{url}/gone.csv")
    finally:
        web.shutdown()
        web.server_close()
    assert client.tables.show(f"{db}.web")["version"] == 0


def test_diff_between_versions(local_server: Cumulo, db: str, tmp_path: Path) -> None:
    tables = local_server.client().tables
    name = f"{db}.orders"
    tables.load(name, _csv(tmp_path, ORDERS))
    tables.load(name, _csv(tmp_path, "id,amount,region\n1,50,eu\n4,4,us\n", "u.csv"),
                mode="merge", keys=["id"])
    tables.load(name, _csv(tmp_path, "id,amount,region,note\n5,5,eu,new\n", "n.csv"), evolve=True)
    by_key = tables.diff(name, start=0, end=2, keys=["id"])
    assert by_key["schema"] == {"added": ["note"], "removed": [], "changed": []}
    assert (by_key["rows_added"], by_key["rows_removed"], by_key["rows_changed"]) == (2, 0, 1)
    assert by_key["sample_changed"] == [{"id": 1, "amount": 50.0, "region": "eu", "note": None}]
    whole = tables.diff(name, start=0, end=1)
    assert (whole["rows_added"], whole["rows_removed"], whole["rows_changed"]) == (2, 1, None)
    with pytest.raises(Invalid, match="not in both versions"):
        tables.diff(name, start=0, keys=["note"])
    with pytest.raises(NotFound, match="no version 9"):
        tables.diff(name, start=9)


def test_vacuum_guards_retained_versions(local_server: Cumulo, db: str, tmp_path: Path) -> None:
    tables = local_server.client().tables
    name = f"{db}.vac"
    tables.load(name, _csv(tmp_path, ORDERS))
    tables.load(name, _csv(tmp_path, ORDERS), mode="overwrite")
    kept = tables.vacuum(name)  # the default keeps a week: nothing to remove yet
    assert kept["files"] == 0 and kept["oldest_readable_version"] == 0
    with pytest.raises(Invalid, match="under the table's minimum retention"):
        tables.vacuum(name, retain="1h")
    assert tables.read(f"{name}@v0").num_rows == 3
    dry = tables.vacuum(name, retain="0h", force=True, dry_run=True)
    assert dry["files"] == 1 and dry["dry_run"] is True
    assert tables.read(f"{name}@v0").num_rows == 3
    gone = tables.vacuum(name, retain="0h", force=True)
    assert gone["files"] == 1
    assert tables.read(name).num_rows == 3  # the current version is untouched
    with pytest.raises(NotFound):
        tables.read(f"{name}@v0")


def test_url_hosts_are_checked() -> None:
    from cumulo.errors import Forbidden
    from cumulo.netguard import check_url

    for url in ("http://127.0.0.1/x.csv", "http://169.254.169.254/latest/meta-data/",
                "http://10.0.0.5/a.csv", "http://[::1]/a.csv", "http://localhost/a.csv"):
        with pytest.raises(Forbidden, match="unless its setting allow_internal_urls"):
            check_url(url, allow_internal=False)
        check_url(url, allow_internal=True)
    with pytest.raises(Invalid, match="not an http"):
        check_url("file:///etc/passwd", allow_internal=True)


def test_restore_to_the_current_version_and_bad_limits(local_server: Cumulo, db: str,
                                                       tmp_path: Path) -> None:
    tables = local_server.client().tables
    tables.load(f"{db}.r", _csv(tmp_path, ORDERS))
    with pytest.raises(Conflict, match="at version 0 already"):
        tables.restore(f"{db}.r", version=0)
    with pytest.raises(Invalid):
        tables.history(f"{db}.r", limit=-1)
    with pytest.raises(Invalid, match="over a hundred years"):
        tables.vacuum(f"{db}.r", retain="99999999999d")
    # Found by fuzzing the API: a history limit past 64 bits was a 500, a read's limit past
    # 2**63 a stream cut off after its 200, and a negative one an empty table.
    with pytest.raises(Invalid, match=r"query\.limit"):
        tables.history(f"{db}.r", limit=2**70)
    for limit in (2**63, -1):
        with pytest.raises(Invalid, match=r"query\.limit"):
            tables.read(f"{db}.r", limit=limit)
    assert tables.read(f"{db}.r", limit=2**63 - 1).num_rows == 3
    assert tables.read(f"{db}.r", limit=0).num_rows == 0


def test_read_as_json_for_previews(local_server: Cumulo, db: str, tmp_path: Path) -> None:
    """format=json: rows as a JSON array, nested columns and non-finite floats included (CSV
    cannot hold nested columns)."""
    import httpx

    tables = local_server.client().tables
    tables.write(f"{db}.j", pa.table({"id": [1, 2, 3], "x": [1.5, float("nan"), None],
                                      "tags": [["a"], [], None],
                                      "point": [{"k": 1}, {"k": 2}, None]}))
    tables.write(f"{db}.j", pa.table({"id": [4], "x": [2.0], "tags": [["b"]],
                                      "point": [{"k": 4}]}), mode="append")
    url = f"{local_server.url}/api/v1/tables/{db}/j/data"
    headers = {"authorization": f"Bearer {local_server.token}"}
    answer = httpx.get(url, params={"format": "json"}, headers=headers)
    assert answer.headers["content-type"].startswith("application/json")
    rows = sorted(answer.json(), key=lambda r: r["id"])
    assert rows[0] == {"id": 1, "x": 1.5, "tags": ["a"], "point": {"k": 1}}
    assert rows[1]["x"] == "nan" and rows[2]["tags"] is None and len(rows) == 4
    at_v0 = httpx.get(url, params={"format": "json", "version": 0, "limit": 2}, headers=headers)
    assert len(at_v0.json()) == 2 and at_v0.headers["x-cumulo-version"] == "0"
    empty = httpx.get(url, params={"format": "json", "limit": 0}, headers=headers)
    assert empty.json() == []


def test_first_requests_at_once_on_a_fresh_server(tmp_path: Path) -> None:
    """The lake's modules load on first use; requests that arrive together on a fresh server
    (a page asking for databases and tables at once) all wait for that, none sees half a module."""
    import httpx

    from tests.services import start_cumulo

    server = start_cumulo(tmp_path / ".cumulo")
    try:
        paths = ["/tables", "/tables/databases", "/sql/queries"] * 4
        with httpx.Client(base_url=server.url + "/api/v1", timeout=60,
                          headers={"authorization": f"Bearer {server.token}"}) as client, \
                ThreadPoolExecutor(len(paths)) as pool:
            answers = list(pool.map(client.get, paths))
        assert [a.status_code for a in answers] == [200] * len(paths), \
            [a.text for a in answers if a.status_code != 200][:1]
    finally:
        server.stop()


def test_data_delta_cannot_hold_is_refused_and_nothing_is_registered(
        local_server: Cumulo, db: str) -> None:
    """Found by the OpenAPI fuzz (tests/server/test_openapi_fuzz.py) as 500s."""
    import httpx

    url = f"{local_server.url}/api/v1/tables/{db}"
    auth = {"Authorization": f"Bearer {local_server.token}"}
    huge = httpx.put(f"{url}/huge/data", params={"format": "json"}, headers=auth,
                     content=b'[{"a": 99999999999999999999999}]')
    assert huge.status_code == 400 and "too large for a 64-bit" in huge.text
    twins = httpx.put(f"{url}/twins/data", params={"format": "json"}, headers=auth,
                      content=b'[{"A": 1, "a": 2}]')
    assert twins.status_code == 400 and "Nothing was written" in twins.text
    sql = local_server.client().sql
    with pytest.raises(Invalid, match="Interval"):
        sql(f"create table {db}.spans as select interval 1 day as a")
    tables = local_server.client().tables
    for name in ("huge", "twins", "spans"):
        with pytest.raises(NotFound):
            tables.show(f"{db}.{name}")
