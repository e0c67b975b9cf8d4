"""Notebooks against a real server: JupyterLab run as a job, opened through Cumulo's proxy with
the owner's login cookie (HTTP and a kernel's WebSocket), refused to others, running on
through a restart of the control plane, stopped and started with its files kept, culled when
idle, and every bad input refused with nothing written. JupyterLab takes seconds to start, and
so does a server: the module starts few of either."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from cumulo.errors import Conflict, Forbidden, Invalid, NotFound
from tests.notebooks.jupyter import (
    LOGIN_COOKIE,
    browser,
    eventually,
    execute,
    wait_lab,
    wait_state,
)
from tests.services import Cumulo, start_cumulo

BOB = "cml_test-bob-notebooks-0123456789abcdef"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    srv = start_cumulo(tmp_path_factory.mktemp("notebooks") / ".cumulo")
    srv.add_user("bob", BOB)
    yield srv
    if srv.proc.poll() is not None:  # killed by the restart test, which failed to restart it
        restarted = start_cumulo(srv.home, port=int(srv.url.rsplit(":", 1)[1]))
        srv.proc, srv.log = restarted.proc, restarted.log
    # A notebook's JupyterLab is a job: it would outlive this server until its idle timeout.
    client = srv.client()
    for nb in client.notebooks.list():
        client.notebooks.delete(nb["name"])
    srv.stop()


@pytest.fixture(scope="module")
def lab(server: Cumulo) -> dict[str, Any]:
    """One notebook, created and opened; how long create -> a usable JupyterLab page took."""
    page = browser(server, server.token)
    began = time.monotonic()
    made = server.client().notebooks.create("lab", cpus=1, idle_timeout="1h")
    assert made["state"] == "starting" and made["url"] == "/notebooks/lab/"
    wait_lab(page, "lab")
    took = time.monotonic() - began
    print(f"\nnotebook create -> usable JupyterLab page: {took:.2f} s")
    return {"took": took, "job_id": made["job_id"]}


def test_create_opens_jupyterlab_and_runs_code_over_the_proxy(server: Cumulo,
                                                               lab: dict[str, Any]) -> None:
    assert lab["took"] < 15  # the figure itself is printed; docs/notebooks.md has it
    page = browser(server, server.token)
    # The job is the notebook's: listed in jobs, tagged, running.
    jobs = server.client().jobs.list(tag="notebook:lab")
    assert [j.id for j in jobs] == [lab["job_id"]] and jobs[0].state == "running"
    nb = server.client().notebooks.get("lab")
    assert nb["state"] == "running" and nb["owner"] == "admin" and nb["idle_timeout"] == 3600
    assert "secret" not in nb and "address" not in nb
    # The page does not carry Jupyter's token: only the proxy knows it.
    text = page.get("/notebooks/lab/lab").text
    config = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', text,
                                  re.S).group(1))  # type: ignore[union-attr]
    assert config["token"] == "" and config["baseUrl"] == "/notebooks/lab/"
    # A kernel through Jupyter's REST API, code run over its WebSocket, both through Cumulo.
    made = page.post("/notebooks/lab/api/kernels", json={"name": "python3"})
    assert made.status_code == 201, made.text
    kernel = made.json()["id"]
    result = execute(server, "lab", kernel, "1+1", token=server.token, origin=server.url)
    assert result["msg_type"] == "execute_result", result
    assert result["content"]["data"]["text/plain"] == "2"
    # The kernel works as the notebook's user: the SDK is configured, nothing typed.
    who = execute(server, "lab", kernel, "import cumulo; cumulo.Client().whoami()['user']",
                  token=server.token, origin=server.url)
    assert who["content"]["data"]["text/plain"] == "'admin'", who
    mlflow = execute(server, "lab", kernel, "import os; os.environ['MLFLOW_TRACKING_URI']",
                     token=server.token, origin=server.url)
    assert mlflow["content"]["data"]["text/plain"] == f"'{server.url}/mlflow'", mlflow
    assert page.delete(f"/notebooks/lab/api/kernels/{kernel}").status_code == 204


def test_a_browser_not_signed_in_is_sent_to_sign_in(server: Cumulo, lab: dict[str, Any]) -> None:
    r = httpx.get(f"{server.url}/notebooks/lab/lab", headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    assert httpx.get(f"{server.url}/notebooks/lab/api/kernels").status_code == 401


def test_a_websocket_from_another_site_is_refused(server: Cumulo, lab: dict[str, Any]) -> None:
    with pytest.raises(InvalidStatus) as refused:
        execute(server, "lab", "none", "1", token=server.token, origin="https://evil.example")
    assert refused.value.response.status_code == 403


def test_another_user_gets_403_until_it_is_shared(server: Cumulo, lab: dict[str, Any]) -> None:
    bob = browser(server, BOB)
    r = bob.get("/notebooks/lab/lab")
    assert r.status_code == 403 and "notebooks:Open" in r.text
    assert bob.get("/notebooks/lab/api/contents").status_code == 403
    with pytest.raises(InvalidStatus) as refused:
        execute(server, "lab", "none", "1", token=BOB, origin=server.url)
    assert refused.value.response.status_code == 403
    bob_sdk = server.client(BOB)
    with pytest.raises(Forbidden):
        bob_sdk.notebooks.get("lab")
    with pytest.raises(Forbidden):
        bob_sdk.notebooks.stop("lab")
    assert bob_sdk.notebooks.list() == []
    # Shared: bob opens it (and sees it), but may not stop it. (The proxy reads a notebook's
    # route, and rights, again once a second: each change shows within about a second.)
    def opens() -> bool:
        r = bob.get("/notebooks/lab/lab")
        assert r.status_code in (200, 403), r.text[:500]
        return r.status_code == 200 and "JupyterLab" in r.text

    assert server.client().notebooks.share("lab", "bob")["shared_with"] == ["bob"]
    eventually(opens, "bob opens the notebook shared with him")
    assert [n["name"] for n in bob_sdk.notebooks.list()] == ["lab"]
    with pytest.raises(Forbidden):
        bob_sdk.notebooks.stop("lab")
    server.client().notebooks.unshare("lab", "bob")
    eventually(lambda: not opens(), "bob is refused the notebook unshared")
    assert bob.get("/notebooks/lab/lab").status_code == 403
    # Or a grant, decided at the same point: a policy allowing notebooks:Open on it.
    admin = server.client()
    admin.policies.create("open-lab", document={"statements": [{
        "effect": "allow", "actions": ["notebooks:Open"], "resources": ["notebook/lab"]}]})
    admin.access.grant(user="bob", policy="open-lab")
    eventually(opens, "bob opens the notebook with a grant")
    admin.access.revoke(user="bob", policy="open-lab")
    eventually(lambda: not opens(), "bob is refused the notebook, the grant revoked")
    assert bob.get("/notebooks/lab/lab").status_code == 403


def test_a_running_notebook_survives_a_restart_of_the_control_plane(
        server: Cumulo, lab: dict[str, Any]) -> None:
    """A notebook outlives its control plane: killed and started again, Cumulo finds the
    running JupyterLab from the database (its job, its address) and opens it as before, kernel
    and all. The module's own server is the one restarted (a second server and JupyterLab
    would cost seconds): the tests after it run against the restarted control plane, the next
    one stopping this very notebook there ('stopped by admin') and starting it again."""
    port = int(server.url.rsplit(":", 1)[1])
    # A browser tab that stays open across the restart (not closed with the server).
    page = httpx.Client(base_url=server.url, cookies={LOGIN_COOKIE: server.token}, timeout=30,
                        headers={"accept": "text/html,*/*", "origin": server.url})
    try:
        kernel = page.post("/notebooks/lab/api/kernels", json={"name": "python3"}).json()["id"]
        assert execute(server, "lab", kernel, "x = 41; x + 1", token=server.token,
                       origin=server.url)["content"]["data"]["text/plain"] == "42"
        server.stop(signal.SIGKILL)

        restarted = start_cumulo(server.home, port=port)
        server.proc, server.log, server.env = restarted.proc, restarted.log, restarted.env
        assert wait_state(server, "lab", ("running",))["state"] == "running"
        assert server.client().notebooks.get("lab")["job_id"] == lab["job_id"]
        assert "JupyterLab" in page.get("/notebooks/lab/lab").text
        # The same kernel, its state kept: the same process ran on.
        assert execute(server, "lab", kernel, "x", token=server.token,
                       origin=server.url)["content"]["data"]["text/plain"] == "41"
        assert page.delete(f"/notebooks/lab/api/kernels/{kernel}").status_code == 204
    finally:
        page.close()


def test_stop_shows_a_stopped_page_and_start_brings_the_files_back(
        server: Cumulo, lab: dict[str, Any]) -> None:
    page = browser(server, server.token)
    notebook = {"type": "notebook", "format": "json", "content": {
        "cells": [{"cell_type": "code", "source": "x = 41 + 1", "metadata": {},
                   "outputs": [], "execution_count": None}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}
    saved = page.put("/notebooks/lab/api/contents/kept.ipynb", json=notebook)
    assert saved.status_code in (200, 201), saved.text
    # Written through to storage: in the owner's folder, as Files lists it.
    listed = server.client().files.list("notebooks/admin/")
    assert [o.key for o in listed.objects] == ["admin/kept.ipynb"]

    began = time.monotonic()
    assert server.client().notebooks.stop("lab")["state"] == "stopping"
    stopped = wait_state(server, "lab", ("stopped",))
    stop_took = time.monotonic() - began
    assert stopped["reason"] == "stopped by admin" and stopped["stopped_at"]
    assert server.client().jobs.get(lab["job_id"]).state == "cancelled"
    with pytest.raises(Conflict, match="already stopped"):
        server.client().notebooks.stop("lab")
    # Its URL says so, when and why, with a Start button: no blank page, no 502 (once the
    # proxy has read the route again: it does once a second).
    eventually(lambda: "is stopped" in page.get("/notebooks/lab/lab").text,
               "the stopped notebook's page says so")
    r = page.get("/notebooks/lab/lab")
    assert r.status_code == 200
    assert "is stopped" in r.text and "stopped by admin" in r.text
    assert 'action="/notebooks/lab/_cumulo/start"' in r.text and "<button" in r.text
    # JupyterLab's own calls (a tab left open) get an error that says so, not a page.
    api = page.get("/notebooks/lab/api/kernels", headers={"accept": "application/json"})
    assert api.status_code == 409 and "is stopped (stopped by admin)" in api.text

    began = time.monotonic()
    started = page.post("/notebooks/lab/_cumulo/start", follow_redirects=False)
    assert started.status_code == 303 and started.headers["location"] == "/notebooks/lab/lab"
    starting = page.get("/notebooks/lab/lab")  # starting: a page that reloads itself
    assert "JupyterLab" in starting.text or (
        starting.status_code == 503 and 'http-equiv="refresh"' in starting.text)
    wait_lab(page, "lab")
    start_took = time.monotonic() - began
    print(f"\nnotebook stop: {stop_took:.2f} s, start -> usable page: {start_took:.2f} s")
    nb = server.client().notebooks.get("lab")
    assert nb["state"] == "running" and nb["job_id"] != lab["job_id"] and nb["reason"] is None
    back = page.get("/notebooks/lab/api/contents/kept.ipynb")
    assert back.status_code == 200, back.text
    assert back.json()["content"]["cells"][0]["source"] == "x = 41 + 1"
    with pytest.raises(Conflict, match="already running"):
        server.client().notebooks.start("lab")
    # Deleted from JupyterLab: gone from storage too.
    assert page.delete("/notebooks/lab/api/contents/kept.ipynb").status_code == 204
    assert server.client().files.list("notebooks/admin/").objects == []


def test_an_idle_notebook_is_stopped_and_says_why(server: Cumulo, lab: dict[str, Any]) -> None:
    server.client().notebooks.create("sleepy", idle_timeout="2s")
    wait_state(server, "sleepy", ("running",))
    # A tab left open polls JupyterLab's API: that is no activity, it stops all the same.
    page = browser(server, server.token)
    deadline = time.monotonic() + 30
    while page.get("/notebooks/sleepy/api/kernels",
                   headers={"accept": "application/json"}).status_code == 200:
        assert time.monotonic() < deadline, "an idle notebook polled by a tab never stopped"
        time.sleep(0.3)
    nb = wait_state(server, "sleepy", ("stopped", "failed"), timeout=30)
    assert nb["state"] == "stopped" and nb["reason"] == "idle for 2s", nb
    assert nb["stopped_at"] is not None
    out = server.cli("notebooks", "show", "sleepy")
    assert out.returncode == 0 and "idle for 2s" in out.stdout
    server.client().notebooks.delete("sleepy")
    with pytest.raises(NotFound):
        server.client().notebooks.get("sleepy")


def test_a_notebook_waiting_for_room_says_so(server: Cumulo, lab: dict[str, Any]) -> None:
    client = server.client()
    client.clusters.create("tiny", max_cpus=1, max_workers=1)
    busy = client.jobs.run(command=["sleep", "60"], cluster="tiny")
    try:
        client.notebooks.create("queued", cluster="tiny")
        r = browser(server, server.token).get("/notebooks/queued/lab")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "Starting JupyterLab" in r.text and 'http-equiv="refresh"' in r.text
        assert "is queued: cluster &#x27;tiny&#x27; has no room" in r.text
        assert client.notebooks.get("queued")["state"] == "starting"
    finally:
        client.notebooks.delete("queued")
        busy.cancel()


def test_bad_input_is_refused_and_nothing_is_written(server: Cumulo,
                                                     lab: dict[str, Any]) -> None:
    client = server.client()
    before = ([n["name"] for n in client.notebooks.list()], len(client.jobs.list()))
    with pytest.raises(NotFound, match="no cluster 'nowhere'"):
        client.notebooks.create("bad1", cluster="nowhere")
    with pytest.raises(Invalid, match="--cpus: the notebook asks for 1000 CPUs, but cluster "
                                      "'local' has at most"):
        client.notebooks.create("bad2", cpus=1000)
    with pytest.raises(Invalid, match=r"--memory: .* bytes of memory, but cluster 'local'"):
        client.notebooks.create("bad3", memory="100T")
    with pytest.raises(Invalid, match="--gpus"):
        client.notebooks.create("bad4", gpus=64)
    with pytest.raises(Conflict, match="already a notebook 'lab'"):
        client.notebooks.create("lab")
    for name in ("Bad_Name", "-x", "a" * 64, "a/b"):
        with pytest.raises(Invalid, match="notebook name"):
            client.notebooks.create(name)
    with pytest.raises(Invalid, match="--idle-timeout"):
        client.notebooks.create("bad5", idle_timeout="soon")
    with pytest.raises(NotFound, match="no notebook 'nothing'"):
        client.notebooks.start("nothing")
    with pytest.raises(NotFound, match="no user 'nobody'"):
        client.notebooks.share("lab", "nobody")
    assert ([n["name"] for n in client.notebooks.list()], len(client.jobs.list())) == before
    # Only the notebook's own job may say where it listens.
    with pytest.raises(Forbidden, match="only the job"):
        client.transport.json("POST", "/api/v1/notebooks/lab/report",
                              json={"address": "127.0.0.1:1", "secret": "x"})


def test_cli(server: Cumulo, lab: dict[str, Any]) -> None:
    out = server.cli("notebooks", "ls")
    assert out.returncode == 0 and "lab" in out.stdout and "running" in out.stdout
    out = server.cli("notebooks", "open", "lab")
    assert out.returncode == 0 and out.stdout.strip() == f"{server.url}/notebooks/lab/lab"
    out = server.cli("notebooks", "show", "lab", "--json")
    assert json.loads(out.stdout)["state"] == "running"
    out = server.cli("notebooks", "create", "x", "--cluster", "nowhere")
    assert out.returncode != 0 and "no cluster 'nowhere'" in out.stderr
    # rm stops its job; the files stay.
    job = server.client().notebooks.get("lab")["job_id"]
    out = server.cli("notebooks", "rm", "lab")
    assert out.returncode == 0, out.stderr
    assert server.client().jobs.get(job).wait(30)["state"] == "cancelled"
    assert server.cli("notebooks", "ls", "--json").stdout.strip() == "[]"
    page = browser(server, server.token)
    eventually(lambda: page.get("/notebooks/lab/lab").status_code == 404,
               "the removed notebook's page is 404")


def test_a_notebooks_job_is_forked_with_jupyter_imported() -> None:
    """Where the fork server preloads (the default), a notebook's job is forked from it, with
    JupyterLab imported: seconds saved at each start."""
    from cumulo.compute.executors.local import AUTO, uses_preloaded
    from cumulo.forkserver import parse_preload

    preloaded = parse_preload("auto", AUTO)
    assert {"jupyter_server.serverapp", "jupyterlab.labapp"} <= set(preloaded)
    assert uses_preloaded(["python", "-m", "cumulo.notebooks.lab"], None, preloaded)
    # The launcher itself imports nothing of Jupyter: preloading it never fails.
    import subprocess
    import sys

    code = "import sys, cumulo.notebooks.lab; print('jupyter_server' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
