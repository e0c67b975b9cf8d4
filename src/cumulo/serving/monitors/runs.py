"""One run of a monitor: the captured requests of its window read back into features, compared
with the baseline, written as rows of the report table, and an alert raised past the
thresholds.

A run covers the requests captured since the last run's end (or in its ``--window``), up to
``SETTLE`` seconds before it starts. It claims its window first (the monitor's ``watermark``
moved on by a compare-and-set), so that two runs at once (a scheduled one on another control
plane, one run by hand) never cover the same requests; a run that fails gives its window back
to the next one.

The reading and the comparing (a gigabyte of memory for a million captured requests) happen
in a job of the cluster, not in the control plane: :func:`start_run` claims the window and
submits the job (:mod:`cumulo.serving.monitors.job`) as the monitor's creator, so that what
they may not read, and what their masks and row filters hide, stays out of it; the job writes
the figures among its outputs, and :func:`finish_runs`, called when jobs end, records them:
the run, the report table's rows, the alert. The job is metered like any other (tagged
``monitor:NAME``).

The report table (``monitoring.NAME_reports``) holds one row per feature per run, plus one
for the predictions (``feature`` = ``(prediction)``) and, with labels, one for the model's
quality (``(labels)``): see ``_report_schema``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cumulo.db import utcnow
from cumulo.errors import Conflict, CumuloError, NotFound
from cumulo.principal import Principal
from cumulo.serving.monitors import stats
from cumulo.serving.monitors.captured import KEY, PREDICTION
from cumulo.serving.monitors.models import Monitor, MonitorRun
from cumulo.serving.monitors.service import THRESHOLDS
from cumulo.storage.backends import Backend

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["FIGURES", "JOB_COMMAND", "LABELS_ROW", "OUTPUT", "PREDICTION_ROW", "SETTLE",
           "Compared", "breaches", "compare", "finish_runs", "quality", "start_run", "window"]

log = logging.getLogger("cumulo.serving")

# A run covers requests captured up to this many seconds before it starts: replicas report
# what they captured every half second and the capture writer appends it every 2 s
# (cumulo.serving.capture), so by then it is in the table; what comes later is the next run's.
SETTLE = 5.0
PREDICTION_ROW = "(prediction)"
LABELS_ROW = "(labels)"
JOB_COMMAND = ["python", "-m", "cumulo.serving.monitors.job"]
OUTPUT = "monitor.json"  # what a run's job writes among its outputs: its figures, or its error
FIGURES = ("psi", "ks", "missing_rate", "out_of_range_rate", "unseen_rate", "accuracy", "mae",
           "rmse")


def _report_schema() -> pa.Schema:
    import pyarrow as pa

    stamp = pa.timestamp("us", tz="UTC")
    return pa.schema([
        ("run_id", pa.int64()), ("monitor", pa.string()), ("endpoint", pa.string()),
        ("run_at", stamp), ("window_start", stamp), ("window_end", stamp),
        ("feature", pa.string()), ("kind", pa.string()), ("rows", pa.int64()),
        *((name, pa.float64()) for name in FIGURES),
        ("breached", pa.string())])


# --- comparing -----------------------------------------------------------------------------------

def _figures(kind: str, baseline: pa.Array | None, profile: dict[str, Any] | None,
             current: pa.Array) -> dict[str, Any]:
    """One column's figures against the baseline's values (or a stored profile)."""
    present, missing = stats.split_missing(current)
    if kind == "numeric":
        import numpy as np

        # Sorted once: the deciles are read off it, and KS needs it sorted.
        base = np.sort(stats.split_missing(baseline)[0]) if baseline is not None else None
        if profile is None:
            assert base is not None
            profile = stats.numeric_profile(base, presorted=True)
        return stats.compare_numeric(profile, present, missing, baseline=base, presorted=True)
    if profile is None:
        assert baseline is not None
        profile = stats.categorical_profile(stats.split_missing(baseline)[0])
    return stats.compare_categorical(profile, present, missing)


def _numeric_text(values: pa.Array) -> pa.Array | None:
    """Prediction texts as numbers, if they all are."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


class Compared(Protocol):
    """What :func:`compare` needs of a monitor (a Monitor row, or the job's copy of it)."""

    @property
    def features(self) -> list[dict[str, Any]]: ...

    @property
    def prediction_column(self) -> str | None: ...

    @property
    def reference(self) -> dict[str, Any] | None: ...


def compare(monitor: Compared, baseline: pa.Table, current: pa.Table,
            labels: pa.Table | None = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Every feature's figures, the predictions' and (with ``labels``: KEY and the label)
    the model's quality; and the predictions' profile when this window sets the reference
    (the baseline has no predictions and none was set)."""
    import pyarrow as pa

    figures = [{"feature": f["name"], "kind": f["kind"],
                **_figures(f["kind"], baseline.column(f["name"]), None,
                           current.column(f["name"]))} for f in monitor.features]
    predictions = current.column(PREDICTION).combine_chunks()
    numeric = _numeric_text(predictions)
    reference = None
    if monitor.prediction_column is not None:
        column = baseline.column(monitor.prediction_column)
        kind = "numeric" if stats.is_numeric(column.type) else "categorical"
        values = numeric if kind == "numeric" else predictions
        if values is None:
            values = pa.array([None] * len(predictions), pa.float64())
        figures.append({"feature": PREDICTION_ROW, "kind": kind,
                        **_figures(kind, column, None, values)})
    elif len(predictions):
        kind = "numeric" if numeric is not None else "categorical"
        values = numeric if numeric is not None else predictions
        profile = monitor.reference
        if profile is None or profile["kind"] != kind:
            present = stats.split_missing(values)[0]
            profile = reference = (stats.numeric_profile(present) if kind == "numeric"
                                   else stats.categorical_profile(present))
        figures.append({"feature": PREDICTION_ROW, "kind": kind,
                        **_figures(kind, None, profile, values)})
    if labels is not None:
        figures.append({"feature": LABELS_ROW, "kind": "labels",
                        **quality(current.select([KEY, PREDICTION]), labels)})
    for figure in figures:  # every figure named in each, None where it does not apply
        for name in FIGURES:
            figure.setdefault(name, None)
    return figures, reference


def quality(scored: pa.Table, labels: pa.Table) -> dict[str, Any]:
    """Accuracy (a label that is not a float: classes) or MAE and RMSE (float labels) of the
    predictions whose key has a label. ``labels``: KEY and ``label``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    regression = pa.types.is_floating(labels.schema.field("label").type)
    labels = labels.set_column(0, KEY, pc.cast(labels.column(KEY), pa.string()))
    joined = scored.filter(pc.is_valid(scored.column(KEY))).join(labels, KEY,
                                                                 join_type="inner")
    out: dict[str, Any] = {"rows": joined.num_rows, "psi": None, "ks": None,
                           "missing_rate": None, "out_of_range_rate": None, "unseen_rate": None,
                           "accuracy": None, "mae": None, "rmse": None, "histogram": None}
    if not joined.num_rows:
        return out
    predicted = _numeric_text(joined.column(PREDICTION).combine_chunks())
    truth = joined.column("label").combine_chunks()
    if regression:
        if predicted is None:
            return out
        error = (predicted.to_numpy(zero_copy_only=False)
                 - truth.cast(pa.float64()).to_numpy(zero_copy_only=False))
        error = error[~np.isnan(error)]
        if len(error):
            out["mae"] = float(np.abs(error).mean())
            out["rmse"] = float(np.sqrt((error ** 2).mean()))
        return out
    truth_numbers = _numeric_text(truth.cast(pa.string())) if not pa.types.is_boolean(
        truth.type) else None
    if predicted is not None and truth_numbers is not None:
        same = pc.equal(predicted, truth_numbers)
    else:
        same = pc.equal(joined.column(PREDICTION).combine_chunks(), truth.cast(pa.string()))
    out["accuracy"] = float(pc.mean(pc.cast(pc.fill_null(same, False), pa.float64())).as_py())
    return out


def breaches(figures: list[dict[str, Any]], thresholds: dict[str, float]) -> list[str]:
    """What is past its threshold, as ``feature: psi 0.31 > 0.2``; each figure's
    ``breached`` lists its threshold names."""
    found = []
    for figure in figures:
        figure["breached"] = []
        for name, limit in thresholds.items():
            key, side = THRESHOLDS[name]
            value = figure.get(key)
            if value is None:
                continue
            if (side == "max" and value > limit) or (side == "min" and value < limit):
                figure["breached"].append(name)
                found.append(f"{figure['feature']}: {name} {value:.4g} "
                             f"{'>' if side == 'max' else '<'} {limit:g}")
    return found


# --- running -------------------------------------------------------------------------------------

def window(monitor: Monitor, now: datetime) -> tuple[datetime | None, datetime]:
    """The captured requests a run at ``now`` covers: (start, end]. It ends ``SETTLE`` seconds
    before ``now``, so that what was captured before its end is in the table already."""
    end = now - timedelta(seconds=SETTLE)
    if monitor.window_s is not None:
        return end - timedelta(seconds=monitor.window_s), end
    start = monitor.watermark
    return start, max(end, start) if start is not None else end


def _claim(session: Session, monitor: Monitor, trigger: str, now: datetime,
           owner: str | None) -> MonitorRun:
    """The run, with its window claimed: Conflict if another run moved the watermark first."""
    start, end = window(monitor, now)
    claimed = session.execute(update(Monitor).where(
        Monitor.id == monitor.id,
        Monitor.watermark.is_not_distinct_from(monitor.watermark),
    ).values(watermark=end)).rowcount  # type: ignore[attr-defined]
    if not claimed:
        session.rollback()
        raise Conflict(f"monitor {monitor.name!r} is running already; try again when it is done")
    run = MonitorRun(monitor_id=monitor.id, trigger=trigger, state="running", owner=owner,
                     started_at=now,
                     window_start=start, window_end=end, rows=0, figures=[], breaches=[])
    session.add(run)
    session.commit()
    return run


def start_run(session: Session, storage: Backend, monitor: Monitor, *, trigger: str,
              now: datetime | None = None, owner: str | None = None) -> MonitorRun:
    """Start a run of ``monitor`` over the captured requests since its last run (or its
    window), up to ``SETTLE`` seconds before ``now``: its window claimed and its job
    submitted (``running``, with ``job_id``), or the run ended already (succeeded: nothing
    was captured yet; failed: ``message`` says why, and the window is given back)."""
    now = now or utcnow()
    run = _claim(session, monitor, trigger, now, owner)
    try:
        _submit(session, storage, monitor, run)
    except Exception as exc:
        _failed(session, monitor, run, exc)
    return run


def _submit(session: Session, storage: Backend, monitor: Monitor, run: MonitorRun) -> None:
    from cumulo.access import projects
    from cumulo.access.users import acting_as
    from cumulo.compute.jobs import JobRequest, submit_job
    from cumulo.lake.catalog import table_info
    from cumulo.lake.refs import parse_ref
    from cumulo.serving.endpoints import get_endpoint

    # As the monitor's creator: what they may not read, the job may not either, and what
    # their masks and row filters hide stays hidden (the job's inputs read through the lake).
    reader = acting_as(session, monitor.created_by, what=f"monitor {monitor.name}")
    endpoint = get_endpoint(session, monitor.endpoint)
    if endpoint.capture_table is None:
        raise Conflict(f"endpoint {monitor.endpoint!r} no longer captures requests")
    if table_info(session, storage, parse_ref(endpoint.capture_table)).version is None:
        _succeeded_empty(session, monitor, run)  # nothing was ever captured: no job to run
        return
    inputs = {"baseline": monitor.baseline, "captured": endpoint.capture_table}
    if monitor.labels_table:
        inputs["labels"] = monitor.labels_table
    spec = {"run": run.id, "monitor": monitor.name, "features": monitor.features,
            "prediction_column": monitor.prediction_column, "reference": monitor.reference,
            "label_key": monitor.label_key, "label_column": monitor.label_column,
            "window_start": run.window_start.isoformat() if run.window_start else None,
            "window_end": run.window_end.isoformat()}
    job = submit_job(session, storage, reader, JobRequest(
        command=list(JOB_COMMAND), name=f"monitor {monitor.name}", inputs=inputs,
        env={"MONITOR_RUN": json.dumps(spec)}, cpus=1,
        tags=["monitor", f"monitor:{monitor.name}", f"monitor-run:{run.id}"],
        project=projects.name_of(session, monitor.project_id)))
    run.job_id = job.id
    session.commit()


def _succeeded_empty(session: Session, monitor: Monitor, run: MonitorRun) -> None:
    run.state, run.finished_at = "succeeded", utcnow()
    run.message = "no answered requests were captured in the window"
    monitor.message = None
    session.commit()


def _failed(session: Session, monitor: Monitor, run: MonitorRun, exc: Exception | str) -> None:
    """End the run as failed, saying why; its window goes back to the next run, unless
    another one has moved on since."""
    session.rollback()
    if isinstance(exc, str):
        why = exc
    else:
        why = exc.message if isinstance(exc, CumuloError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, CumuloError):
            log.error("monitor %s: run %s failed", monitor.name, run.id, exc_info=exc)
    run.state, run.message, run.finished_at = "failed", why, utcnow()
    monitor.message = f"run {run.id} failed: {why}"
    session.execute(update(Monitor).where(Monitor.id == monitor.id,
                                          Monitor.watermark == run.window_end)
                    .values(watermark=run.window_start, message=monitor.message))
    try:
        session.commit()
    except Exception:  # the monitor (and so its runs) was removed meanwhile
        session.rollback()
        log.warning("monitor %s: run %s failed (%s); the monitor is gone", monitor.name,
                    run.id, why)


# --- recording -----------------------------------------------------------------------------------

def finish_runs(session: Session, storage: Backend, *, run_id: int | None = None,
                owner: str | None = None) -> list[int]:
    """Record the runs whose job has ended (only ``run_id``, if given): their figures, report
    rows and alert, or why they failed. Each is recorded once, by whichever control plane
    (``owner``) claims it first (``running`` -> ``recording``); the ids of those recorded
    here."""
    from cumulo.compute.models import ACTIVE, Job

    query = (select(MonitorRun.id, Job.state).join(Job, Job.id == MonitorRun.job_id,
                                                   isouter=True)
             .where(MonitorRun.state == "running", MonitorRun.job_id.is_not(None)))
    if run_id is not None:
        query = query.where(MonitorRun.id == run_id)
    done = []
    for found, job_state in session.execute(query).all():
        if job_state in ACTIVE:
            continue
        claimed = session.execute(update(MonitorRun).where(
            MonitorRun.id == found, MonitorRun.state == "running",
        ).values(state="recording", owner=owner)).rowcount  # type: ignore[attr-defined]
        session.commit()
        if claimed:
            _record(session, storage, found)
            done.append(found)
    return done


def _record(session: Session, storage: Backend, run_id: int) -> None:
    from cumulo.compute.jobs import find_job

    run = session.get(MonitorRun, run_id)
    monitor = session.get(Monitor, run.monitor_id) if run is not None else None
    if run is None or monitor is None:
        return  # removed with its monitor meanwhile
    job = find_job(session, run.job_id) if run.job_id else None
    out = _output(storage, run.job_id) if run.job_id else None
    try:
        if job is None:
            raise Conflict(f"its job {run.job_id} is gone")
        if job.state != "succeeded" or out is None or "error" in out:
            raise Conflict(_job_failure(job, out))
        _recorded(session, storage, monitor, run, out)
    except Exception as exc:
        _failed(session, monitor, run, exc)


def _output(storage: Backend, job_id: str) -> dict[str, Any] | None:
    """What a run's job wrote (``monitor.json`` among its outputs), if it did."""
    try:
        with storage.open(f"jobs/{job_id}/outputs/{OUTPUT}") as f:
            out: dict[str, Any] = json.loads(f.read())
            return out
    except (OSError, ValueError, NotFound):
        return None


def _job_failure(job: Any, out: dict[str, Any] | None) -> str:
    if out is not None and "error" in out:
        return str(out["error"])
    if job.state == "cancelled":
        return f"its job {job.id} was cancelled"
    if job.state == "succeeded":
        return f"its job {job.id} succeeded but left no figures ({OUTPUT} among its outputs)"
    last = (job.log_tail or "").strip().splitlines()
    tail = f": {last[-1][:300]}" if last else ""
    return f"its job {job.id} {job.state} ({job.reason or 'no reason given'}){tail}"


def _recorded(session: Session, storage: Backend, monitor: Monitor, run: MonitorRun,
              out: dict[str, Any]) -> None:
    """The job's figures recorded: the run, the report table's rows, the alert."""
    from cumulo.access.users import acting_as

    run.rows = int(out["rows"])
    if not run.rows:
        _succeeded_empty(session, monitor, run)
        return
    figures: list[dict[str, Any]] = out["figures"]
    found = breaches(figures, monitor.thresholds)
    reader = acting_as(session, monitor.created_by, what=f"monitor {monitor.name}")
    run.report_version = _write_report(session, storage, monitor, run, figures, reader)
    run.figures, run.breaches = figures, found
    run.state, run.finished_at = "succeeded", utcnow()
    if out.get("reference") is not None:
        monitor.reference = out["reference"]
    monitor.message = None
    if found:
        _alert(session, monitor, run, found)
    session.commit()


def _write_report(session: Session, storage: Backend, monitor: Monitor, run: MonitorRun,
                  figures: list[dict[str, Any]], reader: Principal) -> int:
    """Append the run's rows to the report table (made on first use); its new version."""
    import pyarrow as pa

    from cumulo.lake import catalog, delta
    from cumulo.lake.refs import parse_ref

    schema = _report_schema()
    rows = [{"run_id": run.id, "monitor": monitor.name, "endpoint": monitor.endpoint,
             "run_at": run.started_at, "window_start": run.window_start,
             "window_end": run.window_end, "feature": f["feature"], "kind": f["kind"],
             "rows": f["rows"], **{name: f.get(name) for name in FIGURES},
             "breached": ",".join(f["breached"]) or None} for f in figures]
    data = pa.Table.from_pylist(rows, schema=schema)
    ref = parse_ref(monitor.report_table)
    table = catalog.ensure_managed_table(session, reader, ref)
    written = delta.write(catalog.location(storage, table), data.to_reader(), mode="append",
                          user=reader.user_name, name=ref.name)
    table.updated_at = utcnow()
    return int(written.version)


def _alert(session: Session, monitor: Monitor, run: MonitorRun, found: list[str]) -> None:
    """One alert per run past its thresholds: the console's banner, 'cumulo status', and the
    monitor's webhook."""
    from cumulo.metering.alerts import notify

    shown = "; ".join(found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
    notify(session, source="monitors", subject=monitor.name, severity="warning",
           message=f"monitor {monitor.name} (endpoint {monitor.endpoint}), run {run.id}: "
                   f"{shown}",
           details={"monitor": monitor.name, "endpoint": monitor.endpoint, "run": run.id,
                    "breaches": found, "report_table": monitor.report_table},
           webhook=monitor.webhook)
