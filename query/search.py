"""Retrieval: embed a question with the collection's model and return the nearest chunks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ragline.errors import ConfigError
from ragline.types import Embedder, Hit
from stores.qdrant import QdrantStore

FILTERABLE_INT_FIELDS = ("page_start", "page_end", "chunk_index")


def parse_filters(expressions: list[str]) -> dict[str, Any]:
    """`key=value` pairs into equality filters; a key given twice matches either value."""
    filters: dict[str, Any] = {}
    for expression in expressions:
        key, sep, value = expression.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"filter {expression!r} is not of the form key=value")
        typed: Any = int(value) if key in FILTERABLE_INT_FIELDS and value.lstrip("-").isdigit() else value
        if key in filters:
            previous = filters[key]
            filters[key] = [*previous, typed] if isinstance(previous, list) else [previous, typed]
        else:
            filters[key] = typed
    return filters


def search(
    question: str,
    *,
    embedder: Embedder,
    store: QdrantStore,
    k: int = 5,
    filters: Mapping[str, Any] | None = None,
) -> list[Hit]:
    if not question.strip():
        raise ConfigError("the question is empty")
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    spec = store.spec()
    if spec is not None and spec.model != embedder.model_name:
        raise ConfigError(
            f"collection {store.collection!r} was built with {spec.model}; this query uses {embedder.model_name}"
        )
    vector = embedder.embed([question])[0]
    return store.search(vector, k=k, filters=filters)
