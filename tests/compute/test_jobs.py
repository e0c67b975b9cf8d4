"""Jobs on the local cluster, end to end, through the SDK against a real server."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import pyarrow as pa
import pytest

from cumulo.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from tests.services import Cumulo, S3Server, s3_server, start_cumulo, stop


def test_run_entry_with_args(compute: Cumulo, code: Path, tmp_path: Path) -> None:
    c = compute.client()
    job = c.jobs.run("ok.py", code=code, args=["--lr", "0.1"], tags=["team-a"])
    info = job.wait(60)
    assert info["state"] == "succeeded", info
    assert info["exit_code"] == 0 and info["reason"] is None
    lines = list(job.logs())
    assert lines[0] == "args ['--lr', '0.1'] attempt 1" and lines[-1] == "done"
    stamps = [datetime.fromisoformat(info[k]) for k in
              ("created_at", "starting_at", "running_at", "finished_at")]
    assert stamps == sorted(stamps)
    assert [(p["step"], p["value"]) for p in job.metrics()["loss"]] == [(1, 0.5), (2, 0.25)]
    assert job.artifacts() == [{"path": "model.txt", "size": 7},
                               {"path": "sub/eval.json", "size": 2}]
    written = job.download(tmp_path / "out")
    assert (tmp_path / "out" / "model.txt").read_text() == "weights" and len(written) == 2
    usage = info["usage"]
    assert usage["cpu_seconds"] > 0 and usage["peak_memory_bytes"] > 1 << 20
    # The warm worker's own start is not the job's: a one-line job uses next to no CPU.
    tiny = c.jobs.run(command=["python", "-c", "pass"]).wait(60)
    assert tiny["usage"]["cpu_seconds"] < 0.05
    assert usage["wall_seconds"] > 0 and usage["cost_usd"] > 0
    assert usage["gpu_seconds"] == 0


def test_unchanged_code_is_uploaded_once(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    before = sum("PUT /api/v1/jobs/code/" in line for line in compute.log_lines())
    first = c.jobs.upload_code(code)
    second = c.jobs.upload_code(code)
    after = sum("PUT /api/v1/jobs/code/" in line for line in compute.log_lines())
    assert first == second and after - before <= 1


def test_command_and_environment(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    job = c.jobs.run(command="python env.py", code=code, env={"GREETING": "hi there"}, cpus=2)
    assert job.wait(60)["state"] == "succeeded"
    out = "\n".join(job.logs())
    assert "GREETING 'hi there'" in out and "OMP_NUM_THREADS '2'" in out
    assert "CUDA_VISIBLE_DEVICES ''" in out  # asked for no GPU, sees none
    shell = c.jobs.run(command=["bash", "-c", "echo from bash; exit 7"])
    info = shell.wait(60)
    assert info["state"] == "failed" and info["exit_code"] == 7
    assert list(shell.logs()) == ["from bash"]


def test_failure_keeps_reason_and_log_tail(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    info = c.jobs.run("fail.py", code=code).wait(60)
    assert info["state"] == "failed" and info["exit_code"] == 3
    assert info["reason"] == "exited with code 3"
    assert info["log_tail"].splitlines()[-1] == "bad things happened"
    assert "line 49" in info["log_tail"] and "line 0\n" not in info["log_tail"]
    crash = c.jobs.run("crash.py", code=code).wait(60)
    assert crash["state"] == "failed" and "RuntimeError: boom in user code" in crash["log_tail"]


def test_retries(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    job = c.jobs.run("flaky.py", code=code, retries=2)
    info = job.wait(60)
    assert info["state"] == "succeeded" and info["attempt"] == 2
    assert [a["state"] for a in info["attempts"]] == ["failed", "succeeded"]
    assert list(job.logs(attempt=1)) == ["attempt 1"]
    assert list(job.logs()) == ["attempt 2"]
    none_left = c.jobs.run("fail.py", code=code, retries=1).wait(60)
    assert none_left["state"] == "failed" and none_left["attempt"] == 2


def test_max_runtime_and_cancel(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    timed = c.jobs.run("sleep.py", code=code, args=["30"], max_runtime="1s").wait(30)
    assert timed["state"] == "timed_out" and "max-runtime" in timed["reason"]
    job = c.jobs.run("sleep.py", code=code, args=["30"])
    lines = job.logs(follow=True)
    assert next(lines) == "sleeping"  # it is running
    job.cancel()
    assert list(lines) == []  # the stream ends with the job
    info = job.wait(30)
    assert info["state"] == "cancelled" and info["reason"] == "cancelled"
    with pytest.raises(Conflict, match="already cancelled"):
        job.cancel()


def test_sigterm_ignored_means_sigkill_after_grace(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    job = c.jobs.run("stubborn.py", code=code)
    lines = job.logs(follow=True)
    assert next(lines) == "started"
    started = time.monotonic()
    job.cancel()
    info = job.wait(30)
    assert info["state"] == "cancelled"
    assert 0.9 < time.monotonic() - started < 10  # the grace period is 1s on this server
    assert "ignoring SIGTERM" in list(job.logs())


def test_memory_limit(compute: Cumulo, code: Path) -> None:
    info = compute.client().jobs.run("hog.py", code=code, memory="200M").wait(60)
    assert info["state"] == "failed" and info["reason"].startswith("out of memory")
    assert "survived" not in (info["log_tail"] or "")


def test_queued_job_cancelled_never_runs(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    c.clusters.create("one", max_workers=1, max_cpus=1)
    try:
        blocker = c.jobs.run("sleep.py", code=code, args=["30"], cluster="one")
        waiting = c.jobs.run("ok.py", code=code, cluster="one")
        time.sleep(0.5)
        assert waiting.refresh()["state"] == "queued"
        assert c.clusters.show("one")["in_use"]["queued"] == 1
        assert waiting.cancel()["state"] == "cancelled"
        blocker.cancel()
        blocker.wait(30)
        assert waiting.refresh()["running_at"] is None
    finally:
        c.clusters.delete("one")


def test_priority_goes_first(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    c.clusters.create("serial", max_workers=1, max_cpus=1)
    try:
        blocker = c.jobs.run("sleep.py", code=code, args=["1"], cluster="serial")
        low = c.jobs.run("ok.py", code=code, cluster="serial", priority=0)
        high = c.jobs.run("ok.py", code=code, cluster="serial", priority=10)
        infos = [job.wait(60) for job in (blocker, low, high)]
        assert all(i["state"] == "succeeded" for i in infos), infos
        assert high.info["running_at"] < low.info["running_at"], infos
    finally:
        c.clusters.delete("serial")


def test_fifty_jobs_at_once(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    digest = c.jobs.upload_code(code)
    assert digest
    jobs = [c.jobs.run(command=["python", "-c", f"print({i})"]) for i in range(50)]
    for i, job in enumerate(jobs):
        assert job.wait(180)["state"] == "succeeded"
        assert list(job.logs()) == [str(i)]


def test_gigabytes_of_logs_do_not_grow_the_server(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    server = psutil.Process(compute.proc.pid)
    before = server.memory_info().rss
    job = c.jobs.run("spam.py", code=code, args=["1024"])  # 1 GiB of output
    seen = 0
    for line in job.logs(follow=True):
        seen += len(line) + 1
    assert job.wait(120)["state"] == "succeeded"
    assert seen >= 2**30
    assert server.memory_info().rss - before < 100 * 2**20
    assert job.info["log_tail"].endswith("spam done")


def test_bad_submissions_are_refused_and_leave_nothing(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    before = len(c.jobs.list(limit=10_000))
    cases = [
        (NotFound, "no cluster 'nowhere'", dict(entry="ok.py", code=code, cluster="nowhere")),
        (Invalid, "not in", dict(entry="missing.py", code=code)),
        (Invalid, "at most", dict(entry="ok.py", code=code, cpus=1000)),
        (Invalid, "at most", dict(entry="ok.py", code=code, gpus=64)),
        (Invalid, "at most", dict(entry="ok.py", code=code, memory="100T")),
        (Invalid, "--memory 'lots' is not a size", dict(entry="ok.py", code=code, memory="lots")),
        (Invalid, "duration", dict(entry="ok.py", code=code, max_runtime="forever")),
        (NotFound, "input 'train'", dict(entry="ok.py", code=code,
                                         inputs={"train": "nodb.orders"})),
        (NotFound, "input 'raw'", dict(entry="ok.py", code=code, inputs={"raw": "nobucket/x/"})),
        (Invalid, "not both", dict(entry="ok.py", code=code, command="python ok.py")),
        (Invalid, "needs a code folder", dict(entry="ok.py")),
        (Invalid, "--retries", dict(entry="ok.py", code=code, retries=99)),
    ]
    for error, message, kwargs in cases:
        with pytest.raises(error, match=re.escape(message)):
            c.jobs.run(**kwargs)  # type: ignore[arg-type]
    # The server checks too, not just the SDK: an entry the snapshot lacks.
    digest = c.jobs.upload_code(code)
    with pytest.raises(Invalid, match="not in the code folder"):
        c.transport.json("POST", "/api/v1/jobs", json={"code": digest, "entry": "nope.py"})
    with pytest.raises(Invalid, match="must be a path inside"):
        c.transport.json("POST", "/api/v1/jobs", json={"code": digest, "entry": "../x.py"})
    assert len(c.jobs.list(limit=10_000)) == before


def test_inputs_tables_and_files(compute: Cumulo, code: Path, tmp_path: Path) -> None:
    c = compute.client()
    c.tables.create_database("sales")
    c.tables.write("sales.orders", pa.table({"id": [1, 2]}))
    c.tables.write("sales.orders", pa.table({"id": [3]}))  # version 1
    c.files.create_bucket("data")
    c.files.upload(b"a,b\n1,2\n", "data/raw/part-1.csv")
    c.files.upload(b"a,b\n3,4\n", "data/raw/part-2.csv")
    job = c.jobs.run("read_input.py", code=code,
                     inputs={"train": "sales.orders@v0", "raw": "data/raw/"})
    info = job.wait(60)
    assert info["state"] == "succeeded", info["log_tail"]
    assert info["inputs"]["train"]["version"] == 0
    out = list(job.logs())
    assert out[0] == "rows 2"
    assert out[2] == "raw ['part-1.csv', 'part-2.csv']"
    assert out[3] == "cut 1 ['id']"  # read from the table's files, cut there
    latest = c.jobs.run("read_input.py", code=code, inputs={"train": "sales.orders"})
    assert latest.info["inputs"]["train"]["version"] == 1  # pinned when submitted
    assert latest.wait(60)["state"] == "succeeded"
    assert next(iter(latest.logs())) == "rows 3"


def test_list_filters(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    tagged = c.jobs.run("ok.py", code=code, tags=["nightly", "team-b"])
    tagged.wait(60)
    assert tagged.id in [j.id for j in c.jobs.list(tag="nightly")]
    assert all("nightly" in j.info["tags"] for j in c.jobs.list(tag="nightly"))
    assert all(j.state == "failed" for j in c.jobs.list(state="failed"))
    assert all(j.info["cluster"] == "local" for j in c.jobs.list(cluster="local"))
    with pytest.raises(Invalid, match="unknown state"):
        c.jobs.list(state="sleeping")


def test_wait_for_any_of_several_jobs(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    slow = c.jobs.run("sleep.py", code=code, args=["30"])
    quick = c.jobs.run("sleep.py", code=code, args=["0.5"])
    t0 = time.monotonic()
    ended = c.jobs.wait_any([slow, quick], timeout=25)
    assert [j.id for j in ended] == [quick.id] and time.monotonic() - t0 < 20
    assert quick.state == "succeeded" and slow.state in ("queued", "starting", "running")
    assert c.jobs.wait_any([slow], timeout=0.5) == []  # none ended: back after the timeout
    slow.cancel()
    with pytest.raises(Invalid, match="wait needs ids"):
        compute.client().transport.json("GET", "/api/v1/jobs", params={"wait": 1})
    from cumulo.compute.sdk import Job

    with pytest.raises(NotFound, match="job-nope"):
        c.jobs.wait_any([slow, Job(c.transport, {"id": "job-nope", "state": "queued"})])


def test_warm_pool_keeps_minimum_and_lets_idle_go(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    c.clusters.create("warm", min_workers=2, max_workers=4, idle_timeout="1s")
    try:
        deadline = time.monotonic() + 20
        while c.clusters.show("warm")["workers"]["idle"] != 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        jobs = [c.jobs.run("sleep.py", code=code, args=["0.5"], cluster="warm", cpus=0.5)
                for _ in range(4)]
        for job in jobs:
            assert job.wait(60)["state"] == "succeeded"
        # After the burst the pool grew; the surplus goes once idle for the timeout.
        deadline = time.monotonic() + 20
        while c.clusters.show("warm")["workers"]["idle"] != 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        c.clusters.delete("warm")


def test_clusters(compute: Cumulo) -> None:
    c = compute.client()
    local = c.clusters.show("local")
    assert local["type"] == "local" and local["max_cpus"] >= 1 and local["max_memory"] > 2**28
    assert local["min_workers"] == 1
    c.clusters.create("small", max_cpus=1, max_memory="1G")
    assert c.clusters.show("small")["max_memory"] == 2**30
    with pytest.raises(Conflict, match="already exists"):
        c.clusters.create("small")
    with pytest.raises(Invalid, match="more than this machine has"):
        c.clusters.create("huge", max_cpus=10_000)
    with pytest.raises(Invalid, match="cluster name"):
        c.clusters.create("Bad_Name")
    with pytest.raises(Invalid, match="not known"):
        c.clusters.create("odd", type="k8s")
    with pytest.raises(Conflict, match="built in"):
        c.clusters.delete("local")
    c.clusters.delete("small")
    with pytest.raises(NotFound, match="no cluster 'small'"):
        c.clusters.show("small")


def test_job_token_is_the_submitters_and_ends_with_the_job(compute: Cumulo, code: Path,
                                                           tmp_path: Path) -> None:
    (code / "whoami.py").write_text(
        "import os, cumulo.job\nfrom cumulo import Client\n"
        "from cumulo.errors import Forbidden\n"
        "print(Client().whoami()['user'])\n"
        "(cumulo.job.output_dir / 'token').write_text(os.environ['CUMULO_TOKEN'])\n"
        "c = Client()\n"
        "for attempt in (lambda: c.tokens.create('sneaky'), lambda: c.tokens.list(),\n"
        "                lambda: c.tokens.revoke('laptop'), lambda: c.files.create_bucket('x'),\n"
        "                lambda: c.files.delete_bucket('kept')):\n"
        "    try:\n        attempt()\n    except Forbidden as e:\n        print(e)\n")
    c = compute.client()
    c.tokens.create("laptop")
    c.files.create_bucket("kept")
    job = c.jobs.run("whoami.py", code=code)
    assert job.wait(60)["state"] == "succeeded"
    # A job acts for itself: its token manages no credentials and no buckets, whatever its
    # user (an admin here) may do.
    lines = list(job.logs())
    assert lines[0] == "admin" and len(lines) == 6
    for line, what in zip(lines[1:], ["manage tokens"] * 3 + ["create buckets",
                                                              "delete buckets"], strict=True):
        assert f"a job's token cannot {what}; it acts only for its job, while the job " \
            "runs" in line, line
    assert [t["name"] for t in c.tokens.list() if t["revoked_at"] is None].count("laptop") == 1
    assert "kept" in [b["name"] for b in c.files.buckets()]
    c.tokens.revoke("laptop")
    c.files.delete_bucket("kept")
    # The job's own token is not among the user's tokens, and it no longer works.
    assert all(not t["name"].startswith("job-") for t in c.tokens.list())
    job.download(tmp_path)
    with pytest.raises(Unauthorized, match="revoked"):
        compute.client(token=(tmp_path / "token").read_text()).whoami()


def test_cumulo_job_outside_a_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    import cumulo.job

    for var in ("CUMULO_JOB_ID", "CUMULO_JOB_INPUTS", "CUMULO_JOB_OUTPUT_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    assert not cumulo.job.in_job() and cumulo.job.id is None
    assert len(cumulo.job.inputs) == 0
    with pytest.raises(KeyError, match="no input 'train'"):
        cumulo.job.inputs["train"]
    assert cumulo.job.output_dir == Path("output") and (tmp_path / "output").is_dir()
    cumulo.job.log_metric("loss", 0.1, step=3)
    assert "loss" in capsys.readouterr().err


def test_leftover_processes_go_with_the_job(compute: Cumulo, code: Path, tmp_path: Path) -> None:
    (code / "leaves_child.py").write_text(
        "import subprocess, cumulo.job\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        "(cumulo.job.output_dir / 'pid').write_text(str(child.pid))\n")
    job = compute.client().jobs.run("leaves_child.py", code=code)
    assert job.wait(60)["state"] == "succeeded"
    job.download(tmp_path)
    pid = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the job's child outlived it"
        time.sleep(0.1)


def test_interpreter_options_and_user_errors(compute: Cumulo, code: Path) -> None:
    c = compute.client()
    unbuffered = c.jobs.run(command="python -u env.py", code=code)
    assert unbuffered.wait(60)["state"] == "succeeded"
    assert any(line.startswith("cwd") for line in unbuffered.logs())
    (code / "missing_data.py").write_text("open('no-such-file.csv')\n")
    info = c.jobs.run("missing_data.py", code=code).wait(60)
    assert info["state"] == "failed" and info["exit_code"] == 1
    assert "FileNotFoundError" in info["log_tail"] and "no-such-file.csv" in info["log_tail"]
    missing = c.jobs.run(command="no-such-program --flag").wait(60)
    assert missing["exit_code"] == 127 and "cannot run 'no-such-program'" in missing["log_tail"]


def test_jobs_are_private_to_their_user(compute: Cumulo, code: Path) -> None:
    """Users see and stop their own jobs (a developer's rights); an admin sees everyone's."""
    other = compute.add_user("bob", "cml_bob-token-0123456789abcdef01")
    admin = compute.client()
    mine = admin.jobs.run("sleep.py", code=code, args=["30"])
    for call in (lambda: other.jobs.get(mine.id), lambda: other.jobs.cancel(mine.id),
                 lambda: list(other.jobs.get(mine.id).logs())):
        with pytest.raises(Forbidden, match=f"bob may not jobs:.* on job/{mine.id}: no "
                                            "statement allows"):
            call()
    with pytest.raises(NotFound, match="no job 'job-nope'"):  # nothing said of what is not
        other.jobs.get("job-nope")
    assert mine.id not in [j.id for j in other.jobs.list()]
    theirs = other.jobs.run("ok.py", code=code)
    assert theirs.wait(60)["state"] == "succeeded"
    assert [j.id for j in other.jobs.list()] == [theirs.id]
    assert theirs.id in [j.id for j in admin.jobs.list()]  # an admin sees everyone's
    assert admin.jobs.get(theirs.id).info["created_by"] == "bob"
    mine.cancel()
    mine.wait(30)


def test_jobs_on_a_cluster_made_a_moment_ago(compute: Cumulo, code: Path) -> None:
    """Regression: a job submitted right after its cluster was made could be failed as
    'cluster was removed' when the supervisor's step had read the clusters just before."""
    c = compute.client()
    for i in range(5):
        c.clusters.create(f"fresh-{i}", max_workers=1, max_cpus=1)
        try:
            info = c.jobs.run(command=["python", "-c", "print(1)"], cluster=f"fresh-{i}").wait(60)
            assert info["state"] == "succeeded", info["reason"]
        finally:
            c.clusters.delete(f"fresh-{i}")


# --- logs kept in S3 -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_compute(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    """A server that keeps jobs' logs and outputs in S3 (moto's server standing in)."""
    home = tmp_path_factory.mktemp("compute-s3") / ".cumulo"
    server = start_cumulo(home, {**s3.env(), "CUMULO_JOB_GRACE_SECONDS": "1",
                                 "CUMULO_STORAGE_URL": s3.create_bucket(
                                     "jobs-" + uuid.uuid4().hex[:10])})
    yield server
    server.stop()


def _raw_log(server: Cumulo, job_id: str, **params: str | int) -> httpx.Response:
    return httpx.get(f"{server.url}/api/v1/jobs/{job_id}/logs", params=params, timeout=60,
                     headers={"Authorization": f"Bearer {server.token}"})


def test_following_a_stored_log_to_its_end_on_s3(s3_compute: Cumulo, code: Path) -> None:
    """Regression: a follower that has read a log to its end (as one following a Ray job has,
    from Ray) then reads the stored log from there. S3 answers a range from an object's end
    with 416 InvalidRange, the chunked answer was cut ("peer closed connection ... incomplete
    chunked read"), and `jobs run --wait` and `jobs logs -f` failed on jobs that succeeded."""
    c = s3_compute.client()
    job = c.jobs.run("fail.py", code=code)
    assert job.wait(60)["state"] == "failed"
    expected = [f"line {i}" for i in range(50)] + ["bad things happened"]
    whole = _raw_log(s3_compute, job.id)
    assert whole.status_code == 200 and whole.text.splitlines() == expected
    size = len(whole.content)
    for offset, rest in ((size - 20, whole.content[-20:]), (size, b""), (size + 5, b"")):
        answer = _raw_log(s3_compute, job.id, offset=offset, follow="true")
        assert answer.status_code == 200 and answer.content == rest, offset
    assert list(job.logs(follow=True)) == expected
    followed = s3_compute.cli("jobs", "logs", "-f", job.id)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == expected
    ran = s3_compute.cli("jobs", "run", "--code", str(code), "--entry", "ok.py", "--wait",
                         "--", "--lr", "0.1")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[:2] == ["args ['--lr', '0.1'] attempt 1", "done"]


def test_a_log_that_cannot_be_read_ends_with_a_line_saying_why(code: Path,
                                                              tmp_path: Path) -> None:
    """Storage failing under a log being sent: the answer (chunked, its 200 sent already)
    ends with a line that says what went wrong, instead of being cut off; the follower gets
    what there was, and no exception. A private S3 stand-in, stopped by the test."""
    with s3_server(tmp_path) as private:
        server = start_cumulo(tmp_path / ".cumulo", {
            **private.env(), "CUMULO_STORAGE_URL": private.create_bucket("going-away")})
        try:
            c = server.client()
            job = c.jobs.run("ok.py", code=code)
            assert job.wait(60)["state"] == "succeeded"  # its log is in S3 now, and only there
            stop(private.proc)
            lines = list(job.logs(follow=True))
            assert len(lines) == 1 and lines[0].startswith("(cumulo: the log stopped here: ")
            assert "Could not connect to the endpoint URL" in lines[0]
            followed = server.cli("jobs", "logs", "-f", job.id)
            assert followed.returncode == 0, followed.stderr
            assert followed.stdout.splitlines() == lines
            assert any("streaming the log of job" in line for line in server.log_lines())
        finally:
            server.stop()


def test_a_job_can_call_home_at_its_first_line(compute: Cumulo) -> None:
    # A job's token was committed only after its process started: a job that called the API
    # at once (a fork starts in milliseconds) could be told its token was not valid.
    c = compute.client()
    jobs = [c.jobs.run(command=["python", "-c", "from cumulo import Client; "
                                                "print(Client().whoami()['user'])"])
            for _ in range(10)]
    for job in jobs:
        info = job.wait(60)
        assert info["state"] == "succeeded", (info, list(job.logs()))
        assert list(job.logs()) == ["admin"]


def test_numbers_past_what_the_columns_hold_are_400s(compute: Cumulo) -> None:
    """Found by fuzzing the API (tests/server/test_openapi_fuzz.py): each was a 500 (an
    OverflowError or a NOT NULL violation), or a log cut off after its 200."""
    auth = {"authorization": f"Bearer {compute.token}", "content-type": "application/json"}
    api = f"{compute.url}/api/v1"

    def post(path: str, body: str) -> httpx.Response:
        return httpx.post(api + path, content=body, headers=auth)

    for body in ('{"name": "huge", "min_workers": 1180591620717411303424}',
                 '{"name": "huge", "max_workers": 1180591620717411303424}',
                 '{"name": "huge", "max_gpus": 1180591620717411303424}',
                 '{"name": "huge", "max_cpus": NaN}'):
        answer = post("/clusters", body)
        assert answer.status_code == 400, answer.text
        [field] = answer.json()["error"]["details"]["fields"]
        assert field["field"] == "body." + body.split('"')[5]
    assert "huge" not in [c["name"] for c in compute.client().clusters.list()]

    job = compute.client().jobs.run(command=["true"])
    assert job.wait(60)["state"] == "succeeded"
    for metric, field in (('{"key": "m", "value": 1, "step": 1180591620717411303424}', "step"),
                          ('{"key": "m", "value": 1, "timestamp": 1e308}', "timestamp"),
                          ('{"key": "m", "value": NaN}', "value")):
        answer = post(f"/jobs/{job.id}/metrics", f'{{"metrics": [{metric}]}}')
        assert answer.status_code == 400, answer.text
        [problem] = answer.json()["error"]["details"]["fields"]
        assert problem["field"] == f"body.metrics.0.{field}"
    assert httpx.get(f"{api}/jobs/{job.id}/metrics", headers=auth).json() == {}
    answer = httpx.get(f"{api}/jobs/{job.id}/logs", params={"offset": 2**63}, headers=auth)
    assert answer.status_code == 400 and "query.offset" in answer.text
