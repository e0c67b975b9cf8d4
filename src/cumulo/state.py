"""What each service holds: its tables in the metadata database, its prefixes under the storage
root, other databases it keeps, and the folders of the home that are only caches.

Each service declares its holdings once, beside its models (``state.declare("storage",
tables=("buckets", "objects"), prefixes=("buckets/",))``), so that backup and restore
(``cumulo backup``) cover everything a service keeps, including services added later, and a test
(tests/test_state.py) fails when a table, a storage prefix or a folder of the home is held by
nobody. The core imports no service: services call :func:`declare`, and whoever needs the whole
picture imports the services' models first (``cumulo.server.app`` does).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Holdings", "declare", "declared"]


@dataclass(frozen=True)
class Holdings:
    service: str
    tables: tuple[str, ...] = ()  # in the metadata database
    prefixes: tuple[str, ...] = ()  # under the storage root, each ending in '/'
    databases: tuple[str, ...] = ()  # files of the home that are databases of their own
    # Entries of the home rebuilt from the rest, or in flight: not backed up (glob patterns,
    # relative to the home: "envs", "*.log", "storage/.tmp").
    caches: tuple[str, ...] = ()


_DECLARED: dict[str, Holdings] = {}


def declare(service: str, *, tables: tuple[str, ...] = (), prefixes: tuple[str, ...] = (),
            databases: tuple[str, ...] = (), caches: tuple[str, ...] = ()) -> None:
    """Say what ``service`` holds (again: the last word stands). A prefix must end in '/'."""
    for prefix in prefixes:
        if not prefix.endswith("/"):
            raise ValueError(f"{service}: storage prefix {prefix!r} must end in '/'")
    _DECLARED[service] = Holdings(service, tuple(tables), tuple(prefixes), tuple(databases),
                                  tuple(caches))


def declared() -> dict[str, Holdings]:
    """Every service's holdings, by service."""
    return dict(_DECLARED)


# The platform's own: the control planes that share the database (cumulo.leases), the metadata
# database (SQLite's file, when that is the database; its -wal and -shm go with it), the local
# storage root (what is in it is the services' prefixes), and the logs and pid files of the
# processes it runs (the control plane's own log under logs/).
declare("platform", tables=("control_planes",), databases=("cumulo.db",),
        caches=("storage", "*.log", "*.pid", "logs"))
