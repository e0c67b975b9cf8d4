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
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["build", "main"]


class _Replica:
    """A Serve replica: every variant's model, behind ReplicaApp."""

    def __init__(self, config: dict[str, Any]) -> None:
        from mlflow.artifacts import download_artifacts

        from cumulo.serving.replica import ReplicaApp
        from cumulo.serving.worker import load_variant

        folder = Path(tempfile.mkdtemp(prefix=f"cumulo-{config['endpoint']}-"))
        variants = []
        for spec in config["variants"]:
            dest = folder / spec["name"]
            download_artifacts(artifact_uri=f"models:/{spec['model']}/{spec['version']}",
                               dst_path=str(dest))
            found = next(dest.rglob("MLmodel"))
            variants.append(load_variant({**spec, "model_dir": str(found.parent)}))
        self.app = ReplicaApp(config["endpoint"], variants,
                              max_batch_size=int(config.get("max_batch_size", 64)),
                              max_wait_ms=float(config.get("max_wait_ms", 2.0)),
                              max_body=int(config.get("max_body", 6 * 1024 * 1024)))

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import Response

        body = await request.body()
        scope = {**request.scope, "path": "/invocations", "raw_path": b"/invocations"}
        if request.url.path.rstrip("/").endswith("/ping"):
            scope.update(path="/ping", raw_path=b"/ping")
        given = False

        async def receive() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the request is whole: nothing more comes
            return {}  # pragma: no cover

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        start = sent[0]
        headers = {k.decode(): v.decode() for k, v in start["headers"]
                   if k.lower() != b"content-length"}
        return Response(b"".join(m.get("body", b"") for m in sent[1:]),
                        status_code=start["status"], headers=headers)


def build(config: dict[str, Any]) -> Any:
    """The Serve application for an endpoint's config."""
    from ray import serve

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

    serve.start(http_options={"host": config.get("host", "0.0.0.0"),
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
