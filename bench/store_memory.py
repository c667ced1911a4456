"""The embedded store's share of a long sync's memory: peak RSS of a process that writes N points
(MiniLM-sized vectors, payloads shaped like ragline's) into Qdrant Edge and builds the index, as the
pipeline does, with the store's memory handling on and off.

    python bench/store_memory.py --points 200000

  on:  the store unmaps the file pages it touched after every write and builds the index every
       stores.edge.OPTIMIZE_EVERY points (what ragline does);
  off: neither (Edge as it comes): every touched page of the segment files stays in RSS, and one
       index build at the end reads the whole collection at once.

Each mode runs in its own process; a sampler outside it (peak_memory.py) reads its RSS every 0.2 s
(the writer's own threads cannot: Edge holds the GIL while it optimizes). Prints JSON: per mode, peak
RSS, points/s (writes and index builds) and search ms (200 queries, k=10) on what was built.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import string
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from peak_memory import MIB, PeakMemory

REPO = Path(__file__).resolve().parent.parent


def write_points(folder: Path, points: int, mode: str) -> dict:
    """The child: write, optimize, search; report its own figures on stdout."""
    import numpy as np

    import stores.edge as edge_store
    from stores.qdrant import IndexSpec, Point

    if mode == "off":
        edge_store.OPTIMIZE_EVERY = 1 << 62
        edge_store.release_mapped_pages = lambda root: None
    store = edge_store.EdgeStore(path=folder)
    store.ensure_collection(IndexSpec(model="m", dim=384, window=256, chunk_tokens=250, overlap_tokens=38))
    rng = random.Random(7)
    vectors = np.random.default_rng(7)
    prose = "".join(rng.choice(string.ascii_lowercase + "     ") for _ in range(1400))
    started = time.perf_counter()
    for first in range(0, points, 256):  # the pipeline's default flush
        batch = []
        for n in range(first, min(first + 256, points)):
            doc = f"folder/doc-{n // 17}.pdf"
            shown = {"source": "bench", "doc_id": doc, "uri": f"file:///data/{doc}", "title": f"Document {n // 17}",
                     "section": "Part 1", "page_start": n % 40, "page_end": n % 40 + 1, "doc_type": "pdf",
                     "modified_at": "2026-11-30T10:00:00+00:00", "chunk_index": n % 17, "meta": {}}
            payload = {"text": prose[n % 300:] + str(n), **shown, "chunk_count": 17, "token_count": 240,
                       "doc_version": uuid.uuid4().hex, "content_hash": uuid.uuid4().hex * 2,
                       "ingested_at": "2026-12-04T00:00:00+00:00", "path_prefixes": ["folder"],
                       "modified_ts": 1.7e9, "metadata": dict(shown)}
            batch.append(Point(str(uuid.UUID(int=n + 1)), vectors.random(384, dtype=np.float32), payload))
        store.upsert(batch)
    store.optimize()
    write_seconds = time.perf_counter() - started
    queries = vectors.random((200, 384), dtype=np.float32)
    started = time.perf_counter()
    for query in queries:
        store.search(query, k=10)
    search_ms = (time.perf_counter() - started) / len(queries) * 1000
    store.close()
    return {"points_per_second": round(points / write_seconds), "search_ms": round(search_ms, 2)}


def measure(points: int, mode: str) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"store-memory-{mode}-"))
    argv = [sys.executable, __file__, "--child", mode, "--points", str(points), "--folder", str(folder)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakMemory(proc.pid) as peak:
        stdout, stderr = proc.communicate()
    shutil.rmtree(folder, ignore_errors=True)
    if proc.returncode != 0:
        sys.exit(f"{mode} failed:\n{stderr[-3000:]}")
    return {"mode": mode, "points": points, "peak_rss_mib": round(peak.rss / MIB), **json.loads(stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(write_points(args.folder, args.points, args.child)))
        return
    print(json.dumps([measure(args.points, mode) for mode in ("on", "off")], indent=2))


if __name__ == "__main__":
    main()
