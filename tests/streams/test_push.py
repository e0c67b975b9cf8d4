"""Push subscriptions' parts without a server: a real shard log in tmp_path, its watchers, the
follower's pages (records, heartbeats, the end of a closed shard, the end of a session) and
the bound on open subscriptions."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from anyio import CapacityLimiter

from cumulo.errors import Conflict, NotFound
from cumulo.streams.log import ShardLog
from cumulo.streams.push import Follower, Page, SubscriptionLimit, Subscriptions, wait


def _records(*data: bytes) -> list[tuple[str, bytes, int]]:
    return [("k", d, 0) for d in data]


def test_watchers(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s", fsync=False)
    told: list[bool] = []

    def broken(appended: bool) -> None:
        raise RuntimeError("a watcher's own fault")

    stop = log.watch(told.append)
    log.watch(broken)
    assert [seq for seq, _ in log.append(_records(b"a", b"b"))] == [1, 2]
    log.nudge()
    stop()
    log.append(_records(b"c"))  # no longer told; the broken watcher cannot fail an append
    assert told == [True, False]
    again: list[bool] = []
    log.watch(again.append)
    log.close()
    assert again == [False]


def _follower(log: ShardLog, start: int, *, closed: list[bool] | None = None,
              seconds: float = 10.0, heartbeat: float = 5.0) -> Follower:
    state = closed if closed is not None else [False]
    return Follower(log, start, closed=lambda: state[0], readers=CapacityLimiter(2),
                    seconds=seconds, heartbeat=heartbeat)


def test_pages_come_as_records_are_written(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s", fsync=False)
    log.append(_records(b"old"))

    async def run() -> list[Page]:
        follower = _follower(log, log.next_seq)
        pages: list[Page] = []
        writer = threading.Timer(0.05, lambda: log.append(_records(b"one", b"two")))
        writer.start()
        async for page in follower.pages():
            pages.append(page)
            if sum(len(p.records) for p in pages) == 3:
                break
            if len(pages) == 1:
                log.append(_records(b"three"))
        writer.join()
        return pages

    pages = asyncio.run(run())
    assert [r.data for p in pages for r in p.records] == [b"one", b"two", b"three"]
    assert pages[-1].next_seq == 5 and not pages[-1].ended


def test_heartbeats_and_the_end_of_a_session(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s", fsync=False)

    async def run() -> list[Page]:
        return [p async for p in _follower(log, 1, seconds=0.35, heartbeat=0.1).pages()]

    pages = asyncio.run(run())
    assert 2 <= len(pages) <= 4 and all(p.records == [] and p.next_seq == 1 for p in pages)


def test_a_session_ends_on_time_while_records_flow(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s", fsync=False)
    flowing = threading.Event()

    def write() -> None:
        while not flowing.wait(0.01):
            log.append(_records(b"x"))

    async def run() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        got = sum([len(p.records) async for p in _follower(log, 1, seconds=0.3).pages()])
        return got, loop.time() - started

    writer = threading.Thread(target=write)
    writer.start()
    try:
        got, took = asyncio.run(run())
    finally:
        flowing.set()
        writer.join()
    assert got > 0 and took < 2.0


def test_what_is_gone_ends_the_pages_while_records_flow(tmp_path: Path) -> None:
    """``closed`` is asked every heartbeat even while records flow: a consumer deregistered
    (say) ends its subscription without waiting for the end of the session."""
    log = ShardLog(tmp_path / "s", fsync=False)
    gone = threading.Event()
    flowing = threading.Event()

    def closed() -> bool:
        if gone.is_set():
            raise NotFound("the consumer was deregistered")
        return False

    def write() -> None:
        while not flowing.wait(0.01):
            log.append(_records(b"x"))

    async def run() -> None:
        follower = Follower(log, 1, closed=closed, readers=CapacityLimiter(2), seconds=30.0,
                            heartbeat=0.1)
        async for _ in follower.pages():
            gone.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        with pytest.raises(NotFound, match="deregistered"):
            asyncio.run(run())
    finally:
        flowing.set()
        writer.join()


def test_a_closed_shard_ends_after_its_last_record(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s", fsync=False)
    log.append(_records(b"a"))
    closed = [False]

    async def run() -> list[Page]:
        pages: list[Page] = []
        async for page in _follower(log, 1, closed=closed).pages():
            pages.append(page)
            if len(pages) == 1:  # a split closes the shard after one more record came
                log.append(_records(b"b"))
                closed[0] = True
                log.nudge()
        return pages

    pages = asyncio.run(run())
    assert [r.data for p in pages for r in p.records] == [b"a", b"b"]
    assert pages[-1].ended and pages[-1].records == [] and pages[-1].next_seq == 3


def test_a_log_closed_under_a_follower(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s", fsync=False)

    async def run() -> None:
        async for _ in _follower(log, 1).pages():
            pass

    threading.Timer(0.05, log.close).start()
    with pytest.raises(NotFound, match="deleted"):
        asyncio.run(run())


def test_wait_without_a_thread(tmp_path: Path) -> None:
    log = ShardLog(tmp_path / "s", fsync=False)

    async def run() -> tuple[bool, bool, bool]:
        timer = threading.Timer(0.05, lambda: log.append(_records(b"x")))
        timer.start()
        came = await wait(log, 0, 5.0)
        timer.join()
        missed = await wait(log, 1, 0.05)
        threading.Timer(0.05, log.nudge).start()
        poked = await wait(log, 1, 5.0)
        return came, missed, poked

    assert asyncio.run(run()) == (True, False, False)


def test_subscriptions_are_bounded() -> None:
    subscriptions = Subscriptions(2)
    first = subscriptions.acquire(("consumer", "shard-0"))
    with pytest.raises(Conflict, match="one at a time"):
        subscriptions.acquire(("consumer", "shard-0"))
    second = subscriptions.acquire()
    with pytest.raises(SubscriptionLimit) as caught:
        subscriptions.acquire()
    assert caught.value.retry_after and caught.value.details == {"limit": 2}
    first()
    first()  # given back once, however often
    assert subscriptions.open == 1
    subscriptions.acquire(("consumer", "shard-0"))
    second()
    assert subscriptions.open == 1
