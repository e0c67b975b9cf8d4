"""``cumulo files sync`` and ``files mv`` (and ``client.files.sync``/``move``) against one real
server: aws's semantics, with the SHA-256 deciding between files of one size."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from cumulo.errors import Invalid, NotFound
from cumulo.storage.sync import included
from tests.services import Cumulo


@pytest.fixture
def bucket(local_server: Cumulo) -> str:
    name = "sync-" + uuid.uuid4().hex[:10]
    local_server.client().files.create_bucket(name)
    return name


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _keys(local_server: Cumulo, path: str) -> dict[str, str]:
    listing = local_server.client().files.list(path, recursive=True)
    return {o.key: local_server.client().files.read_bytes(o.path).decode()
            for o in listing.objects}


def test_rules_apply_in_order_the_last_match_deciding() -> None:
    only_csv = [("exclude", "*"), ("include", "*.csv")]
    assert included("raw/a.csv", only_csv) and not included("raw/a.txt", only_csv)
    assert not included("raw/a.csv", [("include", "*.csv"), ("exclude", "raw/*")])
    assert included("anything", [])


def test_sync_up_and_back_down_like_aws(local_server: Cumulo, bucket: str,
                                        tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", {"a.csv": "1,2\n", "deep/b.csv": "3,4\n",
                                   "deep/tmp.log": "x", "c.txt": "cc"})
    dry = local_server.cli("files", "sync", str(src), f"{bucket}/backup", "--dryrun")
    assert dry.returncode == 0, dry.stderr
    assert f"(dryrun) upload: {src}/a.csv to {bucket}/backup/a.csv" in dry.stdout
    assert "would upload 4 file(s)" in dry.stdout and "nothing was changed" in dry.stdout
    assert _keys(local_server, bucket) == {}

    up = local_server.cli("files", "sync", str(src), f"{bucket}/backup",
                          "--exclude", "*.log")
    assert up.returncode == 0, up.stderr
    assert "3 uploaded" in up.stdout and "0 unchanged" in up.stdout
    assert set(_keys(local_server, bucket)) == {"backup/a.csv", "backup/deep/b.csv",
                                                "backup/c.txt"}
    again = json.loads(local_server.cli("files", "sync", str(src), f"{bucket}/backup",
                                        "--exclude", "*.log", "--json").stdout)
    assert again["actions"] == [] and again["unchanged"] == 3

    # Same size, other bytes: the SHA-256 tells them apart. A file gone from the source goes
    # from the destination with --delete, unless a rule leaves it out; rules apply in order.
    (src / "a.csv").write_text("9,9\n")
    (src / "c.txt").unlink()
    (src / "deep" / "b.csv").unlink()
    synced = json.loads(local_server.cli(
        "files", "sync", str(src), f"{bucket}/backup", "--delete", "--exclude", "*",
        "--include", "*.csv", "--exclude", "deep/*", "--json").stdout)
    assert [(a["op"], a["path"], a["why"]) for a in synced["actions"]] == [
        ("upload", "a.csv", "content differs")]
    assert _keys(local_server, bucket) == {"backup/a.csv": "9,9\n", "backup/deep/b.csv": "3,4\n",
                                           "backup/c.txt": "cc"}
    pruned = local_server.cli("files", "sync", str(src), f"{bucket}/backup", "--delete")
    assert f"delete: {bucket}/backup/c.txt" in pruned.stdout
    assert f"upload: {src}/deep/tmp.log" in pruned.stdout
    assert set(_keys(local_server, bucket)) == {"backup/a.csv", "backup/deep/tmp.log"}

    down = tmp_path / "down"
    _tree(down, {"stale.txt": "old", "a.csv": "0,0\n"})
    back = local_server.cli("files", "sync", f"{bucket}/backup/", f"{down}", "--delete")
    assert back.returncode == 0, back.stderr
    assert "2 downloaded" in back.stdout and "1 deleted" in back.stdout
    assert {p.relative_to(down).as_posix(): p.read_text() for p in down.rglob("*")
            if p.is_file()} == {"a.csv": "9,9\n", "deep/tmp.log": "x"}


def test_sync_to_a_missing_bucket_says_so_and_copies_nothing(
        local_server: Cumulo, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", {"a.csv": "1\n"})
    missing = "nope-" + uuid.uuid4().hex[:8]
    refused = local_server.cli("files", "sync", str(src), f"{missing}/x")
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: bucket '{missing}' does not exist")
    assert f"'cumulo files mb {missing}' creates it" in refused.stderr
    assert refused.stderr.count("\n") == 1
    assert missing not in {b["name"] for b in local_server.client().files.buckets()}
    assert (src / "a.csv").read_text() == "1\n"
    both = local_server.cli("files", "sync", f"{missing}/x", "other/y")
    assert both.returncode == 1 and "syncing between buckets is not supported" in both.stderr


def test_the_sdk_sync_returns_what_it_did(local_server: Cumulo, bucket: str,
                                          tmp_path: Path) -> None:
    files = local_server.client().files
    src = _tree(tmp_path / "src", {"keep.csv": "k", "skip.tmp": "s"})
    planned = files.sync(src, f"{bucket}/p", filters=[("exclude", "*.tmp")], dryrun=True)
    assert [a.path for a in planned.actions] == ["keep.csv"] and planned.done == 0
    done = files.sync(src, f"{bucket}/p", filters=[("exclude", "*.tmp")])
    assert done.done == 1 and done.bytes == 1 and files.read_bytes(f"{bucket}/p/keep.csv") == b"k"
    with pytest.raises(Invalid, match=r"pathlib\.Path"):
        files.sync(f"{bucket}/p", f"{bucket}/q")
    with pytest.raises(NotFound, match="files mb"):
        files.sync("no-such-bucket-here/p", tmp_path / "down")
    assert not (tmp_path / "down").exists()


def test_mv_deletes_the_source_only_once_the_copy_is_stored(
        local_server: Cumulo, bucket: str, tmp_path: Path) -> None:
    other = "mv-" + uuid.uuid4().hex[:10]
    assert local_server.cli("files", "mb", other).returncode == 0
    local = tmp_path / "note.txt"
    local.write_text("hello")
    up = local_server.cli("files", "mv", str(local), f"{bucket}/in/")
    assert up.returncode == 0, up.stderr
    assert f"move: {local} to {bucket}/in/note.txt" in up.stdout and not local.exists()
    across = local_server.cli("files", "mv", f"{bucket}/in/note.txt", f"{other}/kept.txt")
    assert across.returncode == 0, across.stderr
    assert _keys(local_server, bucket) == {} and _keys(local_server, other) == {
        "kept.txt": "hello"}
    info = local_server.client().files.head(f"{other}/kept.txt")
    assert info.content_type == "text/plain"

    same = local_server.cli("files", "mv", f"{other}/kept.txt", f"{other}/kept.txt")
    assert same.returncode == 1 and "same object" in same.stderr
    nowhere = local_server.cli("files", "mv", f"{other}/kept.txt", "no-such-bucket-mv/x")
    assert nowhere.returncode == 1 and "does not exist" in nowhere.stderr
    assert _keys(local_server, other) == {"kept.txt": "hello"}  # nothing lost

    down = local_server.cli("files", "mv", f"{other}/kept.txt", str(tmp_path / "back.txt"))
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "back.txt").read_text() == "hello" and _keys(local_server, other) == {}
