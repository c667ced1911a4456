"""A hostile HTTP server for secret-leak tests: every request is refused (401 by default) with a body
that echoes everything the client sent, headers (API keys, bearer tokens, AWS signatures) and query
string included, in JSON that looks like an OpenAI/Qdrant/HubSpot error. Some real services do echo
a rejected key back; whatever ragline shows of such an answer must not carry the secret on.

    with EchoServer(status=401) as server:
        ... server.url ...
Binds 127.0.0.1 on an ephemeral port; stdlib only.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


SECRET_HEADERS = {"authorization", "api-key", "x-api-key", "x-amz-security-token", "cookie"}


class EchoServer:
    def __init__(self, status: int = 401):
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> Self:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                sent = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()), "body": body}
                owner.requests.append(sent)
                # Credentials first, so that a message cut short by the client still holds them whole.
                headers = sorted(self.headers.items(), key=lambda kv: kv[0].lower() not in SECRET_HEADERS)
                echoed = "; ".join(f"{k}: {v}" for k, v in headers)
                answer = {
                    "error": {"message": f"Incorrect API key provided: {echoed}", "type": "invalid_request_error",
                              "code": "invalid_api_key"},
                    "status": {"error": f"Unauthorized: {echoed}"},
                    "message": f"Authentication failed for {self.path}: {echoed}",
                    "category": "INVALID_AUTHENTICATION",
                    "you_sent": sent,
                }
                data = json.dumps(answer).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
