"""Ingest benchmark: `ragline ingest` end to end vs the raw model on the same chunks, same run.

    python bench/ingest.py CORPUS_DIR [--work bench/out/NAME]

Runs, each in a fresh process so peak RSS is its own:
  1. full ingest of CORPUS_DIR into an empty data dir (docs/s, chunks/s, peak RSS, stage timings)
  2. the same ingest again with nothing changed (wall time, share of the full ingest)
  3. baseline: SentenceTransformer.encode over exactly the chunk texts the ingest stored,
     same model, same batch size and window (chunks/s), so the ingest's ratio to the model's
     own throughput is measured on this machine in this run.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RAGLINE = [sys.executable, "-m", "ragline.cli"]

BASELINE = r"""
import json, resource, sys, time
from ragline.offline import enforce_offline; enforce_offline()
from embedders.sentence_transformer import SentenceTransformerEmbedder
from ragline.components import build_store
from ragline.config import Settings
store = build_store(Settings(data_dir=sys.argv[1]))
texts = [p["text"] for _, p in store.iter_points()]
store.close()
embedder = SentenceTransformerEmbedder()
embedder.embed(texts[:8])  # load and warm up outside the timing, as the ingest's model is warm after its first batch
start = time.perf_counter()
embedder.embed(texts)
seconds = time.perf_counter() - start
print(json.dumps({"chunks": len(texts), "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(argv: list[str]) -> tuple[dict, float, float]:
    """(JSON it printed, wall seconds, peak RSS MiB of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1 = some documents failed, still a finished run
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all waited children: only meaningful when it grew.
    return json.loads(proc.stdout), wall, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--work", type=Path, default=None, help="scratch dir (deleted first)")
    args = parser.parse_args()
    work = args.work or REPO / "bench" / "out" / args.corpus.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = work / "data"
    ingest = [*RAGLINE, "ingest", str(args.corpus.resolve()), "--source", "bench", "--data-dir", str(data), "--json"]

    full, full_wall, full_rss = run_child(ingest)
    [report] = full["runs"]
    again, again_wall, _ = run_child(ingest)
    [unchanged] = again["runs"]
    baseline, _, _ = run_child([sys.executable, "-c", BASELINE, str(data)])

    docs = report["added"] + report["failed"]
    chunks = report["chunks_embedded"]
    ingest_cps = chunks / full_wall
    model_cps = baseline["chunks"] / baseline["seconds"]
    print(json.dumps({
        "corpus": str(args.corpus),
        "documents": docs,
        "failed": report["failed"],
        "chunks": chunks,
        "full_ingest": {
            "wall_seconds": round(full_wall, 2),
            "docs_per_second": round(docs / full_wall, 2),
            "chunks_per_second": round(ingest_cps, 2),
            "peak_rss_mb": round(full_rss, 1),
            "stage_seconds": report["timings"],
        },
        "unchanged_resync": {
            "wall_seconds": round(again_wall, 2),
            "run_seconds": unchanged["seconds"],
            "share_of_full": round(again_wall / full_wall, 4),
            "chunks_embedded": unchanged["chunks_embedded"],
        },
        "raw_model": {"chunks_per_second": round(model_cps, 2), "chunks": baseline["chunks"]},
        "ingest_to_model_ratio": round(ingest_cps / model_cps, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
