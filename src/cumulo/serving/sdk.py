"""``client.endpoints``: create real-time endpoints and score rows with them;
``client.transformer``: batch predictions, shaped like the SageMaker SDK's Transformer."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import orjson

from cumulo.client.transport import Transport
from cumulo.errors import Conflict, CumuloError, Invalid, NotFound
from cumulo.units import parse_duration

__all__ = ["Endpoint", "EndpointsClient", "Transformer"]

# Settings that are durations, by the option that sets them from the CLI; the API takes
# seconds, so a duration such as "1h30m" is read here (cumulo.units' grammar).
_DURATIONS = {"scale_in_cooldown": "--scale-in-cooldown",
              "scale_to_zero_after": "--scale-to-zero-after", "bake_s": "--bake"}


def _seconds(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with each duration in seconds."""
    return {key: parse_duration(value, what=_DURATIONS[key], allow_zero=True)
            if key in _DURATIONS and value is not None else value
            for key, value in settings.items()}


class Endpoint:
    """A handle on one endpoint: ``predict`` sends rows through the control plane."""

    def __init__(self, transport: Transport, name: str) -> None:
        self._t = transport
        self.name = name

    def __repr__(self) -> str:
        return f"Endpoint({self.name!r})"

    def show(self) -> dict[str, Any]:
        return self._t.json("GET", f"/api/v1/endpoints/{self.name}")  # type: ignore[no-any-return]

    def wait(self, timeout: float = 120.0) -> dict[str, Any]:
        """Block until the endpoint answers (in service) and no traffic shift is under way.
        An endpoint that failed (its model would not load, say) raises
        :class:`~cumulo.errors.Conflict` with the replica's own message; the endpoint is
        left as it is, to be read with ``show()`` and removed with ``delete()``."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.show()
            if info["state"] == "in_service":
                return info
            if info["state"] == "failed":
                raise Conflict(f"endpoint {self.name!r} failed: {info['message']}",
                               details={"endpoint": self.name, "state": "failed"})
            if time.monotonic() > deadline:
                raise TimeoutError(f"endpoint {self.name!r} still {info['state']} after "
                                   f"{timeout}s")
            time.sleep(0.1)

    def update(self, model: str | None = None, *, strategy: str = "all_at_once",
               variant: str | None = None, canary_percent: float = 10.0,
               step_percent: float = 25.0, bake_s: str | float = 60.0,
               max_error_rate: float | None = 0.01, max_p99_ms: float | None = None,
               weights: dict[str, float] | None = None, env: str | None = None,
               wait: bool = False, timeout: float = 600.0, **settings: Any) -> dict[str, Any]:
        """Shift traffic to ``model`` (``strategy``: all_at_once, canary or linear, baking
        ``bake_s`` (seconds, or a duration like ``"5m"``) after each step and rolling back
        when the new variant's error rate or p99 latency crosses its limit), or set some
        variants' ``weights`` at once (``{"a": 3, "b": 1}``), and/or change settings such as
        ``min_replicas``, ``max_replicas``, ``capture_percent``, ``scale_in_cooldown`` or
        ``public`` (True: the replicas' address takes invocations without a token).
        ``env`` (with ``model``): where the new variant runs, ``"server"``, ``"model"`` or
        an environment's name; it must be the environment the endpoint's replicas run in.
        With ``wait``, returns when the shift is done or rolled back."""
        body: dict[str, Any] = _seconds(settings)
        if weights is not None:
            body["weights"] = weights
        if env is not None:
            body["env"] = env
        if model is not None:
            body.update(_seconds(dict(
                model=model, strategy=strategy, variant=variant, canary_percent=canary_percent,
                step_percent=step_percent, bake_s=bake_s, max_error_rate=max_error_rate,
                max_p99_ms=max_p99_ms)))
        info: dict[str, Any] = self._t.json("PATCH", f"/api/v1/endpoints/{self.name}",
                                            json=body)
        return self.wait(timeout) if wait else info

    def delete(self) -> None:
        """Remove the endpoint: its replicas stop, its address closes."""
        self._t.request("DELETE", f"/api/v1/endpoints/{self.name}")

    def rollback(self) -> dict[str, Any]:
        """Stop the traffic shift under way; the variants before it take the traffic again."""
        return self._t.json(  # type: ignore[no-any-return]
            "POST", f"/api/v1/endpoints/{self.name}/rollback")

    def metrics(self, window: float = 60.0) -> dict[str, Any]:
        """Per variant over the last ``window`` seconds: requests a second, errors, and
        latency percentiles (whole, model, overhead); replicas and requests in flight now."""
        return self._t.json(  # type: ignore[no-any-return]
            "GET", f"/api/v1/endpoints/{self.name}/metrics", params={"window": window})

    def logs(self, *, follow: bool = False, replica: int | None = None,
             since: str | None = None) -> Iterator[str]:
        """The replicas' log, line by line (JSON lines, and what models wrote to stderr);
        ``follow`` streams new lines until the caller stops reading; ``replica``: one
        replica's (its pid); ``since``: an ISO time or a span back from now (``10m``)."""
        params: dict[str, Any] = {"follow": str(follow).lower()}
        if replica is not None:
            params["replica"] = replica
        if since is not None:
            params["since"] = since
        pending = b""
        with self._t.stream("GET", f"/api/v1/endpoints/{self.name}/logs", params=params,
                            timeout=None) as response:
            for chunk in response.iter_raw():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", "replace")
        if pending:
            yield pending.decode("utf-8", "replace")

    def invoke(self, body: bytes, content_type: str = "application/json", *,
               variant: str | None = None) -> Any:
        """Send a request body as is; the decoded JSON answer."""
        headers = {"content-type": content_type}
        if variant:
            headers["x-cumulo-variant"] = variant
        response = self._t.request("POST", f"/endpoints/{self.name}/invocations", content=body,
                                   headers=headers)
        return orjson.loads(response.content)

    def predict(self, rows: Any, *, variant: str | None = None) -> builtins.list[Any]:
        """Predictions for ``rows``: a pandas DataFrame, a list of records, or a dict of
        columns."""
        if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
            doc = {"dataframe_split": rows.to_dict(orient="split")}
            doc["dataframe_split"].pop("index", None)
        elif isinstance(rows, list):
            doc = {"dataframe_records": rows}
        elif isinstance(rows, dict):
            doc = {"inputs": rows}
        else:
            raise Invalid("predict takes a pandas DataFrame, a list of records or a dict of "
                          f"columns, not {type(rows).__name__}")
        body = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
        return self.invoke(body, variant=variant)["predictions"]  # type: ignore[no-any-return]


class _RegistryView:
    """The two registry lookups resolve_model makes, over the API (asked here, not through
    ``cumulo.ml.sdk``, which builds endpoints from model versions: no import cycle)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def get(self, name: str) -> dict[str, Any]:
        return self._t.json(  # type: ignore[no-any-return]
            "GET", "/api/v1/models/" + quote(name, safe=""), timeout=180)

    def version(self, name: str, version: str) -> dict[str, Any]:
        return self._t.json(  # type: ignore[no-any-return]
            "GET", f"/api/v1/models/{quote(name, safe='')}/versions/{version}")


class EndpointsClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def __getitem__(self, name: str) -> Endpoint:
        return Endpoint(self._t, name)

    def create(self, name: str, model: str | None = None, *,
               variants: builtins.list[dict[str, Any]] | None = None, min_replicas: int = 1,
               max_replicas: int | None = None, target_in_flight: float = 8.0,
               scale_in_cooldown: str | float = 60.0, scale_to_zero_after: str | float = 300.0,
               max_batch_size: int = 64, max_wait_ms: float = 2.0,
               max_body: str | int = "6M", capture_percent: float = 0.0,
               capture_table: str | None = None, cluster: str | None = None,
               public: bool = False, project: str | None = None, env: str | None = None,
               wait: bool = False, timeout: float = 120.0) -> dict[str, Any]:
        """Serve ``model`` (``NAME:VERSION``, ``NAME@ALIAS`` or ``NAME``), or several
        ``variants`` (``[{"model": ..., "weight": ..., "name": ..., "shadow": ...}]``).

        Replicas scale between ``min_replicas`` (0: scale to zero after
        ``scale_to_zero_after`` idle) and ``max_replicas`` on requests in flight per replica
        (``target_in_flight``), scaling in after ``scale_in_cooldown`` of lower load; both
        are seconds, or durations like ``"90s"``, ``"5m"`` or ``"1h30m"``.
        ``capture_percent`` of requests, with their answers, go to the lake table
        ``capture_table`` (default ``endpoints.NAME_capture``).
        ``cluster``: a Ray cluster's name, to run on Ray Serve there.
        ``public``: the replicas' own address (``url``) takes invocations without a token; by
        default it asks for ``Authorization: Bearer <token>``, as the control plane does.
        ``project``: the project it belongs to (rights bound there hold on it; its
        ``endpoints`` quota counts it).
        ``env``: where the models run: ``"server"`` (the server's packages), ``"model"`` (the
        requirements each model's MLflow flavor recorded, built once into an environment) or
        a named environment (``client.envs``); by default the model's own when the server's
        packages do not meet its requirements, else the server's. A variant may say its own
        (``{"model": ..., "env": ...}``). The endpoint is ``creating`` while its environment
        is built (its ``message`` says so).

        >>> client.endpoints.create("churn", "churn@champion", wait=True)  # doctest: +SKIP
        """
        body = {"name": name, "model": model, "variants": variants,
                "min_replicas": min_replicas, "max_replicas": max_replicas,
                "target_in_flight": target_in_flight,
                **_seconds({"scale_in_cooldown": scale_in_cooldown,
                            "scale_to_zero_after": scale_to_zero_after}),
                "max_batch_size": max_batch_size, "max_wait_ms": max_wait_ms,
                "max_body": max_body, "capture_percent": capture_percent,
                "capture_table": capture_table, "cluster": cluster, "public": public,
                "project": project, "env": env}
        info: dict[str, Any] = self._t.json("POST", "/api/v1/endpoints", json=body)
        return self[name].wait(timeout) if wait else info

    def batch(self, *, model: str, table: str, output: str, mode: str = "overwrite",
              prediction_column: str = "prediction", cluster: str = "local", cpus: float = 1,
              memory: str | None = None, env: str | None = None) -> Any:
        """Score every row of ``table`` with ``model`` (``NAME:VERSION``, ``NAME@ALIAS`` or
        ``NAME``) as a job, writing the table's columns and the predictions to ``output``.
        The model and the table are pinned to versions now. Returns the job (``.wait()``).
        ``env``: where the model runs, as for :meth:`create` (the job runs in that
        environment; a requirement of the model that cannot be met is refused now).

        >>> client.endpoints.batch(model="churn:3", table="sales.orders@v5",
        ...                        output="sales.scored").wait()  # doctest: +SKIP
        """
        from cumulo.lake.refs import parse_ref
        from cumulo.serving.refs import resolve_model

        if mode not in ("overwrite", "append"):
            raise Invalid(f"mode must be overwrite or append, not {mode!r}")
        target = parse_ref(output)
        if target.version is not None or target.as_of is not None:
            raise Invalid(f"--output {output!r}: name a table to write, not a version of one")
        name, version = resolve_model(_RegistryView(self._t), model)
        source = parse_ref(table)
        info = self._t.json("GET", f"/api/v1/tables/{source.database}/{source.table}",
                            params={"version": source.version} if source.version is not None
                            else {})
        pinned = f"{source.name}@v{info['version']}"
        databases = [d["name"] for d in self._t.json("GET", "/api/v1/tables/databases")]
        if target.database not in databases:
            raise NotFound(f"database {target.database!r} does not exist; create it with "
                           f"'cumulo tables create-db {target.database}'")
        command = ["python", "-m", "cumulo.serving.batch", "--model", name, "--version",
                   version, "--output", target.name, "--mode", mode, "--prediction-column",
                   prediction_column]
        from cumulo.compute.sdk import JobsClient

        packages: dict[str, Any] = {}  # the job's environment: the server's by default
        if env is None or env == "model":  # chosen (and resolved) by the server
            chosen = self._t.json(
                "POST", f"/api/v1/endpoints/-/environment/{quote(name, safe='')}/{version}",
                json={"env": env}, timeout=600)
            if chosen["env"] == "model":
                packages = {"requirements": chosen["requirements"].splitlines(),
                            "python": chosen["python"]}
        elif env != "server":
            packages = {"environment": env}

        # MLflow draws a progress bar while it downloads the model: in a job's log it is a
        # line of carriage returns. The job's own steps say the same.
        return JobsClient(self._t).run(
            command=command, inputs={"data": pinned}, cluster=cluster, cpus=cpus,
            memory=memory, env={"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"},
            name=f"batch {name}:{version} {source.name}",
            tags=["batch-predictions", f"model={name}"], **packages)

    def runtime(self) -> dict[str, Any]:
        """The serving runtime: whether replicas start from its fork server yet."""
        return self._t.json("GET", "/api/v1/endpoints/-/runtime")  # type: ignore[no-any-return]

    def list(self, *, project: str | None = None) -> builtins.list[dict[str, Any]]:
        """Every endpoint, or one ``project``'s."""
        params = {"project": project} if project else {}
        return self._t.json("GET", "/api/v1/endpoints",  # type: ignore[no-any-return]
                            params=params)

    def show(self, name: str) -> dict[str, Any]:
        return self[name].show()

    def delete(self, name: str) -> None:
        self[name].delete()


class Transformer:
    """Batch predictions with one model, shaped like the SageMaker SDK's Transformer: made
    once with the model and resources, ``transform`` scores a table into another, as a job
    (a thin layer over :meth:`EndpointsClient.batch`).

    >>> t = client.transformer(model="churn:3", cpus=2)                   # doctest: +SKIP
    >>> t.transform("sales.orders@v5", output="sales.scored")             # doctest: +SKIP
    """

    def __init__(self, transport: Transport, model: str, *,
                 prediction_column: str = "prediction", cluster: str = "local",
                 cpus: float = 1, memory: str | None = None, env: str | None = None) -> None:
        self._endpoints = EndpointsClient(transport)
        self.model = model
        self.options: dict[str, Any] = {"prediction_column": prediction_column,
                                        "cluster": cluster, "cpus": cpus, "memory": memory,
                                        "env": env}
        self.job: Any = None  # the last transform's job

    def __repr__(self) -> str:
        return f"Transformer({self.model!r})"

    def transform(self, table: str, *, output: str, mode: str = "overwrite",
                  wait: bool = True) -> Any:
        """Score every row of ``table`` (``db.table`` or ``db.table@vN``) into ``output``
        (``mode``: overwrite or append). Returns the job; with ``wait``, once it ends, and
        a job that failed raises :class:`~cumulo.errors.CumuloError` with its reason and
        last log lines (a failed job writes nothing)."""
        self.job = self._endpoints.batch(model=self.model, table=table, output=output,
                                         mode=mode, **self.options)
        if wait:
            info = self.job.wait()
            if info["state"] != "succeeded":
                raise CumuloError(f"batch prediction job {self.job.id} {info['state']}: "
                                  f"{info['reason']}; its last lines:\n"
                                  f"{info.get('log_tail') or ''}", details={"job": self.job.id})
        return self.job
