"""storage/transfer.py's join: the kernel's copy and a hash of the same bytes, in two threads."""

from __future__ import annotations

import errno
import hashlib
import os
import zlib
from pathlib import Path

import pytest

from cumulo.storage import transfer


def _parts(folder: Path, sizes: list[int]) -> tuple[list[tuple[Path, int, int]], bytes]:
    """Files of ``sizes`` random bytes, each with a few bytes around it that the pieces
    leave out; the pieces and the bytes they join to."""
    pieces, whole = [], b""
    for i, size in enumerate(sizes):
        data = os.urandom(size)
        path = folder / f"part-{i}"
        path.write_bytes(b"pre" + data + b"post")
        pieces.append((path, 3, size))
        whole += data
    return pieces, whole


@pytest.mark.parametrize("sizes", [[5 << 20, 5 << 20, 1234], [1], [0, 3 << 20, 0]])
def test_join_files_copies_and_hashes_in_order(tmp_path: Path, sizes: list[int]) -> None:
    paths, whole = _parts(tmp_path, sizes)
    out = tmp_path / "joined"
    sha = hashlib.sha256()
    crc = type("Crc", (), {"value": 0, "update": lambda self, d: setattr(
        self, "value", zlib.crc32(d, self.value))})()
    with open(out, "wb") as f:
        f.write(b"head:")  # the join appends at the descriptor's position
        f.flush()
        joined = transfer.join_files(paths, f.fileno(), [sha, crc])
    assert joined == len(whole)
    assert out.read_bytes() == b"head:" + whole
    assert sha.hexdigest() == hashlib.sha256(whole).hexdigest()
    assert crc.value == zlib.crc32(whole)


def test_join_files_without_the_kernel_copy(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Where copy_file_range cannot copy between the two files (EXDEV across file systems on
    old kernels: simulated, since this machine's kernel can), the bytes go through read and
    write instead, with the same result."""
    def refuse(*args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    paths, whole = _parts(tmp_path, [9 << 20, 777])
    out = tmp_path / "joined"
    sha = hashlib.sha256()
    with open(out, "wb") as f:
        transfer.join_files(paths, f.fileno(), [sha])
    assert out.read_bytes() == whole
    assert sha.hexdigest() == hashlib.sha256(whole).hexdigest()


def test_join_files_passes_on_a_real_write_error(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk is not a reason to fall back: it is raised (simulated ENOSPC)."""
    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "copy_file_range", full)
    paths, _ = _parts(tmp_path, [1024])
    with open(tmp_path / "joined", "wb") as f, pytest.raises(OSError, match="No space"):
        transfer.join_files(paths, f.fileno(), [hashlib.sha256()])


def test_join_files_hash_only_and_short_pieces(tmp_path: Path) -> None:
    """Without a target it only hashes; a piece shorter than recorded is an error, not a
    shorter object."""
    pieces, whole = _parts(tmp_path, [3 << 20, 5])
    sha = hashlib.sha256()
    assert transfer.join_files(pieces, None, [sha]) == len(whole)
    assert sha.hexdigest() == hashlib.sha256(whole).hexdigest()
    path, offset, size = pieces[1]
    with open(tmp_path / "joined", "wb") as f, pytest.raises(OSError, match="shorter"):
        transfer.join_files([pieces[0], (path, offset, size + 100)], f.fileno(), [])
