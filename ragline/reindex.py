"""Blue/green re-index: rebuild every source into a new collection, check it, switch an alias.

    live name "ragline" ──alias──> ragline--20261204T181500   (queries keep using it)
                                   ragline--20261211T090000   (being built, then checked)

1. The new spec (model, window, chunking) is built first: a chunk size the model cannot hold
   is refused (ConfigError) before anything is opened.
2. Every source the live ledger knows is rebuilt with the normal pipeline (`sync_source`,
   full listing) into a new physical collection `<live>--<UTC timestamp>`, against a scratch
   ledger `<data_dir>/reindex/<timestamp>/ledger.db`. Queries and syncs keep using the live
   name and the live ledger meanwhile.
3. Check: the new collection's point count equals the scratch ledger's chunk total (and is > 0
   unless the sources are empty), its spec is the new one, no document the live index holds
   failed to rebuild, and a sample of searches (document titles) find hits in it.
4. Switch, holding every source's lock (no sync writes meanwhile): in one ledger transaction
   the live ledger's documents and cursors of those sources are replaced by the scratch
   ledger's, and, before it commits, the alias is pointed at the new collection in one
   `update_collection_aliases` call. Then the previous physical collection is deleted.

Failure anywhere before the switch deletes the new collection and raises ReindexFailed: the
live alias or collection and the live ledger are untouched.

The first re-index of an index built before aliases existed migrates a real collection to an
alias: Qdrant cannot rename a collection, and an alias cannot take the name of one, so the real
collection is deleted and the alias created right after. In between (`gap_seconds` in the report,
milliseconds in embedded mode; deleting the old collection's files is most of it) the live name
does not exist and searches return nothing. Later re-indexes switch alias to alias atomically.

Syncs that ran during the rebuild wrote to the old collection and the live ledger; the switch
replaces both, and the next sync catches up with anything that changed since the rebuild listed
its source. A source first synced during the rebuild makes the switch refuse (rerun the re-index).
"""

from __future__ import annotations

import logging
import shutil
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ragline.components import (
    build_chunker,
    build_embedder,
    configured_sources,
    local_connector,
    open_storage,
)
from ragline.config import Settings
from ragline.errors import ConfigError, RaglineError
from ragline.isolation import parser_for
from ragline.ledger import STATUS_FAILED, STATUS_INDEXED, Ledger
from ragline.pipeline import Progress, RunReport, SyncOptions, index_spec, sync_source
from ragline.sources import build_connector
from ragline.types import Connector, Embedder
from stores.base import VectorStore
from stores.qdrant import IndexSpec

log = logging.getLogger(__name__)

SEPARATOR = "--"


class ReindexFailed(RaglineError):
    """The rebuild or its check failed; the live index and ledger were left as they were."""


@dataclass
class ReindexReport:
    alias: str  # the live name
    old_collection: str | None  # the physical collection the live name addressed before
    new_collection: str
    spec_before: IndexSpec | None
    spec_after: IndexSpec
    documents: int  # indexed documents in the new collection
    points: int
    points_before: int
    seconds: float
    migrated: bool = False  # the live name was a real collection, now an alias (first re-index)
    gap_seconds: float = 0.0  # how long the live name addressed nothing (first re-index only)
    old_deleted: bool = False
    sample_queries: int = 0
    sample_top_hits: int = 0  # sample queries whose own document came first
    runs: list[RunReport] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["runs"] = [r.to_dict() for r in self.runs]
        return data


def physical_name(alias: str, now: datetime | None = None) -> str:
    return f"{alias}{SEPARATOR}{(now or datetime.now(UTC)).strftime('%Y%m%dT%H%M%S')}"


def _new_collection_name(store: VectorStore, alias: str) -> str:
    base = physical_name(alias)
    taken = set(store.collection_names()) | {alias}
    name, n = base, 1
    while name in taken:  # two re-indexes within a second (tests) or a leftover of a crashed one
        n += 1
        name = f"{base}-{n}"
    return name


def rebuild_connectors(settings: Settings, ledger: Ledger, config: Path | None = None) -> list[Connector]:
    """A connector for every source the live ledger knows: from the config file when it names
    the source, else a folder indexed before. A source that cannot be rebuilt is refused, since
    its documents would vanish from the new collection."""
    configured = configured_sources(config)
    connectors: list[Connector] = []
    missing = []
    for source in ledger.sources():
        name = source["name"]
        if name in configured:
            connectors.append(build_connector(name, configured[name]))
        elif source["kind"] == "local":
            connectors.append(local_connector(settings, source["location"], name=name))
        else:
            missing.append(f"{name} ({source['kind']} {source['location']})")
    if missing:
        for c in connectors:
            getattr(c, "close", lambda: None)()
        raise ConfigError(
            "cannot rebuild these sources: they are not in the config file (--config / ragline.yaml): "
            + ", ".join(missing)
        )
    return connectors


def reindex(
    settings: Settings,
    *,
    model_path: str | Path | None = None,
    model_window: int | None = None,
    chunk_tokens: int | None = None,
    overlap_tokens: int | None = None,
    config: Path | None = None,
    progress: Progress | None = None,
    sample_queries: int = 5,
    lock_wait_seconds: float = 600.0,
    embedder: Embedder | None = None,
) -> ReindexReport:
    """Rebuild the index with a new model and/or chunking and switch to it (see module docstring).

    Parameters left None keep the current settings. `embedder`, when given, is used as the new
    model instead of loading `model_path` (a caller that already holds it loaded). Raises
    ConfigError (bad parameters, a source that cannot be rebuilt, nothing indexed yet),
    ReindexFailed (the rebuild or its check failed; nothing live changed) or SourceBusy (a sync
    held a source's lock longer than `lock_wait_seconds` at the switch; nothing live changed).
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    updates: dict[str, Any] = {
        k: v
        for k, v in {"model_path": model_path, "model_window": model_window,
                     "chunk_tokens": chunk_tokens, "overlap_tokens": overlap_tokens}.items()
        if v is not None
    }
    new_settings = settings.model_copy(update=updates)  # the chunker below validates the sizes
    new_embedder = embedder or build_embedder(new_settings)
    new_chunker = build_chunker(new_settings, new_embedder)  # refuses a chunk the model cannot hold
    new_spec = index_spec(new_embedder, new_chunker)

    alias = settings.collection
    with open_storage(settings) as (ledger, store):
        live_physical = store.physical_name()
        if live_physical is None:
            raise ConfigError(f"nothing to re-index: collection {alias!r} does not exist at {store.location}")
        spec_before = store.spec()
        points_before = store.count()
        connectors = rebuild_connectors(settings, ledger, config)
        if not connectors:
            raise ConfigError(f"nothing to re-index: the ledger at {settings.resolved_ledger_url} knows no source")
        names = [c.name for c in connectors]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        scratch_dir = settings.data_dir / "reindex" / stamp
        new_name = _new_collection_name(store, alias)
        new_store = store.for_collection(new_name)
        scratch = Ledger(f"sqlite:///{(scratch_dir / 'ledger.db').resolve()}")
        report = ReindexReport(alias=alias, old_collection=live_physical, new_collection=new_name,
                               spec_before=spec_before, spec_after=new_spec, documents=0, points=0,
                               points_before=points_before, seconds=0.0)
        try:
            try:
                with _timed(timings, "rebuild"):
                    new_store.ensure_collection(new_spec)
                    _rebuild(connectors, new_store, scratch, new_embedder, new_chunker, new_settings, progress, report)
                with _timed(timings, "check"):
                    _check(new_store, scratch, ledger, names, new_spec, new_embedder, sample_queries, report)
                with _timed(timings, "switch"):
                    _switch(store, new_store, ledger, scratch, names, lock_wait_seconds, report)
            except BaseException as exc:
                if _switched(store, new_name):  # the ledger commit failed after the alias moved (a migration)
                    raise ReindexFailed(
                        f"re-index of {alias!r}: the live name now addresses {new_name!r} but the ledger update "
                        f"failed ({type(exc).__name__}: {exc}); the next sync of each source reconciles it"
                    ) from exc
                _discard(store, new_name)
                if isinstance(exc, ReindexFailed | ConfigError) or not isinstance(exc, Exception):
                    raise
                raise ReindexFailed(
                    f"re-index of {alias!r} failed: {type(exc).__name__}: {exc}. The live index and ledger "
                    f"are unchanged; the new collection {new_name!r} was deleted."
                ) from exc
        finally:
            scratch.close()
            shutil.rmtree(scratch_dir, ignore_errors=True)
            for c in connectors:
                getattr(c, "close", lambda: None)()
        with _timed(timings, "delete_old"):
            if report.old_collection and not report.migrated:
                try:
                    report.old_deleted = store.drop_collection(report.old_collection)
                except Exception:  # the switch is done; a leftover collection only costs disk
                    log.exception("could not delete the previous collection %s", report.old_collection)
            else:
                report.old_deleted = report.migrated
        report.seconds = round(time.perf_counter() - started, 3)
        report.timings = {k: round(v, 3) for k, v in timings.items()}
        return report


class _timed:
    def __init__(self, timings: dict[str, float], name: str):
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.start


def _rebuild(connectors, new_store, scratch, embedder, chunker, settings, progress, report) -> None:
    options = SyncOptions(full_listing=True, allow_mass_delete=True, flush_chunks=settings.flush_chunks)
    with parser_for(settings) as parse:
        for connector in connectors:
            try:
                run = sync_source(connector, store=new_store, ledger=scratch, embedder=embedder, chunker=chunker,
                                  options=options, progress=progress, parse=parse)
            except Exception as exc:
                raise ReindexFailed(
                    f"re-index of {report.alias!r} failed while rebuilding source {connector.name!r}: "
                    f"{type(exc).__name__}: {exc}. The live index and ledger are unchanged; the new collection "
                    f"{report.new_collection!r} was deleted."
                ) from exc
            report.runs.append(run)


def _check(new_store, scratch, ledger, names, spec, embedder, sample_queries, report) -> None:
    def refuse(why: str) -> None:
        raise ReindexFailed(
            f"re-index of {report.alias!r} failed its check: {why}. The live index and ledger are unchanged; "
            f"the new collection {report.new_collection!r} was deleted."
        )

    if new_store.spec() != spec:
        refuse(f"collection {report.new_collection!r} has spec {new_store.spec()}, expected {spec}")
    summaries = {name: scratch.source_summary(name) for name in names}
    expected = sum(s["chunks"] for s in summaries.values())
    documents = sum(s["documents"] for s in summaries.values())
    points = new_store.count()
    report.documents, report.points = documents, points
    if points != expected:
        refuse(f"the new collection holds {points} points, the rebuild recorded {expected} chunks")
    if documents and not points:
        refuse(f"{documents} documents were rebuilt into no points")
    if not points and report.points_before:
        refuse(f"the sources listed nothing to index, while the live index holds {report.points_before} points "
               "(a folder not mounted? an empty bucket?)")
    # A document the live index holds that failed to rebuild would vanish from search.
    lost = []
    for name in names:
        live_ok = {d.doc_id for d in ledger.documents(name) if d.status == STATUS_INDEXED and d.chunk_count}
        lost += [f"{name}:{d.doc_id}" for d in scratch.documents(name) if d.status == STATUS_FAILED and d.doc_id in live_ok]
    if lost:
        refuse(f"{len(lost)} documents indexed now failed to rebuild ({', '.join(lost[:10])})")
    # A sample of searches: each document's title must find that document's chunks.
    sample = [d for name in names for d in scratch.documents(name) if d.status == STATUS_INDEXED and d.title]
    sample = sample[:: max(1, len(sample) // sample_queries)][:sample_queries] if sample_queries > 0 else []
    if sample:
        vectors = embedder.embed([d.title for d in sample])
        for doc, vector in zip(sample, vectors, strict=True):
            hits = new_store.search(vector, k=5)
            if not hits:
                refuse(f"searching {doc.title!r} found nothing")
            if not new_store.search(vector, k=1, filters={"source": doc.source, "doc_id": doc.doc_id}):
                refuse(f"searching {doc.title!r} found no chunk of {doc.source}:{doc.doc_id}")
            report.sample_top_hits += hits[0].payload.get("doc_id") == doc.doc_id
        report.sample_queries = len(sample)


def _switch(store, new_store, ledger, scratch, names, lock_wait_seconds, report) -> None:
    with ExitStack() as locks:
        for name in sorted(names):
            locks.enter_context(ledger.source_lock(name, wait_seconds=lock_wait_seconds))
        added = sorted({s["name"] for s in ledger.sources()} - set(names))
        if added:
            raise ReindexFailed(
                f"re-index of {report.alias!r} refused to switch: sources {added} were first synced during the "
                f"rebuild and are not in the new collection {report.new_collection!r} (deleted). Rerun the re-index."
            )
        state = scratch.export_sources(names)

        def point_alias() -> None:
            switch = store.point_alias_at(report.new_collection)
            report.old_collection = switch.previous
            report.migrated = switch.previous is not None and not switch.previous_was_alias
            report.gap_seconds = round(switch.gap_seconds, 6)

        # The alias moves inside the ledger transaction: if it fails, the ledger rolls back.
        try:
            ledger.replace_sources(names, state, before_commit=point_alias)
        except BaseException:
            # The commit failed after the alias moved: move it back when the old collection still exists.
            if store.alias_target() == report.new_collection and report.old_collection and not report.migrated:
                store.point_alias_at(report.old_collection)
            raise


def _switched(store: VectorStore, name: str) -> bool:
    try:
        return store.alias_target() == name
    except Exception:  # noqa: BLE001 - the store itself may be what failed
        return False


def _discard(store: VectorStore, name: str) -> None:
    """Delete the collection a failed re-index built, unless the live name already addresses it."""
    try:
        if store.alias_target() == name:
            log.error("re-index failed after the switch: %r stays live (the ledger catches up on the next sync)", name)
            return
        store.drop_collection(name)
    except Exception:  # the original error matters more
        log.exception("could not delete the collection %s of a failed re-index", name)
