"""The query service without HTTP: search and ask, with scoping, caching and the audit trail.

The FastAPI app (query/api.py) and `ragline ask` both call `QueryService`, so the CLI answers exactly
as the API does. One request:

    scope filters to the caller's sources ─▶ cache lookup (key: question, filters, k, model, index version)
        ─▶ retrieve ─▶ answer (query/answer.py) ─▶ cache store ─▶ audit entry

The index version joins the ledger's newest run (a run starting or finishing changes it) and the
physical collection behind the name (a re-index changes it), so any ingest that may have changed the
collection makes earlier cache entries unreachable; they then expire by their TTL.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from query.answer import Answerer, AnswerResult
from query.audit import AuditEntry, AuditLog
from query.auth import Caller
from query.cache import ResponseCache, build_cache, cache_key
from query.config import QueryConfig, load_query_config
from query.gateway import Gateway
from query.redact import Redactor
from query.search import SearchFilters, search
from ragline.components import open_components
from ragline.config import Settings
from ragline.errors import RaglineError
from ragline.ledger import Ledger
from ragline.types import Embedder, Hit
from stores.base import VectorStore

LOCAL_CALLER = Caller(key_id="local-cli", sources=None, requests_per_minute=1_000_000)


class SerializedStore:
    """A store whose method calls run one at a time (for embedded Qdrant); attributes pass through."""

    def __init__(self, store: VectorStore):
        self._store, self._lock = store, threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def serialized(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return serialized


class InvalidRequest(RaglineError):
    """The request cannot be served as asked (HTTP 422); the service itself is fine."""


class ScopeError(InvalidRequest):
    """The caller asked for sources its key may not read (HTTP 403)."""


@dataclass
class Outcome:
    """What a request produced, for the HTTP layer and the CLI; `body` is the JSON response."""

    body: dict[str, Any]
    cached: bool
    hits: list[str] = field(default_factory=list)  # chunk ids returned
    model: str | None = None
    route: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    retrieval_seconds: float = 0.0
    generation_seconds: float = 0.0
    provider: str | None = None
    cost: float = 0.0
    upstream_failures: list[str] = field(default_factory=list)


def cache_ttl(settings: Settings, config: QueryConfig) -> int:
    return config.cache_ttl_seconds if config.cache_ttl_seconds is not None else settings.cache_ttl_seconds


def hit_body(hit: Hit) -> dict[str, Any]:
    p = hit.payload
    return {
        "chunk_id": hit.id,
        "score": round(hit.score, 6),
        "text": hit.text,
        "source": p.get("source"),
        "doc_id": p.get("doc_id"),
        "uri": p.get("uri"),
        "title": p.get("title"),
        "section": p.get("section"),
        "page_start": p.get("page_start"),
        "page_end": p.get("page_end"),
        "doc_type": p.get("doc_type"),
        "modified_at": p.get("modified_at"),
    }


def question_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class QueryService:
    def __init__(
        self,
        *,
        settings: Settings,
        config: QueryConfig,
        embedder: Embedder,
        store: VectorStore,
        ledger: Ledger,
        gateway: Gateway | None,
        cache: ResponseCache,
        audit: AuditLog,
    ):
        self.settings, self.config = settings, config
        # an embedded store gets one call at a time (local mode is not made for concurrent callers, and an
        # Edge search takes a few ms), while embedding questions goes on in parallel; a server handles
        # concurrency itself
        self.embedder, self.ledger = embedder, ledger
        self.store = SerializedStore(store) if store.embedded else store
        self.gateway, self.cache, self.audit = gateway, cache, audit
        redactor = Redactor(extra_patterns=config.redaction.extra_patterns, phone_regions=config.redaction.phone_regions)
        self.answerer = Answerer(
            embedder=embedder,
            gateway=gateway,
            redactor=redactor if config.redaction.enabled else None,
            restore_in_answer=config.redaction.restore_in_answer,
            injection_screen=config.injection_screen,
        )
        self.cache_ttl = cache_ttl(settings, config)

    @classmethod
    def build(cls, settings: Settings, config: QueryConfig, *, embedder: Embedder, store: VectorStore, ledger: Ledger) -> QueryService:
        gateway = Gateway.from_configs(config.providers, config.routing, environ=os.environ) if config.providers else None
        return cls(
            settings=settings, config=config, embedder=embedder, store=store, ledger=ledger, gateway=gateway,
            cache=build_cache(settings.redis_url, ttl_seconds=cache_ttl(settings, config)),
            audit=AuditLog(ledger.engine),
        )

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.close()

    # -- requests ------------------------------------------------------------------------------

    def index_version(self) -> str:
        return f"{self.store.physical_name()}@{self.ledger.index_version()}"

    def scoped(self, filters: SearchFilters | None, caller: Caller) -> SearchFilters:
        filters = filters or SearchFilters()
        if caller.sources is None:
            return filters
        asked = filters.source
        asked_set = {asked} if isinstance(asked, str) else set(asked or [])
        outside = sorted(asked_set - caller.sources)
        if outside:
            raise ScopeError(f"API key {caller.key_id!r} may not read source(s) {', '.join(outside)}")
        allowed = sorted(asked_set or caller.sources)
        return filters.model_copy(update={"source": allowed})

    def retrieve(self, question: str, k: int, filters: SearchFilters) -> list[Hit]:
        return search(question, embedder=self.embedder, store=self.store, k=k, filters=filters)

    def search(self, question: str, *, k: int, filters: SearchFilters | None, caller: Caller) -> Outcome:
        filters = self.scoped(filters, caller)
        return self._cached("search", question, k, filters, caller, {}, lambda: self._search(question, k, filters))

    def _search(self, question: str, k: int, filters: SearchFilters) -> Outcome:
        started = time.perf_counter()
        hits = self.retrieve(question, k, filters)
        body = {"query": question, "k": k, "results": [hit_body(h) for h in hits]}
        return Outcome(body=body, cached=False, hits=[h.id for h in hits], retrieval_seconds=time.perf_counter() - started)

    def ask(self, question: str, *, k: int, filters: SearchFilters | None, caller: Caller, model: str | None = None) -> Outcome:
        filters = self.scoped(filters, caller)
        if model is not None:
            known = {name for p in (self.gateway.providers() if self.gateway else []) for name in (p.name, p.model)}
            if not known:
                raise InvalidRequest(f"model {model!r} was asked for, but no generation provider is configured")
            if model not in known:
                raise InvalidRequest(f"model {model!r} is not configured; choose one of {', '.join(sorted(known))}")
        return self._cached("ask", question, k, filters, caller, {"model": model}, lambda: self._ask(question, k, filters, model))

    def _ask(self, question: str, k: int, filters: SearchFilters, model: str | None) -> Outcome:
        started = time.perf_counter()
        hits = self.retrieve(question, k, filters)
        retrieval = time.perf_counter() - started
        result = self.answerer.answer(question, hits, prefer=model)
        body = answer_body(result, hits)
        return Outcome(
            body=body, cached=False, hits=[h.id for h in hits], model=result.model, route=result.route.route,
            input_tokens=result.input_tokens, output_tokens=result.output_tokens, retrieval_seconds=retrieval,
            generation_seconds=result.generation_seconds, provider=result.provider, cost=result.cost,
            upstream_failures=result.upstream_failures,
        )

    def _cached(
        self, route: str, question: str, k: int, filters: SearchFilters, caller: Caller, extra: dict[str, Any],
        compute: Callable[[], Outcome],
    ) -> Outcome:
        started = time.perf_counter()
        key = cache_key(
            route, question, filters=filters.model_dump(mode="json", exclude_none=True), k=k,
            index_version=self.index_version(), extra=extra,
        )
        stored = self.cache.get(key) if self.cache_ttl > 0 else None
        if stored is not None:
            outcome = Outcome(
                body=stored["body"], cached=True, hits=stored["hits"], model=stored.get("model"), route=stored.get("route")
            )
        else:
            outcome = compute()
            degraded = bool(outcome.upstream_failures) and outcome.model == "extractive"
            if self.cache_ttl > 0 and not degraded:  # an answer given while providers were down is not kept
                self.cache.set(
                    key, {"body": outcome.body, "hits": outcome.hits, "model": outcome.model, "route": outcome.route},
                    self.cache_ttl,
                )
        outcome.body = {
            **outcome.body,
            "cached": outcome.cached,
            "timings": {
                "retrieval_ms": round(outcome.retrieval_seconds * 1000, 2),
                "generation_ms": round(outcome.generation_seconds * 1000, 2),
                "total_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        }
        return outcome

    def record(self, route: str, caller: Caller, question: str, outcome: Outcome | None, status: int, seconds: float) -> None:
        """One audit entry per request; raises if the trail cannot be written (the request then fails)."""
        self.audit.append(
            AuditEntry(
                route=route,
                key_id=caller.key_id,
                question_sha256=question_digest(question),
                chunk_ids=outcome.hits if outcome else [],
                model=outcome.model if outcome else None,
                model_route=outcome.route if outcome else None,
                input_tokens=outcome.input_tokens if outcome and not outcome.cached else 0,
                output_tokens=outcome.output_tokens if outcome and not outcome.cached else 0,
                latency_ms=round(seconds * 1000, 3),
                cached=bool(outcome and outcome.cached),
                status=status,
            )
        )


def answer_body(result: AnswerResult, hits: list[Hit]) -> dict[str, Any]:
    return {
        "answer": result.answer,
        "extractive": result.extractive,
        "citations": [asdict(c) for c in result.citations],
        "model": result.model,
        "provider": result.provider,
        "route": {"name": result.route.route, "reason": result.route.reason},
        "usage": {
            "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens,
            "total_tokens": result.input_tokens + result.output_tokens,
            "cost": round(result.cost, 8),
        },
        "passages": {"retrieved": len(hits), "sent": result.passages_sent, "dropped_to_fit": result.passages_dropped},
        "redactions": result.redacted,
        "warnings": result.warnings,
        "sources": [hit_body(h) for h in hits],
    }


@contextmanager
def open_service(settings: Settings, config_path: Path | None = None) -> Iterator[QueryService]:
    """The service over the store, ledger and model that `settings` name; closed on the way out."""
    config = load_query_config(settings, config_path)
    with open_components(settings) as components:
        service = QueryService.build(
            components.settings, config, embedder=components.embedder, store=components.store, ledger=components.ledger
        )
        try:
            yield service
        finally:
            service.close()
