"""One sync of one source: list, plan against the ledger, index what changed, delete what is gone.

Plain functions; the CLI calls them directly and `flows/` wraps them in Prefect tasks.

Order of writes for every changed document, so that a crash anywhere leaves a state
the next run repairs:
  1. (new documents) a `pending` ledger row,
  2. the new chunks upserted (deterministic ids: a rerun overwrites),
  3. chunks of older versions deleted,
  4. the ledger row written with the new fingerprint and version.
Until step 4 the ledger still holds the old fingerprint, so the next run redoes the document.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from chunkers.token_chunker import TokenChunker
from ragline import parsers
from ragline.clean import strip_headers_footers
from ragline.errors import DocumentError, MassDeleteRefused, ParseError, first_line
from ragline.failpoints import failpoint
from ragline.ledger import STATUS_FAILED, STATUS_INDEXED, Ledger, PendingDoc
from ragline.types import Chunk, Connector, DocRef, Embedder, IncrementalConnector, ParsedDocument, RawDocument
from stores.base import VectorStore
from stores.qdrant import IndexSpec, Point, point_id, source_times

log = logging.getLogger(__name__)

ACTIONS = ("added", "updated", "unchanged", "deleted", "failed")
TOUCHED_BATCH = 1000  # fingerprints of touched-but-identical documents written per transaction


class Progress(Protocol):
    def planned(self, source: str, total: int) -> None: ...

    def advance(self, doc_id: str, action: str) -> None: ...


class NoProgress:
    def planned(self, source: str, total: int) -> None:
        pass

    def advance(self, doc_id: str, action: str) -> None:
        pass


@dataclass(frozen=True)
class SyncOptions:
    dry_run: bool = False
    allow_mass_delete: bool = False
    max_delete_share: float = 0.5
    retry_failed: bool = False
    flush_chunks: int = 256
    full_listing: bool = False  # ignore a stored cursor: list everything (reconciles what a cursor can miss)
    force: bool = False  # re-ingest every listed document, changed or not (a backfill)
    window: tuple[datetime | None, datetime | None] | None = None  # only documents modified in [since, until)
    lock_wait_seconds: float = 0.0  # how long to wait for another run of the same source to end

    def work(self) -> dict[str, bool]:
        """The ledger's rule for which listed documents need work."""
        return {"retry_failed": self.retry_failed, "force": self.force}


@dataclass(frozen=True)
class Failure:
    doc_id: str
    uri: str
    reason: str


@dataclass
class RunReport:
    source: str
    run_id: int
    dry_run: bool
    status: str = "running"  # ok | failed (documents failed) | refused | dry-run | error
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failures: list[Failure] = field(default_factory=list)
    chunks_embedded: int = 0  # chunks written with a vector, computed or reused
    chunks_reused: int = 0  # of those, vectors reused from the index (same text, same model): not re-embedded
    headers_removed: int = 0
    still_failing: int = 0  # unchanged documents that failed in an earlier run
    skipped: list[dict[str, str]] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    listing: str = "complete"  # complete | changes (since the stored cursor) | window (a backfill's)
    cursor: str | None = None  # stored for the next run once this one finished
    message: str | None = None
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def counts(self) -> dict[str, int]:
        return {a: getattr(self, a) for a in ACTIONS} | {"chunks": self.chunks_embedded}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"] = self.failed
        data["chunks_per_second"] = round(self.chunks_embedded / self.seconds, 2) if self.seconds else 0.0
        return json.loads(json.dumps(data, default=str))  # plain values only: stored as JSON, printed by --json


def return_freed_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc's malloc_trim; nothing elsewhere).

    Parsing and torch's buffers of ever-changing shapes leave glibc's heap fragmented: freed memory
    stays in the process, and RSS climbs with every batch although nothing is kept. Trimming after
    each written batch keeps it down (bench/heap_growth.py measures both)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


@dataclass
class PreparedDocument:
    ref: DocRef
    version: str
    title: str
    chunks: list[Chunk]
    headers_removed: int
    metadata: dict[str, Any]
    is_new: bool  # no ledger row yet: gets a pending row, has no older chunks to delete
    first_version: bool  # nothing of it was indexed before: reported as added, not updated
    filename: str = ""  # RawDocument.filename: its suffix is the payload's doc_type


def index_spec(embedder: Embedder, chunker: TokenChunker) -> IndexSpec:
    return IndexSpec(
        model=embedder.model_name,
        dim=embedder.dim,
        window=embedder.max_tokens,
        chunk_tokens=chunker.chunk_tokens,
        overlap_tokens=chunker.overlap_tokens,
    )


ParseFn = Callable[[str, bytes], ParsedDocument]  # parsers.parse, or ragline.isolation's worker around it


def prepare_document(raw: RawDocument, chunker: TokenChunker, pending: PendingDoc, timer: StageTimer, *,
                     parse: ParseFn = parsers.parse) -> PreparedDocument:
    """Parse, strip repeated headers/footers and chunk one document. Raises DocumentError."""
    with timer.stage("parse"):
        parsed = parse(raw.filename, raw.data)
    with timer.stage("clean"):
        cleaned = strip_headers_footers(parsed)
    with timer.stage("chunk"):
        chunks = chunker.chunk(cleaned.document)
    if not chunks:
        raise ParseError(raw.ref.doc_id, "no text left to index after removing page headers and footers")
    return PreparedDocument(
        ref=raw.ref,
        version=raw.content_hash,
        title=cleaned.document.title,
        chunks=chunks,
        headers_removed=cleaned.removed_lines,
        metadata=dict(raw.metadata),
        is_new=pending.is_new,
        first_version=pending.known_version is None,
        filename=raw.filename,
    )


@dataclass
class Outcome:
    """What preparing one pending document gave: a prepared document (with its vectors when the
    preparer embedded it; else the write path embeds it), a touched-but-identical document, or a
    failure (a DocumentError's reason)."""

    pending: PendingDoc
    document: PreparedDocument | None = None
    vectors: np.ndarray | None = None  # float32, one row per chunk
    touched: bool = False
    failure: str | None = None


class Preparer(Protocol):
    """The CPU-heavy part of a sync (fetch, hash compare, parse, clean, chunk, maybe embed), one
    Outcome per pending document, in the order the documents came."""

    def run(self, pending: Iterable[PendingDoc], *, force: bool, timer: StageTimer) -> Iterator[Outcome]: ...


def prepare_one(connector: Connector, chunker: TokenChunker, pending: PendingDoc, *, force: bool,
                timer: StageTimer, parse: ParseFn = parsers.parse) -> Outcome:
    """Fetch one document, compare its content hash, and parse, clean and chunk it if it changed."""
    try:
        failpoint("fetch.before")
        with timer.stage("fetch"):
            raw = connector.fetch(pending.ref)
        failpoint("fetch.after")
        if raw.content_hash == pending.known_version and not force:
            return Outcome(pending, touched=True)  # same bytes, new mtime
        return Outcome(pending, document=prepare_document(raw, chunker, pending, timer, parse=parse))
    except DocumentError as error:
        return Outcome(pending, failure=error.reason)


class InProcessPreparer:
    """The default: prepares in this process, one document at a time; the write path embeds."""

    def __init__(self, connector: Connector, chunker: TokenChunker, parse: ParseFn = parsers.parse):
        self.connector, self.chunker, self.parse = connector, chunker, parse

    def run(self, pending: Iterable[PendingDoc], *, force: bool, timer: StageTimer) -> Iterator[Outcome]:
        for doc in pending:
            yield prepare_one(self.connector, self.chunker, doc, force=force, timer=timer, parse=self.parse)


def _doc_type(filename: str) -> str | None:
    """The format as a lower-case suffix without dot ("pdf", "md"); record sources render text: "txt"."""
    name = filename.rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    return suffix.lower() if dot and stem and suffix else None


def _path_prefixes(doc_id: str) -> list[str]:
    """Every ancestor folder of a doc_id path: "hr/policies/leave.md" -> ["hr", "hr/policies"]."""
    parts = [p for p in doc_id.split("/") if p]
    return ["/".join(parts[:n]) for n in range(1, len(parts))]


def text_hash(text: str) -> str:
    """A chunk's identity for the embedding cache (payload `content_hash`)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_payload(doc: PreparedDocument, chunk: Chunk, ingested_at: str) -> dict[str, Any]:
    """A chunk's payload in format 2 (stores.qdrant.PAYLOAD_FORMAT; fields in docs/downstream.md).

    Flat fields serve ragline's filters and LlamaIndex (which reads the flat payload); `metadata`
    repeats what a reader should show, because LangChain reads metadata from one payload key.
    """
    times = source_times(doc.ref.modified_at)
    shown = {  # what a reader shows: flat in the payload, and again under `metadata`
        "source": doc.ref.source,
        "doc_id": doc.ref.doc_id,
        "uri": doc.ref.uri,
        "title": doc.title,
        "section": chunk.section,
        "page_start": chunk.page_start,
        "page_end": chunk.page_end,
        "doc_type": _doc_type(doc.filename),
        "modified_at": times["modified_at"],
        "chunk_index": chunk.index,
        "meta": doc.metadata,
    }
    return {
        "text": chunk.text,
        **shown,
        "chunk_count": len(doc.chunks),
        "token_count": chunk.token_count,
        "doc_version": doc.version,
        "content_hash": text_hash(chunk.text),
        "ingested_at": ingested_at,
        "path_prefixes": _path_prefixes(doc.ref.doc_id),
        "modified_ts": times["modified_ts"],
        "metadata": dict(shown),
    }


class _Indexer:
    """Accumulates prepared documents and writes them in batches across documents."""

    def __init__(self, *, store: VectorStore, ledger: Ledger, embedder: Embedder, report: RunReport,
                 timer: StageTimer, progress: Progress, flush_chunks: int):
        self.store, self.ledger, self.embedder = store, ledger, embedder
        self.report, self.timer, self.progress = report, timer, progress
        self.flush_chunks = flush_chunks
        self.docs: list[PreparedDocument] = []
        self.vectors: list[np.ndarray | None] = []  # per document: embedded by the preparer, or None
        self.pending_chunks = 0

    def add(self, doc: PreparedDocument, vectors: np.ndarray | None = None) -> None:
        if vectors is not None and len(vectors) != len(doc.chunks):
            raise ValueError(f"{doc.ref.doc_id}: {len(vectors)} vectors for {len(doc.chunks)} chunks")
        self.docs.append(doc)
        self.vectors.append(vectors)
        self.pending_chunks += len(doc.chunks)
        if self.pending_chunks >= self.flush_chunks:
            self.flush()

    def flush(self) -> None:
        if not self.docs:
            return
        docs, self.docs, self.pending_chunks = self.docs, [], 0
        given, self.vectors = self.vectors, []
        source = self.report.source
        with self.timer.stage("ledger"):
            self.ledger.mark_pending(source, [d.ref for d in docs if d.is_new], self.report.run_id)
        failpoint("pending.marked")
        missing = [i for i, v in enumerate(given) if v is None]  # documents the preparer did not embed
        if missing:
            embedded = self._vectors_for([docs[i] for i in missing])
            row = 0
            for i in missing:
                given[i] = embedded[row : row + len(docs[i].chunks)]
                row += len(docs[i].chunks)
        vectors = np.concatenate(given)
        failpoint("embed.after")
        ingested_at = datetime.now(UTC).isoformat()
        points: list[Point] = []
        row = 0
        for doc in docs:
            for chunk in doc.chunks:
                points.append(
                    Point(
                        id=point_id(source, doc.ref.doc_id, chunk.index),
                        vector=vectors[row],
                        payload=chunk_payload(doc, chunk, ingested_at),
                    )
                )
                row += 1
        failpoint("upsert.before")
        with self.timer.stage("upsert"):
            self.ledger.check_lock(source)  # a run whose lock was lost must not write beside its successor
            self.store.upsert(points)
        failpoint("upsert.after")
        with self.timer.stage("delete"):
            for doc in docs:
                if not doc.is_new:
                    self.store.delete_other_versions(source, doc.ref.doc_id, doc.version)
        failpoint("versions.deleted")
        with self.timer.stage("ledger"):
            self.ledger.record_documents(
                [
                    {
                        "source": source,
                        "doc_id": d.ref.doc_id,
                        "uri": d.ref.uri,
                        "fingerprint": d.ref.fingerprint,
                        "version": d.version,
                        "title": d.title,
                        "chunk_count": len(d.chunks),
                        "status": STATUS_INDEXED,
                        "error": None,
                        "run_id": self.report.run_id,
                    }
                    for d in docs
                ]
            )
        failpoint("ledger.recorded")
        return_freed_memory()
        for doc in docs:
            action = "added" if doc.first_version else "updated"
            setattr(self.report, action, getattr(self.report, action) + 1)
            self.report.chunks_embedded += len(doc.chunks)
            self.report.headers_removed += doc.headers_removed
            self.progress.advance(doc.ref.doc_id, action)

    def _vectors_for(self, docs: list[PreparedDocument]) -> np.ndarray:
        """One vector per chunk of `docs`, in order. The embedding cache: a chunk whose text is already
        indexed for one of these documents (an edit leaves most chunks of a long document as they were)
        reuses its stored vector, since the collection guarantees the same model built it; a text that
        occurs twice in the batch is embedded once. Only the rest goes to the model."""
        texts = [c.text for d in docs for c in d.chunks]
        hashes = [text_hash(t) for t in texts]
        known_docs = [d.ref.doc_id for d in docs if not d.is_new]
        with self.timer.stage("cache"):
            known = self.store.chunk_vectors(self.report.source, known_docs) if known_docs else {}
        todo = {h: t for h, t in zip(hashes, texts, strict=True) if h not in known}  # unique, in order
        if todo:
            with self.timer.stage("embed"):
                fresh = self.embedder.embed(list(todo.values()))
            known.update(zip(todo, fresh, strict=True))
        self.report.chunks_reused += sum(1 for h in hashes if h not in todo)
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.stack([known[h] for h in hashes]).astype(np.float32, copy=False)


def _record_failure(ledger: Ledger, report: RunReport, pending: PendingDoc, error: DocumentError) -> None:
    """Quarantine one document. A previously indexed version keeps its chunks (stale beats missing);
    the new fingerprint is stored so the same broken bytes are not retried every run."""
    ref = pending.ref
    known = None if pending.is_new else ledger.document(ref.source, ref.doc_id)
    ledger.record_documents(
        [
            {
                "source": ref.source,
                "doc_id": ref.doc_id,
                "uri": ref.uri,
                "fingerprint": ref.fingerprint,
                "version": known.version if known else None,
                "title": known.title if known else None,
                "chunk_count": known.chunk_count if known else 0,
                "status": STATUS_FAILED,
                "error": error.reason,
                "run_id": report.run_id,
            }
        ]
    )
    failpoint("failure.recorded")
    report.failures.append(Failure(doc_id=ref.doc_id, uri=ref.uri, reason=error.reason))
    log.warning("failed %s: %s", ref.doc_id, error.reason)


def _in_window(ref: DocRef, since: datetime | None, until: datetime | None) -> bool:
    """Documents without a modification time are outside every window."""
    if ref.modified_at is None:
        return False
    return (since is None or ref.modified_at >= since) and (until is None or ref.modified_at < until)


def _load_listing(connector: Connector, ledger: Ledger, report: RunReport, options: SyncOptions) -> tuple[bool, str | None]:
    """Load this run's listing into the ledger: everything, or only the changes since the stored
    cursor when the connector can list changes. Returns (listing is complete, cursor to store)."""
    if options.window is not None:
        # A window is a partial listing: it never deletes, and it leaves the cursor alone.
        report.listing = "window"
        since, until = options.window
        ledger.load_listing(report.run_id, (ref for ref in connector.list() if _in_window(ref, since, until)))
        return False, None
    if not isinstance(connector, IncrementalConnector):
        ledger.load_listing(report.run_id, connector.list())
        return True, None
    next_cursor = connector.high_water_mark()  # read first: what changes during the run is seen next time
    since = None if options.full_listing else ledger.cursor(report.source)
    if since is None:
        ledger.load_listing(report.run_id, connector.list())
        return True, next_cursor
    report.listing = "changes"
    changes = connector.list_changes(since)
    ledger.load_listing(report.run_id, changes.changes)
    if changes.present_ids is None:
        return False, next_cursor
    ledger.load_present_ids(report.run_id, changes.present_ids)
    return True, next_cursor


def sync_source(
    connector: Connector,
    *,
    store: VectorStore,
    ledger: Ledger,
    embedder: Embedder,
    chunker: TokenChunker,
    options: SyncOptions = SyncOptions(),
    progress: Progress | None = None,
    preparer: Preparer | None = None,
    parse: ParseFn = parsers.parse,
) -> RunReport:
    """Bring the index in line with the source's complete listing; returns the run report.

    Raises MassDeleteRefused (after recording the refused run) when the listing would delete
    more than `options.max_delete_share` of the source's documents, and SourceBusy when another
    run of the source holds its lock past `options.lock_wait_seconds`.

    `preparer` does the fetching, parsing, chunking (and maybe embedding) of pending documents,
    e.g. on a Dask cluster; by default it happens here, parsing with `parse` (the CLI and flows pass
    ragline.isolation's worker process, with its timeout and memory cap). Only this process writes to
    the store and ledger.
    """
    preparer = preparer or InProcessPreparer(connector, chunker, parse)
    with ledger.source_lock(connector.name, wait_seconds=options.lock_wait_seconds):
        return _sync_locked(connector, store=store, ledger=ledger, embedder=embedder, chunker=chunker,
                            options=options, progress=progress, preparer=preparer)


def _sync_locked(
    connector: Connector,
    *,
    store: VectorStore,
    ledger: Ledger,
    embedder: Embedder,
    chunker: TokenChunker,
    options: SyncOptions,
    progress: Progress | None,
    preparer: Preparer,
) -> RunReport:
    progress = progress or NoProgress()
    started = time.perf_counter()
    timer = StageTimer()
    source = connector.name
    ledger.register_source(source, connector.kind, connector.location)
    spec = index_spec(embedder, chunker)
    if options.dry_run:
        if store.exists():
            store.ensure_collection(spec)  # only checks: an existing collection is never changed
    else:
        store.ensure_collection(spec)

    report = RunReport(source=source, run_id=ledger.begin_run(source, dry_run=options.dry_run), dry_run=options.dry_run)
    try:
        failpoint("sync.locked")
        with timer.stage("list"):
            complete, next_cursor = _load_listing(connector, ledger, report, options)
        failpoint("listing.loaded")
        report.skipped = [{"doc_id": p, "reason": r} for p, r in getattr(connector, "skipped", [])]
        counts = ledger.plan_counts(source, report.run_id, complete=complete, **options.work())
        report.unchanged = counts.unchanged
        report.still_failing = counts.still_failing

        if counts.known and counts.gone > options.max_delete_share * counts.known and not options.allow_mass_delete:
            report.status = "refused"
            report.message = (
                f"source {source!r}: this listing would delete {counts.gone} of its {counts.known} indexed documents "
                f"(more than {options.max_delete_share:.0%}); nothing was changed. If the documents really are gone, "
                "rerun with --allow-mass-delete."
            )
            raise MassDeleteRefused(report.message)

        if options.dry_run:
            report.plan = {
                "add": counts.new,
                "update": counts.changed,
                "unchanged": counts.unchanged,
                "delete": counts.gone,
                "sample": ledger.sample_plan(source, report.run_id, complete=complete, **options.work()),
            }
            report.status = "dry-run"
            return report

        progress.planned(source, counts.new + counts.changed + counts.gone)
        indexer = _Indexer(store=store, ledger=ledger, embedder=embedder, report=report, timer=timer,
                           progress=progress, flush_chunks=options.flush_chunks)
        touched: list[dict[str, Any]] = []
        pendings = ledger.iter_pending(source, report.run_id, **options.work())
        for outcome in preparer.run(pendings, force=options.force, timer=timer):
            pending = outcome.pending
            try:
                if outcome.failure is not None:
                    raise DocumentError(pending.ref.doc_id, outcome.failure)
                if outcome.touched:
                    # Same bytes, new mtime: remember the fingerprint, skip the work.
                    touched.append({"doc_id": pending.ref.doc_id, "fingerprint": pending.ref.fingerprint})
                    if len(touched) >= TOUCHED_BATCH:
                        with timer.stage("ledger"):
                            ledger.update_fingerprints(source, touched)
                        touched.clear()
                    report.unchanged += 1
                    progress.advance(pending.ref.doc_id, "unchanged")
                    continue
                indexer.add(outcome.document, outcome.vectors)
            except DocumentError as error:
                with timer.stage("ledger"):
                    _record_failure(ledger, report, pending, error)
                progress.advance(pending.ref.doc_id, "failed")
        indexer.flush()
        with timer.stage("ledger"):
            ledger.update_fingerprints(source, touched)
        failpoint("fingerprints.updated")

        for doc_ids in ledger.iter_gone(source, report.run_id, complete=complete):
            failpoint("gone.before")
            with timer.stage("delete"):
                ledger.check_lock(source)
                store.delete_documents(source, doc_ids)
            failpoint("gone.store_deleted")
            with timer.stage("ledger"):
                ledger.delete_documents(source, doc_ids)
            failpoint("gone.ledger_deleted")
            report.deleted += len(doc_ids)
            for doc_id in doc_ids:
                progress.advance(doc_id, "deleted")
        if report.added or report.updated or report.deleted:
            failpoint("optimize.before")
            with timer.stage("optimize"):  # the embedded engine builds its search index here
                store.optimize()
            failpoint("optimize.after")
        if next_cursor is not None:
            failpoint("cursor.before")
            ledger.set_cursor(source, next_cursor, report.run_id)
            report.cursor = next_cursor
            failpoint("cursor.after")
        report.status = "failed" if report.failures else "ok"
        return report
    except MassDeleteRefused:
        raise
    except Exception as exc:
        report.status = "error"
        report.message = f"{type(exc).__name__}: {first_line(exc)}"  # not the SQL and parameters drivers append
        raise
    finally:
        report.seconds = round(time.perf_counter() - started, 3)
        report.timings = {k: round(v, 3) for k, v in timer.seconds.items()}
        try:
            failpoint("run.finishing")
            ledger.finish_run(
                report.run_id,
                status=report.status,
                counts=report.counts(),
                seconds=report.seconds,
                report=report.to_dict(),
            )
        except Exception:  # the ledger itself may be what failed; the original error matters more
            log.exception("could not record the end of run %s", report.run_id)
