"""examples/notebooks/tour.ipynb, the README's tour as a notebook, runs top to bottom with
papermill against a real server (the SDK and the magics, signed in from the environment as
in a Cumulo notebook), and its cells show what the tour promises."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cumulo.notebooks.execute import execute
from tests.services import Cumulo

TOUR = Path(__file__).resolve().parents[2] / "examples" / "notebooks" / "tour.ipynb"


@pytest.fixture(scope="module")
def server(shared_server: Cumulo) -> Cumulo:
    """The package's shared server (conftest.py)."""
    return shared_server


def _text(cell: dict[str, Any]) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append("".join(out.get("text", "")))
        parts.append("".join(out.get("data", {}).get("text/plain", "")))
    return "".join(parts)


def test_the_tour_notebook_runs_against_a_server(server: Cumulo, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # What a Cumulo notebook's kernel has: the server and a token in its environment.
    monkeypatch.setenv("CUMULO_URL", server.url)
    monkeypatch.setenv("CUMULO_TOKEN", server.token)
    monkeypatch.delenv("CUMULO_PROJECT", raising=False)
    assert "CUMULO_URL" in os.environ
    out = execute(TOUR, tmp_path / "tour.ipynb", parameters={}, cwd=tmp_path)
    cells = [c for c in json.loads(out.read_text())["cells"] if c["cell_type"] == "code"]
    by_source = {"".join(c["source"]).splitlines()[0]: _text(c) for c in cells}
    assert by_source["import pathlib"] == "'admin'"  # signed in from the environment
    assert "raw/customers.csv" in by_source['pathlib.Path("customers.csv").write_text(']
    assert "customers" in by_source['client.tables.create_database("tour")']
    sql = by_source["%%sql"]
    assert "customers" in sql and "spend" in sql  # the DataFrame, drawn
    assert "short: 5 rows, 3 columns" in by_source["%%sql short <<"]
    assert "'succeeded'" in by_source['job = client.train(table="tour.customers", '
                                      'target="churned", name="tour",']
    predictions = by_source["version = max(int(v[\"version\"]) for v in "
                            "client.models.versions(\"tour\"))"]
    assert predictions == "[1, 0]"  # short tenure and low spend churns; the other stays
    # The tour tidies up after itself.
    c = server.client()
    assert [e["name"] for e in c.endpoints.list()] == []
    assert "tour" not in [d["name"] for d in c.tables.databases()]
    assert "tour" in [m["name"] for m in c.models.list()]
