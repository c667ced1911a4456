"""/v1/ask through real HTTP providers (a local OpenAI-compatible server that answers, fails or hangs),
over the real stack: fallbacks, retries, circuit breaker, routing, redaction canaries, the prompt-injection
screen, the context window, and the Redis cache invalidated by an ingest."""

from __future__ import annotations

import re
import time

import pytest

from query.cache import build_cache
from tests.query.stack import (
    CANARY_CARD,
    CANARY_EMAIL,
    CANARY_IBAN,
    CANARY_PHONE,
    Stack,
    auth,
    build_corpus,
    ingest,
)
from tests.support.llm_server import LlmServer

pytestmark = pytest.mark.model

LEAVE = "How many days of annual leave do employees get?"
CANARIES = [CANARY_EMAIL, CANARY_PHONE, CANARY_CARD, CANARY_IBAN]


def canary_forms(value: str) -> set[str]:
    """A value as written and without its separators (a model call must carry neither)."""
    return {value, re.sub(r"[\s\-()]", "", value)}


def provider(name: str, server: LlmServer, **extra) -> dict:
    return {"name": name, "base_url": server.url, "model": f"{name}-model", "timeout_seconds": 2, **extra}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, embedder, chunker):
    root = tmp_path_factory.mktemp("ask")
    s = Stack(root / "data", build_corpus(root / "corpus"), embedder, chunker)
    yield s
    s.close()


@pytest.fixture
def servers():
    with LlmServer() as a, LlmServer() as b:
        yield a, b


def keys() -> list[dict]:
    return [{"id": "tests", "key_env": "T_KEY"}]


def ask(client, question: str = LEAVE, **body):
    response = client.post("/v1/ask", json={"question": question, **body}, headers=auth())
    assert response.status_code == 200, response.text
    return response.json()


def test_environment_alone_configures_one_provider(stack, servers):
    server, _ = servers
    settings = {"llm_base_url": server.url, "llm_model": "env-model", "llm_external": False}
    with stack.client(settings=settings) as c:
        body = ask(c)
    assert body["extractive"] is False
    assert body["model"] == "env-model" and body["provider"] == "env"
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] > 0
    sent = server.requests[-1].body
    assert sent["model"] == "env-model"
    system, user = sent["messages"]
    assert "don't know" in system["content"] and "[1]" in user["content"] and LEAVE in user["content"]
    assert body["citations"] and body["citations"][0]["chunk_id"] in {s["chunk_id"] for s in body["sources"]}
    assert body["citations"][0]["supports"]


def test_answer_reports_model_usage_cost_and_caches(stack, servers):
    server, _ = servers
    config = {"api_keys": keys(), "providers": [provider("main", server, external=False, cost_per_1k_input_tokens=1.0,
                                                         cost_per_1k_output_tokens=2.0)]}
    with stack.client(config) as c:
        first = ask(c)
        second = ask(c, "  how many days of ANNUAL leave do employees get ")
        metrics = c.get("/metrics", headers=auth()).text
    usage = first["usage"]
    assert usage["cost"] == pytest.approx(usage["input_tokens"] / 1000 + 2 * usage["output_tokens"] / 1000)
    assert first["cached"] is False and second["cached"] is True
    assert second["answer"] == first["answer"]
    assert server.count("/chat/completions") == 1  # the cached answer cost no second call
    assert f'ragline_llm_tokens_total{{direction="input",model="main-model"}} {float(usage["input_tokens"])}' in metrics


def test_fallback_retries_and_circuit_breaker(stack, servers):
    dead, healthy = servers
    dead.fail_all(500)
    config = {"api_keys": keys(), "providers": [provider("dead", dead, external=False, max_attempts=2),
                                                provider("healthy", healthy, external=False)]}
    with stack.client(config) as c:
        answers = [ask(c, f"{LEAVE} ({i})") for i in range(5)]
        metrics = c.get("/metrics", headers=auth()).text
    assert {a["provider"] for a in answers} == {"healthy"}
    # 3 failed calls open the breaker (2 attempts each); afterwards the dead provider is not called at all
    assert dead.count("/chat/completions") == 3 * 2
    assert 'ragline_upstream_errors_total{provider="dead"} 5.0' in metrics  # 3 failures + 2 skips


def test_429_with_retry_after_is_honoured(stack, servers):
    server, _ = servers
    server.script(("status", 429, {"Retry-After": "0.5"}))
    config = {"api_keys": keys(), "providers": [provider("main", server, external=False)]}
    with stack.client(config) as c:
        started = time.perf_counter()
        body = ask(c, "What does the travel policy say about flights?")
        elapsed = time.perf_counter() - started
    assert body["provider"] == "main" and not body["extractive"]
    first, second = server.requests[-2:]
    assert second.at - first.at >= 0.5
    assert elapsed >= 0.5


def test_a_hanging_provider_times_out_and_the_next_answers(stack, servers):
    slow, fast = servers
    slow.script(("hang", 5), ("hang", 5))
    config = {"api_keys": keys(), "providers": [provider("slow", slow, external=False, timeout_seconds=0.5, max_attempts=1),
                                                provider("fast", fast, external=False)]}
    with stack.client(config) as c:
        started = time.perf_counter()
        body = ask(c, "Which laptop rules apply?")
        elapsed = time.perf_counter() - started
    assert body["provider"] == "fast"
    assert elapsed < 4


def test_every_provider_down_gives_a_labelled_extractive_answer_not_cached(stack, servers):
    a, b = servers
    a.fail_all(503)
    b.fail_all(500)
    config = {"api_keys": keys(), "providers": [provider("a", a, external=False, max_attempts=1),
                                                provider("b", b, external=False, max_attempts=1)]}
    with stack.client(config) as c:
        first = ask(c)
        second = ask(c)
    assert first["extractive"] is True and first["answer"].startswith("Extractive answer")
    assert any("generation unavailable" in w for w in first["warnings"])
    assert second["cached"] is False  # a degraded answer is not kept


def test_routing_sends_simple_questions_small_and_hard_ones_large(stack, servers):
    small, large = servers
    config = {"api_keys": keys(),
              "providers": [provider("small", small, external=False), provider("large", large, external=False)],
              "routing": {"small": ["small", "large"], "large": ["large", "small"]}}
    with stack.client(config) as c:
        simple = ask(c, "How many leave days?")
        hard = ask(c, "Compare the travel expense rules with the code of conduct on gifts and explain the differences")
        preferred = ask(c, "How many leave days do staff get?", model="large-model")
    assert simple["provider"] == "small" and simple["route"]["name"] == "small"
    assert hard["provider"] == "large" and hard["route"]["name"] == "large"
    assert "compare" in hard["route"]["reason"]
    assert preferred["provider"] == "large"
    with stack.client(config) as c:
        unknown = c.post("/v1/ask", json={"question": "leave?", "model": "gpt-99"}, headers=auth())
    assert unknown.status_code == 422 and "gpt-99" in unknown.json()["error"]


def test_no_canary_pii_reaches_an_external_provider(stack, servers):
    server, _ = servers
    # the model echoes every placeholder it was given, so restoring them can be checked
    server.reply = lambda body: "Contact: " + " ".join(sorted(set(re.findall(r"<[A-Z_]+_\d+>", body["messages"][-1]["content"])))) + " [1]"
    config = {"api_keys": keys(), "providers": [provider("cloud", server, external=True)]}
    questions = [
        "Who is the payroll contact and how do I reach them?",
        f"Is {CANARY_EMAIL} the payroll contact, and can I call {CANARY_PHONE}?",
        f"Which account is {CANARY_IBAN} and may I book travel with card {CANARY_CARD}?",
    ]
    with stack.client(config) as c:
        bodies = [ask(c, q, k=8) for q in questions]
    assert server.count("/chat/completions") == len(questions)
    sent = b"".join(server.raw_bodies).decode("utf-8")
    assert "payroll" in sent.lower()  # the planted document was retrieved and sent (redacted)
    for canary in CANARIES:
        for form in canary_forms(canary):
            assert form not in sent, f"{form!r} reached the external provider"
    assert "<EMAIL_1>" in sent and "<IBAN_1>" in sent and "<CARD_1>" in sent and "<PHONE_1>" in sent
    # the caller sees the real values again, and how many were redacted
    assert CANARY_EMAIL in bodies[0]["answer"] and bodies[0]["redactions"]["EMAIL"] >= 1


def test_an_internal_provider_gets_the_text_unredacted(stack, servers):
    server, _ = servers
    config = {"api_keys": keys(), "providers": [provider("on-prem", server, external=False)]}
    with stack.client(config) as c:
        body = ask(c, "Who is the payroll contact and how do I reach them?", k=8)
    assert CANARY_EMAIL in b"".join(server.raw_bodies).decode("utf-8")
    assert body["redactions"] == {}


def test_instructions_inside_documents_are_removed_and_flagged(stack, servers):
    server, _ = servers
    config = {"api_keys": keys(), "providers": [provider("main", server, external=False)]}
    with stack.client(config) as c:
        body = ask(c, "Where do visitors park?", k=3)
    sent = server.requests[-1].body["messages"][-1]["content"]
    assert "level -2" in sent  # the document is still used...
    assert "ignore all previous instructions" not in sent.lower()  # ...without the planted instruction
    assert any("ops/parking.md" in w and "instructions" in w for w in body["warnings"])


def test_context_is_cut_to_the_model_window_by_whole_passages(stack, servers, embedder):
    server, _ = servers
    config = {"api_keys": keys(), "providers": [provider("tiny", server, external=False, context_window=1200,
                                                         max_output_tokens=200)]}
    with stack.client(config) as c:
        body = ask(c, "What are the rules for expenses, travel and leave?", k=20)
    messages = server.requests[-1].body["messages"]
    prompt_tokens = sum(embedder.count_tokens(m["content"]) for m in messages)
    assert prompt_tokens + 200 <= 1200
    assert body["passages"]["dropped_to_fit"] > 0 and body["passages"]["sent"] >= 1
    user = messages[-1]["content"]
    numbers = [int(n) for n in re.findall(r"^\[(\d+)\]", user, flags=re.M)]
    assert numbers == list(range(1, len(numbers) + 1))  # kept passages renumbered contiguously
    # the passages kept are the best scored ones
    kept_scores = sorted((s["score"] for s in body["sources"]), reverse=True)[: body["passages"]["sent"]]
    assert min(kept_scores) >= sorted((s["score"] for s in body["sources"]), reverse=True)[body["passages"]["sent"]]


@pytest.mark.redis
def test_redis_cache_is_invalidated_by_an_ingest_that_changes_the_collection(stack, servers, redis_url, embedder, chunker):
    server, _ = servers
    config = {"api_keys": keys(), "providers": [provider("main", server, external=False)]}
    with stack.client(config, cache=build_cache(redis_url, ttl_seconds=600)) as c:
        assert c.get("/readyz").json()["checks"]["cache"] == {"ok": True, "kind": "redis"}
        assert ask(c)["cached"] is False
        assert ask(c)["cached"] is True
        calls = server.count("/chat/completions")
        # an ingest that changes nothing still starts and finishes a run: entries made before it are not reused
        handbook = stack.corpus / "hr" / "onboarding-guide.md"
        handbook.write_text(handbook.read_text(encoding="utf-8") + "\n\nNew: badges are collected at reception.\n",
                            encoding="utf-8")
        report = ingest(stack.corpus, stack.store, stack.ledger, embedder, chunker)
        assert report.updated == 1
        after = ask(c)
        assert after["cached"] is False
        assert server.count("/chat/completions") == calls + 1
        assert ask(c)["cached"] is True


@pytest.mark.redis
def test_redis_down_the_service_answers_without_cache_and_readyz_says_so(stack, servers):
    server, _ = servers
    config = {"api_keys": keys(), "providers": [provider("main", server, external=False)]}
    with stack.client(config, cache=build_cache("redis://127.0.0.1:1/0", ttl_seconds=600)) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["cache"]["ok"] is False
        started = time.perf_counter()
        first, second = ask(c), ask(c)
        assert time.perf_counter() - started < 10
    assert first["cached"] is False and second["cached"] is False
    assert not first["extractive"]
