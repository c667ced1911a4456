"""The sync ledger: what each source holds in the index, and what each run did.

SQLAlchemy Core over SQLite (default, a file in the data dir) or PostgreSQL (by URL).

The plan of a run (new / changed / unchanged / gone) is computed in the database:
the listing is bulk-loaded into `listing` and joined with `documents`, so memory stays
flat in corpus size and no query is issued per document.

A document's row is written last, after its chunks are in the store and its older
chunks are gone, so the ledger never claims more than the store holds. A document
seen for the first time gets a `pending` row *before* its chunks are written, so that
if the run dies and the file is deleted before the next run, the next run still knows
the chunks exist and removes them.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    column,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    inspect,
    or_,
    select,
    table,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from ragline.errors import ConfigError, LockLost, SourceBusy
from ragline.failpoints import failpoint
from ragline.types import Deletion, DocRef

BATCH_ROWS = 1000

log = logging.getLogger(__name__)

STATUS_PENDING = "pending"  # chunks may be in the store, the document is not finished
STATUS_INDEXED = "indexed"
STATUS_FAILED = "failed"

metadata = MetaData()

sources_table = Table(
    "sources",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("location", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

documents_table = Table(
    "documents",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("doc_id", String(1024), primary_key=True),
    Column("uri", Text, nullable=False),
    Column("fingerprint", String(200), nullable=False),
    Column("version", String(80), nullable=True),  # sha256 of the bytes that were indexed
    Column("title", Text, nullable=True),
    Column("chunk_count", Integer, nullable=False, default=0),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("run_id", Integer, nullable=True),
)

runs_table = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(200), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("status", String(16), nullable=False),  # running | ok | failed | refused | dry-run
    Column("dry_run", Integer, nullable=False, default=0),
    Column("added", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("deleted", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("chunks", Integer, nullable=False, default=0),
    Column("seconds", Float, nullable=True),
    Column("report", JSON, nullable=True),
)

# PostgreSQL's view of held locks, read to check a source lock is still held (not part of `metadata`)
_pg_locks = table("pg_locks", *(column(name) for name in ("locktype", "granted", "pid", "classid", "objid", "objsubid")))

listing_table = Table(
    "listing",
    metadata,
    Column("run_id", Integer, primary_key=True),
    Column("doc_id", String(1024), primary_key=True),
    Column("fingerprint", String(200), nullable=False),
    Column("uri", Text, nullable=False),
    Column("size", Integer, nullable=True),
    Column("modified_at", DateTime(timezone=True), nullable=True),  # the source's, carried to the chunks' payload
    # "ref": listed with a fingerprint; "id": present (ids-only listing); "del": reported deleted
    Column("kind", String(4), nullable=False, default="ref"),
)

cursors_table = Table(
    "source_cursors",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("cursor", Text, nullable=False),
    Column("run_id", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

LISTED, PRESENT, DELETED = "ref", "id", "del"


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without their zone; they were stored in UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PlanCounts:
    new: int
    changed: int
    unchanged: int
    gone: int
    known: int  # documents of the source in the ledger before this run
    still_failing: int  # unchanged documents that failed in an earlier run (not retried)


@dataclass(frozen=True)
class PendingDoc:
    """A listed document that must be fetched: new, changed, or left unfinished by a crash."""

    ref: DocRef
    known_version: str | None  # None for a document the ledger has never indexed
    is_new: bool


@dataclass(frozen=True)
class DocumentRecord:
    source: str
    doc_id: str
    uri: str
    fingerprint: str
    version: str | None
    title: str | None
    chunk_count: int
    status: str
    error: str | None
    updated_at: datetime


class Ledger:
    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True, pool_pre_ping=True)
        if self.engine.dialect.name not in ("sqlite", "postgresql"):
            raise ConfigError(f"unsupported ledger database: {self.engine.dialect.name} (use SQLite or PostgreSQL)")
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        # source -> (backend pid, lock key) of each PostgreSQL source lock this ledger holds
        self._held_locks: dict[str, tuple[int, int]] = {}
        self._drop_outdated_listing()
        metadata.create_all(self.engine)

    def _drop_outdated_listing(self) -> None:
        """The listing holds only the current run's scratch rows: an older layout is dropped, not migrated."""
        columns = {c["name"] for c in inspect(self.engine).get_columns("listing")} if inspect(self.engine).has_table("listing") else set()
        if columns and not {"kind", "modified_at"} <= columns:
            listing_table.drop(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- one run per source --------------------------------------------------------------------

    @contextmanager
    def source_lock(self, source: str, *, wait_seconds: float = 0.0) -> Iterator[None]:
        """Hold the source's lock for a run. The lock dies with the process that holds it
        (a PostgreSQL advisory lock on its own connection, or an flock on a file beside the
        SQLite database), so a crashed run never blocks the next one.

        On PostgreSQL the lock also dies with its session (a restart, an idle timeout, an
        administrator's pg_terminate_backend), and another run may then take it. Every write
        of a locked source is therefore fenced: it checks, in its own transaction, that the
        lock's session still holds the lock, and raises LockLost otherwise (`check_lock`)."""
        deadline = time.monotonic() + wait_seconds
        key = int.from_bytes(hashlib.sha256(source.encode()).digest()[:8], "big", signed=True)
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect()
            try:
                while not conn.execute(select(func.pg_try_advisory_lock(key))).scalar_one():
                    self._wait_or_refuse(source, deadline)
                self._held_locks[source] = (conn.execute(select(func.pg_backend_pid())).scalar_one(), key)
                try:
                    yield
                finally:
                    self._held_locks.pop(source, None)
                    try:
                        conn.execute(select(func.pg_advisory_unlock(key)))
                    except DBAPIError:  # the session is gone, and the lock with it: nothing to release
                        log.warning("the lock of source %r had already ended with its database session", source)
            finally:
                conn.close()
            return
        path = Path(self.url.removeprefix("sqlite:///") + f".{key & 0xFFFFFFFFFFFF:012x}.lock")
        with open(path, "a+") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    self._wait_or_refuse(source, deadline)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def check_lock(self, source: str, conn: Connection | None = None) -> None:
        """Raise LockLost if this ledger took the source's PostgreSQL lock and its session no
        longer holds it. Called inside each write transaction of a locked source (and by the
        pipeline before it writes to the store), so a run whose lock was lost stops at its next
        write instead of writing beside the run that took the lock over. A source this ledger
        did not lock (SQLite: an flock cannot be lost) is not checked."""
        held = self._held_locks.get(source)
        if held is None:
            return
        pid, key = held
        query = select(func.count()).select_from(_pg_locks).where(
            _pg_locks.c.locktype == "advisory",
            _pg_locks.c.granted.is_(True),
            _pg_locks.c.pid == pid,
            cast(_pg_locks.c.classid, BigInteger) == (key >> 32) & 0xFFFFFFFF,  # a bigint key is two oids
            cast(_pg_locks.c.objid, BigInteger) == key & 0xFFFFFFFF,
            _pg_locks.c.objsubid == 1,
        )
        if conn is not None:
            held_now = conn.execute(query).scalar_one()
        else:
            with self.engine.connect() as own:
                held_now = own.execute(query).scalar_one()
        if not held_now:
            raise LockLost(
                f"source {source!r}: the run lost its lock (its database session ended) and stopped before "
                "writing more; documents finished before are indexed, and the next run finishes the job"
            )

    def _wait_or_refuse(self, source: str, deadline: float) -> None:
        if time.monotonic() >= deadline:
            last = self.last_run(source)
            since = f" (run {last['id']}, started {last['started_at']})" if last and last["status"] == "running" else ""
            raise SourceBusy(f"source {source!r} is being synced by another run{since}; try again when it ends")
        time.sleep(0.5)

    # -- sources -------------------------------------------------------------------------------

    def register_source(self, name: str, kind: str, location: str) -> None:
        """Bind a source name to its location once; reusing the name elsewhere is refused."""
        with self.engine.begin() as conn:
            row = conn.execute(select(sources_table).where(sources_table.c.name == name)).first()
            if row is None:
                conn.execute(
                    insert(sources_table).values(name=name, kind=kind, location=location, created_at=_now())
                )
            elif (row.kind, row.location) != (kind, location):
                raise ConfigError(
                    f"source {name!r} is already bound to {row.kind} {row.location}; "
                    f"choose another source name for {location}"
                )

    def sources(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(sources_table).order_by(sources_table.c.name))]

    def source(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(sources_table).where(sources_table.c.name == name)).first()
            return dict(row._mapping) if row else None

    # -- runs ----------------------------------------------------------------------------------

    def begin_run(self, source: str, *, dry_run: bool) -> int:
        """Start a run; a run of this source left `running` by a crash is marked `abandoned`
        and its listing dropped (runs of one source never overlap)."""
        with self.engine.begin() as conn:
            stale = select(runs_table.c.id).where(runs_table.c.source == source, runs_table.c.status == "running")
            conn.execute(delete(listing_table).where(listing_table.c.run_id.in_(stale)))
            conn.execute(
                update(runs_table)
                .where(runs_table.c.source == source, runs_table.c.status == "running")
                .values(status="abandoned", finished_at=_now())
            )
            result = conn.execute(
                insert(runs_table).values(
                    source=source, started_at=_now(), status="running", dry_run=int(dry_run)
                )
            )
            return int(result.inserted_primary_key[0])

    def finish_run(self, run_id: int, *, status: str, counts: dict[str, int], seconds: float, report: dict) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(runs_table)
                .where(runs_table.c.id == run_id)
                .values(finished_at=_now(), status=status, seconds=seconds, report=report, **counts)
            )
            conn.execute(delete(listing_table).where(listing_table.c.run_id == run_id))

    def index_version(self) -> str:
        """A token that changes whenever an ingest may have changed the store (for cache keys).

        Built from the runs that are not dry runs, across all sources: the newest run's id, how
        many runs are still `running`, and the latest `finished_at`. Ids only grow, so a run
        starting changes the newest id; with no new run, a run finishing (or being marked
        abandoned) lowers the running count. So a run in progress and the same run finished
        give different versions even while a newer run of another source is in progress,
        which the newest run alone would miss. One aggregate query over `runs` (one row per
        sync, a small table)."""
        r = runs_table
        query = select(
            func.max(r.c.id),
            func.count().filter(r.c.status == "running"),
            func.max(r.c.finished_at),
        ).where(r.c.dry_run == 0)
        with self.engine.connect() as conn:
            newest, running, finished = conn.execute(query).one()
        if newest is None:
            return "empty"
        finished_text = finished.isoformat() if isinstance(finished, datetime) else str(finished)
        return f"run{newest}.r{running}.f{finished_text}"

    def last_run(self, source: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(runs_table)
                .where(runs_table.c.source == source)
                .order_by(runs_table.c.id.desc())
                .limit(1)
            ).first()
            return dict(row._mapping) if row else None

    # -- planning ------------------------------------------------------------------------------

    def load_listing(self, run_id: int, items: Iterable[DocRef | Deletion]) -> int:
        """Bulk-load a listing (or the changes of a partial one) for this run; returns its size."""

        def row(item: DocRef | Deletion) -> dict[str, Any]:
            if isinstance(item, Deletion):
                return {"run_id": run_id, "doc_id": item.doc_id, "fingerprint": "", "uri": "", "size": None,
                        "modified_at": None, "kind": DELETED}
            return {"run_id": run_id, "doc_id": item.doc_id, "fingerprint": item.fingerprint, "uri": item.uri,
                    "size": item.size, "modified_at": item.modified_at, "kind": LISTED}

        return self._insert_listing(map(row, items), ignore_duplicates=False)

    def load_present_ids(self, run_id: int, doc_ids: Iterable[str]) -> int:
        """Add an ids-only complete listing on top of the changes already loaded."""
        rows = ({"run_id": run_id, "doc_id": d, "fingerprint": "", "uri": "", "size": None, "kind": PRESENT} for d in doc_ids)
        return self._insert_listing(rows, ignore_duplicates=True)

    def _insert_listing(self, rows: Iterable[dict[str, Any]], *, ignore_duplicates: bool) -> int:
        stmt = _dialect_insert(self.engine, listing_table)
        if ignore_duplicates:
            stmt = stmt.on_conflict_do_nothing(index_elements=[listing_table.c.run_id, listing_table.c.doc_id])
        total = 0
        batch: list[dict[str, Any]] = []
        with self.engine.begin() as conn:
            for item in rows:
                batch.append(item)
                if len(batch) >= BATCH_ROWS:
                    conn.execute(stmt, batch)
                    total += len(batch)
                    batch.clear()
            if batch:
                conn.execute(stmt, batch)
                total += len(batch)
        return total

    def _join(self, source: str):
        d, lst = documents_table, listing_table
        return lst.outerjoin(d, and_(d.c.source == source, d.c.doc_id == lst.c.doc_id)), d, lst

    def _needs_work(self, d, lst, retry_failed: bool, force: bool = False):
        if force:  # a backfill re-ingests everything it lists
            return true()
        changed = or_(
            and_(lst.c.kind == LISTED, d.c.fingerprint != lst.c.fingerprint),
            d.c.status == STATUS_PENDING,
        )
        if retry_failed:
            changed = or_(changed, d.c.status == STATUS_FAILED)
        return changed

    def _gone_condition(self, d, run_id: int, complete: bool):
        """Known documents this run deletes: absent from a complete listing, or reported deleted."""
        lst = listing_table
        if complete:
            return ~exists().where(lst.c.run_id == run_id, lst.c.doc_id == d.c.doc_id, lst.c.kind != DELETED)
        return exists().where(lst.c.run_id == run_id, lst.c.doc_id == d.c.doc_id, lst.c.kind == DELETED)

    def plan_counts(self, source: str, run_id: int, *, complete: bool = True, retry_failed: bool = False,
                    force: bool = False) -> PlanCounts:
        joined, d, lst = self._join(source)
        listed = and_(lst.c.run_id == run_id, lst.c.kind != DELETED)
        needs_work = self._needs_work(d, lst, retry_failed, force)
        gone_cond = and_(d.c.source == source, self._gone_condition(d, run_id, complete))
        failed = d.c.status == STATUS_FAILED

        def count(query) -> int:
            return conn.execute(query).scalar_one()

        with self.engine.connect() as conn:
            new = count(select(func.count()).select_from(joined).where(listed, d.c.doc_id.is_(None)))
            changed = count(select(func.count()).select_from(joined).where(listed, d.c.doc_id.is_not(None), needs_work))
            known = count(select(func.count()).select_from(d).where(d.c.source == source))
            gone = count(select(func.count()).select_from(d).where(gone_cond))
            failed_total = count(select(func.count()).select_from(d).where(d.c.source == source, failed))
            failed_redone = count(
                select(func.count()).select_from(joined).where(listed, d.c.doc_id.is_not(None), needs_work, failed)
            )
            failed_gone = count(select(func.count()).select_from(d).where(gone_cond, failed))
        # Every known document is changed, gone, or left as it is.
        return PlanCounts(new=new, changed=changed, unchanged=known - changed - gone, gone=gone, known=known,
                          still_failing=failed_total - failed_redone - failed_gone)

    def iter_pending(
        self, source: str, run_id: int, *, retry_failed: bool = False, force: bool = False, page_size: int = 500
    ) -> Iterator[PendingDoc]:
        """New and changed documents in doc_id order, one page per query (keyset pagination),
        so rows this run updates meanwhile cannot shift the pages."""
        joined, d, lst = self._join(source)
        condition = and_(
            lst.c.run_id == run_id,
            lst.c.kind != DELETED,
            or_(d.c.doc_id.is_(None), self._needs_work(d, lst, retry_failed, force)),
        )
        after = ""
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(lst.c.doc_id, lst.c.fingerprint, lst.c.uri, lst.c.size, lst.c.modified_at, d.c.uri.label("known_uri"),
                           d.c.version, d.c.doc_id.label("known"))
                    .select_from(joined)
                    .where(condition, lst.c.doc_id > after)
                    .order_by(lst.c.doc_id)
                    .limit(page_size)
                ).all()
            if not rows:
                return
            for row in rows:
                ref = DocRef(source=source, doc_id=row.doc_id, fingerprint=row.fingerprint,
                             uri=row.uri or row.known_uri or "", size=row.size, modified_at=_aware(row.modified_at))
                yield PendingDoc(ref=ref, known_version=row.version, is_new=row.known is None)
            after = rows[-1].doc_id

    def iter_gone(self, source: str, run_id: int, *, complete: bool = True, page_size: int = 1000) -> Iterator[list[str]]:
        """Pages of doc ids of `source` that this run deletes."""
        d = documents_table
        gone = self._gone_condition(d, run_id, complete)
        after = ""
        while True:
            with self.engine.connect() as conn:
                ids = list(
                    conn.execute(
                        select(d.c.doc_id)
                        .where(d.c.source == source, gone, d.c.doc_id > after)
                        .order_by(d.c.doc_id)
                        .limit(page_size)
                    ).scalars()
                )
            if not ids:
                return
            yield ids
            after = ids[-1]

    # -- cursors -------------------------------------------------------------------------------

    def cursor(self, source: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(cursors_table.c.cursor).where(cursors_table.c.source == source)).scalar_one_or_none()

    def set_cursor(self, source: str, cursor: str, run_id: int) -> None:
        """Called only when a run has finished: a crash leaves the old cursor, so nothing is skipped."""
        stmt = _dialect_insert(self.engine, cursors_table)
        values = {"source": source, "cursor": cursor, "run_id": run_id, "updated_at": _now()}
        with self.engine.begin() as conn:
            self.check_lock(source, conn)
            conn.execute(
                stmt.values(**values).on_conflict_do_update(
                    index_elements=[cursors_table.c.source],
                    set_={"cursor": cursor, "run_id": run_id, "updated_at": values["updated_at"]},
                )
            )

    def sample_plan(self, source: str, run_id: int, *, complete: bool = True, retry_failed: bool = False,
                    force: bool = False, limit: int = 50) -> dict[str, list[str]]:
        """Up to `limit` doc ids per action, for a dry run's printout."""
        sample: dict[str, list[str]] = {"add": [], "update": []}
        for pending in self.iter_pending(source, run_id, retry_failed=retry_failed, force=force):
            bucket = sample["add" if pending.is_new else "update"]
            if len(bucket) < limit:
                bucket.append(pending.ref.doc_id)
            if all(len(v) >= limit for v in sample.values()):
                break
        gone: list[str] = []
        for page in self.iter_gone(source, run_id, complete=complete):
            gone.extend(page[: limit - len(gone)])
            if len(gone) >= limit:
                break
        sample["delete"] = gone
        return sample

    # -- document rows -------------------------------------------------------------------------

    def mark_pending(self, source: str, refs: Sequence[DocRef], run_id: int) -> None:
        """Record new documents before their chunks are written (see module docstring)."""
        if not refs:
            return
        rows = [
            {
                "source": source,
                "doc_id": r.doc_id,
                "uri": r.uri,
                "fingerprint": r.fingerprint,
                "version": None,
                "title": None,
                "chunk_count": 0,
                "status": STATUS_PENDING,
                "error": None,
                "updated_at": _now(),
                "run_id": run_id,
            }
            for r in refs
        ]
        self._upsert_documents(source, rows, only_if_absent=True)

    def record_documents(self, rows: Sequence[dict[str, Any]]) -> None:
        """Write final document rows (indexed or failed), one transaction per source."""
        for source in sorted({r["source"] for r in rows}):
            self._upsert_documents(
                source, [{**r, "updated_at": _now()} for r in rows if r["source"] == source], only_if_absent=False
            )

    def _upsert_documents(self, source: str, rows: list[dict[str, Any]], *, only_if_absent: bool) -> None:
        table = documents_table
        stmt = _dialect_insert(self.engine, table)
        keys = [table.c.source, table.c.doc_id]
        if only_if_absent:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
        else:
            stmt = stmt.on_conflict_do_update(
                index_elements=keys,
                set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in ("source", "doc_id")},
            )
        with self.engine.begin() as conn:
            self.check_lock(source, conn)
            for start in range(0, len(rows), BATCH_ROWS):
                conn.execute(stmt, rows[start : start + BATCH_ROWS])
            if not only_if_absent:
                failpoint("ledger.record.inside")  # sent, not committed

    def update_fingerprints(self, source: str, rows: Sequence[dict[str, str]]) -> None:
        """New fingerprints for documents whose bytes did not change (a touched file)."""
        if not rows:
            return
        d = documents_table
        stmt = (
            update(d)
            .where(d.c.source == source, d.c.doc_id == bindparam("b_doc_id"))
            .values(fingerprint=bindparam("b_fingerprint"), updated_at=_now())
        )
        with self.engine.begin() as conn:
            self.check_lock(source, conn)
            for start in range(0, len(rows), BATCH_ROWS):
                conn.execute(
                    stmt,
                    [{"b_doc_id": r["doc_id"], "b_fingerprint": r["fingerprint"]} for r in rows[start : start + BATCH_ROWS]],
                )

    def delete_documents(self, source: str, doc_ids: Sequence[str]) -> None:
        if not doc_ids:
            return
        with self.engine.begin() as conn:
            self.check_lock(source, conn)
            conn.execute(
                delete(documents_table).where(
                    documents_table.c.source == source, documents_table.c.doc_id.in_(list(doc_ids))
                )
            )

    def document(self, source: str, doc_id: str) -> DocumentRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(documents_table).where(
                    documents_table.c.source == source, documents_table.c.doc_id == doc_id
                )
            ).first()
        if row is None:
            return None
        return DocumentRecord(**{k: v for k, v in row._mapping.items() if k != "run_id"})

    def documents(self, source: str) -> list[DocumentRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(documents_table).where(documents_table.c.source == source).order_by(documents_table.c.doc_id)
            ).all()
        return [DocumentRecord(**{k: v for k, v in r._mapping.items() if k != "run_id"}) for r in rows]

    def source_summary(self, source: str, *, failure_limit: int = 20) -> dict[str, Any]:
        d = documents_table
        with self.engine.connect() as conn:
            by_status = dict(
                conn.execute(
                    select(d.c.status, func.count()).where(d.c.source == source).group_by(d.c.status)
                ).all()
            )
            # Chunks in the store: a failed document keeps the chunks of its last good version.
            chunks = conn.execute(
                select(func.coalesce(func.sum(d.c.chunk_count), 0)).where(d.c.source == source)
            ).scalar_one()
            failures = [
                {"doc_id": r.doc_id, "uri": r.uri, "error": r.error}
                for r in conn.execute(
                    select(d.c.doc_id, d.c.uri, d.c.error)
                    .where(d.c.source == source, d.c.status == STATUS_FAILED)
                    .order_by(d.c.doc_id)
                    .limit(failure_limit)
                )
            ]
        return {
            "documents": by_status.get(STATUS_INDEXED, 0),
            "pending": by_status.get(STATUS_PENDING, 0),
            "failed": by_status.get(STATUS_FAILED, 0),
            "chunks": int(chunks),
            "failures": failures,
        }

    # -- re-index: moving whole sources between ledgers (ragline/reindex.py) ---------------------
    # Additions for the blue/green re-index; nothing above calls them.

    def export_sources(self, sources: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Every `documents` and `source_cursors` row of `sources`, as plain dicts."""
        names = list(sources)
        with self.engine.connect() as conn:
            documents = [
                dict(r._mapping)
                for r in conn.execute(
                    select(documents_table)
                    .where(documents_table.c.source.in_(names))
                    .order_by(documents_table.c.source, documents_table.c.doc_id)
                )
            ]
            cursors = [
                dict(r._mapping)
                for r in conn.execute(select(cursors_table).where(cursors_table.c.source.in_(names)))
            ]
        return {"documents": documents, "cursors": cursors}

    def replace_sources(
        self,
        sources: Sequence[str],
        state: dict[str, list[dict[str, Any]]],
        *,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        """Replace the `documents` and `source_cursors` rows of `sources` with `state` (as
        `export_sources` returns it, typically from another ledger) in one transaction.
        `before_commit` runs inside it, after the writes: if it raises, nothing is changed.
        `run_id` values of another ledger mean nothing here and are cleared."""
        names = list(sources)
        stray = {r["source"] for r in state["documents"] + state["cursors"]} - set(names)
        if stray:
            raise ValueError(f"rows of sources outside {names}: {sorted(stray)}")
        documents = [{**r, "run_id": None} for r in state["documents"]]
        with self.engine.begin() as conn:
            for name in names:
                self.check_lock(name, conn)
            conn.execute(delete(documents_table).where(documents_table.c.source.in_(names)))
            conn.execute(delete(cursors_table).where(cursors_table.c.source.in_(names)))
            for start in range(0, len(documents), BATCH_ROWS):
                conn.execute(insert(documents_table), documents[start : start + BATCH_ROWS])
            if state["cursors"]:
                # cursors_table.run_id is NOT NULL: keep the value, it is only informative
                conn.execute(insert(cursors_table), list(state["cursors"]))
            if before_commit is not None:
                before_commit()


def _dialect_insert(engine: Engine, table: Table):
    """INSERT with ON CONFLICT support, for the two ledger databases."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table)
    if engine.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise ConfigError(f"unsupported ledger database: {engine.dialect.name} (use SQLite or PostgreSQL)")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()

