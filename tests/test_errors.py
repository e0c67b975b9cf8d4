"""The exception tree travels from server to SDK as the same class."""

from __future__ import annotations

import pytest

from cumulo.errors import (
    Conflict,
    CumuloError,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    error_from_payload,
)


@pytest.mark.parametrize("cls", [CumuloError, Invalid, TooLarge, TooManyRequests, Unauthorized,
                                 Forbidden,
                                 NotFound, Conflict, Unavailable])
def test_round_trip(cls: type[CumuloError]) -> None:
    original = cls("something is wrong", details={"field": "name"})
    again = error_from_payload(cls.status, original.to_payload())
    assert type(again) is cls
    assert again.message == "something is wrong" and again.details == {"field": "name"}


def test_statuses_are_distinct_4xx_and_5xx() -> None:
    assert [c.status for c in (Invalid, Unauthorized, Forbidden, NotFound, Conflict, TooLarge,
                               Unavailable, CumuloError)] == [400, 401, 403, 404, 409, 413,
                                                              503, 500]


def test_foreign_bodies_fall_back_by_status() -> None:
    assert type(error_from_payload(404, "<html>not found</html>")) is NotFound
    assert type(error_from_payload(502, {"detail": "bad gateway"})) is CumuloError
    assert "502" in error_from_payload(502, "bad gateway").message
