"""A monitor run's job: ``python -m cumulo.serving.monitors.job``.

The control plane (:func:`cumulo.serving.monitors.runs.start_run`) claims the run's window and
submits this job as the monitor's creator, with the run in its environment (``MONITOR_RUN``:
the monitor's features, its predictions' reference, the label columns, the window) and its
tables as inputs pinned at their versions: ``baseline``, ``captured`` (the endpoint's capture
table) and, with labels, ``labels``. The job reads the window's captured requests back into
features, compares them with the baseline, and writes the figures to ``monitor.json`` among
its outputs: ``{"rows", "figures", "reference"}``, or ``{"error"}`` saying why it could not.
The control plane records them (the run, the report table, the alert) when the job ends.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["main"]

CAPTURED = ["status", "content_type", "request", "request_encoding", "response"]


@dataclass(frozen=True)
class _Monitor:
    """The monitor as the run's spec gives it (what :func:`runs.compare` reads)."""

    features: list[dict[str, Any]]
    prediction_column: str | None
    reference: dict[str, Any] | None


def _say(started: float, what: str) -> None:
    print(f"[{time.perf_counter() - started:6.2f}s] {what}", flush=True)


def compute(spec: dict[str, Any], inputs: Any, say: Any = print) -> dict[str, Any]:
    """The run's figures from its inputs (``cumulo.job.inputs``, or a mapping like it)."""
    import pyarrow.dataset as ds

    from cumulo.serving.monitors.captured import KEY, decode
    from cumulo.serving.monitors.runs import compare

    monitor = _Monitor(spec["features"], spec["prediction_column"], spec["reference"])
    columns = [f["name"] for f in monitor.features]
    if monitor.prediction_column is not None:
        columns.append(monitor.prediction_column)
    baseline = inputs["baseline"].arrow(columns)
    say(f"read {baseline.num_rows} rows of the baseline")
    where = ds.field("captured_at") <= datetime.fromisoformat(spec["window_end"])
    if spec["window_start"] is not None:
        where = where & (ds.field("captured_at") > datetime.fromisoformat(spec["window_start"]))
    captured = inputs["captured"].arrow(["captured_at", *CAPTURED], where)
    say(f"read {captured.num_rows} captured requests of the window")
    current = decode(captured, monitor.features, spec["label_key"]) if captured.num_rows \
        else None
    if current is None or not current.num_rows:
        return {"rows": 0, "figures": [], "reference": None}
    say(f"{current.num_rows} answered rows to compare")
    labels = None
    if "labels" in inputs:
        key, column = spec["label_key"], spec["label_column"]
        labels = inputs["labels"].arrow([key, column])
        labels = labels.rename_columns([KEY if n == key else "label"
                                        for n in labels.column_names]).select([KEY, "label"])
    figures, reference = compare(monitor, baseline, current, labels)
    say(f"compared {len(figures)} features")
    return {"rows": current.num_rows, "figures": figures, "reference": reference}


def main() -> int:
    import cumulo.job
    from cumulo.errors import CumuloError
    from cumulo.serving.monitors.runs import OUTPUT

    job: Any = cumulo.job
    started = time.perf_counter()
    spec = json.loads(os.environ["MONITOR_RUN"])
    out = job.output_dir / OUTPUT
    _say(started, f"monitor {spec['monitor']}, run {spec['run']}: window "
                  f"({spec['window_start'] or 'the start'}, {spec['window_end']}]")
    try:
        result = compute(spec, job.inputs, lambda what: _say(started, what))
    except Exception as exc:
        why = exc.message if isinstance(exc, CumuloError) else f"{type(exc).__name__}: {exc}"
        out.write_text(json.dumps({"error": why}))
        print(f"monitor run failed: {why}", file=sys.stderr, flush=True)
        if not isinstance(exc, CumuloError):
            raise
        return 2
    out.write_text(json.dumps(result))
    _say(started, f"wrote the figures of {result['rows']} rows to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
