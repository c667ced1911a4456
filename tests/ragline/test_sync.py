"""The incremental sync end to end: real MiniLM, embedded Qdrant, SQLite and PostgreSQL ledgers.

The final state after every scenario is compared with a clean run over the same files
into a fresh store: same point ids, same payloads (ingest time aside), nothing extra.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.local import LocalFolderConnector
from ragline import parsers
from ragline.errors import IndexMismatchError, MassDeleteRefused
from ragline.ledger import Ledger
from ragline.pipeline import SyncOptions, sync_source
from stores.edge import EdgeStore
from stores.qdrant import IndexSpec, point_id

pytestmark = pytest.mark.model

TOPICS = {
    "leave.md": "# Annual leave\n\n" + " ".join(
        f"Rule {i}: employees accrue leave monthly and may carry over up to five days into the next year." for i in range(60)
    ),
    "travel.txt": " ".join(f"Travel note {i}: economy class is required for flights shorter than six hours." for i in range(25)),
    "security.md": "# Passwords\n\nUse a password manager. Rotate keys every ninety days.\n\n# Laptops\n\nEncrypt every disk.",
}


class Crash(BaseException):
    """Stands in for the process dying: not an Exception, so nothing in the pipeline catches it."""


def write_corpus(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


class Harness:
    def __init__(self, root: Path, ledger_url: str, embedder, chunker, data: Path):
        self.root, self.embedder, self.chunker = root, embedder, chunker
        self.store = EdgeStore(path=data / "qdrant")
        self.ledger = Ledger(ledger_url)

    def sync(self, **options):
        connector = LocalFolderConnector(self.root, name="docs", accept=parsers.is_supported)
        return sync_source(connector, store=self.store, ledger=self.ledger, embedder=self.embedder,
                           chunker=self.chunker, options=SyncOptions(**options))

    def points(self) -> dict[str, dict]:
        return {pid: payload for pid, payload in self.store.iter_points()}

    def close(self):
        self.store.close()
        self.ledger.close()


@pytest.fixture
def harness(tmp_path, ledger_url, embedder, chunker):
    root = tmp_path / "corpus"
    write_corpus(root, TOPICS)
    h = Harness(root, ledger_url, embedder, chunker, tmp_path / "data")
    yield h
    h.close()


def clean_run_points(root: Path, embedder, chunker, tmp: Path) -> dict[str, dict]:
    h = Harness(root, f"sqlite:///{tmp / 'clean-ledger.db'}", embedder, chunker, tmp / "clean")
    try:
        h.sync()
        return h.points()
    finally:
        h.close()


TIMES = {"ingested_at", "modified_at", "modified_ts"}


def without_time(points: dict[str, dict]) -> dict[str, dict]:
    """Payloads without times: when a chunk was written, and the file's mtime when its version was first
    indexed (a touched file keeps its chunks, so its mtime legitimately differs from a clean run's)."""
    def strip(payload: dict) -> dict:
        kept = {k: v for k, v in payload.items() if k not in TIMES}
        if isinstance(kept.get("metadata"), dict):
            kept["metadata"] = {k: v for k, v in kept["metadata"].items() if k not in TIMES}
        return kept

    return {pid: strip(payload) for pid, payload in points.items()}


def assert_matches_clean_run(h: Harness, tmp: Path) -> None:
    expected = clean_run_points(h.root, h.embedder, h.chunker, tmp / f"clean-{time.monotonic_ns()}")
    actual = h.points()
    assert set(actual) == set(expected), "point ids differ from a clean run"
    assert without_time(actual) == without_time(expected)
    ledger_docs = {d.doc_id: d for d in h.ledger.documents("docs")}
    assert set(ledger_docs) == {p["doc_id"] for p in expected.values()}
    for doc in ledger_docs.values():
        assert doc.status == "indexed"
        ids = {point_id("docs", doc.doc_id, i) for i in range(doc.chunk_count)}
        assert ids == {pid for pid, p in actual.items() if p["doc_id"] == doc.doc_id}


def bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def test_incremental_scenario(harness, tmp_path, monkeypatch):
    first = harness.sync()
    assert (first.added, first.updated, first.unchanged, first.deleted, first.failed) == (3, 0, 0, 0, 0)
    points_after_first = harness.points()
    assert len(points_after_first) == first.chunks_embedded > 3  # leave.md spans several chunks
    leave_ids = {pid for pid, p in points_after_first.items() if p["doc_id"] == "leave.md"}
    assert len(leave_ids) >= 3

    # Nothing changed: nothing parsed, nothing embedded, nothing written.
    monkeypatch.setattr(parsers, "parse", lambda *a: pytest.fail("re-parsed an unchanged document"))
    monkeypatch.setattr(harness.embedder, "embed", lambda *a: pytest.fail("re-embedded an unchanged document"))
    again = harness.sync()
    assert (again.added, again.updated, again.unchanged, again.deleted, again.chunks_embedded) == (0, 0, 3, 0, 0)

    # Touched but identical: recognised by content hash, still no parse or embed.
    bump_mtime(harness.root / "travel.txt")
    touched = harness.sync()
    assert (touched.updated, touched.unchanged) == (0, 3)
    monkeypatch.undo()

    # Edit one (shorter: fewer chunks), delete one, add one.
    (harness.root / "leave.md").write_text("# Annual leave\n\nEmployees get 25 days of annual leave.", encoding="utf-8")
    bump_mtime(harness.root / "leave.md")
    (harness.root / "security.md").unlink()
    (harness.root / "expenses.txt").write_text("Meals are reimbursed up to 40 euros per day.", encoding="utf-8")
    changed = harness.sync()
    assert (changed.added, changed.updated, changed.unchanged, changed.deleted, changed.failed) == (1, 1, 1, 1, 0)
    points = harness.points()
    assert not any(p["doc_id"] == "security.md" for p in points.values())
    leave_now = {pid for pid, p in points.items() if p["doc_id"] == "leave.md"}
    assert leave_now == {point_id("docs", "leave.md", 0)}
    assert len(points) == len(set(points))  # ids are unique by construction; counts must agree
    assert harness.store.count() == len(points)
    assert_matches_clean_run(harness, tmp_path)


def test_crash_between_upsert_and_delete_is_repaired(harness, tmp_path, monkeypatch):
    harness.sync()
    (harness.root / "leave.md").write_text("# Annual leave\n\nNow only this sentence remains.", encoding="utf-8")
    bump_mtime(harness.root / "leave.md")

    def die(*_a, **_k):
        raise Crash()

    monkeypatch.setattr(harness.store, "delete_other_versions", die)
    with pytest.raises(Crash):
        harness.sync()
    monkeypatch.undo()
    stale = [p for p in harness.points().values() if p["doc_id"] == "leave.md" and p["chunk_index"] > 0]
    assert stale, "the crash should have left the old version's extra chunks behind"
    assert harness.ledger.document("docs", "leave.md").chunk_count > 1  # ledger still on the old version

    repaired = harness.sync()
    assert repaired.updated == 1
    assert_matches_clean_run(harness, tmp_path)


def test_crash_between_delete_and_ledger_update_is_repaired(harness, tmp_path, monkeypatch):
    harness.sync()
    (harness.root / "travel.txt").write_text("Trains are preferred for trips under four hours.", encoding="utf-8")
    bump_mtime(harness.root / "travel.txt")
    (harness.root / "security.md").unlink()

    real_record = harness.ledger.record_documents

    def die_on_indexed(rows):
        if any(r["status"] == "indexed" for r in rows):
            raise Crash()
        return real_record(rows)

    monkeypatch.setattr(harness.ledger, "record_documents", die_on_indexed)
    with pytest.raises(Crash):
        harness.sync(allow_mass_delete=True)
    monkeypatch.undo()
    assert harness.ledger.document("docs", "travel.txt").chunk_count >= 1
    repaired = harness.sync()
    assert (repaired.updated, repaired.deleted) == (1, 1)
    assert_matches_clean_run(harness, tmp_path)


def test_new_document_crashed_then_removed_leaves_no_orphans(harness, tmp_path, monkeypatch):
    harness.sync()
    (harness.root / "draft.txt").write_text("A draft that will be deleted before the next run.", encoding="utf-8")
    monkeypatch.setattr(harness.store, "delete_other_versions", lambda *a, **k: None)
    real_record = harness.ledger.record_documents
    monkeypatch.setattr(harness.ledger, "record_documents",
                        lambda rows: (_ for _ in ()).throw(Crash()) if rows else real_record(rows))
    with pytest.raises(Crash):
        harness.sync()
    monkeypatch.undo()
    assert any(p["doc_id"] == "draft.txt" for p in harness.points().values())
    (harness.root / "draft.txt").unlink()
    after = harness.sync()
    assert after.deleted == 1
    assert_matches_clean_run(harness, tmp_path)


def test_corrupt_file_is_quarantined_and_the_run_goes_on(harness):
    (harness.root / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ntruncated")
    report = harness.sync()
    assert report.added == 3 and report.failed == 1 and report.status == "failed"
    [failure] = report.failures
    assert failure.doc_id == "broken.pdf" and failure.reason
    assert {p["doc_id"] for p in harness.points().values()} == set(TOPICS)
    summary = harness.ledger.source_summary("docs")
    assert summary["failed"] == 1 and summary["failures"][0]["doc_id"] == "broken.pdf"
    # Unchanged broken bytes are not retried every run, but the report says they still fail.
    again = harness.sync()
    assert again.failed == 0 and again.still_failing == 1 and again.unchanged == 4


def test_dry_run_writes_nothing(harness):
    report = harness.sync(dry_run=True)
    assert report.plan["add"] == 3 and sorted(report.plan["sample"]["add"]) == sorted(TOPICS)
    assert harness.store.count() == 0
    assert harness.ledger.documents("docs") == []
    harness.sync()
    (harness.root / "security.md").unlink()
    plan = harness.sync(dry_run=True).plan
    assert (plan["delete"], plan["unchanged"], plan["sample"]["delete"]) == (1, 2, ["security.md"])
    assert any(p["doc_id"] == "security.md" for p in harness.points().values())


def test_mass_delete_is_refused_unless_allowed(harness):
    harness.sync()
    for name in ("leave.md", "travel.txt"):
        (harness.root / name).unlink()
    with pytest.raises(MassDeleteRefused, match="would delete 2 of its 3"):
        harness.sync()
    assert {p["doc_id"] for p in harness.points().values()} == set(TOPICS)
    assert harness.ledger.last_run("docs")["status"] == "refused"
    allowed = harness.sync(allow_mass_delete=True)
    assert allowed.deleted == 2
    assert {p["doc_id"] for p in harness.points().values()} == {"security.md"}


def test_a_different_model_or_chunking_is_refused(harness):
    harness.sync()
    spec = harness.store.spec()
    assert spec.model == "all-MiniLM-L6-v2" and spec.dim == 384
    other = IndexSpec(model="other-model", dim=spec.dim, window=spec.window,
                      chunk_tokens=spec.chunk_tokens, overlap_tokens=spec.overlap_tokens)
    with pytest.raises(IndexMismatchError, match="other-model"):
        harness.store.ensure_collection(other)


def set_mtime(path: Path, when: datetime) -> None:
    stamp = int(when.timestamp() * 1e9)
    os.utime(path, ns=(stamp, stamp))


def test_a_windowed_backfill_reingests_its_window_and_deletes_nothing(harness, monkeypatch):
    old, new = datetime(2025, 1, 10, tzinfo=UTC), datetime(2025, 6, 10, tzinfo=UTC)
    set_mtime(harness.root / "leave.md", old)
    set_mtime(harness.root / "travel.txt", new)
    set_mtime(harness.root / "security.md", new)
    harness.sync()
    before = max(p["ingested_at"] for p in harness.points().values())
    (harness.root / "leave.md").unlink()  # outside the window: a windowed run must not delete it
    embedded = []
    real_embed = harness.embedder.embed
    monkeypatch.setattr(harness.embedder, "embed", lambda texts: embedded.extend(texts) or real_embed(texts))

    window = (datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC))
    plan = harness.sync(window=window, force=True, dry_run=True).plan
    assert (plan["update"], plan["delete"]) == (2, 0)
    report = harness.sync(window=window, force=True)
    assert (report.listing, report.updated, report.deleted, report.added) == ("window", 2, 0, 0)
    # Re-processed, but the text did not change: every vector comes from the embedding cache.
    assert report.chunks_embedded == report.chunks_reused > 0 and embedded == []
    assert {p["doc_id"] for p in harness.points().values() if p["ingested_at"] > before} == {"travel.txt", "security.md"}
    assert "leave.md" in {p["doc_id"] for p in harness.points().values()}
    assert harness.ledger.cursor("docs") is None

    assert harness.sync().deleted == 1  # the next complete listing does delete it
