"""The lake on every metadata x storage combination: PostgreSQL for the catalog, and S3
(moto's server standing in for it) for the Delta tables."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from tests.services import Cumulo


def test_load_query_and_time_travel(server: Cumulo) -> None:
    client = server.client()
    db = "bk_" + uuid.uuid4().hex[:6]
    client.tables.create_database(db)
    client.tables.load(f"{db}.t", b"id,v\n1,a\n2,b\n", format="csv", partition_by=["v"])
    client.tables.load(f"{db}.t", b"id,v\n3,a\n", format="csv")
    assert client.tables.show(f"{db}.t")["rows"] == 3
    assert client.tables.read(f"{db}.t@v0").num_rows == 2
    result = client.sql(f"select v, count(*) n from {db}.t group by v order by v")
    assert result.page == [{"v": "a", "n": 2}, {"v": "b", "n": 1}]
    old = client.sql(f"select count(*) n from {db}.t version as of 0")
    assert old.page == [{"n": 2}]
    made = client.sql(f"create table {db}.copy as select * from {db}.t where v = 'a'")
    assert made.written and made.written["rows_added"] == 2
    client.tables.restore(f"{db}.t", version=0)
    assert client.tables.read(f"{db}.t").num_rows == 2
    client.tables.drop_database(db, cascade=True)


def test_crawl_and_query_raw_files(server: Cumulo) -> None:
    client = server.client()
    bucket = "crawl-" + uuid.uuid4().hex[:8]
    db = "cr_" + uuid.uuid4().hex[:6]
    client.files.create_bucket(bucket)
    client.files.upload(b"id,amount\n1,2.5\n", f"{bucket}/sales/year=2025/a.csv")
    client.files.upload(b"id,amount\n2,4.0\n", f"{bucket}/sales/year=2026/b.csv")
    client.files.upload(b'{"k": 1}\n', f"{bucket}/events/d1/e.jsonl")
    client.files.upload(b'{"k": 2}\n', f"{bucket}/events/d2/e.jsonl")
    report = client.tables.crawl(bucket, database=db)
    assert sorted(report["created"]) == [f"{db}.events", f"{db}.sales"]
    page = client.sql(f"select year, sum(amount) s from {db}.sales group by 1 order by 1").page
    assert page == [{"year": 2025, "s": 2.5}, {"year": 2026, "s": 4.0}]
    events = client.sql(f"select partition_0, k from {db}.events order by k").page
    assert events == [{"partition_0": "d1", "k": 1}, {"partition_0": "d2", "k": 2}]


def test_crawl_a_delta_table_another_tool_wrote(server: Cumulo, tmp_path: Path) -> None:
    client = server.client()
    bucket = "crawl-" + uuid.uuid4().hex[:8]
    db = "cr_" + uuid.uuid4().hex[:6]
    client.files.create_bucket(bucket)
    folder = tmp_path / "orders"
    write_deltalake(str(folder), pa.table({"id": [1, 2], "v": ["a", "b"]}), partition_by=["v"])
    write_deltalake(str(folder), pa.table({"id": [3], "v": ["a"]}), mode="append")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.files.upload(path, f"{bucket}/lake/orders/{path.relative_to(folder).as_posix()}")
    report = client.tables.crawl(f"{bucket}/lake/", database=db)
    assert report["created"] == [f"{db}.orders"] and report["skipped"] == []
    assert client.tables.show(f"{db}.orders")["rows"] == 3
    page = client.sql(f"select v, count(*) n from {db}.orders group by v order by v").page
    assert page == [{"v": "a", "n": 2}, {"v": "b", "n": 1}]
    old = client.sql(f"select count(*) n from {db}.orders version as of 0")
    assert old.page == [{"n": 2}]
