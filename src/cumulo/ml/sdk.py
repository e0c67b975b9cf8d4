"""``client.models``: the model registry, and handles on a model and one of its versions
that deploy it (shaped like the SageMaker SDK's ``Model.deploy``).

>>> predictor = client.models["churn"].version(3).deploy(endpoint_name="churn")  # doctest: +SKIP
>>> predictor.predict(frame)                                          # doctest: +SKIP
"""

from __future__ import annotations

import builtins
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cumulo.client.transport import Transport

if TYPE_CHECKING:
    from cumulo.serving.sdk import Endpoint, Transformer

__all__ = ["Model", "ModelVersion", "ModelsClient"]


def _p(name: str) -> str:
    return "/api/v1/models/" + quote(name, safe="")


def _endpoint_name(model: str) -> str:
    """An endpoint's name made from a model's: endpoints take lower-case letters, digits and
    '-' only (``Churn_v2`` serves as ``churn-v2``)."""
    return re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")[:63].rstrip("-")


class ModelVersion:
    """One version of a registered model: ``deploy`` serves it, ``transformer`` scores
    tables with it. Made without a request; a version that does not exist is refused by
    what is done with it (:class:`~cumulo.errors.NotFound`)."""

    def __init__(self, transport: Transport, name: str, version: str | int) -> None:
        self._t = transport
        self.name, self.version = name, str(version)

    def __repr__(self) -> str:
        return f"ModelVersion({self.name!r}, {self.version!r})"

    @property
    def ref(self) -> str:
        """``NAME:VERSION``, as endpoints and batch predictions name it."""
        return f"{self.name}:{self.version}"

    def show(self) -> dict[str, Any]:
        """The version with its lineage: run, job, code snapshot, hyperparameters, inputs."""
        return self._t.json(  # type: ignore[no-any-return]
            "GET", f"{_p(self.name)}/versions/{self.version}")

    def deploy(self, endpoint_name: str | None = None, *, min_replicas: int = 1,
               max_replicas: int | None = None, cluster: str | None = None,
               public: bool = False, project: str | None = None, wait: bool = True,
               timeout: float = 120.0, **options: Any) -> Endpoint:
        """Serve this version on a new endpoint (``endpoint_name``, by default the model's
        name in lower case, '-' for other characters) and return its handle, the
        "predictor": ``predict(frame)``, ``update(...)``, ``delete()``. ``options`` are the
        rest of :meth:`EndpointsClient.create`'s (``target_in_flight``, ``capture_percent``,
        ...). With ``wait``, returns once a replica answers; a version that fails to load
        raises :class:`~cumulo.errors.Conflict` with the replica's own error, and the failed
        endpoint stays to be read (``show()``) and removed (``delete()``)."""
        from cumulo.serving.sdk import EndpointsClient

        endpoints = EndpointsClient(self._t)
        name = endpoint_name or _endpoint_name(self.name)
        endpoints.create(name, self.ref, min_replicas=min_replicas,
                         max_replicas=max_replicas, cluster=cluster, public=public,
                         project=project, wait=wait, timeout=timeout, **options)
        return endpoints[name]

    def transformer(self, *, prediction_column: str = "prediction", cluster: str = "local",
                    cpus: float = 1, memory: str | None = None,
                    env: str | None = None) -> Transformer:
        """Batch predictions with this version: ``.transform(table, output=...)``; ``env``:
        where it runs (server, model or an environment's name; default: chosen from its
        requirements)."""
        from cumulo.serving.sdk import Transformer

        return Transformer(self._t, self.ref, prediction_column=prediction_column,
                           cluster=cluster, cpus=cpus, memory=memory, env=env)


class Model:
    """A registered model by name: ``version(n)`` is a handle on one of its versions."""

    def __init__(self, transport: Transport, name: str) -> None:
        self._t = transport
        self.name = name

    def __repr__(self) -> str:
        return f"Model({self.name!r})"

    def show(self) -> dict[str, Any]:
        return self._t.json("GET", _p(self.name), timeout=180)  # type: ignore[no-any-return]

    def versions(self) -> builtins.list[dict[str, Any]]:
        return self._t.json("GET", _p(self.name) + "/versions")  # type: ignore[no-any-return]

    def version(self, version: str | int) -> ModelVersion:
        return ModelVersion(self._t, self.name, version)


class ModelsClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def __getitem__(self, name: str) -> Model:
        """A handle on the model ``name``: ``client.models["churn"].version(3).deploy()``."""
        return Model(self._t, name)

    def import_model(self, path: str, *, name: str, task: str | None = None) -> dict[str, Any]:
        """Register an MLflow model folder, a pickled scikit-learn model (a pickle runs code
        when loaded: import only files you trust), or a transformers model (a save_pretrained
        folder, or ``hf://ORG/NAME[@revision]`` from the Hugging Face Hub; ``task`` is its
        pipeline task, inferred when None) as a new version of ``name``."""
        from cumulo.ml.imports import import_model

        if not self._t.token:
            from cumulo.errors import Unauthorized

            raise Unauthorized("importing a model needs a token: set CUMULO_TOKEN")
        return import_model(self._t.url, self._t.token, path, name=name, task=task)

    def reproduce(self, name: str, version: str | int, *, wait: bool = True,
                  tolerance: float = 1e-6) -> dict[str, Any]:
        """Rerun the training behind a version on the same code, table versions and seed, and
        compare its metrics with the original's (``matches``)."""
        from cumulo.ml.reproduce import reproduce

        return reproduce(self._t, name, version, wait=wait, tolerance=tolerance)

    def list(self) -> builtins.list[dict[str, Any]]:
        return self._t.json("GET", "/api/v1/models", timeout=180)  # type: ignore[no-any-return]

    def show(self, name: str) -> dict[str, Any]:
        return self[name].show()

    def versions(self, name: str) -> builtins.list[dict[str, Any]]:
        return self[name].versions()

    def version(self, name: str, version: str | int) -> dict[str, Any]:
        """One version with its lineage: run, job, code snapshot, hyperparameters, inputs."""
        return self[name].version(version).show()

    def set_alias(self, name: str, alias: str, version: str | int) -> dict[str, Any]:
        return self._t.json("PUT", f"{_p(name)}/aliases/{alias}",  # type: ignore[no-any-return]
                            json={"version": str(version)})

    def remove_alias(self, name: str, alias: str) -> dict[str, Any]:
        return self._t.json("DELETE", f"{_p(name)}/aliases/{alias}")  # type: ignore[no-any-return]

    def alias_history(self, name: str) -> builtins.list[dict[str, Any]]:
        return self._t.json("GET", f"{_p(name)}/aliases/history")  # type: ignore[no-any-return]

    def set_approval(self, name: str, version: str | int, status: str) -> dict[str, Any]:
        return self._t.json("PUT", f"{_p(name)}/versions/{version}/approval",  # type: ignore[no-any-return]
                            json={"status": status})

    def set_tag(self, name: str, key: str, value: str, *,
                version: str | int | None = None) -> None:
        self._t.json("POST", f"{_p(name)}/tags", json={
            "key": key, "value": value, "version": None if version is None else str(version)})

    def describe(self, name: str, description: str, *, version: str | int | None = None) -> None:
        self._t.json("PATCH", _p(name), json={
            "description": description, "version": None if version is None else str(version)})


def _check_training(client: Any, *, table: str, target: str, name: str, algorithm: str,
                    features: builtins.list[str] | None, validation_split: float) -> str:
    """Check a built-in training request before any job runs; the table pinned to its
    current version (``db.table@vN``), so every trial or rerun reads the same rows."""
    from cumulo.errors import Invalid
    from cumulo.ml.estimator import check_model_name
    from cumulo.ml.train import ALGORITHMS

    if algorithm not in ALGORITHMS:
        raise Invalid(f"algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
    check_model_name(name)
    if not 0 < validation_split < 1:
        raise Invalid(f"--validation-split must be between 0 and 1, not {validation_split}")
    info = client.tables.show(table)
    columns = [c["name"] for c in info["columns"]]
    if target not in columns:
        raise Invalid(f"target column {target!r} is not in {table}; its columns are "
                      f"{', '.join(columns)}")
    missing = [f for f in features or [] if f not in columns]
    if missing:
        raise Invalid(f"feature column(s) {', '.join(missing)} are not in {table}")
    return f"{table.partition('@')[0]}@v{info['version']}"


def _train_command(*, target: str, name: str, algorithm: str,
                   features: builtins.list[str] | None, hyperparameters: dict[str, Any],
                   validation_split: float, seed: int) -> builtins.list[str]:
    import json

    return ["python", "-m", "cumulo.ml.train", "--target", target, "--algorithm", algorithm,
            "--features", ",".join(features or []),
            "--hyperparameters", json.dumps(hyperparameters),
            "--validation-split", str(validation_split), "--seed", str(seed), "--name", name]


def train(client: Any, *, table: str, target: str, name: str, algorithm: str = "lightgbm",
          features: builtins.list[str] | None = None,
          hyperparameters: dict[str, Any] | None = None, validation_split: float = 0.2,
          seed: int = 42, cluster: str = "local", cpus: float = 1,
          memory: str | None = None) -> Any:
    """Built-in training as a job; returns the job (``.wait()``, ``.logs()``)."""
    pinned = _check_training(client, table=table, target=target, name=name,
                             algorithm=algorithm, features=features,
                             validation_split=validation_split)
    command = _train_command(target=target, name=name, algorithm=algorithm, features=features,
                             hyperparameters=hyperparameters or {},
                             validation_split=validation_split, seed=seed)
    return client.jobs.run(command=command, inputs={"train": pinned}, cluster=cluster,
                           cpus=cpus, memory=memory, name=f"train {name}",
                           tags=["train", f"model={name}"])


def tune(client: Any, *, objective: str, search_space: dict[str, Any], name: str | None = None,
         direction: str | None = None, strategy: str = "tpe", max_trials: int = 10,
         max_parallel: int = 1, early_stopping: bool = False, seed: int | None = None,
         table: str | None = None, target: str | None = None, algorithm: str = "lightgbm",
         features: builtins.list[str] | None = None,
         hyperparameters: dict[str, Any] | None = None, validation_split: float = 0.2,
         estimator: Any = None, inputs: dict[str, str] | None = None,
         cluster: str = "local", cpus: float = 1, memory: str | None = None,
         register: bool = True, on_event: Any = None,
         project: str | None = None) -> dict[str, Any]:
    """Tune a built-in algorithm (``table``, ``target``, ``algorithm``) or a script
    (``estimator``, ``inputs``); trials run as jobs (in ``project``, when given: for an
    estimator, its own project unless it has none). Returns the trials, the best one and the
    model version registered from it. See :mod:`cumulo.ml.tune`."""
    from cumulo.errors import Invalid
    from cumulo.ml.estimator import check_model_name
    from cumulo.ml.tune import Tuner, parse_space

    parse_space(search_space)  # refuse a bad space before anything is checked or submitted
    if estimator is not None:
        if table is not None or target is not None:
            raise Invalid("tune either a script (estimator=...) or a built-in algorithm "
                          "(table=..., target=...), not both")
        model = check_model_name(name or estimator.name)
        estimator.name = model
        if project is not None and estimator.options.get("project") is None:
            estimator.options["project"] = project  # its trials run in the project

        def launch(params: dict[str, Any], parent: str, number: int) -> Any:
            return estimator.submit(inputs, hyperparameters=params, register=False,
                                    parent_run=parent, name=f"tune {model} trial {number}",
                                    tags=["tune"])
    else:
        if table is None or target is None or name is None:
            raise Invalid("built-in tuning needs a table, a target column and a model name "
                          "(or tune a script with estimator=...)")
        model = name
        pinned = _check_training(client, table=table, target=target, name=name,
                                 algorithm=algorithm, features=features,
                                 validation_split=validation_split)
        fixed = dict(hyperparameters or {})
        rounds = int(fixed.get("n_estimators", 100))

        def launch(params: dict[str, Any], parent: str, number: int) -> Any:
            hp = {**fixed, **params}
            command = _train_command(target=target, name=model, algorithm=algorithm,
                                     features=features, hyperparameters=hp,
                                     validation_split=validation_split,
                                     seed=42 if seed is None else seed)
            command += ["--no-register", "--no-plots", "--parent-run", parent,
                        "--objective", objective]
            if early_stopping:
                command += ["--report-every", str(max(1, int(hp.get("n_estimators", rounds))
                                                      // 10))]
            return client.jobs.run(command=command, inputs={"train": pinned},
                                   cluster=cluster, cpus=cpus, memory=memory,
                                   name=f"tune {model} trial {number}",
                                   tags=["tune", f"model={model}"], project=project)
    tuner = Tuner(client, name=model, launch=launch, space=search_space, objective=objective,
                  direction=direction, strategy=strategy, max_trials=max_trials,
                  max_parallel=max_parallel, early_stopping=early_stopping, seed=seed,
                  register=register, on_event=on_event)
    return tuner.run()
