"""PyTorch checkpoints in a job: save one each epoch, and resume where the last attempt stopped.

>>> from cumulo.ml.checkpoint import load_checkpoint, save_checkpoint
>>> resumed = load_checkpoint()                                      # doctest: +SKIP
>>> start = 0
>>> if resumed:                                                      # doctest: +SKIP
...     state, epoch = resumed
...     model.load_state_dict(state["model"]); optimizer.load_state_dict(state["optimizer"])
...     start = epoch + 1
>>> for epoch in range(start, epochs):                               # doctest: +SKIP
...     train_one_epoch()
...     save_checkpoint({"model": model.state_dict(),
...                      "optimizer": optimizer.state_dict()}, step=epoch)

Checkpoints are ``ckpt-<step>.pt`` files in ``cumulo.job.checkpoint_dir``, which Cumulo keeps
from one attempt of a job to the next: an automatic retry after a failure, or ``cumulo jobs
retry`` after a cancel, starts with them. Each is written whole or not at all (a temporary file,
then a rename), so an attempt killed while saving leaves the one before intact. Outside a job
they go to ``./checkpoints``. torch is imported when a checkpoint is saved or loaded, not before.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["checkpoints", "load_checkpoint", "save_checkpoint"]

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
_PARTIAL = re.compile(r"^\.ckpt-\d+\.pt\..*\.tmp$")


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError("checkpoints are saved with PyTorch: pip install 'cumulo[torch]'") \
            from exc
    return torch


def _folder(directory: str | os.PathLike[str] | None) -> Path:
    if directory is None:
        import cumulo.job

        path: Path = cumulo.job.checkpoint_dir
        return path
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoints(directory: str | os.PathLike[str] | None = None) -> list[tuple[int, Path]]:
    """The checkpoint files there are, as (step, path), oldest first."""
    found = []
    for path in _folder(directory).iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint(state: dict[str, Any], step: int, *, keep: int = 2,
                    directory: str | os.PathLike[str] | None = None) -> Path:
    """Save ``state`` (anything ``torch.save`` takes) as the checkpoint of ``step``, and keep
    only the newest ``keep`` checkpoints. Returns the file written."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a whole number, 0 or more, not {step!r}")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be 1 or more, not {keep!r}")
    torch = _torch()
    folder = _folder(directory)
    final = folder / f"ckpt-{step}.pt"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{final.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    for _, old in checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    # What an attempt killed while saving left behind (one process saves at a time).
    for path in folder.iterdir():
        if _PARTIAL.match(path.name):
            path.unlink(missing_ok=True)
    import cumulo.job

    cumulo.job.sync_checkpoints()  # on a remote cluster; nothing to do on a local one
    return final


def load_checkpoint(*, directory: str | os.PathLike[str] | None = None,
                    map_location: Any = "cpu",
                    weights_only: bool = True) -> tuple[dict[str, Any], int] | None:
    """The newest checkpoint that loads, as ``(state, step)``; None when there is none.

    A checkpoint that does not load (cut short by a crash, say) is passed over for the one
    before, saying so on stderr. ``weights_only`` is torch's: tensors, numbers, strings and
    containers of them load; give False to load other objects (only from checkpoints you
    trust: that runs pickle)."""
    found = checkpoints(directory)
    if not found:
        return None
    torch = _torch()
    for step, path in reversed(found):
        try:
            state = torch.load(path, map_location=map_location, weights_only=weights_only)
        except Exception as exc:
            print(f"cumulo: checkpoint {path.name} does not load ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''}); trying an older one",
                  file=sys.stderr)
            continue
        return state, step
    return None
