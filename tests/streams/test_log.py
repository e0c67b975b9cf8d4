"""The shard log on real files: roundtrips, reopening, torn tails, SIGKILL mid-write, group
commit from many threads, arrival-time lookups, waiting, retention and the store of logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cumulo.errors import Conflict, Invalid
from cumulo.streams.log import LogStore, Record, ShardLog

KIB = b"x" * 1024


def _records(n: int, *, start: int = 0, size: int = 10) -> list[tuple[str, bytes, int]]:
    return [(f"key-{i}", f"{i:0{size}d}".encode(), i << 100) for i in range(start, start + n)]


def _segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.seg"))


def test_append_and_read_back(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s")
    assert (log.first_seq, log.next_seq) == (1, 1)
    assert log.read(1) == []
    acks = log.append(_records(3)) + log.append(_records(2, start=3)) + log.append([])
    assert [seq for seq, _ in acks] == [1, 2, 3, 4, 5]
    assert [a for _, a in acks] == sorted(a for _, a in acks)

    got = log.read(1)
    assert got == [Record(seq, arrived, key, data, hash_key)
                   for (seq, arrived), (key, data, hash_key) in zip(acks, _records(5),
                                                                    strict=True)]
    assert got[4].hash_key == 4 << 100 and got[4].key == "key-4"
    assert [r.seq for r in log.read(3)] == [3, 4, 5]
    assert [r.seq for r in log.read(0)] == [1, 2, 3, 4, 5]  # before the start: from the oldest
    assert [r.seq for r in log.read(2, limit=2)] == [2, 3]
    assert log.read(6) == [] and log.read(100) == []
    assert (log.first_seq, log.next_seq) == (1, 6)
    with pytest.raises(Invalid):
        log.read(1, limit=0)


def test_max_bytes_is_about_data_and_always_gives_one(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s", segment_bytes=3000)  # a few records a segment
    log.append([("k", KIB, 1)] * 10)
    assert [r.seq for r in log.read(1, max_bytes=1)] == [1]
    assert [r.seq for r in log.read(4, max_bytes=0)] == [4]
    assert [r.seq for r in log.read(1, max_bytes=2500)] == [1, 2]
    assert [r.seq for r in log.read(2, max_bytes=3 * 1024)] == [2, 3, 4]  # across segments
    assert len(log.read(1, max_bytes=10 << 20)) == 10


def test_segments_roll_and_reads_cross_them(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s", segment_bytes=4096)
    for i in range(20):
        log.append([(f"k{i}", KIB, i)])
    log.append([("big", KIB, 0)] * 12)  # one batch over several segments
    names = [p.name for p in _segments(tmp_path / "s")]
    assert len(names) > 5 and names[0] == "00000000000000000001.seg"
    firsts = [int(name.removesuffix(".seg")) for name in names]
    assert firsts == sorted(firsts)
    got = log.read(1)
    assert [r.seq for r in got] == list(range(1, 33))
    assert [r.key for r in got[:3]] == ["k0", "k1", "k2"]
    for first in firsts:  # a read starting at each segment's first record
        assert log.read(first, limit=1)[0].seq == first
    assert log.stats() == {"records": 32, "bytes": 32 * 1024, "first_seq": 1, "next_seq": 33,
                           "segments": len(names)}


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s", segment_bytes=2048)
    acks = log.append(_records(50, size=100))
    before = log.read(1)
    log.close()
    with pytest.raises(Conflict):
        log.read(1)
    with pytest.raises(Conflict):
        log.append(_records(1))

    again = ShardLog(tmp_path / "s", segment_bytes=2048)
    assert again.read(1) == before
    assert again.stats() == {"records": 50, "bytes": 5000, "first_seq": 1, "next_seq": 51,
                             "segments": len(_segments(tmp_path / "s"))}
    [(seq, arrived)] = again.append(_records(1, start=50))
    assert seq == 51 and arrived >= acks[-1][1]
    again.close()
    assert [r.seq for r in ShardLog(tmp_path / "s").read(45)] == [45, 46, 47, 48, 49, 50, 51]


@pytest.mark.parametrize("damage", ["garbage", "cut", "flipped", "zeros"])
def test_a_torn_tail_is_cut_away_on_open(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "s"
    log = ShardLog(folder)
    log.append(_records(4, size=200))
    [path] = _segments(folder)
    good = path.stat().st_size
    log.append(_records(1, start=4, size=200))
    whole = path.stat().st_size
    log.close()

    if damage == "garbage":  # bytes after the last whole frame
        with open(path, "ab") as f:
            f.write(os.urandom(37))
        good = whole
    elif damage == "cut":  # the last frame only half written
        os.truncate(path, good + (whole - good) // 2)
    elif damage == "flipped":  # the last frame's data differs from its crc
        with open(path, "r+b") as f:
            f.seek(whole - 3)
            f.write(b"!")
    else:  # a header written, its body never was
        with open(path, "ab") as f:
            f.write(b"CSL1" + (300).to_bytes(4, "little") + bytes(304))
        good = whole

    reopened = ShardLog(folder)
    assert path.stat().st_size == good
    count = 5 if good == whole else 4
    got = reopened.read(1)
    assert [r.data for r in got] == [d for _, d, _ in _records(count, size=200)]
    assert reopened.append(_records(1, start=9))[0][0] == count + 1
    assert [r.key for r in reopened.read(count)] == [f"key-{count - 1}", "key-9"]


_PRODUCER = textwrap.dedent("""\
    import sys, threading
    from pathlib import Path
    from cumulo.streams.log import ShardLog

    log = ShardLog(Path(sys.argv[1]), segment_bytes=64 << 10)
    out = threading.Lock()

    def produce(t):
        i = 0
        while True:
            data = f"{t}:{i};".encode() * (1 + i % 90)
            [(seq, _)] = log.append([(f"p{t}", data, t)])
            with out:
                sys.stdout.write(f"{seq} {t} {i}\\n")
                sys.stdout.flush()
            i += 1

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    """)


def test_sigkill_mid_write_loses_no_acknowledged_record(tmp_path: Path) -> None:
    folder, acked = tmp_path / "s", tmp_path / "acked.txt"
    with open(acked, "w") as out:
        producer = subprocess.Popen([sys.executable, "-c", _PRODUCER, str(folder)], stdout=out)
    try:
        deadline = time.monotonic() + 30
        while acked.stat().st_size == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)
    finally:
        producer.send_signal(signal.SIGKILL)
        producer.wait()
    assert producer.returncode == -signal.SIGKILL

    lines = [line.split() for line in acked.read_text().splitlines(keepends=True)
             if line.endswith("\n")]  # the last line may be cut off mid-write
    assert len(lines) > 100
    log = ShardLog(folder, segment_bytes=64 << 10)
    kept = {r.seq: r for r in log.read(1, limit=1_000_000, max_bytes=1 << 40)}
    assert sorted(kept) == list(range(1, log.next_seq))  # dense, and reads cleanly
    for seq, t, i in lines:
        record = kept[int(seq)]
        assert (record.key, record.hash_key) == (f"p{t}", int(t))
        assert record.data == f"{t}:{i};".encode() * (1 + int(i) % 90)
    for record in kept.values():  # unacknowledged but kept records are whole too
        t, i = record.data.split(b";")[0].split(b":")
        assert record.key == f"p{int(t)}"
        assert record.data == f"{int(t)}:{int(i)};".encode() * (1 + int(i) % 90)
    assert log.append([("after", b"restart", 0)])[0][0] == log.next_seq - 1


def test_group_commit_from_many_threads(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s", fsync=True)
    threads, per_thread = 4, 500
    acks: dict[int, list[int]] = {}

    def produce(t: int) -> None:
        acks[t] = [log.append([(f"p{t}", bytes([t]) * 1024, t)])[0][0]
                   for _ in range(per_thread)]

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    print(f"\ngroup commit: {threads * per_thread / elapsed:,.0f} records/s "
          f"({threads} threads, 1 KiB records, one a call, fsync on)")

    seqs = sorted(s for ours in acks.values() for s in ours)
    assert seqs == list(range(1, threads * per_thread + 1))
    assert all(ours == sorted(ours) for ours in acks.values())
    by_seq = {r.seq: r for r in log.read(1, limit=10_000)}
    for t, ours in acks.items():
        assert all(by_seq[s].data == bytes([t]) * 1024 and by_seq[s].key == f"p{t}"
                   for s in ours)


def test_seq_at_finds_the_first_record_at_or_after_a_time(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s", segment_bytes=8192)
    assert log.seq_at(0) == 1
    acks: list[tuple[int, float]] = []
    for i in range(300):  # several segments, each with a sparse index of several entries
        acks += log.append(_records(1 + i % 3, start=i, size=50))
        if i % 50 == 0:
            time.sleep(0.002)
    times = sorted({arrived for _, arrived in acks})
    for when in [*times[::7], times[-1], times[0] - 1, *(t + 1e-7 for t in times[::11])]:
        expected = next((seq for seq, arrived in acks if arrived >= when), log.next_seq)
        assert log.seq_at(when) == expected, when
    assert log.seq_at(times[-1] + 1) == log.next_seq
    # Arrival times never go backwards, even within a batch they share.
    assert [a for _, a in acks] == sorted(a for _, a in acks)


def test_wait_is_woken_by_an_append(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s")
    started = time.monotonic()
    assert log.wait(0, 0.1) is False
    assert time.monotonic() - started >= 0.09

    appender = threading.Timer(0.2, lambda: log.append(_records(1)))
    appender.start()
    started = time.monotonic()
    assert log.wait(0, 10) is True
    assert time.monotonic() - started < 5
    appender.join()
    assert log.wait(0, 10) is True  # one is already there: no waiting
    assert log.wait(1, 0.05) is False

    # A nudge (the shard was closed by a split or merge) ends a long poll at its end.
    nudger = threading.Timer(0.1, log.nudge)
    nudger.start()
    started = time.monotonic()
    assert log.wait(1, 10) is False
    assert time.monotonic() - started < 5
    nudger.join()

    closer = threading.Timer(0.1, log.close)
    closer.start()
    started = time.monotonic()
    assert log.wait(1, 10) is False  # closing wakes a waiter too
    assert time.monotonic() - started < 5
    closer.join()


def test_trim_drops_whole_old_segments_only(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    log = ShardLog(folder, segment_bytes=3000)
    log.append([("old", KIB, 1)] * 10)  # 1 KiB records: three to a segment
    time.sleep(0.01)
    cut = time.time()
    time.sleep(0.01)
    log.append([("new", KIB, 2)])
    old_segments = len(_segments(folder))
    assert old_segments == 4

    assert log.trim(0) == 0
    dropped = log.trim(cut)
    # Records 10 and 11 share a segment: it is kept whole.
    assert dropped == 9 and log.first_seq == 10
    assert len(_segments(folder)) == old_segments - 3
    assert [r.seq for r in log.read(1)] == [10, 11]
    assert log.seq_at(0) == 10
    assert log.stats() == {"records": 2, "bytes": 2048, "first_seq": 10, "next_seq": 12,
                           "segments": 1}

    assert log.trim(time.time() + 60) == 0  # the active segment stays, whatever its age
    log.append([("newer", KIB, 3)] * 7)  # 12 beside 10 and 11; then 13-15, 16-18
    assert log.trim(time.time() + 60) == 6
    assert log.first_seq == 16 and [r.key for r in log.read(0)] == ["newer"] * 3
    log.close()
    reopened = ShardLog(folder, segment_bytes=3000)
    assert (reopened.first_seq, reopened.next_seq) == (16, 19)


def test_bad_records_are_refused_and_nothing_is_appended(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s")
    for bad in [("k", b"x", -1), ("k", b"x", 1 << 128), ("k" * 70_000, b"x", 0)]:
        with pytest.raises(Invalid):
            log.append([("fine", b"x", 0), bad])
    assert log.next_seq == 1 and log.read(1) == []
    assert log.append([("k", bytearray(b"ok"), (1 << 128) - 1)])[0][0] == 1
    assert log.read(1)[0].data == b"ok" and log.read(1)[0].hash_key == (1 << 128) - 1


_FULL_DISK = textwrap.dedent("""\
    import resource, signal, sys
    from pathlib import Path
    from cumulo.errors import Unavailable
    from cumulo.streams.log import ShardLog

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, resource.RLIM_INFINITY))
    log = ShardLog(Path(sys.argv[1]))
    acked = 0
    try:
        while True:
            log.append([("k", b"x" * 1000, 0)] * 3)
            acked += 3
    except Unavailable as exc:
        print("refused:", exc, file=sys.stderr)
    log.append([("k", b"small", 0)])  # what the failed batch wrote was taken back
    print(acked + 1)
    """)


def test_a_failed_write_is_taken_back(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(folder)],
                          capture_output=True, text=True, timeout=60, check=True)
    assert "File too large" in done.stderr
    acked = int(done.stdout)
    [path] = _segments(folder)
    size = path.stat().st_size
    log = ShardLog(folder)
    assert path.stat().st_size == size  # nothing torn to cut away
    got = log.read(1)
    assert len(got) == acked and got[-1].data == b"small"


def test_delete_removes_the_folder(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s")
    log.append(_records(3))
    log.delete()
    assert not (tmp_path / "s").exists()
    with pytest.raises(Conflict):
        log.append(_records(1))
    log.close()  # closing twice is fine


def test_log_store_opens_lazily_and_drops_streams(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "streams", fsync=False)
    assert not (tmp_path / "streams").exists()
    a0 = store.shard("orders", "shardId-000000000000")
    assert store.shard("orders", "shardId-000000000000") is a0
    a1 = store.shard("orders", "shardId-000000000001")
    b0 = store.shard("clicks", "shardId-000000000000")
    assert len({id(a0), id(a1), id(b0)}) == 3
    a0.append(_records(2))
    a1.append(_records(1))
    b0.append(_records(4))
    assert (tmp_path / "streams" / "orders" / "shardId-000000000001").is_dir()

    store.drop_stream("orders")
    assert not (tmp_path / "streams" / "orders").exists()
    with pytest.raises(Conflict):
        a0.append(_records(1))
    assert store.shard("orders", "shardId-000000000000").next_seq == 1  # a new, empty log
    assert store.shard("clicks", "shardId-000000000000").next_seq == 5
    store.drop_stream("never-made")

    for bad in ["..", ".", "a/b", "", "x" * 129]:
        with pytest.raises(Invalid):
            store.shard(bad, "shardId-000000000000")
        with pytest.raises(Invalid):
            store.shard("orders", bad)
    store.close()
    with pytest.raises(Conflict):
        b0.read(1)
    reopened = LogStore(tmp_path / "streams")
    assert len(reopened.shard("clicks", "shardId-000000000000").read(1)) == 4
    reopened.close()


def test_readers_and_retention_run_beside_writers(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s", segment_bytes=8192, fsync=False)
    stop = threading.Event()
    problems: list[str] = []

    def produce(t: int) -> None:
        i = 0
        while not stop.is_set():
            log.append([(f"p{t}", f"{t}:{i + j}".encode() * 20, t) for j in range(1 + i % 4)])
            i += 1 + i % 4

    def consume() -> None:
        seq = 1
        while not stop.is_set() or seq < log.next_seq:
            got = log.read(seq, limit=97)
            if got and got[0].seq < seq:
                problems.append(f"read({seq}) began at {got[0].seq}")
            if [r.seq for r in got] != list(range(got[0].seq, got[0].seq + len(got)) if got
                                             else []):
                problems.append(f"read({seq}) has a gap")
            for r in got:
                producer = r.data.split(b":")[0].decode()
                if r.key != f"p{producer}" or r.data != r.data[:len(r.data) // 20] * 20:
                    problems.append(f"record {r.seq} is not what was written")
            seq = got[-1].seq + 1 if got else seq
            if not got:
                log.wait(seq - 1, 0.05)

    def retain() -> None:
        while not stop.is_set():
            log.trim(time.time() - 0.05)
            log.seq_at(time.time() - 0.02)
            time.sleep(0.01)

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    workers += [threading.Thread(target=consume) for _ in range(2)]
    workers.append(threading.Thread(target=retain))
    for worker in workers:
        worker.start()
    time.sleep(1)
    stop.set()
    for worker in workers:
        worker.join(30)
    assert not problems, problems[:5]
    assert log.next_seq > 1000 and log.first_seq > 1
