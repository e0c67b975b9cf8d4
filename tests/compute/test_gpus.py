"""GPU scheduling on the local cluster.

This machine has no GPU, so a stand-in `nvidia-smi` (a script on PATH that lists two GPUs, as
the real one's `-L` does) is the one thing mocked here: detection, reservation, assignment
through CUDA_VISIBLE_DEVICES and GPU-seconds are Cumulo's own code, run for real.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cumulo.errors import Invalid
from tests.services import start_cumulo

FAKE_SMI = """#!/bin/sh
echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000000)"
echo "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-11111111-1111-1111-1111-111111111111)"
"""


def test_gpus_are_found_reserved_and_assigned(tmp_path: Path, code: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    (code / "gpu.py").write_text(
        "import os, time\nprint(os.environ['CUDA_VISIBLE_DEVICES'], flush=True)\n"
        "time.sleep(1.5)\n")
    server = start_cumulo(tmp_path / ".cumulo",
                          {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    try:
        c = server.client()
        assert c.clusters.show("local")["max_gpus"] == 2
        first = c.jobs.run("gpu.py", code=code, gpus=1, cpus=0.5)
        second = c.jobs.run("gpu.py", code=code, gpus=1, cpus=0.5)
        third = c.jobs.run("gpu.py", code=code, gpus=1, cpus=0.5)
        time.sleep(0.7)
        assert third.refresh()["state"] == "queued"  # both GPUs are taken
        assert c.clusters.show("local")["in_use"]["gpus"] == 2
        seen = set()
        for job in (first, second, third):
            info = job.wait(60)
            assert info["state"] == "succeeded"
            seen.add(next(iter(job.logs())))
            assert info["usage"]["gpu_seconds"] >= 1.0  # one GPU for the job's wall time
        assert seen == {"0", "1"}
        pair = c.jobs.run("gpu.py", code=code, gpus=2, cpus=0.5)
        assert pair.wait(60)["state"] == "succeeded"
        assert next(iter(pair.logs())) == "0,1"
        with pytest.raises(Invalid, match="at most 2"):
            c.jobs.run("gpu.py", code=code, gpus=3)
    finally:
        server.stop()
