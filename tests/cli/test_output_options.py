"""``--output json|table|csv`` and ``--query`` (JMESPath) on every command that prints JSON, and
shell completion: through the toolkit, and through the real ``cumulo`` command and a server."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import typer

from cumulo.cli.app import app
from cumulo.cli.context import lift_query
from cumulo.cli.output import print_json, show_record, show_rows, use_format
from cumulo.errors import Invalid
from tests.services import CUMULO, Cumulo

ROWS = [{"name": "a", "size": 5, "gone": None, "tags": ["x"]},
        {"name": "b,c", "size": 12, "gone": "yes", "tags": []}]
COLUMNS: dict[str, Any] = {"name": "name", "size": "size", "gone": "gone",
                           "state": lambda r: "[green]ok[/]"}


@pytest.fixture
def fmt() -> Iterator[Any]:
    """Sets the root options as the root command would, and puts them back."""
    undo: list[Any] = []
    yield lambda **options: undo.append(use_format(**{"output": None, "query": None,
                                                      **options}))
    for reset in reversed(undo):
        reset()


def test_csv_has_the_tables_columns_as_text(fmt: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    fmt(output="csv")
    show_rows(ROWS, COLUMNS, as_json=False)
    assert list(csv.reader(io.StringIO(capsys.readouterr().out))) == [
        ["name", "size", "gone", "state"], ["a", "5", "", "ok"], ["b,c", "12", "yes", "ok"]]
    show_record(ROWS[0], [("name", "a"), ("gone", None)], as_json=False)
    assert capsys.readouterr().out == "name,gone\na,\n"


@pytest.mark.parametrize(("output", "query", "printed"), [
    (None, "[].name", '[\n  "a",\n  "b,c"\n]\n'),
    ("json", "[0].size", "5\n"),
    ("table", "[].name", "a\nb,c\n"),  # plain values: one a line
    ("csv", "length(@)", "2\n"),
    ("csv", "[].{n: name, t: tags}", 'n,t\na,"[""x""]"\n"b,c",[]\n'),  # nested: JSON
    ("csv", "[0]", "name,size,gone,tags\na,5,,\"[\"\"x\"\"]\"\n"),  # an object: one row
    ("table", "[?size > `100`]", ""),  # nothing found: nothing printed
])
def test_a_query_picks_from_the_json(fmt: Any, capsys: pytest.CaptureFixture[str],
                                     output: str | None, query: str, printed: str) -> None:
    fmt(output=output, query=query)
    print_json(ROWS)
    assert capsys.readouterr().out == printed


@pytest.mark.parametrize(("query", "message"), [
    ("[.", "--query '[.' is not JMESPath: invalid token '.' at position 1"),
    ("[].id ||", "--query '[].id ||' is not JMESPath: the expression ends too soon at "
                 "position 8"),
    ("name == `1", "--query 'name == `1' is not JMESPath: Unclosed ` delimiter at position 8"),
    ("", "--query is empty: give a JMESPath expression like '[].id'"),
])
def test_a_query_that_is_not_jmespath_is_named_with_its_position(query: str,
                                                                 message: str) -> None:
    with pytest.raises(Invalid) as caught:
        use_format(output=None, query=query)
    assert caught.value.message == message


def test_query_moves_to_the_root_but_not_past_a_double_dash() -> None:
    assert lift_query(["jobs", "ls", "--json", "--query", "[].id"]) == [
        "--query", "[].id", "jobs", "ls", "--json"]
    assert lift_query(["sql", "q", "--output", "f.csv", "--query=[0]"]) == [
        "--query=[0]", "sql", "q", "--output", "f.csv"]
    assert lift_query(["jobs", "run", "--", "x.py", "--query", "q"]) == [
        "jobs", "run", "--", "x.py", "--query", "q"]


def _leaves(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    if hasattr(command, "list_commands"):
        for name in command.list_commands(None):
            yield from _leaves(command.get_command(None, name), (*path, name))
    else:
        yield " ".join(path), command


def test_every_json_option_is_the_toolkits() -> None:
    """--output json and --query reach a command through JsonOpt; and no command has a
    --query of its own, which the root's would take."""
    leaves = list(_leaves(typer.main.get_command(app)))
    with_json = [(name, p) for name, c in leaves for p in c.params if "--json" in p.opts]
    assert len(with_json) > 80
    assert [name for name, p in with_json if not p.help.startswith("Print JSON for scripts "
                                                                   "instead of a table (as")] == []
    assert [name for name, c in leaves if any("--query" in p.opts for p in c.params)] == []


@pytest.fixture(scope="module")
def tokens(local_server: Cumulo) -> list[str]:
    for name in ("out-a", "out-b"):
        assert local_server.cli("tokens", "create", name).returncode == 0
    return ["out-a", "out-b"]


def test_query_after_the_command_or_before_it(local_server: Cumulo, tokens: list[str]) -> None:
    for args in (["tokens", "ls", "--json", "--query", "[?name != 'admin'].name"],
                 ["tokens", "ls", "--query=[?name != 'admin'].name"],
                 ["--query", "[?name != 'admin'].name", "tokens", "ls"]):
        out = local_server.cli(*args)
        assert out.returncode == 0, out.stderr
        assert tokens == [n for n in json.loads(out.stdout) if n.startswith("out-")]
    out = local_server.cli("--output", "table", "tokens", "ls", "--query",
                           "[?starts_with(name, 'out-')].{name: name, state: state}")
    assert [line.split() for line in out.stdout.splitlines()] == [
        ["name", "state"], ["out-a", "live"], ["out-b", "live"]]


def test_output_csv_and_json_for_any_command(local_server: Cumulo, tokens: list[str]) -> None:
    rows = list(csv.DictReader(io.StringIO(local_server.cli("--output", "csv", "tokens",
                                                            "ls").stdout)))
    assert list(rows[0]) == ["id", "name", "user", "prefix", "created", "expires",
                             "last used", "state"]
    assert {r["name"]: r["expires"] for r in rows if r["name"] in tokens} == {
        "out-a": "-", "out-b": "-"}  # as the table shows it
    costs = local_server.cli("--output", "csv", "costs").stdout  # no line for people after
    table = list(csv.reader(io.StringIO(costs)))
    assert table[0][:2] == ["day", "items"]
    assert all(len(row) == len(table[0]) for row in table)  # every line a row of the table
    status = json.loads(local_server.cli("--output", "json", "status").stdout)
    assert status["url"] == local_server.url


@pytest.mark.parametrize(("args", "message"), [
    (["tokens", "create", "out-lost", "--query", "[."],
     "--query '[.' is not JMESPath: invalid token '.' at position 1"),
    (["--output", "json", "version"],
     "'cumulo version' prints no JSON, so --output json cannot apply: use it with a "
     "command that takes --json"),
    (["clusters", "rm", "out-lost", "--query", "name"],
     "'cumulo clusters rm' prints no JSON, so --query cannot apply: use it with a command "
     "that takes --json"),
    (["--output", "csv", "tokens", "create", "out-lost", "--json"],
     "--json and --output csv ask for different output: give one"),
    (["--output", "yaml", "tokens", "create", "out-lost"],
     "--output 'yaml' is not an output: use json, table or csv"),
])
def test_bad_output_options_are_refused_before_the_command_runs(
        local_server: Cumulo, tokens: list[str], args: list[str], message: str) -> None:
    out = local_server.cli(*args)
    assert (out.returncode, out.stderr, out.stdout) == (1, f"error: {message}\n", "")
    names = json.loads(local_server.cli("tokens", "ls", "--query", "[].name").stdout)
    assert "out-lost" not in names  # nothing was made


def test_shell_completion() -> None:
    env = {**os.environ, "_CUMULO_COMPLETE": "complete_bash", "COMP_WORDS": "cumulo --output ",
           "COMP_CWORD": "2"}
    out = subprocess.run([CUMULO], env=env, capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == ["json", "table", "csv"]
    out = subprocess.run([CUMULO], env={**env, "COMP_WORDS": "cumulo tok", "COMP_CWORD": "1"},
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == ["tokens"]
    script = subprocess.run([CUMULO, "--show-completion", "bash"], capture_output=True,
                            text=True, timeout=30)
    assert script.returncode == 0 and "_CUMULO_COMPLETE=complete_bash" in script.stdout
