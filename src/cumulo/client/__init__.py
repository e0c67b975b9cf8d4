"""The Python SDK: ``cumulo.Client()`` and one sub-client per service."""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING, Any

from cumulo.client.transport import Transport
from cumulo.config import load_client_settings

if TYPE_CHECKING:
    from cumulo.access.audit_sdk import AuditClient
    from cumulo.access.iam_sdk import Access, Groups, Policies, Projects, Roles, Users
    from cumulo.access.sdk import KeysClient, TokensClient
    from cumulo.compute.environments.sdk import EnvsClient
    from cumulo.compute.sdk import ClustersClient, JobsClient
    from cumulo.dr.sdk import BackupsClient
    from cumulo.lake.sdk import SqlClient, TablesClient
    from cumulo.metering.sdk import AlertsClient, BudgetsClient, CostsClient
    from cumulo.ml.sdk import ModelsClient
    from cumulo.notebooks.sdk import NotebooksClient
    from cumulo.pipelines.sdk import PipelinesClient
    from cumulo.serving.monitors.sdk import MonitorsClient
    from cumulo.serving.sdk import EndpointsClient
    from cumulo.storage.sdk import FilesClient
    from cumulo.streams.sdk import StreamsClient

__all__ = ["Client"]


class Client:
    """A connection to a Cumulo server.

    URL and token come from the arguments, else ``CUMULO_URL`` and ``CUMULO_TOKEN``, else a
    login saved by ``cumulo login`` (or by the first ``cumulo up``): the ``profile`` named here
    (which wins over ``CUMULO_URL`` and ``CUMULO_TOKEN``) or by ``CUMULO_PROFILE``, else the
    current one.

    >>> client = Client()                       # doctest: +SKIP
    >>> prod = Client(profile="prod")           # doctest: +SKIP
    >>> client.files.upload("sales.csv", "data/raw/sales.csv")  # doctest: +SKIP
    """

    def __init__(self, url: str | None = None, *, token: str | None = None,
                 profile: str | None = None, timeout: float = 60.0,
                 project: str | None = None) -> None:
        settings = load_client_settings(url, token, profile=profile)
        self.url = settings.url
        self.profile = settings.profile  # the saved login in use, if the token is one
        # The project this client works in, said on every request (X-Cumulo-Project): MLflow's
        # experiments and models, SQL and costs are used in it (CUMULO_PROJECT by default; a
        # job's is its own project). What is made or listed still names its project itself.
        self.project = project or os.environ.get("CUMULO_PROJECT") or None
        self.transport = Transport(settings.url, settings.token, token_source=settings.source,
                                   timeout=timeout, project=self.project)

    # Each service's sub-client is imported on first use; this list is the SDK's whole surface.
    @cached_property
    def files(self) -> FilesClient:
        from cumulo.storage.sdk import FilesClient

        return FilesClient(self.transport)

    @cached_property
    def tokens(self) -> TokensClient:
        from cumulo.access.sdk import TokensClient

        return TokensClient(self.transport)

    @cached_property
    def keys(self) -> KeysClient:
        """S3 access keys: ``create()``, ``list()``, ``revoke(id)``."""
        from cumulo.access.sdk import KeysClient

        return KeysClient(self.transport)

    @cached_property
    def streams(self) -> StreamsClient:
        """Kinesis-style streams: ``create``, ``put``, ``get``, ``tail``, ``show``."""
        from cumulo.streams.sdk import StreamsClient

        return StreamsClient(self.transport)

    @cached_property
    def audit(self) -> AuditClient:
        """The audit log: ``list(user=, action=, since=)``, ``verify()``."""
        from cumulo.access.audit_sdk import AuditClient

        return AuditClient(self.transport)

    @cached_property
    def users(self) -> Users:
        from cumulo.access.iam_sdk import Users

        return Users(self.transport)

    @cached_property
    def groups(self) -> Groups:
        from cumulo.access.iam_sdk import Groups

        return Groups(self.transport)

    @cached_property
    def roles(self) -> Roles:
        from cumulo.access.iam_sdk import Roles

        return Roles(self.transport)

    @cached_property
    def policies(self) -> Policies:
        from cumulo.access.iam_sdk import Policies

        return Policies(self.transport)

    @cached_property
    def access(self) -> Access:
        from cumulo.access.iam_sdk import Access

        return Access(self.transport)

    @cached_property
    def projects(self) -> Projects:
        from cumulo.access.iam_sdk import Projects

        return Projects(self.transport)

    @cached_property
    def tables(self) -> TablesClient:
        from cumulo.lake.sdk import TablesClient

        return TablesClient(self.transport)

    @cached_property
    def sql(self) -> SqlClient:
        from cumulo.lake.sdk import SqlClient

        return SqlClient(self.transport)

    @cached_property
    def clusters(self) -> ClustersClient:
        from cumulo.compute.sdk import ClustersClient

        return ClustersClient(self.transport)

    @cached_property
    def envs(self) -> EnvsClient:
        from cumulo.compute.environments.sdk import EnvsClient

        return EnvsClient(self.transport)

    @cached_property
    def backups(self) -> BackupsClient:
        from cumulo.dr.sdk import BackupsClient

        return BackupsClient(self.transport)

    @cached_property
    def jobs(self) -> JobsClient:
        from cumulo.compute.sdk import JobsClient

        return JobsClient(self.transport)

    @cached_property
    def costs(self) -> CostsClient:
        from cumulo.metering.sdk import CostsClient

        return CostsClient(self.transport)

    @cached_property
    def budgets(self) -> BudgetsClient:
        """Budgets: ``create``, ``list``, ``show``, ``update``, ``delete``, ``check``."""
        from cumulo.metering.sdk import BudgetsClient

        return BudgetsClient(self.transport)

    @cached_property
    def alerts(self) -> AlertsClient:
        """Alerts (budgets, anomalies, monitors): ``list``, ``dismiss``."""
        from cumulo.metering.sdk import AlertsClient

        return AlertsClient(self.transport)

    @cached_property
    def models(self) -> ModelsClient:
        from cumulo.ml.sdk import ModelsClient

        return ModelsClient(self.transport)

    @cached_property
    def endpoints(self) -> EndpointsClient:
        from cumulo.serving.sdk import EndpointsClient

        return EndpointsClient(self.transport)

    @cached_property
    def monitors(self) -> MonitorsClient:
        """Model monitors of endpoints: ``create``, ``run``, ``reports``."""
        from cumulo.serving.monitors.sdk import MonitorsClient

        return MonitorsClient(self.transport)

    @cached_property
    def notebooks(self) -> NotebooksClient:
        """JupyterLab servers run as jobs: ``create``, ``list``, ``get``, ``stop``, ``start``,
        ``delete``, ``share``, ``url``."""
        from cumulo.notebooks.sdk import NotebooksClient

        return NotebooksClient(self.transport)

    @cached_property
    def pipelines(self) -> PipelinesClient:
        from cumulo.pipelines.sdk import PipelinesClient

        return PipelinesClient(self.transport)

    def train(self, *, table: str, target: str, name: str, **options: Any) -> Any:
        """Built-in training (no code): ``table`` and ``target`` in, model ``name`` out.
        Runs as a job; returns it. Options: algorithm, features, hyperparameters,
        validation_split, seed, cluster, cpus, memory."""
        from cumulo.ml.sdk import train

        return train(self, table=table, target=target, name=name, **options)

    def estimator(self, *, entry_point: str, code: str, **options: Any) -> Any:
        """Script-mode training, shaped like the SageMaker SDK's Estimator:
        ``client.estimator(entry_point="train.py", code="./src", hyperparameters={...},
        name="churn").fit(inputs={"train": "sales.orders@v3"})``. Options: name (the model),
        hyperparameters, cluster, cpus, memory, gpus, retries, max_runtime, env, tags."""
        from cumulo.ml.estimator import Estimator

        return Estimator(self, entry_point=entry_point, code=code, **options)

    def transformer(self, *, model: str, **options: Any) -> Any:
        """Batch predictions, shaped like the SageMaker SDK's Transformer:
        ``client.transformer(model="churn:3").transform("sales.orders@v5",
        output="sales.scored")`` scores the table as a job. ``model``: ``NAME:VERSION``,
        ``NAME@ALIAS`` or ``NAME``. Options: prediction_column, cluster, cpus, memory, env."""
        from cumulo.serving.sdk import Transformer

        return Transformer(self.transport, model, **options)

    def tune(self, *, objective: str, search_space: dict[str, Any], **options: Any) -> Any:
        """Hyperparameter tuning on Optuna, trials as jobs; see :func:`cumulo.ml.sdk.tune`."""
        from cumulo.ml.sdk import tune

        return tune(self, objective=objective, search_space=search_space, **options)

    def status(self) -> dict[str, Any]:
        """Version, database, storage, and what they hold."""
        return self.transport.json("GET", "/api/v1/status")  # type: ignore[no-any-return]

    def whoami(self) -> dict[str, Any]:
        """Who the token belongs to: ``user``, ``is_admin``, ``token_id``."""
        return self.transport.json("GET", "/api/v1/me")  # type: ignore[no-any-return]

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"
