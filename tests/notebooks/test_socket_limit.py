"""The proxy's bound on WebSockets carried at once (notebooks.proxy.SocketLimit)."""

from __future__ import annotations

from cumulo.notebooks.proxy import SocketLimit


def test_past_the_limit_a_socket_is_refused_until_one_is_given_back() -> None:
    limit = SocketLimit(2)
    assert limit.take() and limit.take()
    assert not limit.take() and limit.open == 2  # refused: nothing counted for it
    limit.give_back()
    assert limit.take() and not limit.take()
