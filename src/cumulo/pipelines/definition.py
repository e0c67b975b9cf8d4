"""A pipeline's definition: the one document both forms compile to, checked whole.

A JSON (or YAML) document, as the console's designer saves it and ``cumulo pipelines export``
prints it::

    {
      "name": "churn",
      "description": "raw CSV to a deployed model",
      "parameters": {"threshold": {"type": "number", "default": 0.8}},
      "nodes": [
        {"id": "raw", "component": "import_data",
         "params": {"source": "files", "path": "data/raw/churn.csv"}},
        {"id": "split", "component": "split_data", "params": {"fraction": 0.8}},
        {"id": "gate", "component": "condition",
         "params": {"metric": "accuracy", "value": {"$param": "threshold"}}}
      ],
      "edges": [{"from": "raw.table", "to": "split.table"}, ...]
    }

- A node's ``params`` are its component's parameters. A value ``{"$param": "NAME"}`` takes the
  pipeline parameter NAME at run time (``cumulo pipelines run --param NAME=VALUE``).
- An edge joins an output ``NODE.OUTPUT`` to an input ``NODE.INPUT`` of the same type; the
  ``after`` input of any node takes ``signal`` edges (a Condition's ``then``/``else``).
- Optional per node: ``cache`` (default true: reuse the outputs of an earlier run of the same
  code, parameters and inputs), ``title``, ``position`` (``{"x", "y"}``, for the designer).

:func:`check` returns the canonical form (defaults filled in, keys in order) or raises
:class:`~cumulo.errors.Invalid` listing every problem, each with its path in the document.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from cumulo.errors import Invalid
from cumulo.pipelines.components import AFTER, COMPONENTS, PORT_TYPES, Component, Param, Port

__all__ = ["PARAMETER_TYPES", "check", "number_problem", "order", "ports",
           "requirements_text", "schema"]

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
PARAMETER_TYPES = {"string": "string", "integer": "integer", "number": "number",
                   "boolean": "boolean"}
MAX_NODES = 500
MAX_EDGES = 2000
MAX_PARAMETERS = 100
MAX_BYTES = 1 << 20  # the whole definition as JSON: code in Python Script steps included
MAX_DESCRIPTION = 4096


def ports(node: dict[str, Any]) -> tuple[list[Port], list[Port]]:
    """A node's inputs and outputs: its component's, or, for a Python Script, those its
    ``inputs`` and ``outputs`` parameters declare. Every node also has the ``after`` input."""
    component = COMPONENTS[node["component"]]
    if component.name == "python_script":
        params = node.get("params", {})
        inputs = [Port(n, t) for n, t in (params.get("inputs") or {}).items()]
        outputs = [Port(n, t) for n, t in (params.get("outputs") or {}).items()]
    else:
        inputs, outputs = list(component.inputs), list(component.outputs)
    return [*inputs, Port(AFTER, "signal", optional=True)], outputs


def check(doc: Any) -> dict[str, Any]:
    """The definition in its canonical form, or Invalid naming every problem and where."""
    problems: list[tuple[str, str]] = []

    def bad(path: str, message: str) -> None:
        problems.append((path, message))

    if not isinstance(doc, dict):
        raise Invalid("a pipeline definition is a JSON object with 'name', 'nodes' and "
                      "'edges'")
    size = len(json.dumps(doc, default=str))
    if size > MAX_BYTES:
        raise Invalid(f"the pipeline definition is {size} bytes as JSON; at most {MAX_BYTES} "
                      "(keep large code in files and read them from a step)")
    for path, problem in _numbers_kept_badly(doc):
        bad(path, problem)
    known = {"name", "description", "parameters", "nodes", "edges", "version"}
    for key in doc:
        if key not in known:
            bad(key, f"unknown key; a definition has {', '.join(sorted(known - {'version'}))}")
    name = doc.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        bad("name", f"{name!r} is not a pipeline name: 1-63 lower-case letters, digits or '-'")
    description = doc.get("description", "")
    if not isinstance(description, str):
        bad("description", "expected a string")
        description = ""
    elif len(description) > MAX_DESCRIPTION:
        bad("description", f"{len(description)} characters; at most {MAX_DESCRIPTION}")
    if isinstance(doc.get("parameters"), dict) and len(doc["parameters"]) > MAX_PARAMETERS:
        bad("parameters", f"{len(doc['parameters'])} parameters; at most {MAX_PARAMETERS}")
    if isinstance(doc.get("edges"), list) and len(doc["edges"]) > MAX_EDGES:
        bad("edges", f"{len(doc['edges'])} edges; a pipeline has at most {MAX_EDGES}")
    parameters = _parameters(doc.get("parameters", {}), bad)
    nodes = _nodes(doc.get("nodes"), parameters, bad)
    edges = _edges(doc.get("edges", []), nodes, bad)
    if not problems:
        cycle = _cycle(nodes, edges)
        if cycle:
            bad("edges", "the pipeline has a cycle: " + " -> ".join(cycle))
    if problems:
        lines = [f"{path}: {message}" for path, message in problems]
        head = (f"pipeline {name!r}" if isinstance(name, str) else "the pipeline") + (
            " has a problem" if len(lines) == 1 else f" has {len(lines)} problems")
        raise Invalid(f"{head}: " + "; ".join(lines[:10]) + ("; ..." if len(lines) > 10 else ""),
                      details={"problems": [{"path": p, "message": m} for p, m in problems]})
    return {"name": name, "description": description, "parameters": parameters,
            "nodes": list(nodes.values()), "edges": edges}


def number_problem(value: Any) -> str | None:
    """Why a number cannot be kept in a definition or a run's parameters: an integer past 64
    bits (digests and stores take no more: it was a 500) or NaN or infinity (not JSON)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return f"{value} is past the 64-bit integers a pipeline keeps"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a number JSON holds"
    return None


def _numbers_kept_badly(doc: Any) -> Iterator[tuple[str, str]]:
    """Each number in the document that :func:`number_problem` refuses, with its path; walked
    without recursion, so a deep document is no RecursionError."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack += [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(f"{path}[{i}]", v) for i, v in enumerate(value)]
        elif (problem := number_problem(value)) is not None:
            yield path, problem


def _parameters(raw: Any, bad: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        bad("parameters", "expected an object: {NAME: {\"type\": ..., \"default\": ...}}")
        return {}
    out = {}
    for pname, spec in raw.items():
        path = f"parameters.{pname}"
        if not NODE_ID.match(str(pname)):
            bad(path, "a parameter's name is letters, digits, '_' or '-'")
            continue
        if not isinstance(spec, dict):
            spec = {"type": _type_of(spec), "default": spec}  # {"threshold": 0.8} for short
        kind = spec.get("type", "string")
        if kind not in PARAMETER_TYPES:
            bad(f"{path}.type", f"{kind!r}: expected one of {', '.join(PARAMETER_TYPES)}")
            continue
        entry: dict[str, Any] = {"type": kind}
        if "default" in spec:
            problem = Param(pname, kind).check(spec["default"])
            if problem:
                bad(f"{path}.default", problem)
            entry["default"] = spec["default"]
        if spec.get("description"):
            entry["description"] = str(spec["description"])
        out[str(pname)] = entry
    return out


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _nodes(raw: Any, parameters: dict[str, dict[str, Any]],
           bad: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        bad("nodes", "expected a list of at least one node")
        return {}
    if len(raw) > MAX_NODES:
        bad("nodes", f"{len(raw)} nodes; a pipeline has at most {MAX_NODES}")
        return {}
    nodes: dict[str, dict[str, Any]] = {}
    for i, node in enumerate(raw):
        path = f"nodes[{i}]"
        if not isinstance(node, dict):
            bad(path, "expected an object with 'id', 'component' and 'params'")
            continue
        for key in node:
            if key not in ("id", "component", "params", "cache", "title", "position"):
                bad(f"{path}.{key}", "unknown key; a node has id, component, params, cache, "
                    "title and position")
        node_id = node.get("id")
        if not isinstance(node_id, str) or not NODE_ID.match(node_id):
            bad(f"{path}.id", f"{node_id!r} is not a node id: a letter or '_', then letters, "
                "digits, '_' or '-'")
            continue
        path = f"nodes[{i}] ({node_id})"
        if node_id in nodes:
            bad(f"{path}.id", f"two nodes are called {node_id!r}")
            continue
        component = COMPONENTS.get(node.get("component"))  # type: ignore[arg-type]
        if component is None:
            bad(f"{path}.component", f"unknown component {node.get('component')!r}; "
                "'cumulo pipelines components' lists them")
            continue
        params = node.get("params", {})
        if not isinstance(params, dict):
            bad(f"{path}.params", "expected an object of the component's parameters")
            continue
        checked = _params(component, params, parameters, f"{path}.params", bad)
        entry: dict[str, Any] = {"id": node_id, "component": component.name,
                                 "params": checked}
        cache = node.get("cache", True)
        if not isinstance(cache, bool):
            bad(f"{path}.cache", "expected true or false")
        entry["cache"] = bool(cache)
        if node.get("title"):
            entry["title"] = str(node["title"])
        position = node.get("position")
        if position is not None:
            if not (isinstance(position, dict) and all(
                    isinstance(position.get(k), int | float) for k in ("x", "y"))):
                bad(f"{path}.position", "expected {\"x\": number, \"y\": number}")
            else:
                entry["position"] = {"x": position["x"], "y": position["y"]}
        nodes[node_id] = entry
    return nodes


def _params(component: Component, params: dict[str, Any],
            parameters: dict[str, dict[str, Any]], path: str, bad: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        spec = component.param(key)
        if spec is None:
            names = ", ".join(p.name for p in component.params)
            bad(f"{path}.{key}", f"{component.name} has no parameter {key!r}; it has {names}")
            continue
        if isinstance(value, dict) and set(value) == {"$param"}:
            ref = value["$param"]
            if ref not in parameters:
                bad(f"{path}.{key}", f"no pipeline parameter {ref!r}; declare it under "
                    "'parameters'")
            elif not _fits(parameters[ref]["type"], spec.type):
                bad(f"{path}.{key}", f"pipeline parameter {ref!r} is a "
                    f"{parameters[ref]['type']}; {key} needs {spec.type}")
            out[key] = {"$param": ref}
            continue
        if value is None and not spec.required:
            continue
        problem = spec.check(value)
        if problem:
            bad(f"{path}.{key}", problem)
        out[key] = value
    for spec in component.params:
        if spec.name not in out:
            if spec.required:
                bad(f"{path}.{spec.name}", f"{component.name} needs parameter "
                    f"{spec.name!r} ({spec.description})")
            elif spec.default is not None:
                out[spec.name] = spec.default
    if component.name == "import_data" and "source" in out and not isinstance(
            out["source"], dict):
        need = {"files": "path", "url": "url", "table": "table"}.get(out["source"])
        if need and need not in out:
            bad(f"{path}.{need}", f"source {out['source']} needs parameter {need!r}")
    if component.param("environment") is not None:
        _environment_params(component, out, path, bad)
    if component.name == "notebook":
        _notebook_params(out, path, bad)
    if component.name == "python_script":
        for side in ("inputs", "outputs"):
            declared = out.get(side) or {}
            if isinstance(declared, dict):
                for port, kind in declared.items():
                    if not NODE_ID.match(str(port)) or port == AFTER:
                        bad(f"{path}.{side}.{port}", "a port's name is letters, digits, '_' "
                            f"or '-', and not {AFTER!r}")
                    if kind not in PORT_TYPES or kind == "signal":
                        bad(f"{path}.{side}.{port}", f"{kind!r}: expected one of table, "
                            "model, metrics, endpoint")
        code = out.get("code")
        if isinstance(code, str):
            try:
                compile(code, f"<{path}.code>", "exec")
            except SyntaxError as exc:
                bad(f"{path}.code", f"not valid Python: {exc.msg} (line {exc.lineno})")
    return out


def _notebook_params(params: dict[str, Any], path: str, bad: Any) -> None:
    """A Notebook step names a .ipynb: a stored file (BUCKET/PATH), or a file of its code
    snapshot; and a memory limit that is a size."""
    notebook, code = params.get("notebook"), params.get("snapshot")
    if isinstance(notebook, str) and not notebook.endswith(".ipynb"):
        bad(f"{path}.notebook", f"{notebook!r} is not a notebook: a .ipynb file")
    elif isinstance(notebook, str) and code is None and "/" not in notebook.strip("/"):
        bad(f"{path}.notebook", f"{notebook!r}: a stored notebook is BUCKET/PATH.ipynb (or "
            "give 'snapshot', the code snapshot holding it)")
    if isinstance(code, str) and not re.fullmatch(r"[0-9a-f]{64}", code):
        bad(f"{path}.snapshot", "a code snapshot is named by its SHA-256: 64 hex digits")
    memory = params.get("memory")
    if isinstance(memory, str):
        from cumulo.units import parse_size

        try:
            parse_size(memory, what="memory")
        except Invalid as exc:
            bad(f"{path}.memory", exc.message)


def requirements_text(value: Any) -> str:
    """A step's ``requirements`` parameter (a list, or a requirements file's text) as text."""
    return "".join(f"{line}\n" for line in value) if isinstance(value, list) else str(value)


def _environment_params(component: Component, params: dict[str, Any], path: str,
                        bad: Any) -> None:
    """A step's own environment: its requirements must parse (each bad line named), and it
    has them or a named environment, not both. That the environment exists is checked where
    the pipeline is stored and run (:func:`cumulo.pipelines.service.check_environments`)."""
    from cumulo.compute.environments.spec import parse_requirements

    requirements = params.get("requirements")
    environment = params.get("environment")
    if requirements and environment:
        bad(f"{path}.environment", "give requirements or a named environment, not both")
    spec = component.param("requirements")
    if requirements and spec is not None and spec.check(requirements) is None:
        try:
            parse_requirements(requirements_text(requirements), source="requirements")
        except Invalid as exc:
            bad(f"{path}.requirements", exc.message)
    if isinstance(environment, str) and environment in ("pyproject", "server", "model"):
        bad(f"{path}.environment", f"{environment!r} is not a named environment: a step "
            "has no code folder or model of its own; give an environment's name ('cumulo "
            "envs ls'), or requirements")


def _fits(parameter_type: str, param_type: str) -> bool:
    return parameter_type == param_type or (parameter_type == "integer"
                                            and param_type == "number")


def _edges(raw: Any, nodes: dict[str, dict[str, Any]], bad: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list):
        bad("edges", "expected a list of {\"from\": \"NODE.OUTPUT\", \"to\": \"NODE.INPUT\"}")
        return []
    out: list[dict[str, str]] = []
    fed: dict[tuple[str, str], str] = {}
    for i, edge in enumerate(raw):
        path = f"edges[{i}]"
        if not isinstance(edge, dict) or not isinstance(edge.get("from"), str) or \
                not isinstance(edge.get("to"), str):
            bad(path, "expected {\"from\": \"NODE.OUTPUT\", \"to\": \"NODE.INPUT\"}")
            continue
        ends = []
        for side in ("from", "to"):
            node_id, _, port = edge[side].rpartition(".")
            node = nodes.get(node_id)
            if node is None:
                port_word = "OUTPUT" if side == "from" else "INPUT"
                bad(f"{path}.{side}", f"no node {node_id or edge[side]!r}" + (
                    "" if node_id else f"; write {side} as NODE.{port_word}"))
                break
            inputs, outputs = ports(node)
            found = next((p for p in (outputs if side == "from" else inputs)
                          if p.name == port), None)
            if found is None:
                have = ", ".join(p.name for p in (outputs if side == "from" else inputs))
                bad(f"{path}.{side}", f"node {node_id!r} ({node['component']}) has no "
                    f"{'output' if side == 'from' else 'input'} {port!r}; it has {have}")
                break
            ends.append((node_id, found))
        if len(ends) != 2:
            continue
        (src, out_port), (dst, in_port) = ends
        if out_port.type != in_port.type:
            bad(path, f"{edge['from']} is a {out_port.type} and {edge['to']} takes a "
                f"{in_port.type}: an edge joins ports of the same type")
            continue
        if src == dst:
            bad(path, f"the pipeline has a cycle: {src} -> {src}")
            continue
        key = (dst, in_port.name)
        if in_port.name != AFTER and key in fed:
            bad(path, f"{edge['to']} already takes {fed[key]}; an input takes one edge")
            continue
        fed[key] = edge["from"]
        out.append({"from": edge["from"], "to": edge["to"]})
    for node_id, node in nodes.items():
        inputs, _ = ports(node)
        for port in inputs:
            if not port.optional and (node_id, port.name) not in fed:
                bad(f"node {node_id}", f"input {port.name!r} ({port.type}) is not connected; "
                    f"add an edge to {node_id}.{port.name}")
    return out


def _cycle(nodes: dict[str, dict[str, Any]], edges: list[dict[str, str]]) -> list[str]:
    """A cycle's nodes, first one repeated at the end; empty if there is none."""
    after: dict[str, list[str]] = {n: [] for n in nodes}
    for edge in edges:
        after[edge["from"].rpartition(".")[0]].append(edge["to"].rpartition(".")[0])
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in after[node]:
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = walk(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in nodes:
        if node not in state:
            found = walk(node)
            if found:
                return found
    return []


def order(definition: dict[str, Any]) -> list[str]:
    """The nodes' ids in an order where each comes after every node it takes input from."""
    ids = [n["id"] for n in definition["nodes"]]
    before: dict[str, set[str]] = {n: set() for n in ids}
    for edge in definition["edges"]:
        before[edge["to"].rpartition(".")[0]].add(edge["from"].rpartition(".")[0])
    done: list[str] = []
    left = list(ids)
    while left:
        ready = [n for n in left if before[n] <= set(done)]
        if not ready:  # pragma: no cover - check() refuses cycles
            raise Invalid("the pipeline has a cycle")
        done.extend(ready)
        left = [n for n in left if n not in ready]
    return done


def schema() -> dict[str, Any]:
    """The JSON Schema of a definition, published at /api/v1/pipelines/schema. Per-component
    parameters are checked by :func:`check`, which also names the components' ports."""
    value_ref = {"type": "object", "properties": {"$param": {"type": "string"}},
                 "required": ["$param"], "additionalProperties": False}
    node_variants = []
    for component in COMPONENTS.values():
        props: dict[str, Any] = {}
        for p in component.params:
            props[p.name] = {"anyOf": [_param_schema(p), value_ref],
                             "description": p.description}
        node_variants.append({
            "type": "object", "title": component.title,
            "properties": {
                "id": {"type": "string", "pattern": NODE_ID.pattern},
                "component": {"const": component.name},
                "params": {"type": "object", "properties": props,
                           "required": [p.name for p in component.params if p.required],
                           "additionalProperties": False},
                "cache": {"type": "boolean", "default": True},
                "title": {"type": "string"},
                "position": {"type": "object", "properties": {
                    "x": {"type": "number"}, "y": {"type": "number"}}}},
            "required": ["id", "component"], "additionalProperties": False})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "/api/v1/pipelines/schema", "title": "Cumulo pipeline definition",
        "type": "object", "required": ["name", "nodes"], "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": NAME.pattern},
            "description": {"type": "string"},
            "version": {"type": "integer", "description": "set by Cumulo; ignored on input"},
            "parameters": {"type": "object", "additionalProperties": {
                "type": "object", "properties": {
                    "type": {"enum": list(PARAMETER_TYPES)}, "default": {},
                    "description": {"type": "string"}}}},
            "nodes": {"type": "array", "minItems": 1, "maxItems": MAX_NODES,
                      "items": {"oneOf": node_variants}},
            "edges": {"type": "array", "items": {
                "type": "object", "required": ["from", "to"], "additionalProperties": False,
                "properties": {"from": {"type": "string", "pattern": r"^[^.]+\.[^.]+$",
                                        "description": "NODE.OUTPUT"},
                               "to": {"type": "string", "pattern": r"^[^.]+\.[^.]+$",
                                      "description": "NODE.INPUT"}}}}},
        "x-port-types": list(PORT_TYPES),
    }


def _param_schema(p: Param) -> dict[str, Any]:
    kinds: dict[str, dict[str, Any]] = {
        "string": {"type": "string"}, "integer": {"type": "integer"},
        "number": {"type": "number"}, "boolean": {"type": "boolean"},
        "string_list": {"type": "array", "items": {"type": "string"}},
        "object": {"type": "object"},
        "requirements": {"oneOf": [{"type": "string"},
                                   {"type": "array", "items": {"type": "string"}}]}}
    out = dict(kinds[p.type])
    if p.choices is not None:
        out = {**out, "enum": list(p.choices)}
    if p.minimum is not None:
        out = {**out, "minimum": p.minimum}
    if p.maximum is not None:
        out = {**out, "maximum": p.maximum}
    if p.default is not None:
        out = {**out, "default": p.default}
    return out
