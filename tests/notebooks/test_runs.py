"""Notebooks as jobs on a real server: papermill in a real job, its executed notebook kept as
the job's output; bad input refused before anything is uploaded or queued; a schedule as a
pipeline of one Notebook step, and the Notebook component in a pipeline run."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from cumulo.errors import Invalid
from cumulo.notebooks import runs
from tests.services import Cumulo


@pytest.fixture(scope="module")
def server(shared_server: Cumulo) -> Cumulo:
    """The package's shared server (conftest.py)."""
    return shared_server


def _notebook(path: Path, *cells: str, parameters: str | None = None) -> Path:
    nb = nbformat.v4.new_notebook()
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _notebook(tmp_path_factory.mktemp("nb") / "analysis.ipynb",
                     "print(f'alpha is {alpha!r}, n is {n!r}, scaled {alpha * n}')",
                     "import sys; print('kernel', sys.executable)",
                     parameters="alpha = 0.1  # the learning rate\nn = 3\nlabel = 'x'")


def _outputs(cell: dict[str, Any]) -> str:
    return "".join("".join(o.get("text", "")) + "".join(o.get("traceback", []))
                   + o.get("evalue", "") for o in cell.get("outputs", []))


def _downloaded(job: Any, dest: Path, name: str) -> dict[str, Any]:
    job.download(dest)
    return json.loads((dest / name).read_text())  # type: ignore[no-any-return]


def test_a_run_with_a_parameter_keeps_the_executed_notebook(
        server: Cumulo, analysis: Path, tmp_path: Path) -> None:
    # A machine's own 'python3' kernelspec (here one that cannot start) is not what runs it:
    # the kernel is the job's interpreter.
    kernels = tmp_path / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "elsewhere", "language": "python"}))
    done = server.cli("notebooks", "run", str(analysis), "--param", "alpha=0.5",
                      "--param", "label=hello", "--env", f"JUPYTER_PATH={tmp_path / 'jupyter'}",
                      "--wait")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "alpha is 0.5, n is 3, scaled 1.5" in done.stdout  # the cells' output, live
    job = server.client().jobs.list(tag="notebook")[0]
    assert job.info["state"] == "succeeded"
    assert job.info["env"]["JUPYTER_PATH"] == str(tmp_path / "jupyter")
    assert [a["path"] for a in job.artifacts()] == ["analysis.ipynb"]
    executed = _downloaded(job, tmp_path, "analysis.ipynb")
    injected = [c for c in executed["cells"]
                if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and "alpha = 0.5" in "".join(injected[0]["source"])
    assert "label = \"hello\"" in "".join(injected[0]["source"])  # a str stays a str
    printed = [_outputs(c) for c in executed["cells"] if c["cell_type"] == "code"]
    assert "alpha is 0.5, n is 3, scaled 1.5\n" in printed
    assert f"kernel {sys.executable}\n" in printed  # the job's interpreter: the server's


def test_the_sdk_runs_one_with_typed_parameters(server: Cumulo, analysis: Path,
                                                tmp_path: Path) -> None:
    job = server.client().notebooks.run(analysis, parameters={"alpha": "2", "n": 5},
                                        name="typed")
    assert job.wait(timeout=120)["state"] == "succeeded", job.info
    executed = _downloaded(job, tmp_path, "analysis.ipynb")
    assert any("alpha is 2.0, n is 5, scaled 10.0" in _outputs(c) for c in executed["cells"])


def test_a_cell_that_raises_fails_the_job_and_keeps_the_notebook(
        server: Cumulo, tmp_path: Path) -> None:
    notebook = _notebook(tmp_path / "broken.ipynb", "print('before')",
                         "raise ValueError(f'no rows for {region}')", "print('never')",
                         parameters="region = 'north'")
    done = server.cli("notebooks", "run", str(notebook), "-p", "region=south", "--wait")
    assert done.returncode == 1, done.stdout + done.stderr
    job = server.client().jobs.list(tag="notebook")[0]
    assert job.info["state"] == "failed"
    log = "\n".join(job.logs())
    assert "notebook broken.ipynb failed in cell" in log
    assert "ValueError: no rows for south" in log and "Traceback" not in log.split(
        "failed in cell")[-1]
    assert "ValueError: no rows for south" in job.info["log_tail"]
    out = tmp_path / "out"
    executed = _downloaded(job, out, "broken.ipynb")
    texts = [_outputs(c) for c in executed["cells"]]
    assert any("before" in t for t in texts)
    assert any("no rows for south" in t for t in texts)
    assert not any("never" in t for t in texts)


def _counts(server: Cumulo) -> tuple[int, int]:
    c = server.client()
    return len(c.jobs.list(limit=1000)), len(c.pipelines.list())


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not valid JSON: Expecting property name enclosed in double quotes at "
                  "line 1 column 2"),
    ('{"rows": [1, 2]}', "is JSON but not a notebook"),
    ('{"cells": [{"cell_type": "code"}], "nbformat": 4, "nbformat_minor": 5, '
     '"metadata": {}}', "is not a valid notebook"),
])
def test_a_file_that_is_not_a_notebook_is_refused_before_anything_is_sent(
        server: Cumulo, tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "report.ipynb"
    bad.write_text(content)
    before = _counts(server)
    c = server.client()
    with pytest.raises(Invalid) as raised:
        runs.run(c, bad, parameters={"alpha": "1"})
    assert str(bad) in raised.value.message and message in raised.value.message
    with pytest.raises(Invalid, match=message):
        runs.schedule(c, bad, cron="0 6 * * *")
    if content.startswith("{not"):  # the command says the same
        done = server.cli("notebooks", "run", str(bad), "--param", "alpha=1")
        assert done.returncode != 0
        assert f"notebook {bad} {message}" in done.stderr, done.stderr
    with pytest.raises(Invalid, match="does not exist"):
        runs.run(c, tmp_path / "nowhere.ipynb")
    assert _counts(server) == before


def test_a_notebook_for_another_language_is_refused(server: Cumulo, tmp_path: Path) -> None:
    r = tmp_path / "model.ipynb"
    r.write_text(json.dumps({"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "ir", "display_name": "R", "language": "R"}}}))
    before = _counts(server)
    with pytest.raises(Invalid, match=r"runs on the R kernel .ir.; notebook jobs run Python"):
        runs.run(server.client(), r)
    assert _counts(server) == before


def test_parameters_are_checked_against_the_notebook(server: Cumulo, analysis: Path,
                                                     tmp_path: Path) -> None:
    before = _counts(server)
    c = server.client()
    done = server.cli("notebooks", "run", str(analysis), "--param", "beta=2")
    assert done.returncode != 0
    assert ("notebook analysis.ipynb declares no parameter 'beta'; it declares alpha, n, "
            "label") in done.stderr, done.stderr
    done = server.cli("notebooks", "run", str(analysis), "--param", "alpha")
    assert done.returncode != 0
    assert "--param 'alpha' must be of the form NAME=VALUE" in done.stderr, done.stderr
    for pairs, message in ((["=3"], "--param '=3' must be of the form NAME=VALUE"),
                           (["alpha=1", "alpha=2"], "--param alpha is given twice"),
                           (["2x=1"], "'2x' is not a Python name")):
        with pytest.raises(Invalid, match=re.escape(message)):
            runs.parse_params(pairs)
    with pytest.raises(Invalid, match="--param n=three: expected an integer, like its "
                                      "default 3"):
        runs.run(c, analysis, parameters=runs.parse_params(["n=three"]))
    with pytest.raises(Invalid, match="--param alpha=high: expected a number"):
        runs.run(c, analysis, parameters={"alpha": "high"})
    plain = _notebook(tmp_path / "plain.ipynb", "x = 1")
    with pytest.raises(Invalid, match=re.escape(
            "notebook plain.ipynb declares no parameters, so it takes no 'x': tag the cell "
            "that sets its defaults 'parameters'")):
        runs.run(c, plain, parameters={"x": 2})
    with pytest.raises(Invalid, match="declares no parameter 'beta'; it declares alpha"):
        runs.schedule(c, analysis, cron="0 6 * * *", parameters={"beta": 1})
    assert _counts(server) == before


def test_a_bad_cron_expression_is_refused_and_nothing_is_made(server: Cumulo,
                                                              analysis: Path) -> None:
    before = _counts(server)
    for cron in ("every morning", "61 6 * * *", "0 6 * *"):
        done = server.cli("notebooks", "run", str(analysis), "--schedule", cron)
        assert done.returncode != 0
        assert f"cron '{cron}' is not a cron expression" in done.stderr, done.stderr
    assert _counts(server) == before
    assert server.client().pipelines.schedules() == []


def test_a_schedule_is_a_pipeline_of_one_notebook_step(server: Cumulo, analysis: Path,
                                                       tmp_path: Path) -> None:
    c = server.client()
    done = server.cli("notebooks", "run", str(analysis), "--param", "alpha=0.25",
                      "--schedule", "0 6 * * *", "--cpus", "0.5", "--memory", "1G", "--json")
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert made["pipeline"]["name"] == "notebook-analysis"
    pipeline = c.pipelines.show("notebook-analysis")
    [node] = pipeline["definition"]["nodes"]
    assert node["component"] == "notebook"
    assert node["params"]["notebook"] == "analysis.ipynb"
    assert node["params"]["parameters"] == {"alpha": 0.25}
    assert node["params"]["cpus"] == 0.5 and node["params"]["memory"] == "1G"
    assert len(node["params"]["snapshot"]) == 64  # the notebook as it was scheduled
    [schedule] = c.pipelines.schedules("notebook-analysis")
    assert schedule["cron"] == "0 6 * * *"
    # What the schedule will run, run now: the notebook as it was uploaded, every time (a
    # notebook step is never taken from the cache).
    for _ in range(2):
        run = c.pipelines.run("notebook-analysis", wait=True, timeout=180)
        [step] = run["steps"]
        assert run["state"] == "succeeded" and step["state"] == "succeeded", run
        job = c.jobs.get(step["job_id"])
        assert job.info["cpus"] == 0.5 and job.info["memory"] == 2**30
        executed = _downloaded(job, tmp_path / step["job_id"], "analysis.ipynb")
        assert any("alpha is 0.25, n is 3, scaled 0.75" in _outputs(cell)
                   for cell in executed["cells"])
    c.pipelines.unschedule(schedule["name"])


def test_the_notebook_component_reads_a_stored_notebook_in_a_python_pipeline(
        server: Cumulo, tmp_path: Path) -> None:
    from cumulo.pipelines import pipeline
    from cumulo.pipelines.library import notebook

    c = server.client()
    c.files.create_bucket("reports")
    c.files.upload(str(_notebook(tmp_path / "daily.ipynb", "print('total', rows * 2)",
                                 parameters="rows = 1")), "reports/nb/daily.ipynb")
    c.files.upload(str(_notebook(tmp_path / "oops.ipynb", "1 / zero",
                                 parameters="zero = 0")), "reports/nb/oops.ipynb")

    @pipeline
    def daily(rows: int = 21) -> None:
        notebook(notebook="reports/nb/daily.ipynb", parameters={"rows": rows})

    @pipeline
    def oops() -> None:
        notebook(notebook="reports/nb/oops.ipynb")

    @pipeline
    def wrong() -> None:
        notebook(notebook="reports/nb/daily.ipynb", parameters={"colums": 3})

    for p in (daily, oops, wrong):
        c.pipelines.create(p)
    # The three run side by side (each a notebook job of seconds), then each is checked.
    started = {name: c.pipelines.run(name)["id"] for name in ("daily", "oops", "wrong")}
    finished = {name: c.pipelines.wait(run_id, timeout=180) for name, run_id in started.items()}

    run = finished["daily"]
    [step] = run["steps"]
    assert step["state"] == "succeeded", run
    executed = _downloaded(c.jobs.get(step["job_id"]), tmp_path / "d", "daily.ipynb")
    assert any("total 42" in _outputs(cell) for cell in executed["cells"])

    run = finished["oops"]
    [step] = run["steps"]
    assert step["state"] == "failed"
    assert "ZeroDivisionError: division by zero" in step["log_tail"], step
    assert [a["path"] for a in c.jobs.get(step["job_id"]).artifacts()] == ["oops.ipynb"]

    run = finished["wrong"]
    [step] = run["steps"]
    assert step["state"] == "failed"
    assert "declares no parameter 'colums'; it declares rows" in step["log_tail"], step


def test_a_notebook_step_is_checked_when_the_pipeline_is_stored(server: Cumulo) -> None:
    c = server.client()
    for params, message in (
            ({"notebook": "report.txt"}, "'report.txt' is not a notebook: a .ipynb file"),
            ({"notebook": "report.ipynb"}, "a stored notebook is BUCKET/PATH.ipynb"),
            ({"notebook": "a.ipynb", "snapshot": "abc"}, "64 hex digits"),
            ({"notebook": "b/a.ipynb", "memory": "lots"}, "memory"),
            ({"notebook": "b/a.ipynb", "parameters": [1]}, "expected an object")):
        doc = {"name": "bad-notebook", "nodes": [
            {"id": "nb", "component": "notebook", "params": params}], "edges": []}
        with pytest.raises(Invalid, match=message):
            c.pipelines.create(doc)
    assert "bad-notebook" not in [p["name"] for p in c.pipelines.list()]
    names = [component["name"] for component in c.pipelines.components()]
    assert "notebook" in names


def test_a_job_python_without_papermill_says_what_to_add(tmp_path: Path) -> None:
    """An isolated environment has Cumulo's runtime but not papermill: the job says so."""
    import subprocess

    notebook = _notebook(tmp_path / "n.ipynb", "print(1)")
    code = ("import sys; sys.modules['papermill'] = None; "  # as if it were not installed
            "from cumulo.notebooks.execute import main; sys.exit(main(['n.ipynb']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=notebook.parent,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "this job's Python has no papermill" in done.stderr
    assert "add them to its requirements, or cumulo[notebooks]" in done.stderr
    assert not (tmp_path / "output" / "n.ipynb").exists()
