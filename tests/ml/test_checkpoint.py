"""cumulo.ml.checkpoint: whole checkpoints or none, the newest few kept, the newest good one
loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cumulo.ml.checkpoint import checkpoints, load_checkpoint, save_checkpoint


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_save_keeps_the_newest_and_load_takes_the_newest(tmp_path: Path) -> None:
    assert load_checkpoint(directory=tmp_path) is None
    for step in (1, 2, 9, 10):  # by number, not by name: 10 is newer than 9
        written = save_checkpoint({"w": torch.full((2,), float(step))}, step,
                                  directory=tmp_path)
        assert written == tmp_path / f"ckpt-{step}.pt"
    assert _names(tmp_path) == ["ckpt-10.pt", "ckpt-9.pt"]
    found = load_checkpoint(directory=tmp_path)
    assert found is not None
    state, step = found
    assert step == 10 and state["w"].tolist() == [10.0, 10.0]
    save_checkpoint({"w": torch.zeros(1)}, 11, keep=3, directory=tmp_path)
    assert [s for s, _ in checkpoints(tmp_path)] == [9, 10, 11]


def test_a_checkpoint_that_does_not_load_is_passed_over(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    save_checkpoint({"epoch": 1}, 1, directory=tmp_path)
    newest = save_checkpoint({"epoch": 2}, 2, directory=tmp_path)
    newest.write_bytes(newest.read_bytes()[:20])  # cut short, as by a crash of another writer
    found = load_checkpoint(directory=tmp_path)
    assert found == ({"epoch": 1}, 1)
    assert "checkpoint ckpt-2.pt does not load" in capsys.readouterr().err
    newest.write_bytes(b"")
    (tmp_path / "ckpt-1.pt").write_bytes(b"not a checkpoint")
    assert load_checkpoint(directory=tmp_path) is None  # none loads: start afresh


def test_a_failed_save_leaves_the_last_one_whole(tmp_path: Path) -> None:
    save_checkpoint({"epoch": 1}, 1, directory=tmp_path)
    with pytest.raises(Exception, match="pickle"):
        save_checkpoint({"bad": lambda: None}, 2, directory=tmp_path)
    assert _names(tmp_path) == ["ckpt-1.pt"]  # no half-written file, no temporary left
    # A temporary left by an attempt killed while saving goes with the next save.
    (tmp_path / ".ckpt-3.pt.x1y2z3.tmp").write_bytes(b"partial")
    save_checkpoint({"epoch": 3}, 3, directory=tmp_path)
    assert _names(tmp_path) == ["ckpt-1.pt", "ckpt-3.pt"]
    assert load_checkpoint(directory=tmp_path) == ({"epoch": 3}, 3)


def test_bad_arguments(tmp_path: Path) -> None:
    for step in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="step must be a whole number"):
            save_checkpoint({}, step, directory=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keep must be 1 or more"):
        save_checkpoint({}, 1, keep=0, directory=tmp_path)
    assert _names(tmp_path) == []


def test_outside_a_job_checkpoints_go_to_a_local_folder(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CUMULO_JOB_ID", "CUMULO_JOB_CHECKPOINT_DIR", "CUMULO_JOB_REMOTE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    save_checkpoint({"epoch": 4}, 4)
    assert _names(tmp_path / "checkpoints") == ["ckpt-4.pt"]
    assert load_checkpoint() == ({"epoch": 4}, 4)
