"""HubSpot CRM (v3 objects API) as a source: every contact, company, deal, ticket and note is a document.

Listing pages through `GET /crm/v3/objects/{type}?archived=false` asking for the last-modified
property only; a record's fingerprint is its `updatedAt`. Archived records are not listed, so the
pipeline deletes them from the index. The listing is all or nothing: a page that cannot be had
after retries, or is not JSON, raises SourceError (nothing gets deleted); a single malformed record
is skipped with a reason in `self.skipped`, like an unreadable file in a folder source.

Fetch reads one record with its type's properties and associations and renders it as text:

    Contact: Ada Lovelace
    First name: Ada
    ...
    Associated companies: 1001, 1002

The last-modified date is left out of the text, so a record touched without a visible change keeps
its content hash and is not re-embedded.

Incremental listing (the connector is an `IncrementalConnector`):

- `high_water_mark()` is the client's UTC clock minus `cursor_margin` (default 5 minutes), as ISO 8601
  with milliseconds ("2025-03-01T12:00:00.000Z"); epoch milliseconds are accepted back as well. The
  pipeline reads it before listing, so a change made while a run lists is seen by the next run. The
  API does not tell us its own time: the margin assumes the client's clock is less than 5 minutes
  ahead of HubSpot's (NTP-synchronised hosts are within a second).
- `list_changes(since)` searches each object type (`POST /crm/v3/objects/{type}/search`) for records
  whose last-modified date is >= since - `change_overlap` (default 10 minutes: HubSpot's search index
  lags writes by seconds to minutes), oldest first. Records in the overlap that did not change keep
  their fingerprint (the same `updatedAt` as `list()` gives) and cost nothing. The search pages by
  offset and refuses to go past 10,000 results (`search_ceiling`); at the ceiling the search starts
  again from the last last-modified date seen, as HubSpot advises, and repeated ids are dropped.
  Then every archived record (`GET ...?archived=true`) archived since the same threshold (all of
  them when the API gives no `archivedAt`) is reported as a `Deletion`. No ids-only listing is made
  (`present_ids` is None): records deleted outright (GDPR deletes) are only noticed by a complete
  listing, i.e. a run with `full_listing`.
- As with `list()`, a page that cannot be had after retries raises SourceError: the run deletes
  nothing and the cursor stays where it was.

HubSpot limits search requests separately (5 per second per account); searches take a slot from
`search_requests_per_second` as well as from the connector's overall budget.

The token goes in the Authorization header only: never in `location`, a URI, a log line or an error.
HTTP retries, rate budget and the retryable/permanent split live in connectors/http.py.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any, ClassVar, Self

import httpx

from connectors.http import (
    MAX_RESPONSE_BYTES,
    GaveUp,
    HttpFailure,
    HttpSource,
    NotJson,
    PermanentStatus,
    RateLimiter,
    RetryPolicy,
    auth_reason,
    record_fetch_error,
)
from ragline.errors import ConfigError, FetchError, SourceError
from ragline.types import ChangeListing, Deletion, DocRef, RawDocument

log = logging.getLogger(__name__)

# Per object type: (singular title word, properties fetched with their labels, association types fetched).
OBJECTS: dict[str, tuple[str, dict[str, str], tuple[str, ...]]] = {
    "contacts": ("Contact", {
        "firstname": "First name", "lastname": "Last name", "email": "Email", "phone": "Phone",
        "mobilephone": "Mobile phone", "company": "Company", "jobtitle": "Job title", "website": "Website",
        "city": "City", "country": "Country", "lifecyclestage": "Lifecycle stage",
        "hs_lead_status": "Lead status", "message": "Message", "hubspot_owner_id": "Owner", "createdate": "Created",
    }, ("companies", "deals", "tickets")),
    "companies": ("Company", {
        "name": "Name", "domain": "Domain", "industry": "Industry", "description": "Description",
        "phone": "Phone", "city": "City", "country": "Country", "numberofemployees": "Employees",
        "annualrevenue": "Annual revenue", "lifecyclestage": "Lifecycle stage", "hubspot_owner_id": "Owner",
        "createdate": "Created",
    }, ("contacts", "deals", "tickets")),
    "deals": ("Deal", {
        "dealname": "Name", "amount": "Amount", "dealstage": "Stage", "pipeline": "Pipeline",
        "closedate": "Close date", "dealtype": "Type", "description": "Description",
        "hubspot_owner_id": "Owner", "createdate": "Created",
    }, ("contacts", "companies")),
    "tickets": ("Ticket", {
        "subject": "Subject", "content": "Description", "hs_pipeline": "Pipeline",
        "hs_pipeline_stage": "Stage", "hs_ticket_priority": "Priority", "hs_ticket_category": "Category",
        "hubspot_owner_id": "Owner", "createdate": "Created",
    }, ("contacts", "companies", "deals")),
    "notes": ("Note", {
        "hs_note_body": "Body", "hs_timestamp": "Timestamp", "hubspot_owner_id": "Owner", "createdate": "Created",
    }, ("contacts", "companies", "deals", "tickets")),
}
TITLE_FIELDS = {
    "contacts": (("firstname", "lastname"), ("email",)),
    "companies": (("name",), ("domain",)),
    "deals": (("dealname",),),
    "tickets": (("subject",),),
    "notes": (),
}
HTML_FIELDS = {"hs_note_body", "content", "description"}  # HubSpot stores these as rich text


SEARCH_CEILING = 10_000  # HubSpot's search answers 400 past this many results of one query


def modified_property(object_type: str) -> str:
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class HubSpotConnector:
    kind = "hubspot"

    def __init__(
        self,
        name: str,
        *,
        base_url: str = "https://api.hubapi.com",
        token: str,
        objects: Sequence[str] = ("contacts", "companies", "deals", "tickets", "notes"),
        page_size: int = 100,
        requests_per_second: float = 10.0,
        timeout: float = 30.0,
        max_attempts: int = 6,
        backoff: float = 0.5,
        max_retry_time: float = 120.0,
        client: httpx.Client | None = None,
        cursor_margin: timedelta = timedelta(minutes=5),
        change_overlap: timedelta = timedelta(minutes=10),
        search_ceiling: int = SEARCH_CEILING,
        search_requests_per_second: float | None = 4.0,
        clock: Callable[[], datetime] = _utc_now,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ):
        unknown = [o for o in objects if o not in OBJECTS]
        if unknown:
            raise ConfigError(f"hubspot source {name!r}: unknown object type(s) {unknown}; known: {sorted(OBJECTS)}")
        if not token:
            raise ConfigError(f"hubspot source {name!r}: no API token given")
        if not 1 <= page_size <= 100:
            raise ConfigError(f"hubspot source {name!r}: page_size must be 1..100, not {page_size}")
        if cursor_margin < timedelta(0) or change_overlap < timedelta(0):
            raise ConfigError(f"hubspot source {name!r}: cursor_margin and change_overlap must not be negative")
        if search_ceiling < page_size:
            raise ConfigError(f"hubspot source {name!r}: search_ceiling must be at least page_size ({page_size})")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.objects = tuple(objects)
        self.page_size = page_size
        self.cursor_margin = cursor_margin
        self.change_overlap = change_overlap
        self.search_ceiling = search_ceiling
        self._clock = clock
        # HubSpot limits search to a few requests per second per account, below the general budget.
        self.search_limiter = RateLimiter(search_requests_per_second)
        self.http = HttpSource(
            headers={"Authorization": f"Bearer {token}"},
            requests_per_second=requests_per_second,
            timeout=timeout,
            retry=RetryPolicy(max_attempts=max_attempts, backoff=backoff, max_retry_time=max_retry_time),
            client=client,
            secret=token,
            max_response_bytes=max_response_bytes,
        )
        self.skipped: list[tuple[str, str]] = []  # (doc_id or "?", reason) of records listing passed over

    @property
    def location(self) -> str:
        return self.base_url

    def __repr__(self) -> str:  # no token
        return f"HubSpotConnector({self.name!r}, base_url={self.base_url!r}, objects={self.objects})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record_url(self, object_type: str, record_id: str) -> str:
        return f"{self.base_url}/crm/v3/objects/{object_type}/{record_id}"

    # ------------------------------------------------------------------ listing

    def list(self) -> Iterator[DocRef]:
        self.skipped.clear()
        seen: set[str] = set()
        for object_type in self.objects:
            for record in self._pages(object_type):
                ref = self._ref(object_type, record)
                if ref is not None and ref.doc_id not in seen:  # a listing never repeats a document
                    seen.add(ref.doc_id)
                    yield ref

    def _pages(self, object_type: str, *, archived: bool = False) -> Iterator[Any]:
        url = f"{self.base_url}/crm/v3/objects/{object_type}"
        params = {"limit": str(self.page_size), "properties": modified_property(object_type),
                  "archived": "true" if archived else "false"}
        what = f"archived {object_type}" if archived else object_type
        cursors: set[str] = set()
        page = 0
        while True:
            page += 1
            try:
                body = self.http.get_json(url, params)
            except HttpFailure as exc:
                raise SourceError(self.name, self._listing_reason(what, page, exc)) from None
            results = body.get("results") if isinstance(body, dict) else None
            if not isinstance(results, list):
                raise SourceError(self.name, f"listing {what}, page {page}: the answer has no 'results' list")
            yield from results
            paging = body.get("paging")
            after = paging.get("next", {}).get("after") if isinstance(paging, dict) and isinstance(paging.get("next"), dict) else None
            if after is None or after == "":
                return
            after = str(after)
            if after in cursors:
                raise SourceError(self.name, f"listing {what}: the API returned cursor {after!r} twice (paging loop)")
            cursors.add(after)
            params = {**params, "after": after}

    def _listing_reason(self, object_type: str, page: int, exc: HttpFailure) -> str:
        if isinstance(exc, PermanentStatus) and exc.status in (401, 403):
            return auth_reason(exc.status)
        what = {NotJson: "the answer is not JSON", GaveUp: "the API kept failing"}.get(type(exc), "the request failed")
        return f"listing {object_type}, page {page}: {what}: {exc.reason}; the listing is incomplete"

    def _ref(self, object_type: str, record: Any) -> DocRef | None:
        if not isinstance(record, dict):
            return self._skip("?", f"a {object_type} listing entry is not an object")
        record_id = record.get("id")
        if not isinstance(record_id, (str, int)) or isinstance(record_id, bool) or str(record_id) == "":
            return self._skip("?", f"a {object_type} record has no id")
        doc_id = f"{object_type}/{record_id}"
        properties = record.get("properties")
        if not isinstance(properties, dict):
            return self._skip(doc_id, "record 'properties' is not an object")
        updated = record.get("updatedAt") or properties.get(modified_property(object_type))
        if not isinstance(updated, str) or not updated:
            return self._skip(doc_id, "record has no updatedAt or last-modified date")
        return DocRef(
            source=self.name,
            doc_id=doc_id,
            fingerprint=updated,
            uri=self.record_url(object_type, str(record_id)),
            modified_at=_parse_time(updated),
        )

    # ------------------------------------------------------------------ changes

    def high_water_mark(self) -> str:
        """The client's UTC now minus `cursor_margin` (clock skew), as ISO 8601 with milliseconds."""
        return _iso(self._clock() - self.cursor_margin)

    def list_changes(self, since: str) -> ChangeListing:
        """Records modified and records archived at or after `since` minus `change_overlap`."""
        start = _parse_cursor(since)
        if start is None:
            raise SourceError(self.name, f"the stored cursor {since!r} is not a time; run with a full listing")
        return ChangeListing(changes=self._changes(start - self.change_overlap), present_ids=None)

    def _changes(self, threshold: datetime) -> Iterator[DocRef | Deletion]:
        self.skipped.clear()
        seen: set[str] = set()  # a listing never repeats a document, not even as a ref and a deletion
        for object_type in self.objects:
            for record in self._search(object_type, _millis(threshold)):
                ref = self._ref(object_type, record)
                if ref is not None and ref.doc_id not in seen:
                    seen.add(ref.doc_id)
                    yield ref
        for object_type in self.objects:
            for record in self._pages(object_type, archived=True):
                record_id = record.get("id") if isinstance(record, dict) else None
                if not isinstance(record_id, (str, int)) or isinstance(record_id, bool) or str(record_id) == "":
                    self._skip("?", f"an archived {object_type} record has no id")
                    continue
                archived_at = record.get("archivedAt")
                moment = _parse_time(archived_at) if isinstance(archived_at, str) else None
                if moment is not None and _aware(moment) < threshold:
                    continue  # archived before the window: an earlier run deleted it
                doc_id = f"{object_type}/{record_id}"
                if doc_id not in seen:  # (archived while this listing ran: the next run reports it)
                    seen.add(doc_id)
                    yield Deletion(doc_id)

    def _search(self, object_type: str, floor: int) -> Iterator[Any]:
        """Live records of one type modified at or after `floor` (epoch millis), oldest first.

        At the search's result ceiling the search restarts from the last modified date seen (so
        records sharing it come again: the caller drops repeated ids). Each restart must move that
        date forward, which bounds the loop; 10,000 records modified in the same millisecond end it
        with a SourceError.
        """
        url = f"{self.base_url}/crm/v3/objects/{object_type}/search"
        prop = modified_property(object_type)
        page = 0
        while True:
            after, newest = 0, None
            while True:  # the pages of one search: at most search_ceiling / page_size + 1
                page += 1
                query: dict[str, Any] = {
                    "filterGroups": [{"filters": [{"propertyName": prop, "operator": "GTE", "value": str(floor)}]}],
                    "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                    "properties": [prop],
                    "limit": self.page_size,
                }
                if after:
                    query["after"] = str(after)
                try:
                    body = self.http.post_json(url, query, limiter=self.search_limiter)
                except PermanentStatus as exc:
                    if exc.status == 400 and after > 0:  # the ceiling, where it is lower than we were told
                        log.info("search of %s refused after=%d (%s); searching again from the last date seen",
                                 object_type, after, exc.reason)
                        break
                    raise SourceError(self.name, self._listing_reason(f"changes of {object_type}", page, exc)) from None
                except HttpFailure as exc:
                    raise SourceError(self.name, self._listing_reason(f"changes of {object_type}", page, exc)) from None
                results = body.get("results") if isinstance(body, dict) else None
                if not isinstance(results, list):
                    raise SourceError(self.name, f"listing changes of {object_type}, page {page}: "
                                                 "the answer has no 'results' list")
                for record in results:
                    moment = _record_millis(record, prop)
                    if moment is not None and (newest is None or moment > newest):
                        newest = moment
                    yield record
                paging = body.get("paging")
                nxt = paging.get("next") if isinstance(paging, dict) else None
                token = nxt.get("after") if isinstance(nxt, dict) else None
                if token is None or token == "":
                    return
                try:
                    next_after = int(token)
                except (TypeError, ValueError):
                    raise SourceError(self.name, f"listing changes of {object_type}: the search returned "
                                                 f"a paging offset {token!r} that is not a number") from None
                if next_after <= after:
                    raise SourceError(self.name, f"listing changes of {object_type}: the search returned "
                                                 f"offset {next_after} after {after} (paging loop)")
                if next_after >= self.search_ceiling:
                    break
                after = next_after
            if newest is None or newest <= floor:
                raise SourceError(self.name, f"listing changes of {object_type}: more records than the search "
                                             "can page through share one last-modified date; run with a full listing")
            floor = newest

    def _skip(self, doc_id: str, reason: str) -> None:
        log.warning("skipping %s: %s", doc_id, reason)
        self.skipped.append((doc_id, reason))

    # ------------------------------------------------------------------ fetch

    def fetch(self, ref: DocRef) -> RawDocument:
        object_type, _, record_id = ref.doc_id.partition("/")
        if object_type not in OBJECTS or not record_id:
            raise FetchError(ref.doc_id, "not a HubSpot document id (expected '<object type>/<id>')")
        _, labels, associations = OBJECTS[object_type]
        params = {"properties": ",".join(labels), "archived": "false"}
        if associations:
            params["associations"] = ",".join(associations)
        try:
            record = self.http.get_json(self.record_url(object_type, record_id), params)
        except HttpFailure as exc:
            raise record_fetch_error(self.name, ref.doc_id, exc) from None
        if not isinstance(record, dict):
            raise FetchError(ref.doc_id, "the API answered with something other than a record object")
        if str(record.get("id", "")) != record_id:
            raise FetchError(ref.doc_id, f"the API answered with a record whose id is {record.get('id')!r}")
        properties = record.get("properties")
        if not isinstance(properties, dict):
            raise FetchError(ref.doc_id, "record 'properties' is not an object")
        text = render(object_type, record_id, properties, record.get("associations"))
        data = text.encode("utf-8")
        owner = properties.get("hubspot_owner_id")
        return RawDocument(
            ref=ref,
            data=data,
            filename=f"{object_type}-{record_id}.txt",
            content_hash=hashlib.sha256(data).hexdigest(),
            metadata={
                "object_type": object_type,
                "id": record_id,
                "owner": owner or None,
                "url": self.record_url(object_type, record_id),
                "updated_at": record.get("updatedAt") or properties.get(modified_property(object_type)),
            },
        )


# --------------------------------------------------------------------------- rendering


def render(object_type: str, record_id: str, properties: Mapping[str, Any], associations: Any) -> str:
    word, labels, _ = OBJECTS[object_type]
    values = {k: _text(k, v) for k, v in properties.items()}
    title = ""
    for fields in TITLE_FIELDS[object_type]:
        title = " ".join(values[f] for f in fields if values.get(f))
        if title:
            break
    if not title and object_type == "notes" and values.get("hs_note_body"):
        first = values["hs_note_body"].splitlines()[0]
        title = first if len(first) <= 60 else first[:57].rstrip() + "..."
    lines = [f"{word}: {title}" if title else f"{word} {record_id}"]
    for key, label in labels.items():
        if values.get(key):
            lines.append(f"{label}: {values[key]}")
    if isinstance(associations, dict):
        for to_type in sorted(associations):
            linked = associations[to_type]
            results = linked.get("results") if isinstance(linked, dict) else None
            ids = [str(r["id"]) for r in results or () if isinstance(r, dict) and r.get("id") is not None]
            if ids:
                lines.append(f"Associated {to_type}: {', '.join(dict.fromkeys(ids))}")
    return "\n".join(lines) + "\n"


def _text(key: str, value: Any) -> str:
    """A property's text. The API sends strings; a value of another type (a misbehaving integration,
    a proxy) is read where it has an obvious text (numbers, booleans, lists of those) and left out
    where it has none (objects), rather than failing the record."""
    if isinstance(value, list):
        return ", ".join(t for t in (_text(key, v) for v in value if not isinstance(v, (dict, list))) if t)
    if value is None or isinstance(value, dict):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    if key in HTML_FIELDS and "<" in text:
        text = html_to_text(text)
    return text


class _TextExtractor(HTMLParser):
    BREAKS: ClassVar[set[str]] = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Rich-text property -> plain lines (HubSpot note bodies are HTML)."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    moment = _aware(moment).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _millis(moment: datetime) -> int:
    return int(_aware(moment).timestamp() * 1000)


def _from_text(value: str) -> datetime | None:
    """An ISO 8601 time or epoch milliseconds (HubSpot uses both) -> aware datetime."""
    value = value.strip()
    if value.isdigit():
        try:
            return datetime.fromtimestamp(int(value) / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    moment = _parse_time(value)
    return None if moment is None else _aware(moment)


def _parse_cursor(value: str) -> datetime | None:
    return _from_text(value) if isinstance(value, str) else None


def _record_millis(record: Any, prop: str) -> int | None:
    """A search result's last-modified date in epoch millis, if it has a readable one."""
    if not isinstance(record, dict):
        return None
    properties = record.get("properties")
    value = properties.get(prop) if isinstance(properties, dict) else None
    if not isinstance(value, str) or not value:
        value = record.get("updatedAt")
    moment = _from_text(value) if isinstance(value, str) and value else None
    return None if moment is None else _millis(moment)
