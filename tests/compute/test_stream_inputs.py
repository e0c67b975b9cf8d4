"""A stream as a job's input (``--input clicks=stream:clicks``): the job reads it in a consumer
group named after the job, with checkpoints, so the next job of that name goes on after what
the last one checkpointed; and each bad input refused at submission, with what to fix."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cumulo.errors import Forbidden, Invalid, NotFound
from cumulo.jobenv import input_ref
from tests.services import Cumulo

COUNT = """
import json
import cumulo.job as job

keys = []
with job.stream("clicks", idle=3) as consumer:      # what is there, then it ends
    for batch in consumer:
        keys += [json.loads(r["data"])["n"] for r in batch]
        assert batch.checkpoint()
(job.output_dir / "count.json").write_text(json.dumps({"count": len(keys), "keys": keys}))
print("read", len(keys))
"""


@pytest.fixture(scope="module")
def stream_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stream-code") / "src"
    root.mkdir()
    (root / "count_clicks.py").write_text(COUNT.lstrip())
    return root


def _put(compute: Cumulo, stream: str, numbers: range) -> None:
    compute.client().streams.put_records(stream, [
        {"partition_key": f"u{n}", "data": json.dumps({"n": n})} for n in numbers])


def _count(job: Any, tmp_path: Path) -> dict[str, Any]:
    info = job.wait(120)
    assert info["state"] == "succeeded", info["log_tail"]
    job.download(tmp_path / job.id)
    return json.loads((tmp_path / job.id / "count.json").read_text())  # type: ignore[no-any-return]


def test_a_job_reads_a_stream_and_the_next_goes_on_from_its_checkpoint(
        compute: Cumulo, stream_code: Path, tmp_path: Path) -> None:
    c = compute.client()
    c.streams.create("clicks", shards=2)
    _put(compute, "clicks", range(30))
    first = c.jobs.run("count_clicks.py", code=stream_code, inputs={"clicks": "stream:clicks"})
    spec = first.info["inputs"]["clicks"]
    assert spec == {"kind": "stream", "stream": "clicks", "group": "job-count_clicks.py",
                    "start": "TRIM_HORIZON"}
    assert input_ref(spec) == "stream:clicks?group=job-count_clicks.py"
    got = _count(first, tmp_path)
    assert got["count"] == 30 and sorted(got["keys"]) == list(range(30))
    group = c.streams.groups("clicks")[0]
    assert group["group"] == "job-count_clicks.py" and group["behind"] == 0
    # The next job of the same name: only what came after the checkpoints.
    _put(compute, "clicks", range(30, 50))
    second = c.jobs.run("count_clicks.py", code=stream_code,
                        inputs={"clicks": "stream:clicks"})
    got = _count(second, tmp_path)
    assert sorted(got["keys"]) == list(range(30, 50))
    shown = compute.cli("jobs", "show", second.id)
    assert "stream:clicks?group=job-count_clicks.py" in shown.stdout, shown.stdout
    # A group of its own (from the CLI): every record kept, from the start.
    out = compute.cli("jobs", "run", "--code", str(stream_code), "--entry",
                      "count_clicks.py", "--input", "clicks=stream:clicks?group=audit",
                      "--wait")
    assert out.returncode == 0, out.stderr
    assert "read 50" in out.stdout


def test_bad_stream_inputs_are_refused(compute: Cumulo, stream_code: Path) -> None:
    c = compute.client()
    c.streams.create("taps")
    before = len(c.jobs.list(limit=10_000))
    run: dict[str, Any] = {"entry": "count_clicks.py", "code": stream_code}
    for error, match, ref in [
        (NotFound, "input 'clicks': stream 'nope' does not exist; 'cumulo streams ls'",
         "stream:nope"),
        (Invalid, "input 'clicks': name the stream", "stream:"),
        (Invalid, "has option(s) shard; a stream input takes group= and from=",
         "stream:taps?shard=1"),
        (Invalid, "options are KEY=VALUE", "stream:taps?group"),
        (Invalid, "from='AT_TIMESTAMP': a group starts at TRIM_HORIZON or LATEST",
         "stream:taps?from=AT_TIMESTAMP"),
        (Invalid, "input 'clicks': group name 'a b' is not allowed", "stream:taps?group=a b"),
    ]:
        with pytest.raises(error, match=re.escape(match)):
            c.jobs.run(**run, inputs={"clicks": ref})
    # The submitter must be able to read the stream: the job reads as them.
    c.users.create("no-taps", kind="service", role="developer")
    c.policies.create("no-taps", document={"statements": [{
        "effect": "deny", "actions": ["streams:Read"], "resources": ["stream/taps"]}]})
    c.access.grant(user="no-taps", policy="no-taps")
    other = compute.client(c.tokens.create("t", user="no-taps")["token"])
    with pytest.raises(Forbidden, match="streams:Read on stream/taps"):
        other.jobs.run(**run, inputs={"clicks": "stream:taps"})
    assert len(c.jobs.list(limit=10_000)) == before  # nothing queued
