"""Every option of every command that takes a duration, or a time that may be a span back
from now, reads the one grammar of ``cumulo.units``: ``1h30m`` and ``24h`` work everywhere,
and a wrong value is refused naming the option and the forms that work. Through the real
``cumulo`` command and a server; the grammar itself is tested in tests/test_units.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import typer

from cumulo.cli.app import app
from tests.services import Cumulo

DURATION = "is not a duration: use forms like 90s, 30m, 1h30m, 7d, 2w"
TIME = ("is not a time: use a date like 2026-11-01, a time like 2026-11-01T12:00:00Z, or a "
        "span back from now like 7d or 1h30m")


@dataclass(frozen=True)
class Opt:
    command: tuple[str, ...]  # up to the option
    option: str
    grammar: str  # DURATION or TIME
    good: str = "1h30m"
    then: str = ""  # what a good value meets next (nothing here: the command succeeds)
    named: str = ""  # the name its error gives, where it is not the option's (see below)

    def __str__(self) -> str:
        return " ".join([*self.command[:2], self.option])


OPTIONS = [
    Opt(("tokens", "create", "dur-token"), "--expires-in", DURATION),
    Opt(("clusters", "create", "dur-cluster"), "--idle-timeout", DURATION),
    Opt(("jobs", "run", "--command", "true"), "--max-runtime", DURATION),
    Opt(("sql", "select 1"), "--timeout", DURATION),
    Opt(("tables", "vacuum", "none.t"), "--retain", DURATION, then="database 'none'"),
    Opt(("endpoints", "create", "dur-e", "--model", "none:1"), "--scale-in-cooldown", DURATION,
        then="no model 'none'"),
    Opt(("endpoints", "create", "dur-e", "--model", "none:1"), "--scale-to-zero-after",
        DURATION, then="no model 'none'"),
    Opt(("endpoints", "update", "none"), "--scale-in-cooldown", DURATION,
        then="no endpoint 'none'"),
    Opt(("endpoints", "update", "none"), "--scale-to-zero-after", DURATION,
        then="no endpoint 'none'"),
    Opt(("endpoints", "update", "none", "--model", "none:1"), "--bake", DURATION,
        then="no endpoint 'none'"),
    Opt(("pipelines", "run", "none"), "--timeout", DURATION, then="no pipeline 'none'"),
    Opt(("monitors", "create", "dur-m", "--endpoint", "none", "--baseline", "none.t"),
        "--window", DURATION, then="no endpoint 'none'"),
    Opt(("pipelines", "retry", "none"), "--timeout", DURATION, then="no pipeline run 'none'"),
    Opt(("costs",), "--since", TIME, good="24h"),
    Opt(("costs",), "--until", TIME),
    Opt(("budgets", "check"), "--at", TIME),
    Opt(("audit", "ls"), "--since", TIME, good="24h"),
    Opt(("audit", "ls"), "--until", TIME),
    Opt(("logs",), "--since", TIME, good="24h"),
    Opt(("endpoints", "logs", "none"), "--since", TIME, then="no endpoint 'none'"),
    Opt(("tables", "restore", "none.t"), "--as-of", TIME, then="database 'none'"),
    Opt(("tables", "read", "none.t"), "--as-of", TIME, then="database 'none'"),
    Opt(("access", "check", "admin", "tables:Read"), "--at", TIME),
    Opt(("envs", "prune", "--dryrun"), "--unused", DURATION),
    Opt(("keys", "create", "dur-key"), "--expires-in", DURATION),
    Opt(("files", "presign", "none/x"), "--expires", DURATION, then="bucket 'none'"),
    Opt(("streams", "create", "dur-stream"), "--retention", DURATION, good="48h"),
    Opt(("streams", "get", "none"), "--at", TIME, then="stream 'none'"),
    Opt(("streams", "deliver", "none", "--to-table", "web.t"), "--buffer", DURATION,
        good="1MB/60s", then="stream 'none'"),
    Opt(("notebooks", "create", "dur-nb", "--cluster", "none"), "--idle-timeout", DURATION,
        then="no cluster 'none'"),
]


@pytest.mark.parametrize("opt", OPTIONS, ids=str)
def test_each_option_reads_the_one_grammar(local_server: Cumulo, opt: Opt) -> None:
    bad = local_server.cli(*opt.command, opt.option, "5x")
    assert (bad.returncode, bad.stderr) == (1, f"error: {opt.named or opt.option} '5x' "
                                               f"{opt.grammar}\n")
    good = local_server.cli(*opt.command, opt.option, opt.good)
    if opt.then:
        assert good.returncode == 1 and opt.then in good.stderr, good.stderr
    else:
        assert good.returncode == 0, good.stderr


def test_a_good_value_means_what_it_says(local_server: Cumulo) -> None:
    before = datetime.now(UTC)
    token = json.loads(local_server.cli("tokens", "create", "dur-meant", "--expires-in",
                                        "1h30m", "--json").stdout)
    expires = datetime.fromisoformat(token["expires_at"].replace("Z", "+00:00"))
    assert abs(expires - before - timedelta(hours=1, minutes=30)) < timedelta(minutes=1)
    cluster = json.loads(local_server.cli("clusters", "create", "dur-meant", "--idle-timeout",
                                          "1w2d", "--json").stdout)
    assert cluster["idle_timeout_s"] == 9 * 86400
    costs = json.loads(local_server.cli("costs", "--since", "24h", "--json").stdout)
    assert costs["since"] == str(datetime.now(UTC).date())  # a whole day: today's


_EXAMPLE = re.compile(r"\b\d+(?:\.\d+)?(?:ms|s|m|h|d|w)\b|same forms")


def _options(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    if hasattr(command, "list_commands"):
        for name in command.list_commands(None):
            sub = command.get_command(None, name)
            if not sub.hidden:  # an alias ('audit list') is its command
                yield from _options(sub, (*path, name))
        return
    for param in command.params:
        if param.param_type_name == "option" and _EXAMPLE.search(param.help or ""):
            yield " ".join(path), param.opts[0]


def _path(root: Any, argv: tuple[str, ...]) -> str:
    """The command ``argv`` names: its words while they name groups' commands."""
    names, command = [], root
    for word in argv:
        if not hasattr(command, "list_commands"):
            break
        command = command.get_command(None, word)
        names.append(word)
    return " ".join(names)


def test_the_list_has_every_such_option() -> None:
    """A new option whose help shows a duration (like 90s) or a time is added above."""
    root = typer.main.get_command(app)
    assert set(_options(root)) == {(_path(root, opt.command), opt.option) for opt in OPTIONS}
