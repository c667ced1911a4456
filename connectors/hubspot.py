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

The token goes in the Authorization header only: never in `location`, a URI, a log line or an error.
HTTP retries, rate budget and the retryable/permanent split live in connectors/http.py.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from html.parser import HTMLParser
from typing import Any, ClassVar, Self

import httpx

from connectors.http import (
    GaveUp,
    HttpFailure,
    HttpSource,
    NotJson,
    PermanentStatus,
    RetryPolicy,
    auth_reason,
)
from ragline.errors import ConfigError, FetchError, SourceError
from ragline.types import DocRef, RawDocument

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


def modified_property(object_type: str) -> str:
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


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
    ):
        unknown = [o for o in objects if o not in OBJECTS]
        if unknown:
            raise ConfigError(f"hubspot source {name!r}: unknown object type(s) {unknown}; known: {sorted(OBJECTS)}")
        if not token:
            raise ConfigError(f"hubspot source {name!r}: no API token given")
        if not 1 <= page_size <= 100:
            raise ConfigError(f"hubspot source {name!r}: page_size must be 1..100, not {page_size}")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.objects = tuple(objects)
        self.page_size = page_size
        self.http = HttpSource(
            headers={"Authorization": f"Bearer {token}"},
            requests_per_second=requests_per_second,
            timeout=timeout,
            retry=RetryPolicy(max_attempts=max_attempts, backoff=backoff, max_retry_time=max_retry_time),
            client=client,
            secret=token,
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

    def _pages(self, object_type: str) -> Iterator[Any]:
        url = f"{self.base_url}/crm/v3/objects/{object_type}"
        params = {"limit": str(self.page_size), "properties": modified_property(object_type), "archived": "false"}
        cursors: set[str] = set()
        page = 0
        while True:
            page += 1
            try:
                body = self.http.get_json(url, params)
            except HttpFailure as exc:
                raise SourceError(self.name, self._listing_reason(object_type, page, exc)) from None
            results = body.get("results") if isinstance(body, dict) else None
            if not isinstance(results, list):
                raise SourceError(self.name, f"listing {object_type}, page {page}: the answer has no 'results' list")
            yield from results
            paging = body.get("paging")
            after = paging.get("next", {}).get("after") if isinstance(paging, dict) and isinstance(paging.get("next"), dict) else None
            if after is None or after == "":
                return
            after = str(after)
            if after in cursors:
                raise SourceError(self.name, f"listing {object_type}: the API returned cursor {after!r} twice (paging loop)")
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
        except PermanentStatus as exc:
            if exc.status == 404:
                raise FetchError(ref.doc_id, "record disappeared (deleted or archived) after listing") from None
            if exc.status in (401, 403):  # every other fetch would fail the same way: stop the run
                raise SourceError(self.name, auth_reason(exc.status)) from None
            raise FetchError(ref.doc_id, exc.reason) from None
        except HttpFailure as exc:
            raise FetchError(ref.doc_id, exc.reason) from None
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
    if value is None or isinstance(value, (dict, list)):
        return ""
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
