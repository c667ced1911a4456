"""Retrieval: embed a question with the collection's model and return the nearest chunks.

Filters are `SearchFilters` (defined with the store that applies them, re-exported here for
the HTTP API and the CLI). `parse_filters` reads the CLI's `--filter` expressions:

    source=handbook           a named filter (source, doc_type, path_prefix, modified_after, modified_before)
    doc_id=leave.md           equality on any payload key; a key given twice matches either value
    meta.owner=bob            nested keys are dotted
    page_start>=3             ranges: >=, <=, >, < with a number (two bounds on one key combine)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ragline.errors import ConfigError
from ragline.types import Embedder, Hit
from stores.base import VectorStore
from stores.qdrant import PAYLOAD_FORMAT, FieldFilter, FieldRange, SearchFilters

__all__ = ["FieldFilter", "FieldRange", "SearchFilters", "filters_from", "parse_filters", "search"]

FILTERABLE_INT_FIELDS = ("page_start", "page_end", "chunk_index", "chunk_count", "token_count")
LIST_KEYS = ("source", "doc_type")  # named filters that take several values
SINGLE_KEYS = ("path_prefix", "modified_after", "modified_before")
RANGE_OPERATORS = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}
_EXPRESSION = re.compile(r"\s*([^<>=]*?)\s*(>=|<=|>|<|=)(.*)", re.DOTALL)


def _number(expression: str, value: str) -> int | float:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        raise ConfigError(
            f"filter {expression!r}: a range needs a number, got {value!r} "
            "(for dates use modified_after=/modified_before=)"
        ) from None


def parse_filters(expressions: list[str]) -> SearchFilters:
    """The CLI's `--filter` expressions (see the module docstring) as SearchFilters."""
    named: dict[str, Any] = {}
    where: dict[str, Any] = {}
    for expression in expressions:
        found = _EXPRESSION.fullmatch(expression)
        if not found or not found.group(1):
            raise ConfigError(f"filter {expression!r} is not of the form key=value (or key>=N, key<=N, key>N, key<N)")
        key, operator, value = found.groups()
        if operator != "=":
            if key in LIST_KEYS or key in SINGLE_KEYS:
                raise ConfigError(f"filter {expression!r}: {key} takes key=value, not a range")
            bounds = where.setdefault(key, {})
            if not isinstance(bounds, dict):
                raise ConfigError(f"filter {expression!r}: {key} is given both as a value and as a range")
            bound = RANGE_OPERATORS[operator]
            if bound in bounds:
                raise ConfigError(f"filter {expression!r}: {key}{operator} is given twice")
            bounds[bound] = _number(expression, value.strip())
            continue
        if key in SINGLE_KEYS:
            if key in named:
                raise ConfigError(f"filter {expression!r}: {key} may be given once")
            named[key] = value.strip()
            continue
        target = named if key in LIST_KEYS else where
        typed: Any = int(value) if key in FILTERABLE_INT_FIELDS and value.lstrip("-").isdigit() else value
        if isinstance(target.get(key), dict):
            raise ConfigError(f"filter {expression!r}: {key} is given both as a value and as a range")
        if key in target:
            previous = target[key]
            target[key] = [*previous, typed] if isinstance(previous, list) else [previous, typed]
        else:
            target[key] = typed
    return filters_from({**named, "where": where})


def filters_from(filters: SearchFilters | Mapping[str, Any] | None) -> SearchFilters | None:
    """SearchFilters from a mapping of its fields (an API body, parse_filters); ConfigError when invalid."""
    if filters is None or isinstance(filters, SearchFilters):
        return filters
    try:
        return SearchFilters.model_validate(dict(filters))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'filters'}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"invalid search filters: {problems}") from None


def search(
    question: str,
    *,
    embedder: Embedder,
    store: VectorStore,
    k: int = 5,
    filters: SearchFilters | Mapping[str, Any] | None = None,
) -> list[Hit]:
    """The `k` chunks nearest to `question` that match `filters` (a mapping is read as SearchFilters)."""
    if not question.strip():
        raise ConfigError("the question is empty")
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    conditions = filters_from(filters)
    spec = store.spec()
    if spec is not None and spec.model != embedder.model_name:
        raise ConfigError(
            f"collection {store.collection!r} was built with {spec.model}; this query uses {embedder.model_name}"
        )
    if spec is not None and spec.payload_format != PAYLOAD_FORMAT:
        # Filters on fields the old format lacks would silently match nothing.
        raise ConfigError(
            f"collection {store.collection!r} holds payload format {spec.payload_format}; this version reads "
            f"format {PAYLOAD_FORMAT}. Run `ragline reindex` to rebuild it."
        )
    vector = embedder.embed([question])[0]
    return store.search(vector, k=k, filters=conditions)
