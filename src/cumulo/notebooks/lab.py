"""The process a notebook's job runs: JupyterLab (jupyter-server's ``ServerApp`` with the
``jupyterlab`` extension), in this process.

``python -m cumulo.notebooks.lab --name NAME --folder notebooks/alice/ --idle-timeout 3600
--ip 127.0.0.1``, run by the job the notebooks service submits. It fills its working folder
from the user's folder in storage, starts JupyterLab under ``/notebooks/NAME/`` with a token
made for this run, tells the control plane where it listens and that token (with the job's own
token: only this job may), and serves until it is stopped (the job cancelled: SIGTERM) or it
has been idle for ``--idle-timeout`` (jupyter-server's own culling of idle kernels, then of
the server itself), which it reports before it ends. Inside, the job's environment (its
token, ``CUMULO_URL``, MLflow's tracking URI) is every kernel's: the SDK, the CLI and MLflow
work as the user with nothing typed.

Only what starting needs is imported before JupyterLab listens, and nothing of Jupyter at
import: the fork server preloads this module (and Jupyter, where it is installed), so that a
notebook's job is forked with it all imported (``compute/executors/local.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _fill(client: Any, folder: str, root: Path) -> None:
    """The user's notebook files, from storage into the working folder."""
    from cumulo.errors import NotFound

    with contextlib.suppress(NotFound):  # nothing stored yet
        client.files.sync(folder, root)


def _host(ip: str) -> str:
    if ip not in ("0.0.0.0", "::"):
        return ip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:  # the address this node is reached at (no packet is sent)
            probe.connect(("10.255.255.255", 1))
            return str(probe.getsockname()[0])
        except OSError:
            return socket.gethostbyname(socket.gethostname())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cumulo.notebooks.lab")
    parser.add_argument("--name", required=True)
    parser.add_argument("--folder", required=True, help="bucket/prefix/ of the user's files")
    parser.add_argument("--idle-timeout", type=float, default=3600.0)
    parser.add_argument("--ip", default="127.0.0.1")
    args = parser.parse_args(argv)

    from cumulo import jobenv
    from cumulo.client import Client

    try:
        from cumulo.notebooks.server import NotebookServer, config
    except ImportError as exc:
        print(f"cumulo: notebooks need JupyterLab ({exc}): pip install 'cumulo[notebooks]' "
              "(into the notebook's --env, where it has one)", file=sys.stderr)
        return 1

    job = jobenv.current()
    base = job.job_dir if job is not None and job.job_dir is not None else \
        Path(tempfile.mkdtemp(prefix="cumulo-notebook-"))
    root = base / "notebook"
    root.mkdir(parents=True, exist_ok=True)
    client = Client()
    _fill(client, args.folder, root)
    secret = secrets.token_urlsafe(32)

    app = NotebookServer.instance(config=config(name=args.name, ip=args.ip, root=root,
                                                 secret=secret, folder=args.folder,
                                                 idle_timeout=args.idle_timeout))
    app.initialize(argv=[])  # listening from here on (its loop serves once started)
    # JupyterLab would put its token in every page: the proxy adds it, the browser never
    # needs it (as JupyterHub does).
    app.web_app.settings.setdefault("page_config_data", {})["token"] = ""
    path = f"/api/v1/notebooks/{args.name}/report"
    client.transport.json("POST", path, json={"address": f"{_host(args.ip)}:{app.port}",
                                              "secret": secret})
    print(f"cumulo: JupyterLab for notebook {args.name} listens on port {app.port}", flush=True)
    app.start()  # until stopped: idle, SIGTERM (the job cancelled), or its File menu
    if app.stopped_idle:
        ended = "idle"
    elif not app.signalled:
        ended = "shutdown"
    else:
        return 0
    try:
        client.transport.json("POST", path, json={"ended": ended})
    except Exception as exc:  # the control plane away: it reads the job's end instead
        print(f"cumulo: could not report the notebook's end: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
