"""HTTP plumbing shared by the API connectors (HubSpot, generic REST): one client, one budget, one retry policy.

What is retried and what is not:

    retryable (transient)                       permanent (raise at once)
    ---------------------                       -------------------------
    429 Too Many Requests                       401 / 403: the token is wrong or lacks a scope
      waits exactly Retry-After when given      404: the record is gone
      (delta-seconds, fractional or not, or     any other 4xx: the request itself is wrong
      an HTTP-date), else exponential backoff   a 2xx body that is not JSON (a proxy's error page,
      with jitter                                 a broken deployment): retrying will not fix it
    5xx (Retry-After honoured there too)
    timeouts, refused/reset connections,
      a server closing the connection early      a body over `max_response_bytes` (TooLarge)

Retries are bounded twice: at most `max_attempts` requests, and no retry is started whose wait
would end more than `max_retry_time` seconds after the first attempt (a Retry-After of an hour
gives up at once instead of hanging the run). What the caller sees is one of the `HttpFailure`
subclasses below, whose `reason` is written for a person and never contains a credential.

Every request, retries included, first takes a slot from the source's `RateLimiter`; a 429 also
pushes the limiter's next slot past the Retry-After, so threads sharing the limiter hold off too.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from ragline.errors import ConfigError, FetchError, SourceError

log = logging.getLogger(__name__)

USER_AGENT = "ragline-connector"


# --------------------------------------------------------------------------- errors


class HttpFailure(Exception):
    """A request failed for good; `reason` is safe to show (no token, no query string)."""

    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class PermanentStatus(HttpFailure):
    """A 4xx other than 429: retrying cannot help."""


class GaveUp(HttpFailure):
    """A retryable failure persisted past the attempt or time budget."""


class TooLarge(HttpFailure):
    """The answer is larger than the source allows; it was not read past the limit."""


class NotJson(HttpFailure):
    """A successful response whose body is not JSON."""


def auth_reason(status: int) -> str:
    """Why a 401/403 happened, for a SourceError; the token itself is never part of it."""
    if status == 401:
        return "token rejected (401): check the API token configured for this source"
    return "token lacks permission (403): check the scopes granted to the API token of this source"


def record_fetch_error(source: str, doc_id: str, failure: HttpFailure) -> FetchError | SourceError:
    """What a failed fetch of one record means for the run. The record's own problem (gone, refused,
    unreadable) quarantines it: FetchError. A rejected token or an API that kept failing (timeouts, 5xx,
    429 past the retry budget) would fail every record after it as well, and quarantining them would
    store their fingerprints as if they had been read: SourceError stops the run, the cursor stays,
    and the next run picks them up."""
    if isinstance(failure, PermanentStatus):
        if failure.status == 404:
            return FetchError(doc_id, "record disappeared (deleted or archived) after listing")
        if failure.status in (401, 403):
            return SourceError(source, auth_reason(failure.status))
        return FetchError(doc_id, failure.reason)
    if isinstance(failure, (NotJson, TooLarge)):
        return FetchError(doc_id, failure.reason)
    return SourceError(source, f"fetching {doc_id!r}: {failure.reason}; the next run resumes from here")


# --------------------------------------------------------------------------- rate limit


class RateLimiter:
    """At most `per_second` requests per second, evenly spaced (a token bucket of depth one).

    Thread-safe: each caller reserves the next free slot under the lock, then sleeps outside it.
    `per_second` of None or <= 0 disables the budget.
    """

    def __init__(self, per_second: float | None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / per_second if per_second and per_second > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next = 0.0  # earliest time the next request may start

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)

    def hold_off(self, seconds: float) -> None:
        """No request may start within `seconds` from now (the server asked us to wait)."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)


# --------------------------------------------------------------------------- retry policy


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parse a Retry-After header: delta-seconds ("1", "0.2") or an HTTP-date. None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    backoff: float = 0.5  # first backoff wait in seconds; doubles per attempt, plus up to `backoff` of jitter
    max_backoff: float = 30.0  # cap of one backoff wait (not of a Retry-After)
    max_retry_time: float = 120.0  # no retry starts later than this many seconds after the first attempt


class _Retryable(Exception):
    def __init__(self, reason: str, status: int | None, retry_after: float | None):
        super().__init__(reason)
        self.reason, self.status, self.retry_after = reason, status, retry_after


_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class _Call:
    method: str
    url: str
    params: Mapping[str, str] | None = None
    body: Mapping[str, Any] | None = None
    limiter: RateLimiter | None = None


# What the connectors pass as `max_response_bytes`: an API page or record is kilobytes; a body this
# large is a misconfigured endpoint (a file download, an unpaged dump) and would otherwise be held
# whole in memory before anything could refuse it. (HttpSource's own default is no limit: embedding
# answers of large batches are legitimately big.)
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class HttpSource:
    """Requests JSON from one API under one rate budget and one retry policy."""

    def __init__(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        requests_per_second: float | None = 10.0,
        timeout: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        client: httpx.Client | None = None,
        secret: str | None = None,
        max_response_bytes: int | None = None,
    ):
        if retry.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, not {retry.max_attempts}")
        if max_response_bytes is not None and max_response_bytes < 1:
            raise ConfigError(f"max_response_bytes must be positive, not {max_response_bytes}")
        self.max_response_bytes = max_response_bytes
        self._headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        self.limiter = RateLimiter(requests_per_second)
        self.retry = retry
        self._secret = secret  # scrubbed from every reason, should a server ever echo it
        self._owns_client = client is None
        self.client = client or httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def get_json(self, url: str, params: Mapping[str, str] | None = None) -> Any:
        """GET and decode JSON. Raises an HttpFailure: PermanentStatus, GaveUp, NotJson, or the base class."""
        return self._request_json(_Call("GET", url, params=params))

    def post_json(self, url: str, body: Mapping[str, Any], *, limiter: RateLimiter | None = None) -> Any:
        """POST `body` as JSON and decode the answer, under `limiter` as well as the source's budget
        (an endpoint with a tighter limit of its own, such as a search API). Raises like `get_json`."""
        return self._request_json(_Call("POST", url, body=body, limiter=limiter))

    def _request_json(self, call: _Call) -> Any:
        try:
            response = self._send(call)
        except HttpFailure as exc:
            exc.reason = self._redact(exc.reason)
            exc.args = (exc.reason,)
            raise
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            kind = response.headers.get("content-type", "no content type")
            raise NotJson(f"{call.method} {_where(response.request.url)} answered {response.status_code} with a body "
                          f"that is not JSON ({kind})", response.status_code) from None
        except RecursionError:  # json's decoder recurses per nesting level: "[[[[..." is a crash otherwise
            raise NotJson(f"{call.method} {_where(response.request.url)} answered {response.status_code} with JSON "
                          "nested too deeply to read", response.status_code) from None

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _send(self, call: _Call) -> httpx.Response:
        """One request with retries. Raises PermanentStatus, GaveUp, or HttpFailure (bad URL, proxy, scheme)."""
        policy = self.retry
        retrying = Retrying(
            retry=retry_if_exception_type((_Retryable, *_TRANSIENT)),
            stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.max_retry_time),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, call)
        except _Retryable as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            hint = ""
            if exc.retry_after is not None and exc.retry_after > policy.max_retry_time:
                hint = f"; the server asked to wait {exc.retry_after:g} s, beyond the {policy.max_retry_time:g} s retry budget"
            raise GaveUp(f"{exc.reason} (gave up after {attempts} attempt(s){hint})", exc.status) from None
        except _TRANSIENT as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise GaveUp(f"{call.method} {_where(httpx.URL(call.url))} failed: {type(exc).__name__} "
                         f"(gave up after {attempts} attempt(s))") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # not transient: a bad URL, scheme or proxy
            raise HttpFailure(f"{call.method} {call.url.split('?', 1)[0]} failed: {type(exc).__name__}") from None

    def _attempt(self, call: _Call) -> httpx.Response:
        limiters = [self.limiter, *([call.limiter] if call.limiter else [])]
        for limiter in limiters:
            limiter.acquire()
        request = self.client.build_request(call.method, call.url, params=call.params, json=call.body,
                                            headers=self._headers)
        response = self._read_capped(self.client.send(request, stream=True))
        status = response.status_code
        if status < 400:
            return response
        where = _where(response.request.url)
        if status == 429 or status >= 500:
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
            if retry_after is not None and retry_after <= self.retry.max_retry_time:
                for limiter in limiters:  # beyond the budget we give up instead (and must not block later calls)
                    limiter.hold_off(retry_after)
            label = "rate limited (429)" if status == 429 else f"server error ({status})"
            raise _Retryable(f"{call.method} {where}: {label}", status, retry_after)
        raise PermanentStatus(f"{call.method} {where} answered {status}{_error_message(response, self._redact)}", status)

    def _read_capped(self, streamed: httpx.Response) -> httpx.Response:
        """Read a streamed answer up to `max_response_bytes` (decoded), then hand back a complete Response."""
        if self.max_response_bytes is None:
            try:
                streamed.read()
            finally:
                streamed.close()
            return streamed
        limit = self.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in streamed.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"{streamed.request.method} {_where(streamed.request.url)} answered "
                                   f"{streamed.status_code} with more than {limit:,} bytes (max_response_bytes); "
                                   "not read further", streamed.status_code)
                chunks.append(chunk)
        finally:
            streamed.close()
        # Rebuilt from the bytes already decoded: without Content-Encoding, so nothing is decoded twice.
        headers = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() != "content-encoding"]
        return httpx.Response(streamed.status_code, headers=headers, content=b"".join(chunks),
                              request=streamed.request, extensions=streamed.extensions)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return exc.retry_after  # exactly what the server asked for
        policy = self.retry
        return wait_exponential_jitter(multiplier=policy.backoff, max=policy.max_backoff, jitter=policy.backoff)(state)

    @staticmethod
    def _before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = exc.reason if isinstance(exc, _Retryable) else type(exc).__name__
        log.info("%s; retry %d in %.2f s", reason, state.attempt_number, state.upcoming_sleep)


def _where(url: httpx.URL) -> str:
    """Host and path, never the query string (it may carry an api key on some APIs)."""
    return f"{url.host}{url.path}"


def _error_message(response: httpx.Response, redact: Callable[[str], str]) -> str:
    """The API's own short error message, when it sends one as JSON. Redacted before it is cut short:
    a secret the server echoed back and the cut runs through would otherwise keep its first part."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return f": {redact(message)[:200]}" if isinstance(message, str) and message else ""


def same_origin(url: str, base_url: str) -> bool:
    """Whether `url` lies on the same scheme/host/port as `base_url` (where the token may be sent)."""
    a, b = httpx.URL(url), httpx.URL(base_url)
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)
