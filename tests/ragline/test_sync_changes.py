"""Syncs driven by a cursor: only changes are listed; deletions come from the source's report
or from an ids-only listing; the cursor moves only when a run finishes.

The connector here is an in-memory fake of the connector seam; the SQL connector's
end-to-end test proves the same on PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest

from ragline.errors import FetchError
from ragline.ledger import Ledger
from ragline.pipeline import SyncOptions, sync_source
from ragline.types import ChangeListing, Deletion, DocRef, RawDocument
from stores.qdrant import QdrantStore

pytestmark = pytest.mark.model


class FeedConnector:
    """Documents with a version counter; the cursor is the highest version seen."""

    kind, location = "feed", "memory://feed"

    def __init__(self):
        self.name = "feed"
        self.docs: dict[str, tuple[str, int]] = {}
        self.deleted: list[tuple[str, int]] = []
        self.clock = 0
        self.report_deletions = True
        self.calls: list[str] = []

    def put(self, doc_id, text):
        self.clock += 1
        self.docs[doc_id] = (text, self.clock)

    def remove(self, doc_id):
        self.clock += 1
        del self.docs[doc_id]
        self.deleted.append((doc_id, self.clock))

    def _ref(self, doc_id):
        return DocRef(self.name, doc_id, f"v{self.docs[doc_id][1]}", f"memory://{doc_id}")

    def list(self):
        self.calls.append("list")
        return (self._ref(d) for d in sorted(self.docs))

    def high_water_mark(self):
        return str(self.clock)

    def list_changes(self, since):
        self.calls.append(f"changes:{since}")
        since_n = int(since)
        changed = [self._ref(d) for d, (_, v) in sorted(self.docs.items()) if v > since_n]
        if self.report_deletions:
            gone = [Deletion(d) for d, v in self.deleted if v > since_n]
            return ChangeListing(changes=iter(changed + gone))
        return ChangeListing(changes=iter(changed), present_ids=iter(sorted(self.docs)))

    def fetch(self, ref):
        if ref.doc_id not in self.docs:
            raise FetchError(ref.doc_id, "gone")
        data = self.docs[ref.doc_id][0].encode()
        return RawDocument(ref, data, f"{ref.doc_id}.txt", hashlib.sha256(data).hexdigest())


@pytest.fixture
def env(tmp_path, embedder, chunker):
    store = QdrantStore(path=tmp_path / "q")
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    feed = FeedConnector()
    for i in range(4):
        feed.put(f"d{i}", f"Document {i}: the kayak rental opens at {i + 7} am.")

    def sync(**options):
        return sync_source(feed, store=store, ledger=ledger, embedder=embedder, chunker=chunker,
                           options=SyncOptions(**options))

    yield feed, store, ledger, sync
    store.close()
    ledger.close()


def ids(store):
    return sorted(p["doc_id"] for _, p in store.iter_points())


def test_first_run_lists_everything_then_only_changes(env):
    feed, store, ledger, sync = env
    first = sync()
    assert (first.listing, first.added, first.cursor) == ("complete", 4, "4")
    assert ledger.cursor("feed") == "4" and feed.calls == ["list"]

    feed.put("d1", "Document 1 changed: the kayak rental now opens at noon.")
    feed.remove("d3")
    feed.put("d9", "A new document about paddle boards.")
    second = sync()
    assert feed.calls[-1] == "changes:4" and second.listing == "changes"
    assert (second.added, second.updated, second.unchanged, second.deleted) == (1, 1, 2, 1)
    assert ids(store) == ["d0", "d1", "d2", "d9"]
    assert ledger.cursor("feed") == "7"

    quiet = sync()
    assert (quiet.added, quiet.updated, quiet.unchanged, quiet.deleted, quiet.chunks_embedded) == (0, 0, 4, 0, 0)


def test_an_ids_only_listing_finds_deletions_without_reports(env):
    feed, store, ledger, sync = env
    sync()
    feed.report_deletions = False
    feed.remove("d2")
    report = sync()
    assert (report.deleted, report.unchanged) == (1, 3)
    assert ids(store) == ["d0", "d1", "d3"]


def test_a_crashed_run_does_not_move_the_cursor(env, monkeypatch):
    feed, store, ledger, sync = env
    sync()
    feed.put("d0", "Document 0 changed.")

    class Crash(BaseException):
        pass

    def die(*_a, **_k):
        raise Crash()

    monkeypatch.setattr(store, "upsert", die)
    with pytest.raises(Crash):
        sync()
    assert ledger.cursor("feed") == "4"
    monkeypatch.undo()
    again = sync()
    assert again.updated == 1 and ledger.cursor("feed") == "5"


def test_dry_run_and_full_listing(env):
    feed, store, ledger, sync = env
    sync()
    feed.remove("d0")
    plan = sync(dry_run=True).plan
    assert (plan["delete"], plan["unchanged"], plan["sample"]["delete"]) == (1, 3, ["d0"])
    assert ledger.cursor("feed") == "4"  # a dry run never moves the cursor
    full = sync(full_listing=True)
    assert full.listing == "complete" and feed.calls[-1] == "list" and full.deleted == 1
