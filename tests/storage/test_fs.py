"""``cumulo://BUCKET/KEY`` through fsspec, as pandas and pyarrow use it: the login from the
environment, storage options or a saved profile; listing, random-access reads through Range
requests, whole-object writes; Cumulo's errors as the OSErrors file code expects. Against one
real server."""

from __future__ import annotations

import errno
import gc
import hashlib
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cumulo.client.profiles import editing
from cumulo.errors import CumuloError
from cumulo.storage.fs import CumuloFileSystem
from tests.services import Cumulo

CSV = b"city,sales\nLyon,3\nNantes,5\n"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def admin(local_server: Cumulo) -> Iterator[Any]:
    yield local_server.client()
    # fsspec keeps its filesystems; each closes its connections when it goes.
    CumuloFileSystem.clear_instance_cache()
    gc.collect()


@pytest.fixture(autouse=True)
def login(local_server: Cumulo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin's login in CUMULO_URL and CUMULO_TOKEN, no saved one; each test resolves it
    afresh (fsspec would keep the first test's filesystem)."""
    for name in ("CUMULO_PROFILE", "CUMULO_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CUMULO_URL", local_server.url)
    monkeypatch.setenv("CUMULO_TOKEN", local_server.token)
    monkeypatch.setenv("CUMULO_CREDENTIALS", str(tmp_path / "no-credentials.toml"))
    CumuloFileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def bucket(admin: Any) -> str:
    name = _name("frames")
    admin.files.create_bucket(name)
    return name


@pytest.fixture
def fs() -> CumuloFileSystem:
    return fsspec.filesystem("cumulo")


def test_the_package_registers_the_protocol() -> None:
    assert fsspec.get_filesystem_class("cumulo") is CumuloFileSystem


def test_pandas_reads_csv_with_the_login_of_the_environment(admin: Any, bucket: str) -> None:
    admin.files.upload(CSV, f"{bucket}/in/sales.csv")
    frame = pd.read_csv(f"cumulo://{bucket}/in/sales.csv")
    assert frame.to_dict("list") == {"city": ["Lyon", "Nantes"], "sales": [3, 5]}


def test_storage_options_and_saved_profiles_name_the_login(
        local_server: Cumulo, admin: Any, bucket: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    admin.files.upload(CSV, f"{bucket}/in/login.csv")
    path = f"cumulo://{bucket}/in/login.csv"
    for name in ("CUMULO_URL", "CUMULO_TOKEN"):
        monkeypatch.delenv(name)
    given = {"endpoint_url": local_server.url, "token": local_server.token}
    assert len(pd.read_csv(path, storage_options=given)) == 2
    # 'url' would collide with fsspec's url_to_fs(url, ...), which pandas' parquet calls.
    pd.DataFrame({"x": [1]}).to_parquet(f"cumulo://{bucket}/in/login.parquet",
                                        storage_options=given)
    assert pd.read_parquet(f"cumulo://{bucket}/in/login.parquet",
                           storage_options=given)["x"].tolist() == [1]
    assert fsspec.filesystem("cumulo", url=local_server.url, token=local_server.token,
                             skip_instance_cache=True).exists(path)

    creds = tmp_path / "credentials.toml"
    with editing(creds) as logins:
        logins.login(local_server.url, "cml_revoked-long-ago", user="old", name="stale")
        logins.login(local_server.url, local_server.token, user="admin", name="lab")  # current
    monkeypatch.setenv("CUMULO_CREDENTIALS", str(creds))
    assert len(pd.read_csv(path)) == 2  # the saved, current login
    assert len(pd.read_csv(path, storage_options={"profile": "lab"})) == 2
    with pytest.raises(PermissionError, match="stale"):
        pd.read_csv(path, storage_options={"profile": "stale"})
    with pytest.raises(TypeError, match="profil"):  # never silently another login
        pd.read_csv(path, storage_options={"profil": "stale"})


def test_parquet_round_trip_reads_at_random_through_ranges(bucket: str,
                                                           fs: CumuloFileSystem) -> None:
    frame = pd.DataFrame({"id": range(20_000), "score": [i / 7 for i in range(20_000)],
                          "label": [f"row-{i}" for i in range(20_000)]})
    path = f"cumulo://{bucket}/out/scored.parquet"
    frame.to_parquet(path)
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)
    pd.testing.assert_frame_equal(pd.read_parquet(path, columns=["label"]), frame[["label"]])

    info = fs.info(path)
    with fs.open(path, "rb", block_size=4096) as f:  # far smaller than the file
        assert f.size == info["size"] > 4096 * 4
        f.seek(-4, 2)
        assert f.read() == b"PAR1"
        f.seek(0)
        assert f.read(4) == b"PAR1"
        assert pq.ParquetFile(f).metadata.num_rows == 20_000
        f.seek(0)
        assert hashlib.sha256(f.read()).hexdigest() == info["sha256"]


def test_ls_info_exists_find_and_glob(admin: Any, bucket: str, fs: CumuloFileSystem) -> None:
    root = f"{bucket}/tree"
    tree = {"a.csv": CSV, "b.txt": b"b", "sub/c.csv": CSV, "sub/deep/d.csv": b"d"}
    for key, data in tree.items():
        admin.files.upload(data, f"{root}/{key}")

    assert fs.ls(f"cumulo://{root}/", detail=False) == [
        f"{root}/a.csv", f"{root}/b.txt", f"{root}/sub"]
    listed = {e["name"]: e for e in fs.ls(f"cumulo://{root}")}
    assert listed[f"{root}/sub"]["type"] == "directory"
    assert listed[f"{root}/a.csv"]["size"] == len(CSV)
    buckets = {e["name"]: e for e in fs.ls("cumulo://")}
    assert buckets[bucket]["type"] == "directory"
    assert fs.ls(f"cumulo://{root}/a.csv", detail=False) == [f"{root}/a.csv"]

    info = fs.info(f"cumulo://{root}/a.csv")
    assert info["type"] == "file" and info["size"] == len(CSV)
    assert info["sha256"] == hashlib.sha256(CSV).hexdigest() == fs.ukey(f"{root}/a.csv")
    assert info["content_type"] == "text/csv"
    assert isinstance(info["modified"], datetime)
    assert fs.modified(f"{root}/a.csv") == info["modified"]
    assert fs.info(f"{root}/sub")["type"] == "directory"
    assert fs.info(bucket)["type"] == "directory"
    assert fs.isfile(f"{root}/a.csv") and fs.isdir(f"{root}/sub/deep")

    assert fs.exists(f"cumulo://{root}/sub/c.csv") and fs.exists(f"cumulo://{root}/sub")
    assert not fs.exists(f"cumulo://{root}/nope.csv")
    assert not fs.exists(f"cumulo://{root}/su")  # a prefix of a name is no folder
    assert not fs.exists(f"cumulo://{_name('absent')}/a.csv")

    assert fs.find(f"cumulo://{root}") == [f"{root}/{k}" for k in (
        "a.csv", "b.txt", "sub/c.csv", "sub/deep/d.csv")]
    assert fs.find(root, withdirs=True) == [root] + [f"{root}/{k}" for k in (
        "a.csv", "b.txt", "sub", "sub/c.csv", "sub/deep", "sub/deep/d.csv")]
    assert fs.find(f"{root}/a.csv") == [f"{root}/a.csv"]
    assert fs.find(f"{_name('absent')}/x") == []
    assert fs.glob(f"cumulo://{root}/*.csv") == [f"{root}/a.csv"]
    assert fs.glob(f"cumulo://{root}/**/*.csv") == [
        f"{root}/a.csv", f"{root}/sub/c.csv", f"{root}/sub/deep/d.csv"]
    assert fs.du(root) == 2 * len(CSV) + 2


def test_listings_follow_the_cursor_past_one_page(admin: Any, bucket: str,
                                                  fs: CumuloFileSystem,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = f"{bucket}/paged"
    keys = [f"{root}/f{i}.txt" for i in range(5)] + [f"{root}/d{i}/x" for i in range(3)]
    for key in keys:
        admin.files.upload(b"x", key)
    monkeypatch.setattr(CumuloFileSystem, "page_size", 2)
    assert fs.ls(root, detail=False) == sorted(
        [f"{root}/f{i}.txt" for i in range(5)] + [f"{root}/d{i}" for i in range(3)])
    assert fs.find(root) == sorted(keys)


def test_cat_file_reads_ranges(admin: Any, bucket: str, fs: CumuloFileSystem) -> None:
    data = bytes(range(256)) * 4
    path = f"{bucket}/bytes.bin"
    admin.files.upload(data, path)
    assert fs.cat_file(path) == data
    assert fs.cat_file(path, start=10, end=20) == data[10:20]
    assert fs.cat_file(path, start=1000) == data[1000:]
    assert fs.cat_file(path, start=-5) == data[-5:]
    assert fs.cat_file(path, start=-10, end=-2) == data[-10:-2]
    assert fs.cat_file(path, end=3) == data[:3]
    assert fs.cat_file(path, start=2000) == b""  # past the end, as Python's files read
    assert fs.cat_file(path, start=20, end=10) == b""
    assert fs.read_block(path, 100, 50) == data[100:150]


def test_an_object_replaced_while_it_is_read_is_refused(admin: Any, bucket: str,
                                                        fs: CumuloFileSystem) -> None:
    path = f"{bucket}/replaced.bin"
    admin.files.upload(b"a" * 10_000, path)
    with fs.open(path, "rb", block_size=1024) as f:
        assert f.read(100) == b"a" * 100
        admin.files.upload(b"b" * 10_000, path)  # same size, other bytes
        f.seek(5000)
        with pytest.raises(CumuloError, match="replaced while it was read"):
            f.read(100)


def test_writes_upload_whole_on_close_and_nothing_when_the_block_fails(
        admin: Any, bucket: str, fs: CumuloFileSystem) -> None:
    data = b"0123456789" * 1000
    path = f"cumulo://{bucket}/written/blocks.bin"
    with fs.open(path, "wb", block_size=1024) as f:  # spooled past many blocks
        for i in range(0, len(data), 700):
            f.write(data[i:i + 700])
        assert not fs.exists(path)  # nothing is published before close
    assert admin.files.read_bytes(f"{bucket}/written/blocks.bin") == data

    with fsspec.open(f"cumulo://{bucket}/written/notes.txt", "w") as text:
        text.write("héllo\n")
    assert admin.files.read_bytes(f"{bucket}/written/notes.txt") == "héllo\n".encode()
    assert admin.files.head(f"{bucket}/written/notes.txt").content_type == "text/plain"

    with fs.open(f"{bucket}/written/empty.bin", "wb"):
        pass
    assert fs.info(f"{bucket}/written/empty.bin")["size"] == 0
    assert fs.cat_file(f"{bucket}/written/empty.bin") == b""
    assert fs.cat_file(f"{bucket}/written/empty.bin", start=0, end=10) == b""
    assert fs.cat_file(f"{bucket}/written/empty.bin", start=-10) == b""

    with pytest.raises(RuntimeError), fs.open(path, "wb") as f:
        f.write(b"half a file")
        raise RuntimeError("the writer failed")
    assert admin.files.read_bytes(f"{bucket}/written/blocks.bin") == data  # the old one stays
    with pytest.raises(FileExistsError):
        fs.open(path, "xb")

    with fs.transaction:  # published together when the transaction ends
        for name in ("t1", "t2"):
            with fs.open(f"{bucket}/written/{name}", "wb") as f:
                f.write(name.encode())
        assert not fs.exists(f"{bucket}/written/t1")
    assert fs.cat([f"{bucket}/written/t1", f"{bucket}/written/t2"]) == {
        f"{bucket}/written/t1": b"t1", f"{bucket}/written/t2": b"t2"}
    with pytest.raises(ValueError, match="append"):
        fs.open(path, "ab")


def test_put_get_copy_move_and_remove(admin: Any, bucket: str, fs: CumuloFileSystem,
                                      tmp_path: Path) -> None:
    local = tmp_path / "model.bin"
    local.write_bytes(b"weights" * 10_000)
    root = f"cumulo://{bucket}/files"
    fs.put(str(local), f"{root}/model.bin")
    assert fs.info(f"{root}/model.bin")["size"] == local.stat().st_size
    fs.pipe(f"{root}/deep/note.txt", b"note")

    fs.get(f"{root}/model.bin", str(tmp_path / "back" / "model.bin"))
    assert (tmp_path / "back" / "model.bin").read_bytes() == local.read_bytes()
    fs.get(f"{root}/", str(tmp_path / "all"), recursive=True)
    assert (tmp_path / "all" / "deep" / "note.txt").read_bytes() == b"note"

    fs.cp(f"{root}/model.bin", f"{root}/copy.bin")
    fs.mv(f"{root}/copy.bin", f"{root}/moved.bin")
    assert fs.cat(f"{root}/moved.bin") == local.read_bytes()
    assert not fs.exists(f"{root}/copy.bin")

    fs.rm(f"{root}/moved.bin")
    assert not fs.exists(f"{root}/moved.bin")
    with pytest.raises(FileNotFoundError):
        fs.rm(f"{root}/moved.bin")
    fs.rm(f"{root}/deep", recursive=True)
    assert not fs.exists(f"{root}/deep")
    assert fs.exists(f"{root}/model.bin")
    fs.rm(f"{root}/*.bin")  # a glob
    assert not fs.exists(root)


def test_buckets_are_the_top_folders(admin: Any, fs: CumuloFileSystem) -> None:
    name = _name("made")
    fs.mkdir(f"cumulo://{name}")
    assert fs.isdir(name)
    with pytest.raises(FileExistsError):
        fs.mkdir(name)
    fs.makedirs(f"{name}/a/b", exist_ok=True)  # folders exist with their objects: nothing to do
    fs.pipe(f"{name}/a/b/x", b"x")
    with pytest.raises(OSError) as full:
        fs.rmdir(name)
    assert full.value.errno == errno.ENOTEMPTY
    fs.rm(f"{name}/a/b/x")
    fs.rmdir(name)
    assert not fs.exists(name)

    other = _name("made")
    fs.makedirs(f"{other}/in/here")  # the bucket is made
    fs.pipe(f"{other}/in/here/y", b"y")
    fs.rm(f"cumulo://{other}", recursive=True)  # as rm -r: the bucket goes with what it holds
    assert other not in fs.ls("", detail=False)


def test_a_missing_object_or_bucket_is_file_not_found(bucket: str,
                                                      fs: CumuloFileSystem) -> None:
    with pytest.raises(FileNotFoundError, match=f"cumulo://{bucket}/missing.csv"):
        pd.read_csv(f"cumulo://{bucket}/missing.csv")
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{bucket}/missing.csv")
    with pytest.raises(FileNotFoundError):
        fs.info(f"{bucket}/missing")
    absent = _name("absent")
    with pytest.raises(FileNotFoundError, match=absent):
        fs.ls(f"cumulo://{absent}/")
    with pytest.raises(FileNotFoundError):
        fs.rm_file(f"{bucket}/missing.csv")
    with pytest.raises(IsADirectoryError):
        fs.cat_file(bucket)


def test_a_user_without_rights_gets_permission_error(local_server: Cumulo, admin: Any,
                                                     bucket: str) -> None:
    admin.files.upload(CSV, f"{bucket}/private/sales.csv")
    token = "fs-outsider-" + uuid.uuid4().hex
    local_server.add_user("fs-outsider", token, project="elsewhere")
    theirs = {"token": token}
    path = f"cumulo://{bucket}/private/sales.csv"
    with pytest.raises(PermissionError):
        pd.read_csv(path, storage_options=theirs)
    fs = fsspec.filesystem("cumulo", **theirs)
    with pytest.raises(PermissionError):
        fs.ls(f"{bucket}/private")
    with pytest.raises(PermissionError):
        fs.exists(path)
    with pytest.raises(PermissionError), fs.open(f"{bucket}/private/theirs.csv", "wb") as f:
        f.write(b"x")
    with pytest.raises(PermissionError):
        fs.rm(f"{bucket}/private", recursive=True)
    assert admin.files.read_bytes(f"{bucket}/private/sales.csv") == CSV
    assert not admin.files.exists(f"{bucket}/private/theirs.csv")


def test_text_mode_lines_through_pandas_chunks(admin: Any, bucket: str) -> None:
    rows = "".join(f"{i},{i * i}\n" for i in range(5000))
    admin.files.upload(("n,sq\n" + rows).encode(), f"{bucket}/in/big.csv")
    chunks = pd.read_csv(f"cumulo://{bucket}/in/big.csv", chunksize=1000)
    with chunks as reader:
        assert sum(len(c) for c in reader) == 5000
    with fsspec.open(f"cumulo://{bucket}/in/big.csv", "rt") as f:
        assert f.readline() == "n,sq\n"
        assert f.readline() == "0,0\n"
