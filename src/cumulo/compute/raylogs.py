"""A Ray job's log as its user sees it: the job's own output, without Ray's set-up lines.

Ray writes into a job's log before the entrypoint starts: its own log records (``2026-12-03
17:27:20,128<TAB>INFO job_manager.py:581 -- Runtime env is setting up.``, and the runtime
environment's download lines when the head streams them there), then ``Running entrypoint for
job <id>: <entrypoint>``, which for a Cumulo job carries the whole job spec in base64.
"""

from __future__ import annotations

import re

__all__ = ["user_output"]

# Ray's logger format, ray_constants.LOGGER_FORMAT:
# "%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s", sometimes behind the
# "(name pid=...) " of the process that logged it.
_RECORD = re.compile(r"(?:\([^)\n]*\) )?\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\t[A-Z]+ \S+:\d+ -- ")
_ENTRYPOINT = "Running entrypoint for job "


def user_output(text: str) -> str:
    """``text``, a Ray job's log, without Ray's set-up lines.

    Up to the line ``Running entrypoint for job ...`` (dropped), lines in Ray's log format are
    dropped and the others kept; from there on everything is kept as it is, Ray's lines from
    the job's own ``ray.init()`` included. Nothing else changes: the kept text is the log's,
    byte for byte, in order.

    It suits a log read while it grows: an unfinished last line before the entrypoint's line is
    held back until it ends (it may turn out to be Ray's), so for a log ``text`` and anything
    that follows it, ``user_output(text)`` is where ``user_output(text + more)`` starts. A
    follower can filter the whole log each time and send what lies past what it sent.

    >>> user_output("2026-12-03 17:27:20,128\\tINFO job_manager.py:581 -- Runtime env is "
    ...             "setting up.\\nRunning entrypoint for job j-1: python -m x\\nhello\\n")
    'hello\\n'
    """
    kept: list[str] = []
    start = 0
    while (end := text.find("\n", start)) >= 0:
        line = text[start:end + 1]
        start = end + 1
        if line.startswith(_ENTRYPOINT):
            return "".join(kept) + text[start:]
        if not _RECORD.match(line):
            kept.append(line)
    return "".join(kept)
