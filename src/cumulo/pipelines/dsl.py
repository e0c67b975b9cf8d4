"""Pipelines in Python: ``@pipeline`` functions that call components and ``@step`` functions,
passing one step's outputs to the next as ordinary arguments.

::

    from cumulo.pipelines import pipeline, step
    from cumulo.pipelines.library import (import_data, split_data, train_model,
                                          evaluate_model, condition, register_model)

    @step
    def add_ratio(table):                      # a table arrives as a pandas DataFrame
        table["ratio"] = table["spend"] / (table["tenure"] + 1)
        return table                           # and leaves as a new table version

    @pipeline
    def churn(threshold: float = 0.8):
        raw = import_data(source="files", path="data/raw/churn.csv")
        parts = split_data(add_ratio(raw), fraction=0.8)
        trained = train_model(parts.train, target="churned")
        scores = evaluate_model(trained.model, parts.test, target="churned")
        gate = condition(scores, metric="accuracy", value=threshold)
        register_model(trained.model, name="churn", after=gate.then)

    churn.definition()   # the JSON document the designer draws: see cumulo.pipelines.definition

Calling the ``@pipeline`` function does not run anything: it records the calls as nodes and
the arguments as edges. A node's outputs are its attributes (``parts.train``); a node with one
output can be passed as itself. Positional arguments go to the component's inputs in order,
keyword arguments to the inputs or parameters of that name. The pipeline function's own
arguments are the pipeline's parameters: their defaults and annotations give the parameters'
defaults and types, and passing one to a component gives the value it has at run time.

A ``@step`` function becomes a Python Script node. It must be self-contained, as the steps of
other pipeline tools are: it imports what it uses in its own body, since its source is what
runs. Its inputs' types are those of the outputs passed to it; its outputs come from
``@step(outputs={"name": "type"})``, or from its return annotation (a DataFrame: one table
called ``table``; a dict: ``metrics``), else one ``table``. ``@step(requirements=[...])`` (or a
requirements file's text) runs it in an environment of its own, layered over the server's
packages; ``@step(environment="NAME")`` in a named one; Train Model takes the same two
parameters (``train_model(parts.train, target="churned", environment="NAME")``).
"""

from __future__ import annotations

import ast
import contextvars
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

from cumulo.errors import Invalid
from cumulo.pipelines.components import AFTER, Component
from cumulo.pipelines.definition import check

__all__ = [
    "Node",
    "Output",
    "ParameterRef",
    "Pipeline",
    "component_function",
    "load",
    "pipeline",
    "step",
]

_BUILDER: contextvars.ContextVar[_Builder | None] = contextvars.ContextVar(
    "cumulo_pipeline_builder", default=None)


class Output:
    """One output of a node, to pass to another node's input."""

    def __init__(self, node: Node, name: str, type: str) -> None:
        self.node, self.name, self.type = node, name, type

    def __repr__(self) -> str:
        return f"<output {self.node.id}.{self.name} ({self.type})>"


class Node:
    """A component's call in a pipeline: its outputs are its attributes."""

    def __init__(self, node_id: str, outputs: dict[str, str]) -> None:
        self.id = node_id
        self._outputs = {name: Output(self, name, kind) for name, kind in outputs.items()}

    def __getattr__(self, name: str) -> Output:
        outputs = self.__dict__.get("_outputs", {})
        if name in outputs:
            return outputs[name]  # type: ignore[no-any-return]
        raise _NoOutput(f"node {self.__dict__.get('id')!r} has no output {name!r}; it "
                        f"has {', '.join(outputs) or 'none'}")

    def __getitem__(self, name: str) -> Output:  # outputs named like keywords: gate["else"]
        return self.__getattr__(name)

    def only(self) -> Output:
        data = [o for o in self._outputs.values() if o.type != "signal"]
        if len(data) != 1:
            raise Invalid(f"node {self.id!r} has {len(data)} outputs "
                          f"({', '.join(o.name for o in data)}); pass one, like "
                          f"{self.id}.{data[0].name if data else 'OUTPUT'}")
        return data[0]

    def __repr__(self) -> str:
        return f"<node {self.id}>"


class _NoOutput(AttributeError):
    """An output a node does not have (an AttributeError, as Python expects of attributes)."""


class ParameterRef:
    """A pipeline parameter, inside the ``@pipeline`` function: its value at run time."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<parameter {self.name}>"

    def __bool__(self) -> bool:
        raise Invalid(f"parameter {self.name!r} has no value while the pipeline is defined, "
                      "only when it runs: pass it to a component (condition, for a branch) "
                      "instead of testing it in Python")


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[dict[str, str]] = []
        self.ids: set[str] = set()

    def new_id(self, base: str, wanted: str | None) -> str:
        if wanted is not None:
            if wanted in self.ids:
                raise Invalid(f"two nodes are called {wanted!r}; give each its own id=")
            self.ids.add(wanted)
            return wanted
        node_id, n = base, 1
        while node_id in self.ids:
            n += 1
            node_id = f"{base}_{n}"
        self.ids.add(node_id)
        return node_id

    def connect(self, value: Any, node_id: str, port: str) -> str:
        """An edge from ``value`` (an Output or a Node) into ``node_id.port``; its type."""
        source = value.only() if isinstance(value, Node) else value
        self.edges.append({"from": f"{source.node.id}.{source.name}",
                           "to": f"{node_id}.{port}"})
        return source.type


def _builder(what: str) -> _Builder:
    builder = _BUILDER.get()
    if builder is None:
        raise Invalid(f"{what} is a pipeline step: call it inside a @pipeline function "
                      "(which records the call as a node; it does not run it)")
    return builder


def _value(value: Any) -> Any:
    """A parameter's value in the definition: pipeline parameters become references."""
    if isinstance(value, ParameterRef):
        return {"$param": value.name}
    if isinstance(value, Output | Node):
        raise Invalid(f"{value!r} is a step's output; pass it as an input, not a parameter")
    if isinstance(value, dict):
        return {k: _value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    return value


def _afters(builder: _Builder, node_id: str, after: Any) -> None:
    for signal in after if isinstance(after, list | tuple) else [after]:
        if not isinstance(signal, Output) or signal.type != "signal":
            raise Invalid(f"after= takes a condition's branch, like gate.then, not {signal!r}")
        builder.connect(signal, node_id, AFTER)


def component_function(component: Component) -> Callable[..., Node]:
    """The Python form of a library component: records a node when called in a pipeline."""

    def call(*args: Any, id: str | None = None, after: Any = None, cache: bool = True,
             **kwargs: Any) -> Node:
        builder = _builder(component.name)
        node_id = builder.new_id(component.name, id)
        inputs = [p.name for p in component.inputs]
        if len(args) > len(inputs):
            raise Invalid(f"{component.name} takes {len(inputs)} inputs ({', '.join(inputs)}) "
                          f"and got {len(args)}; give parameters by name")
        given = dict(zip(inputs, args, strict=False))
        for key in list(kwargs):
            if key in inputs:
                if key in given:
                    raise Invalid(f"{component.name}: input {key!r} given twice")
                given[key] = kwargs.pop(key)
        for port, value in given.items():
            if value is None and component.input(port).optional:  # type: ignore[union-attr]
                continue
            if not isinstance(value, Output | Node):
                raise Invalid(f"{component.name}: input {port!r} takes another step's output, "
                              f"not {value!r}")
            builder.connect(value, node_id, port)
        if after is not None:
            _afters(builder, node_id, after)
        node: dict[str, Any] = {"id": node_id, "component": component.name,
                                "params": {k: _value(v) for k, v in kwargs.items()}}
        if not cache:
            node["cache"] = False
        builder.nodes.append(node)
        return Node(node_id, {p.name: p.type for p in component.outputs})

    call.__name__ = component.name
    call.__qualname__ = component.name
    call.__doc__ = component.description
    return call


# --- @step ---------------------------------------------------------------------------------------

def _source(func: Callable[..., Any]) -> str:
    """The function's own source, without its decorators."""
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError) as exc:
        raise Invalid(f"the source of step {func.__name__!r} cannot be read ({exc}); define it "
                      "in a .py file") from exc
    tree = ast.parse(source)
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)),
              None)
    if fn is None or isinstance(fn, ast.AsyncFunctionDef):
        raise Invalid(f"step {func.__name__!r} must be a plain (not async) function")
    lines = source.splitlines()
    return "\n".join(lines[fn.lineno - 1:fn.end_lineno]) + "\n"


def _outputs_of(func: Callable[..., Any], outputs: dict[str, str] | None) -> dict[str, str]:
    if outputs is not None:
        return dict(outputs)
    annotation = inspect.signature(func).return_annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if annotation is None or text == "None":
        return {}
    if "dict" in str(text).lower():
        return {"metrics": "metrics"}
    return {"table": "table"}


class Step:
    """A ``@step`` function: called inside a pipeline, a Python Script node; called outside
    one, the plain function (to test it)."""

    def __init__(self, func: Callable[..., Any], outputs: dict[str, str] | None,
                 requirements: list[str] | str, environment: str | None = None) -> None:
        self.func = func
        self.name = func.__name__
        self.outputs = _outputs_of(func, outputs)
        self.requirements = requirements
        self.environment = environment
        self.code = _source(func)
        self.signature = inspect.signature(func)
        self.__doc__ = func.__doc__

    def __call__(self, *args: Any, id: str | None = None, after: Any = None,
                 cache: bool = True, **kwargs: Any) -> Any:
        builder = _BUILDER.get()
        if builder is None:
            return self.func(*args, **kwargs)
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise Invalid(f"step {self.name}: {exc}") from exc
        node_id = builder.new_id(self.name, id)
        inputs: dict[str, str] = {}
        extra: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if isinstance(value, Output | Node):
                inputs[name] = builder.connect(value, node_id, name)
            else:
                extra[name] = _value(value)
        if after is not None:
            _afters(builder, node_id, after)
        params: dict[str, Any] = {"code": self.code, "function": self.name,
                                  "inputs": inputs, "outputs": self.outputs, "args": extra}
        if self.requirements:
            params["requirements"] = self.requirements
        if self.environment is not None:
            params["environment"] = self.environment
        node: dict[str, Any] = {"id": node_id, "component": "python_script", "params": params}
        if not cache:
            node["cache"] = False
        builder.nodes.append(node)
        return Node(node_id, self.outputs)


def step(func: Callable[..., Any] | None = None, *, outputs: dict[str, str] | None = None,
         requirements: list[str] | str | None = None,
         environment: str | None = None) -> Any:
    """Make a function a pipeline step (a Python Script node). It runs in its own
    environment with ``requirements`` (a list, or a requirements file's text: the packages
    it imports, installed over the server's) or ``environment`` (a named one, 'cumulo envs
    ls'); else in the server's."""
    def wrap(f: Callable[..., Any]) -> Step:
        reqs = requirements if isinstance(requirements, str) else list(requirements or [])
        return Step(f, outputs, reqs, environment)

    return wrap(func) if func is not None else wrap


# --- @pipeline -----------------------------------------------------------------------------------

_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string",
          "bool": "boolean", "int": "integer", "float": "number", "str": "string"}


class Pipeline:
    """A ``@pipeline`` function. ``definition()`` is its JSON document, checked."""

    def __init__(self, func: Callable[..., Any], name: str | None,
                 description: str | None) -> None:
        self.func = func
        self.name = name or func.__name__.replace("_", "-")
        self.description = description if description is not None else (
            inspect.getdoc(func) or "")
        self.__doc__ = func.__doc__

    def parameters(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, p in inspect.signature(self.func).parameters.items():
            kind = _TYPES.get(p.annotation) if p.annotation is not p.empty else None
            if kind is None and p.default is not p.empty and p.default is not None:
                kind = _TYPES.get(type(p.default))
            if kind is None:
                raise Invalid(f"pipeline {self.name}: parameter {name!r} needs a type: "
                              "annotate it (bool, int, float or str) or give it a default")
            spec: dict[str, Any] = {"type": kind}
            if p.default is not p.empty:
                spec["default"] = p.default
            out[name] = spec
        return out

    def definition(self) -> dict[str, Any]:
        parameters = self.parameters()
        builder = _Builder()
        token = _BUILDER.set(builder)
        try:
            self.func(**{name: ParameterRef(name) for name in parameters})
        except _NoOutput as exc:
            raise Invalid(f"pipeline {self.name}: {exc}") from exc
        finally:
            _BUILDER.reset(token)
        return check({"name": self.name, "description": self.description,
                      "parameters": parameters, "nodes": builder.nodes,
                      "edges": builder.edges})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise Invalid(f"pipeline {self.name!r} is not run by calling it: create it "
                      f"(client.pipelines.create({self.func.__name__})) and run it "
                      f"(cumulo pipelines run {self.name})")


def pipeline(func: Callable[..., Any] | None = None, *, name: str | None = None,
             description: str | None = None) -> Any:
    """Make a function a pipeline definition."""
    def wrap(f: Callable[..., Any]) -> Pipeline:
        return Pipeline(f, name, description)

    return wrap(func) if func is not None else wrap


# --- files ---------------------------------------------------------------------------------------

def load(spec: str) -> tuple[dict[str, Any], str]:
    """A definition from a file, and its source kind (json or python): ``FILE.json``,
    ``FILE.yaml``, or ``FILE.py`` (its one ``@pipeline``; ``FILE.py:NAME`` picks one)."""
    import importlib.util
    import json
    import sys
    from pathlib import Path

    path_text, _, attr = spec.partition(":") if spec.count(":") == 1 and not Path(
        spec).exists() else (spec, "", "")
    path = Path(path_text)
    if not path.is_file():
        raise Invalid(f"no file {path_text!r}")
    suffix = path.suffix.lower()
    if suffix in (".json", ".yaml", ".yml"):
        text = path.read_text()
        try:
            if suffix == ".json":
                doc = json.loads(text)
            else:
                import yaml

                doc = yaml.safe_load(text)
        except ValueError as exc:  # json's and yaml's errors both say where
            raise Invalid(f"{path}: not valid {suffix[1:].upper()}: {exc}") from exc
        return check(doc), "json"
    if suffix != ".py":
        raise Invalid(f"{path}: a pipeline is a .py, .json, .yaml or .yml file")
    name = f"_cumulo_pipeline_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent.resolve()))
        sys.modules.pop(name, None)
    found = {k: v for k, v in vars(module).items() if isinstance(v, Pipeline)}
    if attr:
        if attr not in found:
            raise Invalid(f"{path} has no @pipeline {attr!r}; it has "
                          f"{', '.join(found) or 'none'}")
        return found[attr].definition(), "python"
    if len(found) != 1:
        raise Invalid(f"{path} has {len(found)} @pipeline functions "
                      f"({', '.join(found) or 'none'}); name one: {path}:NAME")
    return next(iter(found.values())).definition(), "python"
