"""The crawler over files in storage: formats, Hive partitions, folder groups, re-runs."""

from __future__ import annotations

import io
import json
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

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
