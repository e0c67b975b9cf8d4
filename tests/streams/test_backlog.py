"""The shard backlog's decisions (streams.service.Backlog), without a server."""

from __future__ import annotations

from cumulo.streams.service import Backlog


def test_a_full_shard_refuses_until_what_waits_is_written() -> None:
    backlog = Backlog(100)
    assert backlog.take("s", {"a": 60, "b": 10}, refuse=True) == {"a", "b"}
    assert backlog.take("s", {"a": 50, "b": 50}, refuse=True) == {"b"}  # a: 110 > 100
    assert backlog.take("t", {"a": 50}, refuse=True) == {"a"}  # another stream's shard a
    backlog.written("s", {"a": 60})
    assert backlog.take("s", {"a": 50}, refuse=True) == {"a"}


def test_a_put_bigger_than_the_limit_goes_alone_and_internal_puts_are_never_refused() -> None:
    backlog = Backlog(10)
    assert backlog.take("s", {"a": 1000}, refuse=True) == {"a"}  # nothing waits: taken
    assert backlog.take("s", {"a": 1}, refuse=True) == set()
    assert backlog.take("s", {"a": 1}, refuse=False) == {"a"}  # counted all the same
    backlog.written("s", {"a": 1000})
    assert backlog.take("s", {"a": 10}, refuse=True) == set()  # 1 byte (internal) waits
    backlog.written("s", {"a": 1})
    assert backlog.take("s", {"a": 10}, refuse=True) == {"a"}
