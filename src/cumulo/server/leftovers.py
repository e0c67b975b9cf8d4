"""Crash leftovers, swept once at start-up, before anything is served: each service's own
temporary files, in one list. Each sweep claims its folder for this server's life, so that a
server starting later beside this one leaves alone what this one writes."""

from __future__ import annotations

from cumulo.config import Settings
from cumulo.lake.leftovers import results_dir, sweep_results
from cumulo.storage.backends import Backend
from cumulo.storage.leftovers import sweep_spool

__all__ = ["sweep"]


def sweep(settings: Settings, storage: Backend) -> None:
    sweep_spool(storage)  # uploads, loads, files on their way into storage
    sweep_results(results_dir(settings.home))  # SQL results cut short, DuckDB's spill
