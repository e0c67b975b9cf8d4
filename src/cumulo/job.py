"""Inside a job: where it is, its inputs, its output folder, and its metrics.

>>> import cumulo.job
>>> table = cumulo.job.inputs["train"].arrow()         # doctest: +SKIP
>>> (cumulo.job.output_dir / "model.txt").write_text("...")   # doctest: +SKIP
>>> cumulo.job.log_metric("loss", 0.3, step=1)         # doctest: +SKIP
>>> torch.save(state, cumulo.job.checkpoint_dir / "last.pt")   # doctest: +SKIP
>>> with cumulo.job.stream("clicks", idle=5) as consumer:     # doctest: +SKIP
...     for batch in consumer:                                # --input clicks=stream:clicks
...         handle(batch.records)
...         batch.checkpoint()

Everything here is read from the environment the runner sets, so it works in the job's own
subprocesses too. Outside a job, ``inputs`` is empty, ``output_dir`` is ``./output``,
``checkpoint_dir`` is ``./checkpoints`` and metrics are printed, so a script can be tried on a
laptop as it is.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cumulo import jobenv
from cumulo.errors import Invalid

if TYPE_CHECKING:
    import pyarrow as pa

    from cumulo.client import Client
    from cumulo.streams.group_sdk import GroupConsumer

# Also read lazily, through __getattr__: id, attempt, inputs, output_dir, hyperparameters and
# model_dir (script mode), and checkpoint_dir (kept from one attempt of the job to the next).
__all__ = ["JobInput", "in_job", "log_metric", "log_metrics", "stream", "sync_checkpoints"]


def in_job() -> bool:
    return jobenv.in_job()


def __getattr__(name: str) -> Any:
    # Read lazily: a warm worker imports this module before it knows its job.
    job = jobenv.current()
    if name == "id":
        return job.job_id if job else None
    if name == "attempt":
        return job.attempt if job else 1
    if name in ("output_dir", "checkpoint_dir"):
        outside = {"output_dir": "output", "checkpoint_dir": "checkpoints"}[name]
        path = getattr(job, name) if job else Path(outside)
        path.mkdir(parents=True, exist_ok=True)
        return path
    if name == "inputs":
        return _Inputs(job.inputs if job else {})
    if name == "hyperparameters":  # script mode (client.estimator): the estimator's
        return json.loads(os.environ.get("CUMULO_HYPERPARAMETERS", "{}"))
    if name == "model_dir":  # script mode: what is saved here becomes a model version
        path = Path(os.environ.get("CUMULO_MODEL_DIR", "model"))
        path.mkdir(parents=True, exist_ok=True)
        return path
    raise AttributeError(f"module 'cumulo.job' has no attribute {name!r}")


def _job() -> jobenv.JobEnv:
    job = jobenv.current()
    if job is None:
        raise RuntimeError("this is not running as a Cumulo job (CUMULO_JOB_ID is not set)")
    return job


@cache
def _client() -> Client:
    from cumulo.client import Client

    return Client()


def _job_dir() -> Path:
    job = jobenv.current()
    return job.job_dir if job and job.job_dir else Path(".")


class JobInput:
    """One ``--input``: a table at a pinned version, the files under a prefix, or a stream
    (read in a consumer group: :meth:`consume`)."""

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.kind: str = spec["kind"]
        self.spec = spec

    def __repr__(self) -> str:
        return f"JobInput({self.name!r}, {self.kind} {jobenv.input_ref(self.spec)})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def path(self) -> Path:
        """A local folder (or file) holding the input's data, fetched on first use if needed."""
        self._not_a_stream()
        return _materialize(self.name, json.dumps(self.spec, sort_keys=True))

    def _not_a_stream(self) -> None:
        if self.kind == "stream":
            raise Invalid(f"input {self.name!r} is a stream: read it with "
                          f"cumulo.job.stream({self.name!r})")

    def consume(self, *, idle: float | None = None, **options: Any) -> GroupConsumer:
        """A stream input, read as a member of its consumer group (``?group=`` of the
        input, else ``job-<the job's name>``): iterate it for batches, ``checkpoint()`` each
        when done with it. A retried attempt, and the next job of the same name, go on from
        the group's checkpoints. ``idle``: stop iterating once no record came for that many
        seconds (a job that processes what is there, then ends); ``options`` as
        ``client.streams.consume``'s (``limit``, ``lease``...)."""
        if self.kind != "stream":
            raise Invalid(f"input {self.name!r} is a {self.kind}, not a stream: read it with "
                          f"cumulo.job.inputs[{self.name!r}].arrow() or .path")
        return _client().streams.consume(self.spec["stream"], group=self.spec["group"],
                                         start=self.spec.get("start", "TRIM_HORIZON"),
                                         idle=idle, **options)

    def arrow(self, columns: list[str] | None = None, filter: Any = None) -> pa.Table:
        """The input as an Arrow table; of a table, only ``columns`` (those it has) and the
        rows matching ``filter`` (a ``pyarrow.dataset`` expression, like
        ``ds.field("at") > t``) if given: read from the table's files, only what they
        select is read."""
        self._not_a_stream()
        if self.kind == "table":
            if self.spec.get("uri"):
                from deltalake import DeltaTable

                table = DeltaTable(self.spec["uri"], version=self.spec["version"])
                if columns is None and filter is None:
                    return table.to_pyarrow_table()
                dataset = table.to_pyarrow_dataset()
                names = [c for c in columns or dataset.schema.names
                         if c in dataset.schema.names]
                return dataset.to_table(columns=names, filter=filter)
            # Read through the lake's API (masks and row filters apply there), then cut.
            data = _client().tables.read(self.spec["table"], version=self.spec["version"])
            if filter is not None:
                data = data.filter(filter)
            if columns is not None:
                data = data.select([c for c in columns if c in data.column_names])
            return data
        import pyarrow.dataset as ds

        path = self.path
        first = path if path.is_file() else next(p for p in path.rglob("*") if p.is_file())
        suffix = first.suffix
        fmt = {".csv": "csv", ".json": "json", ".jsonl": "json"}.get(suffix.lower(), "parquet")
        return ds.dataset(str(path), format=fmt).to_table()

    def to_pandas(self) -> Any:
        return self.arrow().to_pandas()


@cache
def _materialize(name: str, spec_json: str) -> Path:
    spec = json.loads(spec_json)
    dest = _job_dir() / "inputs" / name
    if spec["kind"] == "files":
        if spec.get("path"):
            return Path(spec["path"])
        files = _client().files
        listing = files.list(f"{spec['bucket']}/{spec['prefix']}", recursive=True)
        base = spec["prefix"].rpartition("/")[0]
        for obj in listing.objects:
            rel = obj.key[len(base):].lstrip("/")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            files.download(obj.path, target)
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    if spec.get("uri"):
        from deltalake import DeltaTable

        # The files that make up exactly this version, linked, not copied.
        table = DeltaTable(spec["uri"], version=spec["version"])
        for i, uri in enumerate(table.file_uris()):
            source = Path(uri.removeprefix("file://"))
            link = dest / f"part-{i:05d}{source.suffix}"
            if not link.exists():
                link.symlink_to(source)
        return dest
    import pyarrow.parquet as pq

    pq.write_table(_client().tables.read(spec["table"], version=spec["version"]),
                   dest / "part-00000.parquet")
    return dest


class _Inputs(Mapping[str, JobInput]):
    def __init__(self, specs: dict[str, dict[str, Any]]) -> None:
        self._specs = specs

    def __getitem__(self, name: str) -> JobInput:
        if name not in self._specs:
            given = ", ".join(sorted(self._specs)) or "none"
            raise KeyError(f"this job has no input {name!r} (inputs given: {given}); "
                           "name inputs with --input NAME=REF")
        return JobInput(name, self._specs[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


def stream(name: str, *, idle: float | None = None, **options: Any) -> GroupConsumer:
    """The stream input ``name`` (``--input name=stream:clicks``), read with checkpoints:
    :meth:`JobInput.consume`."""
    job = jobenv.current()
    return _Inputs(job.inputs if job else {})[name].consume(idle=idle, **options)


def log_metric(key: str, value: float, step: int | None = None) -> None:
    """Record one value of a metric for this job (seen in ``cumulo jobs show``)."""
    log_metrics({key: value}, step=step)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    now = time.time()
    if not in_job():
        print(f"metric {metrics} step={step}", file=sys.stderr)
        return
    body = {"metrics": [{"key": k, "value": float(v), "step": step or 0, "timestamp": now}
                        for k, v in metrics.items()]}
    _client().transport.json("POST", f"/api/v1/jobs/{_job().job_id}/metrics", json=body)


# What of the checkpoint folder the control plane holds: path -> (size, mtime_ns).
_sent: dict[str, tuple[int, int]] = {}


def sync_checkpoints() -> None:
    """Send the checkpoint folder to the control plane now: what changed since the last sync.

    Only a job on a remote (Ray) cluster needs to: it sends the folder when it ends, but a
    process killed outright ends without a word, so ``cumulo.ml.checkpoint.save_checkpoint``
    calls this after each save. On a local cluster (and outside a job) it does nothing: the
    folder is kept when the attempt ends, whatever its end."""
    job = jobenv.current()
    if job is None or not job.remote:
        return
    folder, base = job.checkpoint_dir, f"/api/v1/jobs/{job.job_id}/checkpoints"
    transport = _client().transport
    now: dict[str, tuple[int, int]] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        rel, st = path.relative_to(folder).as_posix(), path.stat()
        now[rel] = (st.st_size, st.st_mtime_ns)
        if _sent.get(rel) != now[rel]:
            with open(path, "rb") as f:
                transport.request("PUT", f"{base}/{rel}", content=f, timeout=None)
    if now != _sent:
        transport.json("POST", base, json={"files": {rel: s[0] for rel, s in now.items()}})
        _sent.clear()
        _sent.update(now)


def _restore_checkpoints() -> None:
    """On a remote cluster, before the job starts: fetch the checkpoints of its last attempt."""
    job = _job()
    folder, base = job.checkpoint_dir, f"/api/v1/jobs/{job.job_id}/checkpoints"
    transport = _client().transport
    for item in transport.json("GET", base):
        target = folder / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        with transport.stream("GET", f"{base}/{item['path']}", timeout=None) as response, \
                open(target, "wb") as out:
            for chunk in response.iter_raw():
                out.write(chunk)
        st = target.stat()
        _sent[item["path"]] = (st.st_size, st.st_mtime_ns)


def _upload_outputs(record: dict[str, Any]) -> None:
    """Send the checkpoints, the output folder, then the exit record, to the control plane
    (remote clusters)."""
    job = _job()
    job_id, out = job.job_id, job.output_dir
    transport = _client().transport
    try:
        sync_checkpoints()
    except Exception as exc:  # the outputs and the job's end must still reach home
        print(f"cumulo: could not send the checkpoints: {exc}", file=sys.stderr)
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        with open(path, "rb") as f:
            transport.request("PUT", f"/api/v1/jobs/{job_id}/outputs/{path.relative_to(out)}",
                              content=f, timeout=None)
    transport.request("PUT", f"/api/v1/jobs/{job_id}/outputs/.cumulo/exit.json",
                      content=json.dumps(record).encode())
