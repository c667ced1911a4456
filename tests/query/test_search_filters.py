"""Search filters: every kind over a small real collection (pipeline, MiniLM, embedded Qdrant),
the Qdrant filter each one becomes, the CLI's `--filter` grammar, and payload format v2."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from qdrant_client import models

from connectors.local import LocalFolderConnector
from ragline import parsers
from ragline.errors import ConfigError, IndexMismatchError
from ragline.ledger import Ledger
from ragline.pipeline import SyncOptions, sync_source
from ragline.types import DocRef, RawDocument
from query.search import SearchFilters, parse_filters, search
from ragline.components import build_store
from stores.base import VectorStore
from stores.qdrant import PAYLOAD_FORMAT, FieldRange, QdrantStore, build_filter

pytestmark = pytest.mark.model

JAN = datetime(2026, 1, 15, tzinfo=UTC)
MAR = datetime(2026, 3, 15, tzinfo=UTC)
JUN = datetime(2026, 6, 15, tzinfo=UTC)

FILES = {  # doc_id -> (text, modification time)
    "hr/policies/leave.md": ("# Annual leave\n\nEmployees get 25 days of annual leave each year.", JAN),
    "hr/benefits.txt": ("The company pays for gym membership and a yearly health check.", MAR),
    "hr-archive/old.txt": ("Old rules: annual leave used to be 20 days.", MAR),
    "eng/setup.html": ("<html><head><title>Laptop setup</title></head><body><p>Install the VPN client "
                       "before your first day.</p></body></html>", JUN),
}


class RecordConnector:
    """CRM-like records rendered as text, the way record connectors name them ("<id>.txt")."""

    name, kind, location = "crm", "test-records", "memory://crm"
    records = {
        "contacts/1": ("Alice Martin asked about annual leave carry-over.", {"owner": "bob", "priority": 3}),
        "contacts/2": ("Bruno Keller wants a gym membership refund.", {"owner": "eve", "priority": 7}),
    }

    def list(self) -> Iterator[DocRef]:
        for doc_id, (text, _meta) in self.records.items():
            yield DocRef(source=self.name, doc_id=doc_id, fingerprint=hashlib.sha256(text.encode()).hexdigest(),
                         uri=f"crm://{doc_id}", modified_at=None)

    def fetch(self, ref: DocRef) -> RawDocument:
        text, meta = self.records[ref.doc_id]
        data = text.encode()
        return RawDocument(ref=ref, data=data, filename=f"{ref.doc_id.replace('/', '-')}.txt",
                           content_hash=hashlib.sha256(data).hexdigest(), metadata=meta)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, embedder, chunker):
    root = tmp_path_factory.mktemp("corpus") / "docs"
    for doc_id, (text, modified) in FILES.items():
        path = root / doc_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        os.utime(path, (modified.timestamp(), modified.timestamp()))
    data = tmp_path_factory.mktemp("data")
    store = QdrantStore(path=data / "qdrant", collection="filters")
    ledger = Ledger(f"sqlite:///{data / 'ledger.db'}")
    for connector in (LocalFolderConnector(root, name="docs", accept=parsers.is_supported), RecordConnector()):
        report = sync_source(connector, store=store, ledger=ledger, embedder=embedder, chunker=chunker,
                             options=SyncOptions())
        assert report.status == "ok", report.failures
    yield store
    store.close()
    ledger.close()


def found(indexed, embedder, filters, question: str = "annual leave") -> set[str]:
    """doc_ids of every chunk the search returns (k covers the whole collection)."""
    return {h.payload["doc_id"] for h in search(question, embedder=embedder, store=indexed, k=50, filters=filters)}


ALL = {"hr/policies/leave.md", "hr/benefits.txt", "hr-archive/old.txt", "eng/setup.html", "contacts/1", "contacts/2"}


# -- payload format v2 -------------------------------------------------------------------------------

def test_payload_v2_fields_and_collection_format(indexed):
    payloads = {p["doc_id"]: p for _, p in indexed.iter_points()}
    assert set(payloads) == ALL
    leave = payloads["hr/policies/leave.md"]
    assert leave["doc_type"] == "md" and leave["path_prefixes"] == ["hr", "hr/policies"]
    assert leave["modified_at"] == "2026-01-15T00:00:00Z" and leave["modified_ts"] == JAN.timestamp()
    assert leave["metadata"] == {
        "source": "docs", "doc_id": "hr/policies/leave.md", "uri": leave["uri"], "title": leave["title"],
        "section": leave["section"], "page_start": 1, "page_end": 1, "doc_type": "md",
        "modified_at": "2026-01-15T00:00:00Z", "chunk_index": 0, "meta": {},
    }
    assert payloads["eng/setup.html"]["doc_type"] == "html"
    record = payloads["contacts/1"]
    assert (record["doc_type"], record["path_prefixes"], record["modified_at"], record["modified_ts"]) == (
        "txt", ["contacts"], None, None)
    assert record["meta"] == record["metadata"]["meta"] == {"owner": "bob", "priority": 3}
    assert indexed.spec().payload_format == PAYLOAD_FORMAT == 2
    meta = indexed.client.get_collection(indexed.collection).config.metadata
    assert meta["ragline"]["payload_format"] == 2


def test_a_folder_source_indexes_its_modification_time_through_the_ledger(tmp_path, embedder, chunker):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.txt").write_text("Parking is free after six.", encoding="utf-8")
    os.utime(root / "a.txt", (MAR.timestamp(), MAR.timestamp()))
    store = QdrantStore(path=tmp_path / "q")
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        sync_source(LocalFolderConnector(root, name="docs"), store=store, ledger=ledger, embedder=embedder,
                    chunker=chunker)
        [(_, payload)] = list(store.iter_points())
        assert payload["modified_at"] == "2026-03-15T00:00:00Z"
    finally:
        store.close()
        ledger.close()


# -- every filter kind, over the real collection ----------------------------------------------------

def test_no_filter_and_empty_filters_match_everything(indexed, embedder):
    assert found(indexed, embedder, None) == ALL
    assert found(indexed, embedder, SearchFilters()) == ALL
    assert build_filter(SearchFilters()) is None


def test_source_one_or_any_of(indexed, embedder):
    assert found(indexed, embedder, {"source": "crm"}) == {"contacts/1", "contacts/2"}
    assert found(indexed, embedder, {"source": ["crm", "docs"]}) == ALL
    assert found(indexed, embedder, {"source": "nope"}) == set()


def test_doc_type_normalised(indexed, embedder):
    assert found(indexed, embedder, {"doc_type": ".MD"}) == {"hr/policies/leave.md"}
    assert found(indexed, embedder, {"doc_type": ["html", "md"]}) == {"hr/policies/leave.md", "eng/setup.html"}


def test_path_prefix_matches_folders_not_string_prefixes(indexed, embedder):
    under_hr = {"hr/policies/leave.md", "hr/benefits.txt"}  # not hr-archive/old.txt
    assert found(indexed, embedder, {"path_prefix": "hr"}) == under_hr
    assert found(indexed, embedder, {"path_prefix": "/hr/"}) == under_hr
    assert found(indexed, embedder, {"path_prefix": "hr/policies"}) == {"hr/policies/leave.md"}
    assert found(indexed, embedder, {"path_prefix": "hr/pol"}) == set()


def test_modified_window_inclusive_after_exclusive_before(indexed, embedder):
    assert found(indexed, embedder, {"modified_after": MAR}) == {"hr/benefits.txt", "hr-archive/old.txt",
                                                                 "eng/setup.html"}
    assert found(indexed, embedder, {"modified_before": MAR}) == {"hr/policies/leave.md"}
    # naive = UTC; another zone is converted; records without a time never match
    assert found(indexed, embedder, {"modified_after": MAR.replace(tzinfo=None), "modified_before": JUN}) == {
        "hr/benefits.txt", "hr-archive/old.txt"}
    plus_two = timezone(timedelta(hours=2))
    assert found(indexed, embedder, {"modified_after": JUN.astimezone(plus_two)}) == {"eng/setup.html"}


def test_where_equality_ranges_and_nested_keys(indexed, embedder):
    assert found(indexed, embedder, {"where": {"meta.owner": "bob"}}) == {"contacts/1"}
    assert found(indexed, embedder, {"where": {"metadata.doc_type": "html"}}) == {"eng/setup.html"}
    assert found(indexed, embedder, {"where": {"doc_id": ["contacts/2", "hr/benefits.txt"]}}) == {
        "contacts/2", "hr/benefits.txt"}
    assert found(indexed, embedder, {"where": {"meta.priority": {"gt": 3}}}) == {"contacts/2"}
    assert found(indexed, embedder, {"where": {"meta.priority": {"gte": 3, "lte": 3}}}) == {"contacts/1"}
    assert found(indexed, embedder, {"where": {"meta.priority": 7}}) == {"contacts/2"}
    assert found(indexed, embedder, {"where": {"meta.priority": 7.0}}) == {"contacts/2"}  # float: as a range
    assert found(indexed, embedder, {"where": {"chunk_index": 0, "page_start": {"lt": 2}}}) == ALL


def test_filters_combine_with_and(indexed, embedder):
    assert found(indexed, embedder, {"source": "docs", "doc_type": "txt", "path_prefix": "hr"}) == {"hr/benefits.txt"}
    assert found(indexed, embedder, {"source": "crm", "where": {"meta.owner": "bob", "meta.priority": {"gt": 5}}}) == set()


def test_filter_narrows_the_ranking_not_just_the_result(indexed, embedder):
    """The filter is applied inside the vector search: k=1 returns the best match among the filtered."""
    [top] = search("annual leave", embedder=embedder, store=indexed, k=1)
    assert top.payload["doc_id"] in {"hr/policies/leave.md", "hr-archive/old.txt", "contacts/1"}
    [eng] = search("annual leave", embedder=embedder, store=indexed, k=1, filters={"path_prefix": "eng"})
    assert eng.payload["doc_id"] == "eng/setup.html"


# -- the Qdrant filter each kind becomes --------------------------------------------------------------

def test_build_filter_for_each_kind():
    must = build_filter(SearchFilters(
        source=["a", "b"], doc_type="PDF", path_prefix="hr/", modified_after=datetime(2026, 1, 1),
        modified_before=datetime(2026, 2, 1, tzinfo=UTC),
        where={"meta.owner": "bob", "page_start": {"gte": 2, "lt": 5}, "score": 0.5, "flag": True,
               "mixed": [1, "x"], "ids": [1, 2]},
    )).must
    assert must == [
        models.FieldCondition(key="source", match=models.MatchAny(any=["a", "b"])),
        models.FieldCondition(key="doc_type", match=models.MatchValue(value="pdf")),
        models.FieldCondition(key="path_prefixes", match=models.MatchValue(value="hr")),
        models.FieldCondition(key="modified_ts", range=models.Range(gte=datetime(2026, 1, 1, tzinfo=UTC).timestamp(),
                                                                     lt=datetime(2026, 2, 1, tzinfo=UTC).timestamp())),
        models.FieldCondition(key="meta.owner", match=models.MatchValue(value="bob")),
        models.FieldCondition(key="page_start", range=models.Range(gte=2, lt=5)),
        models.FieldCondition(key="score", range=models.Range(gte=0.5, lte=0.5)),
        models.FieldCondition(key="flag", match=models.MatchValue(value=True)),
        models.Filter(should=[models.FieldCondition(key="mixed", match=models.MatchValue(value=1)),
                              models.FieldCondition(key="mixed", match=models.MatchValue(value="x"))]),
        models.FieldCondition(key="ids", match=models.MatchAny(any=[1, 2])),
    ]


def test_build_filter_keeps_the_plain_mapping_form():
    assert build_filter({"source": "s", "doc_id": ["a", "b"]}) == models.Filter(must=[
        models.FieldCondition(key="source", match=models.MatchValue(value="s")),
        models.FieldCondition(key="doc_id", match=models.MatchAny(any=["a", "b"])),
    ])
    assert build_filter(None) is None


# -- validation -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"where": {"meta owner": "x"}}, "'meta owner' is not a payload field path"),
        ({"where": {"a..b": "x"}}, "'a..b' is not a payload field path"),
        ({"where": {"n": {}}}, "a range needs at least one of gt, gte, lt, lte"),
        ({"where": {"n": {"gt": 5, "lt": 5}}}, "matches no value"),
        ({"where": {"n": {"gte": 6, "lte": 5}}}, "matches no value"),
        ({"where": {"n": {"above": 5}}}, "not 'above'"),
        ({"where": {"n": {"gt": "5"}}}, "range bound gt must be a number"),
        ({"where": {"n": []}}, "an empty list matches nothing"),
        ({"where": {"n": None}}, "got None"),
        ({"source": []}, "source: an empty list matches nothing"),
        ({"path_prefix": "/"}, "names no folder"),
        ({"modified_after": JUN, "modified_before": JAN}, "is not before modified_before"),
        ({"owner": "bob"}, "owner: Extra inputs are not permitted"),
    ],
)
def test_invalid_filters_are_clear_errors(filters, message):
    with pytest.raises(ConfigError, match="invalid search filters") as error:
        search("q", embedder=None, store=None, filters=filters)  # refused before the model or store is used
    assert message in str(error.value)


def test_search_filters_round_trip_as_json():
    filters = SearchFilters(source="a", where={"meta.n": {"gte": 1}, "tags": ["x", "y"]})
    assert SearchFilters.model_validate_json(filters.model_dump_json()) == filters
    assert filters.model_dump(mode="json", exclude_defaults=True) == {
        "source": "a", "where": {"meta.n": {"gte": 1}, "tags": ["x", "y"]}}


# -- the CLI's --filter grammar ---------------------------------------------------------------------------

def test_parse_filters_equality_any_of_and_int_fields():
    parsed = parse_filters(["source=a", "source=b", "doc_id=x.md", "page_start=3", "title=a=b", "meta.owner=bob"])
    assert parsed == SearchFilters(source=["a", "b"], where={"doc_id": "x.md", "page_start": 3, "title": "a=b",
                                                             "meta.owner": "bob"})
    assert parse_filters([]) == SearchFilters()


def test_parse_filters_ranges_and_named_keys():
    parsed = parse_filters(["page_start>=2", "page_start<5", "meta.score>0.5", "chunk_index<=1", "doc_type=PDF",
                            "path_prefix=hr/", "modified_after=2026-03-01", "modified_before=2026-04-01T12:00:00+02:00"])
    assert parsed.where == {"page_start": FieldRange(gte=2, lt=5), "meta.score": FieldRange(gt=0.5),
                            "chunk_index": FieldRange(lte=1)}
    assert (parsed.doc_type, parsed.path_prefix) == ("pdf", "hr")
    assert parsed.modified_after == datetime(2026, 3, 1, tzinfo=UTC)
    assert parsed.modified_before == datetime(2026, 4, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expressions", "message"),
    [
        (["nokeyvalue"], "is not of the form key=value"),
        (["=x"], "is not of the form key=value"),
        (["page_start>=two"], "a range needs a number, got 'two'"),
        (["page_start=1", "page_start>2"], "both as a value and as a range"),
        (["page_start>2", "page_start>3"], "page_start> is given twice"),
        (["source>=1"], "source takes key=value"),
        (["path_prefix=a", "path_prefix=b"], "path_prefix may be given once"),
        (["modified_after=yesterday"], "modified_after"),
        (["page_start>5", "page_start<2"], "matches no value"),
    ],
)
def test_parse_filters_errors(expressions, message):
    with pytest.raises(ConfigError, match=message):
        parse_filters(expressions)


# -- format 1 collections are refused -------------------------------------------------------------------

def test_a_format_1_collection_is_refused_for_writes_and_searches(tmp_path, embedder, chunker):
    from ragline.pipeline import index_spec

    store = QdrantStore(path=tmp_path / "q", collection="old")
    try:
        spec = index_spec(embedder, chunker)
        old = {k: v for k, v in spec.__dict__.items() if k != "payload_format"}  # what earlier versions wrote
        store.client.create_collection("old", vectors_config=models.VectorParams(size=spec.dim,
                                       distance=models.Distance.COSINE), metadata={"ragline": old})
        assert store.spec().payload_format == 1
        with pytest.raises(IndexMismatchError, match=r"payload format 1.*Run `ragline reindex`"):
            store.ensure_collection(spec)
        with pytest.raises(ConfigError, match=r"payload format 1.*Run `ragline reindex`"):
            search("annual leave", embedder=embedder, store=store)
    finally:
        store.close()


def test_reindex_rebuilds_a_format_1_collection_into_the_current_format(tmp_path, embedder, chunker):
    from ragline.config import Settings
    from ragline.reindex import reindex

    root = tmp_path / "docs" / "hr"
    root.mkdir(parents=True)
    (root / "leave.md").write_text("# Leave\n\nEmployees get 25 days of annual leave.", encoding="utf-8")
    # qdrant-client local mode: format-1 collections were made by it (before Qdrant Edge was the default)
    settings = Settings(data_dir=tmp_path / "data", embedded_engine="local")
    connector = LocalFolderConnector(root.parent, name="docs", accept=parsers.is_supported)

    def open_live() -> tuple[VectorStore, Ledger]:
        return build_store(settings), Ledger(settings.resolved_ledger_url)

    store, ledger = open_live()
    sync_source(connector, store=store, ledger=ledger, embedder=embedder, chunker=chunker)
    # Make it what an earlier version left: no payload_format in the collection's metadata.
    old = {k: v for k, v in store.spec().__dict__.items() if k != "payload_format"}
    store.client.update_collection(store.collection, metadata={"ragline": old})
    assert store.spec().payload_format == 1
    with pytest.raises(IndexMismatchError, match="Run `ragline reindex`"):
        sync_source(connector, store=store, ledger=ledger, embedder=embedder, chunker=chunker)
    store.close()
    ledger.close()

    report = reindex(settings, embedder=embedder)  # reads the old spec, builds the new format
    assert (report.spec_before.payload_format, report.spec_after.payload_format) == (1, PAYLOAD_FORMAT)

    store, ledger = open_live()
    try:
        assert store.spec().payload_format == PAYLOAD_FORMAT
        [(_, payload)] = list(store.iter_points())
        assert payload["path_prefixes"] == ["hr"] and payload["metadata"]["doc_id"] == "hr/leave.md"
        assert found(store, embedder, {"path_prefix": "hr", "doc_type": "md"}) == {"hr/leave.md"}
        again = sync_source(connector, store=store, ledger=ledger, embedder=embedder, chunker=chunker)
        assert again.status == "ok" and again.unchanged == 1
    finally:
        store.close()
        ledger.close()
