"""The S3 requests tally (cumulo.storage.requests): S3's price classes, and a bound on what it
holds between two metering rounds."""

from __future__ import annotations

import pytest

from cumulo.storage import requests
from cumulo.storage.requests import RequestTally


def test_classes_and_taking() -> None:
    tally = RequestTally()
    for method, has_key in (("PUT", True), ("POST", True), ("GET", False), ("GET", True),
                            ("HEAD", True), ("DELETE", True)):
        tally.count("data", 1, method, has_key=has_key)
    assert tally.take() == {("data", 1): {"put": 3, "get": 2}}  # DELETE is free
    assert tally.take() == {}
    tally.give_back({("data", 1): {"put": 2}})
    tally.count("data", 1, "PUT", has_key=True)
    assert tally.take() == {("data", 1): {"put": 3}}


def test_new_holders_past_the_bound_are_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requests, "MAX_HOLDERS", 3)
    tally = RequestTally()
    for i in range(5):
        tally.count(f"b{i}", 1, "GET", has_key=True)
    tally.count("b0", 1, "GET", has_key=True)  # one already held still counts
    assert tally.take() == {("b0", 1): {"get": 2}, ("b1", 1): {"get": 1},
                            ("b2", 1): {"get": 1}}
