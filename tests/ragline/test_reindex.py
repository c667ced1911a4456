"""Blue/green re-index end to end: real MiniLM, embedded Qdrant, SQLite ledger."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import ragline.components as components_module
from chunkers.token_chunker import TokenChunker
from connectors.local import LocalFolderConnector
from ragline import parsers
from ragline.config import Settings
from ragline.errors import ConfigError
from ragline.ledger import Ledger
from ragline.pipeline import SyncOptions, sync_source
from ragline.reindex import ReindexFailed, reindex
from ragline.components import build_store
from stores.base import VectorStore
from stores.edge import EdgeStore

pytestmark = pytest.mark.model

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "text"
FILES = ("faq.txt", "returns-policy.txt", "onboarding-guide.md", "ops-sync-notes.txt")


class Index:
    """The live index of a data dir, opened the way the CLI would (and closed around reindex)."""

    def __init__(self, tmp: Path, embedder):
        self.root = tmp / "docs"
        self.root.mkdir()
        for name in FILES:
            shutil.copy(SAMPLES / name, self.root / name)
        self.settings = Settings(data_dir=tmp / "data", flush_chunks=8)  # a failed rebuild has written points
        self.embedder = embedder
        self.store: VectorStore | None = None
        self.ledger: Ledger | None = None
        self.open()

    def open(self) -> None:
        self.store = build_store(self.settings)
        self.ledger = Ledger(self.settings.resolved_ledger_url)

    def close(self) -> None:
        self.store.close()
        self.ledger.close()

    def chunker(self, chunk_tokens: int, overlap_tokens: int) -> TokenChunker:
        return TokenChunker(self.embedder, chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens,
                            special_tokens=self.embedder.special_tokens)

    def sync(self, chunk_tokens: int = 250, overlap_tokens: int = 38):
        connector = LocalFolderConnector(self.root, name="docs", accept=parsers.is_supported)
        return sync_source(connector, store=self.store, ledger=self.ledger, embedder=self.embedder,
                           chunker=self.chunker(chunk_tokens, overlap_tokens), options=SyncOptions())

    def points(self) -> dict[str, dict]:
        return dict(self.store.iter_points())

    def ledger_state(self) -> dict:
        state = self.ledger.export_sources(["docs"])
        return {k: [{c: v for c, v in r.items() if c != "updated_at"} for r in rows] for k, rows in state.items()}

    def reindex(self, **params):
        """Run reindex in the same process: the embedded store must be closed (it locks its folder)."""
        self.close()
        try:
            return reindex(self.settings, embedder=self.embedder, **params)
        finally:
            self.open()


@pytest.fixture
def index(tmp_path, embedder):
    idx = Index(tmp_path, embedder)
    first = idx.sync()
    assert first.added == len(FILES)
    yield idx
    idx.close()


def test_reindex_switches_the_live_name_to_a_new_collection(index):
    before = index.points()
    assert index.store.alias_target() is None  # built before any re-index: a real collection

    report = index.reindex(chunk_tokens=120, overlap_tokens=20)

    store = index.store
    assert report.old_collection == "ragline" and report.migrated and report.old_deleted
    assert report.new_collection.startswith("ragline--")
    assert store.alias_target() == report.new_collection
    assert store.collection_names() == [report.new_collection]  # the old physical collection is gone
    assert report.spec_before.chunk_tokens == 250
    assert store.spec() == report.spec_after and store.spec().chunk_tokens == 120
    assert store.spec().overlap_tokens == 20
    assert report.points == store.count() > len(before) == report.points_before
    assert report.documents == len(FILES) and report.sample_queries == len(FILES)
    assert 0 < report.gap_seconds < 1
    assert [r.added for r in report.runs] == [len(FILES)]
    assert not (index.settings.data_dir / "reindex").exists() or not any((index.settings.data_dir / "reindex").iterdir())

    # The live ledger now describes the new collection: a sync with the new chunking finds nothing to do.
    docs = {d.doc_id: d for d in index.ledger.documents("docs")}
    assert sum(d.chunk_count for d in docs.values()) == store.count()
    again = index.sync(chunk_tokens=120, overlap_tokens=20)
    assert (again.unchanged, again.added, again.updated, again.chunks_embedded) == (len(FILES), 0, 0, 0)
    # ...while the old chunking is refused by the collection.
    with pytest.raises(Exception, match="chunk_tokens"):
        index.sync()

    [hit] = store.search(index.embedder.embed(["How do I return an item?"])[0], k=1)
    assert hit.payload["doc_id"] in FILES and hit.payload["token_count"] <= 120


def test_queries_keep_using_the_old_collection_during_the_rebuild(index, monkeypatch):
    live = index.store
    old_ids = set(index.points())
    old_spec = live.spec()
    # reindex opens its store through components.build_store: hand it one sharing our client, so
    # we can search the live name mid-rebuild (embedded mode allows one client per folder).
    monkeypatch.setattr(components_module, "build_store", lambda settings: live.for_collection(settings.collection))
    real_embed = index.embedder.embed
    seen = []

    def embed_and_query(texts):
        if not seen:  # first batch of the rebuild: the new collection exists, nothing is switched
            query = real_embed(["shipping refund"])[0]
            seen.append((live.spec(), {p for p, _ in live.iter_points()}, live.search(query, k=3),
                         live.alias_target(), live.collection_names()))
        return real_embed(texts)

    monkeypatch.setattr(index.embedder, "embed", embed_and_query)
    report = reindex(index.settings, chunk_tokens=120, overlap_tokens=20, embedder=index.embedder)
    monkeypatch.undo()

    [(spec, ids, hits, target, names)] = seen
    assert spec == old_spec and ids == old_ids and target is None
    assert hits and all(h.id in old_ids for h in hits)
    assert names == sorted(["ragline", report.new_collection])
    assert live.alias_target() == report.new_collection and live.spec().chunk_tokens == 120


@pytest.mark.parametrize("failure", ["connector", "check"])
def test_a_failed_rebuild_leaves_the_live_index_untouched(index, monkeypatch, failure):
    first = index.reindex(chunk_tokens=200, overlap_tokens=30)  # the live name is an alias now
    before = (index.store.alias_target(), index.store.spec(), index.points(), index.ledger_state(),
              index.store.collection_names())
    assert before[0] == first.new_collection

    if failure == "connector":
        real_fetch = LocalFolderConnector.fetch
        calls = []

        def fetch(self, ref):
            calls.append(ref.doc_id)
            if len(calls) == 3:
                raise OSError("disk went away")
            return real_fetch(self, ref)

        monkeypatch.setattr(LocalFolderConnector, "fetch", fetch)
        match = "rebuilding source 'docs': OSError: disk went away"
    else:
        real_search = EdgeStore.search
        monkeypatch.setattr(EdgeStore, "search",
                            lambda self, *a, **k: [] if "--" in self.collection and self.collection != first.new_collection
                            else real_search(self, *a, **k))
        match = "failed its check: searching .* found nothing"

    with pytest.raises(ReindexFailed, match=match) as raised:
        index.reindex(chunk_tokens=120, overlap_tokens=20)
    monkeypatch.undo()
    assert "unchanged" in str(raised.value)

    after = (index.store.alias_target(), index.store.spec(), index.points(), index.ledger_state(),
             index.store.collection_names())
    assert after[0] == before[0] and after[1] == before[1]
    assert set(after[2]) == set(before[2])  # same point ids
    assert after[3] == before[3]  # same ledger rows
    assert after[4] == before[4]  # the new collection was deleted
    again = index.sync(chunk_tokens=200, overlap_tokens=30)
    assert (again.unchanged, again.chunks_embedded) == (len(FILES), 0)


def test_a_second_reindex_switches_alias_to_alias(index):
    first = index.reindex(chunk_tokens=120, overlap_tokens=20)
    points_first = index.store.count()
    second = index.reindex(chunk_tokens=200, overlap_tokens=30)
    assert second.old_collection == first.new_collection and not second.migrated and second.old_deleted
    assert second.gap_seconds == 0.0
    assert second.new_collection != first.new_collection
    assert index.store.alias_target() == second.new_collection
    assert index.store.collection_names() == [second.new_collection]
    assert index.store.spec().chunk_tokens == 200 and index.store.count() < points_first
    assert second.spec_before == first.spec_after
    again = index.sync(chunk_tokens=200, overlap_tokens=30)
    assert (again.unchanged, again.chunks_embedded) == (len(FILES), 0)


def test_a_chunk_the_model_cannot_hold_is_refused_before_anything_changes(index):
    names = index.store.collection_names()
    with pytest.raises(ConfigError):
        index.reindex(chunk_tokens=400)
    assert index.store.collection_names() == names and index.store.alias_target() is None


def test_nothing_indexed_is_refused(tmp_path, embedder):
    with pytest.raises(ConfigError, match="nothing to re-index"):
        reindex(Settings(data_dir=tmp_path / "empty"), embedder=embedder)
