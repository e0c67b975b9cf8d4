"""A restore drill: prove that a backup restores, and measure how long it takes.

``cumulo backup drill`` restores a backup (the latest by default) into a scratch home, starts a
server on it, and checks through that server's API what users would use: every bucket object
downloads with the SHA-256 the backup read, every table reads at every version its history
lists, every registered model version is there. It reports the recovery point (how old the
backup is: what a disaster now would lose) and the recovery time (from the start of the restore
to the server answering), then stops the server and removes the scratch home.

The scratch server gets a token of its own through :func:`cumulo.access.breakglass.
break_glass` on the restored database (recorded in that copy's audit log): the drill needs no
secret of the source's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cumulo.dr.backup import restore_backup
from cumulo.dr.repo import Repository
from cumulo.errors import CumuloError

__all__ = ["Drill", "run_drill"]

START_TIMEOUT = 120.0


@dataclass
class Drill:
    backup: str
    moment: str
    rpo_seconds: float  # the backup's age when the drill began
    rto_seconds: float  # restore started -> the restored server answered
    restore_seconds: float
    checked: dict[str, int] = field(default_factory=dict)  # objects, table versions, models
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_drill(repo: Repository, snapshot_id: str = "latest", *, keep: Path | None = None,
              say: Callable[[str], None] = lambda _: None,
              serving: Callable[[subprocess.Popen[bytes] | None], None] = lambda _: None
              ) -> Drill:
    """Restore, serve, check; the figures and any problem found. ``serving`` is told the
    scratch server's process when it starts and None when it is stopped (so that a control
    plane that stops meanwhile can stop it too)."""
    manifest = repo.snapshot(snapshot_id)
    began = time.monotonic()
    moment = datetime.fromisoformat(manifest["created_at"])
    rpo = (datetime.now(UTC) - moment).total_seconds()
    scratch = keep or Path(tempfile.mkdtemp(prefix="cumulo-drill-"))
    home = scratch / "home"
    try:
        say(f"restoring {manifest['id']} into {home}")
        restored = restore_backup(repo, manifest["id"], home)
        restore_s = time.monotonic() - began
        problems = [f"not restored: {p.item} ({p.why})" for p in restored.problems]
        token = _token_for(home)
        port = _free_port()
        say("starting a server on the restored home")
        proc, url = _serve(home, port)
        serving(proc)
        try:
            rto = time.monotonic() - began
            drill = Drill(manifest["id"], manifest["created_at"], round(rpo, 3), round(rto, 3),
                          round(restore_s, 3), problems=problems)
            say("checking objects, table versions and models through its API")
            _check(url, token, manifest, drill)
            return drill
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            serving(None)
    finally:
        if keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


def _token_for(home: Path) -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from cumulo.access.breakglass import break_glass

    engine = create_engine(f"sqlite:///{home / 'cumulo.db'}")
    try:
        with sessionmaker(engine)() as session:
            return break_glass(session, "admin").token
    finally:
        engine.dispose()


def _serve(home: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith("CUMULO_")}
    env.update({"CUMULO_HOME": str(home), "CUMULO_PORT": str(port), "CUMULO_PRELOAD": "none",
                "CUMULO_SERVING_PRELOAD": "0", "CUMULO_HOST": "127.0.0.1"})
    log = open(home.parent / "drill-server.log", "ab")  # noqa: SIM115 - the server's life
    proc = subprocess.Popen([sys.executable, "-m", "cumulo", "up"], env=env, stdout=log,
                            stderr=log, cwd=home.parent, start_new_session=True)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (home.parent / "drill-server.log").read_text(errors="replace")[-2000:]
            raise CumuloError(f"the server on the restored home did not start:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code < 500:
                return proc, url
        time.sleep(0.1)
    proc.kill()
    raise CumuloError(f"the server on the restored home did not answer in {START_TIMEOUT:.0f}s")


def _check(url: str, token: str, manifest: dict[str, Any], drill: Drill) -> None:
    from cumulo.client import Client

    shas = {f["path"]: f.get("sha256") for f in manifest["files"]
            if f["path"].startswith("buckets/")}
    objects = versions = models = 0
    with Client(url, token=token) as c:
        for bucket in c.files.buckets():
            for obj in c.files.list(bucket["name"], recursive=True).objects:
                key = obj.key
                path = f"buckets/{bucket['name']}/{key}"
                try:
                    body = c.files.read_bytes(f"{bucket['name']}/{key}")
                except CumuloError as exc:
                    drill.problems.append(f"object {bucket['name']}/{key}: {exc.message}")
                    continue
                want = shas.get(path)
                if want is not None and hashlib.sha256(body).hexdigest() != want:
                    drill.problems.append(f"object {bucket['name']}/{key}: its bytes differ "
                                          "from what the backup read")
                objects += 1
        for table in c.tables.list():
            name = table["name"] if "." in table["name"] else \
                f"{table['database']}.{table['name']}"
            try:
                history = c.tables.history(name)
                for entry in history:
                    c.tables.read(name, version=entry["version"], limit=1)
                    versions += 1
            except CumuloError as exc:
                drill.problems.append(f"table {name}: {exc.message}")
        for model in c.models.list():
            try:
                models += len(c.models.versions(model["name"]))
            except CumuloError as exc:
                drill.problems.append(f"model {model['name']}: {exc.message}")
    drill.checked = {"objects": objects, "table_versions": versions, "model_versions": models}
