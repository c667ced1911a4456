"""Rows of a SQL table (or of a SELECT) as documents, through SQLAlchemy.

Each row is one document: its doc_id is the id columns' values joined with "/" (a "/" or "%"
inside a value is percent-escaped, so the id stays unambiguous), its text is `text_template`
rendered with the row's columns (`"{title}\\n\\n{body}"`; NULL renders as an empty string).

Listing streams the source through a server-side cursor (`stream_results`, `yield_per`), so
memory stays flat in the table size, and reads no more than it needs:

* with `updated_at_column`, only the id columns, that column (and the soft-delete column):
  the fingerprint is the updated_at value;
* without it, the template and metadata columns as well: the fingerprint is a sha256 of their
  values, computed while streaming. Rows are held `batch_size` at a time, so lower
  `batch_size` for tables of very large texts.

Either fingerprint also carries a short digest of the template and metadata columns, so that
changing the configuration re-renders every row. Rows whose `soft_delete_column` is truthy
(not NULL, false, 0 or "") are left out of the listing, so the pipeline deletes them.

The listing is complete or it fails: any database error while listing (connection, missing
table or column, permission, id columns that are not unique) raises SourceError, so the
pipeline deletes nothing. Rows with a NULL id column cannot be addressed; they are skipped and
recorded in `skipped`, like unreadable files of the local connector.

Identifiers go through SQLAlchemy constructs (`table()`, `column()`), values are always bound
parameters; `query` is trusted configuration text, wrapped as `SELECT ... FROM (<query>) AS src`
and never formatted with values. The password of `url` never appears in a message or log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import string
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Self
from urllib.parse import quote, quote_plus

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.sql.sqltypes import NullType

from ragline.errors import ConfigError, FetchError, SourceError
from ragline.types import ChangeListing, Deletion, DocRef, RawDocument

log = logging.getLogger(__name__)

_QUERY_START = re.compile(r"^\s*(\(\s*)*(select|with|values)\b", re.IGNORECASE)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def escape_id_part(value: str) -> str:
    return value.replace("%", "%25").replace("/", "%2F")


def unescape_id_part(part: str) -> str:
    return part.replace("%2F", "/").replace("%2f", "/").replace("%25", "%")


def _id_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    return str(value)


def encode_cursor(value: Any) -> str:
    """A cursor value as text that keeps its type (datetimes compare as datetimes, not strings)."""
    if isinstance(value, datetime):
        return json.dumps({"datetime": value.isoformat()})
    if isinstance(value, int | float | Decimal):
        return json.dumps({"number": str(value)})
    return json.dumps({"text": str(value)})


def decode_cursor(cursor: str) -> Any:
    data = json.loads(cursor)
    if "datetime" in data:
        return datetime.fromisoformat(data["datetime"])
    if "number" in data:
        return Decimal(data["number"])
    return data["text"]


def json_safe(value: Any) -> Any:
    """A value as JSON can carry it: datetimes as ISO text, Decimals as numbers when exact."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        if value.is_finite():
            as_float = float(value)
            if Decimal(repr(as_float)) == value:
                return (
                    int(as_float)
                    if value == value.to_integral_value() and abs(as_float) < 2**53
                    else as_float
                )
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(data).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    return str(value)


def _hash_part(value: Any) -> bytes:
    """An unambiguous byte encoding of one value for the row hash: type tag, length, bytes."""
    if value is None:
        return b"N;"
    if isinstance(value, bytes | bytearray | memoryview):
        data, tag = bytes(value), "b"
    elif isinstance(value, str):
        data, tag = value.encode("utf-8", "surrogatepass"), "s"
    else:
        data, tag = (
            json.dumps(json_safe(value), sort_keys=True, ensure_ascii=False).encode(
                "utf-8"
            ),
            "j",
        )
    return f"{tag}{len(data)}:".encode() + data + b";"


def _is_deleted(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip() != ""
    return bool(value)


def _modified_at(stamp: object) -> datetime | None:
    """An updated_at value as an aware datetime, for backfill windows. Drivers without a datetime
    type (SQLite) hand the column back as ISO text; a date counts from its midnight; naive is UTC."""
    if isinstance(stamp, str):
        try:
            stamp = datetime.fromisoformat(stamp.strip())
        except ValueError:
            return None
    if isinstance(stamp, date) and not isinstance(stamp, datetime):
        stamp = datetime.combine(stamp, time())
    if not isinstance(stamp, datetime):
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


class SqlConnector:
    kind = "sql"

    def __init__(
        self,
        name: str,
        *,
        url: str,
        table: str | None = None,
        query: str | None = None,
        id_columns: Sequence[str],
        text_template: str,
        metadata_columns: Sequence[str] = (),
        updated_at_column: str | None = None,
        soft_delete_column: str | None = None,
        batch_size: int = 1000,
        cursor_overlap_seconds: float = 300.0,
    ):
        if not name:
            raise ConfigError("a SQL source needs a name")
        self.name = name
        try:
            self._url: URL = make_url(url)
        except (ArgumentError, ValueError, TypeError):
            raise ConfigError(
                f"source {name!r}: url is not a valid SQLAlchemy database URL"
            ) from None
        try:
            self._url.get_dialect()
        except (NoSuchModuleError, ArgumentError, ImportError):
            raise ConfigError(
                f"source {name!r}: no SQLAlchemy dialect for {self._url.drivername!r}"
            ) from None
        self._secrets = self._password_forms()

        if (table is None) == (query is None):
            raise ConfigError(f"source {name!r}: give exactly one of table or query")
        if table is not None and (not isinstance(table, str) or not table.strip()):
            raise ConfigError(f"source {name!r}: table must be a non-empty name")
        self.table = table
        self.query = None
        if query is not None:
            query = query.strip().rstrip(";").strip()
            if not _QUERY_START.match(query):
                raise ConfigError(
                    f"source {name!r}: query must be a SELECT (or WITH ... SELECT) statement"
                )
            self.query = query

        self.id_columns = self._names("id_columns", id_columns)
        if not self.id_columns:
            raise ConfigError(f"source {name!r}: id_columns needs at least one column")
        self.metadata_columns = self._names("metadata_columns", metadata_columns)
        self.updated_at_column = self._optional_name(
            "updated_at_column", updated_at_column
        )
        self.soft_delete_column = self._optional_name(
            "soft_delete_column", soft_delete_column
        )
        if (
            not isinstance(batch_size, int)
            or isinstance(batch_size, bool)
            or batch_size < 1
        ):
            raise ConfigError(
                f"source {name!r}: batch_size must be a positive integer, not {batch_size!r}"
            )
        self.batch_size = batch_size
        # Rows committed late with an updated_at slightly before the stored cursor are re-listed.
        self.cursor_overlap = timedelta(seconds=cursor_overlap_seconds)

        self.text_template = text_template
        self._segments = self._parse_template(text_template)
        self.template_columns = tuple(
            dict.fromkeys(f for _, f, _, _ in self._segments if f is not None)
        )

        digest = hashlib.sha256()
        for part in (text_template, *self.metadata_columns):
            digest.update(_hash_part(part))
        self._config_digest = digest.hexdigest()[:12]

        if self.query is not None:
            statement = sa.text(self.query)
            if statement._bindparams:
                names = ", ".join(f":{n}" for n in statement._bindparams)
                raise ConfigError(
                    f"source {name!r}: query contains what SQLAlchemy reads as bound parameters ({names}); "
                    "values are never formatted into the query, so write a literal colon as \\:"
                )
            needed = self._all_columns()
            self._source = statement.columns(*(sa.column(c) for c in needed)).subquery(
                "src"
            )
        else:
            schema, _, table_name = self.table.rpartition(".")
            needed = self._all_columns()
            self._source = sa.table(
                table_name, *(sa.column(c) for c in needed), schema=schema or None
            )

        self.skipped: list[tuple[str, str]] = []
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()

    # ------------------------------------------------------------------ configuration

    def _names(self, what: str, names: Sequence[str]) -> tuple[str, ...]:
        if isinstance(names, str):
            raise ConfigError(
                f"source {self.name!r}: {what} must be a list of column names, not a string"
            )
        out = tuple(names)
        for n in out:
            if not isinstance(n, str) or not n:
                raise ConfigError(
                    f"source {self.name!r}: {what} has an empty or non-text column name: {n!r}"
                )
        if len(set(out)) != len(out):
            raise ConfigError(f"source {self.name!r}: {what} names a column twice")
        return out

    def _optional_name(self, what: str, name: str | None) -> str | None:
        if name is None:
            return None
        if not isinstance(name, str) or not name:
            raise ConfigError(f"source {self.name!r}: {what} must be a column name")
        return name

    def _parse_template(
        self, template: str
    ) -> list[tuple[str, str | None, str, str | None]]:
        if not isinstance(template, str) or not template:
            raise ConfigError(
                f"source {self.name!r}: text_template must be non-empty text"
            )
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ConfigError(
                f"source {self.name!r}: text_template is not a valid format string: {exc}"
            ) from None
        segments = []
        for literal, field, spec, conversion in parsed:
            if field is None:
                segments.append((literal, None, "", None))
                continue
            if field == "" or field.isdigit():
                raise ConfigError(
                    f"source {self.name!r}: text_template field {{{field}}} must name a column, as in {{title}}"
                )
            if "." in field or "[" in field:
                raise ConfigError(
                    f"source {self.name!r}: text_template field {{{field}}}: attribute and index access "
                    "are not allowed; name a column"
                )
            if spec and ("{" in spec or "}" in spec):
                raise ConfigError(
                    f"source {self.name!r}: text_template field {{{field}}} has a nested field"
                )
            if conversion not in (None, "s", "r", "a"):
                raise ConfigError(
                    f"source {self.name!r}: text_template field {{{field}}} has a bad conversion"
                )
            segments.append((literal, field, spec or "", conversion))
        if not any(f is not None for _, f, _, _ in segments):
            raise ConfigError(
                f"source {self.name!r}: text_template names no column, as in {{body}}"
            )
        return segments

    def _all_columns(self) -> tuple[str, ...]:
        cols = [*self.id_columns, *self.template_columns, *self.metadata_columns]
        cols += [c for c in (self.updated_at_column, self.soft_delete_column) if c]
        return tuple(dict.fromkeys(cols))

    @property
    def location(self) -> str:
        where = self.table if self.table is not None else "query"
        return f"{self._url.render_as_string(hide_password=True)} {where}"

    # ------------------------------------------------------------------ engine and errors

    @property
    def engine(self) -> Engine:
        with self._engine_lock:
            if self._engine is None:
                kwargs: dict[str, Any] = {"pool_pre_ping": True}
                backend = self._url.get_backend_name()
                if backend == "postgresql" and "connect_timeout" not in self._url.query:
                    kwargs["connect_args"] = {"connect_timeout": 15}
                self._engine = sa.create_engine(self._url, **kwargs)
            return self._engine

    def close(self) -> None:
        with self._engine_lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _password_forms(self) -> tuple[str, ...]:
        password = self._url.password
        if not password:
            return ()
        password = str(password)
        return tuple(
            sorted(
                {password, quote(password, safe=""), quote_plus(password)},
                key=len,
                reverse=True,
            )
        )

    def _scrub(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message

    def _describe(self, exc: BaseException) -> str:
        """The database's own words for a failure, without SQL, parameters or password."""
        orig = getattr(exc, "orig", None)
        detail = str(orig) if orig is not None else str(exc)
        if isinstance(orig, BaseException) and type(orig).__name__ not in detail:
            detail = f"{type(orig).__name__}: {detail}"
        detail = " ".join(
            line.strip() for line in detail.strip().splitlines() if line.strip()
        )
        detail = detail.split(" [SQL: ", 1)[0]
        if len(detail) > 500:
            detail = detail[:500] + "..."
        return self._scrub(detail or type(exc).__name__)

    def _source_error(self, what: str, exc: BaseException) -> SourceError:
        reason = f"{what} at {self.location}: {self._describe(exc)}"
        log.warning("source %r: %s", self.name, reason)
        return SourceError(self.name, reason)

    # ------------------------------------------------------------------ listing

    def _check_columns(self, conn: sa.Connection) -> None:
        """Fail with a plain message when a configured column is not in the source."""
        probe = sa.select(sa.literal_column("*")).select_from(self._source).limit(0)
        have = set(conn.execute(probe).keys())
        missing = [c for c in self._all_columns() if c not in have]
        if missing:
            where = (
                f"table {self.table!r}"
                if self.table is not None
                else "the query's result"
            )
            raise SourceError(
                self.name,
                f"column(s) {', '.join(repr(c) for c in missing)} named in the configuration are not in {where} "
                f"(it has {', '.join(sorted(have)) or 'no columns'})",
            )

    def _doc_id(self, values: Sequence[Any]) -> str:
        return "/".join(escape_id_part(_id_text(v)) for v in values)

    def list(self) -> Iterator[DocRef]:
        return self._list()  # type: ignore[return-value]  # no deletions without a cursor

    def _list(self, changed_since: Any = None) -> Iterator[DocRef | Deletion]:
        """Rows in id order; with `changed_since`, only rows whose updated_at is at or after it,
        and soft-deleted ones among them come out as Deletions instead of being left out."""
        self.skipped.clear()
        cols = [*self.id_columns]
        if self.updated_at_column is not None:
            cols.append(self.updated_at_column)
        else:
            cols += [*self.template_columns, *self.metadata_columns]
        if self.soft_delete_column is not None:
            cols.append(self.soft_delete_column)
        cols = list(dict.fromkeys(cols))
        pos = {c: i for i, c in enumerate(cols)}
        n_ids = len(self.id_columns)
        hashed = (
            [pos[c] for c in (*self.template_columns, *self.metadata_columns)]
            if self.updated_at_column is None
            else []
        )
        stmt = (
            sa.select(*(self._source.c[c] for c in cols))
            .select_from(self._source)
            .order_by(*(self._source.c[c] for c in self.id_columns))
        )
        if changed_since is not None:
            stmt = stmt.where(self._source.c[self.updated_at_column] >= changed_since)
        listed = 0
        null_updated = 0
        previous: str | None = None
        try:
            with self.engine.connect() as conn:
                self._check_columns(conn)
                with conn.execution_options(
                    stream_results=True, yield_per=self.batch_size
                ).execute(stmt) as result:
                    for row in result:
                        deleted = self.soft_delete_column is not None and _is_deleted(
                            row[pos[self.soft_delete_column]]
                        )
                        if deleted and changed_since is None:
                            continue
                        ids = row[:n_ids]
                        if any(v is None for v in ids):
                            self._skip(
                                self._doc_id(["" if v is None else v for v in ids]),
                                "an id column is NULL",
                            )
                            continue
                        doc_id = self._doc_id(ids)
                        if doc_id == previous:
                            raise SourceError(
                                self.name,
                                f"id columns {', '.join(self.id_columns)} are not unique: {doc_id!r} is listed twice",
                            )
                        previous = doc_id
                        if deleted:
                            yield Deletion(doc_id)
                            continue
                        modified_at = None
                        if self.updated_at_column is not None:
                            stamp = row[pos[self.updated_at_column]]
                            if stamp is None:
                                null_updated += 1
                                version = "null"
                            else:
                                version = (
                                    json_safe(stamp)
                                    if not isinstance(stamp, str)
                                    else stamp
                                )
                                modified_at = _modified_at(stamp)
                            fingerprint = f"u:{version}:{self._config_digest}"
                        else:
                            digest = hashlib.sha256()
                            for i in hashed:
                                digest.update(_hash_part(row[i]))
                            fingerprint = (
                                f"h:{digest.hexdigest()}:{self._config_digest}"
                            )
                        listed += 1
                        yield DocRef(
                            source=self.name,
                            doc_id=doc_id,
                            fingerprint=fingerprint,
                            uri=f"{self.location}#{doc_id}",
                            modified_at=modified_at,
                        )
        except SourceError:
            raise
        except (SQLAlchemyError, OSError, ImportError) as exc:
            raise self._source_error(
                f"listing failed after {listed} rows" if listed else "cannot list", exc
            ) from None
        if null_updated:
            log.warning(
                "source %r: %d rows have a NULL %s; their changes cannot be noticed",
                self.name,
                null_updated,
                self.updated_at_column,
            )

    # ------------------------------------------------------------------ incremental

    def high_water_mark(self) -> str | None:
        """max(updated_at) before listing, as the cursor of the next run; None without the column."""
        if self.updated_at_column is None:
            return None
        column = self._source.c[self.updated_at_column]
        try:
            with self.engine.connect() as conn:
                value = conn.execute(sa.select(sa.func.max(column)).select_from(self._source)).scalar_one()
        except (SQLAlchemyError, OSError, ImportError) as exc:
            raise self._source_error("cannot read the high-water mark", exc) from None
        return None if value is None else encode_cursor(value)

    def list_changes(self, since: str) -> ChangeListing:
        """Rows changed at or after the cursor minus the overlap window (late commits), and
        deletions: soft-deleted rows among them, or, without a soft-delete column, every id
        present (ids only) so that rows deleted outright are noticed too."""
        threshold = decode_cursor(since)
        if isinstance(threshold, datetime):
            threshold = threshold - self.cursor_overlap
        changes = self._list(changed_since=threshold)
        present = None if self.soft_delete_column is not None else self._list_ids()
        return ChangeListing(changes=changes, present_ids=present)

    def _list_ids(self) -> Iterator[str]:
        stmt = sa.select(*(self._source.c[c] for c in self.id_columns)).select_from(self._source)
        try:
            with self.engine.connect() as conn, conn.execution_options(
                stream_results=True, yield_per=self.batch_size
            ).execute(stmt) as result:
                for row in result:
                    if all(v is not None for v in row):
                        yield self._doc_id(row)
        except (SQLAlchemyError, OSError, ImportError) as exc:
            raise self._source_error("cannot list ids", exc) from None

    def _skip(self, doc_id: str, reason: str) -> None:
        log.warning("source %r: skipping row %s: %s", self.name, doc_id, reason)
        self.skipped.append((doc_id, reason))

    # ------------------------------------------------------------------ fetch

    def fetch(self, ref: DocRef) -> RawDocument:
        parts = ref.doc_id.split("/")
        if len(parts) != len(self.id_columns):
            raise FetchError(
                ref.doc_id,
                f"doc_id has {len(parts)} parts, but the source has {len(self.id_columns)} id columns",
            )
        values = [unescape_id_part(p) for p in parts]
        cols = list(dict.fromkeys([*self.template_columns, *self.metadata_columns]))
        if self.soft_delete_column is not None and self.soft_delete_column not in cols:
            cols.append(self.soft_delete_column)
        # untyped binds: the database converts the text of the id to the column's type itself
        where = [
            self._source.c[c] == sa.bindparam(f"id_{i}", v, type_=NullType())
            for i, (c, v) in enumerate(zip(self.id_columns, values, strict=True))
        ]
        stmt = (
            sa.select(*(self._source.c[c] for c in cols))
            .select_from(self._source)
            .where(*where)
            .limit(2)
        )
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(stmt).all()
        except (SQLAlchemyError, OSError, ImportError) as exc:
            raise FetchError(
                ref.doc_id, f"cannot read the row: {self._describe(exc)}"
            ) from None
        if not rows:
            raise FetchError(ref.doc_id, "row disappeared after listing")
        if len(rows) > 1:
            raise FetchError(ref.doc_id, "more than one row has these id values")
        row = dict(zip(cols, rows[0], strict=True))
        if self.soft_delete_column is not None and _is_deleted(
            row[self.soft_delete_column]
        ):
            raise FetchError(ref.doc_id, "row was soft-deleted after listing")
        try:
            text = self.render(row)
        except (ValueError, TypeError) as exc:
            raise FetchError(
                ref.doc_id, f"text_template cannot render this row: {exc}"
            ) from None
        if not text.strip():
            raise FetchError(ref.doc_id, self._no_text_reason(row))
        data = text.encode(
            "utf-8", "replace"
        )  # a lone surrogate becomes "?", never invalid UTF-8
        return RawDocument(
            ref=ref,
            data=data,
            filename=f"{self._file_stem(ref.doc_id)}.txt",
            content_hash=hashlib.sha256(data).hexdigest(),
            metadata={c: json_safe(row[c]) for c in self.metadata_columns},
        )

    def _no_text_reason(self, row: Mapping[str, Any]) -> str:
        """Which text columns left the row without text, for whoever fills the table."""
        nulls = [c for c in self.template_columns if row[c] is None]
        blank = [c for c in self.template_columns if row[c] is not None]
        parts = [f"{', '.join(cols)} {'is' if len(cols) == 1 else 'are'} {what}"
                 for cols, what in ((nulls, "NULL"), (blank, "empty")) if cols]
        return f"the row has no text to index ({'; '.join(parts) or 'text_template has no columns'})"

    def render(self, row: Mapping[str, Any]) -> str:
        """`text_template` with `row`'s values; NULL renders as empty text."""
        out: list[str] = []
        for literal, field, spec, conversion in self._segments:
            out.append(literal)
            if field is None:
                continue
            value = row[field]
            if value is None:
                continue
            if isinstance(value, bytes | bytearray | memoryview):
                value = bytes(value).decode("utf-8", "replace")
            if conversion == "r":
                value = repr(value)
            elif conversion == "a":
                value = ascii(value)
            elif conversion == "s":
                value = str(value)
            out.append(format(value, spec))
        return "".join(out)

    @staticmethod
    def _file_stem(doc_id: str) -> str:
        stem = _SAFE_NAME.sub("_", doc_id).strip("._") or "row"
        if len(stem) > 100:
            stem = f"{stem[:80]}_{hashlib.sha256(doc_id.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"
        return stem
