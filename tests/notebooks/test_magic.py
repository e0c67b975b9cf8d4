"""``%load_ext cumulo`` in a real IPython shell, against a real server: ``%%sql`` returns the
lake's rows as a DataFrame, ``%cumulo tables`` browses, and a refusal shows as the server's
message (no traceback) and fails the cell."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from tests.services import Cumulo


@pytest.fixture(scope="module")
def server(shared_server: Cumulo) -> Cumulo:
    """The package's shared server (conftest.py), with this module's database on it."""
    c = shared_server.client()
    c.tables.create_database("shop")
    c.tables.write("shop.orders", pd.DataFrame({"id": [1, 2, 3], "region": ["n", "s", "n"],
                                                "amount": [9.5, 3.25, 7.0]}))
    return shared_server


@pytest.fixture(scope="module")
def shell(server: Cumulo) -> Iterator[InteractiveShell]:
    """IPython's shell, with the credentials a notebook server gives its kernels."""
    saved = {k: os.environ.get(k) for k in ("CUMULO_URL", "CUMULO_TOKEN")}
    os.environ.update(CUMULO_URL=server.url, CUMULO_TOKEN=server.token)
    ip = InteractiveShell.instance()
    ran = ip.run_line_magic("load_ext", "cumulo")
    assert ran is None
    yield ip
    ip.run_line_magic("unload_ext", "cumulo")
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _cell(shell: InteractiveShell, source: str) -> tuple[Any, str]:
    """Run a cell as Jupyter does; (its result, what it printed)."""
    with capture_output() as out:
        result = shell.run_cell(source, store_history=True)
    return result, out.stdout + out.stderr


def test_sql_returns_a_dataframe(shell: InteractiveShell) -> None:
    result, _ = _cell(shell, "%%sql\nselect region, sum(amount) as total from shop.orders "
                             "group by region order by region\n")
    assert result.success
    frame = result.result
    assert isinstance(frame, pd.DataFrame)
    assert frame.to_dict("records") == [{"region": "n", "total": 16.5},
                                        {"region": "s", "total": 3.25}]


def test_sql_assigns_to_a_variable(shell: InteractiveShell) -> None:
    result, printed = _cell(shell, "%%sql big <<\nselect id from shop.orders where amount > 5 "
                                   "order by id")
    assert result.success and result.result is None
    assert "big: 2 rows, 1 columns" in printed
    assert shell.user_ns["big"]["id"].tolist() == [1, 3]


def test_a_sql_error_shows_the_servers_message_and_fails_the_cell(
        shell: InteractiveShell) -> None:
    result, printed = _cell(shell, "%%sql\nselect nope from shop.orders")
    assert not result.success
    assert "Invalid:" in printed and "nope" in printed, printed
    assert "Traceback" not in printed and "magic.py" not in printed, printed
    result, printed = _cell(shell, "%%sql\nselect * from shop.missing")
    assert not result.success and "shop.missing" in printed and "Traceback" not in printed
    result, printed = _cell(shell, "%%sql df\nselect 1")
    assert not result.success and "'NAME <<'" in printed


def test_cumulo_tables_lists_the_tables(shell: InteractiveShell) -> None:
    result, _ = _cell(shell, "%cumulo tables shop")
    assert result.success
    names = result.result["name"].tolist()
    assert any(name.endswith("orders") for name in names), names
    result, _ = _cell(shell, "%cumulo tables")
    assert any(name.endswith("orders") for name in result.result["name"].tolist())
    result, _ = _cell(shell, "%cumulo databases")
    assert result.result.set_index("name").loc["shop", "tables"] == 1
    result, printed = _cell(shell, "%cumulo tables nowhere")
    assert not result.success and "nowhere" in printed and "Traceback" not in printed
    result, printed = _cell(shell, "%cumulo help")
    assert result.success and "%%sql df <<" in printed
    result, printed = _cell(shell, "%cumulo frobnicate")
    assert not result.success and "not a command of it" in printed


def test_import_cumulo_stays_light_until_the_extension_loads() -> None:
    import subprocess
    import sys

    code = ("import sys, cumulo; print('IPython' in sys.modules, "
            "'cumulo.notebooks.magic' in sys.modules, callable(cumulo.load_ipython_extension))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.split()
    assert shown == ["False", "False", "True"]
