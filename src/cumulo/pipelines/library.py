"""The component library as Python functions, for ``@pipeline`` functions (see
:mod:`cumulo.pipelines.dsl`; each component's parameters are in
:mod:`cumulo.pipelines.components`, and ``cumulo pipelines components`` lists them)."""

from __future__ import annotations

from cumulo.pipelines.components import COMPONENTS
from cumulo.pipelines.dsl import component_function

__all__ = ["clean_missing_data", "condition", "deploy_to_endpoint", "evaluate_model",
           "import_data", "join", "normalize", "notebook", "python_script", "register_model",
           "score_model", "select_columns", "split_data", "sql_transform", "train_model",
           "tune_hyperparameters"]

import_data = component_function(COMPONENTS["import_data"])
sql_transform = component_function(COMPONENTS["sql_transform"])
select_columns = component_function(COMPONENTS["select_columns"])
clean_missing_data = component_function(COMPONENTS["clean_missing_data"])
normalize = component_function(COMPONENTS["normalize"])
split_data = component_function(COMPONENTS["split_data"])
join = component_function(COMPONENTS["join"])
train_model = component_function(COMPONENTS["train_model"])
tune_hyperparameters = component_function(COMPONENTS["tune_hyperparameters"])
score_model = component_function(COMPONENTS["score_model"])
evaluate_model = component_function(COMPONENTS["evaluate_model"])
register_model = component_function(COMPONENTS["register_model"])
deploy_to_endpoint = component_function(COMPONENTS["deploy_to_endpoint"])
condition = component_function(COMPONENTS["condition"])
python_script = component_function(COMPONENTS["python_script"])
notebook = component_function(COMPONENTS["notebook"])
