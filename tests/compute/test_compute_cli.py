"""The CLI: cumulo clusters, cumulo jobs, cumulo costs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.services import Cumulo


def test_run_wait_streams_and_exits_with_the_outcome(compute: Cumulo, code: Path) -> None:
    ok = compute.cli("jobs", "run", "--code", str(code), "--entry", "ok.py", "--tag", "cli",
                     "--wait", "--", "--lr", "0.1")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == ["args ['--lr', '0.1'] attempt 1", "done"]
    assert "succeeded" in ok.stderr and "$" in ok.stderr
    failed = compute.cli("jobs", "run", "--code", str(code), "--entry", "fail.py", "--wait")
    assert failed.returncode == 3
    assert "exited with code 3" in failed.stderr
    timed = compute.cli("jobs", "run", "--code", str(code), "--entry", "sleep.py",
                        "--max-runtime", "1s", "--wait", "--", "30")
    assert timed.returncode == 124 and "max-runtime" in timed.stderr


def test_run_show_logs_ls_cancel(compute: Cumulo, code: Path) -> None:
    run = compute.cli("jobs", "run", "--code", str(code), "--entry", "sleep.py",
                      "--env", "A=1", "--tag", "cli-ls", "--", "30")
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.strip()
    assert job_id.startswith("job-")
    listed = json.loads(compute.cli("jobs", "ls", "--tag", "cli-ls", "--json").stdout)
    assert [j["id"] for j in listed] == [job_id]
    cancel = compute.cli("jobs", "cancel", job_id)
    assert cancel.returncode == 0, cancel.stderr
    compute.client().jobs.get(job_id).wait(30)
    show = compute.cli("jobs", "show", job_id)
    assert "cancelled" in show.stdout and "cost" in show.stdout and "sleep.py" in show.stdout
    logs = compute.cli("jobs", "logs", job_id)
    assert logs.stdout.splitlines() == ["sleeping"]
    again = compute.cli("jobs", "cancel", job_id)
    assert again.returncode == 1 and again.stderr.startswith("error: job")


def test_show_failure_prints_log_tail(compute: Cumulo, code: Path) -> None:
    run = compute.cli("jobs", "run", "--code", str(code), "--entry", "fail.py", "--json")
    job_id = json.loads(run.stdout)["id"]
    compute.client().jobs.get(job_id).wait(60)
    show = compute.cli("jobs", "show", job_id)
    assert "exited with code 3" in show.stdout and "bad things happened" in show.stdout


def test_refusals_are_one_line(compute: Cumulo, code: Path) -> None:
    for args, message in [
        (["--entry", "nope.py"], "is not in"),
        (["--entry", "ok.py", "--cpus", "999"], "at most"),
        (["--entry", "ok.py", "--max-runtime", "later"], "duration"),
        (["--entry", "ok.py", "--input", "x=nodb.t"], "input 'x'"),
        (["--entry", "ok.py", "--env", "=bad"], "NAME=VALUE"),
        (["--entry", "ok.py", "--env", "bad"], "no environment 'bad'"),  # NAME: an environment
        (["--entry", "ok.py", "--cluster", "nowhere"], "no cluster"),
    ]:
        out = compute.cli("jobs", "run", "--code", str(code), *args)
        assert out.returncode == 1, (args, out.stdout)
        assert out.stderr.startswith("error: ") and message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_clusters_commands(compute: Cumulo) -> None:
    made = compute.cli("clusters", "create", "cli-small", "--type", "local", "--max-cpus", "1",
                       "--max-memory", "2G", "--min-workers", "0", "--max-workers", "2")
    assert made.returncode == 0, made.stderr
    assert "1 CPU, 2.0 GiB" in made.stdout
    ls = compute.cli("clusters", "ls")
    assert "cli-small" in ls.stdout and "local" in ls.stdout
    show = json.loads(compute.cli("clusters", "show", "cli-small", "--json").stdout)
    assert show["max_workers"] == 2 and show["in_use"]["queued"] == 0
    assert compute.cli("clusters", "rm", "cli-small").returncode == 0
    gone = compute.cli("clusters", "show", "cli-small")
    assert gone.returncode == 1 and "no cluster" in gone.stderr


def test_costs(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    c.jobs.run("ok.py", code=code, tags=["costed"]).wait(60)
    by_tag = json.loads(compute.cli("costs", "--by", "tag", "--json").stdout)
    row = next(r for r in by_tag["rows"] if r["tag"] == "costed")
    assert row["count"] >= 1 and row["cost_usd"] > 0 and row["cpu_seconds"] > 0
    assert by_tag["prices"]["vcpu_hour"] > 0
    table = compute.cli("costs", "--by", "user")
    assert table.returncode == 0 and "admin" in table.stdout and "total" in table.stdout
    bad = compute.cli("costs", "--by", "colour")
    assert bad.returncode == 1 and "cannot group costs by" in bad.stderr
    future = json.loads(compute.cli("costs", "--since", "2999-01-01", "--json").stdout)
    assert future["rows"] == [] and future["total"] == {
        "cpu_seconds": 0.0, "memory_gb_seconds": 0.0, "gpu_seconds": 0.0, "wall_seconds": 0.0,
        "cost_usd": 0.0, "count": 0}


def test_durations_take_the_one_grammar(compute: Cumulo, code: Path) -> None:
    run = compute.cli("jobs", "run", "--code", str(code), "--entry", "ok.py",
                      "--max-runtime", "1h30m", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["max_runtime_s"] == 5400
    show = compute.cli("jobs", "show", json.loads(run.stdout)["id"])
    assert "max 1h30m" in show.stdout
    bad = compute.cli("jobs", "run", "--code", str(code), "--entry", "ok.py",
                      "--max-runtime", "5x")
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "error: --max-runtime '5x' is not a duration: use forms like 90s, 30m, 1h30m, 7d, 2w")

    made = compute.cli("clusters", "create", "cli-idle", "--max-cpus", "1",
                       "--idle-timeout", "1h30m", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["idle_timeout_s"] == 5400
    assert "idle ones go after 1h30m" in compute.cli("clusters", "show", "cli-idle").stdout
    compute.cli("clusters", "rm", "cli-idle")
    bad = compute.cli("clusters", "create", "cli-idle", "--idle-timeout", "soon")
    assert bad.returncode == 1 and "'soon' is not a duration: use forms like" in bad.stderr


def test_costs_take_dates_times_and_spans(compute: Cumulo, code: Path) -> None:
    from datetime import UTC, datetime, timedelta

    compute.client().jobs.run("ok.py", code=code, tags=["spans"]).wait(60)
    today = datetime.now(UTC).date()
    for since in ("1h30m", "7d", f"{today}T00:00:00Z", f"{today}T02:00:00+02:00",
                  str(today)):
        out = compute.cli("costs", "--by", "tag", "--since", since, "--json")
        assert out.returncode == 0, (since, out.stderr)
        summary = json.loads(out.stdout)
        assert any(r["tag"] == "spans" for r in summary["rows"]), since
    week = json.loads(compute.cli("costs", "--since", "7d", "--json").stdout)
    assert week["since"] == str(today - timedelta(days=6))  # the last seven days, today's too
    gone = json.loads(compute.cli("costs", "--until", "2d", "--json").stdout)
    assert gone["until"] == str(today - timedelta(days=2)) and gone["rows"] == []
    for option in ("--since", "--until"):
        bad = compute.cli("costs", option, "yesterday")
        assert bad.returncode == 1 and bad.stderr.strip() == (
            f"error: {option} 'yesterday' is not a time: use a date like 2026-11-01, a time "
            "like 2026-11-01T12:00:00Z, or a span back from now like 7d or 1h30m")
