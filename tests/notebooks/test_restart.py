"""A notebook outlives its control plane: killed and started again, Cumulo finds the running
JupyterLab from the database (its job, its address) and opens it as before, kernel and all."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.notebooks.jupyter import LOGIN_COOKIE, execute, wait_lab, wait_state
from tests.services import start_cumulo


def test_a_running_notebook_survives_a_restart_of_the_control_plane(tmp_path: Path) -> None:
    home = tmp_path / ".cumulo"
    server = start_cumulo(home)
    port = int(server.url.rsplit(":", 1)[1])
    server.client().notebooks.create("kept")
    page = httpx.Client(base_url=server.url, cookies={LOGIN_COOKIE: server.token}, timeout=30,
                        headers={"accept": "text/html,*/*", "origin": server.url})
    try:
        wait_lab(page, "kept")
        kernel = page.post("/notebooks/kept/api/kernels", json={"name": "python3"}).json()["id"]
        assert execute(server, "kept", kernel, "x = 41; x + 1", token=server.token,
                       origin=server.url)["content"]["data"]["text/plain"] == "42"
        server.stop(signal.SIGKILL)

        server = start_cumulo(home, port=port)
        assert wait_state(server, "kept", ("running",))["state"] == "running"
        assert "JupyterLab" in page.get("/notebooks/kept/lab").text
        # The same kernel, its state kept: the same process ran on.
        assert execute(server, "kept", kernel, "x", token=server.token,
                       origin=server.url)["content"]["data"]["text/plain"] == "41"
        server.client().notebooks.stop("kept")
        assert wait_state(server, "kept", ("stopped",))["reason"] == "stopped by admin"
    finally:
        page.close()
        server.stop()
