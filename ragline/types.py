"""The data that flows between ragline's stages, and the protocols at each seam.

    source --list--> DocRef --fetch--> RawDocument --parse--> ParsedDocument (blocks)
        --clean--> ParsedDocument --chunk--> Chunk --embed--> vectors --upsert--> store

Every stage is a plain function or a small object behind one of the protocols
below; nothing here knows about Prefect, Qdrant or a particular model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class DocRef:
    """A cheap reference to one document of a source, produced by listing.

    `fingerprint` changes whenever the document may have changed (size and mtime,
    an ETag, a row's updated_at); it is compared with the ledger before anything
    is fetched.
    """

    source: str
    doc_id: str
    fingerprint: str
    uri: str
    size: int | None = None
    modified_at: datetime | None = None


@dataclass(frozen=True)
class RawDocument:
    """Bytes of one document plus what the parser needs to pick a format."""

    ref: DocRef
    data: bytes
    filename: str  # its suffix picks the parser; record sources render text and name it "<id>.txt"
    content_hash: str  # sha256 hex of `data`: the document's version
    metadata: Mapping[str, Any] = field(default_factory=dict)  # source-specific, stored as payload["meta"]


@dataclass(frozen=True)
class Block:
    """A run of text in reading order: a line of a PDF page, a paragraph, a heading, a table row."""

    text: str
    page: int = 1
    heading: bool = False


@dataclass
class ParsedDocument:
    title: str
    blocks: list[Block]
    page_count: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join(b.text for b in self.blocks)


@dataclass(frozen=True)
class Chunk:
    """A piece of one document sized for the embedding model's window."""

    index: int
    text: str
    token_count: int
    page_start: int
    page_end: int
    section: str | None = None


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    text: str
    payload: Mapping[str, Any]


class Connector(Protocol):
    """A source of documents. Listing must be cheap: no document bodies."""

    name: str
    kind: str  # "local", "s3", ...: with `location`, what a source name is bound to in the ledger
    location: str

    def list(self) -> Iterator[DocRef]: ...

    def fetch(self, ref: DocRef) -> RawDocument: ...


@dataclass(frozen=True)
class Deletion:
    """A document the source reports as deleted (a soft-delete flag, an archived record)."""

    doc_id: str


@dataclass
class ChangeListing:
    """What changed at a source since a cursor: a partial listing.

    `changes` holds documents created or modified since the cursor (an overlap window may
    repeat some unchanged ones: they compare equal and cost nothing) and deletions the source
    reports. `present_ids`, when given, is every doc_id the source holds now (ids only, cheap):
    documents absent from it are deleted. Without it, only reported deletions are.
    """

    changes: Iterator[DocRef | Deletion]
    present_ids: Iterator[str] | None = None


@runtime_checkable
class IncrementalConnector(Connector, Protocol):
    """A connector that can list only what changed since a stored cursor."""

    def high_water_mark(self) -> str | None:
        """The cursor to store once this run succeeds; read before listing, so nothing is skipped."""
        ...

    def list_changes(self, since: str) -> ChangeListing: ...


class TokenCounter(Protocol):
    """The embedding model's own tokenizer, as the chunker needs it."""

    max_tokens: int  # longest input, in tokens, that the model embeds without truncation

    def count_tokens(self, text: str) -> int: ...

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of each token of `text`, special tokens excluded."""
        ...


class Embedder(TokenCounter, Protocol):
    model_name: str
    dim: int
    special_tokens: int  # tokens the model adds around every input ([CLS], [SEP]); they count against the window

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...
