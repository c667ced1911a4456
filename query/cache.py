"""The response cache of the query service: Redis when configured, else in-process memory.

A cache entry is a JSON-ready dict stored under `cache_key(...)`, a sha256 over the route, the
normalised question, the filters, k, extras (a preferred model) and the index version. The index
version changes whenever an ingest may have changed the collection, so stale answers become
unreachable at once and then expire by their TTL; nothing has to be invalidated by hand.

The cache is an optimisation, never a dependency: when Redis is down, `get` returns None and
`set` does nothing, a warning is logged once per outage (never with the URL, which may carry a
password), failures are counted in `RedisCache.failures`, and for `retry_after_seconds` after a
failure Redis is not even tried, so a dead server costs requests nothing. `ping()` always tries,
and the first call that reaches Redis again ends the outage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, Protocol

import redis
from cachetools import TLRUCache
from pydantic import SecretStr
from redis.backoff import NoBackoff
from redis.retry import Retry

from ragline.errors import ConfigError

log = logging.getLogger(__name__)

KEY_PREFIX = "ragline:cache:"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class ResponseCache(Protocol):
    name: str  # "redis" | "memory"

    def get(self, key: str) -> dict | None: ...

    def set(self, key: str, value: dict, ttl_seconds: int) -> None: ...

    def ping(self) -> bool: ...


# -- keys ----------------------------------------------------------------------------------------


def normalise_question(question: str) -> str:
    """One form for questions that differ only in case, spacing, Unicode form or final ?!. marks."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", question).casefold())
    text = " ".join(text.split())
    return text.rstrip("?!. ").strip()


def _json_default(value: Any) -> Any:
    # sets have no order of their own: sort them so equal filters give one key
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=lambda v: json.dumps(v, sort_keys=True, default=_json_default))
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"cache key: a value of type {type(value).__name__} cannot be part of a key")


def cache_key(
    route: str,
    question: str,
    *,
    filters: Mapping[str, Any] | None,
    k: int,
    index_version: str,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """sha256 hex over a canonical JSON of everything that decides a response.

    No filters and empty filters are the same request, and so are no extras and empty extras."""
    payload = {
        "route": route,
        "question": normalise_question(question),
        "filters": dict(filters or {}),
        "k": k,
        "extra": dict(extra or {}),
        "index_version": index_version,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _encode(value: dict) -> str:
    if not isinstance(value, dict):
        raise TypeError(f"cache values are dicts, not {type(value).__name__}")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _check_ttl(ttl_seconds: int) -> None:
    if ttl_seconds < 1:
        raise ValueError(f"cache ttl_seconds must be at least 1, got {ttl_seconds}")


# -- in-process ----------------------------------------------------------------------------------


class MemoryCache:
    """A bounded, thread-safe in-process cache (least recently used entries go first when full).

    Values are kept as JSON text, as Redis keeps them: a caller mutating what `get` returned
    cannot change the cached entry, and a value that Redis could not hold fails here too.
    Each entry lives `min(ttl_seconds, ttl)` seconds."""

    name = "memory"

    def __init__(self, *, maxsize: int = 4096, ttl: float = 300, timer: Callable[[], float] = time.monotonic):
        if maxsize < 1:
            raise ValueError(f"MemoryCache maxsize must be at least 1, got {maxsize}")
        if ttl <= 0:
            raise ValueError(f"MemoryCache ttl must be positive, got {ttl}")
        self.ttl = ttl
        # TLRUCache rather than TTLCache: it honours each set's own ttl_seconds
        self._entries: TLRUCache[str, tuple[str, float]] = TLRUCache(
            maxsize=maxsize, ttu=lambda _key, item, now: now + item[1], timer=timer
        )
        self._lock = threading.Lock()

    def get(self, key: str) -> dict | None:
        with self._lock:
            item = self._entries.get(key)
        return json.loads(item[0]) if item is not None else None

    def set(self, key: str, value: dict, ttl_seconds: int) -> None:
        _check_ttl(ttl_seconds)
        text = _encode(value)
        with self._lock:
            self._entries[key] = (text, min(float(ttl_seconds), self.ttl))

    def ping(self) -> bool:
        return True

    def __len__(self) -> int:
        with self._lock:
            self._entries.expire()
            return len(self._entries)


# -- Redis ---------------------------------------------------------------------------------------


class RedisCache:
    """Entries as JSON strings under `ragline:cache:<key>`, written with SETEX.

    Short socket timeouts and no client-side retries: a slow or dead Redis must cost a request
    at most one timeout, and after a failure none until `retry_after_seconds` have passed."""

    name = "redis"

    def __init__(
        self,
        url: SecretStr | str,
        *,
        socket_timeout: float = 0.5,
        retry_after_seconds: float = 2.0,
        timer: Callable[[], float] = time.monotonic,
    ):
        secret = url.get_secret_value() if isinstance(url, SecretStr) else url
        if not secret.startswith(REDIS_SCHEMES):
            scheme = secret.split("://", 1)[0] if "://" in secret else "(none)"
            raise ConfigError(f"redis URL scheme {scheme!r} is not one of {', '.join(REDIS_SCHEMES)}")
        # from_url connects lazily: building the cache never fails on a down server
        self._client = redis.Redis.from_url(
            secret,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self.retry_after_seconds = retry_after_seconds
        self._timer = timer
        self._lock = threading.Lock()
        self._down = False
        self._skip_until = 0.0
        self.failures = 0  # calls that failed because of Redis, for metrics

    def __repr__(self) -> str:  # never the URL: it may carry a password
        return f"RedisCache(down={self._down}, failures={self.failures})"

    @property
    def down(self) -> bool:
        return self._down

    def get(self, key: str) -> dict | None:
        if self._skipping():
            return None
        try:
            raw = self._client.get(KEY_PREFIX + key)
        except redis.RedisError as exc:
            self._failed("get", exc)
            return None
        self._reached()
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            log.warning("response cache: entry %s… in Redis is not JSON; ignored", key[:12])
            return None
        return value if isinstance(value, dict) else None

    def set(self, key: str, value: dict, ttl_seconds: int) -> None:
        _check_ttl(ttl_seconds)
        text = _encode(value)  # a value that is not JSON is the caller's bug: raise, even while Redis is down
        if self._skipping():
            return
        try:
            self._client.setex(KEY_PREFIX + key, int(ttl_seconds), text)
        except redis.RedisError as exc:
            self._failed("set", exc)
            return
        self._reached()

    def ping(self) -> bool:
        try:
            self._client.ping()
        except redis.RedisError as exc:
            self._failed("ping", exc)
            return False
        self._reached()
        return True

    def close(self) -> None:
        self._client.close()

    def _skipping(self) -> bool:
        with self._lock:
            return self._down and self._timer() < self._skip_until

    def _failed(self, operation: str, error: Exception) -> None:
        with self._lock:
            self.failures += 1
            self._skip_until = self._timer() + self.retry_after_seconds
            first = not self._down
            self._down = True
        if first:  # the class name only: redis-py messages name the host, and the URL stays private
            log.warning(
                "response cache: Redis unreachable (%s on %s); answering without cache until it is back",
                type(error).__name__, operation,
            )

    def _reached(self) -> None:
        with self._lock:
            recovered = self._down
            self._down = False
        if recovered:
            log.info("response cache: Redis reachable again after %d failed calls", self.failures)


def build_cache(redis_url: SecretStr | str | None, *, ttl_seconds: int, maxsize: int = 4096) -> ResponseCache:
    """Redis when a URL is given (an empty one counts as none), else an in-process cache."""
    secret = redis_url.get_secret_value() if isinstance(redis_url, SecretStr) else redis_url
    if secret:
        return RedisCache(secret)
    return MemoryCache(maxsize=maxsize, ttl=max(ttl_seconds, 1))
