"""An endpoint replica's process: ``python -m cumulo.serving.worker --fd N --config FILE``.

The endpoint manager owns the endpoint's listening socket and hands it to every replica (the
pre-fork model of gunicorn and uvicorn's workers): all replicas accept from one queue, so a
replica that dies loses only the connections it had accepted, and while there are no replicas
the connections wait in the queue instead of being refused.

The replica loads every variant's MLflow model, says ``{"ready": ...}`` on stdout (or
``{"failed": traceback}`` and exits 1), then serves :class:`~cumulo.serving.replica.ReplicaApp`
on uvicorn. Every ``stats_interval`` seconds it writes one line of stats (requests in flight;
per variant, requests, errors and latency histograms: :mod:`cumulo.serving.stats`) for the
manager's autoscaler and metrics. Its stdout is the manager's pipe; its log goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["load_variant", "main"]


def load_variant(spec: dict[str, Any]) -> Any:
    """A :class:`Variant` from ``{"name", "model_dir", "weight", "shadow"}``: the MLflow model
    loaded, its signature read, its flavor's predict called directly (the columns are checked
    by the replica already, faster than MLflow's per-call schema enforcement)."""
    import mlflow.pyfunc

    from cumulo.serving.formats import schema_from_signature
    from cumulo.serving.replica import Variant

    model = mlflow.pyfunc.load_model(spec["model_dir"])
    signature = model.metadata.signature
    inputs = signature.inputs.to_dict() if signature is not None else None
    schema = schema_from_signature(inputs) if isinstance(inputs, list) else None
    impl = getattr(model, "_model_impl", None)
    predict = impl.predict if schema is not None and impl is not None and hasattr(
        impl, "predict") else model.predict
    return Variant(spec["name"], predict, schema, weight=float(spec.get("weight", 1.0)),
                   shadow=bool(spec.get("shadow", False)))


def _say(message: dict[str, Any]) -> None:
    os.write(1, json.dumps(message, default=str).encode() + b"\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cumulo.serving.worker")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket")
    parser.add_argument("--config", required=True, help="the endpoint's replica config (JSON)")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text())
    started = time.perf_counter()
    try:
        variants = [load_variant(v) for v in config["variants"]]
        from cumulo.serving.replica import ReplicaApp
        from cumulo.serving.stats import Window

        window = Window()
        app = ReplicaApp(config["endpoint"], variants,
                         max_batch_size=int(config.get("max_batch_size", 64)),
                         max_wait_ms=float(config.get("max_wait_ms", 2.0)),
                         max_body=int(config.get("max_body", 6 * 1024 * 1024)),
                         on_result=window.add)
    except Exception:
        _say({"failed": traceback.format_exc()})
        return 1
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(
        app, fd=args.fd, loop="uvloop", http="httptools", lifespan="off", log_level="warning",
        access_log=False, timeout_keep_alive=30, server_header=False, date_header=False))
    interval = float(config.get("stats_interval", 0.5))

    async def report() -> None:
        while True:
            await asyncio.sleep(interval)
            _say({"in_flight": app.in_flight, "variants": window.take()})

    async def serve() -> None:
        reporter = asyncio.get_running_loop().create_task(report())
        _say({"ready": round(time.perf_counter() - started, 3), "pid": os.getpid()})
        try:
            await server.serve()
        finally:
            reporter.cancel()

    import uvloop

    uvloop.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
