"""Endpoints on a Ray cluster: the same replica code as a Ray Serve deployment.

An endpoint created with ``--cluster NAME`` for a Ray cluster runs as a Ray Serve application
named after it, at ``/NAME`` on the cluster's Serve address. The control plane deploys and
deletes it with short Ray jobs (``python -m cumulo.serving.rayserve deploy|delete``), so it
needs nothing but the cluster's job API, as jobs do; Ray's nodes need ``pip install
'cumulo[ray]'``. Each Serve replica fetches its models from Cumulo's registry (MLflow, with a
token made for the endpoint) and answers with :class:`~cumulo.serving.replica.ReplicaApp`:
the same formats, signature checks, batching and variants as a local replica. Replicas scale
with Serve's autoscaler between the endpoint's minimum and maximum (0 included), on requests
in flight per replica.

Each replica reports to the control plane every ``REPORT_INTERVAL`` seconds, as a local
replica does on its pipe (``POST /api/v1/endpoints/NAME/reports``, with the endpoint's token):
per-variant requests, errors and latency histograms (metrics, and the automatic rollback of
a traffic shift), its sampled requests (data capture), and its memory (metering).

Each replica checks every invocation's Host header and token (:mod:`cumulo.serving.gate`), as a
local replica does: it takes the live tokens from the control plane before it says it is
ready, then waits on ``GET /api/v1/endpoints/NAME/tokens?since=DIGEST``, answered as soon as
the set changes (a revoke), so a revoked token stops working within a second. If the control
plane cannot be reached, the replica keeps the set it has. An endpoint created ``--public``
asks for no token.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["build", "main"]

log = logging.getLogger("cumulo.serving")

REPORT_INTERVAL = 1.0  # seconds between a replica's reports to the control plane
TOKENS_WAIT = 20.0  # seconds the control plane holds a replica's ask for the tokens
FIRST_TOKENS = 60.0  # seconds a new replica tries to get the tokens before serving without


class _Bases:
    """The control planes' public URLs (``bases`` in the config: a load balancer's, or each
    control plane's), tried in turn: a replica keeps using the one that answered last, and
    moves to the next when it cannot be reached or answers 5xx (its control plane stopped; the
    one that took the endpoint over is reached through any other)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.endpoint = str(config["endpoint"])
        urls = config.get("bases") or []
        if not urls and config.get("report_url"):  # deployed by an earlier version
            urls = [str(config["report_url"]).split("/api/v1/")[0]]
        self.urls = [str(u).rstrip("/") for u in urls]
        self.at = 0

    def first_live(self) -> str | None:
        import httpx

        for url in self.urls:
            try:
                if httpx.get(f"{url}/healthz", timeout=3).status_code == 200:
                    return url
            except httpx.HTTPError:
                continue
        return self.urls[0] if self.urls else None

    def call(self, client: Any, method: str, what: str, **kwargs: Any) -> Any:
        """``what`` (reports, tokens) of the endpoint, through the first control plane that
        answers, starting from the last one that did."""
        import httpx

        failure: Exception | None = None
        answer = None
        for i in range(len(self.urls)):
            at = (self.at + i) % len(self.urls)
            url = f"{self.urls[at]}/api/v1/endpoints/{self.endpoint}/{what}"
            try:
                answer = client.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                failure = exc
                continue
            if answer.status_code < 500:
                self.at = at
                return answer
        if answer is not None:
            return answer
        assert failure is not None
        raise failure


class _Replica:
    """A Serve replica: every variant's model, behind ReplicaApp."""

    def __init__(self, config: dict[str, Any]) -> None:
        from mlflow.artifacts import download_artifacts

        from cumulo.serving.replica import ReplicaApp
        from cumulo.serving.worker import load_variant

        live = _Bases(config).first_live()
        if live:  # the registry through a control plane that answers
            os.environ["MLFLOW_TRACKING_URI"] = f"{live}/mlflow"
        folder = Path(tempfile.mkdtemp(prefix=f"cumulo-{config['endpoint']}-"))
        variants = []
        for spec in config["variants"]:
            dest = folder / spec["name"]
            download_artifacts(artifact_uri=f"models:/{spec['model']}/{spec['version']}",
                               dst_path=str(dest))
            found = next(dest.rglob("MLmodel"))
            variants.append(load_variant({**spec, "model_dir": str(found.parent)}))
        from cumulo.serving.gate import Gate, host_names
        from cumulo.serving.stats import Window
        from cumulo.serving.worker import _Capture

        # Requests are served on the replica's event loop, reports sent from a thread.
        self._lock = threading.Lock()
        self._window, self._capture = Window(), _Capture()
        self.gate = Gate(host_names(str(config.get("address", "127.0.0.1")),
                                    int(config["port"]), config.get("hosts", [])),
                         public=bool(config.get("public", False)))
        self.app = ReplicaApp(config["endpoint"], variants,
                              max_batch_size=int(config.get("max_batch_size", 64)),
                              max_wait_ms=float(config.get("max_wait_ms", 2.0)),
                              max_body=int(config.get("max_body", 6 * 1024 * 1024)),
                              on_result=self._locked(self._window.add), gate=self.gate)
        self.app.capture_share = float(config.get("capture_percent", 0.0)) / 100
        self.app.on_capture = self._locked(self._capture.add)
        self.id = uuid.uuid4().hex[:12]
        self._token = config["env"].get("MLFLOW_TRACKING_TOKEN", "")
        self._bases = _Bases(config)
        if self._bases.urls:
            threading.Thread(target=self._report_loop, daemon=True,
                             name="cumulo-report").start()
        if self._bases.urls and not self.gate.public:
            self._first_tokens()
            threading.Thread(target=self._tokens_loop, daemon=True,
                             name="cumulo-tokens").start()

    def _locked(self, add: Any) -> Any:
        def locked(record: dict[str, Any]) -> None:
            with self._lock:
                add(record)

        return locked

    def _report_loop(self) -> None:
        import httpx
        import psutil

        process = psutil.Process()
        headers = {"Authorization": f"Bearer {self._token}"}
        with httpx.Client(timeout=10, headers=headers) as client:
            while True:
                time.sleep(REPORT_INTERVAL)
                with self._lock:
                    report = {"replica": self.id, "pid": os.getpid(),
                              "node": socket.gethostname(), "memory": process.memory_info().rss,
                              "in_flight": self.app.in_flight, "load": self.app.load(),
                              "variants": self._window.take(), **self._capture.take()}
                try:
                    answer = self._bases.call(client, "POST", "reports", json=report)
                    if answer.status_code >= 400:
                        log.warning("the control plane refused a report: %s %s",
                                    answer.status_code, answer.text[:200])
                except httpx.HTTPError as exc:  # it restarts, say: this report is lost
                    log.warning("reporting to the control plane failed: %s", exc)

    def _pull_tokens(self, client: Any, wait: float) -> None:
        """Ask the control plane for the live tokens; it answers when they differ from the
        set held, or after ``wait`` seconds with 204."""
        answer = self._bases.call(client, "GET", "tokens",
                                  params={"since": self.gate.digest, "wait": wait})
        if answer.status_code == 200:
            doc = answer.json()
            self.gate.allow(str(doc["digest"]), doc["tokens"])
        elif answer.status_code != 204:
            raise RuntimeError(f"{answer.status_code} {answer.text[:200]}")

    def _first_tokens(self) -> None:
        """The live tokens before the replica takes requests; without them it refuses every
        token until the control plane answers (tokens_loop goes on asking)."""
        import httpx

        deadline = time.monotonic() + FIRST_TOKENS
        with httpx.Client(timeout=10, headers=self._auth()) as client:
            while time.monotonic() < deadline:
                try:
                    self._pull_tokens(client, 0)
                    return
                except Exception as exc:
                    log.warning("getting the live tokens from the control plane failed: %s", exc)
                    time.sleep(1.0)

    def _tokens_loop(self) -> None:
        import httpx

        with httpx.Client(timeout=TOKENS_WAIT + 10, headers=self._auth()) as client:
            while True:
                try:
                    self._pull_tokens(client, TOKENS_WAIT)
                except Exception as exc:  # it restarts, say: keep the set held, ask again
                    log.warning("getting the live tokens from the control plane failed: %s", exc)
                    time.sleep(1.0)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import Response

        from cumulo.serving.replica import too_large

        method = request.method.encode()
        path = b"/ping" if request.url.path.rstrip("/").endswith("/ping") else b"/invocations"
        routed = self.app.route(method, path)
        if routed is not None:
            status, answer, variant = *routed, None
        else:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.raw}
            answered: asyncio.Future[tuple[int, bytes, str | None]] = \
                asyncio.get_running_loop().create_future()
            limit = self.app.max_body
            self.app.invoke(headers, body, lambda *reply: answered.set_result(reply),
                            error=too_large(len(body), limit) if len(body) > limit else None)
            status, answer, variant = await answered
        headers = {"x-cumulo-variant": variant} if variant else {}
        if status == 401:
            headers["www-authenticate"] = "Bearer"
        return Response(answer, status_code=status, media_type="application/json",
                        headers=headers)


class _Held:
    """An endpoint held at zero replicas (by a budget): every request is answered 503 with
    Retry-After, as a held local endpoint's socket answers, and no model is loaded. One
    replica, with no CPU reserved; it reports nothing, so it is not metered."""

    def __init__(self, held: dict[str, Any]) -> None:
        self.body = json.dumps({"error": {"code": "unavailable",
                                          "message": str(held["message"])}}).encode()
        self.retry_after = str(int(held["retry_after"]))

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import Response

        return Response(self.body, status_code=503, media_type="application/json",
                        headers={"retry-after": self.retry_after})


def build(config: dict[str, Any]) -> Any:
    """The Serve application for an endpoint's config."""
    from ray import serve

    if config.get("held"):
        return serve.deployment(name="held", num_replicas=1,
                                ray_actor_options={"num_cpus": 0})(_Held).bind(config["held"])

    scaling = {"min_replicas": int(config["min_replicas"]),
               "max_replicas": int(config["max_replicas"]),
               "target_ongoing_requests": float(config["target_in_flight"]),
               "downscale_delay_s": float(config["scale_in_cooldown"])}
    deployment = serve.deployment(
        name="replica", max_ongoing_requests=max(64, 4 * int(config["target_in_flight"])),
        autoscaling_config=scaling,
        ray_actor_options={"num_cpus": 1, "runtime_env": {"env_vars": config["env"]}},
    )(_Replica)
    return deployment.bind(config)


def deploy(config: dict[str, Any]) -> None:
    from ray import serve

    # Serve's proxy keeps the options it first started with on the cluster.
    serve.start(http_options={"host": config.get("host", "127.0.0.1"),
                              "port": int(config["port"])})
    serve.run(build(config), name=config["endpoint"], route_prefix=f"/{config['endpoint']}",
              blocking=False)
    print(f"endpoint {config['endpoint']} deployed on Ray Serve", flush=True)


def delete(name: str) -> None:
    from ray import serve

    serve.delete(name)
    print(f"endpoint {name} deleted from Ray Serve", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cumulo.serving.rayserve")
    parser.add_argument("action", choices=("deploy", "delete"))
    parser.add_argument("--config", help="deploy: the endpoint's config, base64 JSON")
    parser.add_argument("--name", help="delete: the endpoint's name")
    args = parser.parse_args(argv)
    if args.action == "deploy":
        deploy(json.loads(base64.b64decode(args.config)))
    else:
        delete(args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
