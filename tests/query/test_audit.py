"""The hash-chained audit trail on SQLite and PostgreSQL: a clean chain verifies, every kind of
tampering is named by its seq, concurrent appends (threads and processes) keep the chain linear."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from query.audit import GENESIS_HASH, AuditEntry, AuditLog
from ragline.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]


def entry(n: int = 0, **overrides) -> AuditEntry:
    values = dict(
        route="/v1/ask",
        key_id=f"key-{n % 3}",
        question_sha256=hashlib.sha256(f"question {n}".encode()).hexdigest(),
        chunk_ids=[f"chunk-{n}", "chunk-é"],
        model="small-model",
        model_route="small",
        input_tokens=100 + n,
        output_tokens=20,
        latency_ms=12.345 + n / 7,
        cached=n % 2 == 0,
        status=200,
    )
    values.update(overrides)
    return AuditEntry(**values)


@pytest.fixture
def ledger(ledger_url):
    ledger = Ledger(ledger_url)
    yield ledger
    ledger.close()


@pytest.fixture
def audit(ledger):
    return AuditLog(ledger.engine)


def execute(audit: AuditLog, sql: str, **params) -> None:
    with audit.engine.begin() as conn:
        conn.execute(text(sql), params)


def test_a_clean_chain_verifies(audit):
    assert audit.head() is None
    empty = audit.verify()
    assert empty.ok and empty.entries == 0 and empty.head is None

    hashes = [audit.append(entry(n)) for n in range(5)]
    assert audit.head() == (5, hashes[-1])
    report = audit.verify()
    assert report.ok, report.problems
    assert (report.entries, report.head, report.head_seq) == (5, hashes[-1], 5)
    assert audit.verify(expect_head=(3, hashes[2])).ok
    with audit.engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, prev_hash, entry_hash FROM audit_log ORDER BY seq")).all()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(rows[i].prev_hash == rows[i - 1].entry_hash for i in range(1, 5))


def test_a_second_audit_log_on_the_same_table_continues_the_chain(ledger, audit):
    audit.append(entry(1))
    again = AuditLog(ledger.engine)  # the table exists: created once, not replaced
    again.append(entry(2), at=datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))))
    assert again.verify().ok and again.head()[0] == 2


def test_an_edited_row_is_named_by_its_seq(audit):
    for n in range(6):
        audit.append(entry(n))
    execute(audit, "UPDATE audit_log SET model = 'large-model' WHERE seq = 3")
    report = audit.verify()
    assert not report.ok
    assert len(report.problems) == 1 and report.problems[0].startswith("seq 3:")
    assert "edited" in report.problems[0]


def test_an_edited_row_with_a_recomputed_hash_breaks_the_link_to_the_next(audit):
    for n in range(4):
        audit.append(entry(n))
    forged = "f" * 64  # whatever the forger computes, the next row still points at the old hash
    execute(audit, "UPDATE audit_log SET entry_hash = :h WHERE seq = 2", h=forged)
    problems = audit.verify().problems
    assert any(p.startswith("seq 2:") for p in problems)
    assert any(p.startswith("seq 3:") and "prev_hash" in p for p in problems)


def test_a_deleted_middle_row_is_reported(audit):
    for n in range(6):
        audit.append(entry(n))
    execute(audit, "DELETE FROM audit_log WHERE seq = 4")
    report = audit.verify()
    assert not report.ok and report.entries == 5
    assert report.problems == ["seq 5: seq 4 missing after seq 3 (rows deleted)"]


def test_deleted_first_rows_are_reported(audit):
    for n in range(3):
        audit.append(entry(n))
    execute(audit, "DELETE FROM audit_log WHERE seq = 1")
    assert audit.verify().problems == ["seq 2: seq 1 missing at the start (rows deleted)"]


def test_a_deleted_tail_needs_the_anchor_to_show(audit):
    for n in range(6):
        audit.append(entry(n))
    anchor = audit.head()
    execute(audit, "DELETE FROM audit_log WHERE seq >= 5")
    assert audit.verify().ok  # a shorter chain is still a valid chain
    report = audit.verify(expect_head=anchor)
    assert not report.ok
    assert report.problems == ["the chain ends at seq 4 and no longer reaches the anchor seq 6 (newest rows deleted)"]


def test_a_rewritten_anchor_row_is_reported(audit):
    for n in range(3):
        audit.append(entry(n))
    seq, _ = audit.head()
    report = audit.verify(expect_head=(seq, "0" * 64))
    assert report.problems == [f"seq {seq}: entry_hash differs from the anchor recorded for it (chain rewritten)"]


def test_reordered_rows_are_reported(audit):
    for n in range(5):
        audit.append(entry(n))
    # swap rows 2 and 3 by renumbering them (through a free seq, since seq is the primary key)
    execute(audit, "UPDATE audit_log SET seq = 100 WHERE seq = 2")
    execute(audit, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    execute(audit, "UPDATE audit_log SET seq = 3 WHERE seq = 100")
    problems = audit.verify().problems
    assert any(p.startswith("seq 2:") for p in problems)
    assert any(p.startswith("seq 3:") for p in problems)


def test_an_inserted_row_is_reported(audit):
    for n in range(3):
        audit.append(entry(n))
    # shift the tail up by one and slip a row in at seq 2, reusing the genuine neighbours' hashes
    execute(audit, "UPDATE audit_log SET seq = seq + 10 WHERE seq >= 2")
    execute(audit, "UPDATE audit_log SET seq = seq - 9 WHERE seq >= 12")
    execute(
        audit,
        "INSERT INTO audit_log SELECT 2, at, route, 'intruder', question_sha256, chunk_ids, model, model_route,"
        " input_tokens, output_tokens, latency_ms, cached, status, entry_hash, entry_hash FROM audit_log WHERE seq = 1",
    )
    report = audit.verify()
    assert not report.ok and report.entries == 4
    assert any(p.startswith("seq 2:") for p in report.problems)
    assert any(p.startswith("seq 3:") for p in report.problems)


def test_entries_that_would_leak_or_not_hash_back_are_refused(audit):
    with pytest.raises(ValueError, match="question_sha256"):
        audit.append(entry(question_sha256="What is my colleague's salary?"))
    with pytest.raises(ValueError, match="finite"):
        audit.append(entry(latency_ms=float("nan")))
    with pytest.raises(ValueError, match="timezone-aware"):
        audit.append(entry(), at=datetime(2024, 1, 1))
    assert audit.head() is None


def test_concurrent_appends_from_threads_keep_one_linear_chain(audit):
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                audit.append(entry(t * 100 + i))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    report = audit.verify()
    assert report.ok, report.problems
    assert report.entries == 200 and audit.head()[0] == 200


APPENDER = """
import hashlib, sys
from sqlalchemy import create_engine
from query.audit import AuditEntry, AuditLog
engine = create_engine(sys.argv[1])
log = AuditLog(engine)
for i in range(int(sys.argv[2])):
    log.append(AuditEntry(route="/v1/search", key_id=f"proc-{sys.argv[3]}",
        question_sha256=hashlib.sha256(str(i).encode()).hexdigest(), chunk_ids=[], model=None,
        model_route=None, input_tokens=0, output_tokens=0, latency_ms=1.0, cached=False, status=200))
engine.dispose()
"""


def test_concurrent_appends_from_processes_keep_one_linear_chain(ledger_url, audit):
    # separate processes with their own engines, as with several API workers (no shared thread lock)
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, ledger_url, "30", str(p)], cwd=ROOT,
                         stderr=subprocess.PIPE, text=True)
        for p in range(3)
    ]
    for _ in range(10):
        audit.append(entry(1))
    failures = [p.stderr.read() for p in procs if p.wait(timeout=120) != 0]
    assert failures == []
    report = audit.verify()
    assert report.ok, report.problems
    assert report.entries == 100


@pytest.mark.postgres
def test_hashes_do_not_depend_on_the_session_time_zone(postgres_server_url):
    with create_engine(postgres_server_url).begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS audit_log"))
    utc = create_engine(postgres_server_url, connect_args={"options": "-c timezone=UTC"})
    tokyo = create_engine(postgres_server_url, connect_args={"options": "-c timezone=Asia/Tokyo"})
    try:
        AuditLog(utc).append(entry(1), at=datetime(2024, 3, 1, 23, 59, 59, 123456, tzinfo=UTC))
        AuditLog(tokyo).append(entry(2))
        assert AuditLog(utc).verify().ok
        assert AuditLog(tokyo).verify().ok
    finally:
        with utc.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS audit_log"))
        utc.dispose()
        tokyo.dispose()


def test_ten_thousand_entries_verify_in_reasonable_time(audit):
    for start in range(0, 10_000, 2_500):
        audit.append_many([entry(n) for n in range(start, start + 2_500)])
    started = time.perf_counter()
    report = audit.verify()
    elapsed = time.perf_counter() - started
    assert report.ok and report.entries == 10_000
    assert elapsed < 10, f"verifying 10k entries took {elapsed:.1f}s"

    execute(audit, "UPDATE audit_log SET status = 500 WHERE seq = 7777")
    assert [p.split(":")[0] for p in audit.verify().problems] == ["seq 7777"]
