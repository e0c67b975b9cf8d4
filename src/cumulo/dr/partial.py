"""Partial restores: one bucket, one table at a version, one model version, one pipeline, taken
from a backup and put back into a *running* platform through its API, as the caller (their
rights decide, and the audit log records what they put back). Nothing of the live platform is
touched but what is named; a restored table or pipeline goes under a new name unless told to
replace, and a model version comes back as a new version.

The backup's pieces are read into a scratch folder first (every piece checked), and the
backup's own copy of the catalog says what each thing was.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cumulo.dr.backup import restore_manifest
from cumulo.dr.repo import Repository
from cumulo.errors import Invalid, NotFound

__all__ = ["contents", "restore_bucket", "restore_model", "restore_pipeline", "restore_table"]


def _subset(repo: Repository, manifest: dict[str, Any], folder: Path,
            keep: Callable[[str], bool]) -> Path:
    """Restore the backup's databases and the files ``keep`` says into ``folder``."""
    part = {**manifest, "files": [f for f in manifest["files"] if keep(f["path"])]}
    done = restore_manifest(repo, part, folder / "home")
    if done.problems:
        names = ", ".join(p.item for p in done.problems[:5])
        raise Invalid(f"the backup's pieces for this are missing or corrupt ({names}); "
                      "'cumulo backup verify' names them all")
    return folder / "home"


def _catalog(home: Path, query: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(home / "cumulo.db")
    try:
        return list(con.execute(query, args))
    finally:
        con.close()


def restore_bucket(repo: Repository, snapshot_id: str, client: Any, bucket: str, *,
                   into: str | None = None, say: Callable[[str], None] = lambda _: None
                   ) -> dict[str, Any]:
    """Upload every object the backup's bucket held into ``into`` (the same name by default;
    made if missing). Objects already there with the same bytes are left; others are
    overwritten (their earlier bytes are the live platform's business)."""
    manifest = repo.snapshot(snapshot_id)
    prefix = f"buckets/{bucket}/"
    if not any(f["path"].startswith(prefix) for f in manifest["files"]):
        raise NotFound(f"backup {manifest['id']} holds no object of bucket {bucket!r}")
    target = into or bucket
    with tempfile.TemporaryDirectory(prefix="cumulo-partial-") as tmp:
        home = _subset(repo, manifest, Path(tmp), lambda p: p.startswith(prefix))
        if target not in {b["name"] for b in client.files.buckets()}:
            client.files.create_bucket(target)
        live = {o.key: o.sha256 for o in client.files.list(target, recursive=True).objects}
        rows = _catalog(home, "select o.key, o.sha256 from objects o join buckets b on "
                              "b.id = o.bucket_id where b.name = ?", (bucket,))
        put = same = 0
        for key, sha in rows:
            if live.get(key) == sha:
                same += 1
                continue
            say(f"restoring {bucket}/{key}")
            client.files.upload(home / "storage" / prefix / key, f"{target}/{key}")
            put += 1
    return {"bucket": target, "from": bucket, "backup": manifest["id"], "restored": put,
            "unchanged": same}


def restore_table(repo: Repository, snapshot_id: str, client: Any, table: str, *,
                  version: int | None = None, into: str | None = None,
                  replace: bool = False) -> dict[str, Any]:
    """Write ``db.table`` as it was at ``version`` (its last in the backup by default) into
    ``into`` (``db.table_restored`` by default), or over the live table with ``replace``."""
    from deltalake import DeltaTable

    manifest = repo.snapshot(snapshot_id)
    if "." not in table:
        raise Invalid(f"name the table as database.table, not {table!r}")
    db, name = table.split(".", 1)
    with tempfile.TemporaryDirectory(prefix="cumulo-partial-") as tmp:
        home = _subset(repo, manifest, Path(tmp), lambda p: False)
        found = _catalog(home, "select t.location from lake_tables t join lake_databases d on "
                               "d.id = t.database_id where d.name = ? and t.name = ?",
                         (db, name))
        if not found:
            raise NotFound(f"backup {manifest['id']} holds no table {table}")
        location = found[0][0].rstrip("/") + "/"
        home = _subset(repo, manifest, Path(tmp) / "t", lambda p: p.startswith(location))
        delta = DeltaTable(str(home / "storage" / location))
        latest = delta.version()
        wanted = latest if version is None else version
        if not 0 <= wanted <= latest:
            raise Invalid(f"table {table} had versions 0 to {latest} in backup "
                          f"{manifest['id']}; version {wanted} is not one of them")
        delta.load_as_version(wanted)
        data = delta.to_pyarrow_table()
    target = table if replace else (into or f"{table}_restored")
    client.tables.write(target, data, mode="overwrite")
    return {"table": target, "from": f"{table}@v{wanted}", "backup": manifest["id"],
            "rows": data.num_rows}


def restore_pipeline(repo: Repository, snapshot_id: str, client: Any, pipeline: str, *,
                     into: str | None = None) -> dict[str, Any]:
    """Store the pipeline's latest definition in the backup as ``into`` (``NAME-restored`` by
    default): a new pipeline, or a new version of an existing one."""
    manifest = repo.snapshot(snapshot_id)
    with tempfile.TemporaryDirectory(prefix="cumulo-partial-") as tmp:
        home = _subset(repo, manifest, Path(tmp), lambda p: False)
        rows = _catalog(home, "select v.definition, v.version from pipeline_versions v join "
                              "pipelines p on p.id = v.pipeline_id where p.name = ? "
                              "order by v.version desc limit 1", (pipeline,))
    if not rows:
        raise NotFound(f"backup {manifest['id']} holds no pipeline {pipeline!r}")
    definition = json.loads(rows[0][0]) if isinstance(rows[0][0], str) else rows[0][0]
    definition["name"] = into or f"{pipeline}-restored"
    stored = client.pipelines.create(definition)
    return {"pipeline": definition["name"], "from": f"{pipeline} v{rows[0][1]}",
            "backup": manifest["id"], "version": stored.get("version")}


def _mlflow(home: Path, query: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(home / "mlflow.db")
    try:
        return list(con.execute(query, args))
    except sqlite3.Error:
        return []
    finally:
        con.close()


_ARTIFACTS = "mlflow-artifacts:/"  # MLflow's served artifacts: the storage root's mlflow/


def restore_model(repo: Repository, snapshot_id: str, client: Any, model: str, *,
                  version: int | None = None, into: str | None = None) -> dict[str, Any]:
    """Register ``model``'s version (its last in the backup by default) from the backup's copy
    of its files, as a new version of ``into`` (the same model by default): a registry's
    versions only grow, so what comes back is the old model under a new number."""
    manifest = repo.snapshot(snapshot_id)
    with tempfile.TemporaryDirectory(prefix="cumulo-partial-") as tmp:
        home = _subset(repo, manifest, Path(tmp), lambda p: False)
        rows = _mlflow(home, "select version, coalesce(storage_location, source) from "
                             "model_versions where name = ? order by version", (model,))
        if not rows:
            raise NotFound(f"backup {manifest['id']} holds no model {model!r}")
        found = {int(v): where for v, where in rows}
        wanted = max(found) if version is None else version
        if wanted not in found:
            raise Invalid(f"backup {manifest['id']} holds versions "
                          f"{', '.join(map(str, sorted(found)))} of model {model!r}, not "
                          f"{wanted}")
        where = found[wanted] or ""
        if not where.startswith(_ARTIFACTS):
            raise Invalid(f"version {wanted} of {model!r} was registered from {where!r}, which "
                          "is not in Cumulo's artifact store: the backup does not hold its "
                          "files")
        prefix = "mlflow/" + where.removeprefix(_ARTIFACTS).strip("/") + "/"
        home = _subset(repo, manifest, Path(tmp) / "m", lambda p: p.startswith(prefix))
        folder = home / "storage" / prefix
        if not (folder / "MLmodel").is_file():
            raise Invalid(f"backup {manifest['id']} holds no model files for version {wanted} "
                          f"of {model!r} (nothing at {prefix}MLmodel)")
        stored = _import(client, folder, into or model)
    return {"model": into or model, "from": f"{model} v{wanted}", "backup": manifest["id"],
            "version": stored.get("version")}


def _import(client: Any, folder: Path, name: str) -> dict[str, Any]:
    """Register ``folder`` as a new version of ``name`` as the client's caller, in a process of
    its own: MLflow's client keeps its server and token process-wide, which a server (where a
    one-thing restore may run, for the console) must not change for everyone."""
    import subprocess
    import sys

    from cumulo.config import child_env
    from cumulo.errors import CumuloError

    t = client.transport
    done = subprocess.run(
        [sys.executable, "-m", "cumulo", "models", "import", str(folder), "--name", name,
         "--json"], capture_output=True, text=True, timeout=900,
        env=child_env({"CUMULO_URL": t.url, "CUMULO_TOKEN": t.token or ""}))
    if done.returncode != 0:
        raise CumuloError(f"registering the restored files as a version of {name!r} failed: "
                          f"{done.stderr.strip()[-1500:]}")
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def contents(repo: Repository, snapshot_id: str) -> dict[str, Any]:
    """What a backup holds that can be put back one at a time: buckets (objects, bytes),
    tables (the last version in the backup), models (versions) and pipelines."""
    manifest = repo.snapshot(snapshot_id)
    buckets: dict[str, list[int]] = {}
    for f in manifest["files"]:
        if f["path"].startswith("buckets/"):
            name = f["path"].split("/", 2)[1]
            counts = buckets.setdefault(name, [0, 0])
            counts[0] += 1
            counts[1] += f["size"]
    with tempfile.TemporaryDirectory(prefix="cumulo-partial-") as tmp:
        home = _subset(repo, manifest, Path(tmp), lambda p: False)
        tables = _catalog(home, "select d.name || '.' || t.name, t.location from lake_tables t "
                                "join lake_databases d on d.id = t.database_id order by 1", ())
        pipelines = _catalog(home, "select name, latest_version from pipelines order by name",
                             ())
        models = _mlflow(home, "select name, version from model_versions order by name, "
                               "version", ())
    cutoffs = manifest.get("lake_versions", {})
    by_model: dict[str, list[int]] = {}
    for name, v in models:
        by_model.setdefault(name, []).append(int(v))
    return {
        "buckets": [{"name": n, "objects": c[0], "bytes": c[1]}
                    for n, c in sorted(buckets.items())],
        "tables": [{"name": n, "version": cutoffs.get(loc.rstrip("/"), -1)}
                   for n, loc in tables],
        "models": [{"name": n, "versions": v} for n, v in sorted(by_model.items())],
        "pipelines": [{"name": n, "version": v} for n, v in pipelines],
    }
