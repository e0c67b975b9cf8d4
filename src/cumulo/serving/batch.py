"""Batch predictions: score a whole table with a registered model, as a job; write a table.

What SageMaker batch transform and Azure batch endpoints do. ``cumulo endpoints batch --model
churn:3 --table sales.orders@v5 --output sales.scored`` submits ``python -m
cumulo.serving.batch --model churn --version 3 --output sales.scored`` with the table, pinned
to a version, as the job's input ``data``. The job reads the table in batches of rows, calls
the model on each (the columns of its signature, checked by MLflow), and writes the table's
columns plus the predictions to a file, then loads that file into the output table as one
commit: a job that fails part way writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _fail(message: str) -> None:
    print(f"cumulo batch predictions: {message}", file=sys.stderr)
    raise SystemExit(2)


def _prediction_columns(predicted: Any, rows: int, name: str) -> dict[str, Any]:
    """The model's answer for a batch as output columns: one column ``name``, or one per
    column of a frame it returns (``name_COLUMN``)."""
    import numpy as np

    if hasattr(predicted, "columns") and hasattr(predicted, "to_dict"):  # a DataFrame
        return {f"{name}_{c}": predicted[c].to_numpy() for c in predicted.columns}
    values = np.asarray(predicted)
    if values.ndim == 2 and values.shape[1] > 1:  # class probabilities, say
        return {name: list(values)}
    values = values.reshape(rows) if values.size == rows else values
    if len(values) != rows:
        raise ValueError(f"the model returned {len(values)} predictions for {rows} rows")
    return {name: values}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cumulo.serving.batch")
    parser.add_argument("--model", required=True, help="the registered model's name")
    parser.add_argument("--version", required=True, help="its version")
    parser.add_argument("--output", required=True, help="DB.TABLE to write")
    parser.add_argument("--mode", default="overwrite", choices=("overwrite", "append"))
    parser.add_argument("--prediction-column", default="prediction")
    parser.add_argument("--batch-rows", type=int, default=50_000)
    args = parser.parse_args(argv)
    started = time.perf_counter()

    def step(what: str) -> None:
        print(f"[{time.perf_counter() - started:6.2f}s] {what}", flush=True)

    import logging

    import mlflow.pyfunc
    import pyarrow as pa
    import pyarrow.parquet as pq

    import cumulo.job

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    job: Any = cumulo.job
    model = mlflow.pyfunc.load_model(f"models:/{args.model}/{args.version}")
    signature = model.metadata.signature
    wanted = signature.inputs.input_names() if signature is not None else None
    step(f"loaded model {args.model} version {args.version}")
    source = job.inputs["data"].path
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*.parquet"))
    out_path = Path(job.output_dir) / "predictions.parquet"
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        for file in files:
            for batch in pq.ParquetFile(file).iter_batches(batch_size=args.batch_rows):
                frame = batch.to_pandas()
                if args.prediction_column in frame.columns:
                    _fail(f"the table has a column {args.prediction_column!r} already; name the "
                          "predictions with --prediction-column")
                if wanted:
                    missing = [c for c in wanted if c not in frame.columns]
                    if missing:
                        _fail(f"the table lacks the model's input column(s) "
                              f"{', '.join(missing)}; its columns are "
                              f"{', '.join(map(str, frame.columns))}")
                try:
                    predicted = model.predict(frame[wanted] if wanted else frame)
                    columns = _prediction_columns(predicted, len(frame),
                                                  args.prediction_column)
                except Exception as exc:  # the model's own word, with the rows it was on
                    _fail(f"the model failed on rows {rows}-{rows + len(frame) - 1}: "
                          f"{type(exc).__name__}: {exc}")
                for name, values in columns.items():
                    frame[name] = values
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(out_path, table.schema)
                writer.write_table(table)
                rows += len(frame)
                step(f"scored {rows} rows")
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        _fail("the table is empty: there is nothing to score")
    result = job._client().tables.load(args.output, out_path, mode=args.mode)
    step(f"wrote {rows} rows to {args.output} (version {result['version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
