"""Pipelines (SageMaker Pipelines, the Azure ML designer): steps as jobs, in a DAG, defined in
Python (:mod:`cumulo.pipelines.dsl`) or as a JSON document (:mod:`cumulo.pipelines.definition`)
of components (:mod:`cumulo.pipelines.components`)."""

from cumulo.pipelines.dsl import Pipeline, pipeline, step

__all__ = ["Pipeline", "pipeline", "step"]
