"""Backups: throughput against ``tar | zstd`` of the same home, an incremental after a 1%
change, and the recovery time of a restore to a serving server.

A home of ``--size-gb`` (issue 22 names 5 GB) is made through the API (bucket objects, half
text that compresses, half random bytes that does not, and a table), then, in one run:
  baseline: tar -cf - HOME | zstd -3 -T1 > FILE   (one core, as Cumulo's backup uses)
  cumulo:   cumulo backup create --to DIR --home HOME
  change 1% of the bytes (a new object), then cumulo backup create again (incremental)
  cumulo backup drill: restore, start a server, check it: its RTO
Goals: full backup >= 0.5 of tar|zstd's throughput; the incremental under 10% of the full
backup's time; RTO under 60 s.

    python bench/dr.py [--size-gb 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import TOKEN, start_server, stop_server

GOAL_THROUGHPUT = 0.5
GOAL_INCREMENTAL = 0.10
GOAL_RTO_S = 60.0
PIECE = 256 << 20  # each object


def _cumulo() -> str:
    exe = Path(sys.executable).parent / "cumulo"
    return str(exe) if exe.exists() else "cumulo"


def make_home(url: str, work: Path, size: int) -> None:
    from cumulo.client import Client

    with Client(url, token=TOKEN) as c:
        c.files.create_bucket("bench")
        staged = work / "piece.bin"
        made, n = 0, 0
        while made < size:
            part = min(PIECE, size - made)
            with open(staged, "wb") as f:
                if n % 2 == 0:  # text: compresses about 4x
                    line = b"2026-12-04T10:00:00Z,user-%06d,click,/products/%05d,0.%04d\n"
                    written = 0
                    i = 0
                    while written < part:
                        row = line % (i % 999_999, i % 99_999, i % 9_999)
                        f.write(row)
                        written += len(row)
                        i += 1
                else:
                    left = part
                    while left > 0:
                        chunk = os.urandom(min(left, 8 << 20))
                        f.write(chunk)
                        left -= len(chunk)
            c.files.upload(staged, f"bench/piece-{n:03d}.bin")
            made += staged.stat().st_size
            n += 1
            print(f"  made {made / 2**30:.2f} GiB", file=sys.stderr)
        staged.unlink()
        c.tables.create_database("benchdb")
        c.sql("create table benchdb.t as select range as id, random() as x from range(1000000)")


def timed(cmd: list[str] | str, *, shell: bool = False) -> tuple[float, str]:
    t0 = time.monotonic()
    out = subprocess.run(cmd, shell=shell, capture_output=True, text=True)
    took = time.monotonic() - t0
    if out.returncode != 0:
        raise SystemExit(f"{cmd} failed: {out.stderr[-2000:]}")
    return took, out.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=5.0)
    args = parser.parse_args()
    if not shutil.which("zstd"):
        raise SystemExit("the baseline needs the zstd command (apt-get install zstd)")
    size = int(args.size_gb * 2**30)
    with tempfile.TemporaryDirectory(prefix="cumulo-bench-dr-", dir=os.environ.get("TMPDIR")) \
            as tmp:
        work = Path(tmp)
        proc, url = start_server(work)
        try:
            print(f"making a {args.size_gb:g} GiB home ...", file=sys.stderr)
            make_home(url, work, size)
            home = work / "home"
            env_home = ["--home", str(home)]
            total = sum(p.stat().st_size for p in home.rglob("*") if p.is_file())
            base_s, _ = timed(f"tar -cf - -C {home} . | zstd -3 -T1 -q -o {work}/home.tar.zst",
                              shell=True)
            (work / "home.tar.zst").unlink()
            full_s, out = timed([_cumulo(), "backup", "create", "--to", str(work / "b"),
                                 *env_home, "--json"])
            full = json.loads(out)
            from cumulo.client import Client

            with Client(url, token=TOKEN) as c:
                extra = work / "change.bin"
                extra.write_bytes(os.urandom(max(1, total // 100)))
                c.files.upload(extra, "bench/change.bin")
            inc_s, out = timed([_cumulo(), "backup", "create", "--to", str(work / "b"),
                                *env_home, "--json"])
            inc = json.loads(out)
        finally:
            stop_server(proc)
        _, out = timed([_cumulo(), "backup", "drill", "--to", str(work / "b"), "--json"])
        drill = json.loads(out)
    ratio = base_s / full_s  # throughput of Cumulo's backup over tar | zstd's
    inc_share = inc_s / full_s
    print(f"home: {total / 2**30:.2f} GiB")
    print(f"tar | zstd -3 -T1:   {base_s:7.1f}s  {total / base_s / 2**20:7.1f} MiB/s")
    print(f"cumulo backup:       {full_s:7.1f}s  {total / full_s / 2**20:7.1f} MiB/s  "
          f"({full['totals']['stored_bytes'] / 2**30:.2f} GiB stored)")
    print(f"incremental (1%):    {inc_s:7.1f}s  {inc_share:.1%} of the full backup "
          f"({inc['totals']['stored_bytes'] / 2**20:.0f} MiB stored)")
    print(f"drill: RTO {drill['rto_seconds']:.1f}s (restore {drill['restore_seconds']:.1f}s), "
          f"{'passed' if drill['ok'] else 'FAILED'}")
    met = ratio >= GOAL_THROUGHPUT and inc_share < GOAL_INCREMENTAL and \
        drill["rto_seconds"] < GOAL_RTO_S and drill["ok"]
    print(json.dumps({"bench": "dr", "ratio": round(ratio, 3),
                      "goal": f">= {GOAL_THROUGHPUT} of tar|zstd; incremental < "
                              f"{GOAL_INCREMENTAL:.0%}; RTO < {GOAL_RTO_S:.0f}s",
                      "incremental_share": round(inc_share, 4),
                      "rto_s": drill["rto_seconds"], "size_gib": round(total / 2**30, 2),
                      "met": met}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
