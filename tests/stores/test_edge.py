"""What only the Qdrant Edge store has to get right: its folder layout, crash leftovers, the engine
choice and the search index it builds (the shared contract is in test_qdrant.py, run on both engines)."""

from __future__ import annotations

import functools
import json

import numpy as np
from pathlib import Path
import pytest
import qdrant_edge

from ragline.components import build_store
from ragline.config import Settings
from ragline.errors import ConfigError
import stores.edge
from stores.edge import EdgeStore, edge_filter
from stores.qdrant import IndexSpec, Point, QdrantStore, SearchFilters, build_filter, point_id

SPEC = IndexSpec(model="m", dim=8, window=256, chunk_tokens=250, overlap_tokens=38)


def random_points(n: int, seed: int = 0) -> list[Point]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, SPEC.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [Point(point_id("s", f"d{i // 10}", i % 10), vectors[i],
                  {"source": "s", "doc_id": f"d{i // 10}", "doc_version": "v", "text": f"t{i}", "modified_ts": float(i)})
            for i in range(n)]


def test_a_collection_exists_once_its_spec_is_written_and_a_half_made_one_is_replaced(tmp_path):
    store = EdgeStore(path=tmp_path / "q", collection="c")
    try:
        (tmp_path / "q" / "collections" / "c" / "shard").mkdir(parents=True)  # a crash during creation
        assert not store.exists() and store.collection_names() == []
        store.ensure_collection(SPEC)
        store.upsert(random_points(5))
        assert store.count() == 5 and store.collection_names() == ["c"]
        spec = json.loads((tmp_path / "q" / "collections" / "c" / "spec.json").read_text())
        assert spec["ragline"]["payload_format"] == SPEC.payload_format
    finally:
        store.close()


def test_writes_survive_a_reopen_and_the_folder_is_free_after_close(tmp_path):
    store = EdgeStore(path=tmp_path / "q")
    store.ensure_collection(SPEC)
    store.upsert(random_points(30))
    store.delete_documents("s", ["d0"])
    store.close()
    again = EdgeStore(path=tmp_path / "q")
    try:
        assert again.count() == 20 and again.spec() == SPEC
    finally:
        again.close()


def test_search_is_the_same_before_and_after_the_index_is_built(tmp_path):
    store = EdgeStore(path=tmp_path / "q")
    try:
        store.ensure_collection(SPEC)
        pts = random_points(400)
        store.upsert(pts)
        query = pts[17].vector
        before = [h.id for h in store.search(query, k=5)]
        store.optimize()
        assert [h.id for h in store.search(query, k=5)] == before and before[0] == pts[17].id
        window = SearchFilters(where={"modified_ts": {"gte": 100, "lt": 110}})
        assert sorted(h.payload["text"] for h in store.search(query, k=50, filters=window)) == sorted(
            f"t{i}" for i in range(100, 110))
    finally:
        store.close()


def test_filters_convert_to_edge_types():
    converted = edge_filter(build_filter(SearchFilters(source=["a", "b"], where={"n": 1.5, "mixed": ["x", 2]})))
    assert converted is not None and len(converted.must) == 3
    assert edge_filter(None) is None


def test_the_default_engine_is_edge_and_local_mode_stays_available(tmp_path):
    edge_store = build_store(Settings(data_dir=tmp_path / "a"))
    local_store = build_store(Settings(data_dir=tmp_path / "b", embedded_engine="local"))
    try:
        assert isinstance(edge_store, EdgeStore) and edge_store.location == str(tmp_path / "a" / "qdrant-edge")
        assert isinstance(local_store, QdrantStore) and local_store.location == str(tmp_path / "b" / "qdrant")
    finally:
        edge_store.close()
        local_store.close()


def test_a_data_dir_built_by_local_mode_is_not_silently_opened_empty(tmp_path, monkeypatch):
    old = build_store(Settings(data_dir=tmp_path, embedded_engine="local"))
    old.ensure_collection(SPEC)
    old.close()
    with pytest.raises(ConfigError, match="local mode.*RAGLINE_EMBEDDED_ENGINE=local"):
        build_store(Settings(data_dir=tmp_path))
    monkeypatch.setenv("RAGLINE_EMBEDDED_ENGINE", "local")
    reopened = build_store(Settings(data_dir=tmp_path))
    try:
        assert reopened.spec() == SPEC
    finally:
        reopened.close()


def test_collection_names_are_checked(tmp_path):
    store = EdgeStore(path=tmp_path / "q", collection="../escape")
    try:
        with pytest.raises(ConfigError, match="collection name"):
            store.ensure_collection(SPEC)
    finally:
        store.close()


def resident_kib_of_files_under(root) -> int:
    """This process's resident memory in file mappings under `root` (from /proc/self/smaps)."""
    prefix, total, inside = str(root.resolve()), 0, False
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:  # a mapping's header line
            inside = len(fields) >= 6 and fields[5].startswith(prefix)
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_written_pages_do_not_stay_resident_and_every_point_reads_back_intact(tmp_path):
    store = EdgeStore(path=tmp_path / "q")
    try:
        store.ensure_collection(SPEC)
        pts = random_points(6000)
        for p in pts:
            p.payload["text"] = f"{p.payload['text']} " + "x" * 2000  # payload pages worth measuring
        for start in range(0, len(pts), 500):
            store.upsert(pts[start:start + 500])
        # without the release, the segment's touched pages (about 5 KiB a point) stay in RSS
        assert resident_kib_of_files_under(tmp_path / "q") < 1024
        read = dict(store.iter_points())
        assert len(read) == 6000
        for p in pts[::97]:
            assert read[p.id]["text"] == p.payload["text"]
            [hit] = store.search(p.vector, k=1)
            assert hit.id == p.id and hit.score == pytest.approx(1.0, abs=1e-5)
    finally:
        store.close()


def test_a_long_write_builds_its_index_as_it_goes(tmp_path, monkeypatch):
    monkeypatch.setattr(stores.edge, "OPTIMIZE_EVERY", 1000)
    # 8-dim test vectors are far below Edge's indexing threshold (about 6,600 MiniLM vectors)
    small_threshold = functools.partial(qdrant_edge.EdgeOptimizersConfig, indexing_threshold=1)
    monkeypatch.setattr(qdrant_edge, "EdgeOptimizersConfig", small_threshold)
    store = EdgeStore(path=tmp_path / "q")
    try:
        store.ensure_collection(SPEC)
        pts = random_points(2600)
        for start in range(0, len(pts), 400):
            store.upsert(pts[start:start + 400])
        info = store._require_shard().info()
        assert info.indexed_vectors_count >= 2000  # two builds of 1,000+ points each, not one at the end
        assert store.search(pts[1234].vector, k=1)[0].id == pts[1234].id
        store.optimize()
        assert store._require_shard().info().indexed_vectors_count == 2600
    finally:
        store.close()
