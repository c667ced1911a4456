"""The embedding cache: a changed document re-embeds only the chunks whose text changed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from connectors.local import LocalFolderConnector
from ragline import parsers
from ragline.ledger import Ledger
from ragline.pipeline import SyncOptions, sync_source
from stores.edge import EdgeStore

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[2]


def bench_resync():
    spec = importlib.util.spec_from_file_location("bench_resync", REPO / "bench" / "resync.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def counted(embedder, monkeypatch):
    """Every text the model is asked to embed, in order."""
    seen: list[str] = []
    real = embedder.embed
    monkeypatch.setattr(embedder, "embed", lambda texts: seen.extend(texts) or real(texts))
    return seen


def vectors_by_text(store: EdgeStore) -> dict[str, np.ndarray]:
    payloads = dict(store.iter_points())
    by_hash = store.chunk_vectors("docs", sorted({p["doc_id"] for p in payloads.values()}))
    return {p["text"]: by_hash[p["content_hash"]] for p in payloads.values()}


def test_one_paragraph_edit_in_a_long_pdf_re_embeds_at_most_three_chunks(tmp_path, embedder, chunker, counted):
    bench = bench_resync()
    paragraphs = bench.manual_paragraphs(count=120)
    root = tmp_path / "docs"
    root.mkdir()
    manual = root / "manual.pdf"
    manual.write_bytes(bench.manual_pdf(paragraphs, pages=30))
    (root / "other.md").write_text("# Other\n\nA short note that never changes.", encoding="utf-8")
    store, ledger = EdgeStore(path=tmp_path / "q"), Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")

    def sync(**options):
        connector = LocalFolderConnector(root, name="docs", accept=parsers.is_supported)
        return sync_source(connector, store=store, ledger=ledger, embedder=embedder, chunker=chunker,
                           options=SyncOptions(**options))

    try:
        first = sync()
        assert first.added == 2 and first.chunks_reused == 0 and first.chunks_embedded > 40
        before = vectors_by_text(store)
        counted.clear()

        paragraphs[61] += bench.ADDED_SENTENCE
        manual.write_bytes(bench.manual_pdf(paragraphs, pages=30))
        edited = sync()
        assert (edited.updated, edited.unchanged) == (1, 1)
        model_embedded = edited.chunks_embedded - edited.chunks_reused
        assert 1 <= model_embedded <= 3 and len(counted) == model_embedded
        added = " ".join(bench.ADDED_SENTENCE.split())
        assert any(added in " ".join(t.split()) for t in counted)  # the edited text itself was embedded

        after = vectors_by_text(store)
        assert len(after) == store.count() == edited.chunks_embedded + 1  # + other.md; no stale chunk left
        kept = set(after) & set(before)
        assert len(kept) == len(after) - model_embedded
        for text in kept:  # reused, bit for bit
            np.testing.assert_array_equal(after[text], before[text])
        fresh = embedder.embed(counted)
        for text, vector in zip(counted, fresh, strict=True):  # and the new ones are the model's
            assert float(np.dot(after[text], vector)) > 0.9999

        counted.clear()
        forced = sync(force=True)  # a backfill re-processes everything; no text changed, nothing to embed
        assert forced.updated == 2 and forced.chunks_reused == forced.chunks_embedded and counted == []
    finally:
        store.close()
        ledger.close()


def test_identical_chunks_in_one_batch_are_embedded_once(tmp_path, embedder, chunker, counted):
    root = tmp_path / "docs"
    root.mkdir()
    for name in ("a.md", "b.md", "c.md"):
        (root / name).write_text("# Disclaimer\n\nThis notice is confidential and for internal use only.", encoding="utf-8")
    store, ledger = EdgeStore(path=tmp_path / "q"), Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        connector = LocalFolderConnector(root, name="docs", accept=parsers.is_supported)
        report = sync_source(connector, store=store, ledger=ledger, embedder=embedder, chunker=chunker)
        assert report.added == 3 and store.count() == 3 and len(counted) == 1
    finally:
        store.close()
        ledger.close()
