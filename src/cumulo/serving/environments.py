"""Which Python environment serves a model: the server's own (``server``), the one its MLflow
flavor recorded (``model``: its ``requirements.txt`` and ``python_env.yaml``), or a named one
from ``cumulo envs`` (``NAME``). Environments are built by
:class:`cumulo.compute.environments.service.Builder`; this module only chooses and waits.

A replica process loads every variant of its endpoint, so an endpoint's variants all run in
one environment: :func:`endpoint_environment` picks it, or says which variants disagree.

Left unsaid (``env`` None), a variant is served in the environment its endpoint's other
variants run in when that satisfies the model's requirements, else in the server's when that
does, else in the model's own: a model logged with an older scikit-learn is served by that
scikit-learn, and a model logged here runs on the server's packages with nothing to build.

Each variant records the digest it runs in (``"environment"``, None for the server's) on the
endpoint's row, so that ``cumulo envs rm`` refuses to remove an environment an endpoint uses
(:func:`cumulo.compute.environments.service.env_in_use`).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.requirements import InvalidRequirement, Requirement

from cumulo.errors import Conflict, CumuloError, Invalid, NotFound
from cumulo.principal import Principal, require_each

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from cumulo.compute.environments.service import Builder
    from cumulo.compute.environments.spec import EnvSpec

__all__ = ["MODEL", "SERVER", "Choice", "check_env", "choose", "describe",
           "endpoint_environment", "interpreter", "unmet"]

log = logging.getLogger("cumulo.serving")

SERVER, MODEL = "server", "model"
BUILD_TIMEOUT = 1800.0  # seconds a replica waits for its environment's build, at most


@dataclass(frozen=True)
class Choice:
    """Where one variant runs."""

    env: str  # what serves it: server, model, or an environment's name
    digest: str | None  # its environment; None: the server's own packages
    note: str | None = None  # something the user should know (the model's Python is missing)
    spec: EnvSpec | None = None  # with env model: the model's requirements, as resolved


def check_env(session: Session, caller: Principal, env: str | None) -> tuple[str | None,
                                                                           str | None]:
    """An ``--env`` as asked, checked: (env, digest), the digest only for a named environment
    (NotFound names one that does not exist); (None, None) for the default."""
    if env is None or env == "":
        return None, None
    env = env.strip()
    if env in (SERVER, MODEL):
        return env, None
    from cumulo.compute.environments import service

    require_each(caller, "envs:Read", [f"env/{env}"])
    try:
        return env, service.get_by_name(session, env).digest
    except NotFound as exc:
        raise NotFound(f"--env {env}: {exc.message}; or use --env model (the model's own "
                       "requirements) or --env server (the server's packages)",
                       details=exc.details) from exc


def unmet(spec: EnvSpec, packages: dict[str, str]) -> list[str]:
    """The requirement lines of ``spec`` that ``packages`` (canonical name -> version) do not
    satisfy: a package missing, or at a version outside the line's specifier. A line whose
    marker does not hold on this machine is met; a ``name @ url`` line is met by the name."""
    missing = []
    for line in spec.lines:
        try:
            req = Requirement(line.text)
        except InvalidRequirement:  # pragma: no cover - spec.parse_requirements checked it
            missing.append(line.text)
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        have = packages.get(line.name)
        if have is None or (req.url is None and req.specifier
                            and not req.specifier.contains(have, prereleases=True)):
            missing.append(line.text)
    return missing


def _model_spec(folder: Path, *, asked: bool) -> tuple[EnvSpec | None, str | None]:
    """What the model at ``folder`` recorded it needs, and a note when its Python is not on
    this machine (the server's is used: MLflow's requirements rarely depend on the minor
    version, and a missing interpreter must not stop a model that ran before from serving).
    (None, None) when it recorded nothing and the default was asked."""
    from cumulo.compute.environments import build, spec

    if not asked and not (folder / "requirements.txt").is_file():
        return None, None
    try:
        wanted = spec.from_model(folder)
    except Invalid:
        if asked:
            raise
        log.warning("the model at %s: its requirements.txt is unreadable; serving it in the "
                    "server's environment", folder)
        return None, None
    if wanted.python is None:
        return wanted, None
    try:
        build.find_python(wanted.python)
    except Invalid:
        here = f"{sys.version_info[0]}.{sys.version_info[1]}"
        return (dataclasses.replace(wanted, python=None),
                f"the model was logged with Python {wanted.python}, which this machine does "
                f"not have; its requirements are installed for the server's Python {here}")
    return wanted, None


def _packages_of(session: Session, digest: str) -> dict[str, str]:
    """What an environment holds, by canonical name: its pins, over the server's own
    packages when it is a layer over them."""
    from cumulo.compute.environments import build, service

    env = service.find(session, digest)
    pins = build.lock_entries(env.lock)
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if env.isolated or env.python != here:
        return pins
    return {**build.base_packages(), **pins}


def choose(session: Session, folder: Path, *, env: str | None, digest: str | None = None,
           alongside: str | None = None, principal: Principal | None = None,
           project_id: int | None = None,
           waiting: Callable[[str], None] = lambda _: None) -> Choice:
    """Where the model at ``folder`` runs, for ``env`` as asked (None: the default; a name
    comes with its ``digest``). ``alongside``: the environment the endpoint's other variants
    run in, preferred by the default when it satisfies the model. Resolving the model's
    requirements may take uv a moment the first time (then it is a lookup); one that cannot
    be met raises, naming its line of the model's requirements.txt (``waiting`` is told
    when uv is asked)."""
    from cumulo.compute.environments import build, service

    if env == SERVER:
        return Choice(SERVER, None)
    if env not in (None, MODEL):
        return Choice(str(env), digest)
    wanted, note = _model_spec(folder, asked=env == MODEL)
    if wanted is None:
        return Choice(SERVER, None)
    if env is None:
        if alongside is not None and not unmet(wanted, _packages_of(session, alongside)):
            return Choice(MODEL, alongside, note, wanted)
        if not unmet(wanted, build.base_packages()):
            return Choice(SERVER, None)
    waiting("resolving its model's requirements")
    resolved = service.request(session, wanted, principal=principal, project_id=project_id)
    return Choice(MODEL, resolved.digest, note, wanted)


def endpoint_environment(choices: dict[str, Choice]) -> str | None:
    """The one environment every variant (by name) runs in; Conflict names two that differ."""
    digests = {c.digest for c in choices.values()}
    if len(digests) <= 1:
        return next(iter(digests), None)
    first, *rest = sorted(choices.items())
    other = next(kv for kv in rest if kv[1].digest != first[1].digest)
    raise Conflict(
        f"variant {first[0]} runs in {describe(first[1])} and variant {other[0]} in "
        f"{describe(other[1])}: one replica process serves every variant of an endpoint, so "
        "they must share one environment; give them the same --env (a named environment "
        "that suits both), or serve them on two endpoints",
        details={"variants": {name: c.digest for name, c in choices.items()}})


def describe(choice: Choice) -> str:
    """Where a variant runs, as a person reads it."""
    if choice.digest is None:
        return "the server's environment"
    if choice.env == MODEL:
        return f"its model's environment {choice.digest[:12]}"
    return f"environment {choice.env} ({choice.digest[:12]})"


def interpreter(builder: Builder, sessions: sessionmaker[Session], digest: str, *,
                waiting: Callable[[str], None] = lambda _: None,
                timeout: float = BUILD_TIMEOUT) -> str:
    """The interpreter of environment ``digest`` on this machine, built first if it is not
    (``waiting`` is told so); Conflict with the build's error if it fails."""
    from cumulo.compute.environments import service

    if not builder.ready(digest):
        waiting(f"building its environment {digest[:12]} (follow it: cumulo envs show "
                f"{digest[:12]})")
        future = builder.ensure(digest)
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        state = future.result() if future.done() else "building"
        if state != "ready":
            error = "it took too long" if state == "building" else "the build failed"
            with sessions() as session:
                row = _env_row(session, digest)
                if row is not None and row.error:
                    error = row.error
            raise Conflict(f"its environment {digest[:12]} could not be built: {error} (the "
                           f"build log: cumulo envs show {digest[:12]} --log)",
                           details={"environment": digest})
    with sessions() as session:
        service.touch(session, digest)  # envs ls and prune see it used
        session.commit()
    return builder.python(digest)


def _env_row(session: Session, digest: str) -> Any:
    from cumulo.compute.environments import service

    try:
        return service.find(session, digest)
    except CumuloError:
        return None
