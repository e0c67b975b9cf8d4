"""Endpoints and batch predictions in a model's own environment, on a real server.

The model answers, for each row, the scikit-learn version of the process that serves it. It is
logged with ``scikit-learn==1.5.2`` while the server has a newer one, so its answer says which
environment served it: the model's own (the default for it, and ``--env model``), the server's
(``--env server``) or a named one. uv builds the model's environment as a layer over the
server's packages (only scikit-learn is installed into it): about a second here.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from cumulo.errors import Conflict, Invalid, NotFound
from tests.services import Cumulo

OLD = "1.5.2"  # the scikit-learn the model was "logged" with
MODEL_CODE = '''
import mlflow
from mlflow.pyfunc import PythonModel


class SklearnVersion(PythonModel):
    def predict(self, context, model_input, params=None):
        import sklearn

        return [sklearn.__version__] * len(model_input)


mlflow.models.set_model(SklearnVersion())
'''
ROWS = [{"x": 1}, {"x": 2}]


def _pins(*extra: str) -> list[str]:
    import cloudpickle
    import mlflow

    return [*extra, f"mlflow=={mlflow.__version__}", f"cloudpickle=={cloudpickle.__version__}"]


def _register(server: Cumulo, folder: Path, name: str, requirements: list[str]) -> str:
    """A pyfunc model (from code: nothing pickled) with these requirements, registered as
    version 1 of ``name``; its reference."""
    import os

    import mlflow

    os.environ["MLFLOW_TRACKING_TOKEN"] = server.token
    mlflow.set_tracking_uri(f"{server.url}/mlflow")
    mlflow.set_registry_uri(f"{server.url}/mlflow")
    mlflow.set_experiment("environments")
    code = folder / "sklearn_version.py"
    code.write_text(MODEL_CODE)
    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="model", python_model=str(code),
                                pip_requirements=requirements, registered_model_name=name)
    return f"{name}:1"


@pytest.fixture(scope="module")
def rows(serving: Cumulo) -> str:
    c = serving.client()
    c.tables.create_database("envrows")
    c.tables.write("envrows.rows", pd.DataFrame({"x": [1, 2, 3]}))
    return "envrows.rows"


@pytest.fixture(scope="module")
def old(serving: Cumulo, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Model ``sk-old``, logged with scikit-learn 1.5.2."""
    return _register(serving, tmp_path_factory.mktemp("old"), "sk-old",
                     _pins(f"scikit-learn=={OLD}"))


def _first_answer(c: object, name: str, model: str, **options: object) -> tuple[dict, float]:
    t0 = time.monotonic()
    info = c.endpoints.create(name, model, wait=True, timeout=300,  # type: ignore[attr-defined]
                              **options)
    answer = c.endpoints[name].predict(ROWS)  # type: ignore[attr-defined]
    return {**info, "answer": answer}, time.monotonic() - t0


def test_a_model_is_served_by_the_packages_it_was_logged_with(serving: Cumulo,
                                                              old: str) -> None:
    import sklearn

    assert sklearn.__version__ != OLD
    c = serving.client()
    # The default for a model whose requirements the server's packages do not meet: its own.
    info, built_s = _first_answer(c, "old", old)
    assert info["answer"] == [OLD, OLD]
    variant = info["variants"][0]
    assert variant["env"] is None and variant["environment"]
    digest = variant["environment"]
    env = c.envs.show(digest)
    assert env["state"] == "ready" and f"scikit-learn=={OLD}" in env["lock"]
    shown = serving.cli("endpoints", "show", "old")
    assert shown.returncode == 0, shown.stderr
    assert f"the model's requirements, {digest[:12]}" in shown.stdout
    # Once its first replica is ready, the environment gets a fork server of its own.
    deadline = time.monotonic() + 120
    while c.endpoints.runtime()["environments"].get(digest[:12], {}).get("state") != "ready":
        assert time.monotonic() < deadline, c.endpoints.runtime()
        time.sleep(0.2)
    # --env model, its environment built: a replica forked from that fork server.
    info, model_s = _first_answer(c, "old-model", old, env="model")
    assert info["answer"] == [OLD, OLD]
    assert info["variants"][0]["environment"] == digest
    assert info["replicas"][0]["forked"]
    # --env server: the server's scikit-learn.
    info, server_s = _first_answer(c, "old-server", old, env="server")
    assert info["answer"] == [sklearn.__version__] * 2
    assert info["variants"][0]["env"] == "server"
    assert info["variants"][0]["environment"] is None
    print(f"create to first answer: {built_s:.2f}s building its environment, "
          f"{model_s:.2f}s in it once built, {server_s:.2f}s in the server's")
    # A new variant named to run elsewhere than the endpoint's replicas is refused at once.
    with pytest.raises(Conflict, match=r"runs in environment [0-9a-f]{12}, and --env server"):
        c.endpoints["old"].update(old, variant="elsewhere", env="server")
    with pytest.raises(Invalid, match="--env goes with --model"):
        c.endpoints["old"].update(env="model")
    # The same model on one endpoint in two environments: refused, naming both.
    with pytest.raises(Invalid, match="variant a asks for --env server and variant b for "
                                      "--env model: one replica process serves every"):
        c.endpoints.create("two", variants=[{"model": old, "name": "a", "env": "server"},
                                            {"model": old, "name": "b", "env": "model"}])
    for name in ("old-model", "old-server"):
        c.endpoints.delete(name)


def test_batch_predictions_run_in_the_models_environment(serving: Cumulo, old: str,
                                                        rows: str) -> None:
    c = serving.client()
    job = c.endpoints.batch(model=old, table=rows, output="envrows.scored", env="model")
    info = job.wait(timeout=300)
    assert info["state"] == "succeeded", "\n".join(job.logs())
    assert info["environment"]
    scored = c.tables.read("envrows.scored", to="pandas")
    assert scored["prediction"].tolist() == [OLD] * 3


def test_bad_environments_are_refused_naming_what_is_wrong(
        serving: Cumulo, old: str, rows: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    c = serving.client()
    with pytest.raises(NotFound, match="--env nosuch: no environment 'nosuch'"):
        c.endpoints.create("nosuch", old, env="nosuch")
    out = serving.cli("endpoints", "create", "nosuch", "--model", old, "--env", "nosuch")
    assert out.returncode == 1 and "no environment 'nosuch'" in out.stderr
    with pytest.raises(NotFound):
        c.endpoints.show("nosuch")  # nothing made
    # A requirement that no index has: the endpoint fails, naming its line.
    broken = _register(serving, tmp_path_factory.mktemp("broken"), "sk-broken",
                       _pins("cumulo-no-such-package==1.0"))
    with pytest.raises(Conflict, match=r"requirements\.txt line \d+: "
                                       r"cumulo-no-such-package==1\.0 has no version"):
        c.endpoints.create("broken", broken, wait=True, timeout=120)
    assert c.endpoints.show("broken")["state"] == "failed"
    c.endpoints.delete("broken")
    # A batch prediction with it is refused before a job is queued.
    before = len(c.jobs.list())
    with pytest.raises(Invalid, match=r"cumulo-no-such-package==1\.0 has no version"):
        c.endpoints.batch(model=broken, table=rows, output="envrows.never", env="model")
    assert len(c.jobs.list()) == before


def test_a_named_environment_an_endpoint_uses_cannot_be_removed(serving: Cumulo,
                                                                old: str) -> None:
    c = serving.client()
    # Its own pins (not the model's: another environment, used by this endpoint alone).
    env = c.envs.create("sk-old", [f"scikit-learn=={OLD}"])
    info, _ = _first_answer(c, "named", old, env="sk-old")
    assert info["answer"] == [OLD, OLD]
    assert info["variants"][0]["environment"] == env["digest"]
    assert c.endpoints.show("old")["variants"][0]["environment"] != env["digest"]
    with pytest.raises(Conflict, match=r"'sk-old' is in use by endpoint\(s\) named;"):
        c.envs.delete("sk-old")
    assert c.envs.show("sk-old")["digest"] == env["digest"]  # still there
    c.endpoints.delete("named")
    deadline = time.monotonic() + 30
    while True:  # the row goes once its replicas have stopped
        try:
            c.envs.delete("sk-old")
            break
        except Conflict:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    with pytest.raises(NotFound):
        c.envs.show("sk-old")
