"""The crawler over files in storage: formats, Hive partitions, folder groups, re-runs, and
Delta tables that other tools wrote."""

from __future__ import annotations

import io
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

from cumulo.errors import Invalid, NotFound
from tests.services import Cumulo


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


@pytest.fixture
def raw(local_server: Cumulo) -> str:
    """A bucket laid out like a typical raw zone."""
    files = local_server.client().files
    bucket = "raw-" + uuid.uuid4().hex[:8]
    files.create_bucket(bucket)
    # Hive-partitioned CSV: one table with year and month columns.
    files.upload(b"id,amount\n1,9.5\n2,3.0\n", f"{bucket}/raw/sales/year=2026/month=10/a.csv")
    files.upload(b"id,amount\n3,1.5\n", f"{bucket}/raw/sales/year=2026/month=11/b.csv")
    files.upload(b"", f"{bucket}/raw/sales/_SUCCESS")
    # Sibling folders with one schema: one table partitioned by folder.
    for day, rows in (("2026-11-01", [1, 2]), ("2026-11-02", [3])):
        files.upload(_parquet(pa.table({"event": rows, "kind": ["click"] * len(rows)})),
                     f"{bucket}/raw/events/{day}/part-0.parquet")
    # Unrelated folders: a table each.
    files.upload(b'{"sku": "a", "price": 1.0}\n{"sku": "b", "price": 2.5}\n',
                 f"{bucket}/raw/products/items.jsonl")
    files.upload(b"x\n", f"{bucket}/raw/notes/readme.txt")
    return bucket


def test_crawl_then_query(local_server: Cumulo, raw: str) -> None:
    client = local_server.client()
    db = "crawl_" + uuid.uuid4().hex[:6]
    report = client.tables.crawl(f"{raw}/raw/", database=db)
    assert sorted(report["created"]) == [f"{db}.events", f"{db}.products", f"{db}.sales"]
    assert report["skipped"] == [{"key": "raw/notes/readme.txt", "reason": "unknown format"}]
    assert report["files"] == 5

    sales = client.tables.show(f"{db}.sales")
    assert sales["kind"] == "external" and sales["format"] == "csv"
    assert sales["partition_columns"] == ["year", "month"]
    assert [c["name"] for c in sales["columns"]] == ["id", "amount", "year", "month"]
    assert client.tables.show(f"{db}.events")["partition_columns"] == ["partition_0"]

    by_month = client.sql(f"select month, sum(amount) s from {db}.sales group by 1 order by 1")
    assert by_month.page == [{"month": 10, "s": 12.5}, {"month": 11, "s": 1.5}]
    by_day = client.sql(f"select partition_0 d, count(*) n from {db}.events group by 1 order by 1")
    assert by_day.page == [{"d": "2026-11-01", "n": 2}, {"d": "2026-11-02", "n": 1}]
    assert client.sql(f"select max(price) p from {db}.products").page == [{"p": 2.5}]
    # An external table feeds the ETL path into a managed, versioned table.
    client.sql(f"create table {db}.sales_copy as select * from {db}.sales")
    assert client.tables.show(f"{db}.sales_copy")["rows"] == 3


def test_second_run_follows_the_policy(local_server: Cumulo, raw: str) -> None:
    client = local_server.client()
    db = "crawl_" + uuid.uuid4().hex[:6]
    client.tables.crawl(f"{raw}/raw/", database=db)
    again = client.tables.crawl(f"{raw}/raw/", database=db)
    assert again["created"] == [] and len(again["unchanged"]) == 3

    client.files.upload(b'{"sku": "c", "price": 3.0, "stock": 7}\n',
                        f"{raw}/raw/products/more.jsonl")
    logged = client.tables.crawl(f"{raw}/raw/", database=db, policy="log")
    change = next(c for c in logged["schema_changes"] if c["table"] == f"{db}.products")
    assert change["added"] == ["stock"] and change["applied"] is False
    assert "stock" not in [c["name"] for c in client.tables.show(f"{db}.products")["columns"]]

    updated = client.tables.crawl(f"{raw}/raw/", database=db, policy="update")
    assert f"{db}.products" in updated["updated"]
    assert "stock" in [c["name"] for c in client.tables.show(f"{db}.products")["columns"]]


def test_crawl_errors_and_cli(local_server: Cumulo, raw: str) -> None:
    client = local_server.client()
    with pytest.raises(NotFound, match="no files under"):
        client.tables.crawl(f"{raw}/nothing/", database="crawl_none")
    result = local_server.cli("crawl", f"{raw}/raw/", "--db", "crawl_cli")
    assert result.returncode == 0, result.stderr
    assert "created: crawl_cli.events, crawl_cli.products, crawl_cli.sales" in result.stdout
    assert "skipped raw/notes/readme.txt: unknown format" in result.stdout
    again = json.loads(local_server.cli("crawl", f"{raw}/raw/", "--db", "crawl_cli",
                                        "--json").stdout)
    assert len(again["unchanged"]) == 3


def test_insert_into_an_external_table_is_refused(local_server: Cumulo, raw: str) -> None:
    client = local_server.client()
    db = "crawl_" + uuid.uuid4().hex[:6]
    client.tables.crawl(f"{raw}/raw/", database=db)
    with pytest.raises(Invalid, match="external table"):
        client.sql(f"insert into {db}.products select 'z' as sku, 9.0 as price")
    assert client.sql(f"select count(*) n from {db}.products").page == [{"n": 2}]


def test_flat_tables_do_not_read_sub_folders_and_names_do_not_collide(
        local_server: Cumulo) -> None:
    client = local_server.client()
    bucket = "eu-" + uuid.uuid4().hex[:6]
    client.files.create_bucket(bucket)
    client.files.upload(b"a,b\n1,x\n1,y\n", f"{bucket}/top/x.csv")
    client.files.upload(b"a,b\n2,x\n2,y\n", f"{bucket}/top/sub/y.csv")
    client.files.upload(b'{"a": 3}\n', f"{bucket}/top/z.jsonl")
    db = "crawl_" + uuid.uuid4().hex[:6]
    report = client.tables.crawl(bucket, database=db)
    assert sorted(report["created"]) == [f"{db}.top", f"{db}.top_jsonl", f"{db}.top_sub"]
    assert client.sql(f"select sum(a) s from {db}.top").page == [{"s": 2}]
    assert client.sql(f"select sum(a) s from {db}.top_sub").page == [{"s": 4}]


# --- Delta tables written by another tool (issue 24) -------------------------------------------


def _upload_folder(files: Any, folder: Path, dest: str, *, skip: str = "") -> None:
    """Every file under ``folder`` to ``dest``, as a tool that syncs a folder would put them
    (``skip``: files whose name ends so stay behind)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not (skip and path.name.endswith(skip)):
            files.upload(path, f"{dest}/{path.relative_to(folder).as_posix()}")


def _orders(folder: Path) -> Path:
    """A Delta table with two versions, written by deltalake as another tool would."""
    write_deltalake(str(folder), pa.table({"id": [1, 2], "amount": [9.5, 3.0]}))
    write_deltalake(str(folder), pa.table({"id": [3], "amount": [1.5]}), mode="append")
    return folder


def test_a_delta_table_folder_is_one_external_table(local_server: Cumulo,
                                                    tmp_path: Path) -> None:
    client = local_server.client()
    bucket = "dl-" + uuid.uuid4().hex[:8]
    client.files.create_bucket(bucket)
    _upload_folder(client.files, _orders(tmp_path / "orders"), f"{bucket}/lake/orders")
    write_deltalake(str(tmp_path / "visits"),
                    pa.table({"n": [1, 2, 3], "country": ["fr", "fr", "jp"]}),
                    partition_by=["country"])
    _upload_folder(client.files, tmp_path / "visits", f"{bucket}/lake/visits")
    client.files.upload(b"a,b\n1,x\n", f"{bucket}/lake/notes/n.csv")
    db = "crawl_" + uuid.uuid4().hex[:6]

    # Before the fix: "lake/orders/_delta_log/00000000000000000000.json, line 2: not valid JSON".
    report = client.tables.crawl(f"{bucket}/lake/", database=db)
    assert sorted(report["created"]) == [f"{db}.notes", f"{db}.orders", f"{db}.visits"]
    assert report["skipped"] == []
    assert report["files"] == 2 + 2 + 1  # each table's data files (its latest version's)

    orders = client.tables.show(f"{db}.orders")
    assert (orders["kind"], orders["format"]) == ("external", "delta")
    assert (orders["version"], orders["rows"]) == (1, 3)
    assert [c["name"] for c in orders["columns"]] == ["id", "amount"]
    assert client.sql(f"select id, amount from {db}.orders order by id").page == [
        {"id": 1, "amount": 9.5}, {"id": 2, "amount": 3.0}, {"id": 3, "amount": 1.5}]
    # Time travel, as on managed tables: the log's versions.
    assert client.sql(f"select count(*) n from {db}.orders version as of 0").page == [{"n": 2}]
    assert client.tables.read(f"{db}.orders@v0").num_rows == 2
    assert [h["version"] for h in client.tables.history(f"{db}.orders")] == [1, 0]
    # Its files are the other tool's: Cumulo neither restores nor vacuums them.
    from cumulo.errors import Invalid

    for refused in (lambda: client.tables.restore(f"{db}.orders", version=0),
                    lambda: client.tables.vacuum(f"{db}.orders", retain="0s", force=True)):
        with pytest.raises(Invalid, match="is external"):
            refused()
    assert [h["version"] for h in client.tables.history(f"{db}.orders")] == [1, 0]
    visits = client.tables.show(f"{db}.visits")
    assert visits["partition_columns"] == ["country"]
    by_country = client.sql(f"select country, sum(n) s from {db}.visits group by 1 order by 1")
    assert by_country.page == [{"country": "fr", "s": 3}, {"country": "jp", "s": 3}]
    client.sql(f"create table {db}.orders_copy as select * from {db}.orders")
    assert client.tables.show(f"{db}.orders_copy")["rows"] == 3

    # The other tool writes on: a later crawl sees the new version (and logs the new column).
    write_deltalake(str(tmp_path / "orders"), pa.table({"id": [4], "amount": [2.0],
                                                        "note": ["late"]}),
                    mode="append", schema_mode="merge")
    _upload_folder(client.files, tmp_path / "orders", f"{bucket}/lake/orders")
    again = client.tables.crawl(f"{bucket}/lake/", database=db)
    assert again["created"] == [] and again["skipped"] == []
    change = next(c for c in again["schema_changes"] if c["table"] == f"{db}.orders")
    assert change["added"] == ["note"] and change["applied"] is False
    assert client.sql(f"select count(*) n from {db}.orders").page == [{"n": 4}]
    assert client.sql(f"select count(*) n from {db}.orders version as of 1").page == [{"n": 3}]


def test_a_delta_table_at_the_crawled_prefix(local_server: Cumulo, tmp_path: Path) -> None:
    client = local_server.client()
    bucket = "dl-" + uuid.uuid4().hex[:8]
    client.files.create_bucket(bucket)
    _upload_folder(client.files, _orders(tmp_path / "orders"), f"{bucket}/orders")
    db = "crawl_" + uuid.uuid4().hex[:6]
    report = client.tables.crawl(f"{bucket}/orders/", database=db)
    assert report["created"] == [f"{db}.orders"]
    assert client.sql(f"select sum(amount) s from {db}.orders").page == [{"s": 14.0}]
    # Inside the table's folder are its log and its files, never tables of their own.
    for inside in ("orders/_delta_log/", "orders/sub/"):
        with pytest.raises(Invalid, match=f"inside the Delta table {bucket}/orders/; crawl"):
            client.tables.crawl(f"{bucket}/{inside}", database=db + "_in")
    assert [t["name"] for t in client.tables.list(db)] == [f"{db}.orders"]


def _protocol(log: Path, protocol: dict[str, Any]) -> None:
    """Rewrite the protocol action of a table's first commit, as a newer writer would."""
    first = log / "00000000000000000000.json"
    actions = [json.loads(line) for line in first.read_text().splitlines()]
    first.write_text("".join(json.dumps({"protocol": protocol} if "protocol" in a else a) + "\n"
                             for a in actions))


def test_a_delta_folder_cumulo_cannot_read_is_reported_and_the_rest_crawled(
        local_server: Cumulo, tmp_path: Path) -> None:
    client = local_server.client()
    bucket = "dl-" + uuid.uuid4().hex[:8]
    client.files.create_bucket(bucket)
    _upload_folder(client.files, _orders(tmp_path / "orders"), f"{bucket}/lake/orders")
    broken = shutil.copytree(tmp_path / "orders", tmp_path / "broken")
    (broken / "_delta_log" / "00000000000000000001.json").write_text("{not json\n")
    _upload_folder(client.files, broken, f"{bucket}/lake/broken")
    client.files.upload(b"", f"{bucket}/lake/empty/_delta_log/00000000000000000000.json")
    client.files.upload(b"", f"{bucket}/lake/empty/part-0.parquet")
    # The log without its data files: a copy cut short.
    partial = _orders(tmp_path / "partial")
    _upload_folder(client.files, partial, f"{bucket}/lake/partial", skip=".parquet")
    vectors = _orders(tmp_path / "vectors")
    _protocol(vectors / "_delta_log", {"minReaderVersion": 3, "minWriterVersion": 7,
                                       "readerFeatures": ["deletionVectors"],
                                       "writerFeatures": ["deletionVectors"]})
    _upload_folder(client.files, vectors, f"{bucket}/lake/vectors")
    db = "crawl_" + uuid.uuid4().hex[:6]

    report = client.tables.crawl(f"{bucket}/lake/", database=db)
    assert report["created"] == [f"{db}.orders"]
    reasons = {s["key"]: s["reason"] for s in report["skipped"]}
    assert sorted(reasons) == ["lake/broken/", "lake/empty/", "lake/partial/", "lake/vectors/"]
    assert reasons["lake/broken/"].startswith(
        f"{bucket}/lake/broken/ has a _delta_log/ but is not a readable Delta table: ")
    assert "Json error" in reasons["lake/broken/"] and "<unknown>" not in reasons["lake/broken/"]
    assert "not a readable Delta table" in reasons["lake/empty/"]
    assert f"{bucket}/lake/partial/ is a Delta table whose version 1 reads 2 file(s) that are " \
           "not in storage, such as part-" in reasons["lake/partial/"]
    assert "uses deletion vectors, which Cumulo cannot read yet" in reasons["lake/vectors/"]
    assert all(r.endswith("registered for it") for r in reasons.values())
    # Nothing half registered: no table of their logs or their Parquet files.
    assert [t["name"] for t in client.tables.list(db)] == [f"{db}.orders"]

    result = local_server.cli("crawl", f"{bucket}/lake/", "--db", db)
    assert result.returncode == 0, result.stderr
    assert f"skipped lake/partial/: {bucket}/lake/partial/ is a Delta table" in result.stdout

    # Once the rest of the folder is there, the next crawl registers it.
    _upload_folder(client.files, partial, f"{bucket}/lake/partial")
    later = client.tables.crawl(f"{bucket}/lake/", database=db)
    assert later["created"] == [f"{db}.partial"]
    assert client.sql(f"select count(*) n from {db}.partial").page == [{"n": 3}]
