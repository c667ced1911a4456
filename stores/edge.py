"""Qdrant Edge as the embedded store: Qdrant's own engine (segments, WAL, HNSW, payload indexes)
running inside this process, in a folder. It replaced qdrant-client's local mode as the embedded
default because local mode is a pure-Python stand-in: it loads every point into memory when opened
and searches by brute force in Python (BENCHMARKS.md has both measured). The server path
(`QdrantStore` against QDRANT_URL) is unchanged, and so is every point's payload.

Edge runs one shard; ragline needs collections and aliases (the blue/green re-index), so this module
keeps one shard per collection and the aliases in a JSON file beside them:

    <path>/.lock                      held (flock) while a store is open: one process at a time
    <path>/aliases.json               {"ragline": "ragline--20261204T181500"}, replaced atomically
    <path>/collections/<name>/spec.json   the IndexSpec that built it, written last
    <path>/collections/<name>/shard/      the Edge shard

A collection exists once its spec.json does; a folder without one is what a crash during creation
left behind and is cleared when the name is created again. Reads, writes, filters and errors
behave as `QdrantStore`'s (tests/stores run the same contract against both).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as edge
from qdrant_client import models

from ragline.errors import ConfigError
from ragline.failpoints import failpoint
from ragline.types import Hit
from stores.qdrant import (
    FLOAT_INDEXED_FIELDS,
    KEYWORD_INDEXED_FIELDS,
    AliasSwitch,
    IndexSpec,
    Point,
    SearchFilters,
    build_filter,
    check_spec,
    other_versions_filter,
)

UPSERT_BATCH = 1000
# A long sync builds the index of what it wrote every OPTIMIZE_EVERY points instead of all at the end:
# building a segment holds its vectors and payloads in memory, so one build over a whole 10k-document
# corpus would cost about 10 KiB a point at once (2.2 GB at 200k points, bench/memory.py). Segments
# stay under MAX_SEGMENT_KB so the optimizer does not merge them back into one big build.
OPTIMIZE_EVERY = 25_000
MAX_SEGMENT_KB = 64 * 1024
_MADV_DONTNEED = 4
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _name(name: str) -> str:
    if not _NAME.fullmatch(name) or len(name) > 200:
        raise ConfigError(
            f"collection name {name!r}: use letters, digits, '_', '-' and '.', not starting with '.' or '-'"
        )
    return name


# -- filters: ragline's filter language (stores.qdrant.build_filter) in Edge's own types ------------

def _edge_match(match: Any) -> Any:
    if isinstance(match, models.MatchValue):
        return edge.MatchValue(match.value)
    if isinstance(match, models.MatchAny):
        return edge.MatchAny(list(match.any))
    raise TypeError(f"no Qdrant Edge equivalent for match {type(match).__name__}")


def _edge_condition(condition: Any) -> Any:
    if isinstance(condition, models.Filter):
        return edge_filter(condition)
    if isinstance(condition, models.FieldCondition):
        if condition.match is not None:
            return edge.FieldCondition(key=condition.key, match=_edge_match(condition.match))
        if condition.range is not None:
            r = condition.range
            return edge.FieldCondition(key=condition.key, range=edge.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt))
    raise TypeError(f"no Qdrant Edge equivalent for condition {condition!r}")


def edge_filter(qdrant_filter: models.Filter | None) -> edge.Filter | None:
    """The same filter for Edge: one filter language (build_filter), two engines."""
    if qdrant_filter is None:
        return None

    def convert(conditions: Any) -> list[Any] | None:
        if conditions is None:
            return None
        items = conditions if isinstance(conditions, list) else [conditions]
        return [_edge_condition(c) for c in items]

    return edge.Filter(must=convert(qdrant_filter.must), should=convert(qdrant_filter.should),
                       must_not=convert(qdrant_filter.must_not))


# -- the folder ------------------------------------------------------------------------------------

def _write_atomically(path: Path, data: Any) -> None:
    """JSON to `path`: readers see the old file or the new one (rename), durable once this returns."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def release_mapped_pages(root: Path) -> None:
    """Unmap from this process the pages of the store's files that it has touched; nothing elsewhere.

    Edge reads and writes its segments through shared file mappings, and every page touched stays in
    the process's resident set, so RSS grew with the collection (about 5 KiB a point written) though
    the pages are only the kernel's page cache. MADV_DONTNEED on a shared file mapping drops the
    process's hold and nothing else: dirty pages stay in the page cache to be written back, and the
    next access faults them in again. Private (copy-on-write) mappings would lose data and are skipped."""
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
        maps = Path("/proc/self/maps").read_text()
    except (OSError, AttributeError):  # not Linux
        return
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    prefix = str(root.resolve()) + os.sep
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[1].endswith("s") and fields[5].startswith(prefix):
            start, end = (int(address, 16) for address in fields[0].split("-"))
            madvise(start, end - start, _MADV_DONTNEED)


class _EdgeFolder:
    """The open folder: its lock, its aliases and its open shards, shared by every store on it."""

    def __init__(self, root: Path):
        self.root = root
        self.collections = root / "collections"
        self.collections.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(root / ".lock", "a+")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise ConfigError(f"embedded Qdrant at {root} is in use by another process") from None
        self.guard = threading.RLock()
        self.shards: dict[str, edge.EdgeShard] = {}
        self.unindexed: dict[str, int] = {}  # points written per collection since its last optimize
        self.closed = False

    # aliases
    def aliases(self) -> dict[str, str]:
        try:
            return json.loads((self.root / "aliases.json").read_text())
        except FileNotFoundError:
            return {}

    def write_aliases(self, aliases: dict[str, str]) -> None:
        _write_atomically(self.root / "aliases.json", aliases)

    # collections
    def spec_path(self, name: str) -> Path:
        return self.collections / _name(name) / "spec.json"

    def has_collection(self, name: str) -> bool:
        return self.spec_path(name).is_file()

    def names(self) -> list[str]:
        return sorted(p.parent.name for p in self.collections.glob("*/spec.json"))

    def shard(self, name: str) -> edge.EdgeShard:
        with self.guard:
            if self.closed:
                raise ConfigError(f"embedded Qdrant at {self.root} is closed")
            shard = self.shards.get(name)
            if shard is None:
                shard = edge.EdgeShard.load(str(self.collections / _name(name) / "shard"))
                self.shards[name] = shard
            return shard

    def create(self, name: str, spec: IndexSpec) -> None:
        folder = self.collections / _name(name)
        with self.guard:
            if folder.exists():  # a creation that crashed before writing spec.json
                self._forget(name)
                shutil.rmtree(folder)
            config = edge.EdgeConfig(
                vectors=edge.EdgeVectorParams(size=spec.dim, distance=edge.Distance.Cosine),
                optimizers=edge.EdgeOptimizersConfig(max_segment_size=MAX_SEGMENT_KB),
            )
            shard = edge.EdgeShard.create(str(folder / "shard"), config)
            for field in KEYWORD_INDEXED_FIELDS:
                shard.update(edge.UpdateOperation.create_field_index(field, edge.PayloadSchemaType.Keyword))
            for field in FLOAT_INDEXED_FIELDS:
                shard.update(edge.UpdateOperation.create_field_index(field, edge.PayloadSchemaType.Float))
            shard.flush()
            self.shards[name] = shard
            _write_atomically(folder / "spec.json", {"ragline": asdict(spec)})

    def drop(self, name: str) -> None:
        with self.guard:
            self._forget(name)
            aliases = self.aliases()
            left = {a: c for a, c in aliases.items() if c != name}
            if left != aliases:  # as on a server: deleting a collection deletes its aliases
                self.write_aliases(left)
            (self.collections / name / "spec.json").unlink(missing_ok=True)  # gone first, then the files
            shutil.rmtree(self.collections / name, ignore_errors=True)

    def _forget(self, name: str) -> None:
        self.unindexed.pop(name, None)
        shard = self.shards.pop(name, None)
        if shard is not None:
            shard.close()

    def close(self) -> None:
        with self.guard:
            if self.closed:
                return
            self.closed = True
            try:
                for shard in self.shards.values():
                    shard.flush()
                    shard.close()
            finally:
                self.shards.clear()
                self._lock_file.close()  # releases the flock


class EdgeStore:
    """The embedded store on Qdrant Edge; the same methods and behaviour as `QdrantStore`."""

    embedded = True

    def __init__(self, *, path: str | Path, collection: str = "ragline"):
        self.collection = collection
        self.location = str(path)
        self._folder = _EdgeFolder(Path(path))
        self._owns_folder = True

    def close(self) -> None:
        """Flush and close every shard and release the folder; a `for_collection` store does not."""
        if self._owns_folder:
            self._folder.close()

    def for_collection(self, name: str) -> EdgeStore:
        other = object.__new__(EdgeStore)
        other.__dict__.update(self.__dict__)
        other.collection = name
        other._owns_folder = False
        return other

    # -- collection ----------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.physical_name() is not None

    def alias_target(self) -> str | None:
        return self._folder.aliases().get(self.collection)

    def physical_name(self) -> str | None:
        target = self.alias_target()
        if target is not None:
            return target if self._folder.has_collection(target) else None
        return self.collection if self._folder.has_collection(self.collection) else None

    def collection_names(self) -> list[str]:
        return self._folder.names()

    def drop_collection(self, name: str) -> bool:
        if name in self._folder.aliases():
            raise ValueError(f"{name!r} is an alias, not a collection: refusing to delete through it")
        if not self._folder.has_collection(name):
            return False
        self._folder.drop(name)
        return True

    def point_alias_at(self, target: str) -> AliasSwitch:
        """As `QdrantStore.point_alias_at`: alias to alias is one atomic file replacement; a real
        collection of the live name is deleted first, then the alias written (the only gap)."""
        if target == self.collection:
            raise ValueError("an alias cannot point at a collection of its own name")
        with self._folder.guard:
            aliases = self._folder.aliases()
            if not self._folder.has_collection(target) or target in aliases:
                raise ValueError(f"collection {target!r} does not exist")
            previous = aliases.get(self.collection)
            if previous is not None or not self._folder.has_collection(self.collection):
                self._folder.write_aliases({**aliases, self.collection: target})
                return AliasSwitch(previous=previous, previous_was_alias=previous is not None, gap_seconds=0.0)
            started = time.perf_counter()
            self._folder.drop(self.collection)
            self._folder.write_aliases({**self._folder.aliases(), self.collection: target})
            return AliasSwitch(previous=self.collection, previous_was_alias=False,
                               gap_seconds=time.perf_counter() - started)

    def spec(self) -> IndexSpec | None:
        name = self.physical_name()
        if name is None:
            return None
        spec = json.loads(self._folder.spec_path(name).read_text()).get("ragline")
        return IndexSpec(**{"payload_format": 1, **spec}) if spec else None

    def ensure_collection(self, spec: IndexSpec) -> None:
        if not self.exists():
            self._folder.create(self.collection, spec)
            return
        check_spec(self.collection, self.location, self.spec(), spec)

    def _shard(self) -> edge.EdgeShard | None:
        name = self.physical_name()
        return None if name is None else self._folder.shard(name)

    def _require_name(self) -> str:
        name = self.physical_name()
        if name is None:
            raise ConfigError(f"collection {self.collection!r} does not exist at {self.location}")
        return name

    def _require_shard(self) -> edge.EdgeShard:
        return self._folder.shard(self._require_name())

    # -- writes --------------------------------------------------------------------------------

    def upsert(self, points: Sequence[Point]) -> None:
        name = self._require_name()
        shard = self._folder.shard(name)
        for start in range(0, len(points), UPSERT_BATCH):
            if start:
                failpoint("upsert.inside")
            batch = points[start : start + UPSERT_BATCH]
            shard.update(edge.UpdateOperation.upsert_points(
                [edge.Point(p.id, np.asarray(p.vector, dtype=np.float32).tolist(), p.payload) for p in batch]
            ))
        unindexed = self._folder.unindexed.get(name, 0) + len(points)
        if unindexed >= OPTIMIZE_EVERY:
            shard.optimize()
            unindexed = 0
        self._folder.unindexed[name] = unindexed
        release_mapped_pages(self._folder.root)

    def delete_other_versions(self, source: str, doc_id: str, keep_version: str) -> None:
        self._require_shard().update(edge.UpdateOperation.delete_points_by_filter(
            edge_filter(other_versions_filter(source, doc_id, keep_version))
        ))

    def delete_documents(self, source: str, doc_ids: Sequence[str]) -> None:
        if not doc_ids:
            return
        self._require_shard().update(edge.UpdateOperation.delete_points_by_filter(
            edge_filter(build_filter({"source": source, "doc_id": list(doc_ids)}))
        ))

    def optimize(self) -> None:
        """Build the HNSW and payload indexes of what was written (Edge has no background optimizer;
        unoptimized segments are searched by a full scan)."""
        shard = self._shard()
        if shard is not None:
            shard.optimize()
            self._folder.unindexed[self.physical_name()] = 0
            release_mapped_pages(self._folder.root)

    # -- reads ---------------------------------------------------------------------------------

    def search(
        self, vector: np.ndarray, *, k: int = 5, filters: SearchFilters | Mapping[str, Any] | None = None
    ) -> list[Hit]:
        shard = self._shard()
        if shard is None:
            return []
        found = shard.query(edge.QueryRequest(
            limit=k,
            query=edge.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
            filter=edge_filter(build_filter(filters)),
            with_payload=True,
        ))
        return [Hit(id=str(p.id), score=float(p.score), text=(p.payload or {}).get("text", ""), payload=dict(p.payload or {}))
                for p in found]

    def count(self, filters: SearchFilters | Mapping[str, Any] | None = None) -> int:
        shard = self._shard()
        if shard is None:
            return 0
        return shard.count(edge.CountRequest(exact=True, filter=edge_filter(build_filter(filters))))

    def iter_points(
        self, filters: SearchFilters | Mapping[str, Any] | None = None, *, page: int = 1000
    ) -> Iterator[tuple[str, dict]]:
        for record in self._scroll(filters, page=page, with_vector=False):
            yield str(record.id), dict(record.payload or {})

    def chunk_vectors(self, source: str, doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vector of every chunk of these documents, by its text's hash (payload content_hash):
        the embedding cache of a sync (same collection, so same model)."""
        if not doc_ids:
            return {}
        return {
            (r.payload or {}).get("content_hash"): np.asarray(r.vector, dtype=np.float32)
            for r in self._scroll(build_filter({"source": source, "doc_id": list(doc_ids)}), page=1000, with_vector=True)
            if (r.payload or {}).get("content_hash")
        }

    def _scroll(self, filters: Any, *, page: int, with_vector: bool) -> Iterator[Any]:
        shard = self._shard()
        if shard is None:
            return
        query_filter = edge_filter(filters if isinstance(filters, models.Filter) else build_filter(filters))
        offset = None
        while True:
            records, offset = shard.scroll(edge.ScrollRequest(
                offset=offset, limit=page, filter=query_filter, with_payload=True, with_vector=with_vector,
            ))
            yield from records
            if offset is None:
                return
