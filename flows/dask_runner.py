"""Scale-out: prepare and embed pending documents on a Dask cluster (the flows' `DaskTaskRunner`).

The driver (the process running the sync) lists, plans, and is the only one that writes to the
store and the ledger (the embedded Qdrant store is locked to one process). Workers get batches of
pending documents; each worker rebuilds the connector from a small recipe, keeps one embedder and
chunker per model and chunking in a module-level cache (so the model loads once per worker
process, not once per task), fetches, hash-compares, parses, cleans, chunks and embeds, and sends
back the outcomes with their vectors. Results are consumed in submission order, so the writes,
and the final state, are those of a single-process run.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragline.ledger import PendingDoc
from ragline.isolation import build_parser
from ragline.pipeline import Outcome, ParseFn, StageTimer, prepare_one
from ragline.types import Connector

DEFAULT_BATCH_DOCS = 32


@dataclass(frozen=True)
class ModelRecipe:
    """What a worker needs to build the embedder, chunker and parser the driver uses (hashable: the cache key)."""

    model_path: str | None
    model_window: int
    embed_batch_size: int
    chunk_tokens: int
    overlap_tokens: int
    embed_backend: str = "torch"
    anchored_chunks: bool = True
    parse_isolation: bool = True
    parse_timeout_seconds: float = 120.0
    parse_memory_mb: int = 2048

    @classmethod
    def from_settings(cls, settings: Any) -> ModelRecipe:
        return cls(
            model_path=str(settings.model_path) if settings.model_path else None,
            model_window=settings.model_window,
            embed_batch_size=settings.embed_batch_size,
            chunk_tokens=settings.chunk_tokens,
            overlap_tokens=settings.overlap_tokens,
            embed_backend=settings.embed_backend,
            anchored_chunks=settings.anchored_chunks,
            parse_isolation=settings.parse_isolation,
            parse_timeout_seconds=settings.parse_timeout_seconds,
            parse_memory_mb=settings.parse_memory_mb,
        )


@dataclass(frozen=True)
class ConnectorRecipe:
    """How a worker rebuilds the driver's connector: a local folder, or a source of a config file."""

    kind: str  # "local" | "config"
    name: str
    root: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_file_bytes: int | None = None
    config: str | None = None

    @classmethod
    def of(cls, connector: Connector, config: str | Path | None = None) -> ConnectorRecipe:
        from connectors.local import LocalFolderConnector

        if isinstance(connector, LocalFolderConnector):
            return cls(kind="local", name=connector.name, root=str(connector.root), include=connector.include,
                       exclude=connector.exclude, max_file_bytes=connector.max_file_bytes)
        from ragline.errors import ConfigError
        from ragline.sources import DEFAULT_CONFIG

        if config is None and DEFAULT_CONFIG.exists():
            config = DEFAULT_CONFIG
        if config is None:
            raise ConfigError(f"source {connector.name!r}: only local folders and sources of a config file run on Dask")
        return cls(kind="config", name=connector.name, config=str(Path(config).resolve()))

    def build(self) -> Connector:
        from ragline import parsers

        if self.kind == "local":
            from connectors.local import LocalFolderConnector

            kwargs = {} if self.max_file_bytes is None else {"max_file_bytes": self.max_file_bytes}
            return LocalFolderConnector(self.root, name=self.name, include=self.include, exclude=self.exclude,
                                        accept=parsers.is_supported, **kwargs)
        from ragline.sources import build_connector, load_sources

        return build_connector(self.name, load_sources(Path(self.config))[self.name])


# --- worker side: one embedder/chunker per model recipe, one connector per recipe, per process ---

_LOCK = threading.Lock()
_MODELS: dict[ModelRecipe, tuple[Any, Any]] = {}
_CONNECTORS: dict[ConnectorRecipe, Connector] = {}
_PARSERS: dict[tuple[ModelRecipe, int], ParseFn] = {}  # by recipe and worker thread
_STATS = {"model_loads": 0, "batches": 0, "documents": 0}


def _model(recipe: ModelRecipe) -> tuple[Any, Any]:
    with _LOCK:
        if recipe not in _MODELS:
            from ragline.components import build_chunker, build_embedder
            from ragline.config import Settings
            from ragline.offline import enforce_offline

            enforce_offline()
            settings = Settings(model_path=recipe.model_path, model_window=recipe.model_window,
                                embed_batch_size=recipe.embed_batch_size, chunk_tokens=recipe.chunk_tokens,
                                overlap_tokens=recipe.overlap_tokens, embed_backend=recipe.embed_backend,
                                anchored_chunks=recipe.anchored_chunks)
            embedder = build_embedder(settings)
            chunker = build_chunker(settings, embedder)
            embedder.model  # noqa: B018 - load the weights now, once
            _STATS["model_loads"] += 1
            _MODELS[recipe] = (embedder, chunker)
        return _MODELS[recipe]


def _parser(recipe: ModelRecipe) -> ParseFn:
    """One parse worker per Dask worker thread, kept for every batch (stopped at exit): a parse worker
    takes one file at a time, so threads sharing one would parse in turn."""
    key = (recipe, threading.get_ident())
    with _LOCK:
        if key not in _PARSERS:
            _PARSERS[key] = build_parser(recipe)
        return _PARSERS[key]


def _connector(recipe: ConnectorRecipe) -> Connector:
    with _LOCK:
        if recipe not in _CONNECTORS:
            _CONNECTORS[recipe] = recipe.build()
        return _CONNECTORS[recipe]


def prepare_batch(connector: ConnectorRecipe, model: ModelRecipe, batch: list[PendingDoc],
                  force: bool) -> tuple[list[Outcome], dict[str, float]]:
    """Runs on a worker: the outcomes of one batch, prepared documents embedded in one call
    (the embedder sorts by length), and the worker's stage seconds."""
    embedder, chunker = _model(model)
    parse = _parser(model)
    source = _connector(connector)
    timer = StageTimer()
    outcomes = [prepare_one(source, chunker, pending, force=force, timer=timer, parse=parse) for pending in batch]
    prepared = [o for o in outcomes if o.document is not None]
    texts = [c.text for o in prepared for c in o.document.chunks]
    if texts:
        with timer.stage("embed"):
            vectors = embedder.embed(texts)
        row = 0
        for o in prepared:
            n = len(o.document.chunks)
            o.vectors = vectors[row:row + n].copy()
            row += n
    with _LOCK:
        _STATS["batches"] += 1
        _STATS["documents"] += len(batch)
    return outcomes, dict(timer.seconds)


def warm_up(model: ModelRecipe) -> dict[str, Any]:
    """Load the model on this worker now (run on every worker with `client.run(warm_up, recipe)`)."""
    _model(model)
    return worker_stats()


def worker_stats() -> dict[str, Any]:
    """This worker process's counters (run on every worker with `client.run(worker_stats)`)."""
    with _LOCK:
        return {"pid": os.getpid(), **_STATS, "models_cached": len(_MODELS)}


# --- driver side ---


@dataclass
class DaskPreparer:
    """A `Preparer` that sends batches of pending documents to a Dask cluster, keeps `max_in_flight`
    batches queued, and yields the outcomes in the order the documents came."""

    address: str
    connector: ConnectorRecipe
    model: ModelRecipe
    batch_docs: int = DEFAULT_BATCH_DOCS
    max_in_flight: int | None = None  # default: two batches per worker thread
    client: Any = field(default=None, repr=False)

    def _client(self):
        if self.client is None:
            import distributed

            self.client = distributed.Client(self.address, set_as_default=False)
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def __enter__(self) -> DaskPreparer:
        self._client()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def run(self, pending: Iterable[PendingDoc], *, force: bool, timer: StageTimer) -> Iterator[Outcome]:
        client = self._client()
        limit = self.max_in_flight or max(2, 2 * sum(client.nthreads().values()))
        futures: deque = deque()

        def batches() -> Iterator[list[PendingDoc]]:
            batch: list[PendingDoc] = []
            for doc in pending:
                batch.append(doc)
                if len(batch) >= self.batch_docs:
                    yield batch
                    batch = []
            if batch:
                yield batch

        def collect() -> list[Outcome]:
            with timer.stage("dask-wait"):
                outcomes, seconds = futures.popleft().result()
            for stage, value in seconds.items():
                timer.seconds[f"worker-{stage}"] += value
            return outcomes

        for batch in batches():
            futures.append(client.submit(prepare_batch, self.connector, self.model, batch, force, pure=False))
            while len(futures) >= limit:
                yield from collect()
        while futures:
            yield from collect()


def runner_address() -> str | None:
    """The scheduler address of the running flow's DaskTaskRunner, if it has one."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    runner = getattr(context, "task_runner", None) if context else None
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        return None
    if not isinstance(runner, DaskTaskRunner):
        return None
    return runner.client.scheduler.address


def dask_task_runner(address: str | None = None, workers: int = 0):
    """`DaskTaskRunner` for an existing cluster (`address`) or a LocalCluster of `workers` processes."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                        "dashboard_address": None},
    )
