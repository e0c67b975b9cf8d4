"""Monitors: creating them (every check made before anything is written), reading and
removing them.

A monitor belongs to its endpoint's project and reads as its creator: the baseline, the
endpoint's capture table and the labels (each needs ``tables:Read``). The baseline is pinned
to a version when the monitor is made (``sales.customers`` becomes ``sales.customers@v3``), so
that its reports stay comparable. The features compared are the endpoint's: its models'
signature inputs where they have one, else the baseline's columns (less the prediction and
label columns).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.cron import check_cron
from cumulo.db import utcnow
from cumulo.errors import Conflict, CumuloError, Invalid, NotFound
from cumulo.principal import Principal
from cumulo.serving.endpoints import get_endpoint
from cumulo.serving.monitors.models import Monitor, MonitorRun
from cumulo.serving.monitors.stats import is_numeric
from cumulo.storage.backends import Backend
from cumulo.units import parse_duration

if TYPE_CHECKING:
    import pyarrow as pa

    from cumulo.ml.registry import Registry

__all__ = ["DEFAULT_THRESHOLDS", "THRESHOLDS", "MonitorSpec", "create_monitor",
           "delete_monitor", "get_monitor", "list_monitors", "monitor_doc", "monitors_docs",
           "parse_thresholds", "run_doc"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# Each threshold: the figure it bounds, and whether an alert is raised above (max) or below.
THRESHOLDS: dict[str, tuple[str, str]] = {
    "psi": ("psi", "max"), "ks": ("ks", "max"), "missing": ("missing_rate", "max"),
    "out_of_range": ("out_of_range_rate", "max"), "unseen": ("unseen_rate", "max"),
    "accuracy": ("accuracy", "min"), "mae": ("mae", "max"), "rmse": ("rmse", "max")}
DEFAULT_THRESHOLDS = {"psi": 0.2}
DEFAULT_PREDICTION = "prediction"  # the baseline's column of predictions, if it has one
_NUMERIC_SIGNATURE = {"double", "float", "long", "integer"}


@dataclass
class MonitorSpec:
    """A monitor as asked for; every field is checked by :func:`create_monitor`."""

    name: str
    endpoint: str
    baseline: str  # DB.TABLE@vN (DB.TABLE: its current version, pinned now)
    schedule: str | None = None  # cron, UTC; None: run with 'cumulo monitors run' only
    window: float | str | None = None  # each run covers this much; None: since the last run
    thresholds: dict[str, float] | str | None = None  # psi=0.2,ks=0.1; None: psi=0.2
    labels: str | None = None  # DB.TABLE with the key and the true label
    key: str | None = None  # the column requests and labels share
    label_column: str | None = None  # default: the labels table's one column besides the key
    prediction_column: str | None = None  # the baseline's predictions; default "prediction"
    webhook: str | None = None  # alerts are POSTed here too


def parse_thresholds(value: dict[str, float] | str | None) -> dict[str, float]:
    """``psi=0.2,ks=0.1`` (or a mapping) checked: known names, numbers of 0 or more."""
    if value is None:
        return dict(DEFAULT_THRESHOLDS)
    pairs: list[tuple[str, Any]] = []
    if isinstance(value, str):
        for part in filter(None, (p.strip() for p in value.split(","))):
            name, eq, number = part.partition("=")
            if not eq:
                raise Invalid(f"--thresholds: {part!r} is not NAME=NUMBER (e.g. psi=0.2,ks=0.1)")
            pairs.append((name.strip(), number.strip()))
    else:
        pairs = list(value.items())
    out: dict[str, float] = {}
    for name, number in pairs:
        if name not in THRESHOLDS:
            raise Invalid(f"--thresholds: unknown threshold {name!r}; known: "
                          f"{', '.join(THRESHOLDS)}", details={"threshold": name})
        try:
            out[name] = float(number)
        except (TypeError, ValueError):
            raise Invalid(f"--thresholds: {name}={number!r} is not a number") from None
        if not math.isfinite(out[name]) or out[name] < 0:
            raise Invalid(f"--thresholds: {name} must be a number of 0 or more, not {number}")
    return out


# --- reading -------------------------------------------------------------------------------------

def get_monitor(session: Session, name: str) -> Monitor:
    monitor = session.scalar(select(Monitor).where(Monitor.name == name))
    if monitor is None:
        raise NotFound(f"no monitor {name!r}; 'cumulo monitors ls' lists them",
                       details={"monitor": name})
    return monitor


def list_monitors(session: Session, *, endpoint: str | None = None) -> list[Monitor]:
    query = select(Monitor).order_by(Monitor.name)
    if endpoint is not None:
        query = query.where(Monitor.endpoint == endpoint)
    return list(session.scalars(query))


def _last_runs(session: Session, ids: list[int]) -> dict[int, MonitorRun]:
    from sqlalchemy import func

    latest = (select(func.max(MonitorRun.id)).where(MonitorRun.monitor_id.in_(ids))
              .group_by(MonitorRun.monitor_id))
    return {r.monitor_id: r for r in session.scalars(
        select(MonitorRun).where(MonitorRun.id.in_(latest)))}


def monitor_doc(session: Session, monitor: Monitor,
                last: MonitorRun | None = None) -> dict[str, Any]:
    """A monitor as the API shows it, with its last run and next scheduled time."""
    from cumulo.access import projects

    if last is None:
        last = _last_runs(session, [monitor.id]).get(monitor.id)
    next_at = None
    if monitor.schedule:
        from datetime import datetime

        from croniter import croniter

        next_at = croniter(monitor.schedule, max(monitor.last_at, utcnow())).get_next(datetime)
    return {
        "name": monitor.name, "endpoint": monitor.endpoint, "baseline": monitor.baseline,
        "features": monitor.features, "prediction_column": monitor.prediction_column,
        "schedule": monitor.schedule, "window_s": monitor.window_s,
        "thresholds": monitor.thresholds, "labels": monitor.labels_table,
        "key": monitor.label_key, "label_column": monitor.label_column,
        "report_table": monitor.report_table, "webhook": monitor.webhook,
        "watermark": monitor.watermark, "next_at": next_at, "message": monitor.message,
        "project": projects.name_of(session, monitor.project_id),
        "last_run": run_doc(last, figures=False) if last is not None else None,
        "created_at": monitor.created_at,
    }


def monitors_docs(session: Session, monitors: list[Monitor]) -> list[dict[str, Any]]:
    last = _last_runs(session, [m.id for m in monitors])
    return [monitor_doc(session, m, last.get(m.id)) for m in monitors]


def run_doc(run: MonitorRun, *, figures: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": run.id, "trigger": run.trigger, "state": run.state, "job": run.job_id,
        "started_at": run.started_at,
        "finished_at": run.finished_at, "window_start": run.window_start,
        "window_end": run.window_end, "rows": run.rows, "report_version": run.report_version,
        "breaches": run.breaches, "message": run.message}
    if figures:
        doc["figures"] = run.figures
    return doc


def delete_monitor(session: Session, name: str) -> None:
    """Remove a monitor and its runs; its report table stays (drop it with 'cumulo tables
    drop')."""
    from cumulo.compute.jobs import cancel_job

    monitor = get_monitor(session, name)
    jobs = session.scalars(select(MonitorRun.job_id).where(
        MonitorRun.monitor_id == monitor.id, MonitorRun.state == "running",
        MonitorRun.job_id.is_not(None))).all()
    session.delete(monitor)
    session.commit()
    for job_id in jobs:  # its runs' jobs still computing: their figures have nowhere to go
        with contextlib.suppress(Conflict, NotFound):
            assert job_id is not None
            cancel_job(session, Principal(0, "cumulo", True, 0), job_id)


# --- creating ------------------------------------------------------------------------------------

def create_monitor(session: Session, storage: Backend, caller: Principal, spec: MonitorSpec, *,
                   registry: Callable[[], Registry] | None = None) -> Monitor:
    """Make a monitor, or refuse it naming what is wrong; nothing is written when a check
    fails."""
    from cumulo.lake.refs import parse_ref

    if not _NAME.match(spec.name):
        raise Invalid(f"monitor name {spec.name!r}: 1-63 of a-z, 0-9 and '-', starting with a "
                      "letter or digit", details={"monitor": spec.name})
    if session.scalar(select(Monitor.id).where(Monitor.name == spec.name)) is not None:
        raise Conflict(f"monitor {spec.name!r} exists already", details={"monitor": spec.name})
    if spec.schedule is not None:
        try:
            check_cron(spec.schedule)
        except Invalid as exc:
            raise Invalid(f"--schedule: {exc.message}") from None
    window = (parse_duration(spec.window, what="--window") if spec.window is not None
              else None)
    thresholds = parse_thresholds(spec.thresholds)
    webhook = _webhook(spec.webhook)
    endpoint = get_endpoint(session, spec.endpoint)  # NotFound names it
    caller.require("endpoints:Read", f"endpoint/{endpoint.name}")
    if endpoint.capture_table is None:
        raise Invalid(f"endpoint {endpoint.name!r} captures no requests to compare: turn "
                      f"data capture on with 'cumulo endpoints update {endpoint.name} "
                      "--capture-percent 10'")
    ref = parse_ref(spec.baseline)
    if ref.as_of is not None:
        raise Invalid(f"--baseline {spec.baseline!r}: name a version (DB.TABLE@vN), not a "
                      "time")
    caller.require("tables:Read", f"table/{ref.database}/{ref.table}")
    version, schema = _table_schema(session, storage, ref)
    baseline = f"{ref.name}@v{version}"
    prediction: str | None = spec.prediction_column or DEFAULT_PREDICTION
    if prediction not in schema.names:
        if spec.prediction_column is not None:
            raise Invalid(f"--prediction-column {prediction!r} is not a column of {baseline}; "
                          f"its columns: {', '.join(schema.names)}")
        prediction = None  # compared with the first window's predictions instead
    labels, key, label_column = _check_labels(session, storage, caller, spec)
    features = _features(endpoint.variants, schema, baseline, registry,
                         leave_out={prediction, key, label_column} - {None})
    report = _report_table(session, caller, spec.name, endpoint.project_id)
    monitor = Monitor(
        name=spec.name, endpoint=endpoint.name, baseline=baseline, features=features,
        prediction_column=prediction, schedule=spec.schedule, window_s=window,
        thresholds=thresholds, labels_table=labels, label_key=key, label_column=label_column,
        report_table=report, webhook=webhook, last_at=utcnow(), created_by=caller.user_id,
        project_id=endpoint.project_id)
    session.add(monitor)
    session.commit()
    return monitor


def _webhook(url: str | None) -> str | None:
    from cumulo.metering.alerts import check_webhook

    return check_webhook(url, option="--webhook")


def _table_schema(session: Session, storage: Backend, ref: Any) -> tuple[int, pa.Schema]:
    """A table version's number and columns; NotFound when the table or version is not
    there."""
    import pyarrow as pa

    from cumulo.lake import catalog, delta

    row = catalog.get_table(session, ref)
    table = delta.open_table(catalog.location(storage, row), version=ref.version,
                             name=str(ref))
    return int(table.version()), pa.schema(table.schema().to_arrow())


def _check_labels(session: Session, storage: Backend, caller: Principal,
                  spec: MonitorSpec) -> tuple[str | None, str | None, str | None]:
    """The labels table, its key and its label column, checked."""
    from cumulo.lake.refs import parse_ref

    if spec.labels is None:
        if spec.key is not None or spec.label_column is not None:
            raise Invalid("--key and --label-column go with --labels TABLE")
        return None, None, None
    if spec.key is None:
        raise Invalid("--labels needs --key: the column that requests and labels share")
    ref = parse_ref(spec.labels)
    if ref.version is not None or ref.as_of is not None:
        raise Invalid(f"--labels {spec.labels!r}: name a table, not a version (labels keep "
                      "coming)")
    caller.require("tables:Read", f"table/{ref.database}/{ref.table}")
    _, schema = _table_schema(session, storage, ref)
    if spec.key not in schema.names:
        raise Invalid(f"--key {spec.key!r} is not a column of {ref.name}; its columns: "
                      f"{', '.join(schema.names)}")
    others = [n for n in schema.names if n != spec.key]
    column = spec.label_column
    if column is None:
        if len(others) != 1:
            raise Invalid(f"--labels {ref.name} has {len(others)} columns besides the key "
                          f"({', '.join(others)}): name the true label's with --label-column")
        column = others[0]
    elif column not in others:
        raise Invalid(f"--label-column {column!r} is not a column of {ref.name} (besides the "
                      f"key); its columns: {', '.join(schema.names)}")
    return ref.name, spec.key, column


def _features(variants: list[dict[str, Any]], schema: pa.Schema, baseline: str,
              registry: Callable[[], Registry] | None,
              leave_out: set[str | None]) -> list[dict[str, Any]]:
    """The features compared: the endpoint's models' inputs, each a column of the baseline of
    a matching type (numeric for a numeric input); without signatures, the baseline's columns."""
    inputs = _signature_inputs(variants, registry)
    if inputs is None:
        names = [n for n in schema.names if n not in leave_out]
        if not names:
            raise Invalid(f"--baseline {baseline} has no columns to compare")
        return [{"name": n, "kind": "numeric" if is_numeric(schema.field(n).type)
                 else "categorical"} for n in names]
    missing = [n for n in inputs if n not in schema.names]
    if missing:
        raise Invalid(f"--baseline {baseline} does not match endpoint's features: it lacks "
                      f"{', '.join(missing)} (the models take {', '.join(inputs)}; the "
                      f"baseline has {', '.join(schema.names)})",
                      details={"missing": missing})
    features = []
    for name, kind in inputs.items():
        numeric = is_numeric(schema.field(name).type)
        if kind in _NUMERIC_SIGNATURE and not numeric:
            raise Invalid(f"--baseline {baseline} does not match the endpoint's features: "
                          f"{name} is {kind} for the model but {schema.field(name).type} in "
                          "the baseline")
        features.append({"name": name, "kind": "numeric" if numeric else "categorical"})
    return features


def _signature_inputs(variants: list[dict[str, Any]],
                      registry: Callable[[], Registry] | None) -> dict[str, str] | None:
    """The inputs (name: MLflow type) the endpoint's models take, by their signatures; None
    when none of them has a column signature (or they cannot be read)."""
    if registry is None:
        return None
    found: dict[str, str] = {}
    for variant in variants:
        with contextlib.suppress(CumuloError, OSError, ValueError, KeyError, TypeError):
            for column in model_inputs(registry(), variant["model"], str(variant["version"])):
                found.setdefault(column["name"], column.get("type", "string"))
    return found or None


def model_inputs(registry: Registry, model: str, version: str) -> list[dict[str, Any]]:
    """A model version's signature inputs, from its MLmodel file (read over MLflow's artifact
    API, the way its own client does); [] without a column signature."""
    import json
    from urllib.parse import quote, urlsplit

    import yaml

    got = registry.mlflow.request("GET", "api/2.0/mlflow/model-versions/get-download-uri",
                                  params={"name": model, "version": version})
    uri = got.json()["artifact_uri"]
    path = urlsplit(uri).path.strip("/")
    answer = registry.mlflow.request(
        "GET", f"api/2.0/mlflow-artifacts/artifacts/{quote(path)}/MLmodel")
    if answer.status_code >= 400:
        return []
    signature = (yaml.safe_load(answer.text) or {}).get("signature") or {}
    inputs = json.loads(signature.get("inputs") or "[]")
    return [c for c in inputs if isinstance(c, dict) and "name" in c]


def _report_table(session: Session, caller: Principal, name: str,
                  project_id: int | None) -> str:
    """The report table's name: ``monitoring.NAME_reports`` (``monitoring_PROJECT`` for a
    project's endpoint), its database made on first use."""
    from cumulo.access import projects
    from cumulo.lake import catalog

    project = projects.name_of(session, project_id)
    database = "monitoring" if project is None else f"monitoring_{project.replace('-', '_')}"
    with contextlib.suppress(Conflict):
        try:
            catalog.get_database(session, database)
        except NotFound:
            catalog.create_database(session, caller, database,
                                    description="model monitors' reports", project=project)
    return f"{database}.{name.replace('-', '_')}_reports"


def window_of(monitor: Monitor) -> timedelta | None:
    return timedelta(seconds=monitor.window_s) if monitor.window_s is not None else None
