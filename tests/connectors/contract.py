"""One contract every connector passes: listing, fetch, fingerprint stability, change, delete.

A connector's test module provides a `SourceFixture` for its real backend (a folder, moto's S3
server, PostgreSQL/MariaDB/SQLite, the local CRM server) and subclasses `ConnectorContract`:

    class TestS3Contract(ConnectorContract):
        @pytest.fixture
        def source(self, ...) -> SourceFixture: ...

Documents are written through the fixture as plain text; the connector's fetched document,
once parsed, must contain that text.
"""

from __future__ import annotations

from typing import Protocol

import pytest

from ragline import parsers
from ragline.errors import FetchError
from ragline.types import Connector, DocRef


class SourceFixture(Protocol):
    def put(self, key: str, text: str) -> None:
        """Create or replace one document (a file, an object, a row, a CRM record) with `text`."""

    def delete(self, key: str) -> None: ...

    def connector(self) -> Connector:
        """A fresh connector over the current backend state."""

    def doc_id(self, key: str) -> str:
        """The doc_id the connector gives the document written under `key`."""


def listing(connector: Connector) -> dict[str, DocRef]:
    refs = list(connector.list())
    ids = [r.doc_id for r in refs]
    assert len(ids) == len(set(ids)), "a listing must not repeat a document"
    return {r.doc_id: r for r in refs}


class ConnectorContract:
    @pytest.fixture
    def source(self) -> SourceFixture:  # pragma: no cover - each backend overrides it
        raise NotImplementedError

    @pytest.fixture
    def seeded(self, source):
        for i in range(3):
            source.put(f"doc{i}", f"Document {i} says the tent sleeps {i + 2} people.")
        return source

    def test_lists_every_document_with_its_source_name(self, seeded):
        connector = seeded.connector()
        refs = listing(connector)
        assert set(refs) == {seeded.doc_id(f"doc{i}") for i in range(3)}
        assert all(r.source == connector.name and r.fingerprint and r.uri for r in refs.values())
        assert connector.kind and connector.location

    def test_fingerprints_are_stable_without_changes(self, seeded):
        first = {d: r.fingerprint for d, r in listing(seeded.connector()).items()}
        second = {d: r.fingerprint for d, r in listing(seeded.connector()).items()}
        assert first == second

    def test_fetch_returns_the_document(self, seeded):
        connector = seeded.connector()
        ref = listing(connector)[seeded.doc_id("doc1")]
        raw = connector.fetch(ref)
        assert raw.ref == ref and len(raw.content_hash) == 64
        assert "the tent sleeps 3 people" in parsers.parse(raw.filename, raw.data).text
        assert raw.content_hash == connector.fetch(ref).content_hash  # same bytes, same version

    def test_a_change_changes_only_that_fingerprint(self, seeded):
        before = {d: r.fingerprint for d, r in listing(seeded.connector()).items()}
        seeded.put("doc1", "Document 1 was rewritten: the tent now sleeps 4 people.")
        connector = seeded.connector()
        after = listing(connector)
        changed = {d for d in before if after[d].fingerprint != before[d]}
        assert changed == {seeded.doc_id("doc1")}
        raw = connector.fetch(after[seeded.doc_id("doc1")])
        assert "now sleeps 4 people" in parsers.parse(raw.filename, raw.data).text

    def test_a_deleted_document_leaves_the_listing_and_cannot_be_fetched(self, seeded):
        connector = seeded.connector()
        ref = listing(connector)[seeded.doc_id("doc2")]
        seeded.delete("doc2")
        assert seeded.doc_id("doc2") not in listing(seeded.connector())
        with pytest.raises(FetchError):
            seeded.connector().fetch(ref)
