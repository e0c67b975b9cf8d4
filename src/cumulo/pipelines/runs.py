"""Pipeline runs: each step a job, independent steps at once, cached steps skipped.

:func:`start_run` checks the parameters and makes the run's rows; the :class:`Orchestrator`,
a thread of the control plane, moves the active runs it owns on whenever the job supervisor has
stepped (a job started or ended) or a run was started:

- a step whose inputs are all ready runs: as a job (``python -m cumulo.pipelines.step``), or
  in the orchestrator itself for a Condition, which only compares a number;
- unless its cache key (component, resolved parameters, input values, and for Import Data
  the version or files it reads) matches a step that succeeded before: then its outputs are
  reused, without a job (``cached``);
- a step whose input comes from a step that failed or was skipped is skipped, as is a step
  on the branch of a condition that was not taken; nothing waits for ever;
- the run ends when every step has: ``failed`` if one failed, else ``succeeded``.

:func:`retry_run` starts a new run of the same version and parameters whose steps that
succeeded before are reused, so it goes on from the step that failed.

Several control planes can share one database (:mod:`cumulo.leases`). Each run is owned by
one of them, which alone moves it on: the one that started it (or fired its schedule). A run
whose owner's lease ran out (or that predates control planes) is claimed by the first other
control plane to look, with a claim that names the old owner, so exactly one gets it; the
orchestrator keeps nothing of a run in memory, so the claim is the whole takeover. A control
plane whose lease is not renewed acts on no run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from sqlalchemy import or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from cumulo.access import projects
from cumulo.db import utcnow
from cumulo.errors import Conflict, CumuloError, Invalid, NotFound
from cumulo.leases import Membership, live_planes
from cumulo.pipelines.definition import (
    PARAMETER_TYPES,
    check,
    number_problem,
    order,
    ports,
    requirements_text,
)
from cumulo.pipelines.metrics import observe_run
from cumulo.pipelines.models import (
    RUN_ACTIVE,
    RUN_FINISHED,
    STEP_DONE,
    Pipeline,
    PipelineRun,
    StepRun,
)
from cumulo.pipelines.service import project_of
from cumulo.principal import Principal
from cumulo.storage.backends import Backend

__all__ = ["FireSchedules", "Orchestrator", "cancel_run", "claim_run", "get_run", "list_runs",
           "new_run", "parse_parameters", "retry_run", "start_run"]

log = logging.getLogger("cumulo.pipelines")

# Bumped when a component's implementation changes what it writes: cached outputs of the
# older code are not reused.
COMPONENT_CODE = "1"
STEP_COMMAND = ["python", "-m", "cumulo.pipelines.step"]


def _new_id() -> str:
    return "run-" + secrets.token_hex(5)


# --- parameters ----------------------------------------------------------------------------------

def parse_parameters(declared: dict[str, dict[str, Any]],
                     given: dict[str, Any]) -> dict[str, Any]:
    """The run's parameter values: each given value checked against its declared type (a
    string from the command line, ``threshold=0.8``, is converted), defaults for the rest."""
    out: dict[str, Any] = {}
    for name, value in given.items():
        spec = declared.get(name)
        if spec is None:
            raise Invalid(f"the pipeline has no parameter {name!r}; it has "
                          f"{', '.join(declared) or 'none'}")
        out[name] = _convert(name, spec["type"], value)
        if (kept_badly := number_problem(out[name])) is not None:
            raise Invalid(f"parameter {name!r}: {kept_badly}")
    for name, spec in declared.items():
        if name not in out:
            if "default" not in spec:
                raise Invalid(f"parameter {name!r} ({spec['type']}) has no default: give it, "
                              f"--param {name}=VALUE")
            out[name] = spec["default"]
    return out


def _convert(name: str, kind: str, value: Any) -> Any:
    assert kind in PARAMETER_TYPES
    problem = f"parameter {name!r} is {'an' if kind == 'integer' else 'a'} {kind}, not {value!r}"
    if isinstance(value, str) and kind != "string":
        text = value.strip()
        try:
            if kind == "integer":
                return int(text)
            if kind == "number":
                return float(text)
        except ValueError:
            raise Invalid(problem) from None
        if kind == "boolean":
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise Invalid(problem)
    ok = {"string": isinstance(value, str),
          "integer": isinstance(value, int) and not isinstance(value, bool),
          "number": isinstance(value, int | float) and not isinstance(value, bool),
          "boolean": isinstance(value, bool)}[kind]
    if not ok:
        raise Invalid(problem)
    return value


def _resolve(value: Any, parameters: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$param"}:
            return parameters[value["$param"]]
        return {k: _resolve(v, parameters) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, parameters) for v in value]
    return value


# --- runs ----------------------------------------------------------------------------------------

def start_run(session: Session, principal: Principal, name: str, *,
              parameters: dict[str, Any] | None = None, cluster: str = "local",
              version: int | None = None, trigger: str = "manual",
              retry_of: str | None = None, owner: str | None = None) -> PipelineRun:
    """Check and queue a run of the pipeline, owned by control plane ``owner`` (None: the
    first to look takes it); nothing is made when a check fails."""
    run, steps = new_run(session, principal, name, parameters=parameters, cluster=cluster,
                         version=version, trigger=trigger, retry_of=retry_of, owner=owner)
    session.add(run)
    session.add_all(steps)
    session.commit()
    return run


def new_run(session: Session, principal: Principal, name: str, *,
            parameters: dict[str, Any] | None = None, cluster: str = "local",
            version: int | None = None, trigger: str = "manual", retry_of: str | None = None,
            owner: str | None = None) -> tuple[PipelineRun, list[StepRun]]:
    """A run's rows, checked, not yet added to the session: for a caller that writes them in
    the same transaction as something else (a schedule's claim of its firing)."""
    from cumulo.compute.clusters import get_cluster
    from cumulo.pipelines.service import check_environments, get_pipeline, get_version

    pipeline = get_pipeline(session, name)
    row = get_version(session, pipeline, version)
    definition = row.definition
    values = parse_parameters(definition.get("parameters", {}), parameters or {})
    if values:  # each value where it is used, as the component checks a literal there
        check({**definition, "nodes": [{**n, "params": _resolve(n["params"], values)}
                                       for n in definition["nodes"]]})
    get_cluster(session, cluster)  # NotFound names the clusters there are
    check_environments(session, definition, parameters=values, when="run")
    run = PipelineRun(id=_new_id(), pipeline=name, version=row.version,
                      definition=definition, parameters=values, cluster=cluster,
                      state="queued", trigger=trigger[:128], retry_of=retry_of,
                      created_by=principal.user_id, created_at=utcnow(), owner=owner)
    steps = [StepRun(run_id=run.id, node=node["id"], component=node["component"],
                     state="pending", inputs={}, outputs={}) for node in definition["nodes"]]
    return run, steps


def get_run(session: Session, run_id: str, principal: Principal | None = None) -> PipelineRun:
    run = session.get(PipelineRun, run_id)
    if run is None or (principal is not None and not principal.is_admin
                       and run.created_by != principal.user_id):
        raise NotFound(f"no pipeline run {run_id!r}; 'cumulo pipelines runs ls' lists them",
                       details={"run": run_id})
    return run


def list_runs(session: Session, principal: Principal, *, pipeline: str | None = None,
              project: str | None = None, limit: int = 50) -> list[PipelineRun]:
    """Runs, newest first: the caller's own (everyone's for an admin), of one pipeline or of
    one project's pipelines."""
    query = select(PipelineRun).order_by(PipelineRun.created_at.desc(), PipelineRun.id.desc())
    if not principal.is_admin:
        query = query.where(PipelineRun.created_by == principal.user_id)
    if pipeline:
        query = query.where(PipelineRun.pipeline == pipeline)
    if project:
        query = query.where(PipelineRun.pipeline.in_(select(Pipeline.name).where(
            Pipeline.project_id == projects.project_id_for(session, project))))
    return list(session.scalars(query.limit(limit)))


def steps_of(session: Session, run: PipelineRun) -> list[StepRun]:
    rows = {s.node: s for s in session.scalars(select(StepRun).where(StepRun.run_id == run.id))}
    return [rows[n] for n in order(run.definition) if n in rows]


def retry_run(session: Session, principal: Principal, run_id: str, *,
              owner: str | None = None) -> PipelineRun:
    """A new run of the same version, parameters and cluster: the steps that succeeded are
    taken from the cache (even those that opted out of it), the rest run."""
    old = get_run(session, run_id, principal)
    if old.state in RUN_ACTIVE:
        raise Conflict(f"run {run_id} is still {old.state}; cancel it first, or wait")
    if old.state == "succeeded":
        raise Conflict(f"run {run_id} succeeded; start a new one with 'cumulo pipelines run "
                       f"{old.pipeline}'")
    return start_run(session, principal, old.pipeline, parameters=old.parameters,
                     cluster=old.cluster, version=old.version, trigger=f"retry of {run_id}",
                     retry_of=run_id, owner=owner)


def cancel_run(session: Session, principal: Principal, run_id: str) -> PipelineRun:
    run = get_run(session, run_id, principal)
    if run.state in RUN_FINISHED:
        raise Conflict(f"run {run_id} already {run.state}")
    run.cancel_requested_at = utcnow()
    session.commit()
    return run


def claim_run(session: Session, run_id: str, *, old: str | None, owner: str) -> bool:
    """Make an active run ``owner``'s where it is still ``old``'s (None: no one's); whether
    it was. Of control planes that claim it from the same old owner, exactly one gets it."""
    claimed = session.execute(  # type: ignore[attr-defined]
        update(PipelineRun).where(PipelineRun.id == run_id, PipelineRun.state.in_(RUN_ACTIVE),
                                  PipelineRun.owner.is_not_distinct_from(old))
        .values(owner=owner)).rowcount
    session.commit()
    return bool(claimed)


# --- the orchestrator ----------------------------------------------------------------------------

class FireSchedules(Protocol):
    """Starts the runs the schedules owe, owned by control plane ``owner``."""

    def __call__(self, session: Session, storage: Backend, *, owner: str | None) -> object: ...


class Orchestrator:
    """A thread of the control plane that moves the active runs it owns on.

    ``fire_schedules`` starts the runs the schedules owe (``schedules.fire``, which starts them
    with this module's :func:`new_run`: given here, so that the two modules do not import
    each other). ``plane`` is this control plane: its id owns runs, and while its lease is not
    renewed the orchestrator acts on none."""

    def __init__(self, engine: Engine, storage: Backend,
                 notify_jobs: Callable[[], None] = lambda: None, *,
                 fire_schedules: FireSchedules, plane: Membership) -> None:
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.storage = storage
        self.notify_jobs = notify_jobs
        self.fire_schedules = fire_schedules
        self.plane = plane
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fired = 0.0  # when the schedules were last checked (time.monotonic())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cumulo-pipelines",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def notify(self) -> None:
        self.wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wake.clear()
            busy = False
            try:
                with self.sessions() as session:
                    busy = self.tick(session)
            except Exception:  # a bug here must not end the orchestrator: log it, go on
                log.exception("pipeline orchestrator step failed")
            self.wake.wait(1.0 if busy else 5.0)

    def tick(self, session: Session) -> bool:
        """Start what the schedules owe; take over the runs no live control plane owns; move
        each active run of ours on; whether any is active."""
        if not self.plane.valid():
            return False  # the lease is not renewed: our runs may be another's now
        # Once a second at most: the job supervisor wakes this thread four times a second
        # while jobs run, and a table trigger reads its table's log each time it is checked.
        if time.monotonic() - self._fired >= 1.0:
            self._fired = time.monotonic()
            try:
                self.fire_schedules(session, self.storage, owner=self.plane.id)
            except Exception:  # a broken schedule must not stop the runs
                log.exception("pipeline schedules failed")
                session.rollback()
        self._take_over(session)
        runs = list(session.scalars(select(PipelineRun).where(
            PipelineRun.state.in_(RUN_ACTIVE), PipelineRun.owner == self.plane.id)
            .order_by(PipelineRun.created_at)))
        for run in runs:
            if not self.plane.valid():
                break  # it ran out while we worked: the rest may be another's
            try:
                self._advance(session, run)
            except Exception as exc:  # one broken run must not stall the others
                log.exception("pipeline run %s failed to advance", run.id)
                session.rollback()
                self._abandon(session, run.id, f"the orchestrator failed on this run: {exc!r}")
        return bool(runs)

    def _take_over(self, session: Session) -> None:
        """Claim the active runs no live control plane owns (their owner's lease ran out, or
        they predate control planes), one claim each, naming the old owner: of control
        planes that look at the same moment, exactly one gets each run. Nothing of a run is
        kept in memory, so the claim is all there is to taking it over."""
        live = [p.id for p in live_planes(session)] + [self.plane.id]
        orphans = session.execute(select(PipelineRun.id, PipelineRun.owner).where(
            PipelineRun.state.in_(RUN_ACTIVE),
            or_(PipelineRun.owner.is_(None), PipelineRun.owner.not_in(live)))).all()
        for run_id, old in orphans:
            if claim_run(session, run_id, old=old, owner=self.plane.id):
                log.info("pipeline run %s taken over (its control plane %s stopped)",
                         run_id, old)

    def _advance(self, session: Session, run: PipelineRun) -> None:
        from cumulo.compute.jobs import find_job

        steps = {s.node: s for s in session.scalars(
            select(StepRun).where(StepRun.run_id == run.id))}
        if run.state == "queued":
            run.state, run.started_at = "running", utcnow()
        definition = run.definition
        nodes = {n["id"]: n for n in definition["nodes"]}
        feeds: dict[str, list[tuple[str, str, str]]] = {n: [] for n in nodes}
        for edge in definition["edges"]:
            src, out = edge["from"].split(".")
            dst, port = edge["to"].split(".")
            feeds[dst].append((port, src, out))
        if run.cancel_requested_at is not None:
            self._cancel(session, run, steps)
        submitted = False
        for node_id in order(definition):
            step = steps[node_id]
            if step.state == "running" and step.job_id:
                job = find_job(session, step.job_id)
                if job is not None and job.state not in ("queued", "starting", "running"):
                    self._finished(step, job, run.cancel_requested_at is not None)
                    if step.state == "succeeded":
                        self._succeeded(session, run, step, nodes[node_id])
            if step.state != "pending" or run.cancel_requested_at is not None:
                continue
            upstream = [steps[src] for _, src, _ in feeds[node_id]]
            if any(u.state not in STEP_DONE for u in upstream):
                continue
            if self._skip(step, feeds[node_id], steps):
                continue
            node = nodes[node_id]
            inputs = {port: steps[src].outputs.get(out) for port, src, out in feeds[node_id]
                      if port != "after"}
            missing = [p for p, v in inputs.items() if v is None]
            if missing:
                self._end(step, "failed", f"input {missing[0]!r} got no value from its step")
                continue
            params = _resolve(node["params"], run.parameters)
            step.inputs = inputs
            if node["component"] == "condition":
                self._condition(step, params, inputs)
                continue
            try:
                key = self._cache_key(session, run, node, params, inputs)
            except CumuloError as exc:  # its source table or files are gone, say
                self._end(step, "failed", exc.message)
                continue
            step.cache_key = key
            if run.retry_of and self._from_retried(session, run.retry_of, step):
                continue
            if key is not None and node.get("cache", True) and \
                    self._from_cache(session, run, step, key):
                continue
            self._submit(session, run, step, node, params, inputs)
            submitted = True
        done = all(s.state in STEP_DONE for s in steps.values())
        if done:
            states = {s.state for s in steps.values()}
            run.state = ("cancelled" if run.cancel_requested_at is not None else
                         "failed" if "failed" in states else "succeeded")
            run.finished_at = utcnow()
            failed = [s for s in steps.values() if s.state == "failed"]
            if failed:
                run.message = f"step {failed[0].node} failed: {failed[0].message}"
        session.commit()
        if done:
            observe_run(pipeline=run.pipeline, state=run.state)
        if submitted:
            self.notify_jobs()

    def _abandon(self, session: Session, run_id: str, message: str) -> None:
        """End a run the orchestrator cannot carry on: its jobs cancelled, its steps closed."""
        from cumulo.compute.jobs import cancel_job

        run = session.get(PipelineRun, run_id)
        if run is None:
            return
        for step in session.scalars(select(StepRun).where(StepRun.run_id == run_id)):
            if step.state == "running" and step.job_id:
                with contextlib.suppress(Exception):
                    cancel_job(session, Principal(0, "cumulo", True, 0), step.job_id)
            if step.state not in STEP_DONE:
                self._end(step, "cancelled", message)
        run.state, run.finished_at, run.message = "failed", utcnow(), message
        session.commit()
        observe_run(pipeline=run.pipeline, state=run.state)

    # --- steps ---------------------------------------------------------------------------------

    def _succeeded(self, session: Session, run: PipelineRun, step: StepRun,
                   node: dict[str, Any]) -> None:
        from cumulo.pipelines import lineage

        params = _resolve(node["params"], run.parameters)
        in_ports, out_ports = ports(node)
        lineage.record(session, run.id, run.pipeline, step,
                       {p.name: p.type for p in in_ports}, {p.name: p.type for p in out_ports},
                       params)
        if step.component == "deploy_to_endpoint":
            # Keyed by what the endpoint serves now: the next run reuses it.
            step.cache_key = self._cache_key(session, run, node, params, step.inputs)

    def _end(self, step: StepRun, state: str, message: str | None = None) -> None:
        now = utcnow()
        step.state, step.message = state, message
        step.started_at = step.started_at or now
        step.finished_at = now

    def _skip(self, step: StepRun, feeds: list[tuple[str, str, str]],
              steps: dict[str, StepRun]) -> bool:
        for port, src, out in feeds:
            source = steps[src]
            if port == "after":
                if source.state != "succeeded" and source.state != "cached":
                    self._end(step, "skipped", f"condition {src} did not run ({source.state})")
                    return True
                if source.outputs.get("branch") != out:
                    self._end(step, "skipped", f"on condition {src}'s {out!r} branch, and it "
                              f"took {source.outputs.get('branch')!r}")
                    return True
            elif source.state not in ("succeeded", "cached"):
                self._end(step, "skipped", f"its input {port!r} comes from step {src}, which "
                          f"{'was ' if source.state != 'failed' else ''}{source.state}")
                return True
        return False

    def _condition(self, step: StepRun, params: dict[str, Any],
                   inputs: dict[str, Any]) -> None:
        metrics = inputs.get("metrics") or {}
        name = params["metric"]
        if name not in metrics:
            self._end(step, "failed", f"no metric {name!r}; the metrics are "
                      f"{', '.join(sorted(metrics)) or 'none'}")
            return
        value, op, target = float(metrics[name]), params.get("op", ">="), params["value"]
        held = {">=": value >= target, ">": value > target, "<=": value <= target,
                "<": value < target, "==": value == target, "!=": value != target}[op]
        step.outputs = {"branch": "then" if held else "else", "value": value}
        self._end(step, "succeeded", f"{name} = {value:.6g} {op} {target}: "
                  f"{'true' if held else 'false'}")
        step.seconds = 0.0

    def _cache_key(self, session: Session, run: PipelineRun, node: dict[str, Any],
                   params: dict[str, Any], inputs: dict[str, Any]) -> str | None:
        source: Any = None
        if node["component"] == "notebook":
            return None  # a notebook's run is its purpose (a report, a side effect): always run
        if node["component"] == "import_data":
            source = self._source_version(session, params)
            if source is None:
                return None  # a URL: what it serves now is unknown
        elif node["component"] == "sql_transform":
            # The lake tables the query names itself, at their versions now.
            source = self._sql_tables(session, params["query"])
            if source is None:
                return None
        elif node["component"] == "deploy_to_endpoint":
            # Reused only while the endpoint still serves what the step deployed, from a run
            # on the same cluster (a Ray run puts its endpoint on the Ray cluster).
            source = self._endpoint_state(session, params["endpoint"])
            if source is None:
                return None
            source = {"serves": source, "run_cluster": run.cluster}
        doc = {"component": node["component"], "code": COMPONENT_CODE, "params": params,
               "inputs": inputs, "source": source}
        if params.get("environment"):  # what the name means now: it can be moved
            from cumulo.compute.environments.service import get_by_name

            doc["environment"] = get_by_name(session, params["environment"]).digest
        project = project_of(session, run.pipeline)
        if project is not None:  # a project's steps reuse only its own work (and quota)
            doc["project"] = project
        return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def _source_version(self, session: Session, params: dict[str, Any]) -> Any:
        """What Import Data would read now: a table's version, or the files' names, sizes and
        times. None for a URL."""
        if params["source"] == "table":
            from cumulo.lake import catalog
            from cumulo.lake.refs import parse_ref

            return catalog.current_version(session, self.storage, parse_ref(params["table"]))
        if params["source"] == "files":
            from cumulo.storage.service import list_objects

            bucket, _, prefix = params["path"].partition("/")
            files, cursor = [], None
            while True:
                page = list_objects(session, bucket, prefix=prefix, cursor=cursor)
                files += [(o.key, o.sha256) for o in page.objects]
                cursor = page.next_cursor
                if cursor is None:
                    return files
        return None

    def _sql_tables(self, session: Session, query: str) -> list[Any] | None:
        """(table, version) of each lake table a query names, other than t1-t3; None when
        that cannot be told (then the step is not cached)."""
        from cumulo.lake.refs import parse_ref
        from cumulo.lake.sqlguard import table_names

        try:
            # From the parse tree only: binding the user's SQL (duckdb.get_table_names) would
            # run its table functions on an unsandboxed connection, opening files.
            names = table_names(query)
        except CumuloError:
            return None
        out = []
        for name in sorted(names):
            if "." not in name:
                continue  # t1-t3, or a name the query defines itself (a CTE)
            try:
                out.append((name, self._source_version(
                    session, {"source": "table", "table": str(parse_ref(name.lower()))})))
            except CumuloError:
                return None
        return out

    def _endpoint_state(self, session: Session, name: str) -> Any:
        from cumulo.serving.endpoints import live_variants

        variants = live_variants(session, name)
        if variants is None:
            return None
        return sorted((v["model"], str(v["version"]), v["weight"], bool(v.get("shadow")))
                      for v in variants)

    def _from_retried(self, session: Session, retried: str, step: StepRun) -> bool:
        """In a retry: the step's outputs from the run it retries, if it succeeded there with
        the same inputs (what comes before it was reused the same way)."""
        earlier = session.scalar(select(StepRun).where(StepRun.run_id == retried,
                                                       StepRun.node == step.node))
        if earlier is None or earlier.state not in ("succeeded", "cached") or \
                earlier.inputs != step.inputs:
            return False
        step.outputs = dict(earlier.outputs)
        step.cached_from = earlier.cached_from or earlier.run_id
        step.cache_key, step.seconds = earlier.cache_key, 0.0
        self._end(step, "cached", f"outputs of run {step.cached_from} (retried)")
        return True

    def _from_cache(self, session: Session, run: PipelineRun, step: StepRun, key: str) -> bool:
        earlier = session.scalar(select(StepRun).where(
            StepRun.cache_key == key, StepRun.state.in_(("succeeded", "cached")),
            StepRun.run_id != run.id).order_by(StepRun.finished_at.desc()).limit(1))
        if earlier is None:
            return False
        step.outputs = dict(earlier.outputs)
        step.cached_from = earlier.cached_from or earlier.run_id
        step.seconds = 0.0
        self._end(step, "cached", f"outputs of run {step.cached_from}")
        return True

    def _submit(self, session: Session, run: PipelineRun, step: StepRun, node: dict[str, Any],
                params: dict[str, Any], inputs: dict[str, Any]) -> None:
        from cumulo.compute.jobs import JobRequest, submit_job

        in_ports, out_ports = ports(node)
        tables = {p.name: inputs[p.name] for p in in_ports
                  if p.type == "table" and p.name in inputs}
        outputs = {p.name: {"type": p.type,
                            "table": _output_table(run.pipeline, step.node, p.name)}
                   for p in out_ports}
        project = project_of(session, run.pipeline)
        spec = {"run": run.id, "pipeline": run.pipeline, "node": step.node,
                "cluster": run.cluster, "project": project,
                "component": node["component"], "params": params, "inputs": inputs,
                "outputs": outputs}
        session.commit()  # what this pass decided so far stays, whatever the submit does
        try:
            principal = _principal(session, run)
            # The pipeline's project's: its quotas count the job (past one, the step fails
            # saying so), rights bound there hold for it.
            job = submit_job(session, self.storage, principal, JobRequest(
                cluster=run.cluster, command=list(STEP_COMMAND), name=f"{run.pipeline}/"
                f"{step.node}", env={"PIPELINE_STEP": json.dumps(spec)}, inputs=tables,
                tags=[f"pipeline:{run.pipeline}", f"pipeline-run:{run.id}"],
                project=project, **_environment(step.node, params),
                **_notebook_job(node["component"], params)))
        except Exception as exc:  # an input table gone, the cluster removed, a quota: it fails
            session.rollback()
            self._end(step, "failed", f"its job could not be submitted: {exc}")
            return
        step.job_id, step.state, step.started_at = job.id, "running", utcnow()
        session.commit()

    def _finished(self, step: StepRun, job: Any, cancelling: bool = False) -> None:
        step.seconds = job.wall_seconds
        if job.state == "succeeded":
            try:
                with self.storage.open(f"jobs/{job.id}/outputs/step.json") as f:
                    step.outputs = json.loads(f.read())["outputs"]
            except (OSError, ValueError, KeyError) as exc:
                self._end(step, "failed", f"its job left no outputs ({exc})")
                return
            self._end(step, "succeeded")
            return
        step.log_tail = job.log_tail
        if job.state == "cancelled" and not cancelling:
            self._end(step, "failed", f"its job {job.id} was cancelled")
            return
        self._end(step, "failed" if job.state != "cancelled" else "cancelled",
                  job.reason or f"its job {job.id} {job.state}")

    def _cancel(self, session: Session, run: PipelineRun, steps: dict[str, StepRun]) -> None:
        from cumulo.compute.jobs import cancel_job

        principal = _principal(session, run)
        for step in steps.values():
            if step.state == "pending":
                self._end(step, "cancelled", "the run was cancelled")
            elif step.state == "running" and step.job_id and step.message is None:
                with contextlib.suppress(Conflict, NotFound):
                    cancel_job(session, principal, step.job_id)
                step.message = "cancelling"


def _principal(session: Session, run: PipelineRun) -> Principal:
    from cumulo.access.users import acting_as

    return acting_as(session, run.created_by, what="this run")


def _environment(node: str, params: dict[str, Any]) -> dict[str, Any]:
    """A step's own environment as its job asks for it: its requirements (named as the step's,
    in errors and as the job's environment label), or a named environment."""
    if params.get("requirements"):
        return {"requirements": requirements_text(params["requirements"]),
                "requirements_file": f"step {node}'s requirements"}
    if params.get("environment"):
        return {"environment": params["environment"]}
    return {}


def _notebook_job(component: str, params: dict[str, Any]) -> dict[str, Any]:
    """A Notebook step's job: its code snapshot (the notebook) and the resources it asks."""
    if component != "notebook":
        return {}
    return {"code": params.get("snapshot"), "cpus": float(params.get("cpus") or 1),
            "memory": params.get("memory")}


def _output_table(pipeline: str, node: str, port: str) -> str:
    """The lake table a step's output is written to: ``pipelines.PIPELINE_NODE_PORT``."""
    name = f"{pipeline}_{node}_{port}".lower().replace("-", "_")
    if not name[0].isalpha() and name[0] != "_":
        name = "_" + name
    if len(name) > 63:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[:54]}_{digest}"
    return f"pipelines.{name}"
