"""Endpoints: creating (with every check made up front), reading, updating, rolling back and
deleting them; and what other services read of them.

Each function takes a session and, where it matters, the caller, and commits what it changed;
nothing is written when a check fails. The endpoint manager (:mod:`cumulo.serving.manager`)
then makes the replicas follow the row: the routes tell it to look (``notify``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cumulo.access import holders, projects
from cumulo.db import utcnow
from cumulo.errors import Conflict, Forbidden, Invalid, NotFound
from cumulo.principal import Principal
from cumulo.serving import rollout
from cumulo.serving.models import Endpoint
from cumulo.serving.refs import resolve_model
from cumulo.units import parse_duration, parse_size

if TYPE_CHECKING:
    from cumulo.ml.registry import Registry

__all__ = ["EndpointChange", "EndpointSpec", "VariantSpec", "check_reporter",
           "create_endpoint", "delete_endpoint", "endpoint_url", "endpoints_serving",
           "get_endpoint", "list_endpoints", "live_variants", "rollback_endpoint",
           "update_endpoint"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_VARIANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass
class VariantSpec:
    model: str  # NAME:VERSION, NAME@ALIAS or NAME (its latest version)
    name: str | None = None  # default NAME-VERSION
    weight: float = 1.0
    shadow: bool = False
    env: str | None = None  # server, model or a named environment; default: the endpoint's


@dataclass
class EndpointSpec:
    """An endpoint as asked for; every field is checked by :func:`create_endpoint`."""

    name: str
    model: str | None = None  # one model, or:
    variants: list[VariantSpec] | None = None  # several (dicts are taken too)
    min_replicas: int = 1
    max_replicas: int | None = None  # default: min_replicas (at least 1)
    target_in_flight: float = 8.0
    scale_in_cooldown: float | str = 60.0  # seconds, or a duration: 1m, 1h30m
    scale_to_zero_after: float | str = 300.0
    max_batch_size: int = 64
    max_wait_ms: float = 2.0
    max_body: str | int = "6M"
    capture_percent: float = 0.0
    capture_table: str | None = None
    cluster: str | None = None  # a Ray cluster's name; default this machine
    public: bool = False  # replicas take invocations without a token
    project: str | None = None  # the project it belongs to (its endpoints quota counts it)
    # Where the models run (cumulo.serving.environments): server, model, or a named
    # environment; None: chosen from each model's requirements.
    env: str | None = None

    def __post_init__(self) -> None:
        if self.variants is not None:
            self.variants = [v if isinstance(v, VariantSpec) else VariantSpec(**v)
                             for v in self.variants]


@dataclass
class EndpointChange:
    """An update: a traffic shift to a new model, new weights, or new settings (None keeps
    the endpoint's)."""

    model: str | None = None
    variant: str | None = None
    strategy: str = "all_at_once"
    canary_percent: float = 10.0
    step_percent: float = 25.0
    bake_s: float | str = 60.0
    max_error_rate: float | None = 0.01
    max_p99_ms: float | None = None
    weights: dict[str, float] | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_in_flight: float | None = None
    scale_in_cooldown: float | str | None = None
    scale_to_zero_after: float | str | None = None
    max_batch_size: int | None = None
    max_wait_ms: float | None = None
    capture_percent: float | None = None
    capture_table: str | None = None
    public: bool | None = None  # True: invocations without a token; False: with one only
    env: str | None = None  # with model: where the new variant runs (server, model or a name)


# --- reading -----------------------------------------------------------------------------------

def get_endpoint(session: Session, name: str) -> Endpoint:
    """An endpoint by name; NotFound when there is none (or it is being deleted)."""
    endpoint = session.scalar(select(Endpoint).where(Endpoint.name == name))
    if endpoint is None or endpoint.state == "deleting":
        raise NotFound(f"no endpoint {name!r}; 'cumulo endpoints ls' lists them",
                       details={"endpoint": name})
    return endpoint


def list_endpoints(session: Session, *, project: str | None = None) -> list[Endpoint]:
    """Every endpoint, or one project's (an unknown project is NotFound)."""
    query = select(Endpoint).where(Endpoint.state != "deleting").order_by(Endpoint.name)
    if project:
        query = query.where(Endpoint.project_id == projects.project_id_for(session, project))
    return list(session.scalars(query))


def live_variants(session: Session, name: str) -> list[dict[str, Any]] | None:
    """The variants an endpoint serves (``name``, ``model``, ``version``, ``weight``,
    ``shadow``), if it is in service or shifting traffic; else None."""
    endpoint = session.scalar(select(Endpoint).where(Endpoint.name == name))
    if endpoint is None or endpoint.state not in ("in_service", "updating"):
        return None
    return [dict(v) for v in endpoint.variants]


def endpoints_serving(session: Session, model: str,
                      version: str | None = None) -> list[dict[str, Any]]:
    """The endpoints serving a model (any version, or ``version``): each variant's endpoint,
    name, weight and the endpoint's state."""
    return [{"endpoint": e.name, "variant": v["name"], "weight": v["weight"], "state": e.state}
            for e in session.scalars(select(Endpoint).order_by(Endpoint.name))
            for v in e.variants
            if v["model"] == model and (version is None or str(v["version"]) == version)]


def endpoint_url(session: Session, endpoint: Endpoint, *, host: str) -> str:
    """Where the endpoint answers: its replicas' own address on ``host``, or its route on
    Ray Serve."""
    if endpoint.cluster is None:
        return f"http://{host}:{endpoint.port}"
    from urllib.parse import urlsplit

    from cumulo.compute.clusters import get_cluster

    address = ""
    with contextlib.suppress(NotFound):
        cluster = get_cluster(session, endpoint.cluster)
        address = cluster.endpoint or cluster.address or ""
    return f"http://{urlsplit(address).hostname or '127.0.0.1'}:{endpoint.port}/{endpoint.name}"


def check_reporter(session: Session, caller: Principal, name: str) -> Endpoint:
    """The endpoint a replica reports for; only its own replicas (with its token) may."""
    endpoint = get_endpoint(session, name)
    # Its current token, or while an adopted application is deployed again with a new one
    # (cumulo.serving.runtimes.ray), the one the replicas being replaced hold, until revoked.
    own = caller.token_id == endpoint.token_id or (
        caller.via_job and caller.user_id == endpoint.created_by
        and caller.token_name == f"endpoint {name}")
    if endpoint.token_id is None or not own:
        raise Forbidden(f"only endpoint {name!r}'s own replicas report its stats")
    return endpoint


# --- checks ------------------------------------------------------------------------------------

def _check_scaling(min_replicas: int, max_replicas: int, target: float, cooldown: float,
                   to_zero: float) -> None:
    if min_replicas < 0 or max_replicas < max(1, min_replicas) or max_replicas > 64:
        raise Invalid(f"replicas: need 0 <= --min-replicas <= --max-replicas <= 64 and "
                      f"--max-replicas >= 1 (got {min_replicas} and {max_replicas})")
    if not (math.isfinite(target) and target > 0):
        raise Invalid("--target-in-flight must be above 0 (requests in flight per replica)")
    if cooldown < 0 or to_zero < 0:
        raise Invalid("--scale-in-cooldown and --scale-to-zero-after are seconds, 0 or more")


def _seconds(value: float | str, what: str) -> float:
    """A duration setting: seconds, or the one grammar of :mod:`cumulo.units` (``1h30m``)."""
    return parse_duration(value, what=what, allow_zero=True)


def _check_batching(batch: int, wait: float) -> None:
    if not 1 <= batch <= 100_000 or not 0 <= wait <= 10_000:  # NaN fails these too
        raise Invalid("batching: --max-batch-size 1-100000 rows, --max-wait-ms 0-10000")


def _check_capture(session: Session, caller: Principal, endpoint: str, percent: float,
                   table: str | None, project: str | None = None) -> str | None:
    """The capture table's name, if capture is on; its database must exist. The default one
    is ``endpoints`` (``endpoints_<project>`` for an endpoint in a project, made in it, so
    that its captured requests are the project's)."""
    if not 0 <= percent <= 100:
        raise Invalid(f"--capture-percent must be 0-100, not {percent}")
    if not percent:
        if table:
            raise Invalid("--capture-table needs --capture-percent above 0")
        return None
    from cumulo.lake import catalog
    from cumulo.lake.refs import parse_ref

    database = "endpoints" if project is None else f"endpoints_{project.replace('-', '_')}"
    name = table or f"{database}.{endpoint.replace('-', '_')}_capture"
    ref = parse_ref(name)
    if ref.version is not None or ref.as_of is not None:
        raise Invalid(f"--capture-table {name!r}: name a table, not a version of one")
    if table is None:  # the default database is made on first use
        with contextlib.suppress(Conflict):
            try:
                catalog.get_database(session, ref.database)
            except NotFound:
                catalog.create_database(session, caller, ref.database,
                                        description="data captured by endpoints",
                                        project=project)
    else:
        catalog.get_database(session, ref.database)  # NotFound says how to make it
    return ref.name


def _check_variant_name(name: str) -> None:
    if not _VARIANT.match(name):
        raise Invalid(f"variant name {name!r}: letters, digits, '.', '_' or '-', at most 63")


def _check_traffic(variants: list[VariantSpec] | list[dict[str, Any]]) -> None:
    shares = [(v.weight, v.shadow) if isinstance(v, VariantSpec)
              else (v["weight"], bool(v.get("shadow"))) for v in variants]
    if not any(weight > 0 and not shadow for weight, shadow in shares):
        raise Invalid("at least one variant must take traffic: a weight above 0, not a shadow")


def _cluster(session: Session, name: str | None,
             serve_port: int) -> tuple[str | None, int | None]:
    """The Ray cluster an endpoint runs on and Ray Serve's port; (None, None) for this
    machine."""
    if name is None or name == "local":
        return None, None
    from cumulo.compute.clusters import get_cluster

    cluster = get_cluster(session, name)  # NotFound names the clusters there are
    if cluster.type != "ray":
        return None, None  # a local cluster: this machine
    return cluster.name, serve_port


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# --- changes -----------------------------------------------------------------------------------

def create_endpoint(session: Session, caller: Principal, spec: EndpointSpec, *,
                    registry: Callable[[], Registry], host: str,
                    ray_serve_port: int) -> Endpoint:
    """Check everything the endpoint needs, then add it (``creating``), in ``spec.project``
    within its ``endpoints`` quota; nothing is made if a check fails. ``registry`` gives the
    model registry, ``host`` the address local endpoints listen on."""
    if not _NAME.match(spec.name):
        raise Invalid(f"endpoint name {spec.name!r} must be 1-63 lower-case letters, digits or "
                      "'-', starting with a letter or digit")
    if (spec.model is None) == (spec.variants is None):
        raise Invalid("give either model (one model) or variants (several), not both")
    wanted = spec.variants or [VariantSpec(model=spec.model or "")]
    _check_traffic(wanted)
    if any(v.weight < 0 for v in wanted):
        raise Invalid("a variant's weight must not be negative")
    max_replicas = spec.max_replicas if spec.max_replicas is not None else max(
        1, spec.min_replicas)
    cooldown = _seconds(spec.scale_in_cooldown, "--scale-in-cooldown")
    to_zero = _seconds(spec.scale_to_zero_after, "--scale-to-zero-after")
    _check_scaling(spec.min_replicas, max_replicas, spec.target_in_flight, cooldown, to_zero)
    _check_batching(spec.max_batch_size, spec.max_wait_ms)
    max_body = (parse_size(spec.max_body, what="--max-body") if isinstance(spec.max_body, str)
                else spec.max_body)
    if max_body is None or max_body < 1024:
        raise Invalid("--max-body must be at least 1K")
    project_id = projects.project_id_for(session, spec.project)  # NotFound names it
    if session.scalar(select(Endpoint).where(Endpoint.name == spec.name)) is not None:
        raise Conflict(f"endpoint {spec.name!r} already exists; 'cumulo endpoints rm "
                       f"{spec.name}' first, or pick another name")
    projects.enforce(session, project_id, {"endpoints": 1}, what=f"endpoint {spec.name}")
    variants = _resolve_variants(registry(), wanted)
    cluster, port = _cluster(session, spec.cluster, ray_serve_port)
    for variant, asked in zip(variants, wanted, strict=True):
        _set_env(session, caller, variant, asked.env or spec.env, cluster=cluster)
    _check_envs_agree(variants)
    # Last, as it may make the default capture database: nothing is made for a refused request.
    capture_table = _check_capture(session, caller, spec.name, spec.capture_percent,
                                   spec.capture_table, spec.project)
    endpoint = Endpoint(
        name=spec.name, state="creating", variants=variants, cluster=cluster,
        port=port if port is not None else _free_port(host),
        min_replicas=spec.min_replicas, max_replicas=max_replicas,
        target_in_flight=spec.target_in_flight, scale_in_cooldown=cooldown,
        scale_to_zero_after=to_zero,
        max_batch_size=spec.max_batch_size, max_wait_ms=spec.max_wait_ms, max_body=max_body,
        capture_percent=spec.capture_percent, capture_table=capture_table,
        public=spec.public, project_id=project_id, created_by=caller.user_id,
        updated_at=utcnow())
    session.add(endpoint)
    session.commit()
    return endpoint


def _set_env(session: Session, caller: Principal, variant: dict[str, Any], env: str | None, *,
             cluster: str | None) -> None:
    """Check a variant's ``--env`` and set it on the variant (``env``, and a named
    environment's digest as ``environment``)."""
    from cumulo.serving import environments

    env, digest = environments.check_env(session, caller, env)
    if cluster is not None and env not in (None, environments.SERVER):
        raise Invalid(f"--env {env}: an endpoint on a Ray cluster runs in the cluster's own "
                      "Python environment (Ray Serve's replicas), not in one built here; "
                      "install the model's requirements on the cluster and leave --env out, "
                      "or serve it on this machine (leave out --cluster)",
                      details={"env": env, "cluster": cluster})
    variant["env"] = env
    if digest is not None:
        variant["environment"] = digest


def _check_envs_agree(variants: list[dict[str, Any]]) -> None:
    """Variants that ask for environments known to differ are refused (the server's and a
    model's own, or two named ones): a replica process loads every variant of its endpoint.
    Where a model's own environment lands is known once it is resolved, by the runtime."""
    asked = [(v["name"], v["env"], v.get("environment")) for v in variants
             if v["env"] is not None]
    for i, (name_a, env_a, digest_a) in enumerate(asked):
        for name_b, env_b, digest_b in asked[i + 1:]:
            differ = ({env_a, env_b} == {"model", "server"} if "model" in (env_a, env_b)
                      else digest_a != digest_b)
            if differ:
                raise Invalid(f"variant {name_a} asks for --env {env_a} and variant {name_b} "
                              f"for --env {env_b}: one replica process serves every variant "
                              "of an endpoint, so they must share one environment",
                              details={"variants": [name_a, name_b]})


def _resolve_variants(registry: Registry, wanted: list[VariantSpec]) -> list[dict[str, Any]]:
    variants: list[dict[str, Any]] = []
    for v in wanted:
        model, version = resolve_model(registry, v.model)
        name = v.name or f"{model}-{version}"
        _check_variant_name(name)
        if any(x["name"] == name for x in variants):
            raise Invalid(f"two variants are named {name!r}; name them with 'name'")
        variants.append({"name": name, "model": model, "version": version,
                         "weight": v.weight, "shadow": v.shadow})
    return variants


def update_endpoint(session: Session, caller: Principal, name: str, change: EndpointChange,
                    *, registry: Callable[[], Registry]) -> Endpoint:
    """Shift traffic to a new model (a rollout, :mod:`cumulo.serving.rollout`), set the
    variants' weights, or change the settings; every check is made before anything changes."""
    endpoint = get_endpoint(session, name)
    if endpoint.state in ("creating", "failed"):
        raise Conflict(f"endpoint {name!r} is {endpoint.state}; update it once it is in "
                       "service" if endpoint.state == "creating" else
                       f"endpoint {name!r} failed; 'cumulo endpoints rm {name}' and create it "
                       "again")
    min_r = endpoint.min_replicas if change.min_replicas is None else change.min_replicas
    max_r = endpoint.max_replicas if change.max_replicas is None else change.max_replicas
    if change.max_replicas is None and change.min_replicas is not None:
        max_r = max(max_r, change.min_replicas, 1)
    target = change.target_in_flight or endpoint.target_in_flight
    cooldown = (endpoint.scale_in_cooldown if change.scale_in_cooldown is None
                else _seconds(change.scale_in_cooldown, "--scale-in-cooldown"))
    to_zero = (endpoint.scale_to_zero_after if change.scale_to_zero_after is None
               else _seconds(change.scale_to_zero_after, "--scale-to-zero-after"))
    _check_scaling(min_r, max_r, target, cooldown, to_zero)
    batch = endpoint.max_batch_size if change.max_batch_size is None else change.max_batch_size
    wait = endpoint.max_wait_ms if change.max_wait_ms is None else change.max_wait_ms
    _check_batching(batch, wait)
    new_rollout = new_variants = None
    if change.env is not None and change.model is None:
        raise Invalid("--env goes with --model: it says where the new variant runs. An "
                      "endpoint's replicas keep the environment they were created with; to "
                      f"serve {name}'s model in another, create a new endpoint with --env")
    if change.weights is not None:
        new_variants = _reweigh(endpoint, change.weights, shift=change.model is not None)
    if change.model is not None:
        new_variants, new_rollout = _begin_shift(session, caller, endpoint, change, registry)
        new_rollout["by"] = caller.user_name
    capture_percent = (endpoint.capture_percent if change.capture_percent is None
                       else change.capture_percent)
    capture_table = endpoint.capture_table
    if change.capture_table is not None or capture_percent:  # turned off: the table is kept
        capture_table = _check_capture(session, caller, name, capture_percent,
                                       change.capture_table or endpoint.capture_table,
                                       projects.name_of(session, endpoint.project_id))
    endpoint.min_replicas, endpoint.max_replicas = min_r, max_r
    endpoint.target_in_flight, endpoint.scale_in_cooldown = target, cooldown
    endpoint.scale_to_zero_after = to_zero
    endpoint.max_batch_size, endpoint.max_wait_ms = batch, wait
    endpoint.capture_percent, endpoint.capture_table = capture_percent, capture_table
    if change.public is not None:
        endpoint.public = change.public
    if new_rollout is not None and new_variants is not None:
        endpoint.variants, endpoint.rollout, endpoint.state = new_variants, new_rollout, "updating"
    elif new_variants is not None:
        endpoint.variants = new_variants
    endpoint.updated_at = utcnow()
    session.commit()
    return endpoint


def _begin_shift(session: Session, caller: Principal, endpoint: Endpoint,
                 change: EndpointChange,
                 registry: Callable[[], Registry]) -> tuple[list[dict[str, Any]],
                                                            dict[str, Any]]:
    """The first step's variants and the rollout's state, for a shift to ``change.model``."""
    name = endpoint.name
    if endpoint.state == "updating":
        raise Conflict(f"endpoint {name!r} is shifting traffic already; wait for it, or "
                       f"'cumulo endpoints rollback {name}'")
    steps = rollout.plan(change.strategy, canary_percent=change.canary_percent,
                         step_percent=change.step_percent)
    bake = _seconds(change.bake_s, "--bake")
    if bake > 86_400:
        raise Invalid("--bake must be at most a day (86400 seconds)")
    if change.max_error_rate is not None and not 0 <= change.max_error_rate <= 1:
        raise Invalid("--max-error-rate is a share of requests, 0-1 (0.01 is 1%)")
    if change.max_p99_ms is not None and change.max_p99_ms <= 0:
        raise Invalid("--max-p99-ms must be above 0")
    assert change.model is not None
    model, version = resolve_model(registry(), change.model)
    variant = change.variant or f"{model}-{version}"
    _check_variant_name(variant)
    if any(v["name"] == variant for v in endpoint.variants):
        raise Conflict(f"endpoint {name!r} has a variant {variant!r} already; name the "
                       "new one with --variant")
    new: dict[str, Any] = {"name": variant, "model": model, "version": version}
    _set_env(session, caller, new, change.env, cluster=endpoint.cluster)
    _check_same_environment(endpoint, new)
    return rollout.begin(
        endpoint.variants, new,
        change.strategy, steps, bake_s=bake, max_error_rate=change.max_error_rate,
        max_p99_ms=change.max_p99_ms)


def _check_same_environment(endpoint: Endpoint, new: dict[str, Any]) -> None:
    """A new variant named to run elsewhere than the endpoint's replicas is refused now
    (one that asks for its model's environment is checked once that is resolved)."""
    if new["env"] in (None, "model"):
        return
    running = {v["environment"] for v in endpoint.variants if "environment" in v}
    if running and new.get("environment") not in running:
        where = next(iter(running))
        now = f"environment {where[:12]}" if where else "the server's environment"
        raise Conflict(f"endpoint {endpoint.name!r} runs in {now}, and --env {new['env']} is "
                       "another: one replica process serves every variant of an endpoint; "
                       "serve the new model on a new endpoint with --env",
                       details={"endpoint": endpoint.name, "env": new["env"]})


def _reweigh(endpoint: Endpoint, weights: dict[str, float], *,
             shift: bool) -> list[dict[str, Any]]:
    """The endpoint's variants with new weights, as SageMaker's UpdateEndpointWeights does."""
    name = endpoint.name
    if shift:
        raise Invalid("give either model (a traffic shift) or weights, not both")
    if endpoint.state == "updating":
        raise Conflict(f"endpoint {name!r} is shifting traffic; wait for it, or "
                       f"'cumulo endpoints rollback {name}'")
    known = [v["name"] for v in endpoint.variants]
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise Invalid(f"endpoint {name!r} has no variant {unknown[0]!r}; its variants: "
                      f"{', '.join(known)}", details={"variant": unknown[0]})
    if any(w < 0 for w in weights.values()):
        raise Invalid("a variant's weight must not be negative")
    variants = [{**v, "weight": float(weights.get(v["name"], v["weight"]))}
                for v in endpoint.variants]
    _check_traffic(variants)
    return variants


def rollback_endpoint(session: Session, caller: Principal, name: str) -> Endpoint:
    """Stop the traffic shift under way: back to the variants before it. The endpoint stays
    ``updating`` until its replicas follow."""
    endpoint = get_endpoint(session, name)
    if endpoint.state != "updating" or not endpoint.rollout:
        raise Conflict(f"endpoint {name!r} is not shifting traffic; to go back to an older "
                       f"model, update it: cumulo endpoints update {name} --model NAME:VERSION")
    state = copy.deepcopy(endpoint.rollout)
    if state["state"] in ("finishing", "rolling_back"):
        raise Conflict(f"endpoint {name!r} is {state['state'].replace('_', ' ')} already")
    now = time.time()
    reason = f"rolled back by {caller.user_name}"
    state.update(state="rolling_back", reason=reason)
    state["log"].append({"at": now, "event": f"rolling back: {reason}"})
    endpoint.variants = [dict(v) for v in state["previous"]]
    endpoint.rollout, endpoint.updated_at = state, utcnow()
    session.commit()
    return endpoint


def delete_endpoint(session: Session, name: str) -> None:
    """Mark the endpoint ``deleting``: gone from the API at once; the manager stops its
    replicas and removes the row."""
    endpoint = get_endpoint(session, name)
    endpoint.state, endpoint.updated_at = "deleting", utcnow()
    session.commit()


# --- projects ----------------------------------------------------------------------------------

def _project_of(session: Session, name: str) -> str | None:
    """The project of ``endpoint/NAME``, for rights bound in a project (invoking included)."""
    project_id = session.scalar(select(Endpoint.project_id).where(Endpoint.name == name))
    return projects.name_of(session, project_id)


def _endpoints_in(session: Session, project_id: int) -> float:
    """The project's endpoints, one being deleted included until its replicas are gone."""
    return float(session.scalar(select(func.count()).select_from(Endpoint)
                                .where(Endpoint.project_id == project_id)) or 0)


holders.register("endpoint", _project_of)
projects.register_meter("endpoints", _endpoints_in)
