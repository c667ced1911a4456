"""The OpenAI-compatible embedder against a real local HTTP server whose vectors come from the real MiniLM.

The server speaks the `/v1/embeddings` shape and can be scripted to answer 429 with Retry-After,
500, 401 (echoing the key it got, as some providers do), vectors of the wrong size, or its data
shuffled. It records every request. The end-to-end test syncs a folder through it, searches, and
checks that the collection refuses the local model afterwards.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from connectors.http import RetryPolicy
from embedders.openai_compatible import EmbeddingError, OpenAICompatibleEmbedder, TokenBudget
from embedders.sentence_transformer import bundled_model_path
from ragline.components import build_chunker, build_embedder, connectors_for, local_connector, open_components
from ragline.config import Settings
from ragline.errors import ConfigError, IndexMismatchError
from ragline.ledger import Ledger
from ragline.pipeline import sync_source
from query.search import search
from stores.edge import EdgeStore

pytestmark = pytest.mark.model

KEY = "sk-test-0123456789abcdef"
MODEL = "text-embedding-minilm-test"
DIM = 384
FAST_RETRY = RetryPolicy(max_attempts=3, backoff=0.01, max_backoff=0.05, max_retry_time=5.0)


@pytest.fixture(autouse=True)
def no_ragline_env(monkeypatch):
    """Settings read RAGLINE_* variables: the tests' own values must be the only ones."""
    for name in [n for n in os.environ if n.startswith("RAGLINE_") and n != "RAGLINE_REQUIRE_SERVICES"]:
        monkeypatch.delenv(name)


@dataclass
class Script:
    """What the server does: scripted answers first (one per request), then normal ones."""

    local: Any  # the real MiniLM embedder
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (status, headers)
    shuffle: bool = False
    dim: int = DIM
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            auth = self.headers.get("Authorization", "")
            with script.lock:
                script.requests.append({"path": self.path, "body": body, "auth": auth, "at": time.monotonic()})
                scripted = script.answers.pop(0) if script.answers else None
            if self.path != "/v1/embeddings":
                return self.reply(404, {"error": {"message": f"no route {self.path}"}})
            if auth != f"Bearer {KEY}":
                given = auth.removeprefix("Bearer ")
                # Providers echo (part of) the rejected key; the client must scrub it.
                return self.reply(401, {"message": f"Incorrect API key provided: {given}"})
            if scripted:
                status, headers = scripted
                return self.reply(status, {"error": {"message": "scripted"}}, headers)
            texts = body["input"]
            vectors = script.local.embed(texts) * 2.5  # not unit length: the client normalises
            if script.dim != DIM:
                vectors = np.resize(vectors, (len(texts), script.dim))
            data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
            if script.shuffle:
                random.Random(7).shuffle(data)
            self.reply(200, {"object": "list", "data": data, "model": body["model"],
                             "usage": {"prompt_tokens": 0, "total_tokens": 0}})

    return Handler


@pytest.fixture
def server(embedder) -> Iterator[tuple[str, Script]]:
    script = Script(local=embedder)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(script))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    httpd.shutdown()
    httpd.server_close()


def remote(base_url: str, **kwargs: Any) -> OpenAICompatibleEmbedder:
    options: dict[str, Any] = {"dim": DIM, "tokenizer": bundled_model_path(), "max_tokens": 512,
                               "api_key": KEY, "retry": FAST_RETRY}
    return OpenAICompatibleEmbedder(base_url, MODEL, **(options | kwargs))


TEXTS = [
    "Employees accrue annual leave monthly.",
    "Flights shorter than six hours are booked in economy class.",
    "Rotate API keys every ninety days and use a password manager.",
    "The cafeteria serves lunch from noon to two.",
    "Encrypt every laptop disk.",
]


def test_vectors_match_the_local_model(server, embedder):
    url, script = server
    vectors = remote(url).embed(TEXTS)
    local = embedder.embed(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), DIM)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.all(np.sum(vectors * local, axis=1) > 0.999)
    request = script.requests[0]
    assert request["path"] == "/v1/embeddings" and request["body"] == {"model": MODEL, "input": TEXTS}
    assert request["auth"] == f"Bearer {KEY}"


def test_batches_of_at_most_batch_size(server, embedder):
    url, script = server
    texts = [f"Note number {i} about the travel policy." for i in range(7)]
    vectors = remote(url, batch_size=3).embed(texts)
    assert [len(r["body"]["input"]) for r in script.requests] == [3, 3, 1]
    assert [t for r in script.requests for t in r["body"]["input"]] == texts
    assert np.all(np.sum(vectors * embedder.embed(texts), axis=1) > 0.999)


def test_order_restored_when_the_server_shuffles(server, embedder):
    url, script = server
    script.shuffle = True
    vectors = remote(url).embed(TEXTS)
    assert np.all(np.sum(vectors * embedder.embed(TEXTS), axis=1) > 0.999)


def test_429_with_retry_after_is_honoured_then_succeeds(server):
    url, script = server
    script.answers = [(429, {"Retry-After": "0.3"})]
    vectors = remote(url).embed(TEXTS[:2])
    assert vectors.shape == (2, DIM)
    first, second = script.requests
    assert second["at"] - first["at"] >= 0.3
    assert len(script.requests) == 2


def test_outage_after_retries_aborts_with_embedding_error(server):
    url, script = server
    script.answers = [(500, {})] * 3
    with pytest.raises(EmbeddingError, match=r"127\.0\.0\.1 is unavailable.*server error \(500\).*3 attempt"):
        remote(url).embed(TEXTS[:1])
    assert len(script.requests) == 3


def test_wrong_key_is_a_config_error_without_the_key(server):
    url, script = server
    wrong = "sk-wrong-key-that-must-not-leak"
    with pytest.raises(ConfigError) as caught:
        remote(url, api_key=wrong).embed(TEXTS[:1])
    message = str(caught.value)
    assert "127.0.0.1" in message and "401" in message and "RAGLINE_EMBED_API_KEY" in message
    assert wrong not in message and wrong not in repr(caught.value)
    assert len(script.requests) == 1  # a 401 is not retried


def test_dimension_mismatch_names_both_numbers(server):
    url, script = server
    script.dim = 512
    with pytest.raises(EmbeddingError, match=r"512 dimensions, but 384 are configured"):
        remote(url).embed(TEXTS[:2])


def test_token_budget_blocks_until_tokens_fit():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    budget = TokenBudget(120, clock=lambda: now[0], sleep=sleep)  # 2 tokens per second
    assert budget.take(100) == 0.0
    assert budget.take(60) == pytest.approx(20.0)  # 40 tokens short at 2 per second
    now[0] += 30.0  # 60 tokens back
    assert budget.take(60) == 0.0
    assert slept == [pytest.approx(20.0)]
    with pytest.raises(ConfigError, match="121 tokens can never fit the embedding budget of 120"):
        budget.take(121)


def test_embed_waits_for_the_budget_and_splits_batches_by_tokens(server, embedder):
    url, script = server
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    client = remote(url, max_tokens=16, tokens_per_minute=20, clock=lambda: now[0], sleep=sleep)
    counts = [client.count_tokens(t) for t in TEXTS]
    assert all(n <= 16 for n in counts) and sum(counts) > 40  # needs more than two minutes' budget
    vectors = client.embed(TEXTS)
    sent = [r["body"]["input"] for r in script.requests]
    assert [t for batch in sent for t in batch] == TEXTS
    assert all(sum(client.count_tokens(t) for t in batch) <= 20 for batch in sent)
    assert len(sent) > 1
    # The bucket started full (20): every token beyond it waited 3 s (20 tokens per minute).
    assert sum(slept) == pytest.approx((sum(counts) - 20) * 3.0)
    assert np.all(np.sum(vectors * embedder.embed(TEXTS), axis=1) > 0.999)


def test_text_larger_than_the_budget_is_refused_before_any_request(server):
    url, script = server
    client = remote(url, max_tokens=16, tokens_per_minute=20)
    with pytest.raises(ConfigError, match=r"text 1 of 2 has \d+ tokens, more than the whole embedding budget of 20"):
        client.embed(["short", " ".join(["policy"] * 40)])
    assert script.requests == []


def test_settings_errors(tmp_path):
    with pytest.raises(ConfigError, match="RAGLINE_EMBED_DIM, RAGLINE_EMBED_TOKENIZER must be set too"):
        build_embedder(Settings(embed_base_url="http://127.0.0.1:9/v1", embed_model=MODEL))
    with pytest.raises(ConfigError, match="needs a local tokenizer"):
        OpenAICompatibleEmbedder("http://127.0.0.1:9/v1", MODEL, dim=DIM, tokenizer=None, max_tokens=512)
    with pytest.raises(ConfigError, match="smaller than the model window"):
        remote("http://127.0.0.1:9/v1", tokens_per_minute=100)
    built = build_embedder(Settings(embed_base_url="http://127.0.0.1:9/v1", embed_model=MODEL, embed_dim=DIM,
                                    embed_tokenizer=bundled_model_path(), embed_api_key=KEY, model_window=8191))
    assert isinstance(built, OpenAICompatibleEmbedder)
    assert (built.model_name, built.dim, built.max_tokens, built.special_tokens) == (MODEL, DIM, 8191, 0)
    assert KEY not in repr(built)


CORPUS = {
    "leave.md": "# Annual leave\n\n" + " ".join(
        f"Rule {i}: employees accrue paid annual leave every month and may carry over up to five unused days "
        "into the next calendar year with their manager's approval." for i in range(40)
    ),
    "travel.txt": " ".join(
        f"Travel note {i}: economy class is required for flights shorter than six hours; business class "
        "needs a director's sign-off." for i in range(30)
    ),
    "security.md": "# Passwords\n\nUse a password manager. Rotate keys every ninety days.\n\n# Laptops\n\nEncrypt every disk.",
}


def write_corpus(folder: Path) -> None:
    folder.mkdir()
    for name, text in CORPUS.items():
        (folder / name).write_text(text, encoding="utf-8")


def test_sync_and_search_through_the_endpoint_then_the_local_model_is_refused(server, tmp_path):
    url, script = server
    folder = tmp_path / "docs"
    write_corpus(folder)
    data = tmp_path / "data"
    remote_settings = Settings(data_dir=data, embed_base_url=url, embed_model=MODEL, embed_api_key=KEY, embed_dim=DIM,
                               embed_tokenizer=bundled_model_path(), model_window=512, chunk_tokens=400)
    with open_components(remote_settings) as c:
        assert isinstance(c.embedder, OpenAICompatibleEmbedder)
        [connector] = connectors_for(c, folder=folder, source="docs")
        report = sync_source(connector, store=c.store, ledger=c.ledger, embedder=c.embedder, chunker=c.chunker)
        assert (report.status, report.added, report.failed) == ("ok", 3, 0)
        assert script.requests and all(r["body"]["model"] == MODEL for r in script.requests)
        tokens = [p["token_count"] for _, p in c.store.iter_points()]
        assert max(tokens) > 256  # chunks larger than MiniLM's local window: the endpoint's window was used
        assert max(tokens) <= 400
        spec = c.store.spec()
        assert (spec.model, spec.dim, spec.window, spec.chunk_tokens) == (MODEL, DIM, 512, 400)
        hits = search("Which class must I fly on a short flight?", embedder=c.embedder, store=c.store, k=3)
        assert hits[0].payload["doc_id"] == "travel.txt"
        hits = search("How often should keys be rotated?", embedder=c.embedder, store=c.store, k=3)
        assert hits[0].payload["doc_id"] == "security.md"

    # The same collection with the local MiniLM: refused before anything is embedded or written.
    local_settings = Settings(data_dir=data, embed_base_url=None)
    with open_components(local_settings) as c:
        assert c.embedder.model_name == "all-MiniLM-L6-v2"
        [connector] = connectors_for(c, folder=folder, source="docs")
        with pytest.raises(IndexMismatchError, match=MODEL):
            sync_source(connector, store=c.store, ledger=c.ledger, embedder=c.embedder, chunker=c.chunker)


def test_endpoint_outage_aborts_the_sync_instead_of_quarantining(server, tmp_path):
    url, script = server
    folder = tmp_path / "docs"
    write_corpus(folder)
    script.answers = [(503, {})] * 10
    store = EdgeStore(path=tmp_path / "qdrant")
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    settings = Settings(data_dir=tmp_path, model_window=512)
    try:
        client = remote(url)
        connector = local_connector(settings, folder, name="docs")
        with pytest.raises(EmbeddingError, match="unavailable"):
            sync_source(connector, store=store, ledger=ledger, embedder=client, chunker=build_chunker(settings, client))
        assert [d for d in ledger.documents("docs") if d.status == "failed"] == []  # nothing quarantined
        assert ledger.last_run("docs")["status"] == "error"
    finally:
        store.close()
        ledger.close()
