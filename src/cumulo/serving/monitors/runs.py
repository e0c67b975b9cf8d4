"""One run of a monitor: the captured requests of its window read back into features, compared
with the baseline, written as rows of the report table, and an alert raised past the
thresholds.

A run covers the requests captured since the last run's end (or in its ``--window``), up to
``SETTLE`` seconds before it starts. It claims its window first (the monitor's ``watermark``
moved on by a compare-and-set), so that two runs at once (a scheduled one on another control
plane, one run by hand) never cover the same requests; a run that fails gives its window back
to the next one. It reads as the monitor's creator, so what their table masks and row filters
hide stays hidden.

The report table (``monitoring.NAME_reports``) holds one row per feature per run, plus one
for the predictions (``feature`` = ``(prediction)``) and, with labels, one for the model's
quality (``(labels)``): see ``_report_schema``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from cumulo.db import utcnow
from cumulo.errors import Conflict, CumuloError, NotFound
from cumulo.principal import Principal
from cumulo.serving.monitors import stats
from cumulo.serving.monitors.captured import KEY, PREDICTION, decode
from cumulo.serving.monitors.models import Monitor, MonitorRun
from cumulo.serving.monitors.service import THRESHOLDS
from cumulo.storage.backends import Backend

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["FIGURES", "LABELS_ROW", "PREDICTION_ROW", "SETTLE", "breaches", "compare", "quality",
           "run_monitor", "window"]

log = logging.getLogger("cumulo.serving")

# A run covers requests captured up to this many seconds before it starts: replicas report
# what they captured every half second and the capture writer appends it every 2 s
# (cumulo.serving.capture), so by then it is in the table; what comes later is the next run's.
SETTLE = 5.0
PREDICTION_ROW = "(prediction)"
LABELS_ROW = "(labels)"
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


# --- reading -------------------------------------------------------------------------------------

def _read(session: Session, storage: Backend, reader: Principal, ref: Any,
          columns: list[str] | None = None, where: Any = None) -> pa.Table:
    """A table (at the ref's version) as ``reader`` may see it: their masks and row filters
    applied, as the read route does."""
    import pyarrow as pa

    from cumulo.lake import access, catalog, delta, sql

    reader.require("tables:Read", f"table/{ref.database}/{ref.table}")
    row = catalog.get_table(session, ref)
    table = delta.open_table(catalog.location(storage, row), version=ref.version, name=str(ref))
    dataset = table.to_pyarrow_dataset()
    names = [c for c in (columns or dataset.schema.names) if c in dataset.schema.names]
    rules = access.rules_for(session, reader.user_id, [row.id]).get(row.id)
    if not rules:
        return dataset.to_table(columns=names, filter=where)
    rules = sql.with_current(storage, row, table, rules)
    data = pa.Table.from_batches(list(access.read_restricted(dataset, rules, names)))
    return data.filter(where) if where is not None else data


def _captured(session: Session, storage: Backend, reader: Principal, table: str,
              start: datetime | None, end: datetime) -> pa.Table:
    """The endpoint's captured requests of the window (start, end]; none if nothing was
    captured yet."""
    import pyarrow.dataset as ds

    from cumulo.lake.refs import parse_ref

    where = ds.field("captured_at") <= end
    if start is not None:
        where = where & (ds.field("captured_at") > start)
    columns = ["status", "content_type", "request", "request_encoding", "response"]
    try:
        return _read(session, storage, reader, parse_ref(table), columns, where)
    except NotFound as exc:
        if "has no data yet" not in exc.message:
            raise
        import pyarrow as pa

        return pa.table({c: pa.array([], pa.string()) for c in columns})  # no rows to read


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


def compare(monitor: Monitor, baseline: pa.Table, current: pa.Table,
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


def run_monitor(session: Session, storage: Backend, monitor: Monitor, *, trigger: str,
                now: datetime | None = None, owner: str | None = None) -> MonitorRun:
    """Run ``monitor`` over the captured requests since its last run (or its window), up to
    ``SETTLE`` seconds before ``now``; the run, succeeded or failed (``message`` says why)."""
    now = now or utcnow()
    previous = monitor.watermark
    run = _claim(session, monitor, trigger, now, owner)
    try:
        _compute(session, storage, monitor, run)
    except Exception as exc:
        session.rollback()
        why = exc.message if isinstance(exc, CumuloError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, CumuloError):
            log.exception("monitor %s: run %s failed", monitor.name, run.id)
        run.state, run.message, run.finished_at = "failed", why, utcnow()
        monitor.message = f"run {run.id} failed: {why}"
        # The window goes back to the next run, unless another one has moved on since.
        session.execute(update(Monitor).where(Monitor.id == monitor.id,
                                              Monitor.watermark == run.window_end)
                        .values(watermark=previous, message=monitor.message))
        try:
            session.commit()
        except Exception:  # the monitor (and so its runs) was removed while it ran
            session.rollback()
            log.warning("monitor %s: run %s failed (%s); the monitor is gone", monitor.name,
                        run.id, why)
    return run


def _compute(session: Session, storage: Backend, monitor: Monitor, run: MonitorRun) -> None:
    from cumulo.access.users import acting_as
    from cumulo.lake.refs import parse_ref

    reader = acting_as(session, monitor.created_by, what=f"monitor {monitor.name}")
    baseline_ref = parse_ref(monitor.baseline)
    columns = [f["name"] for f in monitor.features]
    if monitor.prediction_column is not None:
        columns.append(monitor.prediction_column)
    baseline = _read(session, storage, reader, baseline_ref, columns)
    from cumulo.serving.endpoints import get_endpoint

    endpoint = get_endpoint(session, monitor.endpoint)
    if endpoint.capture_table is None:
        raise Conflict(f"endpoint {monitor.endpoint!r} no longer captures requests")
    captured = _captured(session, storage, reader, endpoint.capture_table, run.window_start,
                         run.window_end)
    current = decode(captured, monitor.features, monitor.label_key) if captured.num_rows \
        else None
    run.rows = current.num_rows if current is not None else 0
    if current is None or not current.num_rows:
        run.state, run.finished_at = "succeeded", utcnow()
        run.message = "no answered requests were captured in the window"
        monitor.message = None
        session.commit()
        return
    labels = _labels(session, storage, reader, monitor) if monitor.labels_table else None
    figures, reference = compare(monitor, baseline, current, labels)
    found = breaches(figures, monitor.thresholds)
    run.report_version = _write_report(session, storage, monitor, run, figures, reader)
    run.figures, run.breaches = figures, found
    run.state, run.finished_at = "succeeded", utcnow()
    if reference is not None:
        monitor.reference = reference
    monitor.message = None
    if found:
        _alert(session, monitor, run, found)
    session.commit()


def _labels(session: Session, storage: Backend, reader: Principal,
            monitor: Monitor) -> pa.Table:
    from cumulo.lake.refs import parse_ref

    assert monitor.labels_table and monitor.label_key and monitor.label_column
    table = _read(session, storage, reader, parse_ref(monitor.labels_table),
                  [monitor.label_key, monitor.label_column])
    return table.rename_columns([KEY if n == monitor.label_key else "label"
                                 for n in table.column_names]).select([KEY, "label"])


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
