"""The audit trail of the query service: one row per request, chained by hashes, in the ledger database.

Each row carries `seq` (1, 2, 3, ... without gaps), the time, what was asked and answered (the
question only as a sha256, the API key only as its id) and two hashes:

    entry_hash = sha256(canonical JSON of seq, at, every field, prev_hash)
    prev_hash  = entry_hash of row seq - 1   (64 zeros for seq 1)

`verify()` walks the rows in seq order and names the seq of every break: an edited row (its hash
no longer matches its contents), a deleted row (a gap in seq, or a prev_hash that is not the
previous row's hash), a reordered or inserted row (same signs). What a chain cannot show alone:

- Deleting the newest rows leaves a valid, shorter chain. Record the head (`head()`: seq and
  hash) somewhere else now and then (a log shipped off the host, a ticket) and pass it back as
  `verify(expect_head=(seq, hash))`: the report says when the chain no longer reaches it.
- Anyone who can write the table can rewrite every row from some point on with fresh hashes;
  the anchor held elsewhere catches that too. The trail is tamper-evident, not tamper-proof.

Appends are serialised so the chain stays linear across threads and processes: a
transaction-scoped PostgreSQL advisory lock, or on SQLite a `BEGIN IMMEDIATE` transaction (the
database's write lock, taken before the head is read). The primary key on `seq` is the last guard:
two writers that both read the same head cannot both insert the next seq.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
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
    func,
    insert,
    inspect,
    select,
)
from sqlalchemy.exc import DBAPIError

GENESIS_HASH = "0" * 64
MAX_PROBLEMS = 100  # a wrecked table would otherwise produce one line per row
STREAM_ROWS = 1000
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"ragline:audit_log").digest()[:8], "big", signed=True)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

audit_metadata = MetaData()

audit_table = Table(
    "audit_log",
    audit_metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("route", String(64), nullable=False),
    Column("key_id", String(200), nullable=False),
    Column("question_sha256", String(64), nullable=False),
    Column("chunk_ids", Text, nullable=False),  # JSON list
    Column("model", String(200), nullable=True),
    Column("model_route", String(64), nullable=True),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("cached", Boolean, nullable=False),
    Column("status", Integer, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
)


@dataclass(frozen=True)
class AuditEntry:
    route: str  # "/v1/ask" | "/v1/search"
    key_id: str  # an id of the API key, never the key
    question_sha256: str
    chunk_ids: list[str]
    model: str | None
    model_route: str | None  # routing decision ("small"/"large"/"extractive"...)
    input_tokens: int
    output_tokens: int
    latency_ms: float
    cached: bool
    status: int  # HTTP status returned

    def check(self) -> None:
        """Refuse entries the chain could not hash back identically, and raw questions."""
        if not _SHA256_HEX.fullmatch(self.question_sha256):
            raise ValueError("audit entry: question_sha256 must be a lowercase sha256 hex digest, not the question")
        if not all(isinstance(c, str) for c in self.chunk_ids):
            raise ValueError("audit entry: chunk_ids must be strings")
        if not math.isfinite(self.latency_ms):
            raise ValueError(f"audit entry: latency_ms must be a finite number, got {self.latency_ms}")


ENTRY_FIELDS = tuple(f.name for f in fields(AuditEntry))


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    entries: int
    head: str | None  # entry_hash of the newest row
    problems: list[str] = field(default_factory=list)
    head_seq: int | None = None  # its seq: `head_seq:head` is what verify(expect_head=...) takes


def _utc_iso(at: datetime) -> str:
    # SQLite hands back naive datetimes (stored as UTC), PostgreSQL aware ones in the session's zone
    aware = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return aware.isoformat(timespec="microseconds")


def entry_hash(seq: int, at: datetime, values: dict[str, Any], prev_hash: str) -> str:
    """sha256 hex over the canonical JSON of a row: seq, at (UTC ISO, microseconds), fields, prev_hash."""
    document = {name: values[name] for name in ENTRY_FIELDS}
    document["chunk_ids"] = list(document["chunk_ids"])
    document["latency_ms"] = float(document["latency_ms"])
    document["cached"] = bool(document["cached"])
    document.update(seq=int(seq), at=_utc_iso(at), prev_hash=prev_hash)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class AuditLog:
    def __init__(self, engine: Engine):
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"audit log: unsupported database {engine.dialect.name} (use SQLite or PostgreSQL)")
        self.engine = engine
        self._thread_lock = threading.Lock()  # spares SQLite's busy-wait between threads of one process
        self._create_table()

    def _create_table(self) -> None:
        try:
            audit_metadata.create_all(self.engine)
        except DBAPIError:
            # another process created it between the check and the CREATE
            if not inspect(self.engine).has_table(audit_table.name):
                raise

    # -- writing -------------------------------------------------------------------------------

    def append(self, entry: AuditEntry, *, at: datetime | None = None) -> str:
        """Add one entry after the current head; returns its hash."""
        return self.append_many([entry], at=at)

    def append_many(self, entries: Sequence[AuditEntry], *, at: datetime | None = None) -> str:
        """Add entries in order, in one transaction; returns the hash of the last one."""
        if not entries:
            raise ValueError("audit log: append_many needs at least one entry")
        if at is not None and at.tzinfo is None:
            raise ValueError("audit log: `at` must be timezone-aware (UTC)")
        for entry in entries:
            entry.check()
        with self._thread_lock, self._write_transaction() as conn:
            head = conn.execute(
                select(audit_table.c.seq, audit_table.c.entry_hash).order_by(audit_table.c.seq.desc()).limit(1)
            ).first()
            seq, prev = (head.seq, head.entry_hash) if head else (0, GENESIS_HASH)
            when = (at or datetime.now(UTC)).astimezone(UTC)
            rows = []
            for entry in entries:
                seq += 1
                values = asdict(entry)
                digest = entry_hash(seq, when, values, prev)
                rows.append(
                    {**values, "chunk_ids": json.dumps(list(entry.chunk_ids), ensure_ascii=False),
                     "latency_ms": float(entry.latency_ms), "seq": seq, "at": when,
                     "prev_hash": prev, "entry_hash": digest}
                )
                prev = digest
            conn.execute(insert(audit_table), rows)
        return prev

    def _write_transaction(self) -> AbstractContextManager[Connection]:
        return _postgres_append(self.engine) if self.engine.dialect.name == "postgresql" else _sqlite_append(self.engine)

    # -- reading -------------------------------------------------------------------------------

    def head(self) -> tuple[int, str] | None:
        """(seq, hash) of the newest entry; record it elsewhere to anchor a later verify()."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(audit_table.c.seq, audit_table.c.entry_hash).order_by(audit_table.c.seq.desc()).limit(1)
            ).first()
        return (int(row.seq), row.entry_hash) if row else None

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_table)).scalar_one())

    def _rows(self) -> Iterator[Any]:
        """Rows in seq order, fetched in batches: memory stays flat in the length of the trail."""
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=STREAM_ROWS).execute(
                select(audit_table).order_by(audit_table.c.seq)
            )
            yield from result

    def verify(self, expect_head: tuple[int, str] | None = None) -> AuditReport:
        """Walk the chain in seq order; every problem names the seq where it shows."""
        problems: list[str] = []
        entries = 0
        last_seq, last_hash = 0, GENESIS_HASH
        anchor_seen = False
        for row in self._rows():
            entries += 1
            seq = int(row.seq)
            values = {name: getattr(row, name) for name in ENTRY_FIELDS}
            try:
                values["chunk_ids"] = json.loads(row.chunk_ids)
                recomputed = entry_hash(seq, row.at, values, row.prev_hash)
            except (ValueError, TypeError):
                recomputed = None
            if recomputed != row.entry_hash:
                problems.append(f"seq {seq}: contents do not match its entry_hash (the row was edited)")
            if seq != last_seq + 1:
                missing = f"seq {last_seq + 1}" if seq == last_seq + 2 else f"seqs {last_seq + 1}..{seq - 1}"
                where = f"after seq {last_seq}" if last_seq else "at the start"
                problems.append(f"seq {seq}: {missing} missing {where} (rows deleted)")
            elif row.prev_hash != last_hash:
                before = f"the entry_hash of seq {last_seq}" if last_seq else "the genesis hash"
                problems.append(f"seq {seq}: prev_hash is not {before} (a row deleted, inserted or reordered)")
            if expect_head is not None and seq == expect_head[0]:
                anchor_seen = True
                if row.entry_hash != expect_head[1]:
                    problems.append(f"seq {seq}: entry_hash differs from the anchor recorded for it (chain rewritten)")
            last_seq, last_hash = seq, row.entry_hash
        if expect_head is not None and not anchor_seen:
            ends = f"ends at seq {last_seq}" if entries else "is empty"
            problems.append(
                f"the chain {ends} and no longer reaches the anchor seq {expect_head[0]} (newest rows deleted)"
            )
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS} more problems")
        return AuditReport(
            ok=not problems, entries=entries, head=last_hash if entries else None, problems=shown,
            head_seq=last_seq if entries else None,
        )


@contextmanager
def _postgres_append(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the audit log's advisory lock until it commits or rolls back."""
    with engine.begin() as conn:
        conn.execute(select(func.pg_advisory_xact_lock(_LOCK_KEY)))
        yield conn


@contextmanager
def _sqlite_append(engine: Engine) -> Iterator[Connection]:
    """A BEGIN IMMEDIATE transaction: SQLite's write lock is taken before the head is read, so
    another process cannot append between our read and our insert."""
    with engine.connect() as conn:
        # pysqlite opens no transaction of its own before an explicit BEGIN, and SQLAlchemy's
        # commit()/rollback() end this one
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
