"""Ray's set-up lines out of a Ray job's log: on logs that Ray 2.60 wrote for real jobs on a
local head (copied here as they came), each cut at every point as a follower would see it.
test_ray.py checks a log fresh from a Ray job, through a real Ray head."""

from __future__ import annotations

import pytest

from cumulo.compute.raylogs import user_output

SPEC = "eyJlbnRyeSI6ICJoZWxsby5weSIsICJhcmdzIjogWyItLWxyIiwgIjAuMSJdfQ=="

# (what Ray's job API gave, what the job wrote)
SAMPLES = {
    # A job shaped like Cumulo's: a working_dir, env_vars, the spec in base64 on the command.
    "cumulo-like": (
        "2026-12-03 17:31:49,096\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
        f"Running entrypoint for job cumulo-job-abc-1: python hello.py --spec {SPEC}\n"
        f"hello from user ['--spec', '{SPEC}']\n"
        "to stderr\n",
        f"hello from user ['--spec', '{SPEC}']\nto stderr\n"),
    # The same on a head started with RAY_STREAM_RUNTIME_ENV_LOG_TO_JOB_DRIVER_LOG=1: the
    # runtime environment's set-up is in the log too.
    "runtime-env-streamed": (
        "2026-12-03 17:32:27,808\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
        "2026-12-03 17:32:28,198\tINFO packaging.py:940 -- Downloading package from "
        "gcs://_ray_pkg_b746ce44d3ec9088.zip to /tmp/ray/session_2026-12-03_17-32-13_736467_"
        "10400/runtime_resources/working_dir_files/_ray_pkg_b746ce44d3ec9088.zip with "
        "protocol Protocol.GCS\n"
        "2026-12-03 17:32:28,203\tINFO uri_cache.py:86 -- Added URI "
        "gcs://_ray_pkg_b746ce44d3ec9088.zip with size 210\n"
        f"Running entrypoint for job cumulo-job-abc-1: python hello.py --spec {SPEC}\n"
        f"hello from user ['--spec', '{SPEC}']\n"
        "to stderr\n",
        f"hello from user ['--spec', '{SPEC}']\nto stderr\n"),
    # A job that uses Ray itself: what its own ray.init() says, and its tasks' output, stay.
    "uses-ray": (
        "2026-12-03 17:32:30,165\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
        "2026-12-03 17:32:30,176\tINFO plugin.py:258 -- Runtime env working_dir "
        "gcs://_ray_pkg_b746ce44d3ec9088.zip is already installed and will be reused. Search "
        "all runtime_env_setup-*.log to find the corresponding setup log.\n"
        "2026-12-03 17:32:30,176\tINFO uri_cache.py:73 -- Marked URI "
        "gcs://_ray_pkg_b746ce44d3ec9088.zip used.\n"
        "Running entrypoint for job raysubmit_b7m5zepVvGfwGLQp: python useray.py\n"
        "2026-12-03 17:32:33,143\tINFO worker.py:1691 -- Using address 192.0.2.2:45355 set in "
        "the environment variable RAY_ADDRESS\n"
        "2026-12-03 17:32:33,215\tINFO worker.py:2029 -- Connected to Ray cluster. View the "
        "dashboard at \x1b[1m\x1b[32mhttp://127.0.0.1:50529 \x1b[39m\x1b[22m\n"
        "result 42\n"
        "\x1b[36m(f pid=11177)\x1b[0m in task 21\n",
        "2026-12-03 17:32:33,143\tINFO worker.py:1691 -- Using address 192.0.2.2:45355 set in "
        "the environment variable RAY_ADDRESS\n"
        "2026-12-03 17:32:33,215\tINFO worker.py:2029 -- Connected to Ray cluster. View the "
        "dashboard at \x1b[1m\x1b[32mhttp://127.0.0.1:50529 \x1b[39m\x1b[22m\n"
        "result 42\n"
        "\x1b[36m(f pid=11177)\x1b[0m in task 21\n"),
    # Ray writes its entrypoint line through a buffer it flushes after starting the
    # entrypoint: a quick one's first output comes before it.
    "output-first": (
        "2026-12-03 17:27:23,871\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
        "hi\n"
        "Running entrypoint for job raysubmit_CY91BvWD3sdHKiRz: echo hi; python3 -c "
        "'print(1)'\n"
        "1\n",
        "hi\n1\n"),
    "failed": (
        "2026-12-03 17:32:39,260\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
        "Running entrypoint for job raysubmit_EzsAm9jrSxGsK5uW: python -c 'import sys; "
        "print(\"x\"); sys.exit(3)'\n"
        "x\n",
        "x\n"),
    # Its runtime environment could not be set up: Ray says why in the job's message only.
    "never-started": ("", ""),
}


@pytest.mark.parametrize("name", SAMPLES)
def test_only_the_jobs_own_output_is_left(name: str) -> None:
    log, expected = SAMPLES[name]
    assert user_output(log) == expected


@pytest.mark.parametrize("name", SAMPLES)
def test_a_growing_log_only_ever_grows_its_output(name: str) -> None:
    """A follower filters the whole log each time it reads it and sends what lies past what
    it sent: so what a log says so far must be where what it says later starts, wherever the
    cut falls (in Ray's lines, in the middle of a line, before a line ends)."""
    log, expected = SAMPLES[name]
    previous = ""
    for cut in range(len(log) + 1):
        now = user_output(log[:cut])
        assert now.startswith(previous), (cut, previous, now)
        assert expected.startswith(now), (cut, now)
        previous = now


def test_what_follows_the_entrypoint_is_never_touched() -> None:
    """The job's own output is kept as it is: lines that look like Ray's, an entrypoint line
    of its own, no newline at the end."""
    log = ("2026-12-03 17:31:49,096\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
           "Running entrypoint for job j: python x.py\n"
           "2026-12-03 17:31:50,000\tINFO mine.py:1 -- my own logging, in Ray's format\n"
           "Running entrypoint for job j: printed by the job\n"
           "\r progress 50%\r progress 100%")
    assert user_output(log) == log.split("\n", 2)[2]
