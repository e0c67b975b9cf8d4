"""A server for the compute tests (short kill grace), and a code folder of small jobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import Cumulo, start_cumulo

SCRIPTS = {
    "ok.py": """
import sys
import cumulo.job as job
print("args", sys.argv[1:], "attempt", job.attempt, flush=True)
job.log_metric("loss", 0.5, step=1)
job.log_metric("loss", 0.25, step=2)
(job.output_dir / "model.txt").write_text("weights")
(job.output_dir / "sub").mkdir()
(job.output_dir / "sub" / "eval.json").write_text("{}")
print("done")
""",
    "fail.py": """
import sys
for i in range(50):
    print("line", i)
print("bad things happened", file=sys.stderr)
sys.exit(3)
""",
    "crash.py": "raise RuntimeError('boom in user code')\n",
    "flaky.py": """
import cumulo.job as job
print("attempt", job.attempt)
raise SystemExit(1 if job.attempt == 1 else 0)
""",
    "sleep.py": """
import sys, time
print("sleeping", flush=True)
time.sleep(float(sys.argv[1]))
print("woke")
""",
    "stubborn.py": """
import signal, time
signal.signal(signal.SIGTERM, lambda *a: print("ignoring SIGTERM", flush=True))
print("started", flush=True)
while True:
    time.sleep(0.1)
""",
    "hog.py": """
import time
blocks = []
for i in range(400):
    blocks.append(bytearray(8 * 2**20))
    time.sleep(0.02)
print("survived")
""",
    "spam.py": """
import sys
chunk = (b"x" * 1023 + b"\\n") * 1024
for _ in range(int(sys.argv[1])):
    sys.stdout.buffer.write(chunk)
sys.stdout.flush()
print("spam done")
""",
    "read_input.py": """
import cumulo.job as job
train = job.inputs["train"]
print("rows", train.arrow().num_rows)
print("files", sorted(p.name for p in train.path.iterdir())[:3])
if "raw" in job.inputs:
    print("raw", sorted(p.name for p in job.inputs["raw"].path.iterdir()))
import pyarrow.dataset as ds
first = train.arrow().column_names[0]
cut = train.arrow([first, "nope"], ds.field(first) > 1)  # only these columns and rows
print("cut", cut.num_rows, cut.column_names)
""",
    # PyTorch: a tiny model trained for six epochs, checkpointed after each; attempt 1 dies
    # outright after epoch argv[1] (0: never). The state records which attempt ran each epoch.
    "resume.py": """
import json, os, sys, time
import torch
import cumulo.job as job
from cumulo.ml.checkpoint import load_checkpoint, save_checkpoint

die_after, pause = int(sys.argv[1]), float(sys.argv[2])
torch.manual_seed(0)
x = torch.linspace(-1, 1, 64, dtype=torch.float64).reshape(-1, 1)
y = 3 * x + 1
model = torch.nn.Linear(1, 1).double()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
start, history = 1, []
resumed = load_checkpoint()
if resumed is not None:
    state, epoch = resumed
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    history, start = state["history"], epoch + 1
print("attempt", job.attempt, "starts at epoch", start, flush=True)
for epoch in range(start, 7):
    for _ in range(5):
        optimizer.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        optimizer.step()
    history.append([epoch, job.attempt])
    job.log_metric("loss", loss.item(), step=epoch)
    save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "history": history}, epoch)
    print("epoch", epoch, "saved", flush=True)
    if job.attempt == 1 and epoch == die_after:
        os._exit(1)  # no atexit, nothing flushed: like a spot instance taken away
    time.sleep(pause)
result = {"weight": model.weight.item(), "bias": model.bias.item(), "history": history}
(job.output_dir / "result.json").write_text(json.dumps(result))
print("done")
""",
    "env.py": """
import os
for k in ("GREETING", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES"):
    print(k, repr(os.environ.get(k)))
print("cwd", os.getcwd())
""",
}


@pytest.fixture(scope="module")
def compute(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    home = tmp_path_factory.mktemp("compute") / ".cumulo"
    server = start_cumulo(home, {"CUMULO_JOB_GRACE_SECONDS": "1"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("code") / "src"
    root.mkdir()
    for name, text in SCRIPTS.items():
        (root / name).write_text(text.lstrip())
    return root
