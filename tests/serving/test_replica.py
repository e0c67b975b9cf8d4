"""The replica's request path, in process: batching, variants, errors that stay per request.

The ASGI app is driven through httpx's ASGI transport here; the end-to-end tests run replicas
as real processes behind a real server.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import orjson
import pytest

from cumulo.serving.formats import schema_from_signature
from cumulo.serving.replica import ReplicaApp, Variant

SCHEMA = schema_from_signature([{"name": "x", "type": "double"}])


class Doubler:
    """A model: 2x. It refuses x == 13, as a model that cannot score some input would."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, frame: Any) -> Any:
        self.calls.append(len(frame))
        if (frame["x"] == 13).any():
            raise ValueError("unlucky input")
        return (frame["x"] * 2).to_numpy()


def _client(app: ReplicaApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://replica")


def _body(*xs: float) -> bytes:
    return orjson.dumps({"dataframe_records": [{"x": x} for x in xs]})


JSON = {"content-type": "application/json"}


def test_concurrent_requests_share_model_calls() -> None:
    model = Doubler()
    app = ReplicaApp("e", [Variant("a", model, SCHEMA)], max_batch_size=64, max_wait_ms=20)

    async def go() -> list[httpx.Response]:
        async with _client(app) as c:
            return await asyncio.gather(*(c.post("/invocations", content=_body(100 + i),
                                                 headers=JSON) for i in range(40)))

    answers = asyncio.run(go())
    assert [r.json()["predictions"] for r in answers] == [[2.0 * (100 + i)] for i in range(40)]
    assert sum(model.calls) == 40 and len(model.calls) < 10, model.calls


def test_a_request_the_model_refuses_fails_alone() -> None:
    model = Doubler()
    app = ReplicaApp("e", [Variant("a", model, SCHEMA)], max_wait_ms=20)

    async def go() -> list[httpx.Response]:
        async with _client(app) as c:
            return await asyncio.gather(*(c.post("/endpoints/e/invocations", content=_body(i),
                                                 headers=JSON) for i in (1, 13, 3)))

    ok1, bad, ok3 = asyncio.run(go())
    assert ok1.json() == {"predictions": [2.0]} and ok3.json() == {"predictions": [6.0]}
    assert bad.status_code == 500
    error = bad.json()["error"]
    assert error["message"] == "the model raised ValueError: unlucky input"
    assert len(error["error_id"]) == 12


def test_bad_requests() -> None:
    app = ReplicaApp("e", [Variant("a", Doubler(), SCHEMA)], max_body=1000, max_wait_ms=1)

    async def go() -> dict[str, httpx.Response]:
        async with _client(app) as c:
            return {
                "json": await c.post("/invocations", content=b"{oops", headers=JSON),
                "type": await c.post("/invocations", content=orjson.dumps(
                    {"dataframe_records": [{"x": "high"}]}), headers=JSON),
                "big": await c.post("/invocations", content=b" " * 2000, headers=JSON),
                "path": await c.post("/nope", content=_body(1), headers=JSON),
                "get": await c.get("/invocations"),
                "ping": await c.get("/ping"),
                "variant": await c.post("/invocations", content=_body(1),
                                        headers={**JSON, "x-cumulo-variant": "zzz"}),
            }

    out = asyncio.run(go())
    assert out["json"].status_code == 400 and "not valid JSON" in out["json"].text
    assert out["type"].status_code == 400
    assert out["type"].json()["error"] == {
        "code": "invalid", "field": "x",
        "message": "column 'x', row 0: expected a number (double), got str 'high'"}
    assert out["big"].status_code == 413 and "limit is 1000" in out["big"].text
    assert out["path"].status_code == 404 and out["get"].status_code == 405
    assert out["ping"].status_code == 200
    assert out["variant"].status_code == 400 and "no variant 'zzz'" in out["variant"].text


def test_variants_weights_pins_and_shadows() -> None:
    seen: list[dict[str, Any]] = []
    shadow = Doubler()
    app = ReplicaApp("e", [Variant("a", Doubler(), SCHEMA, weight=3),
                           Variant("b", Doubler(), SCHEMA, weight=1),
                           Variant("s", shadow, SCHEMA, shadow=True)],
                     max_wait_ms=1, on_result=seen.append)

    async def go() -> list[httpx.Response]:
        async with _client(app) as c:
            answers = [await c.post("/invocations", content=_body(1), headers=JSON)
                       for _ in range(400)]
            answers.append(await c.post("/invocations", content=_body(1),
                                        headers={**JSON, "x-cumulo-variant": "b"}))
            await asyncio.sleep(0.2)  # the mirrored copies finish after the answers
            return answers

    answers = asyncio.run(go())
    served = Counter(r.headers["x-cumulo-variant"] for r in answers[:-1])
    assert set(served) == {"a", "b"} and 0.65 < served["a"] / 400 < 0.85, served
    assert answers[-1].headers["x-cumulo-variant"] == "b"
    assert sum(shadow.calls) == 401  # every request mirrored, none answered by it
    assert sum(1 for r in seen if r["shadow"]) == 401
    assert all(r["status"] == 200 and r["latency_s"] >= r["model_s"] for r in seen)
    with pytest.raises(ValueError, match="needs a variant that takes traffic"):
        ReplicaApp("e", [Variant("s", shadow, SCHEMA, shadow=True)])
