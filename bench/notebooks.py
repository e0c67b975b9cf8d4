"""Benchmark: a Cumulo notebook, from create to a usable JupyterLab page, against starting
plain ``jupyter lab`` by hand on the same machine.

Requirements (the notebooks issue), measured in one run:

- create: ``client.notebooks.create(...)`` until ``/notebooks/NAME/lab`` answers JupyterLab's
  page (200, with its ``jupyter-config-data``) through Cumulo's proxy, with the signed-in
  browser's cookie: under 5 s.
- ratio: that time over plain ``jupyter lab --no-browser`` (a subprocess started here, with a
  token as a user would) until its own ``/lab`` answers the same page: at most 1.5.
- stop/start: ``client.notebooks.stop`` until the notebook is stopped (its job ended), and
  ``client.notebooks.start`` until the page answers through the proxy again: each under 3 s.

What it does:

1. starts a throwaway server (``cumulo up``, SQLite and local storage under a temporary home
   in ``bench/.data/``) and waits for the local cluster's fork server to be ready;
2. one untimed round of each side (the disk cache warm for both: JupyterLab reads the same
   files either way);
3. ``--repeat`` rounds, the sides taking turns going first: plain JupyterLab started and its
   page asked every 20 ms until it answers, then ended (SIGTERM, waited for); a notebook
   created and its page asked every 20 ms through the proxy, stopped, started, deleted;
4. prints the medians (and each round), then one JSON line.

Both sides start the same JupyterLab (the server's own, from this virtual environment) on the
same machine. Cumulo's path adds: the API's checks and the job's submission, the supervisor
handing the job to the local cluster, the notebook's launcher (the SDK, its files copied from
storage), JupyterLab reporting its address, and every request through the proxy.

Run it with ``make bench-notebooks``, or ``.venv/bin/python bench/notebooks.py [--repeat N]``.
The output ends with one JSON line, e.g. ``{"bench": "notebooks", "create_s": 3.1,
"jupyter_s": 2.4, "ratio": 1.29, "goal": "create < 5 s, ratio <= 1.5, stop/start < 3 s",
"met": true, ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from harness import DATA, TOKEN, free_port, start_server, stop_server, wait_preloaded

from cumulo import Client

POLL = 0.02  # seconds between asks for the page, on both sides
TIMEOUT = 180.0  # seconds a side may take before the bench gives up
GOALS = {"create_s": 5.0, "ratio": 1.5, "stop_s": 3.0, "start_s": 3.0}


def lab_page(answer: httpx.Response) -> bool:
    """JupyterLab's own page: not a login page, not Cumulo's "starting" page."""
    return answer.status_code == 200 and "jupyter-config-data" in answer.text


def wait_until(ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if time.monotonic() > deadline:
            sys.exit(f"{what} did not happen in {TIMEOUT:.0f}s")
        time.sleep(POLL)


def asked(http: httpx.Client, url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        return lab_page(http.get(url, headers=headers))
    except httpx.TransportError:
        return False


def plain_jupyter(work: Path) -> float:
    """Seconds from starting ``jupyter lab`` by hand to its /lab page answering."""
    jupyter = Path(sys.executable).parent / "jupyter"
    port, token = free_port(), secrets.token_urlsafe(16)
    root = Path(tempfile.mkdtemp(prefix="plain-", dir=work))
    command = [str(jupyter), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0:  # as here, in a container; Jupyter refuses root without it
        command.append("--allow-root")
    log = open(work / "plain-jupyter.log", "ab")  # noqa: SIM115 (closed below)
    began = time.monotonic()
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        with httpx.Client(timeout=10) as http:
            wait_until(lambda: asked(http, f"http://127.0.0.1:{port}/lab",
                                     {"authorization": f"token {token}"}), "plain JupyterLab")
        took = time.monotonic() - began
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
    return took


def cumulo_notebook(client: Client, browser: httpx.Client, name: str) -> dict[str, float]:
    """Seconds to create a notebook until its page answers through the proxy; to stop it; to
    start it again until the page answers."""
    page = f"/notebooks/{name}/lab"
    began = time.monotonic()
    client.notebooks.create(name, cpus=1, idle_timeout="1h")
    wait_until(lambda: asked(browser, page), f"notebook {name}'s JupyterLab page")
    create = time.monotonic() - began

    began = time.monotonic()
    client.notebooks.stop(name)
    wait_until(lambda: client.notebooks.get(name)["state"] == "stopped", f"{name} stopped")
    stop = time.monotonic() - began

    began = time.monotonic()
    client.notebooks.start(name)
    wait_until(lambda: asked(browser, page), f"notebook {name}'s page after a start")
    start = time.monotonic() - began
    client.notebooks.delete(name)
    wait_until(lambda: not any(n["name"] == name for n in client.notebooks.list()),
               f"{name} deleted")
    return {"create_s": create, "stop_s": stop, "start_s": start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds of each side")
    args = parser.parse_args()

    DATA.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="notebooks-", dir=DATA))
    proc, url = start_server(work)
    client = Client(url, token=TOKEN)
    # The signed-in browser: Cumulo's login cookie, the page asked for as a page.
    browser = httpx.Client(base_url=url, cookies={"cumulo_token": TOKEN}, timeout=30,
                           headers={"accept": "text/html,*/*"})
    plain: list[float] = []
    rounds: list[dict[str, float]] = []
    try:
        wait_preloaded(client)
        print("warming up (one untimed round of each side)...", flush=True)
        plain_jupyter(work)
        cumulo_notebook(client, browser, "warm-up")
        for i in range(args.repeat):
            sides: list[Callable[[], None]] = [
                lambda: plain.append(plain_jupyter(work)),
                lambda i=i: rounds.append(cumulo_notebook(client, browser, f"bench-{i}"))]
            for side in sides if i % 2 == 0 else sides[::-1]:
                side()
            r = rounds[-1]
            print(f"round {i + 1}/{args.repeat}: jupyter lab {plain[-1]:.2f} s; Cumulo create "
                  f"{r['create_s']:.2f} s, stop {r['stop_s']:.2f} s, start {r['start_s']:.2f} s",
                  flush=True)
    finally:
        browser.close()
        client.close()
        stop_server(proc)
        shutil.rmtree(work, ignore_errors=True)

    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    jupyter_s = statistics.median(plain)
    ratio = medians["create_s"] / jupyter_s
    figures = {"create_s": medians["create_s"], "ratio": ratio, "stop_s": medians["stop_s"],
               "start_s": medians["start_s"]}
    met = {key: figures[key] <= goal if key == "ratio" else figures[key] < goal
           for key, goal in GOALS.items()}
    print()
    print(f"notebooks: medians of {args.repeat} rounds, {os.cpu_count()} CPUs")
    print(f"{'measure':<40}{'median':>9}{'goal':>10}")
    print(f"{'plain jupyter lab -> /lab page':<40}{jupyter_s:>8.2f}s{'':>10}")
    print(f"{'Cumulo create -> /lab through proxy':<40}{medians['create_s']:>8.2f}s"
          f"{'< 5 s':>10}  {'met' if met['create_s'] else 'not met'}")
    print(f"{'ratio (Cumulo / plain)':<40}{ratio:>9.2f}{'<= 1.5':>10}  "
          f"{'met' if met['ratio'] else 'not met'}")
    print(f"{'stop -> stopped':<40}{medians['stop_s']:>8.2f}s{'< 3 s':>10}  "
          f"{'met' if met['stop_s'] else 'not met'}")
    print(f"{'start -> /lab through proxy':<40}{medians['start_s']:>8.2f}s{'< 3 s':>10}  "
          f"{'met' if met['start_s'] else 'not met'}")
    print(json.dumps({
        "bench": "notebooks", "create_s": round(medians["create_s"], 2),
        "jupyter_s": round(jupyter_s, 2), "ratio": round(ratio, 2),
        "stop_s": round(medians["stop_s"], 2), "start_s": round(medians["start_s"], 2),
        "goal": "create < 5 s, ratio <= 1.5, stop/start < 3 s", "met": all(met.values()),
        "rounds": args.repeat, "stat": "median", "cpus": os.cpu_count(),
        "jupyter_runs": [round(s, 2) for s in plain],
        "create_runs": [round(r["create_s"], 2) for r in rounds],
        "stop_runs": [round(r["stop_s"], 2) for r in rounds],
        "start_runs": [round(r["start_s"], 2) for r in rounds]}))


if __name__ == "__main__":
    main()
