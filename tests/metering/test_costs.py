"""Costs, budgets and alerts against a real server: storage and SQL metered, costs by each
grouping, the forecast, CSV, budgets' bad input, a crossing (with the time the check is made
as of) that acts once and is undone, and anomalies.

Usage records of past days are written into the server's database the way the services write
them (``usage.record``), at a dollar a CPU-second: the figures are then known exactly."""

from __future__ import annotations

import csv
import io
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.access.models import User
from cumulo.config import Prices
from cumulo.db import make_engine
from cumulo.errors import Conflict, Invalid, NotFound
from cumulo.metering import alerts, usage
from tests.services import Cumulo, start_cumulo

DOLLAR_A_CPU_SECOND = Prices(vcpu_hour=3600.0, gb_hour=0.0, gpu_hour=0.0)


@pytest.fixture(scope="module")
def anomalies() -> Iterator[Hook]:
    """The server's anomaly_webhook."""
    hook = Hook(failures=0)
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, anomalies: Hook) -> Iterator[Cumulo]:
    # Budgets are checked when a test asks (the loop's round is an hour away); webhooks to
    # this machine are let through, and give up quickly.
    cumulo = start_cumulo(tmp_path_factory.mktemp("costs") / ".cumulo", {
        "CUMULO_ALLOW_INTERNAL_URLS": "1", "CUMULO_BUDGET_CHECK_SECONDS": "3600",
        "CUMULO_WEBHOOK_TIMEOUT_SECONDS": "1", "CUMULO_WEBHOOK_ATTEMPTS": "3",
        "CUMULO_ANOMALY_WEBHOOK": anomalies.url})
    yield cumulo
    cumulo.stop()


def add_usage(server: Cumulo, day: str, dollars: float, *, kind: str = "job",
              ref: str | None = None, project: str | None = None, tags: tuple[str, ...] = (),
              user: str | None = "admin", quantities: dict[str, float] | None = None) -> None:
    engine = make_engine(f"sqlite:///{server.home / 'cumulo.db'}")
    when = datetime.fromisoformat(f"{day}T12:00:00+00:00")
    with Session(engine) as session:
        user_id = session.scalar(select(User.id).where(User.name == user)) if user else None
        usage.record(session, DOLLAR_A_CPU_SECOND, kind=kind, ref=ref or uuid.uuid4().hex[:8],
                     cluster="local", user_id=user_id, tags=list(tags), started_at=when,
                     ended_at=when, cpu_seconds=dollars, project=project,
                     quantities=quantities)
        session.commit()
    engine.dispose()


def costs(server: Cumulo, *args: str) -> dict[str, Any]:
    done = server.cli("costs", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def rows(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r[summary["by"]]: r for r in summary["rows"]}


# --- metering ---------------------------------------------------------------------------------


def test_storage_and_sql_are_sampled(server: Cumulo) -> None:
    c = server.client()
    c.files.create_bucket("sampled")
    c.files.upload(b"x" * 1_000_000, "sampled/a.bin")
    c.files.upload(b"y" * 500_000, "sampled/b.bin")
    c.tables.create_database("metered")
    c.tables.load("metered.t", b"id,name\n1,ann\n2,bob\n", format="csv")
    assert c.sql("select count(*) as n from metered.t").page == [{"n": 2}]
    # A job's files (its log and outputs) are stored too: its owner's.
    job = c.jobs.run(command=["python", "-c", "print('x' * 1000)"])
    assert job.wait(60)["state"] == "succeeded"

    t0 = time.monotonic()
    assert c.costs.sample() >= 2  # the bucket and the table at least
    t1 = time.monotonic()
    first = rows(costs(server, "--by", "resource", "--since", "1d"))
    # A first sample counts a quarter of an hour: nothing is billed backwards.
    assert first["bucket sampled"]["storage_gb_hours"] == pytest.approx(1.5e6 / 1e9 * 0.25)
    # Its two uploads are PUT-class requests (the Files API is metered as S3's), priced too.
    assert (first["bucket sampled"]["put_requests"], first["bucket sampled"]["get_requests"]) \
        == (2, 0)
    assert first["bucket sampled"]["cost_usd"] == pytest.approx(
        1.5e6 / 1e9 * 0.25 / 730 * 0.023 + 2 / 1000 * 0.005, abs=1e-9)
    assert first["table metered.t"]["storage_gb_hours"] > 0
    assert first["bucket sampled"]["cpu_seconds"] == 0
    assert first["jobs files"]["storage_gb_hours"] > 0

    time.sleep(1.0)
    t2 = time.monotonic()
    c.costs.sample()
    t3 = time.monotonic()
    second = rows(costs(server, "--by", "resource", "--since", "1d"))["bucket sampled"]
    grew = second["storage_gb_hours"] - first["bucket sampled"]["storage_gb_hours"]
    # the bytes held, for the hours between the two samples
    assert 1.5e6 / 1e9 * (t2 - t1) / 3600 <= grew <= 1.5e6 / 1e9 * (t3 - t0) / 3600
    assert second["count"] == 3  # two samples, and the one record of its requests

    # SQL: each finished query a record of its bytes scanned (10 MB at least), once.
    deadline = time.monotonic() + 20
    while True:
        c.costs.sample()
        sql = rows(costs(server, "--by", "service", "--since", "1d")).get("sql")
        if sql is not None or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert sql is not None and sql["bytes_scanned"] >= 10 * 2**20
    assert sql["cost_usd"] == pytest.approx(sql["bytes_scanned"] / 1e12 * 5.0, rel=1e-3)
    c.costs.sample()
    again = rows(costs(server, "--by", "service", "--since", "1d"))["sql"]
    assert again["count"] == sql["count"]  # not counted twice
    table = server.cli("costs", "--by", "service", "--since", "1d")
    assert "GB-h stored" in table.stdout and "GB scanned" in table.stdout
    assert "/GB-month stored" in table.stdout and "forecast by month end" in table.stdout


OCTOBER = ("--since", "2026-10-01", "--until", "2026-10-31")


@pytest.fixture(scope="module")
def october(server: Cumulo) -> None:
    """October's work: a pipeline's step, a notebook, a plain job in a project, an endpoint."""
    add_usage(server, "2026-10-02", 2.0, tags=("pipeline:daily", "pipeline-run:r1"))
    add_usage(server, "2026-10-02", 3.0, tags=("notebook", "notebook:explore"))
    add_usage(server, "2026-10-03", 5.0, project="team-a", tags=("team=a",), ref="j1")
    add_usage(server, "2026-10-03", 7.0, kind="endpoint", ref="churn", user=None)


@pytest.mark.parametrize(("by", "expected"), [
    ("day", {"2026-10-02": 5.0, "2026-10-03": 12.0}),
    ("service", {"pipeline": 2.0, "notebook": 3.0, "job": 5.0, "endpoint": 7.0}),
    ("user", {"admin": 10.0, "(none)": 7.0}),
    ("project", {"team-a": 5.0, "(none)": 12.0}),
    ("tag", {"pipeline:daily": 2.0, "pipeline-run:r1": 2.0, "notebook": 3.0,
             "notebook:explore": 3.0, "team=a": 5.0, "(untagged)": 7.0}),
    ("resource", {"pipeline daily": 2.0, "notebook explore": 3.0, "job j1": 5.0,
                  "endpoint churn": 7.0}),
])
def test_costs_by_each_grouping(server: Cumulo, october: None, by: str,
                                expected: dict[str, float]) -> None:
    summary = costs(server, "--by", by, *OCTOBER)
    assert {k: r["cost_usd"] for k, r in rows(summary).items()} == expected
    assert summary["total"]["cost_usd"] == 17.0
    # Both sheets, side by side: the own sheet prices the same CPU-seconds by the machine.
    own = summary["sheets"]["own"]["vcpu_hour"]
    assert summary["total"]["own_usd"] == pytest.approx(17.0 * own / 3600, abs=1e-9)
    assert summary["total"]["cloud_usd"] == 17.0


def test_the_sheet_switch(server: Cumulo, october: None) -> None:
    own = costs(server, "--by", "service", "--sheet", "own", *OCTOBER)
    assert own["primary"] == "own"
    assert own["total"]["cost_usd"] == pytest.approx(own["total"]["own_usd"])
    table = server.cli("costs", "--by", "service", "--sheet", "both", *OCTOBER)
    assert "cloud $" in table.stdout and "own $" in table.stdout
    bad = server.cli("costs", "--sheet", "azure")
    assert (bad.returncode, bad.stderr) == (
        1, "error: --sheet 'azure' is not one of cloud, own, both\n")


def test_csv_export(server: Cumulo, october: None, tmp_path: Any) -> None:
    out = tmp_path / "costs.csv"
    done = server.cli("costs", "--by", "service", *OCTOBER, "--csv", str(out))
    assert done.returncode == 0, done.stderr
    read = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {r["service"]: float(r["cost_usd"]) for r in read} == {
        "endpoint": 7.0, "job": 5.0, "notebook": 3.0, "pipeline": 2.0, "total": 17.0}
    assert {"own_usd", "cloud_usd", "cpu_seconds", "count"} <= set(read[0])
    printed = server.cli("costs", "--by", "day", *OCTOBER, "--format", "csv")
    assert printed.stdout.splitlines()[0].startswith("day,")
    assert printed.stdout.splitlines()[-1].startswith("total,")
    assert server.client().costs.csv(by="day", since="2026-10-01",
                                     until="2026-10-31") == printed.stdout


def test_month_end_forecast(server: Cumulo) -> None:
    for day in range(1, 11):
        add_usage(server, f"2026-09-{day:02d}", 1.0, tags=("forecast",))
    t = server.client().transport.json("GET", "/api/v1/costs/forecast",
                                       params={"at": "2026-09-10T12:00:00Z"})
    rate = 7.0 / 6.5
    assert (t["month"], t["spent_usd"], t["days_left"]) == ("2026-09", 10.0, 20.5)
    assert t["forecast_usd"] == pytest.approx(10.0 + rate * 20.5, abs=1e-6)
    assert t["sheets"]["own"]["forecast_usd"] < t["forecast_usd"]
    assert "days left" in t["method"]


# --- budgets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "error"), [
    (["--scope", "team:a"], "--scope 'team:a' is not a scope: use all, project:NAME, "
                            "user:NAME, tag:K=V or service:NAME"),
    (["--scope", "service:lambda"], "unknown service 'lambda'"),
    (["--scope", "project:nobody"], "no project 'nobody'"),
    (["--scope", "user:nobody"], "no user named 'nobody'"),
    (["--action", "100%:delete-everything"], "--action: unknown action 'delete-everything'; "
                                             "use stop-new-jobs or scale-endpoints-to-zero"),
    (["--alert", "50%,lots"], "--alert 'lots' is not a percent like 80%"),
    (["--alert", "0%"], "--alert '0%' must be above 0%"),
    (["--amount", "-5"], "--amount must be more than 0 dollars"),
    (["--amount", "fifty"], "--amount 'fifty' is not a number of dollars"),
    (["--period", "year"], "--period 'year' is not one of day, week, month"),
    (["--webhook", "ftp://x"], "--webhook 'ftp://x' is not an http:// or https:// URL"),
])
def test_bad_budgets_are_refused_and_nothing_is_written(server: Cumulo, args: list[str],
                                                        error: str) -> None:
    before = server.client().budgets.list()
    given = {"--amount": "50", "--scope": "all"}
    for option, value in zip(args[::2], args[1::2], strict=True):
        given[option] = value
    done = server.cli("budgets", "create", "bad", *[x for kv in given.items() for x in kv])
    assert done.returncode == 1 and error in done.stderr, done.stderr
    assert server.client().budgets.list() == before
    with pytest.raises(NotFound):
        server.client().budgets.show("bad")


def test_budget_names_and_conflicts(server: Cumulo) -> None:
    c = server.client()
    with pytest.raises(Invalid, match="budget name 'Team A'"):
        c.budgets.create("Team A", amount=5)
    c.budgets.create("twice", amount=5, scope="tag:x=1")
    with pytest.raises(Conflict, match="budget 'twice' exists"):
        c.budgets.create("twice", amount=9)
    assert c.budgets.show("twice")["amount"] == 5
    with pytest.raises(Invalid, match="--amount"):
        c.budgets.update("twice", amount=0)
    assert c.budgets.show("twice")["amount"] == 5
    c.budgets.delete("twice")
    with pytest.raises(NotFound):
        c.budgets.delete("twice")


def test_an_anomaly_alerts_once(server: Cumulo, anomalies: Hook) -> None:
    for day in range(1, 15):
        add_usage(server, f"2026-07-{day:02d}", 2.0, tags=("steady",))
    add_usage(server, "2026-07-15", 9.0, tags=("burst",))
    c = server.client()
    found = c.budgets.check(at="2026-07-15T20:00:00Z")["anomaly"]
    assert found == {"day": "2026-07-15", "cost_usd": 9.0, "trailing_mean_usd": 2.0,
                     "factor": 4.5}
    assert c.budgets.check(at="2026-07-15T21:00:00Z")["anomaly"] is None  # once a day
    raised = [a for a in c.alerts.list(source="anomaly") if a["subject"] == "2026-07-15"]
    assert len(raised) == 1 and "4.5x the 14-day mean" in raised[0]["message"]
    # ... and POSTed to the anomaly_webhook, as budgets' alerts are to theirs.
    deadline = time.monotonic() + 30
    while not [a for a in anomalies.received if a["source"] == "anomaly"]:
        assert time.monotonic() < deadline, "the anomaly was not POSTed to its webhook"
        time.sleep(0.2)
    sent = [a for a in anomalies.received if a["source"] == "anomaly"]
    assert len(sent) == 1 and sent[0]["details"]["factor"] == 4.5
    assert c.budgets.check(at="2026-07-14T20:00:00Z")["anomaly"] is None  # a steady day


def _audited(server: Cumulo, budget: str) -> list[dict[str, Any]]:
    page = server.client().transport.json("GET", "/api/v1/audit/events",
                                          params={"action": "budgets:*", "limit": 1000})
    return [e for e in page["events"] if e["resource"] == f"budget/{budget}"
            and e["action"] in ("budgets:Act", "budgets:Undo")]


def test_a_budget_crossed_acts_once_and_is_undone_when_the_month_turns(server: Cumulo,
                                                                       tmp_path: Any) -> None:
    c = server.client()
    c.projects.create("team-a")
    c.budgets.create("team-a", amount=50, period="month", scope="project:team-a",
                     alert="50%,80%,100%", action="100%:stop-new-jobs")
    add_usage(server, "2026-08-10", 30.0, project="team-a")
    add_usage(server, "2026-08-12", 30.0, project="other")  # out of scope
    half = next(b for b in c.budgets.check(at="2026-08-15T12:00:00Z")["budgets"]
                if b["budget"] == "team-a")
    assert (half["spent"], half["alerted"], half["took"]) == (30.0, [50.0], [])

    add_usage(server, "2026-08-16", 25.0, project="team-a")
    crossed = next(b for b in c.budgets.check(at="2026-08-16T13:00:00Z")["budgets"]
                   if b["budget"] == "team-a")
    assert crossed["alerted"] == [80.0, 100.0] and crossed["took"] == ["stop-new-jobs"]
    for hour in (14, 15, 18):  # checked again and again: nothing more is done
        again = [b for b in c.budgets.check(at=f"2026-08-16T{hour}:00:00Z")["budgets"]
                 if b["budget"] == "team-a"]
        assert again == [] or (again[0]["took"] == [] and again[0]["alerted"] == [])
    shown = c.budgets.show("team-a")
    assert shown["acting"] == ["stop-new-jobs"] and shown["spent"] == 55.0
    assert [(a["severity"], a["details"].get("threshold")) for a in shown["alerts_raised"]] == [
        ("critical", None), ("critical", 100.0), ("warning", 80.0), ("warning", 50.0)]
    assert "took its action stop-new-jobs" in shown["alerts_raised"][0]["message"]
    deadline = time.monotonic() + 10
    while len(acts := _audited(server, "team-a")) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [e["action"] for e in acts] == ["budgets:Act"]

    # New jobs in its scope are refused, naming the budget; others are not.
    code = tmp_path / "code"
    code.mkdir()
    (code / "ok.py").write_text("print('ok')\n")
    refused = server.cli("jobs", "run", "--code", str(code), "--entry", "ok.py",
                         "--project", "team-a")
    assert refused.returncode == 1
    assert "budget 'team-a' (project:team-a, $50 a month) has spent $55.00" in refused.stderr
    assert "cumulo budgets update team-a --amount N" in refused.stderr
    outside = server.cli("jobs", "run", "--code", str(code), "--entry", "ok.py")
    assert outside.returncode == 0, outside.stderr

    # September: the month turned, the action is undone, and the project's jobs run again.
    turned = next(b for b in c.budgets.check(at="2026-09-01T00:05:00Z")["budgets"]
                  if b["budget"] == "team-a")
    assert turned["turned"] and turned["undid"] == ["stop-new-jobs"]
    assert c.budgets.show("team-a")["acting"] == []
    allowed = server.cli("jobs", "run", "--code", str(code), "--entry", "ok.py",
                         "--project", "team-a")
    assert allowed.returncode == 0, allowed.stderr
    deadline = time.monotonic() + 10
    while len(acts := _audited(server, "team-a")) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(e["action"] for e in acts) == ["budgets:Act", "budgets:Undo"]


def test_raising_a_budget_above_spend_undoes_its_action(server: Cumulo, tmp_path: Any) -> None:
    c = server.client()
    today = datetime.now(UTC).date().isoformat()
    add_usage(server, today, 3.0, tags=("team=b",))
    made = c.budgets.create("team-b", amount=2, scope="tag:team=b", action="stop-new-jobs")
    assert made["acting"] == ["stop-new-jobs"]  # checked as it is made: crossed already
    code = tmp_path / "code"
    code.mkdir()
    (code / "ok.py").write_text("print('ok')\n")
    refused = server.cli("jobs", "run", "--code", str(code), "--entry", "ok.py",
                         "--tag", "team=b")
    assert refused.returncode == 1 and "budget 'team-b'" in refused.stderr
    raised = server.cli("budgets", "update", "team-b", "--amount", "10")
    assert raised.returncode == 0 and "in force" not in raised.stdout
    assert c.budgets.show("team-b")["acting"] == []
    ok = server.cli("jobs", "run", "--code", str(code), "--entry", "ok.py", "--tag", "team=b")
    assert ok.returncode == 0, ok.stderr
    listed = server.cli("budgets", "ls")
    assert "team-b" in listed.stdout and "tag:team=b" in listed.stdout
    assert server.cli("budgets", "rm", "team-b").returncode == 0
    assert "team-b" not in server.cli("budgets", "ls").stdout
    status = server.cli("status")
    assert "alerts" in status.stdout and "budget team-b" in status.stdout


# --- alerts' webhooks -------------------------------------------------------------------------


class Hook:
    """A real webhook on this machine: answers its first ``failures`` POSTs with a 500, then
    200s; keeps what it was sent."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.received.append(body)
                self.send_response(500 if len(hook.received) <= hook.failures else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def flaky() -> Iterator[Hook]:
    hook = Hook(failures=1)
    yield hook
    hook.close()


@pytest.fixture
def silent() -> Iterator[str]:
    """A webhook that takes the connection and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections wait in the backlog: never accepted, never answered
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    sock.close()


def _alert(server: Cumulo, budget: str, until: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        raised = server.client().budgets.show(budget)["alerts_raised"]
        if raised and raised[0]["delivery"] == until:
            return raised[0]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, raised
        time.sleep(0.3)


def test_a_failing_webhook_is_retried_until_it_answers(server: Cumulo, flaky: Hook) -> None:
    today = datetime.now(UTC).date().isoformat()
    add_usage(server, today, 2.0, tags=("hook=1",))
    server.client().budgets.create("hooked", amount=1, scope="tag:hook=1", alert="100%",
                                   webhook=flaky.url)
    sent = _alert(server, "hooked", "sent")
    assert sent["attempts"] == 2 and sent["last_error"] is None
    assert len(flaky.received) == 2 and flaky.received[0] == flaky.received[1]
    body = flaky.received[1]
    assert (body["source"], body["subject"], body["severity"]) == ("budget", "hooked",
                                                                   "critical")
    assert body["details"]["threshold"] == 100.0 and body["details"]["spent"] == 2.0


def test_a_silent_webhook_is_reported_and_blocks_nothing(server: Cumulo, silent: str,
                                                         tmp_path: Any) -> None:
    today = datetime.now(UTC).date().isoformat()
    add_usage(server, today, 2.0, tags=("hook=2",))
    started = time.monotonic()
    made = server.cli("budgets", "create", "hung", "--amount", "1", "--scope", "tag:hook=2",
                      "--alert", "50%", "--webhook", silent)
    assert made.returncode == 0, made.stderr
    assert time.monotonic() - started < 5  # the alert is sent in the background
    code = tmp_path / "code"
    code.mkdir()
    (code / "ok.py").write_text("print('ok')\n")
    job = server.client().jobs.run("ok.py", code=code)  # work goes on meanwhile
    assert job.wait(timeout=60)["state"] == "succeeded"
    failed = _alert(server, "hung", "failed", timeout=40)
    assert failed["attempts"] == 3 and "Timeout" in failed["last_error"]
    shown = server.cli("budgets", "show", "hung")
    assert "failed after 3 tries" in shown.stdout and "Timeout" in shown.stdout


def test_other_services_raise_alerts_through_notify(server: Cumulo, flaky: Hook) -> None:
    """What a monitor does (cumulo.metering.alerts.notify, in its own transaction): the
    server's sender, reading the database, sends it; the banner and status show it."""
    engine = make_engine(f"sqlite:///{server.home / 'cumulo.db'}")
    with Session(engine) as session:
        alert = alerts.notify(session, source="monitor", subject="churn-drift",
                              severity="warning", message="PSI of tenure is 0.31",
                              details={"psi": 0.31}, webhook=flaky.url)
        session.commit()
        alert_id = alert.id
        with pytest.raises(Invalid, match="severity 'loud'"):
            alerts.notify(session, source="monitor", subject="x", severity="loud",
                          message="m")
    engine.dispose()
    deadline = time.monotonic() + 30
    while len(flaky.received) < 2:
        assert time.monotonic() < deadline, flaky.received
        time.sleep(0.3)
    assert flaky.received[1]["details"] == {"psi": 0.31}
    c = server.client()
    shown = next(a for a in c.alerts.list() if a["id"] == alert_id)
    assert (shown["delivery"], shown["source"]) == ("sent", "monitor")
    assert "PSI of tenure is 0.31" in server.cli("status").stdout
    assert c.alerts.dismiss(alert_id) == 1
    assert alert_id not in {a["id"] for a in c.alerts.list()}
    assert alert_id in {a["id"] for a in c.alerts.list(all=True)}
