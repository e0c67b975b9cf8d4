"""Built-in training, with no code: a table and a target column in, a registered model out.

Run as a job (``cumulo train`` submits it): ``python -m cumulo.ml.train --target churned
--algorithm lightgbm --name churn`` with the table as the job's input ``train``. It detects
classification or regression, holds out a validation split, logs metrics, a confusion matrix or
residual plot and feature importances to MLflow, and registers the model with its signature.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from typing import Any

__all__ = ["ALGORITHMS", "is_classification", "main", "score_metrics"]

ALGORITHMS = ("lightgbm", "xgboost", "random_forest", "logistic_regression", "linear", "mlp")
MAX_CLASSES = 50


def _fail(message: str) -> None:
    print(f"cumulo train: {message}", file=sys.stderr)
    raise SystemExit(2)


def is_classification(y: Any) -> bool:
    import pandas as pd

    if y.dtype == bool or pd.api.types.is_object_dtype(y) or isinstance(
            y.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(y):
        return True
    return bool(pd.api.types.is_integer_dtype(y) and y.nunique() <= min(MAX_CLASSES,
                                                                       len(y) // 2 or 1))


def _threads() -> int | None:
    """The CPUs the job was given: the runner sets OMP_NUM_THREADS from --cpus. LightGBM and
    XGBoost would otherwise use every core of the machine whatever the job was given, which on
    a shared machine makes their threads wait on each other (a fit several times slower)."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return None


def _estimator(algorithm: str, classification: bool, params: dict[str, Any], seed: int) -> Any:
    threads = _threads()
    if algorithm in ("lightgbm", "xgboost", "random_forest") and threads is not None:
        params = {"n_jobs": threads, **params}
    if algorithm == "mlp":
        from cumulo.ml.mlp import MLPClassifier, MLPRegressor

        mlp = MLPClassifier if classification else MLPRegressor
        return mlp(random_state=seed, **params)
    if algorithm == "lightgbm":
        import lightgbm as lgb

        cls = lgb.LGBMClassifier if classification else lgb.LGBMRegressor
        return cls(random_state=seed, verbose=-1, **params)
    if algorithm == "xgboost":
        import xgboost as xgb

        cls = xgb.XGBClassifier if classification else xgb.XGBRegressor
        # Text columns arrive as pandas categories, which XGBoost takes with these two.
        return cls(random_state=seed, **{"enable_categorical": True, "tree_method": "hist",
                                         **params})
    if algorithm == "random_forest":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        cls = RandomForestClassifier if classification else RandomForestRegressor
        return cls(random_state=seed, **params)
    if algorithm == "logistic_regression":
        if not classification:
            _fail("logistic_regression is for classification; the target looks numeric "
                  "(use linear, or a categorical target)")
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(random_state=seed, max_iter=1000, **params)
    from sklearn.linear_model import LinearRegression, LogisticRegression

    if classification:
        return LogisticRegression(random_state=seed, max_iter=1000, **params)
    return LinearRegression(**params)


def _warm_imports(algorithm: str) -> None:
    """MLflow, imported while the model fits (it takes seconds). Only MLflow: on a machine
    whose cores the fit already uses, importing more beside it slows the fit down more than
    it saves (measured on 2 cores)."""
    import mlflow.models  # noqa: F401


def _requirements(algorithm: str) -> list[str]:
    from importlib.metadata import version

    names = ["mlflow", "scikit-learn", "pandas", "numpy", "cloudpickle"]
    names += {"lightgbm": ["lightgbm"], "xgboost": ["xgboost-cpu"],
              "mlp": ["torch"]}.get(algorithm, [])
    found = []
    for name in names:
        try:
            found.append(f"{name}=={version(name)}")
        except Exception:
            found.append(name)
    return found


def score_metrics(classification: bool, model: Any, x: Any, y: Any,
             pred: Any) -> dict[str, float]:
    classes = sorted(y.unique()) if classification else []
    proba = None
    if len(classes) == 2 and hasattr(model, "predict_proba"):
        proba = model.predict_proba(x)[:, 1]
    return _scores(classification, y, pred, proba, classes)


def _scores(classification: bool, y: Any, pred: Any, proba: Any,
            classes: list[Any]) -> dict[str, float]:
    from sklearn import metrics

    if not classification:
        return {"rmse": float(metrics.root_mean_squared_error(y, pred)),
                "mae": float(metrics.mean_absolute_error(y, pred)),
                "r2": float(metrics.r2_score(y, pred))}
    binary = len(classes) == 2
    out = {"accuracy": float(metrics.accuracy_score(y, pred)),
           "f1": float(metrics.f1_score(y, pred, average="binary" if binary else "weighted",
                                        pos_label=classes[-1] if binary else 1))}
    if binary and proba is not None and len(set(y)) == 2:
        out["roc_auc"] = float(metrics.roc_auc_score(y, proba))
    return out


def _figures(run_id: str, classification: bool, model: Any, y: Any, pred: Any,
             features: list[str]) -> None:
    """The plots, logged to ``run_id`` by name: this runs in a thread of its own, beside the
    model's logging, and MLflow's active run belongs to the main thread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    import numpy as np

    client = mlflow.MlflowClient()

    fig, ax = plt.subplots(figsize=(5, 4))
    if classification:
        from sklearn.metrics import ConfusionMatrixDisplay

        ConfusionMatrixDisplay.from_predictions(y, pred, ax=ax)
        ax.set_title("Confusion matrix (validation)")
        client.log_figure(run_id, fig, "confusion_matrix.png")
    else:
        ax.scatter(pred, np.asarray(y) - pred, s=6)
        ax.axhline(0, color="grey")
        ax.set_xlabel("predicted")
        ax.set_ylabel("residual")
        ax.set_title("Residuals (validation)")
        client.log_figure(run_id, fig, "residuals.png")
    plt.close(fig)
    weights = getattr(model, "feature_importances_", None)
    if weights is None and hasattr(model, "coef_"):
        weights = np.abs(np.atleast_2d(model.coef_)).mean(axis=0)
    if weights is not None:
        order = np.argsort(weights)[::-1][:30]
        fig, ax = plt.subplots(figsize=(6, max(2.5, 0.3 * len(order))))
        ax.barh([features[i] for i in order][::-1], np.asarray(weights)[order][::-1])
        ax.set_title("Feature importances")
        fig.tight_layout()
        client.log_figure(run_id, fig, "feature_importances.png")
        plt.close(fig)


class _Background(threading.Thread):
    """A call in a thread whose exception, if any, is raised again by ``join``."""

    def __init__(self, target: Any, *args: Any) -> None:
        super().__init__(daemon=True)
        self._call, self._args = target, args
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._call(*self._args)
        except BaseException as exc:  # handed to join()
            self._error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self._error is not None:
            raise self._error


def _skip_requirement_check() -> None:
    """MLflow checks the requirements a model is logged with against the installed packages
    by indexing every installed distribution (about 2 s). Ours are read from the installed
    packages themselves, so they match by construction: skip it."""
    import mlflow.utils.environment as environment

    if hasattr(environment, "warn_dependency_requirement_mismatches"):
        environment.warn_dependency_requirement_mismatches = lambda requirements: None


def _quiet_mlflow() -> None:
    """MLflow's own console output, off: the job's log (which ``cumulo train --wait`` prints)
    shows this module's steps and one link to the run instead of MLflow's emoji run links,
    its hint that the signature has integer columns (they are the table's own, on purpose:
    see the signature below) and INFO lines such as "Creating a new experiment". MLflow reads
    these variables when it prints, so they hold in this process only."""
    import logging

    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    os.environ["MLFLOW_LOGGING_LEVEL"] = "WARNING"  # read when MLflow is first imported
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # where it was imported already


# What MLflow prints to stderr itself (not through a logger) while it registers a version:
# the step that follows says what was registered.
_REGISTRATION_CHATTER = ("Successfully registered model ", "Registered model ",
                         "Created version ")


@contextmanager
def _registration_chatter_dropped() -> Iterator[None]:
    """Hold stderr while MLflow logs and registers the model; write it out again without
    MLflow's registration messages (a warning or an error still shows). MLflow's own switch
    for these messages is turned back on by MLflow itself part way through."""
    held = io.StringIO()
    try:
        with redirect_stderr(held):
            yield
    finally:
        for line in held.getvalue().splitlines(keepends=True):
            if not line.startswith(_REGISTRATION_CHATTER):
                sys.stderr.write(line)


def _run_link(run: Any) -> str:
    """The run's page in MLflow's UI behind Cumulo, or its id where tracking is not HTTP."""
    import mlflow

    uri = mlflow.get_tracking_uri().rstrip("/")
    if not uri.startswith(("http://", "https://")):
        return f"run {run.info.run_id}"
    return f"{uri}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"


def _progress(args: argparse.Namespace, model: Any, classification: bool, x_val: Any,
              y_val: Any) -> dict[str, Any]:
    """For early stopping in tuning: a LightGBM callback that scores the model so far on (a
    sample of) the validation rows every ``--report-every`` rounds and reports ``--objective``
    to the job, where the tuner reads it and may stop the trial."""
    if not (args.objective and args.report_every > 0 and args.algorithm == "lightgbm"):
        return {}
    import cumulo.job

    sample = min(len(x_val), 20_000)
    ys = y_val.iloc[:sample]
    prepared: list[Any] = []  # the sample as the learner takes it, once the model is fitting
    every = args.report_every

    def report(env: Any) -> None:
        done = env.iteration + 1
        if done % every or done == env.end_iteration:
            return
        if not prepared:
            prepared.append(model.transform(x_val.iloc[:sample]))
        booster = env.model
        raw = booster.predict(prepared[0], num_iteration=done)
        if classification:
            # The classes as LightGBM numbered them (set before the first round).
            classes = list(getattr(model.estimator_, "_classes", sorted(ys.unique())))
            if raw.ndim == 1:
                index = (raw > 0.5).astype(int)
                proba = raw
            else:
                index, proba = raw.argmax(axis=1), None
            pred = [classes[i] for i in index]
            scores = _scores(True, ys, pred, proba, classes)
        else:
            scores = _scores(False, ys, raw, None, [])
        if args.objective in scores:
            cumulo.job.log_metric(args.objective, scores[args.objective], step=done)

    return {"callbacks": [report]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cumulo train")
    parser.add_argument("--target", required=True)
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="lightgbm")
    parser.add_argument("--features", default="")
    parser.add_argument("--hyperparameters", default="{}")
    parser.add_argument("--validation-split", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--name", required=True)
    parser.add_argument("--no-register", action="store_true",
                        help="log the model in the run but register no version (tuning trials, "
                        "reproductions)")
    parser.add_argument("--no-plots", action="store_true",
                        help="log no plots (tuning trials: the study plots its own history)")
    parser.add_argument("--parent-run", default=None, help="MLflow run to nest this run under")
    parser.add_argument("--objective", default=None,
                        help="metric to report to the job while fitting (for early stopping)")
    parser.add_argument("--report-every", type=int, default=0,
                        help="report --objective every N boosting rounds (lightgbm)")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    import logging

    _quiet_mlflow()
    # MLflow takes seconds to import and is not needed until the model is fitted: import it
    # beside the fit (LightGBM and XGBoost fit outside the GIL).
    warm = threading.Thread(target=_warm_imports, args=(args.algorithm,), daemon=True)
    import pandas as pd

    # Built-in models are kept as pickles on purpose (skops refuses trees on load, and merely
    # importing it walks every scikit-learn module, torch included: seconds): no need to warn
    # the user about a choice that is not theirs.
    for flavor_log in ("mlflow.sklearn", "mlflow.lightgbm"):
        logging.getLogger(flavor_log).setLevel(logging.ERROR)
    from sklearn.model_selection import train_test_split

    import cumulo.job

    def step(what: str) -> None:
        print(f"[{time.perf_counter() - started:6.2f}s] {what}", flush=True)

    step("imported pandas and scikit-learn")

    job: Any = cumulo.job  # its inputs are read lazily, through the module's __getattr__
    frame: pd.DataFrame = job.inputs["train"].to_pandas()
    step(f"read {len(frame)} rows")
    if frame.empty:
        _fail("the table is empty: there is nothing to train on")
    if args.target not in frame.columns:
        _fail(f"target column {args.target!r} is not in the table; its columns are "
              f"{', '.join(map(str, frame.columns))}")
    features = [f for f in args.features.split(",") if f] or \
        [c for c in frame.columns if c != args.target]
    missing = [f for f in features if f not in frame.columns]
    if missing:
        _fail(f"feature column(s) {', '.join(missing)} are not in the table")
    frame = frame.dropna(subset=[args.target])
    x, y = frame[features], frame[args.target]
    from cumulo.ml.tabular import TabularModel, column_kinds

    try:
        column_kinds(x)
    except ValueError as exc:
        _fail(str(exc))
    classification = is_classification(y)
    if classification and y.nunique() < 2:
        _fail(f"target column {args.target!r} has a single class ({y.iloc[0]!r}); a classifier "
              "needs at least two")
    params = json.loads(args.hyperparameters)
    stratify = y if classification and y.value_counts().min() >= 2 else None
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=args.validation_split, random_state=args.seed, stratify=stratify)
    task = "classification" if classification else "regression"
    print(f"{task} of {args.target!r} with {args.algorithm} on {len(x_train)} rows, "
          f"{x.shape[1]} columns; validating on {len(x_val)}", flush=True)
    warm.start()
    try:
        # The learner with what the table's rows need first: text to categories (trees) or
        # to one column per value (the others), integers to floats, XGBoost's classes to 0..k.
        model = TabularModel(
            _estimator(args.algorithm, classification, params, args.seed),
            one_hot=args.algorithm in ("logistic_regression", "linear", "random_forest", "mlp"),
            encode_labels=classification and args.algorithm == "xgboost")
        fit_options = _progress(args, model, classification, x_val, y_val)
        model.fit(x_train, y_train, **fit_options)
    except (TypeError, ValueError) as exc:  # the algorithm's own word on its parameters
        _fail(f"{args.algorithm} refused: {exc}")
    step("fitted")
    warm.join()
    import mlflow
    from mlflow.models import infer_signature

    mlflow.set_experiment(args.name)
    parent = {"mlflow.parentRunId": args.parent_run} if args.parent_run else {}
    with mlflow.start_run(run_name=f"{args.algorithm} {args.target}", tags=parent) as run:
        mlflow.log_params({"algorithm": args.algorithm, "target": args.target, "task": task,
                           "seed": args.seed, "validation_split": args.validation_split,
                           **{f"hp.{k}": v for k, v in params.items()}})
        pred = model.predict(x_val)
        scores = score_metrics(classification, model, x_val, y_val, pred)
        mlflow.log_metrics(scores)
        job.log_metrics(scores)  # for 'cumulo jobs show' and tuning, which read the job's
        for key, value in scores.items():
            print(f"{key} {value:.4f}")
        # The plots are drawn and sent while the model is saved and sent: both wait on the
        # network much of the time.
        run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
        plots = _Background(_figures if not args.no_plots else lambda *_: None, run_id,
                            classification, model, y_val, pred, model.feature_names_)
        # The signature is the table's columns as it holds them (integers, text): the model
        # prepares them itself, so it scores its own table's rows.
        sample = x_train.head(100)
        signature = infer_signature(sample, model.predict(sample))
        # The model's code goes in the pickle, so it loads without Cumulo.
        from cumulo.ml.tabular import mlflow_options

        extra = mlflow_options()
        if args.algorithm == "mlp":
            from cumulo.ml import mlp

            mlp.mlflow_options()
        _skip_requirement_check()
        # Requirements named here, not inferred: MLflow infers them by loading the model in a
        # subprocess, which costs seconds. The registry's SQL store makes a version ready at
        # once, so there is nothing to wait for either.
        with _registration_chatter_dropped():
            info = mlflow.sklearn.log_model(
                model, name="model", signature=signature,
                registered_model_name=None if args.no_register else args.name,
                await_registration_for=0, pip_requirements=_requirements(args.algorithm),
                **extra)
        plots.join()
        mlflow.set_tag("cumulo.model_uri", f"models:/{info.model_id}")  # what tuning registers
        if args.no_register:
            step("scored; model logged (not registered)")
        else:
            step(f"scored; plots logged; registered {args.name} version "
                 f"{info.registered_model_version}")
    print(f"MLflow run: {_run_link(run)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
