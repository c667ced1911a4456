from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

import numpy as np
import pytest
from qdrant_client import models

from ragline.errors import ConfigError, IndexMismatchError
from stores.edge import EdgeStore
from stores.qdrant import (
    PAYLOAD_FORMAT,
    IndexSpec,
    Point,
    QdrantStore,
    SearchFilters,
    build_filter,
    point_id,
    source_times,
)

SPEC = IndexSpec(model="m", dim=4, window=256, chunk_tokens=250, overlap_tokens=38)


ENGINES = {"local": QdrantStore, "edge": EdgeStore}  # the same contract on both embedded engines


@pytest.fixture(params=sorted(ENGINES))
def engine(request):
    return ENGINES[request.param]


@pytest.fixture
def store(tmp_path, engine):
    s = engine(path=tmp_path / "q", collection="test")
    s.ensure_collection(SPEC)
    yield s
    s.close()


@pytest.fixture
def local_store(tmp_path):
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


def test_embedded_store_is_exclusive(tmp_path, store, engine):
    with pytest.raises(ConfigError, match="in use by another process"):
        engine(path=tmp_path / "q", collection="test")


def test_exactly_one_location():
    with pytest.raises(ConfigError):
        QdrantStore()


# -- aliases (the live name of a blue/green re-index) -------------------------------------------

OTHER = IndexSpec(model="m", dim=4, window=256, chunk_tokens=120, overlap_tokens=20)


def test_a_store_works_the_same_through_an_alias(store):
    store.upsert(points("s", "d", "v", 3))
    physical = store.for_collection("test--1")
    physical.ensure_collection(OTHER)
    physical.upsert(points("s", "d", "v", 5))
    live = store.for_collection("live")
    assert not live.exists() and live.spec() is None and live.physical_name() is None
    switch = live.point_alias_at("test--1")
    assert (switch.previous, switch.gap_seconds) == (None, 0.0)
    assert live.exists() and live.alias_target() == "test--1" and live.physical_name() == "test--1"
    assert live.spec() == OTHER
    live.ensure_collection(OTHER)  # checks the spec through the alias
    with pytest.raises(IndexMismatchError, match="chunk_tokens"):
        live.ensure_collection(SPEC)
    assert live.count() == 5 and live.count({"doc_id": "d"}) == 5
    live.upsert(points("s", "e", "v", 2))
    assert physical.count() == 7 and live.count() == 7
    assert live.search(unit(1, 1, 0, 0), k=1, filters={"doc_id": "d"})[0].text == "d#0"
    live.delete_documents("s", ["e"])
    assert physical.count() == 5
    assert "live" not in store.collection_names()
    with pytest.raises(ValueError, match="alias"):
        store.drop_collection("live")  # never through an alias


def test_switching_an_alias_is_one_step_and_keeps_the_previous_collection(store):
    a, b = store.for_collection("live--a"), store.for_collection("live--b")
    a.ensure_collection(SPEC)
    a.upsert(points("s", "d", "v", 2))
    b.ensure_collection(OTHER)
    b.upsert(points("s", "d", "v", 4))
    live = store.for_collection("live")
    live.point_alias_at("live--a")
    assert live.count() == 2
    switch = live.point_alias_at("live--b")
    assert (switch.previous, switch.previous_was_alias, switch.gap_seconds) == ("live--a", True, 0.0)
    assert live.count() == 4 and live.spec() == OTHER and a.count() == 2
    assert store.drop_collection("live--a") and not store.drop_collection("live--a")
    assert store.collection_names() == ["live--b", "test"]


def test_a_real_collection_becomes_an_alias(store, tmp_path, engine):
    store.upsert(points("s", "d", "v", 3))
    new = store.for_collection("test--2")
    new.ensure_collection(OTHER)
    new.upsert(points("s", "d", "v", 6))
    switch = store.point_alias_at("test--2")
    assert (switch.previous, switch.previous_was_alias) == ("test", False)
    assert 0 < switch.gap_seconds < 1
    assert store.alias_target() == "test--2" and store.collection_names() == ["test--2"]
    assert store.count() == 6 and store.spec() == OTHER
    store.close()
    reopened = engine(path=tmp_path / "q", collection="test")  # the alias is persisted
    try:
        assert reopened.alias_target() == "test--2" and reopened.count() == 6
    finally:
        reopened.close()


def test_a_store_for_another_collection_shares_the_open_store(store):
    other = store.for_collection("x")
    other.ensure_collection(SPEC)
    other.close()  # does not close what it shares
    assert store.exists() and other.exists()


def test_chunk_vectors_are_the_stored_vectors_by_text_hash(store):
    pts = points("s", "d", "v", 3) + points("s", "e", "v", 1)
    for p in pts:
        p.payload["content_hash"] = f"h-{p.payload['doc_id']}-{p.payload['chunk_index']}"
    store.upsert(pts)
    found = store.chunk_vectors("s", ["d"])
    assert sorted(found) == ["h-d-0", "h-d-1", "h-d-2"]
    np.testing.assert_allclose(found["h-d-1"], unit(1, 2, 0, 0), atol=1e-6)
    assert sorted(store.chunk_vectors("s", ["d", "e"])) == ["h-d-0", "h-d-1", "h-d-2", "h-e-0"]
    assert store.chunk_vectors("s", ["missing"]) == {} == store.chunk_vectors("other", ["d"]) == store.chunk_vectors("s", [])


# -- payload format and filters ------------------------------------------------------------------------

def test_the_collection_records_its_payload_format(local_store):
    meta = local_store.client.get_collection("test").config.metadata
    assert meta["ragline"]["payload_format"] == PAYLOAD_FORMAT == SPEC.payload_format == 2


def test_a_collection_without_a_payload_format_is_format_1_and_refused(local_store):
    old = {k: v for k, v in asdict(SPEC).items() if k != "payload_format"}
    older = local_store.for_collection("older")
    local_store.client.create_collection("older", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE),
                                   metadata={"ragline": old})
    assert older.spec() == IndexSpec(**old, payload_format=1)  # still readable: reindex reads it
    with pytest.raises(IndexMismatchError, match=r"payload format 1; this version of ragline reads and writes "
                                                 r"format 2\. Run `ragline reindex`"):
        older.ensure_collection(SPEC)


def test_a_server_collection_gets_payload_indexes_for_the_filterable_fields(tmp_path):
    s = QdrantStore(path=tmp_path / "srv", collection="srv")
    s.embedded = False  # local mode ignores payload indexes; record what a server would be asked for
    requested = []
    s.client.create_payload_index = lambda collection, field, schema: requested.append((collection, field, schema))
    try:
        s.ensure_collection(SPEC)
    finally:
        s.close()
    keyword, float_ = models.PayloadSchemaType.KEYWORD, models.PayloadSchemaType.FLOAT
    assert requested == [("srv", f, keyword) for f in ("source", "doc_id", "doc_version", "doc_type", "path_prefixes")] + [
        ("srv", "modified_ts", float_)]


def test_search_filters_work_on_every_read(store):
    docs = [("a", "hr/policies/leave.md", "md", 100.0), ("a", "hr/pay.pdf", "pdf", 200.0), ("b", "eng/vpn.md", "md", None)]
    store.upsert([
        Point(point_id(src, doc_id, 0), unit(1, i + 1, 0, 0), {
            "source": src, "doc_id": doc_id, "doc_type": doc_type, "modified_ts": ts, "text": doc_id,
            "path_prefixes": ["/".join(doc_id.split("/")[:n]) for n in range(1, doc_id.count("/") + 1)],
        })
        for i, (src, doc_id, doc_type, ts) in enumerate(docs)
    ])
    hr = SearchFilters(path_prefix="hr/")
    assert store.count(hr) == 2
    assert {p["doc_id"] for _, p in store.iter_points(SearchFilters(doc_type="md"))} == {"hr/policies/leave.md", "eng/vpn.md"}
    after = SearchFilters(modified_after=datetime.fromtimestamp(150, UTC))
    assert [h.payload["doc_id"] for h in store.search(unit(1, 1, 0, 0), k=10, filters=after)] == ["hr/pay.pdf"]
    assert store.count(SearchFilters(source="b", path_prefix="hr")) == 0


def test_source_times_are_utc_rfc3339():
    from datetime import timedelta, timezone

    assert source_times(datetime(2026, 3, 1, 14, tzinfo=timezone(timedelta(hours=2)))) == {
        "modified_at": "2026-03-01T12:00:00Z", "modified_ts": datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()}
    assert source_times(datetime(2026, 3, 1, 12)) == source_times(datetime(2026, 3, 1, 12, tzinfo=UTC))  # naive = UTC
    assert source_times(None) == {"modified_at": None, "modified_ts": None}
