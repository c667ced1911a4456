"""Builds the store, ledger, embedder and chunker from Settings: the one place they are wired."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from chunkers.token_chunker import TokenChunker
from connectors.local import LocalFolderConnector
from embedders.openai_compatible import OpenAICompatibleEmbedder
from embedders.sentence_transformer import SentenceTransformerEmbedder
from ragline import parsers
from ragline.config import Settings
from ragline.errors import ConfigError, first_line
from ragline.isolation import parser_for
from ragline.ledger import Ledger
from ragline.pipeline import ParseFn
from ragline.sources import DEFAULT_CONFIG, SourceConfig, build_connector, load_sources
from ragline.types import Connector, Embedder
from stores.base import VectorStore
from stores.edge import EdgeStore
from stores.qdrant import QdrantStore


@dataclass
class Components:
    settings: Settings
    store: VectorStore
    ledger: Ledger
    embedder: Embedder
    chunker: TokenChunker
    parse: ParseFn  # in a worker process with a timeout and memory cap, unless RAGLINE_PARSE_ISOLATION=false


def build_embedder(settings: Settings) -> Embedder:
    """The OpenAI-compatible endpoint when RAGLINE_EMBED_BASE_URL is set, else the local model.

    For an endpoint, RAGLINE_EMBED_MODEL, RAGLINE_EMBED_DIM and RAGLINE_EMBED_TOKENIZER are
    required. The window is settings.model_window, whose default (256) is MiniLM's: a hosted
    model needs its own, e.g. RAGLINE_MODEL_WINDOW=8191 for text-embedding-3-small, or its
    chunks stay MiniLM-sized. Cheap: nothing is loaded or called here.
    """
    if settings.embed_base_url:
        model, dim, tokenizer = settings.embed_model, settings.embed_dim, settings.embed_tokenizer
        missing = [name for name, value in (("RAGLINE_EMBED_MODEL", model), ("RAGLINE_EMBED_DIM", dim),
                                            ("RAGLINE_EMBED_TOKENIZER", tokenizer)) if not value]
        if not model or dim is None or tokenizer is None:
            raise ConfigError(
                f"RAGLINE_EMBED_BASE_URL is set, so {', '.join(missing)} must be set too "
                "(the endpoint's model name, its vector size, and a local tokenizer folder that counts its tokens)"
            )
        return OpenAICompatibleEmbedder(
            settings.embed_base_url,
            model,
            dim=dim,
            tokenizer=tokenizer,
            max_tokens=settings.model_window,
            api_key=settings.embed_api_key.get_secret_value() if settings.embed_api_key else None,
            batch_size=settings.embed_batch_size,
            tokens_per_minute=settings.embed_tokens_per_minute,
        )
    return SentenceTransformerEmbedder(
        settings.model_path, max_tokens=settings.model_window, batch_size=settings.embed_batch_size,
        backend=settings.embed_backend,
    )


def build_chunker(settings: Settings, embedder: Embedder) -> TokenChunker:
    return TokenChunker(
        embedder,
        chunk_tokens=settings.chunk_tokens,
        overlap_tokens=settings.overlap_tokens,
        special_tokens=embedder.special_tokens,
        anchored=settings.anchored_chunks,
    )


def build_store(settings: Settings) -> VectorStore:
    """A Qdrant server when QDRANT_URL is set; else the embedded engine in the data dir."""
    if settings.qdrant_url:
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantStore(url=settings.qdrant_url, api_key=api_key, collection=settings.collection)
    if settings.embedded_engine == "local":
        return QdrantStore(path=settings.qdrant_path, collection=settings.collection)
    local_mode = settings.data_dir / "qdrant"
    if not settings.qdrant_path.exists() and (local_mode / "collection").is_dir():
        raise ConfigError(
            f"{settings.data_dir} holds an index built with qdrant-client's local mode ({local_mode}); the embedded "
            "default is now Qdrant Edge. Keep using that index with RAGLINE_EMBEDDED_ENGINE=local, or move it aside "
            "and ingest again (the ledger in the data dir must go with it)."
        )
    return EdgeStore(path=settings.qdrant_path, collection=settings.collection)


CHUNKING_FIELDS = frozenset({"chunk_tokens", "overlap_tokens", "model_window"})


def chunking_of_collection(settings: Settings, store: VectorStore) -> Settings:
    """The collection records the chunking that built it: unless this run names its own
    (flag or environment), later runs use the collection's, so an index rebuilt with another
    chunking is synced with that chunking, not refused for it."""
    spec = store.spec()
    if spec is None or CHUNKING_FIELDS & settings.model_fields_set:
        return settings
    return settings.model_copy(
        update={"chunk_tokens": spec.chunk_tokens, "overlap_tokens": spec.overlap_tokens, "model_window": spec.window}
    )


def ledger_location(settings: Settings) -> str:
    """The ledger database as it may be shown: dialect, host, port and database, never a user or password."""
    try:
        url = make_url(settings.resolved_ledger_url)
    except (ArgumentError, ValueError):
        return "(the configured RAGLINE_LEDGER_URL, not shown: it is not a valid SQLAlchemy URL)"
    port = f":{url.port}" if url.port else ""
    return f"{url.drivername}://{url.host or ''}{port}/{url.database or ''}"


def store_location(settings: Settings) -> str:
    """The vector store as it may be shown: a Qdrant server's URL without credentials or query, or the folder."""
    if settings.qdrant_url:
        parts = urlsplit(settings.qdrant_url)
        host = parts.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
        return f"the Qdrant server at {urlunsplit((parts.scheme, netloc, parts.path, '', ''))}"
    return f"the embedded store at {settings.qdrant_path}"


def open_ledger(settings: Settings) -> Ledger:
    """The ledger. A database that cannot be opened (wrong URL, server down, no such database, no
    driver) is a ConfigError naming the database without its credentials, not a driver traceback."""
    try:
        return Ledger(settings.resolved_ledger_url)
    except (SQLAlchemyError, ValueError) as exc:
        raise ConfigError(
            f"cannot open the ledger database {ledger_location(settings)}: {type(exc).__name__}: {first_line(exc)} "
            "(check RAGLINE_LEDGER_URL and that the database server is up)"
        ) from None


@contextmanager
def open_storage(settings: Settings) -> Iterator[tuple[Ledger, VectorStore]]:
    """The ledger and the store, both closed on the way out, whatever fails."""
    ledger = open_ledger(settings)
    try:
        store = build_store(settings)
    except BaseException:
        ledger.close()
        raise
    try:
        yield ledger, store
    finally:
        store.close()
        ledger.close()


@contextmanager
def open_components(settings: Settings) -> Iterator[Components]:
    """Cheap to enter: the model loads on first embed, not here. A chunk size the model cannot
    hold fails here, before any work."""
    build_chunker(settings, build_embedder(settings))  # fail fast on the settings as given
    with open_storage(settings) as (ledger, store):
        settings = chunking_of_collection(settings, store)
        embedder = build_embedder(settings)
        chunker = build_chunker(settings, embedder)
        with parser_for(settings) as parse:
            yield Components(settings=settings, store=store, ledger=ledger, embedder=embedder, chunker=chunker,
                             parse=parse)


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


def configured_sources(config: Path | None) -> dict[str, SourceConfig]:
    """Sources of the config file: the one given, else ./ragline.yaml if it exists, else none."""
    if config is not None:
        return load_sources(config)
    return load_sources(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else {}


def connectors_for(
    components: Components,
    *,
    folder: str | Path | None = None,
    source: str | None = None,
    config: Path | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[Connector]:
    """What a sync covers: a folder given; else the named source (config file first, then a folder
    indexed before); else every configured source, or every folder indexed before."""
    settings = components.settings
    if folder is not None:
        return [local_connector(settings, folder, name=source, include=include, exclude=exclude)]
    configured = configured_sources(config)
    known_local = {s["name"]: s["location"] for s in components.ledger.sources() if s["kind"] == "local"}
    if source is not None:
        if source in configured:
            return [build_connector(source, configured[source])]
        if source in known_local:
            return [local_connector(settings, known_local[source], name=source, include=include, exclude=exclude)]
        raise ConfigError(
            f"no source named {source!r} in the config file or in {settings.data_dir}; "
            "give its folder (ragline ingest FOLDER) or add it to ragline.yaml"
        )
    if configured:
        return [build_connector(name, cfg) for name, cfg in configured.items()]
    if known_local:
        return [local_connector(settings, loc, name=name, include=include, exclude=exclude) for name, loc in known_local.items()]
    raise ConfigError("nothing to ingest: give a folder (ragline ingest FOLDER) or a config file (--config)")
