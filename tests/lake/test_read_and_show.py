"""``cumulo tables read``, ``cumulo queries show`` and the full URI of ``tables show``, as a
user types them, against one real server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cumulo.config import S3Settings
from cumulo.lake.catalog import full_uri
from cumulo.storage.backends.local import LocalBackend
from tests.services import Cumulo


@pytest.fixture(scope="module")
def db(local_server: Cumulo) -> str:
    """A database with ``orders``: version 0 holds 3 rows, version 1 six."""
    name = "rs_" + uuid.uuid4().hex[:6]
    tables = local_server.client().tables
    tables.create_database(name)
    for _ in range(2):
        tables.load(f"{name}.orders", b"id,amount,region\n1,9.5,eu\n2,3.25,us\n3,1.5,eu\n",
                    format="csv")
    return name


def test_tables_read_streams_a_version_as_csv_jsonl_or_parquet(
        local_server: Cumulo, db: str, tmp_path: Path) -> None:
    csv = local_server.cli("tables", "read", f"{db}.orders")
    assert csv.returncode == 0, csv.stderr
    lines = csv.stdout.splitlines()
    assert lines[0] == '"id","amount","region"' and len(lines) == 7
    jsonl = local_server.cli("tables", "read", f"{db}.orders@v0", "--format", "jsonl",
                             "--limit", "2")
    assert [json.loads(line) for line in jsonl.stdout.splitlines()] == [
        {"id": 1, "amount": 9.5, "region": "eu"}, {"id": 2, "amount": 3.25, "region": "us"}]

    out = tmp_path / "orders.parquet"  # the format from the file's name
    saved = local_server.cli("tables", "read", f"{db}.orders", "--version", "0", "-o", str(out))
    assert saved.returncode == 0, saved.stderr
    assert f"saved {db}.orders version 0 to {out} (parquet" in saved.stderr
    assert pq.read_table(out).num_rows == 3

    # Masks apply: the rows a caller reads are the ones their rules let them see.
    assert local_server.cli("tables", "mask", f"{db}.orders", "region", "--user", "admin",
                            "--with", "'***'").returncode == 0
    try:
        masked = local_server.cli("tables", "read", f"{db}.orders").stdout.splitlines()
        assert len(masked) == 7 and all(line.endswith(',"***"') for line in masked[1:])
    finally:
        local_server.cli("tables", "unmask", f"{db}.orders", "region", "--user", "admin")


@pytest.mark.parametrize(("args", "message"), [
    (["@v0", "--version", "1"], "names its version already"),
    (["", "--version", "0", "--as-of", "1h"], "not both"),
    (["", "--format", "xml"], "--format must be one of csv, parquet, jsonl, arrow"),
    ([".nope"], "does not exist"),
])
def test_a_bad_read_names_what_is_wrong_and_writes_no_file(
        local_server: Cumulo, db: str, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out.csv"
    suffix, *options = args
    table = f"{db}{suffix}" if suffix.startswith(".") else f"{db}.orders{suffix}"
    refused = local_server.cli("tables", "read", table, *options, "-o", str(out))
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: ") and message in refused.stderr
    assert refused.stderr.count("\n") == 1  # one line, no traceback
    assert list(tmp_path.iterdir()) == []  # no file, no partial one


def test_tables_show_gives_the_full_uri_that_other_tools_open(
        local_server: Cumulo, db: str) -> None:
    from deltalake import DeltaTable

    info = json.loads(local_server.cli("tables", "show", f"{db}.orders", "--json").stdout)
    path = local_server.home / "storage" / info["location"]
    assert info["uri"] == path.resolve().as_uri() and info["uri"].startswith("file:///")
    assert DeltaTable(info["uri"]).to_pyarrow_table().num_rows == 6
    shown = local_server.cli("tables", "show", f"{db}.orders")
    assert f"uri: {info['uri']}" in shown.stdout


def test_the_uri_of_s3_storage_names_bucket_and_prefix(tmp_path: Path) -> None:
    pytest.importorskip("boto3")
    from cumulo.storage.backends.s3 import S3Backend

    s3 = S3Backend("s3://lakehouse/cumulo", S3Settings(), spool=tmp_path)
    assert full_uri(s3, "lake/sales/orders") == "s3://lakehouse/cumulo/lake/sales/orders"
    local = LocalBackend(tmp_path)
    assert full_uri(local, "lake/sales/orders") == f"file://{tmp_path.resolve()}/lake/sales/orders"


def test_queries_show_gives_the_query_and_its_first_rows(
        local_server: Cumulo, db: str, tmp_path: Path) -> None:
    run = local_server.cli("sql", f"select region, sum(amount) total from {db}.orders "
                                  "group by 1 order by 1", "--json")
    query_id = json.loads(run.stdout)["id"]
    shown = local_server.cli("queries", "show", query_id, "--limit", "1")
    assert shown.returncode == 0, shown.stderr
    for text in (f"query: {query_id}", "state: succeeded", "user: admin", "rows: 2",
                 "scanned:", "at Athena's price", f"from {db}.orders", "eu", "22.0"):
        assert text in shown.stdout, text
    assert "us" not in shown.stdout.split(f"from {db}.orders")[-1]  # one row of two shown
    assert "1 more row(s) not shown" in shown.stderr
    as_json = json.loads(local_server.cli("queries", "show", query_id, "--json").stdout)
    assert as_json["results"] and as_json["page"] == [{"region": "eu", "total": 22.0},
                                                      {"region": "us", "total": 6.5}]
    assert [c["name"] for c in as_json["columns"]] == ["region", "total"]
    out = tmp_path / "all.jsonl"
    saved = local_server.cli("queries", "show", query_id, "-o", str(out))
    assert saved.returncode == 0 and len(out.read_text().splitlines()) == 2

    ctas = local_server.client().sql(f"create table {db}.eu as select * from {db}.orders "
                                     "where region = 'eu'")
    kept_none = local_server.cli("queries", "show", ctas.id)
    assert kept_none.returncode == 0 and "no results: it wrote a table" in kept_none.stderr
    refused = local_server.cli("queries", "show", ctas.id, "-o", str(tmp_path / "x.csv"))
    assert refused.returncode == 1 and "has no results" in refused.stderr
    assert not (tmp_path / "x.csv").exists()
    missing = local_server.cli("queries", "show", "nope")
    assert missing.returncode == 1 and "'cumulo queries ls' lists" in missing.stderr

    help_text = local_server.cli("queries", "--help").stdout
    assert "ls, show, cancel" in help_text and "show" in help_text


def test_queries_show_of_another_users_query_keeps_its_rows_theirs(
        local_server: Cumulo, db: str) -> None:
    token = "cml_ana-" + uuid.uuid4().hex
    ana = local_server.add_user("ana-" + uuid.uuid4().hex[:6], token)
    theirs = ana.sql(f"select * from {db}.orders")
    shown = local_server.cli("queries", "show", theirs.id)  # as the admin
    assert shown.returncode == 0, shown.stderr
    assert f"from {db}.orders" in shown.stdout and "9.5" not in shown.stdout
    assert "its author's" in shown.stderr
    own = local_server.cli("queries", "show", theirs.id, token=token)
    assert "9.5" in own.stdout
