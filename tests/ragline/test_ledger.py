"""The ledger on both backends: SQLite (default) and PostgreSQL (production)."""

from __future__ import annotations

import pytest

from ragline.errors import ConfigError
from ragline.ledger import Ledger
from ragline.types import DocRef


def ref(doc_id, fp="f1"):
    return DocRef(source="s", doc_id=doc_id, fingerprint=fp, uri=f"file:///{doc_id}")


def indexed(doc_id, fp="f1", version="v1", chunks=2):
    return {"source": "s", "doc_id": doc_id, "uri": f"file:///{doc_id}", "fingerprint": fp, "version": version,
            "title": doc_id, "chunk_count": chunks, "status": "indexed", "error": None, "run_id": 1}


@pytest.fixture
def ledger(ledger_url):
    led = Ledger(ledger_url)
    yield led
    led.close()


def test_plan_is_computed_from_the_listing(ledger):
    ledger.record_documents([indexed("same"), indexed("edited"), indexed("gone"), indexed("broken") | {"status": "failed"}])
    run = ledger.begin_run("s", dry_run=False)
    listed = ledger.load_listing(run, iter([ref("same"), ref("edited", "f2"), ref("new"), ref("broken")]))
    assert listed == 4
    counts = ledger.plan_counts("s", run)
    assert (counts.new, counts.changed, counts.unchanged, counts.gone, counts.known, counts.still_failing) == (1, 1, 2, 1, 4, 1)
    pending = list(ledger.iter_pending("s", run))
    assert [(p.ref.doc_id, p.is_new, p.known_version) for p in pending] == [("edited", False, "v1"), ("new", True, None)]
    assert [p.ref.fingerprint for p in pending] == ["f2", "f1"]
    assert list(ledger.iter_gone("s", run)) == [["gone"]]
    retry = ledger.plan_counts("s", run, retry_failed=True)
    assert (retry.changed, retry.unchanged) == (2, 1)


def test_pending_pages_do_not_shift_while_rows_are_updated(ledger):
    run = ledger.begin_run("s", dry_run=False)
    ledger.load_listing(run, (ref(f"doc-{i:04d}") for i in range(2500)))
    seen = []
    for p in ledger.iter_pending("s", run, page_size=100):
        seen.append(p.ref.doc_id)
        if len(seen) % 100 == 0:  # the run writes rows as it goes
            ledger.record_documents([indexed(d) for d in seen[-100:]])
    assert seen == [f"doc-{i:04d}" for i in range(2500)]
    assert ledger.plan_counts("s", run).unchanged == 2500


def test_pending_rows_survive_for_cleanup_and_are_redone(ledger):
    run = ledger.begin_run("s", dry_run=False)
    ledger.mark_pending("s", [ref("a")], run)
    ledger.mark_pending("s", [ref("a")], run)  # idempotent
    assert ledger.document("s", "a").status == "pending"
    run2 = ledger.begin_run("s", dry_run=False)
    ledger.load_listing(run2, [ref("a")])
    [p] = ledger.iter_pending("s", run2)
    assert not p.is_new  # known, so its possible chunks get cleaned when it is redone
    run3 = ledger.begin_run("s", dry_run=False)
    ledger.load_listing(run3, [])
    assert list(ledger.iter_gone("s", run3)) == [["a"]]


def test_source_names_are_bound_to_one_location(ledger):
    ledger.register_source("docs", "local", "/a")
    ledger.register_source("docs", "local", "/a")
    with pytest.raises(ConfigError, match="already bound to local /a"):
        ledger.register_source("docs", "local", "/b")


def test_runs_are_recorded_and_listing_cleared(ledger):
    run = ledger.begin_run("s", dry_run=False)
    ledger.load_listing(run, [ref("x")])
    ledger.finish_run(run, status="ok", counts={"added": 1, "updated": 0, "unchanged": 0, "deleted": 0, "failed": 0, "chunks": 3},
                      seconds=1.5, report={"note": "x"})
    last = ledger.last_run("s")
    assert (last["status"], last["added"], last["chunks"], last["report"]) == ("ok", 1, 3, {"note": "x"})
    assert ledger.plan_counts("s", run).new == 0  # the listing of a finished run is gone


def test_summary_and_fingerprint_updates(ledger):
    ledger.record_documents([indexed("a", chunks=3), indexed("b", chunks=4) | {"status": "failed", "error": "bad"}])
    ledger.update_fingerprints("s", [{"doc_id": "a", "fingerprint": "f9"}])
    assert ledger.document("s", "a").fingerprint == "f9"
    summary = ledger.source_summary("s")
    assert (summary["documents"], summary["failed"], summary["chunks"]) == (1, 1, 7)
    assert summary["failures"] == [{"doc_id": "b", "uri": "file:///b", "error": "bad"}]
    ledger.delete_documents("s", ["a", "b"])
    assert ledger.documents("s") == []


def test_a_run_left_running_by_a_crash_is_abandoned_by_the_next(ledger):
    crashed = ledger.begin_run("s", dry_run=False)
    ledger.load_listing(crashed, [ref("x"), ref("y")])
    other_source = ledger.begin_run("t", dry_run=False)
    nxt = ledger.begin_run("s", dry_run=False)
    assert ledger.last_run("s")["id"] == nxt
    with ledger.engine.connect() as conn:
        from sqlalchemy import select

        from ragline.ledger import listing_table, runs_table

        statuses = dict(conn.execute(select(runs_table.c.id, runs_table.c.status)).all())
        listed_runs = set(conn.execute(select(listing_table.c.run_id)).scalars())
    assert statuses == {crashed: "abandoned", other_source: "running", nxt: "running"}
    assert crashed not in listed_runs


def test_one_run_per_source_and_the_lock_dies_with_its_process(ledger, ledger_url):
    import subprocess
    import sys
    import textwrap

    from ragline.errors import SourceBusy

    with ledger.source_lock("s"):
        with pytest.raises(SourceBusy, match="source 's' is being synced by another run"):
            with Ledger(ledger_url).source_lock("s"):
                pass
        with Ledger(ledger_url).source_lock("other"):  # other sources are not blocked
            pass

    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from ragline.ledger import Ledger
            with Ledger({ledger_url!r}).source_lock("s"):
                print("held", flush=True)
                time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SourceBusy):
            with ledger.source_lock("s", wait_seconds=1.0):
                pass
        holder.kill()  # a crashed run: its lock must not outlive it
        holder.wait(timeout=10)
        with ledger.source_lock("s", wait_seconds=10.0):
            pass
    finally:
        holder.kill()
