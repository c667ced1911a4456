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
    POST /crm/v3/objects/{type}/search  {"filterGroups": [{"filters": [{"propertyName", "operator", "value"}]}],
                                         "sorts": [{"propertyName", "direction"}], "properties": [...],
                                         "limit": n, "after": "<offset>"}
        -> {"total": N, "results": [...], "paging": {"next": {"after": "<offset>"}}}  (live records only)
        Filter groups are ORed, filters within a group ANDed; operators EQ NEQ GT GTE LT LTE. Date
        properties (createdate and the type's last-modified property) compare as epoch millis.
        Like HubSpot, `after` is an offset and the search refuses to page past `search_ceiling`
        results (10,000): a request with after >= the ceiling answers 400.

`archived=true` on the listing lists archived records instead, each with `archivedAt`.

Listing paging cursors are record ids (the listing is in id order, `after` = last id of the page), so records
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
SEARCH_MAX_LIMIT = 200
SEARCH_OPERATORS = ("EQ", "NEQ", "GT", "GTE", "LT", "LTE")

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


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _bad_request(message: str) -> tuple[int, dict[str, str], Any]:
    return 400, {}, {"status": "error", "message": message, "category": "VALIDATION_ERROR"}


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
    body: Any = None  # decoded JSON body of a POST

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def filter_value(self) -> str | None:
        """The value of a search's first filter (where its window starts)."""
        try:
            return self.body["filterGroups"][0]["filters"][0]["value"]
        except (TypeError, KeyError, IndexError):
            return None



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
    def __init__(self, token: str = "crm-test-token", *, search_ceiling: int = 10_000, start: datetime | None = None):
        self.token = token
        self.search_ceiling = search_ceiling  # the search answers 400 for after >= this (HubSpot: 10,000)
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, _Record]] = {t: {} for t in OBJECT_TYPES}
        self._next_id = 1000
        # The server's clock: wall time when it was made (or `start`), then 1.001 s more per change.
        self._clock = start or datetime.now(UTC).replace(microsecond=0)
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

    def now(self) -> datetime:
        """The server's clock (it only moves with changes and `advance`); a connector's clock in tests."""
        with self._lock:
            return self._clock

    def advance(self, delta: timedelta) -> None:
        """Let time pass on the server's clock."""
        with self._lock:
            self._clock += delta

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

    def handle(self, path: str, query: dict[str, list[str]], headers: Mapping[str, str], *,
               method: str = "GET", body: Any = None) -> tuple[int, dict[str, str], Any]:
        """(status, headers, body) for one request; body is JSON-able or bytes (sent as text/html)."""
        with self._lock:
            if headers.get("authorization") != f"Bearer {self.token}":
                return 401, {}, {"status": "error", "category": "INVALID_AUTHENTICATION",
                                 "message": "Authentication credentials not found."}
            fault = self._fault()
            if fault:
                return fault
            parts = [p for p in path.split("/") if p]
            if method == "POST":
                if len(parts) == 5 and parts[:3] == ["crm", "v3", "objects"] and parts[3] in OBJECT_TYPES \
                        and parts[4] == "search":
                    return self._search(parts[3], body)
                return 404, {}, {"status": "error", "message": f"no route for POST {path}", "category": "OBJECT_NOT_FOUND"}
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

    def _search(self, object_type: str, body: Any) -> tuple[int, dict[str, str], Any]:
        """POST /crm/v3/objects/{type}/search (under the lock)."""
        if not isinstance(body, dict):
            return _bad_request("the request body must be a JSON object")
        try:
            limit = int(body.get("limit", 10))
            offset = int(body.get("after") or 0)
        except (TypeError, ValueError):
            return _bad_request("limit and after must be integers")
        if limit < 1 or offset < 0:
            return _bad_request("limit must be positive and after not negative")
        if offset >= self.search_ceiling:
            return _bad_request(f"The search cannot page past {self.search_ceiling} results "
                                f"(after={offset}); narrow the filters instead")
        groups = body.get("filterGroups") or []
        sorts = body.get("sorts") or []
        if not isinstance(groups, list) or not isinstance(sorts, list):
            return _bad_request("filterGroups and sorts must be lists")
        try:
            matchers = [[self._filter(object_type, f) for f in group.get("filters", [])] for group in groups]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            return _bad_request(f"bad filter: {exc!r}")
        rows = [r for r in self._sorted(object_type)
                if not r.archived and (not matchers or any(all(m(r) for m in group) for group in matchers))]
        for sort in reversed(sorts):  # stable sorts: the first sort is the primary key
            if not isinstance(sort, dict) or sort.get("direction", "ASCENDING") not in ("ASCENDING", "DESCENDING"):
                return _bad_request("a sort needs a propertyName and direction ASCENDING or DESCENDING")
            name = str(sort.get("propertyName"))
            rows.sort(key=lambda r, n=name: self._sort_key(r, n), reverse=sort.get("direction") == "DESCENDING")
        end = min(offset + min(limit, SEARCH_MAX_LIMIT), self.search_ceiling)
        page = rows[offset:end]
        properties = body.get("properties") or None
        answer: dict[str, Any] = {"total": len(rows), "results": [self._render(r, properties) for r in page]}
        if end < len(rows):
            answer["paging"] = {"next": {"after": str(end)}}
        return 200, {}, answer

    @staticmethod
    def _value(record: _Record, name: str) -> Any:
        """A property as the search compares it: dates as epoch millis, the id as a number, else text."""
        if name == modified_property(record.object_type):
            return _millis(record.updated)
        if name == "createdate":
            return _millis(record.created)
        if name == "hs_object_id":
            return int(record.id)
        return record.properties.get(name)

    def _sort_key(self, record: _Record, name: str) -> tuple[Any, ...]:
        value = self._value(record, name)
        return (value is None, value if isinstance(value, int) else str(value or ""), int(record.id))

    def _filter(self, object_type: str, spec: Mapping[str, Any]) -> Callable[[_Record], bool]:
        name, operator, wanted = spec["propertyName"], spec["operator"], spec.get("value")
        if operator not in SEARCH_OPERATORS:
            raise ValueError(f"unknown operator {operator!r}")

        def match(record: _Record) -> bool:
            value = self._value(record, name)
            if value is None:
                return operator == "NEQ"
            other: Any = int(wanted) if isinstance(value, int) else str(wanted)
            return {"EQ": value == other, "NEQ": value != other, "GT": value > other, "GTE": value >= other,
                    "LT": value < other, "LTE": value <= other}[operator]

        if name in (modified_property(object_type), "createdate", "hs_object_id"):
            int(wanted)  # a date or an id compared with something that is not a number: 400
        return match

    def record_request(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)


class _Handler(BaseHTTPRequestHandler):
    crm: CrmServer
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs
    timeout = 10  # an idle keep-alive connection is dropped after this many seconds
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        arrived = time.monotonic()
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        sent: Any = None
        if method == "POST":
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                sent = json.loads(raw) if raw else None
            except (json.JSONDecodeError, UnicodeDecodeError):
                sent = None  # answered 400 by handle()
        try:
            status, extra, body = self.crm.handle(split.path, query, headers, method=method, body=sent)
        except Exception as exc:  # noqa: BLE001 - a bug in the fake must show up as a 500, not a hung client
            status, extra, body = 500, {}, {"status": "error", "message": f"fake server bug: {exc!r}"}
        if isinstance(body, bytes):
            data, content_type = body, "text/html; charset=utf-8"
        else:
            data, content_type = json.dumps(body).encode(), "application/json;charset=utf-8"
        # Logged before the answer goes out, so a client that has its answer always finds it in the log.
        self.crm.record_request(LoggedRequest(
            t=arrived, t_answered=time.monotonic(), method=method, path=split.path, query=query, status=status,
            retry_after=extra.get("Retry-After"), authorized=status != 401, body=sent,
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
