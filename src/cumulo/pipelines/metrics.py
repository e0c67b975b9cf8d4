"""Pipelines' Prometheus metrics (:mod:`cumulo.metrics`): runs by pipeline and final state,
counted by the orchestrator as each run ends."""

from __future__ import annotations

from cumulo.metrics import counter

__all__ = ["observe_run"]

_RUNS = counter("cumulo_pipeline_runs", "pipeline runs that ended, by pipeline and final state",
                ("pipeline", "state"))


def observe_run(*, pipeline: str, state: str) -> None:
    _RUNS.labels(pipeline, state).inc()
