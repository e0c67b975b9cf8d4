"""Every table, storage prefix and folder of the home is held by a service that says so
(:mod:`cumulo.state`), so that backups cover it: a new table, prefix or folder that nobody
declares fails here."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import cumulo.server.app  # noqa: F401 - every service's models, and so their declarations
from cumulo.db import Base
from cumulo.state import declared
from tests.services import Cumulo


def test_every_table_is_held_by_one_service() -> None:
    holders: dict[str, list[str]] = {}
    for holdings in declared().values():
        for table in holdings.tables:
            holders.setdefault(table, []).append(holdings.service)
    tables = set(Base.metadata.tables)
    assert tables - set(holders) == set(), "tables no service declares (cumulo.state.declare)"
    assert set(holders) - tables == set(), "declared tables that do not exist"
    assert {t: s for t, s in holders.items() if len(s) > 1} == {}


def _covered(name: str) -> bool:
    for h in declared().values():
        if any(fnmatch.fnmatch(name, pattern) for pattern in h.caches):
            return True
        for db in h.databases:
            if name == db or name.startswith(db + "-"):  # SQLite's -wal, -shm, -journal
                return True
    return False


def test_what_a_server_keeps_is_all_declared(tmp_path: Path, local_server: Cumulo) -> None:
    """After a little of everything, each top-level entry of the storage root is a declared
    prefix, and each entry of the home a declared database, cache or the storage root."""
    c = local_server.client()
    c.files.create_bucket("state-check")
    c.files.upload(b"a,b\n1,2\n", "state-check/x.csv")
    c.tables.create_database("statecheck")
    c.sql("create table statecheck.t as select 1 as x")
    c.sql("select * from statecheck.t")
    (tmp_path / "ok.py").write_text("print('ok')\n")
    assert c.jobs.run("ok.py", code=tmp_path).wait(60)["state"] == "succeeded"
    prefixes = {p for h in declared().values() for p in h.prefixes}
    storage = local_server.home / "storage"
    for entry in storage.iterdir():
        assert f"{entry.name}/" in prefixes or _covered(f"storage/{entry.name}"), \
            f"storage/{entry.name} is held by no service"
    for entry in local_server.home.iterdir():
        assert _covered(entry.name), \
            f"{entry.name} in the home is held by no service (cumulo.state.declare)"


def test_backups_load_every_services_declarations() -> None:
    """``cumulo backup`` imports the services' models itself (it runs without a server): a new
    service's models must be in its list, or its state would not be backed up."""
    import json
    import subprocess
    import sys

    probe = ("import json\n"
             "from cumulo.dr.backup import load_declarations\n"
             "from cumulo.state import declared\n"
             "load_declarations()\n"
             "print(json.dumps(sorted(declared())))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == sorted(declared())
