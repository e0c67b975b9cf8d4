"""The layers hold (scripts/check_layers.py, also run by ``make check``), and the check catches
each thing it is for, on small source trees made here."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_layers",
                                                  ROOT / "scripts" / "check_layers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


layers = _load()


def test_the_layers_hold() -> None:
    new, stale = layers.report(ROOT / "src")
    if new or stale:
        pytest.fail("\n".join([*map(str, new), *stale]), pytrace=False)


def _tree(root: Path, files: dict[str, str]) -> Path:
    src = root / "src"
    for name, code in files.items():
        path = src / "cumulo" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code))
    for folder in [src / "cumulo", *(p for p in (src / "cumulo").rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    return src


# What each module of a small Cumulo imports; the comment says what the check makes of it.
_FILES = {
    "__init__.py": """\
        def __getattr__(name):
            from cumulo.client import Client  # allowed: the root Client, lazily
            return Client
        """,
    "config.py": "from cumulo.compute.jobs import submit  # core imports a service\n",
    "services.py": """\
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from cumulo.compute.supervisor import Supervisor  # allowed: annotations only
            from cumulo.compute.supervisor import _Live  # private, even so
        """,
    "errors.py": """\
        def f():
            from cumulo.server.app import create_app  # core imports a composer, even lazily
        """,
    "job.py": "from cumulo.client import Client  # the root Client, but at import time\n",
    "client/__init__.py": "from cumulo.compute.sdk import JobsClient  # allowed: a composer\n",
    "client/transport.py": "",
    "cli/app.py": "from cumulo.compute.cli import app  # allowed: a composer mounts it\n",
    "cli/output.py": "",
    "server/app.py": "from cumulo.compute.api import router  # allowed: a composer mounts it\n",
    "server/auth.py": "",
    "compute/jobs.py": "from cumulo.compute import _keys  # allowed: inside its own service\n",
    "compute/_keys.py": "",
    "compute/sdk.py": "from cumulo.client.transport import Transport  # allowed: core\n",
    "compute/supervisor.py": "_Live = 1\n",
    "compute/cli.py": "from cumulo.cli.output import console  # allowed: the CLI's toolkit\n",
    "compute/api.py": "from cumulo.server.auth import require_token  # a composer\n",
    "ml/api.py": """\
        from cumulo.compute.api import router  # another service's router
        from cumulo.compute.jobs import _parse  # private
        from cumulo.compute import _keys  # private module
        from cumulo.compute import jobs
        from ..compute import cli  # another service's CLI, by a relative import
        jobs._reap()  # private, read as an attribute
        """,
    "ml/a.py": "from cumulo.ml import b\n",
    "ml/b.py": "from cumulo.ml.c import x\n",
    "ml/c.py": "from cumulo.ml.a import y  # a -> b -> c -> a, at import time\n",
    "ml/sdk.py": """\
        def reproduce():
            from cumulo.ml.reproduce import run  # each other, in functions
        """,
    "ml/reproduce.py": """\
        def run():
            from cumulo.ml.sdk import ModelsClient
        """,
    "pipelines/step.py": """\
        def main():
            from cumulo.client import Client  # allowed: the root Client, lazily
        """,
    "feeds/reader.py": "",  # a new package named in no layer
}


def test_each_rule(tmp_path: Path) -> None:
    found = layers.check(_tree(tmp_path, _FILES))
    assert [str(v) for v in found] == [
        "src/cumulo/compute/api.py:1: cumulo.compute.api imports cumulo.server.auth."
        "require_token (a service imports no composer)",
        "src/cumulo/config.py:1: cumulo.config imports cumulo.compute.jobs.submit "
        "(core imports no service)",
        "src/cumulo/errors.py:2: cumulo.errors imports cumulo.server.app.create_app "
        "(core imports no composer)",
        "src/cumulo/feeds/reader.py:1: cumulo.feeds.reader imports - (package cumulo.feeds "
        "is in no layer: add it to SERVICES or CORE_PACKAGES in scripts/check_layers.py)",
        "src/cumulo/job.py:1: cumulo.job imports cumulo.client.Client "
        "(core imports no composer)",
        "src/cumulo/ml/a.py:1: cumulo.ml.a imports cumulo.ml.b (import cycle at module level: "
        "cumulo.ml.a -> cumulo.ml.b -> cumulo.ml.c -> cumulo.ml.a)",
        "src/cumulo/ml/api.py:1: cumulo.ml.api imports cumulo.compute.api.router "
        "(compute's router is for the composers)",
        "src/cumulo/ml/api.py:2: cumulo.ml.api imports cumulo.compute.jobs._parse "
        "(private to compute)",
        "src/cumulo/ml/api.py:3: cumulo.ml.api imports cumulo.compute._keys "
        "(private to compute)",
        "src/cumulo/ml/api.py:5: cumulo.ml.api imports cumulo.compute.cli "
        "(compute's CLI is for the composers)",
        "src/cumulo/ml/api.py:6: cumulo.ml.api imports cumulo.compute.jobs._reap "
        "(private to compute)",
        "src/cumulo/ml/reproduce.py:2: cumulo.ml.reproduce imports cumulo.ml.sdk "
        "(cumulo.ml.reproduce and cumulo.ml.sdk import each other (in functions))",
        "src/cumulo/services.py:4: cumulo.services imports cumulo.compute.supervisor._Live "
        "(private to compute)",
    ]


def test_the_allow_list_only_shrinks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    src = _tree(tmp_path, {"config.py": "from cumulo.compute.jobs import submit\n",
                           "compute/jobs.py": ""})
    assert layers.main([str(src)]) == 1
    assert capsys.readouterr().out == ("src/cumulo/config.py:1: cumulo.config imports "
                                       "cumulo.compute.jobs.submit (core imports no service)\n")
    monkeypatch.setattr(layers, "ALLOWED", {
        ("cumulo.config", "cumulo.compute.jobs.submit"): "moves out in issue 1",
        ("cumulo.errors", "cumulo.compute.jobs.submit"): "fixed already",
    })
    assert layers.main([str(src)]) == 1
    assert capsys.readouterr().out == (
        "cumulo.errors imports cumulo.compute.jobs.submit: no longer found; remove it from "
        "ALLOWED in scripts/check_layers.py\n")
    (src / "cumulo" / "errors.py").write_text("from cumulo.compute.jobs import submit\n")
    assert layers.main([str(src)]) == 0


def test_a_file_that_does_not_parse_is_reported(tmp_path: Path) -> None:
    src = _tree(tmp_path, {"config.py": "def f(:\n"})
    assert [v.rule for v in layers.check(src)] == ["its source does not parse: invalid syntax"]
