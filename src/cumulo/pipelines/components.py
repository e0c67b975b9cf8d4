"""The component library: what a pipeline's nodes can be, with typed inputs, outputs and
parameters.

A component is declared once here and used from both forms of a pipeline: a node of a JSON or
YAML document (``{"id": "clean", "component": "clean_missing_data", "params": {...}}``) and a
call in a Python pipeline (``clean_missing_data(raw.table, strategy="median")``, from
:mod:`cumulo.pipelines.dsl`). ``cumulo pipelines components`` lists them; the console's
designer draws its palette from the same list (``GET /api/v1/pipelines/components``).

Port types (what flows along an edge):

- ``table``: a version of a lake table (``db.table@v3``);
- ``model``: a model (an MLflow run's model, or a registered version ``name:3``);
- ``metrics``: named numbers (``{"accuracy": 0.91}``);
- ``endpoint``: a deployed endpoint's name;
- ``signal``: no data, only "go": a Condition's ``then`` and ``else`` outputs lead to the
  ``after`` input every node has, which runs it only on that branch.

An edge joins an output to an input of the same type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["COMPONENTS", "PORT_TYPES", "Component", "Param", "Port", "component_doc"]

PORT_TYPES = ("table", "model", "metrics", "endpoint", "signal")
# ``requirements``: a list of requirements (``["six==1.15.0"]``) or a requirements file's text.
PARAM_TYPES = ("string", "integer", "number", "boolean", "string_list", "object",
               "requirements")
AFTER = "after"  # every node's control input: runs after (and only on the branch of) a signal


@dataclass(frozen=True)
class Port:
    name: str
    type: str
    description: str = ""
    optional: bool = False


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    description: str = ""
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def check(self, value: Any) -> str | None:
        """What is wrong with ``value`` for this parameter, or None."""
        kind = self.type
        ok = {
            "string": isinstance(value, str),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
            "string_list": isinstance(value, list) and all(isinstance(v, str) for v in value),
            "object": isinstance(value, dict),
            "requirements": isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value)),
        }[kind]
        if not ok:
            return f"expected {_A[kind]}, got {type(value).__name__} {value!r:.60}"
        if self.choices is not None and value not in self.choices:
            return f"expected one of {', '.join(map(str, self.choices))}, got {value!r}"
        if self.minimum is not None and value < self.minimum:
            return f"expected at least {self.minimum:g}, got {value!r}"
        if self.maximum is not None and value > self.maximum:
            return f"expected at most {self.maximum:g}, got {value!r}"
        return None


_A = {"string": "a string", "integer": "an integer", "number": "a number",
      "boolean": "true or false", "string_list": "a list of strings", "object": "an object",
      "requirements": "a list of requirements or a requirements file's text"}


@dataclass(frozen=True)
class Component:
    name: str
    title: str
    category: str
    description: str
    inputs: tuple[Port, ...] = ()
    outputs: tuple[Port, ...] = ()
    params: tuple[Param, ...] = field(default=())

    def input(self, name: str) -> Port | None:
        return next((p for p in self.inputs if p.name == name), None)

    def output(self, name: str) -> Port | None:
        return next((p for p in self.outputs if p.name == name), None)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


def _p(name: str, kind: str, description: str, **more: Any) -> Param:
    if "choices" in more:
        more["choices"] = tuple(more["choices"])
    return Param(name, kind, description, **more)


_TABLE_IN = Port("table", "table", "the rows to work on")
_TABLE_OUT = Port("table", "table", "the result, a new version of the step's table")
_ALGORITHMS = ("lightgbm", "xgboost", "random_forest", "logistic_regression", "linear", "mlp")
_COLUMNS = _p("columns", "string_list", "the columns to work on; default: all that apply")
# A step that runs in its own environment (a job's --requirements or --env NAME): a layer
# over the server's packages, so the step's own code (pandas, the lake) still runs in it.
_ENVIRONMENT = _p("environment", "string", "a named environment to run in ('cumulo envs ls'); "
                  "not with requirements")
_ENV_DOC = (" It runs in the server's environment, or in its own: 'requirements' (built "
            "once, layered over the server's packages) or a named 'environment'.")


def _requirements(default: Any = None) -> Param:
    return _p("requirements", "requirements", "packages to install for it, one a line "
              "(six==1.15.0): resolved and built once, its pins before the server's",
              default=default)


COMPONENTS: dict[str, Component] = {c.name: c for c in (
    Component(
        "import_data", "Import Data", "data",
        "Read rows from stored files (CSV, Parquet, JSON lines), a URL, or a lake table.",
        outputs=(_TABLE_OUT,),
        params=(
            _p("source", "string", "where the rows come from", required=True,
               choices=("files", "url", "table")),
            _p("path", "string", "source files: BUCKET/KEY or BUCKET/PREFIX/"),
            _p("url", "string", "source url: an http(s) address of a CSV or Parquet file"),
            _p("table", "string", "source table: DB.TABLE, or DB.TABLE@vN for a version"),
            _p("format", "string", "the files' format; default: from the name",
               choices=("csv", "parquet", "json")),
        )),
    Component(
        "sql_transform", "SQL Transform", "data",
        "Run a SELECT over up to three input tables, named t1, t2 and t3 in the query, and "
        "over any lake table by its name.",
        inputs=(Port("t1", "table", "the table called t1 in the query", optional=True),
                Port("t2", "table", "the table called t2", optional=True),
                Port("t3", "table", "the table called t3", optional=True)),
        outputs=(_TABLE_OUT,),
        params=(_p("query", "string", "the SELECT", required=True),)),
    Component(
        "select_columns", "Select Columns", "data", "Keep some columns, or drop them.",
        inputs=(_TABLE_IN,), outputs=(_TABLE_OUT,),
        params=(_p("columns", "string_list", "the columns", required=True),
                _p("drop", "boolean", "drop these columns instead of keeping them",
                   default=False))),
    Component(
        "clean_missing_data", "Clean Missing Data", "data",
        "Drop the rows with missing values, or fill them with each column's mean, median or "
        "most common value, or a constant.",
        inputs=(_TABLE_IN,), outputs=(_TABLE_OUT,),
        params=(_COLUMNS,
                _p("strategy", "string", "what to do with a missing value", default="drop_rows",
                   choices=("drop_rows", "mean", "median", "mode", "constant")),
                _p("value", "string", "the constant, for strategy constant"))),
    Component(
        "normalize", "Normalize", "data",
        "Scale numeric columns: z-score (mean 0, standard deviation 1) or min-max (0 to 1).",
        inputs=(_TABLE_IN,), outputs=(_TABLE_OUT,),
        params=(_COLUMNS,
                _p("method", "string", "how to scale", default="zscore",
                   choices=("zscore", "minmax")),
                _p("exclude", "string_list", "columns to leave as they are (the target)",
                   default=[]))),
    Component(
        "split_data", "Split Data", "data",
        "Split rows at random into a training and a test table.",
        inputs=(_TABLE_IN,),
        outputs=(Port("train", "table", "the training rows"),
                 Port("test", "table", "the rest")),
        params=(_p("fraction", "number", "the training share", default=0.8, minimum=0.0,
                   maximum=1.0),
                _p("seed", "integer", "the random seed", default=0),
                _p("stratify_by", "string", "a column whose shares both sides keep"))),
    Component(
        "join", "Join", "data", "Join two tables on columns of the same name.",
        inputs=(Port("left", "table", "the left table"),
                Port("right", "table", "the right table")),
        outputs=(_TABLE_OUT,),
        params=(_p("on", "string_list", "the columns to join on", required=True),
                _p("how", "string", "the kind of join", default="inner",
                   choices=("inner", "left", "right", "outer")))),
    Component(
        "train_model", "Train Model", "model",
        "Train a built-in algorithm on a table: classification or regression, from the "
        "target's values. Logs its run to the tracking server." + _ENV_DOC,
        inputs=(Port("train", "table", "the training rows"),),
        outputs=(Port("model", "model", "the trained model"),
                 Port("metrics", "metrics", "its validation metrics")),
        params=(_p("target", "string", "the column to predict", required=True),
                _p("algorithm", "string", "the algorithm", default="lightgbm",
                   choices=_ALGORITHMS),
                _p("hyperparameters", "object", "the algorithm's settings", default={}),
                _p("features", "string_list", "the input columns; default: all but the "
                   "target"),
                _p("validation_split", "number", "the share held out for its metrics",
                   default=0.2, minimum=0.0, maximum=0.9),
                _p("seed", "integer", "the random seed", default=0),
                _requirements(), _ENVIRONMENT)),
    Component(
        "tune_hyperparameters", "Tune Hyperparameters", "model",
        "Search an algorithm's settings (Optuna) and keep the best model.",
        inputs=(Port("train", "table", "the training rows"),),
        outputs=(Port("model", "model", "the best trial's model"),
                 Port("metrics", "metrics", "the best trial's metrics and settings")),
        params=(_p("target", "string", "the column to predict", required=True),
                _p("algorithm", "string", "the algorithm", default="lightgbm",
                   choices=_ALGORITHMS),
                _p("space", "object", "the settings to search, as 'cumulo tune' takes them",
                   required=True),
                _p("trials", "integer", "how many trials", default=10, minimum=1,
                   maximum=1000),
                _p("objective", "string", "the metric to optimize; default: the first one "
                   "logged"),
                _p("seed", "integer", "the random seed", default=0))),
    Component(
        "score_model", "Score Model", "model",
        "Add the model's predictions to a table, as a column.",
        inputs=(Port("model", "model", "the model"), _TABLE_IN),
        outputs=(_TABLE_OUT,),
        params=(_p("column", "string", "the predictions' column", default="prediction"),)),
    Component(
        "evaluate_model", "Evaluate Model", "model",
        "Score the model on a labelled table: accuracy, F1 and AUC, or RMSE, MAE and R2.",
        inputs=(Port("model", "model", "the model"),
                Port("table", "table", "labelled rows it was not trained on")),
        outputs=(Port("metrics", "metrics", "the scores"),),
        params=(_p("target", "string", "the label column", required=True),)),
    Component(
        "register_model", "Register Model", "model",
        "Register the model as a new version in the model registry.",
        inputs=(Port("model", "model", "the model"),),
        outputs=(Port("model", "model", "the registered version, NAME:VERSION"),),
        params=(_p("name", "string", "the registered model's name", required=True),
                _p("alias", "string", "an alias to point at the new version (champion)"),
                _p("description", "string", "the version's description"))),
    Component(
        "deploy_to_endpoint", "Deploy to Endpoint", "model",
        "Serve a registered model version: create the endpoint, or shift an existing one's "
        "traffic to it.",
        inputs=(Port("model", "model", "a registered version"),),
        outputs=(Port("endpoint", "endpoint", "the endpoint's name"),),
        params=(_p("endpoint", "string", "the endpoint's name", required=True),
                _p("min_replicas", "integer", "minimum replicas (0 scales to zero)",
                   default=1, minimum=0),
                _p("max_replicas", "integer", "maximum replicas", default=1, minimum=1),
                _p("strategy", "string", "for an existing endpoint: how traffic moves",
                   default="all_at_once", choices=("all_at_once", "canary", "linear")),
                _p("cluster", "string", "where the endpoint runs: a Ray cluster (on Ray "
                   "Serve) or local; default: the run's cluster when that is a Ray cluster, "
                   "else this machine"))),
    Component(
        "condition", "Condition", "control",
        "Branch on a metric, like SageMaker's ConditionStep: the nodes after 'then' run when "
        "it holds, those after 'else' when it does not; the others are skipped.",
        inputs=(Port("metrics", "metrics", "the metrics to test"),),
        outputs=(Port("then", "signal", "runs what follows when the condition holds"),
                 Port("else", "signal", "runs what follows when it does not")),
        params=(_p("metric", "string", "the metric's name", required=True),
                _p("op", "string", "the comparison", default=">=",
                   choices=(">=", ">", "<=", "<", "==", "!=")),
                _p("value", "number", "what the metric is compared with", required=True))),
    Component(
        "python_script", "Python Script", "code",
        "Run your own Python function. Its inputs and outputs are declared in 'inputs' and "
        "'outputs' ({name: type}); it is called with a table's rows as a pandas DataFrame, a "
        "model as its URI and metrics as a dict, and returns its outputs the same way (a "
        "dict when it has several)." + _ENV_DOC,
        params=(_p("code", "string", "the Python source that defines the function",
                   required=True),
                _p("function", "string", "the function's name", required=True),
                _p("inputs", "object", "its inputs: {name: table|model|metrics|endpoint}",
                   default={}),
                _p("outputs", "object", "its outputs: {name: table|model|metrics|endpoint}",
                   default={}),
                _p("args", "object", "other keyword arguments it is called with",
                   default={}),
                _requirements(default=[]), _ENVIRONMENT)),
    Component(
        "notebook", "Notebook", "code",
        "Execute a Jupyter notebook headless (papermill), as SageMaker's notebook jobs do: "
        "'parameters' go into its cell tagged 'parameters', and the executed notebook, "
        "outputs and all, is kept as the step's job's output. A cell that raises fails the "
        "step, with the cell's error." + _ENV_DOC,
        params=(_p("notebook", "string", "the notebook: a stored file, BUCKET/PATH.ipynb "
                   "(read at each run); with 'snapshot', its name in that snapshot",
                   required=True),
                _p("parameters", "object", "values for the parameters its cell tagged "
                   "'parameters' declares", default={}),
                _p("snapshot", "string", "a code snapshot holding the notebook, as "
                   "'cumulo notebooks run --schedule' uploads it (the notebook as it was "
                   "then)"),
                _p("cpus", "number", "CPUs for its job", default=1, minimum=0.01),
                _p("memory", "string", "a memory limit for its job, like 4G (default: none)"),
                _requirements(default=[]), _ENVIRONMENT)),
)}


def component_doc(component: Component) -> dict[str, Any]:
    """A component as the API and the console's palette show it."""
    return {
        "name": component.name, "title": component.title, "category": component.category,
        "description": component.description,
        "inputs": [{"name": p.name, "type": p.type, "description": p.description,
                    "optional": p.optional} for p in component.inputs],
        "outputs": [{"name": p.name, "type": p.type, "description": p.description}
                    for p in component.outputs],
        "params": [{k: v for k, v in {
            "name": p.name, "type": p.type, "description": p.description,
            "required": p.required, "default": p.default,
            "choices": list(p.choices) if p.choices is not None else None,
            "minimum": p.minimum, "maximum": p.maximum}.items()
            if v is not None or k in ("name", "type", "required")}
            for p in component.params],
    }
