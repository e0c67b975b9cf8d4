"""Hyperparameter tuning (SageMaker automatic model tuning) on Optuna, with trials as jobs.

The tuner runs where it is called (the CLI or the SDK) and drives an Optuna study through its
ask-and-tell interface: it asks for a trial's hyperparameters, submits the trial as a job on the
cluster (a local warm worker, or a Ray job on a Ray cluster), keeps up to ``max_parallel`` of
them running, and tells Optuna each result. Trials report progress with
``cumulo.job.log_metric(objective, value, step=N)``; with early stopping on, a trial whose
progress falls below the median of the others at the same step (Optuna's median pruner) is
cancelled. At the end the best trial's model is registered, and the study's history plot and
trial table are logged to a parent MLflow run that the trial runs are nested under.

A search space is a JSON object of hyperparameter -> range or choices::

    {"learning_rate": {"low": 0.01, "high": 0.3, "log": true},   # a float range, log-scaled
     "num_leaves": {"low": 8, "high": 128},                       # whole numbers: an int range
     "max_depth": {"low": 3, "high": 9, "step": 2},
     "boosting_type": ["gbdt", "dart"]}                           # a list: choices
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cumulo.errors import CumuloError, Invalid

__all__ = ["DIRECTIONS", "STRATEGIES", "Tuner", "direction_of", "parse_space"]

STRATEGIES = ("tpe", "random", "grid")
DIRECTIONS = ("maximize", "minimize")
_MAXIMIZE = {"accuracy", "f1", "roc_auc", "auc", "r2", "precision", "recall", "map", "ndcg"}
_MINIMIZE = {"rmse", "mae", "mse", "loss", "val_loss", "error", "logloss", "log_loss"}
_RANGE_KEYS = {"low", "high", "log", "step", "type"}


def direction_of(objective: str, direction: str | None) -> str:
    if direction is not None:
        if direction not in DIRECTIONS:
            raise Invalid(f"direction {direction!r} must be maximize or minimize")
        return direction
    base = objective.lower().removeprefix("val_").removeprefix("valid_")
    if objective.lower() in _MAXIMIZE or base in _MAXIMIZE:
        return "maximize"
    if objective.lower() in _MINIMIZE or base in _MINIMIZE:
        return "minimize"
    raise Invalid(f"say whether to maximize or minimize {objective!r}: --direction "
                  "maximize|minimize")


def parse_space(space: Any) -> dict[str, Any]:
    """The search space as Optuna distributions; refuses what is not a range or choices."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if not isinstance(space, dict) or not space:
        raise Invalid('the search space must be a JSON object of name -> range or choices, '
                      'e.g. {"learning_rate": {"low": 0.01, "high": 0.3, "log": true}, '
                      '"boosting_type": ["gbdt", "dart"]}')
    out: dict[str, Any] = {}
    for name, spec in space.items():
        where = f"search space {name!r}"
        if isinstance(spec, list):
            if not spec:
                raise Invalid(f"{where}: the list of choices is empty")
            if any(isinstance(v, dict | list) for v in spec):
                raise Invalid(f"{where}: choices must be numbers, text, true/false or null")
            out[name] = CategoricalDistribution(spec)
            continue
        if not isinstance(spec, dict):
            raise Invalid(f"{where}: {spec!r} is neither a range ({{\"low\": 1, \"high\": 10}}) "
                          "nor a list of choices")
        if "choices" in spec:
            out.update(parse_space({name: spec["choices"]}))
            continue
        unknown = set(spec) - _RANGE_KEYS
        if unknown:
            raise Invalid(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; a range has "
                          "low, high and optionally log, step and type (int or float)")
        low, high = spec.get("low"), spec.get("high")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
            raise Invalid(f"{where}: a range needs numbers low and high, got {low!r} and "
                          f"{high!r}")
        assert isinstance(low, int | float) and isinstance(high, int | float)
        if low >= high:
            raise Invalid(f"{where}: the range is inverted or empty: low {low} is not below "
                          f"high {high}")
        log, step = bool(spec.get("log", False)), spec.get("step")
        if log and low <= 0:
            raise Invalid(f"{where}: a log-scaled range must be above zero (low is {low})")
        if log and step is not None:
            raise Invalid(f"{where}: a range is either log-scaled or stepped, not both")
        kind = spec.get("type") or ("int" if all(isinstance(v, int) for v in (low, high))
                                    and (step is None or isinstance(step, int)) else "float")
        if kind not in ("int", "float"):
            raise Invalid(f"{where}: type {kind!r} must be int or float")
        if step is not None and (not isinstance(step, int | float) or step <= 0):
            raise Invalid(f"{where}: step {step!r} must be a positive number")
        if kind == "int":
            out[name] = IntDistribution(int(low), int(high), log=log, step=int(step or 1))
        else:
            out[name] = FloatDistribution(float(low), float(high), log=log,
                                          step=None if step is None else float(step))
    return out


def _grid(distributions: dict[str, Any]) -> dict[str, list[Any]]:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    grid: dict[str, list[Any]] = {}
    for name, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[name] = list(range(dist.low, dist.high + 1, dist.step))
        elif getattr(dist, "step", None):
            count = round((dist.high - dist.low) / dist.step) + 1
            grid[name] = [dist.low + i * dist.step for i in range(count)]
        else:
            raise Invalid(f"grid search needs values to try for {name!r}: give a list of "
                          "choices, or a range with a step")
    return grid


@dataclass
class _Running:
    trial: Any
    job: Any
    started: float
    reported: set[int] = field(default_factory=set)


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    state: str  # complete, pruned, failed
    value: float | None
    job: str
    run_id: str | None
    seconds: float
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


Launch = Callable[[dict[str, Any], str, int], Any]  # (params, parent run, trial no.) -> Job


class Tuner:
    """One tuning study: ``run()`` it, and it returns the trials, the best one and the model
    registered from it. ``launch`` submits one trial as a job."""

    def __init__(self, client: Any, *, name: str, launch: Launch, space: dict[str, Any],
                 objective: str, direction: str | None = None, strategy: str = "tpe",
                 max_trials: int = 10, max_parallel: int = 1, early_stopping: bool = False,
                 seed: int | None = None, register: bool = True,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 poll_seconds: float = 0.5) -> None:
        if strategy not in STRATEGIES:
            raise Invalid(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
        if max_trials < 1:
            raise Invalid(f"--max-trials must be at least 1, not {max_trials}")
        if max_parallel < 1:
            raise Invalid(f"--max-parallel must be at least 1, not {max_parallel}")
        self.client, self.name, self.launch = client, name, launch
        self.distributions = parse_space(space)
        self.space = space
        self.objective = objective
        self.direction = direction_of(objective, direction)
        self.strategy, self.seed = strategy, seed
        self.grid = _grid(self.distributions) if strategy == "grid" else None
        if self.grid is not None:
            max_trials = min(max_trials, math.prod(len(v) for v in self.grid.values()))
        self.max_trials, self.max_parallel = max_trials, max_parallel
        self.early_stopping, self.register = early_stopping, register
        self.on_event = on_event or (lambda kind, info: None)
        self.poll_seconds = poll_seconds
        self._experiment: str | None = None

    # --- MLflow, from the caller's side --------------------------------------------------------

    @contextlib.contextmanager
    def _mlflow(self) -> Iterator[Any]:
        import mlflow

        before = os.environ.get("MLFLOW_TRACKING_TOKEN")
        os.environ["MLFLOW_TRACKING_TOKEN"] = self.client.transport.token or ""
        # The tuner says what it does; MLflow's "View run at" lines would only repeat it.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        try:
            yield mlflow.MlflowClient(tracking_uri=f"{self.client.transport.url}/mlflow",
                                      registry_uri=f"{self.client.transport.url}/mlflow")
        finally:
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
            else:
                os.environ["MLFLOW_TRACKING_TOKEN"] = before

    def _mlflow_rest(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.transport.json(method, f"/mlflow/api/2.0/mlflow/{path}", **kwargs)

    def _run_of(self, job_id: str) -> dict[str, Any] | None:
        body = self._mlflow_rest("POST", "runs/search", json={
            "experiment_ids": [self._experiment],
            "filter": f"tags.`cumulo.job_id` = '{job_id}'", "max_results": 1}, timeout=120)
        runs = body.get("runs", [])
        return runs[0] if runs else None

    # --- the study -----------------------------------------------------------------------------

    def _study(self) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler: Any
        if self.strategy in ("random", "grid"):
            sampler = optuna.samplers.RandomSampler(seed=self.seed)
        else:
            sampler = optuna.samplers.TPESampler(
                seed=self.seed, n_startup_trials=min(10, max(2, self.max_trials // 3)))
        pruner: Any = optuna.pruners.NopPruner()
        if self.early_stopping:
            pruner = optuna.pruners.MedianPruner(n_startup_trials=max(2, self.max_parallel),
                                                 n_warmup_steps=0)
        study = optuna.create_study(direction=self.direction,  # type: ignore[arg-type]
                                    sampler=sampler, pruner=pruner)
        if self.grid is not None:
            # Grid search as queued trials, in an order shuffled by the seed (Optuna's own
            # GridSampler stops the study from inside, which the ask-and-tell loop cannot take).
            import itertools
            import random

            names = list(self.grid)
            points = list(itertools.product(*(self.grid[n] for n in names)))
            random.Random(self.seed).shuffle(points)
            for point in points[:self.max_trials]:
                study.enqueue_trial(dict(zip(names, point, strict=True)))
        return study

    def run(self) -> dict[str, Any]:
        study = self._study()
        with self._mlflow() as mlflow_client:
            experiment = mlflow_client.get_experiment_by_name(self.name)
            self._experiment = (experiment.experiment_id if experiment else
                                mlflow_client.create_experiment(self.name))
            parent = mlflow_client.create_run(
                self._experiment, run_name=f"tune {self.name}",
                tags={"cumulo.tuning": "true", "cumulo.objective": self.objective})
            mlflow_client.log_batch(parent.info.run_id, params=_params({
                "strategy": self.strategy, "objective": self.objective,
                "direction": self.direction, "max_trials": self.max_trials,
                "max_parallel": self.max_parallel, "early_stopping": self.early_stopping,
                "search_space": json.dumps(self.space)}))
        parent_id = parent.info.run_id
        self.on_event("begin", {"run_id": parent_id, "max_trials": self.max_trials})
        try:
            trials = self._loop(study, parent_id)
        except BaseException:
            self._cancel_all()
            with self._mlflow() as mlflow_client:
                mlflow_client.set_terminated(parent_id, "KILLED")
            raise
        return self._finish(study, trials, parent_id)

    def _loop(self, study: Any, parent_id: str) -> list[Trial]:
        self._running: dict[str, _Running] = {}
        trials: list[Trial] = []
        launched = 0
        while launched < self.max_trials or self._running:
            while len(self._running) < self.max_parallel and launched < self.max_trials:
                trial = study.ask(self.distributions)
                job = self.launch(dict(trial.params), parent_id, trial.number)
                self._running[job.id] = _Running(trial, job, time.monotonic())
                launched += 1
                self.on_event("started", {"number": trial.number, "params": trial.params,
                                          "job": job.id})
            self._wait_any()
            for job_id, running in list(self._running.items()):
                result = self._check(study, running)
                if result is not None:
                    del self._running[job_id]
                    trials.append(result)
                    self.on_event("ended", result.as_dict())
        return trials

    def _wait_any(self) -> None:
        """Long-poll the running trials (one request): back as soon as any of them ends, or
        after ``poll_seconds`` to read their progress for early stopping."""
        self.client.jobs.wait_any([r.job for r in self._running.values()],
                                  timeout=self.poll_seconds if self.early_stopping else 30.0)

    def _check(self, study: Any, running: _Running) -> Trial | None:
        from optuna.trial import TrialState

        job = running.job  # refreshed by _wait_any
        if self.early_stopping and job.state == "running":
            series = job.metrics().get(self.objective, [])
            for point in series:
                step = int(point.get("step") or 0)
                if step > 0 and step not in running.reported:
                    running.trial.report(float(point["value"]), step)
                    running.reported.add(step)
            if running.reported and running.trial.should_prune():
                job.cancel()
                job.wait(timeout=120)
                study.tell(running.trial, state=TrialState.PRUNED)
                return self._trial(running, "pruned", None, None,
                                   f"stopped early at step {max(running.reported)}")
        if not job.done:
            return None
        info = job.info
        if info["state"] != "succeeded":
            study.tell(running.trial, state=TrialState.FAIL)
            return self._trial(running, "failed", None, None,
                               f"{info['state']}: {info['reason']}; last lines: "
                               f"{(info.get('log_tail') or '').strip()[-500:]}")
        run = self._run_of(job.id)
        value = self._value(job, run)
        if value is None:
            study.tell(running.trial, state=TrialState.FAIL)
            return self._trial(running, "failed", None, run,
                               f"the trial did not report the objective {self.objective!r} "
                               "(log it with mlflow.log_metric or cumulo.job.log_metric)")
        study.tell(running.trial, value)
        return self._trial(running, "complete", value, run)

    def _value(self, job: Any, run: dict[str, Any] | None) -> float | None:
        if run is not None:
            for metric in run.get("data", {}).get("metrics", []):
                if metric["key"] == self.objective:
                    return float(metric["value"])
        series = job.metrics().get(self.objective, [])
        if not series:
            return None
        last = max(series, key=lambda p: (int(p.get("step") or 0), p.get("timestamp") or 0))
        return float(last["value"])

    def _trial(self, running: _Running, state: str, value: float | None,
               run: dict[str, Any] | None, reason: str | None = None) -> Trial:
        return Trial(number=running.trial.number, params=dict(running.trial.params),
                     state=state, value=value, job=running.job.id,
                     run_id=run["info"]["run_id"] if run else None,
                     seconds=round(time.monotonic() - running.started, 2), reason=reason)

    def _cancel_all(self) -> None:
        for running in getattr(self, "_running", {}).values():
            with contextlib.suppress(CumuloError):
                running.job.cancel()

    # --- the end -------------------------------------------------------------------------------

    def _finish(self, study: Any, trials: list[Trial], parent_id: str) -> dict[str, Any]:
        trials.sort(key=lambda t: t.number)
        complete = [t for t in trials if t.state == "complete"]
        result: dict[str, Any] = {
            "name": self.name, "run_id": parent_id, "objective": self.objective,
            "direction": self.direction, "trials": [t.as_dict() for t in trials],
            "best": None, "model": None}
        with self._mlflow() as mlflow_client:
            if not complete:
                mlflow_client.set_terminated(parent_id, "FAILED")
                first = next((t.reason for t in trials if t.reason), "no reason given")
                raise CumuloError(f"no trial of {self.name!r} completed; the first said: {first}",
                                  details=result)
            best_number = study.best_trial.number
            best = next(t for t in complete if t.number == best_number)
            result["best"] = best.as_dict()
            mlflow_client.log_batch(parent_id, params=_params(
                {f"best.{k}": v for k, v in best.params.items()}))
            mlflow_client.log_metric(parent_id, f"best_{self.objective}", float(best.value or 0))
            mlflow_client.log_dict(parent_id, result["trials"], "trials.json")
            result["plot"] = self._plot(study, mlflow_client, parent_id)
            if self.register and best.run_id and self._has_model(mlflow_client, best.run_id):
                result["model"] = self._register(mlflow_client, best, parent_id)
            mlflow_client.set_terminated(parent_id, "FINISHED")
        return result

    def _plot(self, study: Any, mlflow_client: Any, parent_id: str) -> str:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization.matplotlib import plot_optimization_history

        with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
            warnings.simplefilter("ignore")
            axes = plot_optimization_history(study, target_name=self.objective)
        figure: Any = axes.figure
        figure.set_size_inches(7, 4)
        figure.tight_layout()
        mlflow_client.log_figure(parent_id, figure, "optimization_history.png")
        plt.close(figure)
        return f"runs:/{parent_id}/optimization_history.png"

    @staticmethod
    def _has_model(mlflow_client: Any, run_id: str) -> bool:
        from cumulo.ml.script import MODEL_URI_TAG

        return MODEL_URI_TAG in mlflow_client.get_run(run_id).data.tags

    def _register(self, mlflow_client: Any, best: Trial, parent_id: str) -> dict[str, Any]:
        import mlflow
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        from cumulo.ml.script import MODEL_URI_TAG

        uri = mlflow_client.get_run(best.run_id).data.tags[MODEL_URI_TAG]
        # mlflow.register_model resolves models:/ and runs:/ sources as the client cannot; it
        # reads the process's URIs, which are put back as they were after, unset included
        # (the public getters answer MLflow's default when unset, and setting that back would
        # pin this process's registry to a local file).
        # MLflow's setters also set MLFLOW_TRACKING_URI and MLFLOW_REGISTRY_URI in the
        # environment, which this process's children would inherit: put those back too.
        previous = registry_utils._registry_uri, tracking_utils._tracking_uri
        variables = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
        saved = {k: os.environ.get(k) for k in variables}
        mlflow.set_tracking_uri(mlflow_client.tracking_uri)
        mlflow.set_registry_uri(mlflow_client._registry_uri)
        try:
            version = mlflow.register_model(uri, self.name, await_registration_for=0,
                                            tags={"cumulo.tuning_run": parent_id,
                                                  "cumulo.trial": str(best.number)})
        finally:
            registry_utils._registry_uri, tracking_utils._tracking_uri = previous
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return {"name": self.name, "version": version.version, "run_id": best.run_id}


def _params(values: dict[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, str(v)[:6000]) for k, v in values.items()]


def save_plot(client: Any, run_uri: str, dest: str) -> str:
    """Download the history plot logged at ``runs:/<id>/<file>`` to ``dest``."""
    run_id, _, path = run_uri.removeprefix("runs:/").partition("/")
    response = client.transport.request(
        "GET", "/mlflow/get-artifact", params={"run_id": run_id, "path": path})
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(os.path.abspath(dest)) or ".",
                                     delete=False) as tmp:
        tmp.write(response.content)
    os.replace(tmp.name, dest)
    return dest
