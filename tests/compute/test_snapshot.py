"""Code snapshots: stable digests, what is left out, and uploads that are checked."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from cumulo.compute.snapshot import extract, scan, verify
from cumulo.errors import Invalid


def _folder(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("print('hi')\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "run.sh").write_text("echo hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    (root / "data.csv").write_text("a,b\n")
    (root / ".cumuloignore").write_text("# big data stays out\n*.csv\n")
    return root


def test_digest_is_stable_and_content_addressed(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "src")
    snap = scan(folder)
    assert snap.files == [".cumuloignore", "pkg/__init__.py", "run.sh", "train.py"]
    assert scan(folder).digest == snap.digest
    (folder / "train.py").write_text("print('changed')\n")
    assert scan(folder).digest != snap.digest
    (folder / "train.py").write_text("print('hi')\n")
    (folder / "run.sh").chmod(0o644)  # the executable bit is part of the content
    assert scan(folder).digest != snap.digest


def test_round_trip(tmp_path: Path) -> None:
    snap = scan(_folder(tmp_path / "src"))
    buf = io.BytesIO()
    snap.write_tar(buf)
    tar_path = tmp_path / "snap.tar.gz"
    tar_path.write_bytes(buf.getvalue())
    files, size = verify(tar_path, snap.digest)
    assert files == snap.files and size == snap.size
    with open(tar_path, "rb") as f:
        out = extract(f, tmp_path / "cache" / snap.digest)
    assert (out / "train.py").read_text() == "print('hi')\n"
    assert (out / "run.sh").stat().st_mode & 0o100
    assert extract(io.BytesIO(b"ignored"), out) == out  # already there: not unpacked again


def test_verify_refuses_a_wrong_digest(tmp_path: Path) -> None:
    snap = scan(_folder(tmp_path / "src"))
    tar_path = tmp_path / "snap.tar.gz"
    with open(tar_path, "wb") as f:
        snap.write_tar(f)
    with pytest.raises(Invalid, match="hash to"):
        verify(tar_path, "0" * 64)


@pytest.mark.parametrize("name", ["../evil.py", "/etc/evil", "a/../../evil"])
def test_verify_refuses_unsafe_paths(tmp_path: Path, name: str) -> None:
    tar_path = tmp_path / "bad.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(Invalid, match="unsafe path"):
        verify(tar_path, "0" * 64)


def test_verify_refuses_links_and_garbage(tmp_path: Path) -> None:
    tar_path = tmp_path / "link.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        info = tarfile.TarInfo("passwd")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(Invalid, match="not a plain file"):
        verify(tar_path, "0" * 64)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar at all")
    with pytest.raises(Invalid, match="not a readable tar"):
        verify(junk, "0" * 64)


def test_scan_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(Invalid, match="not a folder"):
        scan(tmp_path / "f")


def test_verify_refuses_what_unpacks_too_big(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The server checks the size itself: a client need not be honest about it."""
    import cumulo.compute.snapshot as snapshot

    snap = scan(_folder(tmp_path / "src"))
    tar_path = tmp_path / "snap.tar.gz"
    with open(tar_path, "wb") as f:
        snap.write_tar(f)
    monkeypatch.setattr(snapshot, "MAX_SNAPSHOT_BYTES", 4)
    with pytest.raises(Invalid, match="unpacks to over"):
        verify(tar_path, snap.digest)
