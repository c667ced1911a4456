"""Qdrant as the vector store: embedded (qdrant-client local mode, a folder) or a server by URL.

The collection records, in its metadata, the model and chunking that built it; opening it
with a different model, dimension or chunking is refused rather than mixing vectors.
Store errors are never swallowed: a failed write aborts the run.

The name a store is opened with (`collection`, the live name users know) is either a real
collection (indexes built before any re-index) or a Qdrant alias pointing at a physical
collection such as `ragline--20261204T181500` (see ragline/reindex.py). Every read and write
goes through the name, so both work the same; `for_collection` addresses another collection
with the same client (embedded mode locks its folder: a second client on it would fail).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from ragline.errors import ConfigError, IndexMismatchError
from ragline.types import Hit

POINT_NAMESPACE = uuid.UUID("6f1d7f0e-4c1b-5f5e-9a57-2b8e4f3c9d10")
INDEXED_FIELDS = ("source", "doc_id", "doc_version")
UPSERT_BATCH = 512


def point_id(source: str, doc_id: str, chunk_index: int) -> str:
    """Deterministic: rerunning a sync overwrites a chunk instead of duplicating it."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{source}:{doc_id}:{chunk_index}"))


@dataclass(frozen=True)
class IndexSpec:
    """What built a collection's vectors; two runs may share a collection only if these match."""

    model: str
    dim: int
    window: int
    chunk_tokens: int
    overlap_tokens: int


@dataclass(frozen=True)
class AliasSwitch:
    """What `QdrantStore.point_alias_at` replaced."""

    previous: str | None  # the collection the name addressed before (None: the name was free)
    previous_was_alias: bool  # True: `previous` still exists; False: it was the real collection, now deleted
    gap_seconds: float  # how long the name addressed nothing (the first re-index only)


@dataclass(frozen=True)
class Point:
    id: str
    vector: np.ndarray
    payload: dict[str, Any]


def build_filter(conditions: Mapping[str, Any] | None) -> models.Filter | None:
    """Equality on each key; a list value matches any of its items."""
    if not conditions:
        return None
    must = []
    for key, value in conditions.items():
        if isinstance(value, list | tuple | set):
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=list(value))))
        else:
            must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
    return models.Filter(must=must)


class QdrantStore:
    def __init__(
        self,
        *,
        path: str | Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        collection: str = "ragline",
    ):
        if (path is None) == (url is None):
            raise ConfigError("QdrantStore needs exactly one of path (embedded) or url (server)")
        self.collection = collection
        self.location = url or str(path)
        self.embedded = url is None
        self._owns_client = True
        if url:
            self.client = QdrantClient(url=url, api_key=api_key, timeout=60)
        else:
            Path(path).mkdir(parents=True, exist_ok=True)
            try:
                self.client = QdrantClient(path=str(path))
            except RuntimeError as exc:  # local mode holds an exclusive lock on the folder
                raise ConfigError(f"embedded Qdrant at {path} is in use by another process: {exc}") from None

    def close(self) -> None:
        """Close the client; a store made by `for_collection` leaves the shared client open."""
        if self._owns_client:
            self.client.close()

    def for_collection(self, name: str) -> QdrantStore:
        """The same store (same client, same location) addressing collection or alias `name`."""
        other = object.__new__(QdrantStore)
        other.__dict__.update(self.__dict__)
        other.collection = name
        other._owns_client = False
        return other

    # -- collection ----------------------------------------------------------------------------

    def exists(self) -> bool:
        """The name is a collection, or an alias of one."""
        if self.client.collection_exists(self.collection):
            return True
        return self.alias_target() is not None  # in case a server does not resolve aliases here

    def alias_target(self) -> str | None:
        """The physical collection the name is an alias of; None when it is no alias."""
        for alias in self.client.get_aliases().aliases:
            if alias.alias_name == self.collection:
                return alias.collection_name
        return None

    def physical_name(self) -> str | None:
        """The collection that holds the points: the alias target, the name itself, or None."""
        target = self.alias_target()
        if target is not None:
            return target
        return self.collection if self.client.collection_exists(self.collection) else None

    def collection_names(self) -> list[str]:
        """Every physical collection at this location (aliases excluded)."""
        return sorted(c.name for c in self.client.get_collections().collections)

    def drop_collection(self, name: str) -> bool:
        """Delete a physical collection (never an alias name); True when it existed."""
        if name in {a.alias_name for a in self.client.get_aliases().aliases}:
            raise ValueError(f"{name!r} is an alias, not a collection: refusing to delete through it")
        if not self.client.collection_exists(name):
            return False
        self.client.delete_collection(name)
        return True

    def point_alias_at(self, target: str) -> AliasSwitch:
        """Make this store's name an alias of the physical collection `target`.

        Alias to alias: one `update_collection_aliases` call (delete + create), atomic on the server
        and in local mode; the previous target is left in place for the caller to delete.
        Real collection to alias (the first re-index): a collection and an alias cannot share a
        name, so the real collection is deleted first and the alias created right after; between
        the two the name does not exist (`gap_seconds`) and searches find nothing. The old points
        are gone once this returns: `previous` names the deleted collection.
        """
        if target == self.collection:
            raise ValueError("an alias cannot point at a collection of its own name")
        if not self.client.collection_exists(target) or target in {a.alias_name for a in self.client.get_aliases().aliases}:
            raise ValueError(f"collection {target!r} does not exist")
        create = models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=target, alias_name=self.collection)
        )
        previous = self.alias_target()
        if previous is not None:
            self.client.update_collection_aliases(
                change_aliases_operations=[
                    models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.collection)),
                    create,
                ]
            )
            return AliasSwitch(previous=previous, previous_was_alias=True, gap_seconds=0.0)
        if not self.client.collection_exists(self.collection):  # nothing live yet
            self.client.update_collection_aliases(change_aliases_operations=[create])
            return AliasSwitch(previous=None, previous_was_alias=False, gap_seconds=0.0)
        started = time.perf_counter()
        self.client.delete_collection(self.collection)
        try:
            self.client.update_collection_aliases(change_aliases_operations=[create])
        except Exception:  # noqa: BLE001 - retried once, then raised: the name is down meanwhile
            self.client.update_collection_aliases(change_aliases_operations=[create])  # once more: the name is down
        gap = time.perf_counter() - started
        return AliasSwitch(previous=self.collection, previous_was_alias=False, gap_seconds=gap)

    def spec(self) -> IndexSpec | None:
        if not self.exists():
            return None
        meta = self.client.get_collection(self.collection).config.metadata or {}
        spec = meta.get("ragline")
        return IndexSpec(**spec) if spec else None

    def ensure_collection(self, spec: IndexSpec) -> None:
        """Create the collection for `spec`, or check that the existing one was built by it."""
        if not self.exists():
            self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(size=spec.dim, distance=models.Distance.COSINE),
                metadata={"ragline": asdict(spec)},
            )
            if not self.embedded:  # local mode scans payloads and has no indexes
                for field in INDEXED_FIELDS:
                    self.client.create_payload_index(self.collection, field, models.PayloadSchemaType.KEYWORD)
            return
        existing = self.spec()
        if existing is None:
            raise IndexMismatchError(
                f"collection {self.collection!r} at {self.location} was not built by ragline; "
                "use another collection name"
            )
        if existing != spec:
            diffs = ", ".join(
                f"{k}: collection has {v!r}, this run uses {getattr(spec, k)!r}"
                for k, v in asdict(existing).items()
                if getattr(spec, k) != v
            )
            raise IndexMismatchError(
                f"collection {self.collection!r} was built differently ({diffs}); vectors are never mixed. "
                "Index into a new collection (--collection / RAGLINE_COLLECTION) or rebuild it."
            )

    # -- writes --------------------------------------------------------------------------------

    def upsert(self, points: Sequence[Point]) -> None:
        for start in range(0, len(points), UPSERT_BATCH):
            batch = points[start : start + UPSERT_BATCH]
            self.client.upsert(
                self.collection,
                points=models.Batch(
                    ids=[p.id for p in batch],
                    vectors=[p.vector.tolist() for p in batch],
                    payloads=[p.payload for p in batch],
                ),
                wait=True,
            )

    def delete_other_versions(self, source: str, doc_id: str, keep_version: str) -> None:
        """Remove a document's chunks of every version but `keep_version` (run after upserting it)."""
        self.client.delete(
            self.collection,
            points_selector=models.FilterSelector(
                filter=models.Filter(
                    must=[
                        models.FieldCondition(key="source", match=models.MatchValue(value=source)),
                        models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id)),
                    ],
                    must_not=[models.FieldCondition(key="doc_version", match=models.MatchValue(value=keep_version))],
                )
            ),
            wait=True,
        )

    def delete_documents(self, source: str, doc_ids: Sequence[str]) -> None:
        if not doc_ids:
            return
        self.client.delete(
            self.collection,
            points_selector=models.FilterSelector(filter=build_filter({"source": source, "doc_id": list(doc_ids)})),
            wait=True,
        )

    # -- reads ---------------------------------------------------------------------------------

    def search(self, vector: np.ndarray, *, k: int = 5, filters: Mapping[str, Any] | None = None) -> list[Hit]:
        if not self.exists():
            return []
        response = self.client.query_points(
            self.collection,
            query=vector.tolist(),
            limit=k,
            query_filter=build_filter(filters),
            with_payload=True,
        )
        return [
            Hit(id=str(p.id), score=float(p.score), text=(p.payload or {}).get("text", ""), payload=p.payload or {})
            for p in response.points
        ]

    def count(self, filters: Mapping[str, Any] | None = None) -> int:
        if not self.exists():
            return 0
        return self.client.count(self.collection, count_filter=build_filter(filters), exact=True).count

    def iter_points(self, filters: Mapping[str, Any] | None = None, *, page: int = 1000) -> Iterator[tuple[str, dict]]:
        """Every (id, payload) matching `filters`, paged."""
        if not self.exists():
            return
        offset = None
        while True:
            points, offset = self.client.scroll(
                self.collection,
                scroll_filter=build_filter(filters),
                limit=page,
                offset=offset,
                with_payload=True,
                with_vectors=False,
            )
            for p in points:
                yield str(p.id), dict(p.payload or {})
            if offset is None:
                return
