"""MLflow's requests say the project they work in: an MLflow plugin (entry point
``mlflow.request_header_provider``) that adds ``X-Cumulo-Project`` from ``CUMULO_PROJECT``, which
a job in a project has set, so that rights given in the project hold for its tracking and
registry calls through Cumulo's MLflow (:mod:`cumulo.access.authz`)."""

from __future__ import annotations

import os

from mlflow.tracking.request_header.abstract_request_header_provider import (
    RequestHeaderProvider,
)

__all__ = ["ProjectHeader"]


class ProjectHeader(RequestHeaderProvider):
    def in_context(self) -> bool:
        return bool(os.environ.get("CUMULO_PROJECT"))

    def request_headers(self) -> dict[str, str]:
        return {"X-Cumulo-Project": os.environ["CUMULO_PROJECT"]}
