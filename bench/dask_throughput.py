"""Single-process vs Dask-cluster throughput of a full sync of one corpus; prints JSON.

    python bench/make_corpus.py /tmp/bench200 --docs 200
    python bench/dask_throughput.py /tmp/bench200 [--workers 2] [--batch-docs 32] [--out /tmp/dask-bench]

Both runs index the same folder into fresh data dirs with the same settings. The models are
loaded before timing on both sides (the driver's embedder; one per Dask worker, through the
same per-worker cache the sync uses), so the figures are steady-state throughput; cluster start
and the workers' model loads are reported apart. The Dask run uses prefect-dask's DaskTaskRunner
with a LocalCluster of `--workers` single-threaded processes, as `sync(dask_workers=N)` does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ragline.offline import enforce_offline  # noqa: E402

enforce_offline()


def run(corpus: Path, data: Path, preparer=None) -> dict:
    from connectors.local import LocalFolderConnector
    from ragline import parsers
    from ragline.components import open_components
    from ragline.config import Settings
    from ragline.pipeline import SyncOptions, sync_source

    settings = Settings(data_dir=data)
    with open_components(settings) as c:
        c.embedder.embed(["warm up"])  # the driver's model, loaded before timing
        connector = LocalFolderConnector(corpus, name="bench", accept=parsers.is_supported,
                                         max_file_bytes=settings.max_file_bytes)
        start = time.perf_counter()
        report = sync_source(connector, store=c.store, ledger=c.ledger, embedder=c.embedder, chunker=c.chunker,
                             options=SyncOptions(flush_chunks=settings.flush_chunks), preparer=preparer)
        wall = time.perf_counter() - start
        points = c.store.count()
    return {
        "seconds": round(wall, 2),
        "documents": report.added + report.updated,
        "failed": report.failed,
        "chunks": report.chunks_embedded,
        "points": points,
        "chunks_per_second": round(report.chunks_embedded / wall, 1),
        "timings": report.timings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-docs", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("/tmp/ragline-dask-bench"))
    args = parser.parse_args(argv)
    corpus = args.corpus.resolve()
    shutil.rmtree(args.out, ignore_errors=True)

    single = run(corpus, args.out / "single")

    from connectors.local import LocalFolderConnector
    from flows.dask_runner import ConnectorRecipe, DaskPreparer, ModelRecipe, dask_task_runner, warm_up, worker_stats
    from ragline import parsers
    from ragline.config import Settings

    settings = Settings(data_dir=args.out / "dask")
    recipe = ModelRecipe.from_settings(settings)
    connector = ConnectorRecipe.of(LocalFolderConnector(corpus, name="bench", accept=parsers.is_supported,
                                                        max_file_bytes=settings.max_file_bytes))
    start = time.perf_counter()
    with dask_task_runner(workers=args.workers) as runner:
        client = runner.client
        address = client.scheduler.address
        client.wait_for_workers(args.workers)
        cluster_start = time.perf_counter() - start
        start = time.perf_counter()
        client.run(warm_up, recipe)  # each worker loads its model once
        model_loads = time.perf_counter() - start
        with DaskPreparer(address, connector, recipe, batch_docs=args.batch_docs) as preparer:
            dask = run(corpus, args.out / "dask", preparer)
        stats = list(client.run(worker_stats).values())
    dask |= {"workers": args.workers, "batch_docs": args.batch_docs, "cluster_start_seconds": round(cluster_start, 2),
             "worker_model_load_seconds": round(model_loads, 2), "worker_stats": stats}
    print(json.dumps({
        "corpus": str(corpus),
        "cpus": os.cpu_count(),
        "single_process": single,
        "dask": dask,
        "speedup": round(single["seconds"] / dask["seconds"], 2),
        "same_chunk_count": single["chunks"] == dask["chunks"] and single["points"] == dask["points"],
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
