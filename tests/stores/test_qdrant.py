from __future__ import annotations

import numpy as np
import pytest

from ragline.errors import ConfigError, IndexMismatchError
from stores.qdrant import IndexSpec, Point, QdrantStore, build_filter, point_id

SPEC = IndexSpec(model="m", dim=4, window=256, chunk_tokens=250, overlap_tokens=38)


@pytest.fixture
def store(tmp_path):
    s = QdrantStore(path=tmp_path / "q", collection="test")
    s.ensure_collection(SPEC)
    yield s
    s.close()


def unit(*values):
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def points(source, doc_id, version, n):
    return [
        Point(point_id(source, doc_id, i), unit(1, i + 1, 0, 0), {"source": source, "doc_id": doc_id, "doc_version": version, "chunk_index": i, "text": f"{doc_id}#{i}"})
        for i in range(n)
    ]


def test_point_ids_are_deterministic_and_distinct():
    assert point_id("s", "d", 0) == point_id("s", "d", 0)
    assert len({point_id("s", "d", 0), point_id("s", "d", 1), point_id("t", "d", 0), point_id("s", "e", 0)}) == 4


def test_upsert_is_idempotent_and_old_versions_are_deleted(store):
    store.upsert(points("s", "d", "v1", 5))
    store.upsert(points("s", "d", "v1", 5))
    assert store.count() == 5
    store.upsert(points("s", "d", "v2", 2))  # overwrites chunks 0-1, leaves 2-4 of v1
    assert store.count() == 5
    store.delete_other_versions("s", "d", keep_version="v2")
    assert sorted(p["chunk_index"] for _, p in store.iter_points()) == [0, 1]
    assert {p["doc_version"] for _, p in store.iter_points()} == {"v2"}


def test_deletes_are_scoped_to_their_source(store):
    store.upsert(points("a", "same", "v", 2) + points("b", "same", "v", 3))
    store.delete_documents("a", ["same"])
    assert store.count({"source": "a"}) == 0 and store.count({"source": "b"}) == 3


def test_search_with_filters(store):
    store.upsert(points("a", "x", "v", 3) + points("b", "y", "v", 3))
    hits = store.search(unit(1, 1, 0, 0), k=10, filters={"source": "b"})
    assert hits and {h.payload["source"] for h in hits} == {"b"}
    assert hits[0].text == "y#0" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert len(store.search(unit(1, 1, 0, 0), k=10, filters={"doc_id": ["x", "y"]})) == 6
    assert build_filter(None) is None


def test_collection_remembers_what_built_it_and_refuses_a_mismatch(tmp_path, store):
    assert store.spec() == SPEC
    store.ensure_collection(SPEC)  # same spec: fine
    with pytest.raises(IndexMismatchError, match="chunk_tokens: collection has 250, this run uses 500"):
        store.ensure_collection(IndexSpec(model="m", dim=4, window=512, chunk_tokens=500, overlap_tokens=38))
    with pytest.raises(IndexMismatchError, match="model"):
        store.ensure_collection(IndexSpec(model="other", dim=4, window=256, chunk_tokens=250, overlap_tokens=38))


def test_embedded_store_is_exclusive(tmp_path, store):
    with pytest.raises(ConfigError, match="in use by another process"):
        QdrantStore(path=tmp_path / "q", collection="test")


def test_exactly_one_location():
    with pytest.raises(ConfigError):
        QdrantStore()
