"""Scale-out parity: the `sync` flow preparing and embedding on a 2-worker Dask LocalCluster
builds the same index as the plain single-process pipeline: same point ids, same payloads
(ingest time aside), same ledger rows, same failures; and each worker loads the model once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.prefect, pytest.mark.model]
pytest.importorskip("prefect_dask", reason="the dask extra is not installed (pip install -e '.[dask]')")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """20 mixed documents (multi-page PDFs with running headers, DOCX, HTML, e-mail, CSV...),
    a corrupt PDF, and a file with no text."""
    root = tmp_path_factory.mktemp("dask") / "docs"
    subprocess.run([sys.executable, str(REPO / "bench" / "make_corpus.py"), str(root), "--docs", "20", "--jobs", "1"],
                   check=True, capture_output=True)
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ntruncated")
    (root / "empty.md").write_text("   \n\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield cluster, client


def index_state(data: Path) -> tuple[dict, dict]:
    from ragline.ledger import Ledger
    from ragline.components import build_store
    from ragline.config import Settings

    store, ledger = build_store(Settings(data_dir=data)), Ledger(f"sqlite:///{(data / 'ledger.db').resolve()}")
    try:
        points = {pid: {k: v for k, v in payload.items() if k != "ingested_at"} for pid, payload in store.iter_points()}
        rows = {d.doc_id: (d.version, d.chunk_count, d.status, d.error) for d in ledger.documents("docs")}
        return points, rows
    finally:
        store.close()
        ledger.close()


def single_process_run(root: Path, data: Path) -> dict:
    from connectors.local import LocalFolderConnector
    from ragline import parsers
    from ragline.components import open_components
    from ragline.config import Settings
    from ragline.pipeline import SyncOptions, sync_source

    settings = Settings(data_dir=data)
    with open_components(settings) as c:
        connector = LocalFolderConnector(root, name="docs", accept=parsers.is_supported,
                                         max_file_bytes=settings.max_file_bytes)
        report = sync_source(connector, store=c.store, ledger=c.ledger, embedder=c.embedder, chunker=c.chunker,
                             options=SyncOptions(flush_chunks=settings.flush_chunks))
    return report.to_dict()


def test_dask_index_matches_single_process(prefect_harness, corpus, cluster, tmp_path):
    from flows.dask_runner import worker_stats
    from flows.sync import sync

    local_cluster, client = cluster
    expected_report = single_process_run(corpus, tmp_path / "single")
    [report] = sync(folder=str(corpus), source="docs", data_dir=str(tmp_path / "dask"),
                    dask_address=local_cluster.scheduler_address, dask_batch_docs=4)

    assert any(k.startswith("worker-") for k in report["timings"]), "nothing was prepared on the cluster"
    for key in ("added", "updated", "unchanged", "deleted", "failed", "chunks_embedded", "headers_removed", "status"):
        assert report[key] == expected_report[key], key
    assert report["failures"] == expected_report["failures"]
    assert {f["doc_id"] for f in report["failures"]} == {"broken.pdf", "empty.md"}

    expected_points, expected_rows = index_state(tmp_path / "single")
    points, rows = index_state(tmp_path / "dask")
    assert len(points) == report["chunks_embedded"] > 40
    assert set(points) == set(expected_points), "point ids differ"
    assert points == expected_points, "payloads differ"
    assert rows == expected_rows and len(rows) == 22

    stats = client.run(worker_stats)
    assert len(stats) == 2
    assert all(s["model_loads"] == 1 for s in stats.values()), stats
    assert sum(s["documents"] for s in stats.values()) == 22
    assert sum(s["batches"] for s in stats.values()) == 6  # 22 documents, 4 per Dask task
    assert all(s["batches"] >= 1 for s in stats.values()), "one worker did all the work"

    # A second run through Dask finds nothing to do, and loads no model again.
    [again] = sync(source="docs", data_dir=str(tmp_path / "dask"), dask_address=local_cluster.scheduler_address)
    assert (again["unchanged"], again["chunks_embedded"], again["failed"]) == (22, 0, 0)  # failing ones included, as in a single-process run
    assert again["still_failing"] == 2
    assert all(s["model_loads"] == 1 for s in client.run(worker_stats).values())


def test_each_worker_thread_gets_its_own_parse_worker():
    """A Dask worker with several threads parses that many files at once: one parse worker per thread,
    kept across that thread's batches."""
    import threading

    from flows.dask_runner import ModelRecipe, _parser
    from ragline.isolation import IsolatedParser

    recipe = ModelRecipe(model_path="unused", model_window=256, embed_batch_size=8, chunk_tokens=250,
                         overlap_tokens=38, parse_isolation=True, parse_timeout_seconds=30, parse_memory_mb=256)
    in_thread: list[object] = []
    thread = threading.Thread(target=lambda: in_thread.extend([_parser(recipe), _parser(recipe)]))
    thread.start()
    thread.join()
    mine = _parser(recipe)
    try:
        assert in_thread[0] is in_thread[1] and in_thread[0] is not mine
        assert isinstance(mine, IsolatedParser) and mine is _parser(recipe)
    finally:
        for parser in (mine, in_thread[0]):
            parser.close()
