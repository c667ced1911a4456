"""Builds the store, ledger, embedder and chunker from Settings: the one place they are wired."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from collections.abc import Sequence
from pathlib import Path

from chunkers.token_chunker import TokenChunker
from connectors.local import LocalFolderConnector
from ragline import parsers
from embedders.sentence_transformer import SentenceTransformerEmbedder
from ragline.config import Settings
from ragline.ledger import Ledger
from stores.qdrant import QdrantStore


@dataclass
class Components:
    settings: Settings
    store: QdrantStore
    ledger: Ledger
    embedder: SentenceTransformerEmbedder
    chunker: TokenChunker


def build_embedder(settings: Settings) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(
        settings.model_path, max_tokens=settings.model_window, batch_size=settings.embed_batch_size
    )


def build_chunker(settings: Settings, embedder: SentenceTransformerEmbedder) -> TokenChunker:
    return TokenChunker(
        embedder,
        chunk_tokens=settings.chunk_tokens,
        overlap_tokens=settings.overlap_tokens,
        special_tokens=embedder.special_tokens,
    )


def build_store(settings: Settings) -> QdrantStore:
    if settings.qdrant_url:
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantStore(url=settings.qdrant_url, api_key=api_key, collection=settings.collection)
    return QdrantStore(path=settings.qdrant_path, collection=settings.collection)


@contextmanager
def open_components(settings: Settings) -> Iterator[Components]:
    """Cheap to enter: the model loads on first embed, not here.
    The chunker is built first so a chunk size the model cannot hold fails before anything opens."""
    embedder = build_embedder(settings)
    chunker = build_chunker(settings, embedder)
    ledger = Ledger(settings.resolved_ledger_url)
    try:
        store = build_store(settings)
    except BaseException:
        ledger.close()
        raise
    try:
        yield Components(settings=settings, store=store, ledger=ledger, embedder=embedder, chunker=chunker)
    finally:
        store.close()
        ledger.close()


def local_connector(
    settings: Settings,
    root: str | Path,
    *,
    name: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> LocalFolderConnector:
    """A folder source that lists only files ragline can parse."""
    return LocalFolderConnector(
        root,
        name=name,
        include=include or ("**/*",),
        exclude=exclude,
        accept=parsers.is_supported,
        max_file_bytes=settings.max_file_bytes,
    )
