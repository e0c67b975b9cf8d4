"""Script mode: run a user's training script as a job and register what it makes.

``client.estimator(entry_point="train.py", code="./src", hyperparameters={...}).fit(...)``
submits ``python -m cumulo.ml.script --entry train.py --name NAME --hyperparameters '{...}'``.
This module, inside the job:

1. makes an MLflow run (experiment NAME, tagged with the job's lineage) holding the
   hyperparameters, and points the script at it (``MLFLOW_RUN_ID``), so whatever the script
   logs with MLflow lands in that run, ``mlflow.start_run()`` included;
2. runs the script as ``python train.py --key value ...`` (hyperparameters as arguments, as
   SageMaker passes them; also in ``cumulo.job.hyperparameters``), with ``cumulo.job.model_dir``
   to save a model into;
3. when the script exits 0, registers a version of NAME from, in order: a version the script
   registered itself (nothing more to do), a model it logged to the run, an MLflow model saved
   in ``model_dir``, or a pickled scikit-learn model there. A script that fails registers
   nothing, and the job fails with its exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cumulo import jobenv

__all__ = ["MODEL_URI_TAG", "main"]

MODEL_URI_TAG = "cumulo.model_uri"


def _args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m cumulo.ml.script")
    parser.add_argument("--entry", required=True)
    parser.add_argument("--name", required=True, help="the model to register a version of")
    parser.add_argument("--hyperparameters", default="{}")
    parser.add_argument("--no-register", action="store_true")
    parser.add_argument("--parent-run", default=None)
    args, rest = parser.parse_known_args(argv)
    return args, [a for a in rest if a != "--"]


def _hp_args(hyperparameters: dict[str, Any]) -> list[str]:
    out = []
    for key, value in hyperparameters.items():
        out += [f"--{key}", json.dumps(value) if isinstance(value, list | dict) else str(value)]
    return out


def _start_run(client: Any, name: str, entry: str, hyperparameters: dict[str, Any],
               parent: str | None) -> Any:
    import mlflow
    from mlflow.entities import Param
    from mlflow.tracking.context.registry import resolve_tags

    experiment = mlflow.set_experiment(name)
    tags = {"mlflow.source.name": entry, "mlflow.source.type": "JOB"}
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(experiment.experiment_id, tags=resolve_tags(tags),
                            run_name=f"{name} {Path(entry).stem}")
    if hyperparameters:
        client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000])
                                                   for k, v in hyperparameters.items()])
    return run


def _from_model_dir(run_id: str, model_dir: Path) -> str | None:
    """Log what the script saved in model_dir to the run; the URI to register, if a model."""
    import mlflow

    files = [p for p in model_dir.rglob("*") if p.is_file()]
    if not files:
        return None
    if (model_dir / "MLmodel").is_file():
        mlflow.MlflowClient().log_artifacts(run_id, str(model_dir), artifact_path="model")
        return f"runs:/{run_id}/model"
    pickles = [p for p in files if p.suffix in (".pkl", ".pickle", ".joblib")]
    if len(pickles) == 1:
        from cumulo.ml.imports import _load_pickle

        model = _load_pickle(pickles[0])
        # The script's own pickle, kept as one: the trust placed in it is the script's (so
        # MLflow need not warn about it).
        logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.sklearn.log_model(model, name="model", serialization_format="pickle")
        return f"models:/{info.model_id}"
    names = ", ".join(sorted(str(p.relative_to(model_dir)) for p in files)[:5])
    print(f"cumulo: model_dir holds {names}, which is not a model Cumulo can register (an "
          "MLflow model folder, from mlflow.<flavor>.save_model(model, cumulo.job.model_dir), "
          "or one pickled scikit-learn model); the files are kept with the job's outputs",
          file=sys.stderr)
    return None


def _job_runs(client: Any, experiment_id: str) -> list[Any]:
    """This attempt's runs: the one made for the script, and any the script started after
    ending it (the run context provider tags them all with the job)."""
    job = jobenv.current()
    return list(client.search_runs(
        [experiment_id], max_results=100, order_by=["attribute.start_time DESC"],
        filter_string=(f"tags.`cumulo.job_id` = '{job.job_id if job else ''}' and "
                       f"tags.`cumulo.job_attempt` = '{job.attempt if job else 1}'")))


def _logged_model(client: Any, experiment_id: str, run_ids: set[str]) -> Any:
    """The newest model one of ``run_ids`` logged (MLflow 3 logged models)."""
    models = client.search_logged_models(
        experiment_ids=[experiment_id], max_results=100,
        order_by=[{"field_name": "creation_timestamp", "ascending": False}])
    return next((m for m in models if m.source_run_id in run_ids), None)


def _register(client: Any, run: Any, name: str, model_dir: Path, hyperparameters: dict[str, Any],
              no_register: bool) -> dict[str, Any] | None:
    import mlflow
    from mlflow.entities import Param

    experiment = run.info.experiment_id
    runs = {r.info.run_id: r for r in _job_runs(client, experiment)} or {run.info.run_id: run}
    mine = [v for run_id in runs for v in client.search_model_versions(f"run_id = '{run_id}'")]
    if mine:  # the script registered it itself
        version = max(mine, key=lambda v: int(v.version))
        return {"name": version.name, "version": version.version, "run_id": version.run_id,
                "model_uri": version.source}
    logged = _logged_model(client, experiment, set(runs))
    if logged is not None:
        run_id, uri = logged.source_run_id, f"models:/{logged.model_id}"
        missing = {k: v for k, v in hyperparameters.items()
                   if k not in runs[run_id].data.params}
        if missing:  # a run the script started itself: give it the lineage's hyperparameters
            client.log_batch(run_id, params=[Param(k, str(v)[:6000])
                                             for k, v in missing.items()])
    else:
        run_id = run.info.run_id
        uri = _from_model_dir(run_id, model_dir)  # type: ignore[assignment]
    if uri is None:
        print("cumulo: the script saved no model in cumulo.job.model_dir and logged none to "
              "MLflow: no model version registered", file=sys.stderr)
        return None
    client.set_tag(run_id, MODEL_URI_TAG, uri)
    if no_register:
        print(f"cumulo: model logged as {uri} (not registered)", flush=True)
        return {"name": name, "version": None, "run_id": run_id, "model_uri": uri}
    version = mlflow.register_model(uri, name, await_registration_for=0)
    print(f"cumulo: registered {name} version {version.version}", flush=True)
    return {"name": name, "version": version.version, "run_id": run_id, "model_uri": uri}


def main(argv: list[str] | None = None) -> int:
    args, extra = _args(argv)
    hyperparameters = json.loads(args.hyperparameters)
    import mlflow

    import cumulo.job

    job: Any = cumulo.job
    model_dir: Path = job.output_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    client = mlflow.MlflowClient()
    run = _start_run(client, args.name, args.entry, hyperparameters, args.parent_run)
    env = {**os.environ, "MLFLOW_RUN_ID": run.info.run_id,
           "MLFLOW_EXPERIMENT_ID": run.info.experiment_id,
           "CUMULO_HYPERPARAMETERS": json.dumps(hyperparameters),
           "CUMULO_MODEL_DIR": str(model_dir)}
    command = [sys.executable, args.entry, *_hp_args(hyperparameters), *extra]
    print(f"cumulo: running {' '.join(command[1:])} (MLflow run {run.info.run_id})", flush=True)
    code = subprocess.run(command, env=env).returncode
    if code != 0:
        client.set_terminated(run.info.run_id, "FAILED")
        print(f"cumulo: {args.entry} exited with code {code}: no model version registered",
              file=sys.stderr)
        return code if code > 0 else 128 - code
    if client.get_run(run.info.run_id).info.status == "RUNNING":
        client.set_terminated(run.info.run_id, "FINISHED")
    registered = _register(client, run, args.name, model_dir, hyperparameters,
                           args.no_register)
    if registered is not None:
        (job.output_dir / "model_version.json").write_text(json.dumps(registered))
    return 0


if __name__ == "__main__":
    sys.exit(main())
