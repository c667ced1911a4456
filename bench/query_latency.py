"""Query latency: POST /v1/search p50/p99 with concurrent clients, with and without the cache.

    python bench/query_latency.py sample  [--clients 16 --requests 20]   # the bundled sample corpus
    python bench/query_latency.py synthetic --points 100000              # synthetic vectors, realistic payloads
    python bench/query_latency.py synthetic --points 100000 --engine local   # qdrant-client local mode instead

`sample` ingests samples/corpus; `synthetic` fills a collection with N random unit vectors whose
payloads look like real chunks (text of ~250 tokens, source, doc id, pages). Either is built once
under bench/out/ and reused. Then `ragline serve` starts in its own process on the embedded store
and this process runs the clients (threads, one HTTP connection each):

  1. uncached: every request a different query (the cache never hits), clients 1 and N
  2. cached:   the same queries again (every request hits the in-process cache), clients N

Prints one JSON object: p50/p99/mean in milliseconds and requests/s for each phase.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the packages, ahead of bench/ (bench/connectors.py would shadow connectors/)
KEY = "bench-key"
WORDS = ("leave policy travel expense laptop password contract supplier invoice refund onboarding "
         "security holiday budget approval manager customer warranty shipping remote office").split()


def build_sample(data: Path, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "ragline.cli", "ingest", str(REPO / "samples/corpus"), "--source", "sample",
                    "--data-dir", str(data), "--json"], check=True, cwd=REPO, stdout=subprocess.DEVNULL, env=env)


def build_synthetic(data: Path, points: int, engine: str) -> dict:
    """Random unit vectors with realistic payloads, in a collection made as the pipeline makes it."""
    from ragline.components import build_store
    from ragline.config import Settings
    from stores.qdrant import IndexSpec, Point, point_id

    settings = Settings(data_dir=data, embedded_engine=engine)
    spec = IndexSpec(model="all-MiniLM-L6-v2", dim=384, window=settings.model_window,
                     chunk_tokens=settings.chunk_tokens, overlap_tokens=settings.overlap_tokens)
    store = build_store(settings)
    store.ensure_collection(spec)
    upsert_seconds = 0.0
    rng = np.random.default_rng(7)
    batch = 2000
    started = time.perf_counter()
    for start in range(0, points, batch):
        n = min(batch, points - start)
        vectors = rng.standard_normal((n, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        chunk = []
        for i in range(n):
            index = start + i
            doc = f"docs/{index // 20 % 50:02d}/doc-{index // 20:06d}.pdf"
            text = " ".join(WORDS[(index * 7 + j) % len(WORDS)] for j in range(180))
            payload = {
                "text": text, "source": f"src{index % 4}", "doc_id": doc, "uri": f"file:///data/{doc}",
                "title": f"Document {index // 20}", "section": None, "page_start": index % 20 + 1,
                "page_end": index % 20 + 1, "chunk_index": index % 20, "chunk_count": 20, "token_count": 250,
                "doc_version": "v1", "doc_type": "pdf", "path_prefixes": ["docs", f"docs/{index // 20 % 50:02d}"],
            }
            chunk.append(Point(id=point_id(payload["source"], doc, index % 20), vector=vectors[i], payload=payload))
        upserting = time.perf_counter()
        store.upsert(chunk)
        upsert_seconds += time.perf_counter() - upserting
        print(f"  {start + n}/{points} points ({(start + n) / upsert_seconds:.0f}/s upserted)", file=sys.stderr)
    optimizing = time.perf_counter()
    store.optimize()  # what a sync does at its end: the embedded engine builds its HNSW index
    optimize_seconds = time.perf_counter() - optimizing
    closing = time.perf_counter()
    store.close()
    return {"points": points, "upsert_points_per_s": round(points / upsert_seconds),
            "optimize_seconds": round(optimize_seconds, 1), "close_seconds": round(time.perf_counter() - closing, 1),
            "total_seconds": round(time.perf_counter() - started, 1)}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_clients(url: str, queries: list[str], clients: int) -> dict:
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    share = [queries[i::clients] for i in range(clients)]

    def client(mine: list[str]) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as http:
            for query in mine:
                started = time.perf_counter()
                response = http.post("/v1/search", json={"query": query, "k": 10})
                elapsed = time.perf_counter() - started
                with lock:
                    (latencies if response.status_code == 200 else errors).append(
                        elapsed * 1000 if response.status_code == 200 else response.status_code)

    threads = [threading.Thread(target=client, args=(mine,)) for mine in share]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "clients": clients, "requests": len(latencies), "errors": len(errors),
        "p50_ms": round(percentile(latencies, 50), 1), "p99_ms": round(percentile(latencies, 99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        "requests_per_s": round(len(latencies) / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("collection", choices=["sample", "synthetic"])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=20, help="requests per client per phase")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--engine", choices=["edge", "local"], default="edge", help="the embedded store's engine")
    args = parser.parse_args()

    name = ("sample" if args.collection == "sample" else f"synthetic-{args.points}") + f"-{args.engine}"
    data = REPO / "bench/out" / f"query-{name}"
    if args.rebuild and data.exists():
        shutil.rmtree(data)
    build = None
    env = {**os.environ, "RAGLINE_API_KEYS": KEY, "RAGLINE_DATA_DIR": str(data), "RAGLINE_EMBEDDED_ENGINE": args.engine}
    if not data.exists():
        started = time.perf_counter()
        if args.collection == "sample":
            build_sample(data, env)
            build = {"total_seconds": round(time.perf_counter() - started, 1)}
        else:
            build = build_synthetic(data, args.points, args.engine)

    env.pop("REDIS_URL", None)  # the in-process cache: this measures the service, not a Redis round trip
    server = subprocess.Popen([sys.executable, "-m", "ragline.cli", "serve", "--port", str(args.port)],
                              cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{args.port}"
    started = time.perf_counter()
    try:
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None:
                sys.exit(f"ragline serve exited: {server.stderr.read()[-2000:]}")
            time.sleep(0.5)
        startup = round(time.perf_counter() - started, 1)
        total = args.clients * args.requests
        queries = [f"{WORDS[i % len(WORDS)]} {WORDS[(i * 3 + 1) % len(WORDS)]} rules number {i}" for i in range(3 * total)]
        run_clients(url, [f"warm up {i}" for i in range(4)], 1)
        results = {
            "collection": name, "engine": args.engine, "build": build, "server_startup_seconds": startup,
            "uncached_1_client": run_clients(url, queries[:args.requests], 1),
            f"uncached_{args.clients}_clients": run_clients(url, queries[total:2 * total], args.clients),
            f"cached_{args.clients}_clients": run_clients(url, queries[total:2 * total], args.clients),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
