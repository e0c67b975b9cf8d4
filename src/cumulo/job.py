"""Inside a job: where it is, its inputs, its output folder, and its metrics.

>>> import cumulo.job
>>> table = cumulo.job.inputs["train"].arrow()         # doctest: +SKIP
>>> (cumulo.job.output_dir / "model.txt").write_text("...")   # doctest: +SKIP
>>> cumulo.job.log_metric("loss", 0.3, step=1)         # doctest: +SKIP

Everything here is read from the environment the runner sets, so it works in the job's own
subprocesses too. Outside a job, ``inputs`` is empty, ``output_dir`` is ``./output`` and
metrics are printed, so a script can be tried on a laptop as it is.
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

if TYPE_CHECKING:
    import pyarrow as pa

    from cumulo.client import Client

# Also read lazily, through __getattr__: id, attempt, inputs, output_dir.
__all__ = ["JobInput", "in_job", "log_metric", "log_metrics"]


def in_job() -> bool:
    return "CUMULO_JOB_ID" in os.environ


def __getattr__(name: str) -> Any:
    # Read lazily: a warm worker imports this module before it knows its job.
    if name == "id":
        return os.environ.get("CUMULO_JOB_ID")
    if name == "attempt":
        return int(os.environ.get("CUMULO_JOB_ATTEMPT", "1"))
    if name == "output_dir":
        path = Path(os.environ.get("CUMULO_JOB_OUTPUT_DIR", "output"))
        path.mkdir(parents=True, exist_ok=True)
        return path
    if name == "inputs":
        return _Inputs(json.loads(os.environ.get("CUMULO_JOB_INPUTS", "{}")))
    raise AttributeError(f"module 'cumulo.job' has no attribute {name!r}")


@cache
def _client() -> Client:
    from cumulo.client import Client

    return Client()


def _job_dir() -> Path:
    return Path(os.environ.get("CUMULO_JOB_DIR", "."))


class JobInput:
    """One ``--input``: a table at a pinned version, or the files under a prefix."""

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.kind: str = spec["kind"]
        self.spec = spec

    def __repr__(self) -> str:
        what = (f"{self.spec['table']}@v{self.spec['version']}" if self.kind == "table"
                else f"{self.spec['bucket']}/{self.spec['prefix']}")
        return f"JobInput({self.name!r}, {self.kind} {what})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def path(self) -> Path:
        """A local folder (or file) holding the input's data, fetched on first use if needed."""
        return _materialize(self.name, json.dumps(self.spec, sort_keys=True))

    def arrow(self) -> pa.Table:
        """The input as an Arrow table."""
        if self.kind == "table":
            if self.spec.get("uri"):
                from deltalake import DeltaTable

                table = DeltaTable(self.spec["uri"], version=self.spec["version"])
                return table.to_pyarrow_table()
            return _client().tables.read(self.spec["table"], version=self.spec["version"])
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
    _client().transport.json("POST", f"/api/v1/jobs/{os.environ['CUMULO_JOB_ID']}/metrics",
                             json=body)


def _upload_outputs(record: dict[str, Any]) -> None:
    """Send the output folder, then the exit record, to the control plane (remote clusters)."""
    job_id = os.environ["CUMULO_JOB_ID"]
    out = Path(os.environ["CUMULO_JOB_OUTPUT_DIR"])
    transport = _client().transport
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        with open(path, "rb") as f:
            transport.request("PUT", f"/api/v1/jobs/{job_id}/outputs/{path.relative_to(out)}",
                              content=f, timeout=None)
    transport.request("PUT", f"/api/v1/jobs/{job_id}/outputs/.cumulo/exit.json",
                      content=json.dumps(record).encode())
