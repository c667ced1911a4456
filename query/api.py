"""The HTTP API over `QueryService` (FastAPI; OpenAPI at /openapi.json, docs at /docs).

    POST /v1/search   chunks nearest to a query, with filters          (API key)
    POST /v1/ask      an answer with citations                         (API key)
    GET  /healthz     the process is up                                (open)
    GET  /readyz      store, model and cache reachable                 (open)
    GET  /metrics     Prometheus metrics                               (API key: key ids, models, costs)

Status codes: 401 no or unknown key; 403 a scoped key asking for other sources; 411 a POST without
Content-Length (a chunked body could be of any size); 413 body too large;
422 bad input, with a message naming the field; 429 over the key's rate, with Retry-After; 503 the
store or the audit trail is unavailable. Bad input never yields a 500.

/readyz answers 503 when the store or the model cannot serve, and 200 with `"status": "degraded"`
when only the cache is down: requests are still answered (without cache), so a load balancer should
keep routing to this replica.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from query.auth import Caller, KeyRing, RateLimits, bearer_token, retry_after_header
from query.config import resolve_key_digests
from query.search import SearchFilters
from query.service import InvalidRequest, Outcome, QueryService, ScopeError
from ragline.errors import ConfigError

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, description="what to look for")
    k: int | None = Field(default=None, ge=1, description="how many chunks (bounded by the service's max_k)")
    filters: SearchFilters | None = None


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1)
    k: int | None = Field(default=None, ge=1, description="how many chunks to retrieve as context")
    filters: SearchFilters | None = None
    model: str | None = Field(default=None, description="preferred provider or model name; others remain fallbacks")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ragline_http_requests_total", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram("ragline_http_request_seconds", "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.retrieval = Histogram("ragline_retrieval_seconds", "Embedding the query and searching the store", buckets=LATENCY_BUCKETS, registry=r)
        self.generation = Histogram("ragline_generation_seconds", "Answer generation, retries and fallbacks included", ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.cache = Counter("ragline_cache_requests_total", "Response cache lookups", ["route", "result"], registry=r)
        self.tokens = Counter("ragline_llm_tokens_total", "Tokens sent to and received from generation models", ["model", "direction"], registry=r)
        self.cost = Counter("ragline_llm_cost_total", "Cost of generation calls, in the configured currency", ["model"], registry=r)
        self.upstream_errors = Counter("ragline_upstream_errors_total", "Failed calls to generation providers", ["provider"], registry=r)
        self.rate_limited = Counter("ragline_rate_limited_total", "Requests refused by a key's rate limit", ["key_id"], registry=r)

    def observe(self, route: str, outcome: Outcome) -> None:
        self.cache.labels(route, "hit" if outcome.cached else "miss").inc()
        if outcome.cached:
            return
        self.retrieval.observe(outcome.retrieval_seconds)
        if route == "ask":
            self.generation.labels(outcome.model or "none").observe(outcome.generation_seconds)
            if outcome.input_tokens or outcome.output_tokens:
                self.tokens.labels(outcome.model, "input").inc(outcome.input_tokens)
                self.tokens.labels(outcome.model, "output").inc(outcome.output_tokens)
                self.cost.labels(outcome.model).inc(outcome.cost)
        for failure in outcome.upstream_failures:
            self.upstream_errors.labels(failure.split(":", 1)[0]).inc()


def create_app(service: QueryService, *, environ: dict[str, str] | None = None) -> FastAPI:
    config = service.config
    keys = KeyRing(resolve_key_digests(config, dict(environ if environ is not None else os.environ)),
                   default_requests_per_minute=config.limits.requests_per_minute)
    if not len(keys):
        raise ConfigError("no API key is configured: set RAGLINE_API_KEYS or query.api_keys in the config file")
    limits = RateLimits()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        service.embedder.embed(["warm up"])  # load the model before the first request, not during it
        yield
        service.close()

    app = FastAPI(
        title="ragline query API",
        version="1",
        description="Retrieval and grounded answers over the documents ragline has indexed.",
        lifespan=lifespan,
    )
    app.state.service, app.state.metrics = service, metrics

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Any]]):
        started = time.perf_counter()
        route = request.url.path if request.url.path in KNOWN_ROUTES else "other"
        length = request.headers.get("content-length")
        if request.method == "POST" and length is None:  # a chunked body could be of any size
            response = error_response(411, "send the request body with a Content-Length header")
        elif length is not None and (not length.isdigit() or int(length) > config.limits.max_body_bytes):
            response = error_response(413, f"request body over {config.limits.max_body_bytes} bytes")
        else:
            response = await call_next(request)
        metrics.requests.labels(route, request.method, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()]
        return error_response(422, "; ".join(problems))

    def caller(request: Request) -> Caller:
        found = keys.identify(bearer_token(request.headers.get("authorization")))
        if found is None:
            raise ApiError(401, "a valid API key is required: send it as 'Authorization: Bearer KEY'",
                           {"WWW-Authenticate": "Bearer"})
        wait = limits.take(found)
        if wait > 0:
            metrics.rate_limited.labels(found.key_id).inc()
            raise ApiError(429, f"rate limit of {found.requests_per_minute} requests per minute reached for key "
                                f"{found.key_id!r}", {"Retry-After": retry_after_header(wait)})
        return found

    def checked_question(text: str, field: str) -> str:
        if not text.strip():
            raise ApiError(422, f"{field}: must not be blank")
        if len(text) > config.limits.max_question_chars:
            raise ApiError(422, f"{field}: {len(text)} characters, over the limit of {config.limits.max_question_chars}")
        return text

    def checked_k(k: int | None) -> int:
        if k is None:
            return config.limits.default_k
        if k > config.limits.max_k:
            raise ApiError(422, f"k: {k} is over the limit of {config.limits.max_k}")
        return k

    def run(route: str, who: Caller, question: str, call: Callable[[], Outcome]) -> dict[str, Any]:
        started = time.perf_counter()
        status, outcome = 200, None
        try:
            outcome = call()
            metrics.observe(route.rsplit("/", 1)[-1], outcome)
            return outcome.body
        except ScopeError as exc:
            status = 403
            raise ApiError(403, str(exc)) from None
        except InvalidRequest as exc:  # a model preference the service cannot honour
            status = 422
            raise ApiError(422, str(exc)) from None
        except Exception:  # store, model, ledger or a misconfigured embedding endpoint: not the caller's fault
            status = 503
            log.exception("%s failed", route)
            raise ApiError(503, "the vector store or the embedding model is unavailable; try again later") from None
        finally:
            try:
                service.record(route, who, question, outcome, status, time.perf_counter() - started)
            except Exception:  # the trail must hold every answered request: no entry, no answer
                log.exception("audit trail write failed")
                raise ApiError(503, "the audit trail cannot be written; the request was not served") from None

    @app.post("/v1/search", summary="Chunks nearest to a query")
    def search_route(body: SearchRequest, who: Caller = Depends(caller)) -> dict[str, Any]:
        query, k = checked_question(body.query, "query"), checked_k(body.k)
        return run("/v1/search", who, query, lambda: service.search(query, k=k, filters=body.filters, caller=who))

    @app.post("/v1/ask", summary="A grounded answer with citations")
    def ask_route(body: AskRequest, who: Caller = Depends(caller)) -> dict[str, Any]:
        question, k = checked_question(body.question, "question"), checked_k(body.k)
        return run("/v1/ask", who, question,
                   lambda: service.ask(question, k=k, filters=body.filters, caller=who, model=body.model))

    @app.get("/healthz", summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Store, model and cache reachable")
    def readyz():
        checks = readiness(service)
        essential_ok = checks["store"]["ok"] and checks["model"]["ok"]
        status = "ready" if essential_ok and checks["cache"]["ok"] else "degraded" if essential_ok else "unavailable"
        return JSONResponse({"status": status, "checks": checks}, status_code=200 if essential_ok else 503)

    @app.get("/metrics", summary="Prometheus metrics (needs a key: scrape with a bearer token)")
    def metrics_route(_who: Caller = Depends(caller)) -> PlainTextResponse:  # key ids, models and costs are not public
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


KNOWN_ROUTES = frozenset({"/v1/search", "/v1/ask", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"})


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def readiness(service: QueryService) -> dict[str, dict[str, Any]]:
    checks: dict[str, dict[str, Any]] = {}
    try:
        checks["store"] = {"ok": True, "collection": service.store.collection, "exists": service.store.exists()}
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; the reason is reported
        checks["store"] = {"ok": False, "error": type(exc).__name__}
    try:
        service.embedder.count_tokens("ready")
        checks["model"] = {"ok": True, "name": service.embedder.model_name}
    except Exception as exc:  # noqa: BLE001
        checks["model"] = {"ok": False, "error": type(exc).__name__}
    checks["cache"] = {"ok": service.cache.ping(), "kind": service.cache.name}
    return checks
