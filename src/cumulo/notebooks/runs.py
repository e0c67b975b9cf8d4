"""Notebooks as jobs (SageMaker's notebook jobs): a notebook executed headless, with
parameters, by papermill.

A run is a Cumulo job: the notebook goes up as the job's code (a snapshot holding it alone),
the job runs ``python -m cumulo.notebooks.execute NOTEBOOK --parameters JSON``, and the
executed notebook, outputs and all, is the job's output (``cumulo jobs download``). A
scheduled run is a pipeline of one Notebook step with a cron schedule.

Everything the user typed is checked here, before anything is uploaded or queued: the file is
a notebook, each parameter is one its cell tagged ``parameters`` declares (papermill's
convention, read with papermill's ``inspect_notebook``), and a value is of the type of the
default it replaces.

>>> job = run(client, "analysis.ipynb", parameters={"alpha": 0.5})  # doctest: +SKIP
>>> job.wait()["state"]                                              # doctest: +SKIP
'succeeded'
"""

from __future__ import annotations

import ast
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cumulo.errors import Invalid

if TYPE_CHECKING:
    from cumulo.client.transport import Transport
    from cumulo.compute.sdk import Job, JobsClient
    from cumulo.pipelines.sdk import PipelinesClient

__all__ = ["EXECUTE_COMMAND", "Clients", "Notebook", "check_parameters", "clients",
           "parse_params", "read_notebook", "run", "schedule"]

EXECUTE_COMMAND = ["python", "-m", "cumulo.notebooks.execute"]
PARAMETERS_TAG = "parameters"  # papermill's: the cell whose assignments are the defaults
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PIPELINE_NAME = re.compile(r"[^a-z0-9-]+")
_EXTRA = "pip install 'cumulo[notebooks]'"


class Clients(Protocol):
    """What a run needs of the SDK: ``cumulo.Client()`` is one."""

    @property
    def jobs(self) -> JobsClient: ...

    @property
    def pipelines(self) -> PipelinesClient: ...


@dataclass(frozen=True)
class _Sdk:
    jobs: JobsClient
    pipelines: PipelinesClient


def clients(transport: Transport) -> Clients:
    """The sub-clients a run uses, over one transport (for ``client.notebooks.run``)."""
    from cumulo.compute.sdk import JobsClient
    from cumulo.pipelines.sdk import PipelinesClient

    return _Sdk(JobsClient(transport), PipelinesClient(transport))


@dataclass(frozen=True)
class Notebook:
    """A notebook read and checked: its file name, its JSON (kernel metadata filled in where
    it had none), and the parameters its ``parameters`` cell declares (name: papermill's
    inferred type and default)."""

    name: str
    text: str
    declared: dict[str, dict[str, Any]]


def _papermill() -> Any:
    try:
        import papermill  # type: ignore[import-untyped]
    except ImportError as exc:
        raise Invalid(f"notebook jobs need papermill: {_EXTRA}") from exc
    return papermill


def read_notebook(path: str | os.PathLike[str]) -> Notebook:
    """Read ``path`` as a notebook, or raise Invalid naming the file and what is wrong."""
    file = Path(path)
    if file.is_dir() or not file.exists():
        raise Invalid(f"notebook {file} does not exist" if not file.exists()
                      else f"notebook {file} is a folder, not a .ipynb file")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Invalid(f"cannot read notebook {file}: {exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(f"notebook {file} is not valid JSON: {exc.msg} at line {exc.lineno} "
                      f"column {exc.colno}; a notebook is a .ipynb file as Jupyter saves "
                      "it") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list) or \
            "nbformat" not in raw:
        raise Invalid(f"{file} is JSON but not a notebook: a notebook is an object with "
                      "'cells' and 'nbformat' (a .ipynb file as Jupyter saves it)")
    try:  # after the cheap checks: it loads a JSON Schema validator
        import nbformat
    except ImportError as exc:
        raise Invalid(f"notebook jobs need papermill and nbformat: {_EXTRA}") from exc
    try:
        nb = nbformat.reads(text, as_version=4)  # type: ignore[no-untyped-call]
        nbformat.validate(nb)
    except Exception as exc:  # nbformat's ValidationError, or a version it cannot read
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Invalid(f"{file} is not a valid notebook: {first}") from exc
    kernel = nb.metadata.get("kernelspec", {})
    language = kernel.get("language") or nb.metadata.get("language_info", {}).get("name")
    if language and language != "python":
        raise Invalid(f"notebook {file} runs on the {language} kernel "
                      f"({kernel.get('name', '?')}); notebook jobs run Python notebooks")
    # papermill reads the kernel and the language from the metadata: a notebook written by
    # hand (or by a tool that leaves them out) gets Python's.
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                          "language": "python"})
    nb.metadata.setdefault("language_info", {"name": "python"})
    text = nbformat.writes(nb)  # type: ignore[no-untyped-call]
    return Notebook(name=file.name, text=text, declared=_declared(text))


def _declared(text: str) -> dict[str, dict[str, Any]]:
    papermill = _papermill()
    with tempfile.TemporaryDirectory(prefix="cumulo-nb-") as tmp:
        path = Path(tmp) / "notebook.ipynb"
        path.write_text(text, encoding="utf-8")
        declared: dict[str, dict[str, Any]] = papermill.inspect_notebook(str(path))
    return declared


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``["alpha=0.5", ...]`` (what ``--param`` takes) to a dict, the values still text."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise Invalid(f"--param {pair!r} must be of the form NAME=VALUE, like alpha=0.5")
        if not _NAME.match(name):
            raise Invalid(f"--param {pair!r}: {name!r} is not a Python name (letters, digits "
                          "and '_', not starting with a digit)")
        if name in out:
            raise Invalid(f"--param {name} is given twice")
        out[name] = value
    return out


def check_parameters(notebook: Notebook, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` checked against what the notebook declares: each name one it declares, and
    each value given as text (from ``--param``) made the type of the default it replaces.
    Raises Invalid naming the parameter and the ones the notebook does declare."""
    declared = notebook.declared
    for name in values:
        if name in declared:
            continue
        if not declared:
            raise Invalid(f"notebook {notebook.name} declares no parameters, so it takes no "
                          f"{name!r}: tag the cell that sets its defaults "
                          f"'{PARAMETERS_TAG}' (papermill's convention)")
        raise Invalid(f"notebook {notebook.name} declares no parameter {name!r}; it declares "
                      f"{', '.join(declared)} (in its cell tagged '{PARAMETERS_TAG}')")
    return {name: _convert(name, value, declared[name]) if isinstance(value, str) else value
            for name, value in values.items()}


def _convert(name: str, text: str, declared: dict[str, Any]) -> Any:
    """Text from the command line as the type of the parameter's default."""
    default = declared.get("default")
    kind = declared.get("inferred_type_name") or "None"
    if kind == "None":  # no annotation: the type of the default's literal (0.1, 3, 'x')
        try:
            kind = type(ast.literal_eval(str(default))).__name__
        except (ValueError, SyntaxError):
            kind = "None"
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError(text)
    except ValueError:
        raise Invalid(f"--param {name}={text}: expected {_A.get(kind, kind)}, like its default "
                      f"{default}") from None
    if kind == "str":
        return text
    try:  # a list, a dict, None or an expression: JSON where it is JSON, else the text
        return json.loads(text)
    except json.JSONDecodeError:
        return text


_A = {"int": "an integer", "float": "a number", "bool": "true or false"}


def _job_args(notebook: Notebook, parameters: dict[str, Any]) -> list[str]:
    return [notebook.name, "--parameters", json.dumps(parameters)]


def _upload(client: Clients, notebook: Notebook, project: str | None) -> str:
    """The notebook as a code snapshot of its own; its digest."""
    with tempfile.TemporaryDirectory(prefix="cumulo-nb-") as tmp:
        (Path(tmp) / notebook.name).write_text(notebook.text, encoding="utf-8")
        return client.jobs.upload_code(tmp, project=project)


def _environment(env: dict[str, str] | None, environment: str | None,
                 requirements: str | os.PathLike[str] | list[str] | None) -> dict[str, Any]:
    from cumulo.compute.spec import parse_env

    return {"env": parse_env(env or {}), "environment": environment,
            "requirements": requirements}


def run(client: Clients, notebook: str | os.PathLike[str], *,
        parameters: dict[str, Any] | None = None, cluster: str = "local", cpus: float = 1,
        memory: str | int | None = None, gpus: int = 0, env: dict[str, str] | None = None,
        environment: str | None = None,
        requirements: str | os.PathLike[str] | list[str] | None = None,
        name: str | None = None, tags: list[str] | None = None,
        project: str | None = None) -> Job:
    """Execute ``notebook`` headless as a job, with ``parameters`` (checked against the cell
    it tags ``parameters``); returns the job. The executed notebook is its output."""
    nb = read_notebook(notebook)
    values = check_parameters(nb, parameters or {})
    extra = _environment(env, environment, requirements)
    with tempfile.TemporaryDirectory(prefix="cumulo-nb-") as tmp:
        (Path(tmp) / nb.name).write_text(nb.text, encoding="utf-8")
        return client.jobs.run(
            command=list(EXECUTE_COMMAND), args=_job_args(nb, values), code=tmp,
            cluster=cluster, cpus=cpus, memory=memory, gpus=gpus,
            name=name or f"notebook {Path(nb.name).stem}", tags=["notebook", *(tags or [])],
            project=project, **extra)


def schedule(client: Clients, notebook: str | os.PathLike[str], *, cron: str,
             parameters: dict[str, Any] | None = None, cluster: str = "local",
             cpus: float = 1, memory: str | int | None = None,
             environment: str | None = None,
             requirements: str | os.PathLike[str] | list[str] | None = None,
             name: str | None = None, project: str | None = None) -> dict[str, Any]:
    """Run ``notebook`` on a ``cron`` schedule (UTC): a pipeline (``name``, default
    ``notebook-STEM``) of one Notebook step, with the notebook as it is now (a snapshot), and
    its schedule. Returns ``{"pipeline": ..., "schedule": ...}``."""
    from cumulo.compute.sdk import read_requirements
    from cumulo.cron import check_cron

    check_cron(cron)
    nb = read_notebook(notebook)
    values = check_parameters(nb, parameters or {})
    reqs, _ = read_requirements(requirements)
    pipeline = name or "notebook-" + _PIPELINE_NAME.sub("-", Path(nb.name).stem.lower()).strip("-")
    params: dict[str, Any] = {"notebook": nb.name, "parameters": values, "cpus": cpus}
    params.update({k: v for k, v in (("memory", memory), ("environment", environment),
                                     ("requirements", reqs)) if v is not None})
    params["snapshot"] = _upload(client, nb, project)
    doc = {"name": pipeline, "description": f"runs notebook {nb.name} ({cron} UTC)",
           "nodes": [{"id": "notebook", "component": "notebook", "params": params}],
           "edges": []}
    client.pipelines.validate(doc)  # before anything is stored: nothing half-made
    created = client.pipelines.create(doc, project=project)
    made = client.pipelines.schedule(pipeline, cron=cron, cluster=cluster)
    return {"pipeline": created, "schedule": made}
