"""An endpoint replica's process: ``python -m cumulo.serving.worker --fd N --config FILE``.

The endpoint manager owns the endpoint's listening socket and hands it to every replica (the
pre-fork model of gunicorn and uvicorn's workers): all replicas accept from one queue, so a
replica that dies loses only the connections it had accepted, and while there are no replicas
the connections wait in the queue instead of being refused.

The replica loads every variant's MLflow model, says ``{"ready": ...}`` on stdout (or
``{"failed": traceback}`` and exits 1), then serves :class:`~cumulo.serving.replica.ReplicaApp`
with :mod:`cumulo.serving.http`. On SIGTERM it stops accepting, answers the requests it holds
and exits 0. Every ``stats_interval`` seconds it writes one line of stats (requests in flight;
per variant, requests, errors and latency histograms: :mod:`cumulo.serving.stats`) for the
manager's autoscaler and metrics. Its stdout is the manager's pipe; its log goes to stderr.

Every invocation passes the replica's gate (:mod:`cumulo.serving.gate`): a Host header naming
an address the replica serves under (from the socket it was given, and the config's
``hosts``), and, unless the config says ``public``, a live token from the set the manager
writes to the config's ``tokens_file``, which the replica looks at every ``TOKENS_POLL``
seconds. A config without either serves nobody but the public.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import socket

    from cumulo.serving.gate import Gate

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
    # The method the model was logged to answer with (pyfunc_predict_fn: predict_proba, say).
    method = model.metadata.flavors.get("python_function", {}).get("predict_fn", "predict")
    predict = getattr(impl, method, None) if schema is not None and impl is not None else None
    matrix = _matrix_columns(impl, method, schema)
    if matrix is not None and impl is not None:
        predict = getattr(impl.sklearn_model, method)
    return Variant(spec["name"], predict or model.predict, schema, matrix=matrix,
                   weight=float(spec.get("weight", 1.0)),
                   shadow=bool(spec.get("shadow", False)))


def _matrix_columns(impl: Any, method: str, schema: list[Any] | None) -> list[str] | None:
    """The columns, in order, when the model may be given a plain float array instead of a
    pandas frame: a scikit-learn estimator, every input numeric, nothing inside it that picks
    columns by name (a ColumnTransformer), and fitted on these columns in this order or on
    unnamed ones. Its answers are the same; the frame and sklearn's checks of its names are
    skipped (the replica has checked the columns against the signature already)."""
    from cumulo.serving.formats import NUMERIC_TYPES

    estimator = getattr(impl, "sklearn_model", None)
    if estimator is None or schema is None or not hasattr(estimator, method):
        return None
    if not type(estimator).__module__.startswith("sklearn."):
        return None
    if any(c.type not in NUMERIC_TYPES for c in schema):
        return None
    names = [c.name for c in schema]
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is not None and list(fitted) != names:
        return None
    try:
        parts = [estimator, *estimator.get_params(deep=True).values()]
    except Exception:
        return None
    if any(type(p).__name__ == "ColumnTransformer" for p in parts):
        return None
    return names


def _say(message: dict[str, Any]) -> None:
    os.write(1, json.dumps(message, default=str).encode() + b"\n")


CAPTURE_LIMIT = 4 * 1024 * 1024  # captured bytes a replica sends per report, at most


class _Capture:
    """Sampled requests and answers, sent to the manager with the next stats line."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.size = 0
        self.dropped = 0

    def add(self, record: dict[str, Any]) -> None:
        request, response = record["request"], record["response"]
        size = len(request) + len(response)
        if self.size + size > CAPTURE_LIMIT:
            self.dropped += 1
            return
        self.size += size
        content_type = record["content_type"].decode("latin-1")
        binary = "arrow" in content_type
        self.records.append({
            "captured_at": record["at"], "variant": record["variant"],
            "status": record["status"], "latency_ms": round(record["latency_s"] * 1000, 3),
            "model_latency_ms": round(record["model_s"] * 1000, 3),
            "content_type": content_type,
            "request": (base64.b64encode(request).decode() if binary
                        else request.decode("utf-8", "replace")),
            "request_encoding": "base64" if binary else "utf-8",
            "response": response.decode("utf-8", "replace")})

    def take(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.records:
            out["capture"] = self.records
        if self.dropped:
            out["capture_dropped"] = self.dropped
        self.records, self.size, self.dropped = [], 0, 0
        return out


class _Config:
    """The endpoint's replica config, read again when the manager rewrites it (a traffic
    shift, new batching or capture settings): new variants load in a thread while the old
    ones serve."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mtime = path.stat().st_mtime_ns
        self.doc: dict[str, Any] = json.loads(path.read_text())
        self.loaded: dict[tuple[str, str], Any] = {}

    def variants(self, doc: dict[str, Any]) -> list[Any]:
        out = []
        for spec in doc["variants"]:
            key = (spec["name"], spec["model_dir"])
            variant = self.loaded.get(key)
            if variant is None:
                variant = self.loaded[key] = load_variant(spec)
            variant.weight = float(spec.get("weight", 1.0))
            variant.shadow = bool(spec.get("shadow", False))
            out.append(variant)
        keep = {(v["name"], v["model_dir"]) for v in doc["variants"]}
        self.loaded = {k: v for k, v in self.loaded.items() if k in keep}
        return out

    def changed(self) -> dict[str, Any] | None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if mtime == self.mtime:
            return None
        self.mtime = mtime
        return json.loads(self.path.read_text())  # type: ignore[no-any-return]


def _apply(app: Any, doc: dict[str, Any]) -> None:
    app.gate.public = bool(doc.get("public", False))
    app.max_batch_size = int(doc.get("max_batch_size", 64))
    app.max_wait = float(doc.get("max_wait_ms", 2.0)) / 1000
    app.max_body = int(doc.get("max_body", 6 * 1024 * 1024))
    app.capture_share = float(doc.get("capture_percent", 0.0)) / 100


def _gate(listener: socket.socket, doc: dict[str, Any]) -> tuple[Gate, Path | None]:
    """The replica's gate: the Host names of the address it listens on and the config's
    ``hosts``; the token set from ``tokens_file``, read now so that the first requests find
    it. Also that file's path (None: the config names none; only a public endpoint's replica
    serves anyone then)."""
    from cumulo.serving.gate import Gate, host_names, read_tokens

    bound, port = listener.getsockname()[:2]
    gate = Gate(host_names(bound, port, doc.get("hosts", [])),
                public=bool(doc.get("public", False)))
    path = Path(doc["tokens_file"]) if doc.get("tokens_file") else None
    found = read_tokens(path) if path is not None else None
    if found is not None:
        gate.allow(*found)
    return gate, path


async def _watch_tokens(gate: Gate, path: Path | None) -> None:
    """Take the token set the manager writes to ``path`` each time it is replaced."""
    from cumulo.serving.gate import TOKENS_POLL, read_tokens

    if path is None:
        return
    seen: tuple[int, int] | None = None
    while True:
        try:
            stat = os.stat(path)
            now: tuple[int, int] | None = (stat.st_ino, stat.st_mtime_ns)
        except OSError:
            now = None
        if now is not None and now != seen:
            found = read_tokens(path)
            if found is not None:  # else it is being replaced: look again next time
                seen = now
                if found[0] != gate.digest:
                    gate.allow(*found)
        await asyncio.sleep(TOKENS_POLL)


def _log_as_json() -> None:
    """The replica's log lines as the control plane writes its own (:mod:`cumulo.logs`), each
    with the replica's pid: ``cumulo endpoints logs NAME --replica PID`` picks them out."""
    from cumulo.logs import JsonFormatter

    pid = os.getpid()

    def mark(record: logging.LogRecord) -> bool:
        record.replica = pid
        return True

    handler = logging.StreamHandler(sys.stderr)  # unbuffered: a replica logs little
    handler.setFormatter(JsonFormatter())
    handler.addFilter(mark)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logging.getLogger("cumulo").setLevel(logging.INFO)


def forked(args: dict[str, Any], fds: list[int]) -> int:
    """The fork server's entry point for a replica (:mod:`cumulo.forkserver`): the listening
    socket comes as the one descriptor, the config's path in ``args``."""
    return main(["--fd", str(fds[0]), "--config", str(args["config"])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cumulo.serving.worker")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket")
    parser.add_argument("--config", required=True, help="the endpoint's replica config (JSON)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    _log_as_json()
    # Models given a float array (see _matrix_columns) were often fitted on a frame: sklearn
    # would say so on every call.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    sys.setswitchinterval(0.001)  # a model running in a thread hands the loop back sooner
    try:
        import socket

        listener = socket.socket(fileno=args.fd)
        config = _Config(Path(args.config))
        gate, tokens_file = _gate(listener, config.doc)
        variants = config.variants(config.doc)
        from cumulo.serving.replica import ReplicaApp
        from cumulo.serving.stats import Window

        window, capture = Window(), _Capture()
        app = ReplicaApp(config.doc["endpoint"], variants, on_result=window.add, gate=gate)
        app.on_capture = capture.add
        _apply(app, config.doc)
    except Exception:
        _say({"failed": traceback.format_exc()})
        return 1
    interval = float(config.doc.get("stats_interval", 0.5))
    generation = int(config.doc.get("generation", 0))

    async def reload(doc: dict[str, Any]) -> None:
        nonlocal generation
        try:
            variants = await asyncio.to_thread(config.variants, doc)
            app.set_variants(variants)
            _apply(app, doc)
            generation = int(doc.get("generation", 0))
        except Exception:
            _say({"reload_failed": traceback.format_exc(),
                  "generation": int(doc.get("generation", 0))})

    async def report(stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        reloading: asyncio.Task[None] | None = None
        while True:
            await asyncio.sleep(interval)
            try:
                _say({"in_flight": app.in_flight, "load": round(app.load(), 3),
                      "generation": generation, "variants": window.take(), **capture.take()})
            except OSError:  # the manager is gone (it crashed): stop, do not serve orphaned
                stop.set()
                return
            if reloading is None or reloading.done():
                doc = config.changed()
                if doc is not None:
                    reloading = loop.create_task(reload(doc))

    async def serve() -> None:
        import signal

        from cumulo.serving.http import Server

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = Server(app, keep_alive=30.0)
        await server.start(listener)
        reporter = loop.create_task(report(stop))
        watcher = loop.create_task(_watch_tokens(gate, tokens_file))
        _say({"ready": round(time.perf_counter() - started, 3), "pid": os.getpid(),
              "generation": generation})
        logging.getLogger("cumulo.serving").info(
            "endpoint %s: replica %d serving (generation %d)", app.endpoint, os.getpid(),
            generation)
        try:
            await stop.wait()
            await server.shutdown(grace=4.0)
        finally:
            reporter.cancel()
            watcher.cancel()

    import uvloop

    uvloop.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
