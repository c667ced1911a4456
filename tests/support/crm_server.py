"""A local HTTP server that speaks the shapes of HubSpot's CRM v3 objects API, for connector tests.

    with CrmServer(token="t") as crm:
        cid = crm.add("contacts", {"firstname": "Ada", "lastname": "Lovelace"}, associations={"companies": [co]})
        crm.rate_limit(0.2, retry_after="1")      # a share of calls answer 429 with Retry-After
        crm.fail_next(3)                          # a burst of consecutive 500s
        crm.corrupt("contacts", cid, "properties")  # that record comes out malformed
        crm.break_page("contacts", after=None)    # that listing page answers non-JSON
        ... crm.requests ...                      # every request, with monotonic timestamps

Endpoints (bearer auth, else 401):
    GET /crm/v3/objects/{type}?limit=&after=&properties=a,b&archived=false|true
        -> {"results": [...], "paging": {"next": {"after": "<id>", "link": "<url>"}}}  (no paging on the last page)
    GET /crm/v3/objects/{type}/{id}?properties=&associations=a,b  -> one record; 404 when missing or archived

Paging cursors are record ids (the listing is in id order, `after` = last id of the page), so records
added, changed or archived during a listing never shift other records across pages.
Binds 127.0.0.1 on an ephemeral port; stdlib only.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlencode, urlsplit

OBJECT_TYPES = ("contacts", "companies", "deals", "tickets", "notes")
MAX_LIMIT = 100

# What HubSpot returns when no `properties` are asked for.
DEFAULT_PROPERTIES = {
    "contacts": ("firstname", "lastname", "email"),
    "companies": ("name", "domain"),
    "deals": ("dealname", "amount", "dealstage", "pipeline", "closedate"),
    "tickets": ("subject", "content", "hs_pipeline", "hs_pipeline_stage", "hs_ticket_priority"),
    "notes": ("hs_note_body", "hs_timestamp"),
}

ASSOCIATION_TYPE = {  # label HubSpot gives an association in v3 responses
    ("contacts", "companies"): "contact_to_company",
}


def modified_property(object_type: str) -> str:
    """Contacts call it lastmodifieddate; every other object hs_lastmodifieddate."""
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class LoggedRequest:
    t: float  # time.monotonic() when the request line arrived
    t_answered: float  # time.monotonic() when the answer was ready, just before it was sent
    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    retry_after: str | None = None
    authorized: bool = True

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class _Record:
    object_type: str
    id: str
    properties: dict[str, Any]
    created: datetime
    updated: datetime
    associations: dict[str, list[str]] = field(default_factory=dict)
    archived: bool = False
    archived_at: datetime | None = None
    corrupt: str | None = None  # "properties" | "no_id"


class CrmServer:
    def __init__(self, token: str = "crm-test-token"):
        self.token = token
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, _Record]] = {t: {} for t in OBJECT_TYPES}
        self._next_id = 1000
        self._clock = datetime(2024, 1, 1, tzinfo=UTC)
        self._log: list[LoggedRequest] = []
        self._429_share = 0.0
        self._429_due = 0.0
        self._429_retry_after: list[str | None] = ["1"]
        self._429_left: int | None = None
        self._429_count = 0
        self._fail_status = 500
        self._fail_skip = 0
        self._fail_left = 0
        self._broken_pages: set[tuple[str, str | None]] = set()
        self.link_base: str | None = None  # override the origin of paging links (tests of foreign links)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> CrmServer:
        handler = type("Handler", (_Handler,), {"crm": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False  # keep-alive handler threads must not hold up stop()
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------------ data

    def _tick(self) -> datetime:
        self._clock += timedelta(milliseconds=1001)  # distinct timestamps for every change
        return self._clock

    def add(self, object_type: str, properties: Mapping[str, Any] | None = None, *,
            associations: Mapping[str, Sequence[str]] | None = None, owner: str | None = None) -> str:
        with self._lock:
            self._next_id += 1
            record_id = str(self._next_id)
            now = self._tick()
            props = {k: (None if v is None else str(v)) for k, v in (properties or {}).items()}
            props.setdefault("hubspot_owner_id", owner)
            props["hs_object_id"] = record_id
            props["createdate"] = _iso(now)
            props[modified_property(object_type)] = _iso(now)
            self._records[object_type][record_id] = _Record(
                object_type, record_id, props, now, now, {k: list(v) for k, v in (associations or {}).items()}
            )
            return record_id

    def add_many(self, object_type: str, count: int,
                 make: Callable[[int], Mapping[str, Any]] | None = None) -> list[str]:
        make = make or (lambda i: {DEFAULT_PROPERTIES[object_type][0]: f"{object_type} {i}"})
        return [self.add(object_type, make(i)) for i in range(count)]

    def update(self, object_type: str, record_id: str, **properties: Any) -> None:
        with self._lock:
            record = self._records[object_type][record_id]
            now = self._tick()
            record.properties.update({k: (None if v is None else str(v)) for k, v in properties.items()})
            record.properties[modified_property(object_type)] = _iso(now)
            record.updated = now

    def associate(self, object_type: str, record_id: str, to_type: str, to_ids: Iterable[str]) -> None:
        with self._lock:
            self._records[object_type][record_id].associations.setdefault(to_type, []).extend(to_ids)

    def archive(self, object_type: str, record_id: str) -> None:
        with self._lock:
            record = self._records[object_type][record_id]
            record.archived, record.archived_at = True, self._tick()

    def delete(self, object_type: str, record_id: str) -> None:
        with self._lock:
            del self._records[object_type][record_id]

    def ids(self, object_type: str, *, archived: bool = False) -> list[str]:
        with self._lock:
            return [r.id for r in self._sorted(object_type) if r.archived == archived]

    def _sorted(self, object_type: str) -> list[_Record]:
        return sorted(self._records[object_type].values(), key=lambda r: int(r.id))

    # ------------------------------------------------------------------ faults

    def rate_limit(self, share: float, retry_after: str | Sequence[str | None] | None = "1", *,
                   limit: int | None = None) -> None:
        """Answer 429 on `share` of calls (every 1/share-th call, counting from now), with Retry-After values cycled from `retry_after`
        (None: no header). `limit` caps how many 429s are sent in all."""
        with self._lock:
            self._429_share, self._429_due = share, 0.0
            self._429_retry_after = [retry_after] if retry_after is None or isinstance(retry_after, str) else list(retry_after)
            self._429_left = limit

    def fail_next(self, count: int, status: int = 500, *, skip: int = 0) -> None:
        """After `skip` more requests, answer the next `count` requests with `status`."""
        with self._lock:
            self._fail_status, self._fail_skip, self._fail_left = status, skip, count

    def corrupt(self, object_type: str, record_id: str, how: str = "properties") -> None:
        """Serve that record malformed: `properties` not an object ("properties") or without an id ("no_id")."""
        assert how in ("properties", "no_id")
        with self._lock:
            self._records[object_type][record_id].corrupt = how

    def break_page(self, object_type: str, after: str | None = None) -> None:
        """The listing page of `object_type` requested with this `after` cursor answers 200 with HTML."""
        with self._lock:
            self._broken_pages.add((object_type, after))

    def clear_faults(self) -> None:
        with self._lock:
            self._429_share, self._429_due, self._429_left, self._fail_left, self._fail_skip = 0.0, 0.0, None, 0, 0
            self._broken_pages.clear()

    # ------------------------------------------------------------------ log

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return sorted(self._log, key=lambda r: r.t)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    # ------------------------------------------------------------------ serving

    def _fault(self) -> tuple[int, dict[str, str], Any] | None:
        """A fault to answer this request with, if any is due (under the lock)."""
        if self._fail_left > 0:
            if self._fail_skip > 0:
                self._fail_skip -= 1
            else:
                self._fail_left -= 1
                return self._fail_status, {}, {"status": "error", "message": "internal error", "category": "INTERNAL"}
        if self._429_share > 0 and (self._429_left is None or self._429_left > 0):
            self._429_due += self._429_share  # exactly `share` of the calls, evenly spread
        if self._429_due >= 1.0:
            self._429_due -= 1.0
            if self._429_left is not None:
                self._429_left -= 1
            value = self._429_retry_after[self._429_count % len(self._429_retry_after)]
            self._429_count += 1
            headers = {"Retry-After": value} if value is not None else {}
            return 429, headers, {"status": "error", "message": "You have reached your secondly limit.",
                                  "errorType": "RATE_LIMIT", "policyName": "SECONDLY"}
        return None

    def _render(self, record: _Record, properties: Sequence[str] | None,
                associations: Sequence[str] = ()) -> dict[str, Any]:
        names = list(properties) if properties else list(DEFAULT_PROPERTIES[record.object_type])
        names += ["hs_object_id", "createdate", modified_property(record.object_type)]
        props = {n: record.properties.get(n) for n in dict.fromkeys(names)}
        body: dict[str, Any] = {
            "id": record.id,
            "properties": props,
            "createdAt": _iso(record.created),
            "updatedAt": _iso(record.updated),
            "archived": record.archived,
        }
        if record.archived_at:
            body["archivedAt"] = _iso(record.archived_at)
        linked = {
            t: {"results": [{"id": i, "type": ASSOCIATION_TYPE.get((record.object_type, t),
                                                                  f"{record.object_type[:-1]}_to_{t[:-1]}")}
                            for i in record.associations[t]]}
            for t in associations if record.associations.get(t)
        }
        if linked:
            body["associations"] = linked
        if record.corrupt == "properties":
            body["properties"] = "<unavailable>"
        elif record.corrupt == "no_id":
            del body["id"]
        return body

    def handle(self, path: str, query: dict[str, list[str]], headers: Mapping[str, str]) -> tuple[int, dict[str, str], Any]:
        """(status, headers, body) for one GET; body is JSON-able or bytes (sent as text/html)."""
        with self._lock:
            if headers.get("authorization") != f"Bearer {self.token}":
                return 401, {}, {"status": "error", "category": "INVALID_AUTHENTICATION",
                                 "message": "Authentication credentials not found."}
            fault = self._fault()
            if fault:
                return fault
            parts = [p for p in path.split("/") if p]
            if len(parts) not in (4, 5) or parts[:3] != ["crm", "v3", "objects"] or parts[3] not in OBJECT_TYPES:
                return 404, {}, {"status": "error", "message": f"no route for {path}", "category": "OBJECT_NOT_FOUND"}

            def one(name: str) -> str | None:
                values = query.get(name)
                return values[0] if values else None

            def many(name: str) -> list[str]:
                return [v for value in query.get(name, []) for v in value.split(",") if v]

            object_type = parts[3]
            archived = one("archived") == "true"
            if len(parts) == 5:
                record = self._records[object_type].get(parts[4])
                if record is None or record.archived != archived:
                    return 404, {}, {"status": "error", "message": "Object not found.  objectId are usually numeric.",
                                     "category": "OBJECT_NOT_FOUND"}
                return 200, {}, self._render(record, many("properties"), many("associations"))

            after = one("after")
            if (object_type, after) in self._broken_pages:
                return 200, {}, b"<html><body><h1>502 Bad Gateway</h1>upstream hiccup</body></html>"
            try:
                limit = int(one("limit") or 10)
                after_id = int(after) if after is not None else None
            except ValueError:
                return 400, {}, {"status": "error", "message": "limit and after must be integers", "category": "VALIDATION_ERROR"}
            if limit < 1:
                return 400, {}, {"status": "error", "message": "limit must be positive", "category": "VALIDATION_ERROR"}
            limit = min(limit, MAX_LIMIT)
            rows = [r for r in self._sorted(object_type)
                    if r.archived == archived and (after_id is None or int(r.id) > after_id)]
            page, rest = rows[:limit], rows[limit:]
            body: dict[str, Any] = {"results": [self._render(r, many("properties")) for r in page]}
            if rest:
                cursor = page[-1].id
                link_query = {k: v[0] for k, v in query.items() if k != "after"} | {"after": cursor}
                origin = self.link_base or self.url
                body["paging"] = {"next": {"after": cursor,
                                           "link": f"{origin}/crm/v3/objects/{object_type}?{urlencode(link_query)}"}}
            return 200, {}, body

    def record_request(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)


class _Handler(BaseHTTPRequestHandler):
    crm: CrmServer
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs
    timeout = 10  # an idle keep-alive connection is dropped after this many seconds
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def do_GET(self) -> None:
        arrived = time.monotonic()
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, extra, body = self.crm.handle(split.path, query, headers)
        except Exception as exc:  # noqa: BLE001 - a bug in the fake must show up as a 500, not a hung client
            status, extra, body = 500, {}, {"status": "error", "message": f"fake server bug: {exc!r}"}
        if isinstance(body, bytes):
            data, content_type = body, "text/html; charset=utf-8"
        else:
            data, content_type = json.dumps(body).encode(), "application/json;charset=utf-8"
        # Logged before the answer goes out, so a client that has its answer always finds it in the log.
        self.crm.record_request(LoggedRequest(
            t=arrived, t_answered=time.monotonic(), method="GET", path=split.path, query=query, status=status,
            retry_after=extra.get("Retry-After"), authorized=status != 401,
        ))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass
