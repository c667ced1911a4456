"""API keys and per-key rate limits for the HTTP service.

Keys are held only as sha256 digests. A presented key is hashed and compared with every stored
digest in constant time (`hmac.compare_digest`, no early exit), so response time does not reveal
how much of a key matched or which key it resembled.

Rate limits are a token bucket per key: `requests_per_minute` tokens, refilled continuously; an empty
bucket answers 429 with Retry-After set to when the next token arrives. Buckets live in this process:
several replicas each allow the full rate (a shared limit would need Redis; not done here).
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from query.config import ApiKeyConfig, key_digest


@dataclass(frozen=True)
class Caller:
    key_id: str
    sources: frozenset[str] | None  # None: every source
    requests_per_minute: int


class KeyRing:
    def __init__(self, digests: Mapping[str, ApiKeyConfig], *, default_requests_per_minute: int):
        self._entries = [
            (digest.encode("ascii"), Caller(
                key_id=cfg.id,
                sources=frozenset(cfg.sources) if cfg.sources is not None else None,
                requests_per_minute=cfg.requests_per_minute or default_requests_per_minute,
            ))
            for digest, cfg in digests.items()
        ]

    def __len__(self) -> int:
        return len(self._entries)

    def identify(self, presented: str | None) -> Caller | None:
        if not presented:
            return None
        digest = key_digest(presented).encode("ascii")
        found = None
        for stored, caller in self._entries:  # every entry is compared: no early exit
            if hmac.compare_digest(stored, digest):
                found = caller
        return found


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class RateLimits:
    """Token buckets, one per key id; thread-safe."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, last refill time)

    def take(self, caller: Caller) -> float:
        """0 when the request may go ahead; otherwise the seconds until it may (for Retry-After)."""
        capacity = float(caller.requests_per_minute)
        per_second = capacity / 60.0
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(caller.key_id, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * per_second)
            if tokens >= 1.0:
                self._buckets[caller.key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[caller.key_id] = (tokens, now)
            return (1.0 - tokens) / per_second


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
