"""Qdrant as the vector store: embedded (qdrant-client local mode, a folder) or a server by URL.

The collection records, in its metadata, the model and chunking that built it; opening it
with a different model, dimension or chunking is refused rather than mixing vectors.
Store errors are never swallowed: a failed write aborts the run.

The name a store is opened with (`collection`, the live name users know) is either a real
collection (indexes built before any re-index) or a Qdrant alias pointing at a physical
collection such as `ragline--20261204T181500` (see ragline/reindex.py). Every read and write
goes through the name, so both work the same; `for_collection` addresses another collection
with the same client (embedded mode locks its folder: a second client on it would fail).

Payload format: every point's payload follows a versioned, stable layout (`PAYLOAD_FORMAT`, the
field table is in docs/downstream.md) that LlamaIndex and LangChain read as is. The collection
records its format next to the spec; a collection of an older format is refused with a pointer
to `ragline reindex`, which rebuilds it in the current one.

Filters: `SearchFilters` is the filter language of searches (HTTP API body, `--filter`);
`build_filter` turns it into a Qdrant filter. The named filters (source, doc_type, path_prefix,
modified_after/before) read fields the payload carries for them; `where` matches any payload key.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Self

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from qdrant_client import QdrantClient, models

from ragline.errors import ConfigError, IndexMismatchError
from ragline.failpoints import failpoint
from ragline.types import Hit

POINT_NAMESPACE = uuid.UUID("6f1d7f0e-4c1b-5f5e-9a57-2b8e4f3c9d10")
PAYLOAD_FORMAT = 2  # the payload layout this version writes and reads; bumped only with a re-index path
KEYWORD_INDEXED_FIELDS = ("source", "doc_id", "doc_version", "doc_type", "path_prefixes")
FLOAT_INDEXED_FIELDS = ("modified_ts",)
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
    payload_format: int = PAYLOAD_FORMAT  # collections made before the field existed are format 1


def source_times(modified: datetime | None) -> dict[str, Any]:
    """The payload's `modified_at` (RFC 3339 UTC) and `modified_ts` (epoch seconds) for a source's
    modification time; a naive time is taken as UTC (not the host's zone), None gives nulls."""
    if modified is None:
        return {"modified_at": None, "modified_ts": None}
    modified = modified.replace(tzinfo=UTC) if modified.tzinfo is None else modified.astimezone(UTC)
    return {"modified_at": modified.isoformat().replace("+00:00", "Z"), "modified_ts": modified.timestamp()}


def check_payload_format(collection: str, spec: IndexSpec) -> None:
    """Refuse a collection whose payloads are laid out in another format than this version's."""
    if spec.payload_format == PAYLOAD_FORMAT:
        return
    raise IndexMismatchError(
        f"collection {collection!r} holds payload format {spec.payload_format}; this version of ragline "
        f"reads and writes format {PAYLOAD_FORMAT}. Run `ragline reindex` to rebuild it in the current format "
        "(queries keep working on the old collection until the switch)."
    )


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


# -- filters ---------------------------------------------------------------------------------------

Scalar = StrictStr | StrictInt | StrictFloat | StrictBool
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


RANGE_BOUNDS = ("gt", "gte", "lt", "lte")


def _check_range(bounds: Mapping[str, Any]) -> None:
    """ValueError unless `bounds` is a non-empty set of numeric gt/gte/lt/lte that some value meets."""
    unknown = sorted(set(bounds) - set(RANGE_BOUNDS))
    if unknown:
        raise ValueError(f"a range takes gt, gte, lt, lte; not {', '.join(map(repr, unknown))}")
    given = {k: v for k, v in bounds.items() if v is not None}
    if not given:
        raise ValueError("a range needs at least one of gt, gte, lt, lte")
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"range bound {key} must be a number, got {value!r}")
    lows = [(given[k], k == "gt") for k in ("gt", "gte") if k in given]
    highs = [(given[k], k == "lt") for k in ("lt", "lte") if k in given]
    for low, low_strict in lows:
        for high, high_strict in highs:
            if low > high or (low == high and (low_strict or high_strict)):
                raise ValueError(f"the range {given} matches no value")


class FieldRange(BaseModel):
    """A numeric range on one payload field: any of gt / gte / lt / lte."""

    model_config = ConfigDict(extra="forbid")

    gt: StrictInt | StrictFloat | None = None
    gte: StrictInt | StrictFloat | None = None
    lt: StrictInt | StrictFloat | None = None
    lte: StrictInt | StrictFloat | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        _check_range(self.model_dump())
        return self


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _field_filter(value: Any) -> Any:
    """One `where` condition: a value, a non-empty list of values (any of) or a range object.
    Checked by hand so an error names the one reason instead of every branch of a union."""
    if isinstance(value, FieldRange) or _is_scalar(value):
        return value
    if isinstance(value, Mapping):
        _check_range(value)
        return FieldRange(**value)
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("an empty list matches nothing")
        wrong = [v for v in value if not _is_scalar(v)]
        if wrong:
            raise ValueError(f"list items must be strings, numbers or booleans, got {wrong[0]!r}")
        return list(value)
    raise ValueError(
        f"expected a string, number, boolean, a list of those, or a range object {{gt, gte, lt, lte}}; got {value!r}"
    )


# An equality value, a list of them (any of), or a range object. Typed Any for pydantic (the
# validator above decides; the schema still documents the three shapes) so that serializing it
# does not try each branch of the union.
FieldFilter = Annotated[
    Any,
    PlainValidator(_field_filter, json_schema_input_type=Scalar | list[Scalar] | FieldRange),
]


def _one_or_many(value: str | list[str] | None, what: str) -> str | list[str] | None:
    if isinstance(value, list) and not value:
        raise ValueError(f"{what}: an empty list matches nothing; leave it out to match every {what}")
    return value


class SearchFilters(BaseModel):
    """What a search may be narrowed to; every given filter must hold (AND).

    A list matches any of its items. modified_after is inclusive and modified_before exclusive
    (like a sync's window); a naive datetime is UTC. Documents without a modification time
    never match a modified_* filter.
    """

    model_config = ConfigDict(extra="forbid")

    source: str | list[str] | None = None
    doc_type: str | list[str] | None = None  # lower-case suffix without dot: "pdf", "md"
    path_prefix: str | None = None  # "hr" or "hr/": documents whose doc_id lies under hr/
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    where: dict[str, FieldFilter] = Field(default_factory=dict)  # payload key (dotted for nested) -> filter

    @field_validator("source")
    @classmethod
    def _source(cls, value: str | list[str] | None) -> str | list[str] | None:
        return _one_or_many(value, "source")

    @field_validator("doc_type")
    @classmethod
    def _doc_type(cls, value: str | list[str] | None) -> str | list[str] | None:
        def norm(v: str) -> str:
            return v.strip().lstrip(".").lower()

        value = _one_or_many(value, "doc_type")
        if value is None:
            return None
        return norm(value) if isinstance(value, str) else [norm(v) for v in value]

    @field_validator("path_prefix")
    @classmethod
    def _path_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        stripped = value.strip().strip("/")
        if not stripped:
            raise ValueError(f"path_prefix {value!r} names no folder; leave it out to match every path")
        return stripped

    @field_validator("modified_after", "modified_before")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_validator("where")
    @classmethod
    def _keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, condition in value.items():
            if not _KEY.fullmatch(key):
                raise ValueError(
                    f"where: key {key!r} is not a payload field path (letters, digits and _, "
                    "dots between nested names, e.g. meta.owner)"
                )
        return value

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.modified_after and self.modified_before and self.modified_after >= self.modified_before:
            raise ValueError(
                f"modified_after ({self.modified_after.isoformat()}) is not before modified_before "
                f"({self.modified_before.isoformat()}): no document matches"
            )
        return self

    def is_empty(self) -> bool:
        return self == SearchFilters()


def _match(key: str, value: Any) -> models.Condition:
    """Equality on one key; a list matches any item. Qdrant matches only str, int and bool, so a
    float is matched as the range [v, v] and a list of mixed types as alternatives."""
    if isinstance(value, list | tuple | set):
        items = list(value)
        if all(isinstance(v, str) for v in items) or all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            return models.FieldCondition(key=key, match=models.MatchAny(any=items))
        return models.Filter(should=[_match(key, v) for v in items])
    if isinstance(value, float):
        return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _search_conditions(filters: SearchFilters) -> list[models.Condition]:
    must: list[models.Condition] = []
    if filters.source is not None:
        must.append(_match("source", filters.source))
    if filters.doc_type is not None:
        must.append(_match("doc_type", filters.doc_type))
    if filters.path_prefix is not None:
        # Every ancestor folder is in the point's path_prefixes: a prefix filter is one exact match.
        must.append(models.FieldCondition(key="path_prefixes", match=models.MatchValue(value=filters.path_prefix)))
    if filters.modified_after is not None or filters.modified_before is not None:
        must.append(models.FieldCondition(key="modified_ts", range=models.Range(
            gte=filters.modified_after.timestamp() if filters.modified_after else None,
            lt=filters.modified_before.timestamp() if filters.modified_before else None,
        )))
    for key, condition in filters.where.items():
        if isinstance(condition, FieldRange):
            must.append(models.FieldCondition(key=key, range=models.Range(**condition.model_dump())))
        else:
            must.append(_match(key, condition))
    return must


def other_versions_filter(source: str, doc_id: str, keep_version: str) -> models.Filter:
    """The chunks of a document that belong to any version but `keep_version`."""
    return models.Filter(
        must=[
            models.FieldCondition(key="source", match=models.MatchValue(value=source)),
            models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id)),
        ],
        must_not=[models.FieldCondition(key="doc_version", match=models.MatchValue(value=keep_version))],
    )


def check_spec(collection: str, location: str, existing: IndexSpec | None, spec: IndexSpec) -> None:
    """Refuse to write `spec`'s vectors into an existing collection built otherwise."""
    if existing is None:
        raise IndexMismatchError(
            f"collection {collection!r} at {location} was not built by ragline; use another collection name"
        )
    check_payload_format(collection, existing)
    if existing != spec:
        diffs = ", ".join(
            f"{k}: collection has {v!r}, this run uses {getattr(spec, k)!r}"
            for k, v in asdict(existing).items()
            if getattr(spec, k) != v
        )
        raise IndexMismatchError(
            f"collection {collection!r} was built differently ({diffs}); vectors are never mixed. "
            "Index into a new collection (--collection / RAGLINE_COLLECTION) or rebuild it."
        )


def build_filter(conditions: SearchFilters | Mapping[str, Any] | None) -> models.Filter | None:
    """A Qdrant filter from SearchFilters, or from a mapping of payload key -> equality value
    (a list matches any of its items), the form ragline's own reads and deletes use."""
    if conditions is None:
        return None
    if isinstance(conditions, SearchFilters):
        must = _search_conditions(conditions)
    else:
        must = [_match(key, value) for key, value in conditions.items()]
    return models.Filter(must=must) if must else None


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
        """What built the collection; a collection without a recorded payload format is format 1."""
        if not self.exists():
            return None
        meta = self.client.get_collection(self.collection).config.metadata or {}
        spec = meta.get("ragline")
        return IndexSpec(**{"payload_format": 1, **spec}) if spec else None

    def ensure_collection(self, spec: IndexSpec) -> None:
        """Create the collection for `spec`, or check that the existing one was built by it."""
        if not self.exists():
            self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(size=spec.dim, distance=models.Distance.COSINE),
                metadata={"ragline": asdict(spec)},
            )
            if not self.embedded:  # local mode scans payloads and has no indexes
                for field in KEYWORD_INDEXED_FIELDS:
                    self.client.create_payload_index(self.collection, field, models.PayloadSchemaType.KEYWORD)
                for field in FLOAT_INDEXED_FIELDS:
                    self.client.create_payload_index(self.collection, field, models.PayloadSchemaType.FLOAT)
            return
        check_spec(self.collection, self.location, self.spec(), spec)

    # -- writes --------------------------------------------------------------------------------

    def upsert(self, points: Sequence[Point]) -> None:
        for start in range(0, len(points), UPSERT_BATCH):
            if start:
                failpoint("upsert.inside")
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
            points_selector=models.FilterSelector(filter=other_versions_filter(source, doc_id, keep_version)),
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

    def optimize(self) -> None:
        """Nothing to do: a server builds its indexes in the background, local mode has none."""

    # -- reads ---------------------------------------------------------------------------------

    def search(
        self, vector: np.ndarray, *, k: int = 5, filters: SearchFilters | Mapping[str, Any] | None = None
    ) -> list[Hit]:
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

    def count(self, filters: SearchFilters | Mapping[str, Any] | None = None) -> int:
        if not self.exists():
            return 0
        return self.client.count(self.collection, count_filter=build_filter(filters), exact=True).count

    def iter_points(
        self, filters: SearchFilters | Mapping[str, Any] | None = None, *, page: int = 1000
    ) -> Iterator[tuple[str, dict]]:
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

    def chunk_vectors(self, source: str, doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vector of every chunk of these documents, by its text's hash (payload content_hash):
        the embedding cache of a sync (same collection, so same model)."""
        if not doc_ids or not self.exists():
            return {}
        found: dict[str, np.ndarray] = {}
        offset = None
        while True:
            points, offset = self.client.scroll(
                self.collection, scroll_filter=build_filter({"source": source, "doc_id": list(doc_ids)}), limit=1000, offset=offset,
                with_payload=["content_hash"], with_vectors=True,
            )
            for p in points:
                digest = (p.payload or {}).get("content_hash")
                if digest:
                    found[digest] = np.asarray(p.vector, dtype=np.float32)
            if offset is None:
                return found
