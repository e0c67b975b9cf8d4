"""The running services: built once when the server starts, read by the routes.

``server/app.py`` makes one :class:`Services` as the server starts (its lifespan), keeps it on
the app, and stops and closes what it started when the server stops. A route asks for it with
``services(request)``, or as a parameter: ``running: Running``.

Core imports no service, so the fields name the services' types for the type checker only
(``TYPE_CHECKING``); scripts/check_layers.py allows exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends
from starlette.requests import Request

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from cumulo.access.tokens import TokenCache
    from cumulo.access.trail import Trail
    from cumulo.compute.supervisor import Supervisor
    from cumulo.config import Settings
    from cumulo.dr.schedules import BackupScheduler
    from cumulo.leases import Membership
    from cumulo.metering.watch import CostWatch
    from cumulo.ml.tracking import TrackingServer
    from cumulo.pipelines.runs import Orchestrator
    from cumulo.serving.forward import Forwarder
    from cumulo.serving.manager import EndpointManager
    from cumulo.serving.monitors.scheduler import MonitorScheduler
    from cumulo.storage.backends import Backend
    from cumulo.streams.delivery import Deliveries
    from cumulo.streams.scoring import Scorers
    from cumulo.streams.service import StreamEngine

__all__ = ["Running", "Services", "services"]


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]  # one session per request: cumulo.db.get_session
    storage: Backend
    tokens: TokenCache  # who a token belongs to, checked against the database once a second
    compute: Supervisor  # clusters and jobs
    tracking: TrackingServer  # MLflow's tracking server, started on first use
    endpoints: EndpointManager  # serving: replicas, autoscaling, rollouts
    pipelines: Orchestrator  # pipeline runs and schedules
    mlflow_http: httpx.AsyncClient  # to the tracking server, for /mlflow
    endpoints_forward: Forwarder  # to replicas, for /endpoints/NAME/invocations: kept-alive
    trail: Trail  # refusals and changes, on their way to the audit log
    backups: BackupScheduler  # backup schedules, and backups run now
    plane: Membership  # this control plane's row and lease among those sharing the database
    streams: StreamEngine  # streams' shard logs (cumulo.streams)
    deliveries: Deliveries  # streams delivered into lake tables (Firehose's)
    scorers: Scorers  # streams scored through endpoints as records come
    # storage samples, SQL metering, budgets, anomalies, alerts' webhooks (cumulo.metering)
    costs: CostWatch | None = None
    monitors: MonitorScheduler | None = None  # model monitors' schedules and runs' jobs


def services(request: Request) -> Services:
    """The server's running services (a FastAPI dependency, or a plain call)."""
    found: Services = request.app.state.services
    return found


Running = Annotated[Services, Depends(services)]
