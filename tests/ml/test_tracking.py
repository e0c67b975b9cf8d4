"""MLflow inside: the tracking server behind Cumulo's tokens, used by jobs and by the stock
MLflow client."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.services import Cumulo

TRAIN = """
import mlflow
from sklearn.linear_model import LogisticRegression

mlflow.set_experiment("churn")
with mlflow.start_run(run_name="first") as run:
    mlflow.log_param("C", 1.0)
    for step, loss in enumerate([0.9, 0.5, 0.3]):
        mlflow.log_metric("loss", loss, step=step)
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    mlflow.sklearn.log_model(model, name="model")
    print("run", run.info.run_id)
"""


def test_a_job_logs_to_mlflow_and_the_stock_client_reads_it(
        tracked: Cumulo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    code = tmp_path / "src"
    code.mkdir()
    (code / "train.py").write_text(TRAIN)
    import pyarrow as pa

    c = tracked.client()
    c.tables.create_database("ml")
    c.tables.write("ml.points", pa.table({"x": [0.0, 1.0]}))
    job = c.jobs.run("train.py", code=code, inputs={"points": "ml.points"})
    info = job.wait(300)
    assert info["state"] == "succeeded", info["log_tail"]
    run_id = next(line for line in job.logs() if line.startswith("run ")).split()[1]

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", tracked.token)
    mlflow.set_tracking_uri(f"{tracked.url}/mlflow")
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params == {"C": "1.0"} and run.data.metrics["loss"] == 0.3
    # Lineage, tagged by Cumulo's run context provider: the job, its code, its data.
    assert run.data.tags["cumulo.job_id"] == job.id
    assert run.data.tags["cumulo.code"] == info["code"]
    assert run.data.tags["cumulo.input.points"] == "ml.points@v0"
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [0.9, 0.5, 0.3]
    assert client.get_experiment(run.info.experiment_id).name == "churn"
    model = mlflow.sklearn.load_model(f"runs:/{run_id}/model")  # artifacts through the proxy
    assert list(model.predict([[0.0], [3.0]])) == [0, 1]
    # MLflow's artifacts are kept under the storage root.
    assert any((tracked.home / "storage" / "mlflow").rglob("MLmodel"))


def test_mlflow_needs_a_token(tracked: Cumulo) -> None:
    url = f"{tracked.url}/mlflow/api/2.0/mlflow/experiments/search?max_results=1"
    assert httpx.get(url).status_code == 401
    bad = httpx.get(url, headers={"authorization": "Bearer cml_wrong-token-000000000000000"})
    assert bad.status_code == 401
    good = httpx.get(url, headers={"authorization": f"Bearer {tracked.token}"}, timeout=120)
    assert good.status_code == 200 and "experiments" in good.json()


# --- MLflow's web UI in a browser ----------------------------------------------------------------

PAGE = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def _log_in(tracked: Cumulo, token: str, next_: str = "/mlflow/") -> httpx.Response:
    return httpx.post(f"{tracked.url}/login", data={"token": token, "next": next_})


def test_a_browser_without_a_token_is_sent_to_log_in(tracked: Cumulo) -> None:
    page = httpx.get(f"{tracked.url}/mlflow/?x=1", headers=PAGE, timeout=120)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fmlflow%2F%3Fx%3D1"
    form = httpx.get(f"{tracked.url}{page.headers['location']}")
    assert form.status_code == 200 and form.headers["content-type"].startswith("text/html")
    assert 'name="token"' in form.text and 'value="/mlflow/?x=1"' in form.text
    assert "frame-ancestors 'none'" in form.headers["content-security-policy"]
    # Not a browser asking for a page (a script, the UI's own ajax calls): 401 as ever.
    for headers in ({}, {"accept": "application/json"}):
        api = httpx.get(f"{tracked.url}/mlflow/ajax-api/2.0/mlflow/experiments/search"
                        "?max_results=1", headers=headers)
        assert api.status_code == 401 and api.json()["error"]["code"] == "unauthorized"


def test_the_ui_works_with_the_login_cookie(tracked: Cumulo) -> None:
    refused = _log_in(tracked, "cml_wrong-token-000000000000000")
    assert refused.status_code == 401 and "set-cookie" not in refused.headers
    assert "That token was refused: the token is not valid" in refused.text

    logged_in = _log_in(tracked, tracked.token)
    assert logged_in.status_code == 303 and logged_in.headers["location"] == "/mlflow/"
    cookie = logged_in.headers["set-cookie"]
    assert cookie.startswith(f"cumulo_token={tracked.token};")
    assert all(part in cookie for part in ("HttpOnly", "SameSite=strict", "Path=/"))

    # A deployment's own name, not loopback: MLflow's UI must not be refused as cross-origin.
    site = {"host": "cumulo.example.com:8443"}
    own = {**site, "origin": "https://cumulo.example.com:8443"}
    with httpx.Client(base_url=tracked.url, cookies=logged_in.cookies, timeout=120) as browser:
        index = browser.get("/mlflow/", headers={**PAGE, **site})
        assert index.status_code == 200 and "<title>MLflow</title>" in index.text
        script = re.search(r'src="(static-files/static/js/main\.[0-9a-f]+\.js)"', index.text)
        assert script is not None
        assert browser.get(f"/mlflow/{script.group(1)}", headers=site).status_code == 200
        created = browser.post("/mlflow/ajax-api/2.0/mlflow/experiments/create",
                               json={"name": "from the browser"}, headers=own)
        assert created.status_code == 200, created.text
        found = browser.post("/mlflow/ajax-api/2.0/mlflow/experiments/search",
                             json={"max_results": 100}, headers=own)
        assert found.status_code == 200
        assert "from the browser" in [e["name"] for e in found.json()["experiments"]]

        # A page of another site (or one that hides where it is from) cannot use the cookie
        # to change anything.
        for headers in ({**site, "origin": "https://evil.example"},
                        {**site, "referer": "https://evil.example/page"}, site):
            forged = browser.post("/mlflow/ajax-api/2.0/mlflow/experiments/create",
                                  json={"name": "forged"}, headers=headers)
            assert forged.status_code == 403
            assert "must come from this site's own pages" in forged.json()["error"]["message"]
        # The same request with a bearer token is an API client's, and works as before.
        api = browser.post("/mlflow/api/2.0/mlflow/experiments/search",
                           json={"max_results": 100},
                           headers={"authorization": f"Bearer {tracked.token}"})
        assert api.status_code == 200
        assert "forged" not in [e["name"] for e in api.json()["experiments"]]

        out = browser.get("/logout")
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert "cumulo_token" not in browser.cookies
        assert browser.get("/mlflow/", headers=PAGE).status_code == 303


def test_a_revoked_token_sends_the_browser_back_to_log_in(tracked: Cumulo) -> None:
    c = tracked.client()
    secret = c.tokens.create("browser-revoked")["token"]
    cookies = _log_in(tracked, secret).cookies
    assert httpx.get(f"{tracked.url}/mlflow/", headers=PAGE, cookies=cookies,
                     timeout=120).status_code == 200
    c.tokens.revoke("browser-revoked")
    again = httpx.get(f"{tracked.url}/mlflow/", headers=PAGE, cookies=cookies)
    assert again.status_code == 303 and again.headers["location"].startswith("/login?next=")
    api = httpx.get(f"{tracked.url}/mlflow/ajax-api/2.0/mlflow/experiments/search"
                    "?max_results=1", cookies=cookies)
    assert api.status_code == 401 and "revoked" in api.json()["error"]["message"]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/",
                                    "/\\evil.example", "/\t/evil.example", "evil.example",
                                    "javascript:alert(1)"])
def test_logging_in_never_leads_to_another_site(tracked: Cumulo, target: str) -> None:
    page = httpx.get(f"{tracked.url}/login", params={"next": target})
    assert page.status_code == 400 and "not a path on this site" in page.text
    posted = _log_in(tracked, tracked.token, next_=target)
    assert posted.status_code == 400 and "set-cookie" not in posted.headers


def test_the_login_form_cannot_be_sent_from_another_site(tracked: Cumulo) -> None:
    forged = httpx.post(f"{tracked.url}/login", data={"token": tracked.token},
                        headers={"origin": "https://evil.example"})
    assert forged.status_code == 403 and "set-cookie" not in forged.headers


# --- MLflow's own door -------------------------------------------------------------------------


def _mlflow_group(home: Path) -> list[int]:
    from cumulo.ml.tracking import _group_members

    pgid = int((home / "mlflow.pid").read_text().split()[0])
    return _group_members(pgid)


def test_mlflow_has_no_port_and_dies_with_a_killed_control_plane(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """MLflow checks no tokens, so it listens on a socket only the home's owner can open, never
    on a port; and a control plane killed without a chance to stop it takes it along."""
    import signal
    import stat
    import time

    import psutil

    from tests.services import start_cumulo

    server = start_cumulo(tmp_path_factory.mktemp("mlflow-door") / ".cumulo")
    try:
        r = httpx.get(f"{server.url}/mlflow/api/2.0/mlflow/experiments/search",
                      params={"max_results": 5},
                      headers={"Authorization": f"Bearer {server.token}"}, timeout=120)
        assert r.status_code == 200, r.text
        group = _mlflow_group(server.home)
        assert len(group) >= 2  # the tied launcher and MLflow's uvicorn
        for pid in group:
            listening = [c for c in psutil.Process(pid).net_connections(kind="inet")
                         if c.status == psutil.CONN_LISTEN]
            assert listening == [], f"MLflow process {pid} listens on {listening}"
        sock = server.home / "mlflow.sock"
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(server.home.stat().st_mode) == 0o700  # no one else gets to it
        # Without a token, the only way in answers 401.
        assert httpx.get(f"{server.url}/mlflow/api/2.0/mlflow/experiments/search").status_code \
            == 401
    finally:
        server.stop(signal.SIGKILL)
    deadline = time.monotonic() + 15
    while (alive := [p for p in group if psutil.pid_exists(p)
                     and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive == [], f"MLflow outlived its control plane: {alive}"


def test_an_mlflow_left_by_a_crash_is_stopped_at_the_next_start(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from cumulo.ml.tracking import reap_orphans

    # What a control plane killed before its MLflow could notice leaves behind: a process
    # group running MLflow, and the pid file naming it and its (now gone) control plane.
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                               "mlflow", "server"], start_new_session=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pidfile = tmp_path / "mlflow.pid"
    pidfile.write_text(f"{orphan.pid} {gone.pid}\n")
    # A group that is not MLflow's is left alone, whatever the file says.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                 start_new_session=True)
    try:
        (tmp_path / "other.pid").write_text(f"{bystander.pid} {gone.pid}\n")
        assert reap_orphans(tmp_path / "other.pid") == []
        assert bystander.poll() is None

        assert reap_orphans(pidfile) == [orphan.pid]
        assert orphan.wait(10) == -9
        assert not pidfile.exists()
        # Another control plane on this home, still running, keeps its MLflow.
        live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                                 "mlflow"], start_new_session=True)
        owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                                  "cumulo", "up"])
        time.sleep(0.2)
        pidfile.write_text(f"{live.pid} {owner.pid}\n")
        assert reap_orphans(pidfile) == []
        assert live.poll() is None
        owner.kill()
        owner.wait()
        assert reap_orphans(pidfile) == [live.pid]
        live.wait(10)
    finally:
        for proc in (bystander, orphan):
            proc.kill()
            proc.wait()
