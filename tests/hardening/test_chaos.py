"""Crash anywhere, lose nothing: a sync is killed with SIGKILL at each failpoint of its write path
(ragline/failpoints.py), then run again to completion, and the index and ledger must equal those of
a run that was never interrupted: the same point ids with the same payloads (so no duplicates, no
orphans, nothing missing), the same ledger rows and the same source cursors.

The killed run is a real `ragline ingest` process over two sources at once: a local folder (a long
document with one paragraph edited, a new, a deleted, a touched and a corrupt file) and a SQL table
with a cursor (rows updated, inserted and deleted). Small chunks make the long document more than
one store sub-batch, so a kill can land inside an upsert. The reruns and the clean run go through
the same CLI in this process (the model loads once).

    RAGLINE_CHAOS_POINTS=all   every kill point below (the default); a comma list picks some
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.resync import manual_paragraphs
from ragline.cli import app
from ragline.failpoints import POINTS
from ragline.ledger import Ledger
from stores.edge import EdgeStore

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("docs", "orders")
# Every point once, and some again later in the run, when earlier batches are already durable.
KILLS = [f"{point}:1" for point in POINTS] + ["fetch.before:4", "upsert.after:2", "ledger.recorded:2",
                                              "ledger.record.inside:3", "gone.before:2"]
CONFIG = """\
sources:
  docs: {kind: local, path: ./docs}
  orders: {kind: sql, url_env: CHAOS_ORDERS_URL, table: orders, id_column: id,
           text_template: "{title}\\n\\n{body}", updated_at_column: updated_at}
"""


def _selected_kills() -> list[str]:
    wanted = os.environ.get("RAGLINE_CHAOS_POINTS", "all")
    if wanted == "all":
        return KILLS
    return [k for k in KILLS if k.split(":")[0] in wanted.split(",") or k in wanted.split(",")]


def _write_sources(root: Path) -> None:
    docs = root / "docs"
    docs.mkdir(parents=True)
    paragraphs = manual_paragraphs(count=400)
    (docs / "manual.md").write_text("# Store operations manual\n\n" + "\n\n".join(paragraphs) + "\n")
    (docs / "leave.md").write_text("# Leave\n\nEmployees get 22 days of paid leave a year.\n")
    (docs / "returns.txt").write_text("Returns are accepted within 30 days with a receipt.\n")
    (docs / "old.txt").write_text("The old shipping policy: ground only, five to seven days.\n")
    (docs / "touched.md").write_text("# Warranty\n\nTents carry a two-year warranty.\n")
    with sqlite3.connect(root / "orders.db") as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, title TEXT, body TEXT, updated_at TEXT)")
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", [
            (i, f"Order {i}", f"Order {i} holds {i % 7 + 1} items for customer {i * 37 % 101}.", f"2026-11-{i:02d}T10:00:00")
            for i in range(1, 21)
        ])


def _change_sources(root: Path) -> None:
    """What happened at the sources between the first run and the one that gets killed."""
    docs = root / "docs"
    manual = docs / "manual.md"
    text = manual.read_text()
    paragraphs = text.split("\n\n")
    paragraphs[200] = "Rule 200 now reads: the stove is inspected by the safety team before every trip."
    manual.write_text("\n\n".join(paragraphs))
    (docs / "new.md").write_text("# Shipping\n\nExpress shipping arrives in two days.\n")
    (docs / "old.txt").unlink()
    os.utime(docs / "touched.md", (time.time() + 3600, time.time() + 3600))  # same bytes, new mtime
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj <</Type /Catalog>> endobj\ntruncated")
    with sqlite3.connect(root / "orders.db") as db:
        db.execute("UPDATE orders SET body = 'Order 3 was cancelled.', updated_at = '2026-12-01T09:00:00' WHERE id = 3")
        db.execute("INSERT INTO orders VALUES (21, 'Order 21', 'Order 21 holds one tent.', '2026-12-02T08:00:00')")
        db.execute("DELETE FROM orders WHERE id = 7")


def _env(root: Path) -> dict[str, str]:
    return {"CHAOS_ORDERS_URL": f"sqlite:///{root / 'orders.db'}"}


def _ingest_here(root: Path) -> None:
    """A run to completion; it exits 1 when it quarantined the corrupt PDF, 0 when an earlier run did."""
    args = ["ingest", "--config", str(root / "ragline.yaml"), "--data-dir", str(root / "data"), "--json"]
    result = CliRunner().invoke(app, args, env=_env(root))
    assert result.exit_code in (0, 1), result.output


def _ingest_killed(root: Path, kill: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **_env(root), "RAGLINE_FAILPOINT": kill}
    argv = [sys.executable, "-m", "ragline.cli", "ingest", "--config", str(root / "ragline.yaml"),
            "--data-dir", str(root / "data"), "--json"]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def snapshot(root: Path) -> dict:
    """Everything a run leaves behind that a next run or a reader depends on."""
    store = EdgeStore(path=root / "data" / "qdrant-edge", collection="ragline")
    try:
        points = {pid: {k: v for k, v in payload.items() if k != "ingested_at"} for pid, payload in store.iter_points()}
    finally:
        store.close()
    ledger = Ledger(f"sqlite:///{root / 'data' / 'ledger.db'}")
    try:
        documents = sorted(
            (d.source, d.doc_id, d.fingerprint, d.version, d.title, d.chunk_count, d.status, d.error)
            for source in SOURCES for d in ledger.documents(source)
        )
        cursors = {source: ledger.cursor(source) for source in SOURCES}
    finally:
        ledger.close()
    return {"points": points, "documents": documents, "cursors": cursors}


@pytest.fixture(scope="module")
def chaos(tmp_path_factory):
    """A template (sources changed after a first run) and the snapshot of an uninterrupted second run."""
    base = tmp_path_factory.mktemp("chaos")
    template, work = base / "template", base / "work"  # every run happens in `work`: a source stays bound
    work.mkdir()                                          # to one location
    (work / "ragline.yaml").write_text(CONFIG)
    _write_sources(work)
    # small chunks: the long document spans more than one store sub-batch; later runs keep the chunking
    result = CliRunner().invoke(app, ["ingest", "--config", str(work / "ragline.yaml"), "--data-dir",
                                      str(work / "data"), "--json", "--chunk-tokens", "32", "--overlap-tokens", "4"],
                                env=_env(work))
    assert result.exit_code == 0, result.output
    _change_sources(work)
    shutil.copytree(work, template, symlinks=True)

    def restore() -> Path:
        shutil.rmtree(work)
        shutil.copytree(template, work, symlinks=True)
        return work

    restore()
    _ingest_here(work)
    clean = snapshot(work)
    return restore, clean


def test_the_clean_run_is_what_the_sources_hold(chaos):
    """The yardstick itself: every document's chunks are there once, in its current version."""
    _, clean = chaos
    by_doc: dict[tuple[str, str], set[str]] = {}
    for payload in clean["points"].values():
        by_doc.setdefault((payload["source"], payload["doc_id"]), set()).add(payload["doc_version"])
    indexed = {(s, d): (version, count) for s, d, _, version, _, count, status, _ in clean["documents"] if status == "indexed"}
    assert set(by_doc) == set(indexed)  # no orphans, nothing missing
    for key, versions in by_doc.items():
        assert versions == {indexed[key][0]}  # one version per document: the ledger's
    assert sum(count for _, count in indexed.values()) == len(clean["points"])
    doc_ids = {d for s, d in by_doc if s == "docs"}
    assert doc_ids == {"manual.md", "leave.md", "returns.txt", "touched.md", "new.md"}
    assert {d for s, d in by_doc if s == "orders"} == {str(i) for i in range(1, 22) if i != 7}
    manual_chunks = indexed[("docs", "manual.md")][1]
    assert manual_chunks > 1000  # more than one store sub-batch: the upsert.inside point is reachable
    failed = [(d, error) for _, d, _, _, _, _, status, error in clean["documents"] if status == "failed"]
    assert [d for d, _ in failed] == ["broken.pdf"]
    assert clean["cursors"]["orders"] is not None


@pytest.mark.parametrize("kill", _selected_kills())
def test_a_sync_killed_at_any_point_ends_exactly_like_one_that_was_not(chaos, kill):
    restore, clean = chaos
    root = restore()
    killed = _ingest_killed(root, kill)
    assert killed.returncode == -9, f"the run never reached {kill} (exit {killed.returncode}):\n{killed.stderr[-2000:]}"
    _ingest_here(root)
    after = snapshot(root)
    assert after["cursors"] == clean["cursors"]
    assert after["documents"] == clean["documents"]
    assert after["points"].keys() == clean["points"].keys()
    assert after["points"] == clean["points"]
