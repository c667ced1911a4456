"""Any paginated JSON REST endpoint as a source: another CRM is configuration, not code.

    RestConnector("crm", base_url="https://api.example.com", path="/v2/people", token=...,
                  records_path="data.items", id_field="id", updated_at_field="meta.updated",
                  next_cursor_path="data.next_cursor", cursor_param="cursor",   # or next_link_path="links.next"
                  detail_path="/v2/people/{id}", title_field="name")

Paths into the JSON are dotted ("paging.next.after", "data.items", "items.0.id").

Listing: GET `path` (+ `params`, + page size), take the records at `records_path`, follow either
the cursor at `next_cursor_path` (sent back as `cursor_param`) or the URL at `next_link_path`, until
neither is present. A record's doc_id is its `id_field`, its fingerprint its `updated_at_field`
(or, with `updated_at_field=None`, a hash of the listed record). A record without an id or
fingerprint is skipped with a reason in `self.skipped`; a page that cannot be had after retries, is
not JSON, or has no record list raises SourceError: the listing is all or nothing. A next link to
another origin is refused (SourceError) rather than sent the token.

Fetch: GET `detail_path` with the id filled in (+ `detail_params`; the record sits at
`detail_record_path` of the answer, the whole answer by default); 404 is FetchError. Without
`detail_path`, the listed record itself is the document, and fetch lists again until it finds it
(nothing is cached between list and fetch, so the text is never older than the fetch): fine for
small sources, one listing per changed document for big ones.

Text: a title line (`title_field`, else "<source> <id>"), then "field: value" lines for
`text_fields` (dotted paths), or for every scalar of the record flattened with dotted keys
(lists joined or indexed), minus the id and updated-at fields so a touch without change keeps the
content hash.

Retries, rate budget and the retryable/permanent split live in connectors/http.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Self
from urllib.parse import quote

import httpx

from connectors.http import (
    MAX_RESPONSE_BYTES,
    GaveUp,
    HttpFailure,
    HttpSource,
    NotJson,
    PermanentStatus,
    RetryPolicy,
    TooLarge,
    auth_reason,
    record_fetch_error,
    same_origin,
)
from ragline.errors import ConfigError, FetchError, SourceError
from ragline.types import DocRef, RawDocument

log = logging.getLogger(__name__)

_MISSING = object()


def get_path(data: Any, path: str | None, default: Any = None) -> Any:
    """`data` at a dotted path: dict keys, and list indexes for numeric parts. `default` when absent."""
    if path is None:
        return default
    if path == "":
        return data
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return node


def flatten(data: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, text) for every non-empty scalar; lists of scalars joined with ", "."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, list):
        if all(not isinstance(v, (dict, list)) for v in data):
            text = ", ".join(_scalar(v) for v in data if _scalar(v))
            if text:
                yield prefix, text
        else:
            for i, value in enumerate(data):
                yield from flatten(value, f"{prefix}.{i}" if prefix else str(i))
    else:
        text = _scalar(data)
        if text:
            yield prefix, text


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


class RestConnector:
    kind = "rest"

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        path: str,
        token: str | None = None,
        auth_header: str = "Authorization",
        auth_scheme: str | None = "Bearer",
        records_path: str = "results",
        id_field: str = "id",
        updated_at_field: str | None = "updatedAt",
        next_cursor_path: str | None = "paging.next.after",
        cursor_param: str = "after",
        next_link_path: str | None = None,
        detail_path: str | None = None,
        detail_params: Mapping[str, str] | None = None,
        detail_record_path: str = "",
        title_field: str | None = None,
        text_fields: Sequence[str] | None = None,
        params: Mapping[str, str] | None = None,
        page_size_param: str | None = "limit",
        page_size: int = 100,
        requests_per_second: float = 10.0,
        timeout: float = 30.0,
        max_attempts: int = 6,
        backoff: float = 0.5,
        max_retry_time: float = 120.0,
        client: httpx.Client | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ):
        if detail_path is not None and "{id}" not in detail_path:
            raise ConfigError(f"rest source {name!r}: detail_path must contain '{{id}}', got {detail_path!r}")
        if page_size < 1:
            raise ConfigError(f"rest source {name!r}: page_size must be positive")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.path = "/" + path.lstrip("/")
        self.records_path = records_path
        self.id_field = id_field
        self.updated_at_field = updated_at_field
        self.next_cursor_path = next_cursor_path
        self.cursor_param = cursor_param
        self.next_link_path = next_link_path
        self.detail_path = detail_path
        self.detail_params = dict(detail_params or {})
        self.detail_record_path = detail_record_path
        self.title_field = title_field
        self.text_fields = tuple(text_fields) if text_fields is not None else None
        self.params = dict(params or {})
        if page_size_param:
            self.params[page_size_param] = str(page_size)
        headers = {}
        if token:
            headers[auth_header] = f"{auth_scheme} {token}" if auth_scheme else token
        self.http = HttpSource(
            headers=headers,
            requests_per_second=requests_per_second,
            timeout=timeout,
            retry=RetryPolicy(max_attempts=max_attempts, backoff=backoff, max_retry_time=max_retry_time),
            client=client,
            secret=token,
            max_response_bytes=max_response_bytes,
        )
        self.skipped: list[tuple[str, str]] = []

    @property
    def location(self) -> str:
        return self.base_url + self.path

    def __repr__(self) -> str:  # no token
        return f"RestConnector({self.name!r}, location={self.location!r})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _detail_url(self, doc_id: str) -> str:
        assert self.detail_path is not None
        return self.base_url + "/" + self.detail_path.lstrip("/").replace("{id}", quote(doc_id, safe=""))

    def _uri(self, doc_id: str) -> str:
        return self._detail_url(doc_id) if self.detail_path else f"{self.location}#{quote(doc_id, safe='')}"

    # ------------------------------------------------------------------ listing

    def list(self) -> Iterator[DocRef]:
        self.skipped.clear()
        seen: set[str] = set()
        try:
            for record in self._records():
                ref = self._ref(record)
                if ref is not None and ref.doc_id not in seen:
                    seen.add(ref.doc_id)
                    yield ref
        except _PageError as exc:
            raise SourceError(self.name, exc.reason) from None

    def _records(self) -> Iterator[Any]:
        """Every listed record, page after page. Raises _PageError."""
        url: str = self.base_url + self.path
        params: dict[str, str] | None = dict(self.params)
        visited: set[str] = set()
        page = 0
        while True:
            page += 1
            try:
                body = self.http.get_json(url, params)
            except HttpFailure as exc:
                raise _PageError(self._listing_reason(page, exc), exc) from None
            records = get_path(body, self.records_path, _MISSING)
            if not isinstance(records, list):
                raise _PageError(f"page {page}: the answer has no record list at {self.records_path!r}")
            yield from records
            link = get_path(body, self.next_link_path) if self.next_link_path else None
            cursor = get_path(body, self.next_cursor_path) if self.next_cursor_path else None
            if link:
                link = str(link)
                if link.startswith("/"):
                    link = self.base_url + link
                if not same_origin(link, self.base_url):
                    raise _PageError(f"page {page}: the next-page link leads to another site "
                                     f"({httpx.URL(link).host}); refusing to send the token there")
                key = link
                url, params = link, None  # the link carries its own query
            elif cursor not in (None, ""):
                key = str(cursor)
                params = {**self.params, self.cursor_param: key}
            else:
                return
            if key in visited:
                raise _PageError(f"page {page}: the API returned the same next page twice (paging loop)")
            visited.add(key)

    def _listing_reason(self, page: int, exc: HttpFailure) -> str:
        if isinstance(exc, PermanentStatus) and exc.status in (401, 403):
            return auth_reason(exc.status)
        what = {NotJson: "the answer is not JSON", GaveUp: "the API kept failing",
                TooLarge: "the answer is too large"}.get(type(exc), "the request failed")
        return f"listing page {page}: {what}: {exc.reason}; the listing is incomplete"

    def _doc_id(self, record: Any) -> str | None:
        value = get_path(record, self.id_field) if isinstance(record, dict) else None
        if value is None or isinstance(value, (bool, dict, list)) or str(value) == "":
            return None
        return str(value)

    def _ref(self, record: Any) -> DocRef | None:
        doc_id = self._doc_id(record)
        if doc_id is None:
            return self._skip("?", f"a listed record has no {self.id_field!r}" if isinstance(record, dict)
                              else "a listed entry is not an object")
        modified_at = None
        if self.updated_at_field is None:
            fingerprint = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()
        else:
            updated = get_path(record, self.updated_at_field)
            if updated is None or isinstance(updated, (dict, list)) or str(updated) == "":
                return self._skip(doc_id, f"record has no {self.updated_at_field!r}")
            fingerprint = str(updated)
            modified_at = _parse_time(updated)
        return DocRef(source=self.name, doc_id=doc_id, fingerprint=fingerprint, uri=self._uri(doc_id),
                      modified_at=modified_at)

    def _skip(self, doc_id: str, reason: str) -> None:
        log.warning("skipping %s: %s", doc_id, reason)
        self.skipped.append((doc_id, reason))

    # ------------------------------------------------------------------ fetch

    def fetch(self, ref: DocRef) -> RawDocument:
        record = self._fetch_detail(ref) if self.detail_path else self._find_listed(ref)
        if not isinstance(record, dict):
            raise FetchError(ref.doc_id, "the record is not a JSON object")
        if self._doc_id(record) not in (None, ref.doc_id):
            raise FetchError(ref.doc_id, f"the API answered with record {self._doc_id(record)!r}")
        data = self.render(ref.doc_id, record).encode("utf-8")
        return RawDocument(
            ref=ref,
            data=data,
            filename=f"{_safe_name(ref.doc_id)}.txt",
            content_hash=hashlib.sha256(data).hexdigest(),
            metadata={"id": ref.doc_id, "url": ref.uri,
                      "updated_at": _scalar(get_path(record, self.updated_at_field)) or None},
        )

    def _fetch_detail(self, ref: DocRef) -> Any:
        try:
            body = self.http.get_json(self._detail_url(ref.doc_id), self.detail_params or None)
        except HttpFailure as exc:
            raise record_fetch_error(self.name, ref.doc_id, exc) from None
        record = get_path(body, self.detail_record_path, _MISSING)
        if record is _MISSING:
            raise FetchError(ref.doc_id, f"the answer has no record at {self.detail_record_path!r}")
        return record

    def _find_listed(self, ref: DocRef) -> Any:
        try:
            for record in self._records():
                if self._doc_id(record) == ref.doc_id:
                    return record
        except _PageError as exc:
            if exc.cause is not None and isinstance(exc.cause, PermanentStatus) and exc.cause.status in (401, 403):
                raise SourceError(self.name, exc.reason) from None
            raise FetchError(ref.doc_id, f"cannot list the source again to read it: {exc.reason}") from None
        raise FetchError(ref.doc_id, "record disappeared (deleted or archived) after listing")

    def render(self, doc_id: str, record: Mapping[str, Any]) -> str:
        title = _scalar(get_path(record, self.title_field)) if self.title_field else ""
        lines = [title or f"{self.name} {doc_id}"]
        if self.text_fields is not None:
            for path in self.text_fields:
                value = get_path(record, path)
                text = ", ".join(t for _, t in flatten(value)) if isinstance(value, (dict, list)) else _scalar(value)
                if text:
                    lines.append(f"{path}: {text}")
        else:
            left_out = {self.id_field, self.updated_at_field}
            lines += [f"{key}: {text}" for key, text in flatten(record) if key not in left_out]
        return "\n".join(lines) + "\n"


class _PageError(Exception):
    def __init__(self, reason: str, cause: HttpFailure | None = None):
        super().__init__(reason)
        self.reason, self.cause = reason, cause


def _safe_name(doc_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", doc_id).strip("._") or "record"
    return name[:100]


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
