"""The storage backends on their own: the local folder, and S3 (moto's server standing in for
S3 on loopback, since these tests cannot reach AWS)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cumulo.config import Settings
from cumulo.errors import Conflict
from cumulo.storage.backends import Backend, open_backend


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        settings = Settings(home=tmp_path, database_url="sqlite://",
                            storage_url=str(tmp_path / "storage"))
    else:
        s3 = request.getfixturevalue("s3")
        from cumulo.config import S3Settings

        url = s3.create_bucket("backend-" + tmp_path.name[-20:].lower().replace("_", "-"))
        settings = Settings(home=tmp_path, database_url="sqlite://", storage_url=url,
                            s3=S3Settings(endpoint_url=s3.endpoint, access_key_id="testing",
                                          secret_access_key="testing"))
    store = open_backend(settings)
    store.check()
    yield store


def _spool(store: Backend, data: bytes) -> Path:
    tmp = store.spool_dir() / "upload-test"
    tmp.write_bytes(data)
    return tmp


def test_commit_open_delete(backend: Backend) -> None:
    backend.commit(_spool(backend, b"hello world"), "buckets/b/dir/a.txt")
    with backend.open("buckets/b/dir/a.txt") as f:
        assert f.read() == b"hello world"
    with backend.open("buckets/b/dir/a.txt", offset=6) as f:
        assert f.read() == b"world"
    backend.commit(_spool(backend, b"second"), "buckets/b/dir/a.txt")
    with backend.open("buckets/b/dir/a.txt") as f:
        assert f.read() == b"second"
    backend.delete("buckets/b/dir/a.txt")
    backend.delete("buckets/b/dir/a.txt")  # already gone: fine
    with pytest.raises(FileNotFoundError):
        backend.open("buckets/b/dir/a.txt")
    with pytest.raises(FileNotFoundError):
        backend.open("buckets/b/dir/a.txt", offset=3)


def test_read_from_the_end_or_past_it_is_empty(backend: Backend) -> None:
    """A follower that has read a whole log asks again from its end: S3 answers that range
    with 416 InvalidRange, a file with nothing. Both read as nothing."""
    backend.commit(_spool(backend, b"0123456789"), "jobs/j/logs/attempt-1.log")
    for offset, rest in ((9, b"9"), (10, b""), (11, b""), (1 << 40, b"")):
        with backend.open("jobs/j/logs/attempt-1.log", offset=offset) as f:
            assert f.read() == rest, offset
    backend.commit(_spool(backend, b""), "jobs/j/logs/empty.log")
    for offset in (0, 1):
        with backend.open("jobs/j/logs/empty.log", offset=offset) as f:
            assert f.read() == b""


def test_delete_prefix(backend: Backend) -> None:
    for key in ("buckets/b/x/1", "buckets/b/x/2", "buckets/b/y/3", "buckets/c/x/4"):
        backend.commit(_spool(backend, key.encode()), key)
    backend.delete_prefix("buckets/b/x/")
    with backend.open("buckets/b/y/3") as f:
        assert f.read() == b"buckets/b/y/3"
    with backend.open("buckets/c/x/4") as f:
        assert f.read() == b"buckets/c/x/4"
    with pytest.raises(Exception):  # noqa: B017
        backend.open("buckets/b/x/1")


def test_local_file_and_folder_clash_is_a_conflict(tmp_path: Path) -> None:
    store = open_backend(Settings(home=tmp_path, database_url="sqlite://",
                                  storage_url=str(tmp_path / "s")))
    store.check()
    store.commit(_spool(store, b"file"), "buckets/b/a")
    with pytest.raises(Conflict, match="cannot hold both"):
        store.commit(_spool(store, b"nested"), "buckets/b/a/b")
    store.commit(_spool(store, b"deep"), "buckets/b/d/e")
    with pytest.raises(Conflict, match="cannot hold both"):
        store.commit(_spool(store, b"folder"), "buckets/b/d")
    store.delete("buckets/b/d/e")
    assert not (tmp_path / "s" / "buckets" / "b" / "d").exists()  # empty folders pruned
