"""What a crashed server left of the lake's own files, removed when a server next starts alone
(:mod:`cumulo.storage.leftovers` says when that is, and claims the folder meanwhile).

In the home's ``results`` folder: result files a query was writing when the server died (a
Parquet file without its footer: unreadable; earlier versions kept results there, now they are
in storage's ``sql/results/``), and DuckDB's spill folders
(``spill/…``), which DuckDB removes when it closes a database and a crash never lets it. Whole
result files of earlier versions stay: pages and downloads still read them until the SQL
service prunes them by age.

Not swept: a Delta table's data files that no commit references (a write killed before its
commit). Readers never see them (they follow the log), so they cost only space; and telling
them from the files of a write still in flight (from another server, against the same bucket)
takes Delta's retention window, which is what vacuum applies. deltalake's vacuum removes them
only when asked for a full one (``DeltaTable.vacuum(full=True)``: files the log never named,
older than the retention); the plain one removes only files that versions dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cumulo.storage.leftovers import LOCK_NAME, claim, remove

__all__ = ["results_dir", "sweep_results", "whole_parquet"]

log = logging.getLogger("cumulo.lake")
_MAGIC = b"PAR1"  # a Parquet file starts and ends with it; the end comes with the footer


def results_dir(home: Path) -> Path:
    """Where DuckDB spills (under ``spill/``) and where earlier versions kept results. Here, not in
    :mod:`cumulo.lake.sql`, so that the start-up sweep loads no DuckDB or Arrow."""
    return home / "results"


def whole_parquet(path: Path) -> bool:
    """Whether a Parquet file was finished: its footer (and the magic after it) written."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0, 2)
            if f.tell() < 12:
                return False
            f.seek(-4, 2)
            return head == _MAGIC and f.read(4) == _MAGIC
    except OSError:
        return True  # unreadable here: not ours to judge


def sweep_results(results_dir: Path) -> list[Path]:
    """Claim the SQL results folder and, when no live server shares it, remove the result
    files left half written and the spill folders; returns what was removed."""
    if not claim(results_dir):
        return []
    removed = [p for p in sorted(results_dir.glob("*.parquet"))
               if p.is_file() and not whole_parquet(p) and remove(p)]
    spill = results_dir / "spill"
    if spill.is_dir():
        removed += [p for p in sorted(spill.iterdir()) if p.name != LOCK_NAME and remove(p)]
    if removed:
        log.info("removed %d partial result or spill file(s) left in %s by a server that ended",
                 len(removed), results_dir)
    return removed
