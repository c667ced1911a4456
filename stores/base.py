"""The store seam: what the pipeline, re-index, CLI and query service ask of a vector store.

Two engines implement it with the same behaviour and the same payloads: `stores.qdrant.QdrantStore`
(qdrant-client: a Qdrant server by URL, the production path, or its pure-Python local mode) and
`stores.edge.EdgeStore` (Qdrant Edge, Qdrant's engine in this process: the embedded default).
`ragline.components.build_store` picks one from Settings.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ragline.types import Hit
from stores.qdrant import AliasSwitch, IndexSpec, Point, SearchFilters

Filters = SearchFilters | Mapping[str, Any] | None


class VectorStore(Protocol):
    collection: str  # the live name: a collection or an alias of one
    location: str  # URL or folder, for messages
    embedded: bool  # in this process (one process at a time on a folder)

    def close(self) -> None: ...

    def for_collection(self, name: str) -> VectorStore: ...

    def exists(self) -> bool: ...

    def alias_target(self) -> str | None: ...

    def physical_name(self) -> str | None: ...

    def collection_names(self) -> list[str]: ...

    def drop_collection(self, name: str) -> bool: ...

    def point_alias_at(self, target: str) -> AliasSwitch: ...

    def spec(self) -> IndexSpec | None: ...

    def ensure_collection(self, spec: IndexSpec) -> None: ...

    def upsert(self, points: Sequence[Point]) -> None: ...

    def delete_other_versions(self, source: str, doc_id: str, keep_version: str) -> None: ...

    def delete_documents(self, source: str, doc_ids: Sequence[str]) -> None: ...

    def optimize(self) -> None: ...

    def search(self, vector: np.ndarray, *, k: int = 5, filters: Filters = None) -> list[Hit]: ...

    def count(self, filters: Filters = None) -> int: ...

    def iter_points(self, filters: Filters = None, *, page: int = 1000) -> Iterator[tuple[str, dict]]: ...

    def chunk_vectors(self, source: str, doc_ids: Sequence[str]) -> dict[str, np.ndarray]: ...
