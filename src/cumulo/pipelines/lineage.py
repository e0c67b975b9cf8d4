"""Lineage: what each pipeline step read and wrote, and the questions asked of it.

When a step succeeds, the orchestrator records an edge for each table version, model,
endpoint or stored files it read or wrote (:func:`record`). :func:`trace` answers, for a
table (``sales.orders``, or one version ``sales.orders@v3``), a model (``churn:3``) or an
endpoint: which steps produced it, from what, back to the raw data (``produced_by``, a tree),
and which steps used it (``used_by``); for a model, also the endpoints serving it now.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.db import utcnow
from cumulo.errors import Invalid
from cumulo.pipelines.models import LineageEdge, StepRun

__all__ = ["parse_thing", "record", "trace"]

MAX_DEPTH = 12  # how far back produced_by goes


def _thing(kind: str, value: Any) -> tuple[str, str, str | None] | None:
    """(kind, name, version) of a value that flowed along an edge; None for metrics."""
    if kind == "table" and isinstance(value, str):
        name, _, version = value.partition("@v")
        return "table", name, version or None
    if kind == "model" and isinstance(value, str):
        if value.startswith("models:/") and value.count("/") == 2:
            name, version = value[len("models:/"):].split("/")
            return "model", name, version
        return "model", value.removeprefix("models:/"), None  # a logged model (m-...)
    if kind == "endpoint" and isinstance(value, str):
        return "endpoint", value, None
    return None


def record(session: Session, run_id: str, pipeline: str, step: StepRun,
           inputs: dict[str, str], outputs: dict[str, str],
           params: dict[str, Any]) -> None:
    """The edges of a step that succeeded. ``inputs`` and ``outputs`` map port -> type."""
    edges: list[tuple[str, tuple[str, str, str | None]]] = []
    for direction, types, values in (("read", inputs, step.inputs),
                                     ("write", outputs, step.outputs)):
        for port, kind in types.items():
            thing = _thing(kind, values.get(port))
            if thing is not None:
                edges.append((direction, thing))
    if step.component == "import_data":
        # A table source is read, not written: its output is that table's version.
        edges = [("read" if thing[0] == "table" and params.get("source") == "table"
                  else direction, thing) for direction, thing in edges]
        if params.get("source") == "files":
            edges.append(("read", ("files", params["path"], None)))
        elif params.get("source") == "url":
            edges.append(("read", ("url", params["url"][:1024], None)))
    now = utcnow()
    for direction, (kind, name, version) in edges:
        session.add(LineageEdge(run_id=run_id, pipeline=pipeline, node=step.node,
                                component=step.component, direction=direction, kind=kind,
                                name=name, version=version, at=now))


def parse_thing(kind: str, ref: str) -> tuple[str, str, str | None]:
    """``table sales.orders[@v3]``, ``model churn:3``, ``endpoint churn``."""
    if kind == "table":
        name, _, version = ref.partition("@v")
        if not name.count(".") == 1:
            raise Invalid(f"{ref!r}: name a table as DB.TABLE, or DB.TABLE@vN for a version")
        return "table", name, version or None
    if kind == "model":
        name, sep, version = ref.partition(":")
        if not sep or not version.isdigit():
            raise Invalid(f"{ref!r}: name a model version as NAME:VERSION, like churn:3")
        return "model", name, version
    if kind == "endpoint":
        return "endpoint", ref, None
    raise Invalid(f"lineage of a {kind!r}? Ask about a table, a model or an endpoint")


def _edges(session: Session, direction: str, kind: str, name: str,
           version: str | None) -> list[LineageEdge]:
    query = select(LineageEdge).where(LineageEdge.direction == direction,
                                      LineageEdge.kind == kind, LineageEdge.name == name)
    if version is not None:
        query = query.where(LineageEdge.version == version)
    return list(session.scalars(query.order_by(LineageEdge.at.desc(), LineageEdge.id.desc())
                                .limit(200)))


def _step(edge: LineageEdge) -> dict[str, Any]:
    return {"run": edge.run_id, "pipeline": edge.pipeline, "step": edge.node,
            "component": edge.component, "at": edge.at}


def _label(edge: LineageEdge) -> str:
    return f"{edge.name}@v{edge.version}" if edge.kind == "table" and edge.version else (
        f"{edge.name}:{edge.version}" if edge.kind == "model" and edge.version else edge.name)


def _producers(session: Session, kind: str, name: str, version: str | None,
               depth: int, seen: set[tuple[str, str]]) -> list[dict[str, Any]]:
    out = []
    for edge in _edges(session, "write", kind, name, version)[:20]:
        key = (edge.run_id, edge.node)
        if key in seen or depth >= MAX_DEPTH:
            continue
        seen.add(key)
        reads = session.scalars(select(LineageEdge).where(
            LineageEdge.run_id == edge.run_id, LineageEdge.node == edge.node,
            LineageEdge.direction == "read"))
        out.append({**_step(edge), "wrote": _label(edge), "read": [
            {"kind": r.kind, "name": _label(r),
             "produced_by": _producers(session, r.kind, r.name, r.version, depth + 1, seen)}
            for r in reads]})
        if version is None:
            break  # the latest producer of an unversioned name; older ones are history
    return out


def trace(session: Session, kind: str, name: str, version: str | None) -> dict[str, Any]:
    """What produced the thing (a tree, back to the raw data) and what used it."""
    used = []
    for edge in _edges(session, "read", kind, name, version):
        writes = session.scalars(select(LineageEdge).where(
            LineageEdge.run_id == edge.run_id, LineageEdge.node == edge.node,
            LineageEdge.direction == "write"))
        used.append({**_step(edge), "read": _label(edge),
                     "wrote": [{"kind": w.kind, "name": _label(w)} for w in writes]})
    out: dict[str, Any] = {
        "kind": kind, "name": name, "version": version,
        "produced_by": _producers(session, kind, name, version, 0, set()),
        "used_by": used}
    if kind == "model":
        from cumulo.serving.endpoints import endpoints_serving

        out["served_by"] = endpoints_serving(session, name, version)
    return out
