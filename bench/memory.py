"""Memory benchmark: peak RSS of a full `ragline ingest` as the corpus grows.

    python bench/make_corpus.py /tmp/bench1k --docs 1000
    python bench/make_corpus.py /tmp/bench10k --docs 10000
    python bench/memory.py /tmp/bench1k /tmp/bench10k [--env RAGLINE_EMBED_BACKEND=int8]

Each corpus is ingested into an empty data dir by a fresh `ragline ingest` process (embedded
default store, SQLite ledger); a sampler reads the memory of the process and its children (the parse
worker) every 0.2 s, summed:
  - rss: resident set, what the target is stated in; it includes file pages the process has
    mapped and touched (the embedded store's segment files, the model's weights), which the
    kernel can drop under pressure;
  - private: rss minus shared (file-backed) pages: the memory the process itself allocated.
Prints JSON: per corpus, documents, chunks, wall seconds, peak rss and peak private (MiB), and
the ratio of the largest corpus's peak to the smallest's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from peak_memory import MIB, PeakMemory

REPO = Path(__file__).resolve().parent.parent


def ingest_with_sampling(corpus: Path, data: Path, env: dict[str, str], progress: Path | None = None) -> dict:
    shutil.rmtree(data, ignore_errors=True)
    argv = [sys.executable, "-m", "ragline.cli", "ingest", str(corpus), "--source", "bench",
            "--data-dir", str(data), "--json"]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last_note = [0.0]

    def note(peak: PeakMemory) -> None:  # readable while a long run goes on
        if progress is not None and time.monotonic() - last_note[0] > 10:
            last_note[0] = time.monotonic()
            progress.write_text(json.dumps({"corpus": str(corpus), "seconds": round(time.perf_counter() - started),
                                            "peak_rss_mib": round(peak.rss / MIB),
                                            "peak_private_mib": round(peak.private / MIB)}))

    with PeakMemory(proc.pid, on_sample=note) as peak:  # the ingest and its parse worker (ragline.isolation)
        stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        sys.exit(f"ragline ingest {corpus} failed ({proc.returncode}):\n{stderr[-3000:]}")
    [report] = json.loads(stdout)["runs"]
    return {
        "corpus": str(corpus),
        "documents": report["added"] + report["failed"],
        "chunks": report["chunks_embedded"],
        "wall_seconds": round(wall, 1),
        "peak_rss_mib": round(peak.rss / MIB),
        "peak_private_mib": round(peak.private / MIB),
        "stage_seconds": report["timings"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpora", type=Path, nargs="+", help="smallest first")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "memory")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="set for the ingests")
    parser.add_argument("--progress", type=Path, help="file rewritten every 10 s with the running peak")
    args = parser.parse_args()
    env = dict(os.environ)
    env.update(item.split("=", 1) for item in args.env)
    runs = [ingest_with_sampling(c.resolve(), args.work / f"data-{i}", env, args.progress)
            for i, c in enumerate(args.corpora)]
    print(json.dumps({
        "env": dict(item.split("=", 1) for item in args.env),
        "runs": runs,
        "rss_ratio_largest_to_smallest": round(runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"], 2),
        "private_ratio_largest_to_smallest": round(runs[-1]["peak_private_mib"] / runs[0]["peak_private_mib"], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
