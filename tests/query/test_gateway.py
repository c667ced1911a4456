"""The model gateway against real OpenAI-compatible servers over HTTP (tests/support/llm_server.py).

Covers the answer and its usage/cost, retries inside one provider (429 with Retry-After, 500, timeouts),
fallback across providers, the circuit breaker (open, half-open, close), routing and configuration errors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from connectors.http import HttpFailure
from query.gateway import (
    CircuitBreaker,
    Gateway,
    GatewayUnavailable,
    Provider,
    ProviderConfig,
    RouteDecision,
    RoutingConfig,
)
from ragline.errors import ConfigError
from tests.support.llm_server import LlmServer

QUESTION = [{"role": "system", "content": "Answer from the passages."},
            {"role": "user", "content": "Context passages:\n\n[1] handbook.pdf (page 3)\nLeave requests go to HR. "
                                        "They take two days.\n\n[2] other.txt\nUnrelated.\n\nQuestion: who handles leave?"}]


@pytest.fixture
def servers() -> Iterator[Callable[..., LlmServer]]:
    """A factory of started LlmServers, all stopped at the end of the test."""
    with ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(LlmServer(**kwargs))


_OPEN: list[Provider] = []


@pytest.fixture(autouse=True)
def _close_providers() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def provider(server: LlmServer, name: str, *, key: str | None = None, breaker: CircuitBreaker | None = None,
             **config: Any) -> Provider:
    made = Provider(ProviderConfig(name=name, base_url=server.url, model=f"{name}-model", **config),
                    api_key=SecretStr(key) if key else None, breaker=breaker)
    _OPEN.append(made)
    return made


SMALL = RouteDecision("small", "simple")


# --------------------------------------------------------------------------- the answer


def test_answer_shape_usage_and_cost(servers):
    llm = servers(api_key="sk-right")
    gateway = Gateway([provider(llm, "p1", key="sk-right", cost_per_1k_input_tokens=2.0,
                                cost_per_1k_output_tokens=4.0, max_output_tokens=100)])
    completion = gateway.complete(QUESTION, decision=SMALL, max_tokens=300)
    gateway.close()

    assert completion.text == 'According to the context, "Leave requests go to HR." [1]'
    assert (completion.provider, completion.model, completion.route, completion.failures) == ("p1", "p1-model", SMALL, [])
    prompt_words = sum(len(m["content"].split()) for m in QUESTION)
    assert completion.usage.input_tokens == prompt_words
    assert completion.usage.output_tokens == len(completion.text.split())
    assert completion.usage.cost == pytest.approx((prompt_words * 2.0 + completion.usage.output_tokens * 4.0) / 1000)
    assert 0 < completion.latency_seconds < 5

    [request] = llm.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-right"
    assert request.body["model"] == "p1-model"
    assert request.body["messages"] == QUESTION
    assert request.body["max_tokens"] == 100  # the caller's 300 is capped by the provider's max_output_tokens


def test_server_answers_in_the_openai_shape(servers):
    llm = servers()
    body = httpx.post(f"{llm.url}/chat/completions", json={"model": "m", "messages": QUESTION}).json()
    assert body["object"] == "chat.completion" and body["model"] == "m" and body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"]["role"] == "assistant" and body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


@pytest.mark.model
def test_server_embeddings_with_the_real_model(servers, embedder):
    llm = servers(embed=lambda texts: embedder.embed(texts).tolist())
    many = httpx.post(f"{llm.url}/embeddings", json={"model": "e", "input": ["leave policy", "holiday rules"]}).json()
    one = httpx.post(f"{llm.url}/embeddings", json={"model": "e", "input": "leave policy"}).json()
    assert many["object"] == "list" and [d["index"] for d in many["data"]] == [0, 1]
    assert len(many["data"][0]["embedding"]) == embedder.dim
    assert one["data"][0]["embedding"] == pytest.approx(many["data"][0]["embedding"], abs=1e-5)
    assert many["usage"]["prompt_tokens"] == 4
    assert httpx.post(f"{servers().url}/embeddings", json={"input": "x"}).status_code == 501


def test_a_200_without_content_falls_back(servers):
    empty, good = servers(), servers()
    empty.reply = lambda body: None  # type: ignore[assignment,return-value] - a broken deployment: content null
    gateway = Gateway([provider(empty, "p1"), provider(good, "p2")])
    completion = gateway.complete(QUESTION, decision=SMALL)
    assert completion.provider == "p2"
    assert completion.failures == ["p1: provider 'p1' answered 200 without choices[0].message.content"]
    with pytest.raises(HttpFailure, match="without choices"):
        provider(empty, "solo").chat(QUESTION)


# --------------------------------------------------------------------------- retries within one provider


def test_429_waits_the_retry_after_then_succeeds(servers):
    llm = servers()
    llm.script(("status", 429, {"Retry-After": "0.4"}))
    completion = Gateway([provider(llm, "p1")]).complete(QUESTION, decision=SMALL)
    first, second = llm.requests
    assert second.at - first.at >= 0.4
    assert completion.provider == "p1" and completion.failures == []


def test_500_then_success_on_the_same_provider(servers):
    llm, spare = servers(), servers()
    llm.script(("status", 500))
    completion = Gateway([provider(llm, "p1"), provider(spare, "p2")]).complete(QUESTION, decision=SMALL)
    assert completion.provider == "p1" and llm.count() == 2 and spare.count() == 0


def test_a_hang_past_the_timeout_falls_back_to_the_next_provider(servers):
    slow, fast = servers(), servers()
    slow.script(("hang", 3.0))
    gateway = Gateway([provider(slow, "p1", timeout_seconds=0.3, max_attempts=1), provider(fast, "p2")])
    started = time.monotonic()
    completion = gateway.complete(QUESTION, decision=SMALL)
    assert time.monotonic() - started < 2.0  # did not wait for the hung answer
    assert completion.provider == "p2"
    [failure] = completion.failures
    assert failure.startswith("p1: ") and "Timeout" in failure


# --------------------------------------------------------------------------- fallback and the breaker


def test_dead_provider_opens_its_circuit_and_is_then_skipped(servers):
    dead, alive = servers(), servers()
    dead.fail_all(500)
    gateway = Gateway([provider(dead, "p1", max_attempts=1, breaker=CircuitBreaker(failure_threshold=2)),
                       provider(alive, "p2")])
    for _ in range(2):
        completion = gateway.complete(QUESTION, decision=SMALL)
        assert completion.provider == "p2"
        assert completion.failures == [f"p1: POST 127.0.0.1/v1/chat/completions: server error (500) (gave up after 1 attempt(s))"]
    assert dead.count() == 2 and gateway.providers()[0].breaker.state == "open"

    started = time.monotonic()
    completion = gateway.complete(QUESTION, decision=SMALL)
    assert time.monotonic() - started < 0.5
    assert dead.count() == 2  # not called at all
    assert completion.provider == "p2" and completion.failures == ["p1: circuit open"]


def test_half_open_after_reset_then_closes_or_reopens(servers):
    now = [100.0]
    breaker = CircuitBreaker(failure_threshold=1, reset_after_seconds=30, clock=lambda: now[0])
    flaky, spare = servers(), servers()
    flaky.fail_all(503)
    gateway = Gateway([provider(flaky, "p1", max_attempts=1, breaker=breaker), provider(spare, "p2")])

    gateway.complete(QUESTION, decision=SMALL)
    assert breaker.state == "open" and flaky.count() == 1
    now[0] += 29
    assert gateway.complete(QUESTION, decision=SMALL).failures == ["p1: circuit open"]
    assert flaky.count() == 1

    now[0] += 1  # reset elapsed: one trial call, which fails and reopens the circuit for another 30 s
    assert breaker.state == "half-open"
    gateway.complete(QUESTION, decision=SMALL)
    assert flaky.count() == 2 and breaker.state == "open"
    now[0] += 10
    assert gateway.complete(QUESTION, decision=SMALL).failures == ["p1: circuit open"]

    now[0] += 20  # the provider is back: the trial succeeds and closes the circuit
    flaky.fail_all(None)
    assert gateway.complete(QUESTION, decision=SMALL).provider == "p1"
    assert breaker.state == "closed" and flaky.count() == 3


def test_half_open_lets_a_single_trial_through():
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, reset_after_seconds=5, clock=lambda: now[0])
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()  # one failure is below the threshold
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 5.0
    assert breaker.allow() and not breaker.allow()  # the trial is in flight: others still skip
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "closed"  # a success reset the consecutive count


def test_all_providers_dead_lists_every_failure(servers):
    first, second = servers(), servers()
    first.fail_all(502)
    second.script(*[("status", 429, {"Retry-After": "0"})] * 5)
    gateway = Gateway([provider(first, "p1", max_attempts=2), provider(second, "p2", max_attempts=2)])
    with pytest.raises(GatewayUnavailable) as caught:
        gateway.complete(QUESTION, decision=SMALL)
    assert caught.value.failures == [
        "p1: POST 127.0.0.1/v1/chat/completions: server error (502) (gave up after 2 attempt(s))",
        "p2: POST 127.0.0.1/v1/chat/completions: rate limited (429) (gave up after 2 attempt(s))",
    ]
    assert "p1:" in str(caught.value) and "p2:" in str(caught.value)
    assert first.count() == 2 and second.count() == 2  # max_attempts each: no second retry layer


def test_wrong_key_is_401_not_retried_and_falls_back(servers, caplog):
    guarded, spare = servers(api_key="sk-right"), servers()
    gateway = Gateway([provider(guarded, "p1", key="sk-wrong-canary"), provider(spare, "p2")])
    with caplog.at_level(logging.DEBUG):
        completion = gateway.complete(QUESTION, decision=SMALL)
    assert completion.provider == "p2"
    [failure] = completion.failures
    assert failure.startswith("p1: ") and "401" in failure
    assert guarded.count() == 1  # a permanent status is not retried
    assert guarded.requests[0].headers["authorization"] == "Bearer sk-wrong-canary"
    assert "sk-wrong-canary" not in failure and "sk-wrong-canary" not in caplog.text
    assert "Leave requests" not in caplog.text  # message contents are never logged
    assert b"Leave requests" in guarded.raw_bodies[0]  # ...though they were sent


def test_400_falls_back_without_counting_against_the_breaker(servers):
    picky, spare = servers(), servers()
    picky.script(("status", 400))
    breaker = CircuitBreaker(failure_threshold=1)
    gateway = Gateway([provider(picky, "p1", breaker=breaker), provider(spare, "p2")])
    completion = gateway.complete(QUESTION, decision=SMALL)
    assert completion.provider == "p2" and "answered 400" in completion.failures[0]
    assert picky.count() == 1 and breaker.state == "closed"


# --------------------------------------------------------------------------- routing


@pytest.fixture
def routed(servers) -> tuple[Gateway, LlmServer, LlmServer]:
    small, large = servers(), servers()
    gateway = Gateway([provider(small, "s"), provider(large, "l")], RoutingConfig(small=["s"], large=["l"]))
    return gateway, small, large


@pytest.mark.parametrize(("question", "context_tokens", "route", "reason"), [
    ("Who handles leave requests?", 300, "small", "simple"),
    (" ".join(["word"] * 21), 300, "large", "question of 21 words > 20"),
    ("Compare the two leave policies", 300, "large", "marker 'compare'"),
    ("Why was it changed?", 300, "large", "marker 'why'"),
    ("Plan A vs. plan B", 300, "large", "marker 'vs'"),
    ("Who handles leave requests?", 2100, "large", "context 2100 tokens > 1500"),
    ("Is the canvas ready?", 300, "small", "simple"),  # 'vs' inside a word is no marker
])
def test_routing_rule(routed, question, context_tokens, route, reason):
    gateway, small, large = routed
    decision = gateway.decide(question, context_tokens)
    assert decision == RouteDecision(route, reason)
    completion = gateway.complete(QUESTION, decision=decision)
    assert completion.route == decision
    assert completion.provider == ("s" if route == "small" else "l")
    assert (small.count(), large.count()) == ((1, 0) if route == "small" else (0, 1))


def test_a_route_without_providers_falls_back_to_the_other_then_to_all(servers):
    a, b = servers(), servers()
    pa, pb = provider(a, "a"), provider(b, "b")
    only_large = Gateway([pa, pb], RoutingConfig(large=["b"]))
    assert [p.name for p in only_large.candidates(RouteDecision("small", "simple"))] == ["b"]
    unrouted = Gateway([pa, pb])
    assert [p.name for p in unrouted.candidates(RouteDecision("large", "marker 'why'"))] == ["a", "b"]


def test_prefer_a_provider_by_name_or_model(routed):
    gateway, small, large = routed
    decision = gateway.decide("Who handles leave?", 10, prefer="l")
    assert decision.route == "preferred" and "'l'" in decision.reason
    assert [p.name for p in gateway.candidates(decision, "l")] == ["l", "s"]  # then the small route
    completion = gateway.complete(QUESTION, decision=decision, prefer="l-model")
    assert completion.provider == "l" and large.count() == 1 and small.count() == 0
    with pytest.raises(ConfigError, match="'gpt-9'"):
        gateway.decide("Who?", 10, prefer="gpt-9")


# --------------------------------------------------------------------------- configuration


def test_key_is_read_from_the_environment_at_build_time(servers):
    llm = servers(api_key="sk-env")
    config = ProviderConfig(name="p1", base_url=llm.url + "/", model="m", api_key_env="P1_KEY")
    gateway = Gateway.from_configs([config], environ={"P1_KEY": "sk-env"})
    assert gateway.complete(QUESTION, decision=SMALL).provider == "p1"
    assert llm.requests[0].headers["authorization"] == "Bearer sk-env"
    assert "sk-env" not in repr(gateway.providers()[0])
    gateway.close()


def test_config_errors():
    config = ProviderConfig(name="p1", base_url="http://127.0.0.1:9/v1", model="m", api_key_env="P1_KEY")
    with pytest.raises(ConfigError, match="provider 'p1': environment variable P1_KEY"):
        Gateway.from_configs([config], environ={"OTHER": "sk-other"})
    with pytest.raises(ConfigError, match="routing.large names provider 'nope'"):
        Gateway.from_configs([config], RoutingConfig(large=["nope"]), environ={"P1_KEY": "k"})
    with pytest.raises(ConfigError, match="two providers are named 'p1'"):
        Gateway.from_configs([config, config], environ={"P1_KEY": "k"})
    with pytest.raises(ValidationError, match="temperature"):
        ProviderConfig(name="p", base_url="http://h/v1", model="m", temperature=0.5)  # extra fields are refused
    with pytest.raises(ValidationError, match="must be an http"):
        ProviderConfig(name="p", base_url="h/v1", model="m")
    with pytest.raises(ValidationError, match="max_output_tokens"):
        ProviderConfig(name="p", base_url="http://h/v1", model="m", context_window=512, max_output_tokens=512)
    with pytest.raises(ValidationError):
        RoutingConfig(tiny=["p"])


def test_no_provider_at_all_is_unavailable():
    with pytest.raises(GatewayUnavailable, match="no provider configured"):
        Gateway([]).complete(QUESTION, decision=SMALL)
