"""One pipeline step, run as a job: ``python -m cumulo.pipelines.step``.

The orchestrator (:mod:`cumulo.pipelines.runs`) submits the job with the step in the
environment (``PIPELINE_STEP``: its component, resolved parameters, input values, and where its
outputs go) and its input tables as the job's inputs, pinned at their versions. The step does
its component's work and writes ``step.json`` to the job's output folder: each output's value.

What flows between steps:

- a table: ``db.table@vN``, a version of a lake table. Each output table is the step's own,
  ``pipelines.PIPELINE_NODE_OUTPUT``, overwritten with a new version on each run;
- a model: a URI MLflow loads (``models:/m-...`` for one a run logged, ``models:/NAME/3``
  for a registered version);
- metrics: a JSON object of numbers;
- an endpoint: its name.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from typing import Any, NoReturn

__all__ = ["main"]


def _fail(message: str) -> NoReturn:
    print(f"step failed: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


class _Step:
    def __init__(self, spec: dict[str, Any]) -> None:
        from cumulo.client import Client

        self.spec = spec
        self.params: dict[str, Any] = spec["params"]
        self.inputs: dict[str, Any] = spec["inputs"]
        self.targets: dict[str, dict[str, Any]] = spec["outputs"]
        self.client = Client()
        self.started = time.perf_counter()
        self.databases: set[str] = set()  # made or found already

    def say(self, what: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.2f}s] {what}", flush=True)

    # --- values ----------------------------------------------------------------------------

    def frame(self, port: str) -> Any:
        """An input table as a pandas DataFrame (read from its pinned version)."""
        import cumulo.job

        job: Any = cumulo.job
        frame = job.inputs[port].to_pandas()
        self.say(f"read {len(frame)} rows of {self.inputs[port]}")
        return frame

    def database(self, table: str) -> None:
        """The output tables' database, made on first use."""
        from cumulo.errors import Conflict

        name = table.split(".")[0]
        if name in self.databases:
            return
        with contextlib.suppress(Conflict):  # in the pipeline's project, as its tables
            self.client.tables.create_database(name, description="tables written by pipelines",
                                               project=self.spec.get("project"))
        self.databases.add(name)

    def write(self, port: str, data: Any) -> str:
        """A table output: a new version of the step's own table."""
        table = self.targets[port]["table"]
        self.database(table)
        out = self.client.tables.write(table, data, mode="overwrite")
        self.say(f"wrote {len(data)} rows to {table} version {out['version']}")
        return f"{table}@v{out['version']}"

    # --- components ------------------------------------------------------------------------

    def import_data(self) -> dict[str, Any]:
        p = self.params
        port = "table"
        if p["source"] == "table":
            info = self.client.tables.show(p["table"])
            ref = p["table"] if "@" in p["table"] else f"{p['table']}@v{info['version']}"
            self.say(f"table {ref}")
            return {port: ref}
        source = p["path"] if p["source"] == "files" else p["url"]
        table = self.targets[port]["table"]
        self.database(table)
        out = self.client.tables.load_from(table, source, format=p.get("format"),
                                           mode="overwrite")
        self.say(f"loaded {source} into {table} version {out['version']}")
        return {port: f"{table}@v{out['version']}"}

    def sql_transform(self) -> dict[str, Any]:
        import re

        views = [f"{name} AS (SELECT * FROM {_versioned(self.inputs[name])})"
                 for name in ("t1", "t2", "t3") if name in self.inputs]
        query = self.params["query"].strip().rstrip(";")
        if views:
            match = re.match(r"(?is)^with\s+(recursive\s+)?", query)
            if match:
                query = (f"WITH {match.group(1) or ''}{', '.join(views)}, "
                         f"{query[match.end():]}")
            else:
                query = f"WITH {', '.join(views)} {query}"
        result = self.client.sql(query).to_arrow()
        return {"table": self.write("table", result)}

    def select_columns(self) -> dict[str, Any]:
        frame = self.frame("table")
        columns = self.params["columns"]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            _fail(f"no column(s) {', '.join(missing)}; the table has "
                  f"{', '.join(map(str, frame.columns))}")
        out = frame.drop(columns=columns) if self.params.get("drop") else frame[columns]
        return {"table": self.write("table", out)}

    def _columns(self, frame: Any, numeric: bool = False) -> list[str]:
        import pandas as pd

        wanted = self.params.get("columns") or [
            c for c in frame.columns
            if not numeric or pd.api.types.is_numeric_dtype(frame[c])]
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            _fail(f"no column(s) {', '.join(missing)}; the table has "
                  f"{', '.join(map(str, frame.columns))}")
        return [c for c in wanted if c not in (self.params.get("exclude") or [])]

    def clean_missing_data(self) -> dict[str, Any]:
        import pandas as pd

        frame = self.frame("table")
        columns = self._columns(frame)
        strategy = self.params["strategy"]
        before = int(frame[columns].isna().sum().sum())
        if strategy == "drop_rows":
            frame = frame.dropna(subset=columns)
        else:
            for c in columns:
                if not frame[c].isna().any():
                    continue
                if strategy in ("mean", "median"):
                    if not pd.api.types.is_numeric_dtype(frame[c]):
                        continue  # the mean of text: left for drop_rows or mode
                    value = frame[c].mean() if strategy == "mean" else frame[c].median()
                elif strategy == "mode":
                    value = frame[c].mode().iloc[0]
                else:
                    if self.params.get("value") is None:
                        _fail("strategy constant needs parameter 'value'")
                    value = _cast(self.params["value"], frame[c])
                frame[c] = frame[c].fillna(value)
        self.say(f"{before} missing values; {strategy}")
        return {"table": self.write("table", frame.reset_index(drop=True))}

    def normalize(self) -> dict[str, Any]:
        frame = self.frame("table")
        for c in self._columns(frame, numeric=True):
            values = frame[c].astype("float64")
            if self.params["method"] == "zscore":
                std = values.std()
                frame[c] = (values - values.mean()) / (std if std else 1.0)
            else:
                span = values.max() - values.min()
                frame[c] = (values - values.min()) / (span if span else 1.0)
        return {"table": self.write("table", frame)}

    def split_data(self) -> dict[str, Any]:
        from sklearn.model_selection import train_test_split

        frame = self.frame("table")
        by = self.params.get("stratify_by")
        if by and by not in frame.columns:
            _fail(f"stratify_by: no column {by!r}")
        fraction = float(self.params["fraction"])
        if not 0 < fraction < 1:
            _fail(f"fraction must be between 0 and 1 (not either), not {fraction}")
        train, test = train_test_split(frame, train_size=fraction,
                                       random_state=int(self.params["seed"]),
                                       stratify=frame[by] if by else None)
        return {"train": self.write("train", train.reset_index(drop=True)),
                "test": self.write("test", test.reset_index(drop=True))}

    def join(self) -> dict[str, Any]:
        left, right = self.frame("left"), self.frame("right")
        on = self.params["on"]
        for side, frame in (("left", left), ("right", right)):
            missing = [c for c in on if c not in frame.columns]
            if missing:
                _fail(f"the {side} table has no column(s) {', '.join(missing)}")
        out = left.merge(right, on=on, how=self.params["how"], suffixes=("", "_right"))
        return {"table": self.write("table", out)}

    def train_model(self) -> dict[str, Any]:
        import mlflow

        from cumulo.ml import train

        p = self.params
        argv = ["--target", p["target"], "--algorithm", p["algorithm"],
                "--hyperparameters", json.dumps(p.get("hyperparameters") or {}),
                "--validation-split", str(p["validation_split"]), "--seed", str(p["seed"]),
                "--name", f"pipeline-{self.spec['pipeline']}", "--no-register"]
        if p.get("features"):
            argv += ["--features", ",".join(p["features"])]
        train.main(argv)
        run = mlflow.last_active_run()
        assert run is not None
        return {"model": run.data.tags["cumulo.model_uri"],
                "metrics": {k: float(v) for k, v in run.data.metrics.items()}}

    def tune_hyperparameters(self) -> dict[str, Any]:
        from mlflow import MlflowClient

        from cumulo.ml.sdk import tune
        from cumulo.ml.train import is_classification

        p = self.params
        objective = p.get("objective")
        if not objective:  # the task's usual one
            frame = self.frame("train")
            if p["target"] not in frame.columns:
                _fail(f"target column {p['target']!r} is not in the table")
            objective = "accuracy" if is_classification(frame[p["target"]]) else "rmse"
        self.say(f"tuning {p['algorithm']} on {objective}, {p['trials']} trials")
        result = tune(self.client, objective=objective, search_space=p["space"],
                      name=f"pipeline-{self.spec['pipeline']}", table=self.inputs["train"],
                      target=p["target"], algorithm=p["algorithm"], max_trials=p["trials"],
                      seed=p["seed"], cluster=self.spec.get("cluster", "local"),
                      register=False, project=self.spec.get("project"))
        best = result["best"]
        tags = MlflowClient().get_run(best["run_id"]).data.tags
        self.say(f"best trial {best['number']}: {objective} {best['value']}")
        metrics = {objective: float(best["value"])}
        metrics.update({f"param.{k}": float(v) for k, v in best["params"].items()
                        if isinstance(v, int | float) and not isinstance(v, bool)})
        return {"model": tags["cumulo.model_uri"], "metrics": metrics}

    def _model(self) -> Any:
        import mlflow.pyfunc

        uri = self.inputs["model"]
        model = mlflow.pyfunc.load_model(uri)
        self.say(f"loaded {uri}")
        return model

    def score_model(self) -> dict[str, Any]:
        frame = self.frame("table")
        model = self._model()
        column = self.params["column"]
        features = _features(model, frame, exclude=column)
        frame[column] = list(_as_list(model.predict(frame[features])))
        return {"table": self.write("table", frame)}

    def evaluate_model(self) -> dict[str, Any]:
        from cumulo.ml.train import is_classification, score_metrics

        frame = self.frame("table")
        target = self.params["target"]
        if target not in frame.columns:
            _fail(f"target column {target!r} is not in the table; its columns are "
                  f"{', '.join(map(str, frame.columns))}")
        frame = frame.dropna(subset=[target])
        model = self._model()
        features = _features(model, frame, exclude=target)
        x, y = frame[features], frame[target]
        raw = getattr(model, "_model_impl", None)
        estimator = getattr(raw, "sklearn_model", None) or model
        classification = is_classification(y)
        pred = estimator.predict(x)
        scores = score_metrics(classification, estimator, x, y, pred)
        self.say(", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        return {"metrics": scores}

    def register_model(self) -> dict[str, Any]:
        import mlflow
        from mlflow import MlflowClient

        p = self.params
        version = mlflow.register_model(self.inputs["model"], p["name"],
                                        await_registration_for=0)
        client = MlflowClient()
        if p.get("description"):
            client.update_model_version(p["name"], version.version,
                                        description=p["description"])
        if p.get("alias"):
            client.set_registered_model_alias(p["name"], p["alias"], version.version)
        self.say(f"registered {p['name']} version {version.version}")
        return {"model": f"models:/{p['name']}/{version.version}"}

    def _serving_cluster(self) -> tuple[str | None, str | None]:
        """Where the endpoint is to run, as endpoints name it (a Ray cluster, or None for this
        machine), and what asks for that place: the step's cluster parameter, or the run's
        cluster when that is a Ray cluster. (None, None) when nothing does."""
        named = self.params.get("cluster")
        cluster = named or self.spec.get("cluster") or "local"
        ray = self.client.clusters.show(cluster)["type"] == "ray"
        if named:
            return (cluster if ray else None), f"its cluster parameter, {cluster}"
        return (cluster, f"the run's cluster, {cluster}") if ray else (None, None)

    def deploy_to_endpoint(self) -> dict[str, Any]:
        from cumulo.errors import NotFound

        p = self.params
        uri = self.inputs["model"]
        if not uri.startswith("models:/") or uri.count("/") != 2:
            _fail(f"{uri} is not a registered version: put a Register Model step before "
                  "this one")
        name, version = uri[len("models:/"):].split("/")
        model = f"{name}:{version}"
        endpoint = p["endpoint"]
        cluster, asked_by = self._serving_cluster()
        try:
            current = self.client.endpoints[endpoint].show()
        except NotFound:
            self.client.endpoints.create(endpoint, model, min_replicas=p["min_replicas"],
                                         max_replicas=p["max_replicas"], cluster=cluster,
                                         wait=True, timeout=300,
                                         project=self.spec.get("project"))
            self.say(f"created endpoint {endpoint} serving {model}"
                     + (f" on Ray cluster {cluster}" if cluster else ""))
        else:
            if asked_by and current.get("cluster") != cluster:
                # Moving an endpoint would take it out of service: that is for its owner.
                _fail(f"endpoint {endpoint} runs on {current.get('cluster') or 'this machine'}; "
                      f"this step deploys to {cluster or 'this machine'} ({asked_by}): remove "
                      "the endpoint first, or set the step's cluster parameter to where it runs")
            live = [(v["model"], str(v["version"])) for v in current.get("variants", [])
                    if v.get("weight") and not v.get("shadow")]
            if live == [(name, version)] and current.get("state") == "in_service":
                # Deployed already (by a run on another cluster, or without the cache).
                self.say(f"endpoint {endpoint} serves {model} already")
                return {"endpoint": endpoint}
            self.client.endpoints[endpoint].update(model=model, strategy=p["strategy"],
                                                   wait=True, timeout=600)
            self.say(f"endpoint {endpoint} now serves {model}")
        return {"endpoint": endpoint}

    def python_script(self) -> dict[str, Any]:
        p = self.params
        namespace: dict[str, Any] = {"__name__": "__cumulo_step__"}
        exec(compile(p["code"], f"<step {self.spec['node']}>", "exec"), namespace)
        function = namespace.get(p["function"])
        if not callable(function):
            _fail(f"the code defines no function {p['function']!r}")
        kwargs = dict(p.get("args") or {})
        for port, kind in (p.get("inputs") or {}).items():
            kwargs[port] = self.frame(port) if kind == "table" else self.inputs[port]
        result = function(**kwargs)
        declared: dict[str, str] = p.get("outputs") or {}
        if not declared:
            return {}
        if len(declared) == 1 and not (isinstance(result, dict) and set(result) == set(
                declared) and next(iter(declared.values())) != "metrics"):
            result = {next(iter(declared)): result}
        if not isinstance(result, dict) or set(result) != set(declared):
            _fail(f"{p['function']} returned {type(result).__name__}; it declares outputs "
                  f"{', '.join(declared)}: return a dict with those keys")
        out: dict[str, Any] = {}
        for port, kind in declared.items():
            value = result[port]
            if kind == "table":
                out[port] = self.write(port, value)
            elif kind == "metrics":
                if not isinstance(value, dict):
                    _fail(f"output {port!r} is metrics: return a dict of numbers")
                out[port] = {str(k): float(v) for k, v in value.items()}
            else:
                out[port] = str(value)
        return out

    def notebook(self) -> dict[str, Any]:
        """Execute the notebook (papermill); the executed notebook is the job's output."""
        import tempfile
        from pathlib import Path

        import cumulo.job
        from cumulo.errors import CumuloError
        from cumulo.notebooks.execute import NotebookFailed, execute
        from cumulo.notebooks.runs import check_parameters, read_notebook

        p = self.params
        name = p["notebook"]
        if p.get("snapshot"):  # the snapshot is the job's working folder
            source = Path(name)
            if not source.is_file():
                _fail(f"the step's code snapshot holds no notebook {name}")
        try:
            if not p.get("snapshot"):
                source = Path(tempfile.mkdtemp(prefix="cumulo-nb-")) / Path(name).name
                self.client.files.download(name, source)
                self.say(f"read notebook {name}")
            # the parameters it takes, named as 'cumulo notebooks run' names them
            values = check_parameters(read_notebook(source), p.get("parameters") or {})
        except CumuloError as exc:
            _fail(exc.message)
        job: Any = cumulo.job
        output = job.output_dir / source.name
        try:
            execute(source, output, parameters=values, cwd=Path.cwd())
        except NotebookFailed as exc:
            _fail(f"{exc}; the executed notebook is kept as output {output.name} of job "
                  f"{job.id}")
        self.say(f"executed {source.name}; kept as output {output.name} of job {job.id}")
        return {}


def _versioned(ref: str) -> str:
    table, _, version = ref.partition("@v")
    return f"{table} VERSION AS OF {int(version)}" if version else table


def _cast(value: str, column: Any) -> Any:
    import pandas as pd

    if pd.api.types.is_integer_dtype(column):
        return int(value)
    if pd.api.types.is_numeric_dtype(column):
        return float(value)
    if pd.api.types.is_bool_dtype(column):
        return value.lower() in ("1", "true", "yes")
    return value


def _features(model: Any, frame: Any, *, exclude: str) -> list[str]:
    signature = model.metadata.signature
    if signature is not None:
        names = [c["name"] for c in signature.inputs.to_dict() if "name" in c]
        missing = [n for n in names if n not in frame.columns]
        if missing:
            _fail(f"the model needs column(s) {', '.join(missing)}, not in the table")
        if names:
            return names
    return [c for c in frame.columns if c != exclude]


def _as_list(predicted: Any) -> Any:
    if hasattr(predicted, "tolist"):
        return predicted.tolist()
    return list(predicted)


def main() -> int:
    spec = json.loads(os.environ["PIPELINE_STEP"])
    step = _Step(spec)
    component = spec["component"]
    step.say(f"{spec['pipeline']} / {spec['node']}: {component}")
    try:
        outputs = getattr(step, component)()
    except SystemExit:
        raise
    except Exception as exc:
        traceback.print_exc()
        _fail(f"{type(exc).__name__}: {exc}")
    import cumulo.job

    job: Any = cumulo.job
    (job.output_dir / "step.json").write_text(json.dumps({"outputs": outputs}))
    step.say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
