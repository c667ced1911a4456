"""A local OpenAI-compatible HTTP server for tests: chat completions and embeddings in the real API's shapes.

    with LlmServer(api_key="k", embed=embedder_fn) as llm:
        llm.script(("status", 429, {"Retry-After": "0.2"}), ("status", 500), ("hang", 2.0), ("ok",))
        llm.fail_all(500)          # a dead provider: every request answers 500 until fail_all(None)
        ... Provider(ProviderConfig(name="p", base_url=llm.url, model="m")) ...
        llm.requests, llm.raw_bodies   # every request as received (paths, headers, JSON, monotonic time)

Endpoints (bearer auth when constructed with `api_key`, else none; a wrong key answers 401 with an
OpenAI-style error body):
    POST /v1/chat/completions  -> {"id", "object": "chat.completion", "created", "model",
                                   "choices": [{"index": 0, "message": {"role": "assistant", "content"},
                                                "finish_reason": "stop"}],
                                   "usage": {"prompt_tokens", "completion_tokens", "total_tokens"}}
    POST /v1/embeddings        -> {"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
                                   "model", "usage": {"prompt_tokens", "total_tokens"}}  (501 without `embed`)

Token counts are whitespace words: deterministic, which is all the tests need. The answer text comes
from `reply(body)`; the default quotes the first numbered passage ("[n] ...") of the last user message
and cites it. Scripted responses are consumed one per request (either endpoint) before the default.
Binds 127.0.0.1 on an ephemeral port; stdlib only.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

Reply = Callable[[dict[str, Any]], str]
Embed = Callable[[list[str]], list[list[float]]]
# ("status", 429, {"Retry-After": "0.2"}) | ("status", 500) | ("hang", seconds) | ("ok",)
Scripted = tuple[Any, ...]

_PASSAGE = re.compile(r"^\[(\d+)\][^\n]*\n(.+?)(?:\n\n|\Z)", re.MULTILINE | re.DOTALL)


def count_words(text: str) -> int:
    return len(text.split())


def default_reply(body: dict[str, Any]) -> str:
    """Quote the first numbered passage of the last user message and cite it; a grounded-looking answer."""
    users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    content = str(users[-1].get("content", "")) if users else ""
    found = _PASSAGE.search(content)
    if found is None:
        return "I could not find the answer in the context."
    number, passage = found.group(1), " ".join(found.group(2).split())
    first_sentence = re.split(r"(?<=[.!?])\s", passage, maxsplit=1)[0]
    return f'According to the context, "{first_sentence}" [{number}]'


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None when the body was not JSON
    at: float  # time.monotonic() when it arrived


class LlmServer:
    """An OpenAI-compatible provider on 127.0.0.1; use as a context manager, `.url` ends in /v1."""

    def __init__(
        self,
        *,
        reply: Reply = default_reply,
        embed: Embed | None = None,
        api_key: str | None = None,
        model: str = "local-test-model",
    ):
        self.reply, self.embed, self.api_key, self.model = reply, embed, api_key, model
        self._lock = threading.Lock()
        self._script: deque[Scripted] = deque()
        self._fail_all: int | None = None
        self._requests: list[RecordedRequest] = []
        self._raw: list[bytes] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        # a short poll interval keeps shutdown (each test's teardown) quick
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="llm-server", daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- behaviour

    def script(self, *responses: Scripted) -> None:
        """Queue responses, one consumed per request before the default answer."""
        for response in responses:
            if not response or response[0] not in ("status", "hang", "ok"):
                raise ValueError(f"unknown scripted response {response!r}: use ('status', code[, headers]), ('hang', s) or ('ok',)")
        with self._lock:
            self._script.extend(responses)

    def fail_all(self, status: int | None) -> None:
        """Answer every request with `status` (a dead provider); None restores normal service."""
        with self._lock:
            self._fail_all = status

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def raw_bodies(self) -> list[bytes]:
        with self._lock:
            return list(self._raw)

    def count(self, path_suffix: str = "/chat/completions") -> int:
        return sum(1 for r in self.requests if r.path.endswith(path_suffix))

    # ----------------------------------------------------------------- internals

    def _record(self, path: str, headers: Mapping[str, str], raw: bytes) -> Any:
        try:
            body = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        with self._lock:
            self._requests.append(RecordedRequest(path, {k.lower(): v for k, v in headers.items()}, body, time.monotonic()))
            self._raw.append(raw)
        return body

    def _next_behaviour(self) -> Scripted:
        with self._lock:
            if self._fail_all is not None:
                return ("status", self._fail_all)
            return self._script.popleft() if self._script else ("ok",)

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        return self.api_key is None or headers.get("Authorization") == f"Bearer {self.api_key}"

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        text = self.reply(body)
        prompt = sum(count_words(str(m.get("content", ""))) for m in body.get("messages", []) if isinstance(m, dict))
        completion = count_words(text) if isinstance(text, str) else 0  # a reply may simulate content: null
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        assert self.embed is not None
        texts = body.get("input")
        inputs = [texts] if isinstance(texts, str) else list(texts or [])
        vectors = self.embed([str(t) for t in inputs])
        tokens = sum(count_words(str(t)) for t in inputs)
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": [float(x) for x in v]} for i, v in enumerate(vectors)],
            "model": body.get("model") or self.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _handler_for(server: LlmServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
            pass

        def _send(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and went away: expected in hang tests

        def do_GET(self) -> None:  # noqa: N802
            self._send(404, _error(f"no route GET {self.path}", "invalid_request_error"))

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            body = server._record(path, dict(self.headers.items()), raw)
            if not server._authorized(self.headers):
                self._send(401, _error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
                return
            if path not in ("/v1/chat/completions", "/v1/embeddings"):
                self._send(404, _error(f"no route POST {path}", "invalid_request_error"))
                return
            if not isinstance(body, dict):
                self._send(400, _error("the body must be a JSON object", "invalid_request_error"))
                return
            behaviour = server._next_behaviour()
            if behaviour[0] == "status":
                status = int(behaviour[1])
                headers = behaviour[2] if len(behaviour) > 2 else {}
                kind = "rate_limit_error" if status == 429 else "server_error"
                self._send(status, _error(f"scripted failure {status}", kind), headers)
                return
            if behaviour[0] == "hang":
                time.sleep(float(behaviour[1]))
            if path == "/v1/embeddings":
                if server.embed is None:
                    self._send(501, _error("this test server has no embedding function", "server_error"))
                    return
                self._send(200, server._embeddings(body))
            else:
                self._send(200, server._chat(body))

    return Handler


__all__ = ["LlmServer", "RecordedRequest", "count_words", "default_reply"]
