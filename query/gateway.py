"""The model gateway: chat completions from OpenAI-compatible providers, routed by difficulty, with fallback.

    question + context size ──decide──▶ RouteDecision (small | large | preferred)
        ──candidates──▶ providers in fallback order ──complete──▶ Completion (text, usage, cost, failures)

Routing rule: a question is *hard* when it has more than `max_simple_question_words` words, or contains
one of `hard_markers` ("compare", "why", ...; matched case-insensitively at the start of a word, and a
marker written with a trailing space, such as " vs ", must end a word too), or when the retrieved context
is larger than `max_simple_context_tokens`; otherwise it is *simple*. Hard questions go to the "large"
route, simple ones to "small". A route with no providers uses the other route's list; with neither, every
provider in the order configured. A caller may prefer a provider (by name or model): it is tried first,
then the route's list.

Failure handling, in two layers only:
- within one provider, `connectors.http.HttpSource` retries 429/5xx/timeouts under a small interactive
  budget (`max_attempts`, a few seconds in all) and honours Retry-After exactly; 4xx are not retried;
- across providers, `Gateway.complete` falls back to the next candidate on any failure, and a
  per-provider `CircuitBreaker` skips a provider that keeps failing, so a dead one costs nothing.

What counts against the breaker: transport failures, 5xx/429 after retries, a 200 without an answer,
and 401/403/404 (the key or model is wrong: every call will fail). Other 4xx (400, 413, 422) mean this
request was wrong; the provider answered, so they count as a sign of life.

Message contents (which may hold PII) and keys are never logged; keys are held as SecretStr and
scrubbed from every failure reason.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic
from pydantic import ConfigDict, Field, SecretStr

from connectors.http import HttpFailure, HttpSource, PermanentStatus, RetryPolicy
from ragline.errors import ConfigError, RaglineError

log = logging.getLogger(__name__)

ROUTES = ("small", "large")
# A provider that answers these is up; the request itself was at fault (too long, malformed).
_REQUEST_FAULTS = frozenset({400, 409, 413, 422})


# --------------------------------------------------------------------------- configuration


class ProviderConfig(pydantic.BaseModel):
    """One OpenAI-compatible chat-completions endpoint: POST {base_url}/chat/completions."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    base_url: str  # ".../v1"
    model: str = Field(min_length=1)
    api_key_env: str | None = None  # env var holding the key; read at build time, kept as SecretStr
    timeout_seconds: float = Field(default=30.0, gt=0)
    external: bool = True  # True: the caller must redact before calling (the gateway only reports it)
    context_window: int = Field(default=8192, ge=16)  # tokens the model accepts, prompt + answer
    max_output_tokens: int = Field(default=512, ge=1)
    cost_per_1k_input_tokens: float = Field(default=0.0, ge=0)
    cost_per_1k_output_tokens: float = Field(default=0.0, ge=0)
    max_attempts: int = Field(default=3, ge=1)

    @pydantic.field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"base_url {value!r} must be an http:// or https:// URL such as http://host:8000/v1")
        return value.rstrip("/")

    @pydantic.model_validator(mode="after")
    def _answer_fits(self) -> ProviderConfig:
        if self.max_output_tokens >= self.context_window:
            raise ValueError(f"provider {self.name!r}: max_output_tokens ({self.max_output_tokens}) must be smaller "
                             f"than context_window ({self.context_window}), or no prompt fits")
        return self


class RoutingConfig(pydantic.BaseModel):
    """Which providers serve simple ("small") and hard ("large") questions; see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    small: list[str] = []  # provider names, in fallback order
    large: list[str] = []
    max_simple_question_words: int = Field(default=20, ge=1)
    max_simple_context_tokens: int = Field(default=1500, ge=0)
    hard_markers: list[str] = ["compare", "why", "explain", "difference", "summarize", "summarise",
                               "pros and cons", "step by step", "analyse", "analyze", "versus", " vs "]


# --------------------------------------------------------------------------- results and errors


@dataclass(frozen=True)
class RouteDecision:
    route: str  # "small" | "large" | "preferred" (callers may add their own, e.g. "extractive")
    reason: str  # "question of 34 words > 20", "marker 'compare'", "context 2100 tokens > 1500", "simple"
    fallback: str | None = None  # for "preferred": the route whose providers follow the preferred one


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cost: float


@dataclass(frozen=True)
class Completion:
    text: str
    provider: str
    model: str
    usage: Usage
    latency_seconds: float  # of the call that answered (fallen-back attempts are in `failures`)
    route: RouteDecision
    failures: list[str] = field(default_factory=list)  # "<provider>: <why>" for each provider tried before


class GatewayUnavailable(RaglineError):
    """Every candidate provider failed or was skipped; `failures` says why, one entry per provider."""

    def __init__(self, failures: list[str]):
        super().__init__("no generation provider answered: " + ("; ".join(failures) or "no provider configured"))
        self.failures = failures


# --------------------------------------------------------------------------- circuit breaker


class CircuitBreaker:
    """Per provider: after `failure_threshold` consecutive failed calls the circuit opens and the
    provider is skipped for `reset_after_seconds`; then one trial call (half-open) closes it on
    success or reopens it on failure. Thread-safe; injectable clock for tests."""

    def __init__(self, failure_threshold: int = 3, reset_after_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        if failure_threshold < 1:
            raise ConfigError(f"failure_threshold must be at least 1, not {failure_threshold}")
        if reset_after_seconds < 0:
            raise ConfigError(f"reset_after_seconds must not be negative, not {reset_after_seconds}")
        self.failure_threshold, self.reset_after_seconds, self._clock = failure_threshold, reset_after_seconds, clock
        self._lock = threading.Lock()
        self._failures = 0  # consecutive
        self._opened_at: float | None = None  # None: closed
        self._trial_running = False  # half-open: the one trial call is in flight

    def allow(self) -> bool:
        """Whether a call may go ahead now; in half-open state only the first caller gets the trial."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._clock() - self._opened_at < self.reset_after_seconds or self._trial_running:
                return False
            self._trial_running = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._trial_running = 0, None, False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_running or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()  # (re)open: the wait starts over
            self._trial_running = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._trial_running or self._clock() - self._opened_at >= self.reset_after_seconds:
                return "half-open"
            return "open"


# --------------------------------------------------------------------------- provider


def _estimate_tokens(text: str) -> int:
    """About four characters a token: used only when a provider's answer lacks `usage`."""
    return math.ceil(len(text) / 4)


class Provider:
    """One chat-completions endpoint behind an HttpSource (its retries) and a CircuitBreaker."""

    def __init__(self, config: ProviderConfig, *, api_key: SecretStr | None = None,
                 breaker: CircuitBreaker | None = None):
        self.config = config
        self.name, self.model, self.external = config.name, config.model, config.external
        self.context_window, self.max_output_tokens = config.context_window, config.max_output_tokens
        self.breaker = breaker or CircuitBreaker()
        self.url = f"{config.base_url}/chat/completions"
        key = api_key.get_secret_value() if api_key is not None else None
        # Interactive budget: a person is waiting, so a few seconds of retries at most; the provider's
        # own 429s (not a local rate) pace us.
        retry = RetryPolicy(max_attempts=config.max_attempts, backoff=0.2, max_backoff=2.0,
                            max_retry_time=min(5.0, config.timeout_seconds * config.max_attempts))
        self._http = HttpSource(
            headers={"Authorization": f"Bearer {key}"} if key else None,
            requests_per_second=None,
            timeout=config.timeout_seconds,
            retry=retry,
            secret=key,
        )

    def chat(self, messages: list[dict[str, str]], *, max_tokens: int | None = None,
             temperature: float = 0.0) -> tuple[str, Usage]:
        """One completion. Raises an HttpFailure subclass (PermanentStatus, GaveUp, NotJson) or HttpFailure
        itself for a 200 without `choices[0].message.content`."""
        limit = min(max_tokens, self.max_output_tokens) if max_tokens else self.max_output_tokens
        body = {"model": self.model, "messages": messages, "temperature": temperature, "max_tokens": limit}
        answer = self._http.post_json(self.url, body)
        text = _content(answer)
        if text is None:
            raise HttpFailure(f"provider {self.name!r} answered 200 without choices[0].message.content", 200)
        usage = answer.get("usage") if isinstance(answer.get("usage"), Mapping) else {}
        input_tokens = _int(usage.get("prompt_tokens"))
        output_tokens = _int(usage.get("completion_tokens"))
        if input_tokens is None:
            input_tokens = sum(_estimate_tokens(str(m.get("content", ""))) for m in messages)
        if output_tokens is None:
            output_tokens = _estimate_tokens(text)
        cost = (input_tokens * self.config.cost_per_1k_input_tokens
                + output_tokens * self.config.cost_per_1k_output_tokens) / 1000
        return text, Usage(input_tokens, output_tokens, cost)

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:  # never the key
        return f"Provider(name={self.name!r}, model={self.model!r}, url={self.url!r})"


def _content(answer: Any) -> str | None:
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _counts_against_breaker(exc: HttpFailure) -> bool:
    return not (isinstance(exc, PermanentStatus) and exc.status in _REQUEST_FAULTS)


# --------------------------------------------------------------------------- gateway


class Gateway:
    """Routes a question to a provider list and falls back along it; see the module docstring."""

    def __init__(self, providers: Sequence[Provider], routing: RoutingConfig | None = None):
        self._providers = list(providers)
        self.routing = routing or RoutingConfig()
        self._by_name: dict[str, Provider] = {}
        for provider in self._providers:
            if provider.name in self._by_name:
                raise ConfigError(f"two providers are named {provider.name!r}: provider names must be unique")
            self._by_name[provider.name] = provider
        for route in ROUTES:
            for name in getattr(self.routing, route):
                if name not in self._by_name:
                    raise ConfigError(f"routing.{route} names provider {name!r}, which is not configured "
                                      f"(known: {', '.join(self._by_name) or 'none'})")

    @classmethod
    def from_configs(cls, providers: Sequence[ProviderConfig], routing: RoutingConfig | None = None, *,
                     environ: Mapping[str, str] = os.environ) -> Gateway:
        built = []
        for config in providers:
            key = None
            if config.api_key_env:
                value = environ.get(config.api_key_env)
                if not value:
                    raise ConfigError(f"provider {config.name!r}: environment variable {config.api_key_env} "
                                      f"(its API key) is not set")
                key = SecretStr(value)
            built.append(Provider(config, api_key=key))
        try:
            return cls(built, routing)
        except ConfigError:
            for provider in built:
                provider.close()
            raise

    def providers(self) -> list[Provider]:
        return list(self._providers)

    def decide(self, question: str, context_tokens: int, *, prefer: str | None = None) -> RouteDecision:
        """Small or large by the routing rule; "preferred" when the caller names a provider or model."""
        rule = self._rule(question, context_tokens)
        if prefer is None:
            return rule
        provider = self._preferred(prefer)
        return RouteDecision("preferred", f"caller asked for {provider.name!r}; then {rule.route} ({rule.reason})",
                             fallback=rule.route)

    def _rule(self, question: str, context_tokens: int) -> RouteDecision:
        routing = self.routing
        words = len(question.split())
        if words > routing.max_simple_question_words:
            return RouteDecision("large", f"question of {words} words > {routing.max_simple_question_words}")
        # punctuation becomes space, so "why?" matches "why" and " vs " matches "A vs. B"
        padded = " " + " ".join(re.sub(r"[^\w\s]", " ", question.lower()).split()) + " "
        for marker in routing.hard_markers:
            needle = " " + " ".join(marker.lower().split()) + (" " if marker.endswith(" ") else "")
            if needle.strip() and needle in padded:
                return RouteDecision("large", f"marker {marker.strip()!r}")
        if context_tokens > routing.max_simple_context_tokens:
            return RouteDecision("large", f"context {context_tokens} tokens > {routing.max_simple_context_tokens}")
        return RouteDecision("small", "simple")

    def candidates(self, decision: RouteDecision, prefer: str | None = None) -> list[Provider]:
        """Providers to try, in order: the preferred one (if any), then the route's list."""
        route = decision.fallback if decision.route == "preferred" and decision.fallback else decision.route
        names = self._route_names(route)
        ordered = [self._by_name[n] for n in names]
        if prefer is not None:
            first = self._preferred(prefer)
            ordered = [first, *(p for p in ordered if p is not first)]
        return ordered

    def _route_names(self, route: str) -> list[str]:
        if route not in ROUTES:
            return list(self._by_name)
        other = "large" if route == "small" else "small"
        return list(getattr(self.routing, route)) or list(getattr(self.routing, other)) or list(self._by_name)

    def _preferred(self, prefer: str) -> Provider:
        if prefer in self._by_name:
            return self._by_name[prefer]
        for provider in self._providers:
            if provider.model == prefer:
                return provider
        known = ", ".join(f"{p.name} ({p.model})" for p in self._providers) or "none"
        raise ConfigError(f"no provider or model named {prefer!r} is configured (known: {known})")

    def complete(self, messages: list[dict[str, str]], *, decision: RouteDecision, prefer: str | None = None,
                 max_tokens: int | None = None) -> Completion:
        """Ask each candidate in turn until one answers. Raises GatewayUnavailable listing every failure."""
        failures: list[str] = []
        for provider in self.candidates(decision, prefer):
            if not provider.breaker.allow():
                failures.append(f"{provider.name}: circuit open")
                continue
            started = time.perf_counter()
            try:
                text, usage = provider.chat(messages, max_tokens=max_tokens)
            except HttpFailure as exc:
                if _counts_against_breaker(exc):
                    provider.breaker.record_failure()
                else:
                    provider.breaker.record_success()
                failures.append(f"{provider.name}: {exc.reason}")
                log.warning("provider %s failed (%s); breaker %s", provider.name, exc.reason, provider.breaker.state)
                continue
            except BaseException:
                provider.breaker.record_failure()  # never leave a half-open trial marked as running
                raise
            provider.breaker.record_success()
            latency = time.perf_counter() - started
            log.info("provider %s answered: route %s, %d+%d tokens, %.2f s", provider.name, decision.route,
                     usage.input_tokens, usage.output_tokens, latency)
            return Completion(text, provider.name, provider.model, usage, latency, decision, failures)
        raise GatewayUnavailable(failures)

    def close(self) -> None:
        for provider in self._providers:
            provider.close()
