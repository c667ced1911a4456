"""Embeddings from an OpenAI-compatible `/embeddings` endpoint (OpenAI, Azure-style gateways, vLLM, TEI, Ollama).

Why this exists
    A hosted model can have a far larger window than the bundled MiniLM (8191 tokens for
    OpenAI's text-embedding-3-*), so chunks can be larger; the endpoint does the heavy work.

What it sends
    POST {base_url}/embeddings  {"model": ..., "input": [text, ...]}, at most `batch_size`
    texts per request (and, under a token budget, at most the budget's tokens). The answer's
    `data[i].index` puts the vectors back in input order, whatever order the server sends.
    Every vector must have `dim` entries (a model swapped behind the endpoint must never mix
    into a collection); each is normalised to unit length, float32.

Token counting: a local tokenizer is required
    The chunker sizes chunks with the embedder's tokenizer, and nothing may be downloaded at
    run time, so `tokenizer` names a local Hugging Face tokenizer directory (a fast tokenizer,
    loaded with `AutoTokenizer.from_pretrained(dir, local_files_only=True)`) whose counts match,
    or over-count, the endpoint model's. For OpenAI text-embedding-3-* (and ada-002) the
    tokenizer is tiktoken's cl100k_base: use a Hugging Face export of cl100k_base (for example
    the tokenizer files of `Xenova/text-embedding-ada-002`) copied to a local folder. A
    tokenizer that under-counts would let chunks exceed the endpoint's window. The endpoint
    counts only the text (no [CLS]/[SEP]), so `special_tokens` is 0.

Token budget
    `tokens_per_minute` makes a thread-safe token bucket (capacity = tokens_per_minute,
    refilled continuously): before each request the batch's tokens are reserved, blocking
    until they fit. A single text larger than the whole budget can never fit: ConfigError.
    429s and 5xx are retried by connectors/http.py's `HttpSource` (Retry-After honoured);
    there is no second retry loop here.

Errors (none carries the API key)
    ConfigError     settings are unusable: no tokenizer, key rejected (401/403), a text
                    larger than the token budget
    EmbeddingError  the endpoint is down after retries, refuses a request, or answers
                    something unusable (wrong dimension, missing vectors). It is not a
                    DocumentError on purpose: an embedding failure is not one document's
                    fault, so the sync aborts instead of quarantining every document.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from connectors.http import GaveUp, HttpFailure, HttpSource, PermanentStatus, RetryPolicy
from ragline.errors import ConfigError, RaglineError
from ragline.offline import enforce_offline


class EmbeddingError(RaglineError):
    """The embedding endpoint failed for the whole batch; the run aborts (see the module docstring)."""


class TokenBudget:
    """A token bucket of `tokens_per_minute` tokens, refilled at tokens_per_minute / 60 per second.

    Thread-safe: a caller reserves its tokens under the lock (the level may go below zero: a debt
    later callers queue behind), then sleeps outside it until the debt is repaid.
    """

    def __init__(self, tokens_per_minute: int, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if tokens_per_minute < 1:
            raise ConfigError(f"tokens_per_minute must be at least 1, not {tokens_per_minute}")
        self.capacity = tokens_per_minute
        self.rate = tokens_per_minute / 60.0  # tokens per second
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._level = float(tokens_per_minute)  # starts full
        self._updated = clock()

    def take(self, tokens: int) -> float:
        """Block until `tokens` fit in the budget, then spend them; returns the seconds waited."""
        if tokens > self.capacity:
            raise ConfigError(
                f"a request of {tokens} tokens can never fit the embedding budget of {self.capacity} tokens per "
                "minute (RAGLINE_EMBED_TOKENS_PER_MINUTE); raise the budget or lower chunk_tokens"
            )
        with self._lock:
            now = self._clock()
            self._level = min(self.capacity, self._level + (now - self._updated) * self.rate)
            self._updated = now
            self._level -= tokens
            wait = -self._level / self.rate if self._level < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


class OpenAICompatibleEmbedder:
    """`Embedder` over an OpenAI-compatible embeddings endpoint; see the module docstring.

    `max_tokens` is the endpoint model's window in tokens (8191 for text-embedding-3-small);
    `model_name` is the endpoint's model name and goes into the collection's IndexSpec.
    """

    special_tokens = 0  # the endpoint counts only the text

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        dim: int,
        tokenizer: str | Path | None,
        max_tokens: int,
        api_key: str | None = None,
        batch_size: int = 32,
        tokens_per_minute: int | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"embedding base URL {base_url!r} is not an http(s) URL (e.g. https://api.openai.com/v1)")
        if not model:
            raise ConfigError("no embedding model name given for the endpoint (RAGLINE_EMBED_MODEL)")
        if dim < 1:
            raise ConfigError(f"embedding dim must be at least 1, not {dim}")
        if max_tokens < 1:
            raise ConfigError(f"max_tokens (the model's window) must be at least 1, not {max_tokens}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}")
        if tokenizer is None:
            raise ConfigError(
                f"the embedding endpoint at {url.host} needs a local tokenizer (RAGLINE_EMBED_TOKENIZER): chunks are "
                "sized in the model's own tokens so none exceeds its window, and nothing may be downloaded at run "
                "time. Give a local Hugging Face tokenizer folder that counts as the endpoint's model does "
                "(cl100k_base for OpenAI text-embedding-3-*)"
            )
        self.tokenizer_path = Path(tokenizer)
        if not self.tokenizer_path.is_dir():
            raise ConfigError(f"embedding tokenizer {self.tokenizer_path} is not a directory")
        if tokens_per_minute is not None and tokens_per_minute < max_tokens:
            raise ConfigError(
                f"embedding budget of {tokens_per_minute} tokens per minute is smaller than the model window of "
                f"{max_tokens} tokens: a full chunk could never be sent"
            )
        self.base_url = str(url).rstrip("/")
        self.host = url.host
        self.model_name = model
        self.dim = dim
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.budget = TokenBudget(tokens_per_minute, clock=clock, sleep=sleep) if tokens_per_minute else None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # The token budget paces requests; HttpSource's request-rate limiter is off.
        self._http = HttpSource(headers=headers, requests_per_second=None, timeout=timeout, retry=retry,
                                secret=api_key or None)

    def __repr__(self) -> str:  # no key in reprs (logs, tracebacks)
        return f"OpenAICompatibleEmbedder(host={self.host!r}, model={self.model_name!r}, dim={self.dim})"

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ tokens

    @cached_property
    def tokenizer(self) -> Any:
        enforce_offline()
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(self.tokenizer_path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load a tokenizer from {self.tokenizer_path}: {exc}") from None
        if not tok.is_fast:
            raise ConfigError(
                f"the tokenizer in {self.tokenizer_path} is not a fast tokenizer (no tokenizer.json): "
                "token offsets are needed to cut long sentences"
            )
        return tok

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [(int(start), int(end)) for start, end in encoded["offset_mapping"]]

    def _counts(self, texts: Sequence[str]) -> list[int]:
        ids = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [len(row) for row in ids]

    # ------------------------------------------------------------------ embed

    def _batches(self, texts: Sequence[str]) -> list[tuple[int, int, int]]:
        """(start, end, tokens) of consecutive batches: at most batch_size texts and, under a
        budget, at most the budget's capacity in tokens (tokens is 0 without a budget)."""
        if self.budget is None:
            return [(s, min(s + self.batch_size, len(texts)), 0) for s in range(0, len(texts), self.batch_size)]
        counts = self._counts(texts)
        batches: list[tuple[int, int, int]] = []
        start, total = 0, 0
        for i, n in enumerate(counts):
            if n > self.budget.capacity:
                raise ConfigError(
                    f"text {i} of {len(texts)} has {n} tokens, more than the whole embedding budget of "
                    f"{self.budget.capacity} tokens per minute (RAGLINE_EMBED_TOKENS_PER_MINUTE)"
                )
            if i > start and (i - start >= self.batch_size or total + n > self.budget.capacity):
                batches.append((start, i, total))
                start, total = i, 0
            total += n
        if start < len(texts):
            batches.append((start, len(texts), total))
        return batches

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in input order. Raises EmbeddingError or ConfigError."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start, end, tokens in self._batches(texts):
            if self.budget is not None:
                self.budget.take(tokens)
            out[start:end] = self._request(list(texts[start:end]))
        return out

    def _request(self, batch: list[str]) -> np.ndarray:
        url = f"{self.base_url}/embeddings"
        try:
            body = self._http.post_json(url, {"model": self.model_name, "input": batch})
        except PermanentStatus as exc:
            if exc.status in (401, 403):
                what = "rejected the API key (401)" if exc.status == 401 else "denied access to the model (403)"
                raise ConfigError(
                    f"embedding endpoint {self.host} {what}: check RAGLINE_EMBED_API_KEY and RAGLINE_EMBED_MODEL "
                    f"({self.model_name!r})"
                ) from None
            raise EmbeddingError(f"embedding endpoint {self.host} refused the request: {exc.reason}") from None
        except GaveUp as exc:
            raise EmbeddingError(f"embedding endpoint {self.host} is unavailable: {exc.reason}") from None
        except HttpFailure as exc:
            raise EmbeddingError(f"embedding endpoint {self.host}: {exc.reason}") from None
        return self._vectors(body, len(batch))

    def _vectors(self, body: Any, n: int) -> np.ndarray:
        """The answer's vectors in input order, checked and normalised."""
        where = f"embedding endpoint {self.host} (model {self.model_name!r})"
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or len(data) != n:
            got = f"{len(data)} vectors" if isinstance(data, list) else "no 'data' list"
            raise EmbeddingError(f"{where} answered {got} for {n} inputs")
        rows: list[Any] = [None] * n
        for position, item in enumerate(data):
            index = item.get("index", position) if isinstance(item, dict) else None
            vector = item.get("embedding") if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < n or rows[index] is not None:
                raise EmbeddingError(f"{where} answered a missing, repeated or out-of-range index {index!r}")
            if not isinstance(vector, list):
                raise EmbeddingError(
                    f"{where} answered no float list for input {index} (a base64 encoding_format is not supported)"
                )
            if len(vector) != self.dim:
                raise EmbeddingError(
                    f"{where} returned vectors of {len(vector)} dimensions, but {self.dim} are configured "
                    "(RAGLINE_EMBED_DIM); was the model behind the endpoint changed? Vectors of two models are "
                    "never mixed in one collection"
                )
            rows[index] = vector
        try:
            vectors = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError):
            raise EmbeddingError(f"{where} answered vectors that are not lists of numbers") from None
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise EmbeddingError(f"{where} answered a zero or non-finite vector")
        return vectors / norms

