"""Real-time scoring of a stream through an endpoint, against a real server, a real endpoint
(a scikit-learn model registered with MLflow) and real Delta tables: each record with its
prediction into a stream (same partition key) or a table; records that are not JSON or that
the model refuses counted, with the last reason; an endpoint that goes away pauses scoring,
which goes on, dropping nothing, once it is back; and each bad input refused."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest

from cumulo.errors import Conflict, Forbidden, Invalid, NotFound
from tests.services import Cumulo, register_churn, start_cumulo


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    # Replicas fork from the serving fork server, as with 'cumulo up's defaults.
    cumulo = start_cumulo(tmp_path_factory.mktemp("scoring") / ".cumulo",
                          {"CUMULO_SERVING_PRELOAD": "1"})
    register_churn(cumulo, "churn", "scoring-tests")
    cumulo.client().endpoints.create("churn", "churn:1", wait=True)
    yield cumulo
    cumulo.stop()


def _name(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:8]


def _until(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.2)
    return value


def _put(server: Cumulo, stream: str, records: list[tuple[str, Any]]) -> None:
    server.client().streams.put_records(stream, [
        {"partition_key": key, "data": r if isinstance(r, str) else json.dumps(r)}
        for key, r in records])


def _read(server: Cumulo, stream: str) -> list[tuple[str, dict[str, Any]]]:
    """Every record of the stream: (partition key, the record as JSON)."""
    c = server.client()
    out = []
    for shard in c.streams.show(stream)["shards"]:
        page = c.streams.get(stream, shard=shard["shard_id"], start="TRIM_HORIZON",
                             limit=10_000)
        out += [(r["partition_key"], json.loads(base64.b64decode(r["data_base64"])))
                for r in page["records"]]
    return out


CUSTOMERS: list[tuple[str, dict[str, Any]]] = [
    (f"u{i}", {"user": f"u{i}", "tenure": tenure, "spend": spend})
    for i, (tenure, spend) in enumerate([(2, 30.0), (50, 80.0), (1, 20.0), (60, 90.0),
                                         (3, 25.0), (45, 75.0)])]


def test_records_are_scored_into_a_stream_and_failures_counted(server: Cumulo) -> None:
    c = server.client()
    source, scored = _name("events"), _name("scored")
    c.streams.create(source, shards=2)
    c.streams.create(scored)
    made = c.streams.score(source, endpoint="churn", to_stream=scored, batch=4)
    assert (made["name"], made["state"], made["to_stream"]) == ("churn", "running", scored)
    time.sleep(2.5)  # it starts at LATEST: give the control plane its look
    _put(server, source, CUSTOMERS)
    got = _until(lambda: len(out := _read(server, scored)) == len(CUSTOMERS) and out)
    by_user = {record["user"]: (key, record) for key, record in got}
    for key, customer in CUSTOMERS:
        out_key, record = by_user[customer["user"]]
        assert out_key == key  # the same partition key
        assert record == {**customer, "prediction": 1 if customer["tenure"] < 10 else 0}
    # Not JSON, not an object, and a row the model refuses (text for a number): counted,
    # the rest of their batch scored. One partition key: one shard, so one batch (the scorer
    # reads a shard as soon as its records are on disk, and each shard's are written apart).
    bad = [("bad", "not json"), ("bad", [1, 2]), ("bad", {"user": "b3", "tenure": "long",
                                                         "spend": 1.0}),
           ("bad", {"user": "b4", "tenure": 5, "spend": 10.0})]
    _put(server, source, bad)
    _until(lambda: c.streams.scorer(source, "churn")["failed"] == 3)
    doc = _until(lambda: (d := c.streams.scorer(source, "churn"))["records"] == 7 and d)
    assert doc["behind"] == 0 and doc["state"] == "running"
    assert "the endpoint refused it: 400" in doc["last_failure"] and "tenure" in \
        doc["last_failure"], doc["last_failure"]
    assert next(r for _, r in _read(server, scored) if r["user"] == "b4")["prediction"] == 1
    shown = server.cli("streams", "scorers", "show", source, "churn")
    assert shown.returncode == 0 and f"stream {scored}" in shown.stdout, shown.stdout
    listed = server.cli("streams", "show", source)
    assert "churn" in listed.stdout and "running" in listed.stdout
    # Stopped, it reads nothing; started, it goes on where it was.
    assert c.streams.stop_scorer(source, "churn")["state"] == "stopped"
    _put(server, source, CUSTOMERS[:2])
    time.sleep(2.5)
    assert len(_read(server, scored)) == 7
    assert c.streams.scorer(source, "churn")["behind"] == 2
    c.streams.start_scorer(source, "churn")
    _until(lambda: len(_read(server, scored)) == 9)
    c.streams.delete_scorer(source, "churn")
    assert c.streams.scorers(source) == []


def test_an_endpoint_that_goes_away_pauses_scoring_and_nothing_is_dropped(
        server: Cumulo) -> None:
    c = server.client()
    endpoint, source, scored = _name("e"), _name("events"), _name("scored")
    c.endpoints.create(endpoint, "churn:1", wait=True)
    c.streams.create(source)
    c.streams.create(scored)
    c.streams.score(source, endpoint=endpoint, to_stream=scored, start="TRIM_HORIZON")
    _put(server, source, CUSTOMERS[:2])
    _until(lambda: len(_read(server, scored)) == 2)
    c.endpoints.delete(endpoint)
    _put(server, source, CUSTOMERS[2:])
    # While the endpoint goes away the reason may first be its replicas' (stopping, not
    # answering); once it is gone, the reason says so.
    paused = _until(lambda: (d := c.streams.scorer(source, endpoint))["state"] == "paused"
                    and f"no endpoint {endpoint!r}" in (d["error"] or "") and d)
    assert "nothing is dropped" in paused["error"]
    assert paused["behind"] == 4 and paused["failed"] == 0
    shown = server.cli("streams", "scorers", "ls", source)
    assert "paused" in shown.stdout
    c.endpoints.create(endpoint, "churn:1", wait=True)
    _until(lambda: len(_read(server, scored)) == len(CUSTOMERS))
    doc = _until(lambda: (d := c.streams.scorer(source, endpoint))["state"] == "running" and d)
    assert doc["error"] is None and doc["failed"] == 0 and doc["records"] == len(CUSTOMERS)
    c.endpoints.delete(endpoint)


def test_records_are_scored_into_a_table_once(server: Cumulo) -> None:
    c = server.client()
    c.tables.create_database("scores")
    source, table = _name("events"), f"scores.{_name('t')}"
    c.streams.create(source, shards=2)
    c.tables.write(table, pa.schema([("user", pa.string()), ("tenure", pa.int64()),
                                     ("spend", pa.float64()),
                                     ("prediction", pa.int64())]).empty_table())
    c.streams.score(source, endpoint="churn", to_table=table, start="TRIM_HORIZON",
                    scorer="to-table")
    _put(server, source, CUSTOMERS)
    rows = _until(lambda: len(r := c.tables.read(table).to_pylist()) == len(CUSTOMERS) and r)
    assert sorted((r["user"], r["prediction"]) for r in rows) == sorted(
        (cst["user"], 1 if cst["tenure"] < 10 else 0) for _, cst in CUSTOMERS)
    # A stop and a start: each record once in the table.
    c.streams.stop_scorer(source, "to-table")
    _put(server, source, CUSTOMERS[:3])
    c.streams.start_scorer(source, "to-table")
    _until(lambda: len(c.tables.read(table).to_pylist()) == len(CUSTOMERS) + 3)
    time.sleep(1.5)
    assert len(c.tables.read(table).to_pylist()) == len(CUSTOMERS) + 3
    c.streams.delete_scorer(source, "to-table")


def test_bad_scorers_are_refused(server: Cumulo) -> None:
    c = server.client()
    source, scored = _name("events"), _name("scored")
    c.streams.create(source)
    c.streams.create(scored)
    c.tables.create_database("plain")
    c.tables.write("plain.t", pa.table({"user": ["u"]}))
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"endpoint": "nope", "to_stream": scored}, NotFound, "no endpoint 'nope'; 'cumulo "
                                                              "endpoints ls' lists them"),
        ({"endpoint": "churn"}, Invalid, "give a scorer --to-stream STREAM or --to-table"),
        ({"endpoint": "churn", "to_stream": scored, "to_table": "plain.t"}, Invalid,
         "give a scorer --to-stream STREAM or --to-table"),
        ({"endpoint": "churn", "to_stream": source}, Invalid, "is the stream scored: its own "
                                                              "output would be scored again"),
        ({"endpoint": "churn", "to_stream": "ghost"}, NotFound,
         "output stream 'ghost' does not exist: create it first ('cumulo streams create "
         "ghost')"),
        ({"endpoint": "churn", "to_stream": scored, "batch": 0}, Invalid,
         "--batch is 1 to 1000 records a request, not 0"),
        ({"endpoint": "churn", "to_stream": scored, "start": "AT_TIMESTAMP"}, Invalid,
         "a scorer starts at LATEST or TRIM_HORIZON"),
        ({"endpoint": "churn", "to_table": "plain.t"}, Invalid,
         "table plain.t has no column 'prediction'"),
        ({"endpoint": "churn", "to_table": "plain.nope"}, NotFound, "nope"),
        ({"endpoint": "churn", "to_stream": scored, "scorer": "a b"}, Invalid,
         "scorer name 'a b' is not allowed"),
    ]
    for options, error, match in cases:
        with pytest.raises(error, match=re.escape(match)):
            c.streams.score(source, **options)
    with pytest.raises(NotFound, match="stream 'nowhere' does not exist"):
        c.streams.score("nowhere", endpoint="churn", to_stream=scored)
    assert c.streams.scorers(source) == []  # nothing half made
    c.streams.score(source, endpoint="churn", to_stream=scored)
    with pytest.raises(Conflict, match="has a scorer 'churn' already"):
        c.streams.score(source, endpoint="churn", to_stream=scored)
    with pytest.raises(NotFound, match=re.escape(f"stream {source!r} has no scorer 'x'; "
                                                 f"'cumulo streams scorers ls {source}'")):
        c.streams.scorer(source, "x")
    # The maker must be able to call the endpoint: the scorer calls it as them.
    c.users.create("no-churn", kind="service", role="developer")
    c.policies.create("no-churn", document={"statements": [{
        "effect": "deny", "actions": ["endpoints:Invoke"], "resources": ["endpoint/churn"]}]})
    c.access.grant(user="no-churn", policy="no-churn")
    other = server.client(c.tokens.create("t", user="no-churn")["token"])
    with pytest.raises(Forbidden, match="endpoints:Invoke on endpoint/churn"):
        other.streams.score(source, endpoint="churn", to_stream=scored, scorer="theirs")
    out = server.cli("streams", "score", source, "--endpoint", "churn", "--to-stream", scored,
                     "--batch", "5000")
    assert out.returncode != 0 and "--batch is 1 to 1000" in out.stderr, out.stderr
