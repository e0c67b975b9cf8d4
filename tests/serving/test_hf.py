"""A Hugging Face model, imported by the registry, served by an endpoint like any model."""

from __future__ import annotations

import httpx
import pytest

from tests.hf import tiny_bert
from tests.services import ADMIN_TOKEN, Cumulo

# The endpoint's own address asks for a token (tests/serving/test_replica_auth.py).
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def sentiment(serving: Cumulo, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random BERT sentiment classifier (made here: no network), imported."""
    pytest.importorskip("transformers")
    folder = tiny_bert(tmp_path_factory.mktemp("hf") / "tiny-bert")
    serving.client().models.import_model(str(folder), name="sentiment")
    return "sentiment:1"


def test_a_transformers_model_serves_text(serving: Cumulo, sentiment: str) -> None:
    c = serving.client()
    info = c.endpoints.create("sentiment", sentiment, wait=True, timeout=180)
    answer = httpx.post(f"{info['url']}/invocations", headers=AUTH,
                        json={"inputs": ["a good movie", "the movie was bad"]}, timeout=60)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == 2
    assert {p["label"] for p in predictions} <= {"negative", "positive"}
    assert all(0 <= p["score"] <= 1 for p in predictions)
    # The SDK, and concurrent requests batched into one pipeline call.
    assert len(c.endpoints["sentiment"].invoke(b'{"instances": ["a bad movie"]}')
               ["predictions"]) == 1
    c.endpoints.delete("sentiment")
