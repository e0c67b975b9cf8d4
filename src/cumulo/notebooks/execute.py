"""A notebook job's entry: ``python -m cumulo.notebooks.execute NOTEBOOK --parameters JSON``.

It executes the notebook with papermill (the parameters go in a cell after the one tagged
``parameters``) and writes the executed notebook, outputs and all, to the job's output folder,
where it is kept as the job's output. A cell that raises fails the job: the log ends with the
cell and its error, and the notebook as far as it ran is still kept.

The kernel is this interpreter, whatever kernelspecs the machine has installed: the job's own
Python, with the job's packages (its environment) and its Cumulo credentials. papermill and
ipykernel are imported from here too: a job's environment layered over the server's packages
(the default) has them; an isolated one needs them among its requirements (``papermill`` and
``ipykernel``, or ``cumulo[notebooks]``), and the job says so when they are missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["NotebookFailed", "execute", "main"]

_MISSING = ("this job's Python has no {what}: a notebook job runs in the job's environment, "
            "which needs papermill and ipykernel (add them to its requirements, or "
            "cumulo[notebooks]; an environment layered over the server's packages has them)")


class NotebookFailed(Exception):
    """A cell raised: which one, and its error, as a line for the job's log."""


def _kernel_manager() -> type:
    """A kernel manager whose kernel is this interpreter (``python -m ipykernel_launcher``),
    not whatever the name 'python3' resolves to among the machine's kernelspecs."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class JobKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self) -> KernelSpec:
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f",
                          "{connection_file}"],
                    display_name="Python 3 (the job's)", language="python", resource_dir="")
            return self._kernel_spec

    return JobKernelManager


def _imports() -> Any:
    for what in ("papermill", "ipykernel"):
        try:
            __import__(what)
        except ImportError:
            raise NotebookFailed(_MISSING.format(what=what)) from None
    import papermill  # type: ignore[import-untyped]

    return papermill


def execute(notebook: str | Path, output: str | Path, *, parameters: dict[str, Any],
            cwd: str | Path | None = None) -> Path:
    """Run ``notebook`` with ``parameters``, writing the executed notebook to ``output`` (as
    it runs, and whole at the end). The cells' own output goes to this process's stdout and
    stderr, that is, the job's log. Raises NotebookFailed naming the cell that raised."""
    papermill = _imports()
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(notebook), str(out), parameters=parameters, kernel_name="python3",
            language="python", progress_bar=False, stdout_file=sys.stdout,
            stderr_file=sys.stderr, cwd=str(cwd) if cwd else None,
            kernel_manager_class=_kernel_manager())
    except papermill.PapermillExecutionError as exc:
        source = (exc.source or "").strip().splitlines()
        first = f" ({source[0][:80]}{' ...' if len(source) > 1 else ''})" if source else ""
        raise NotebookFailed(f"notebook {Path(notebook).name} failed in cell "
                             f"{exc.exec_count or exc.cell_index}{first}: {exc.ename}: "
                             f"{exc.evalue}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cumulo.notebooks.execute",
                                     description="Execute a notebook as a Cumulo job.")
    parser.add_argument("notebook")
    parser.add_argument("--parameters", default="{}", help="a JSON object")
    parser.add_argument("--output", help="the executed notebook's name among the outputs "
                        "(default: the notebook's)")
    args = parser.parse_args(argv)
    import cumulo.job

    job: Any = cumulo.job
    source = Path(args.notebook)
    output = job.output_dir / (args.output or source.name)
    print(f"executing {source.name} with {args.parameters}", flush=True)
    try:
        execute(source, output, parameters=json.loads(args.parameters), cwd=Path.cwd())
    except NotebookFailed as exc:
        kept = f"; the executed notebook is kept as output {output.name}" \
            if output.exists() else ""
        print(f"{exc}{kept}", file=sys.stderr, flush=True)
        return 1
    print(f"executed {source.name}; kept as output {output.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
