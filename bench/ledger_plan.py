"""Ledger planning cost at scale: bulk-load a listing, plan, walk the changed documents.

    python bench/ledger_plan.py [--docs 100000] [--url sqlite:///...|postgresql+psycopg://...]

First sync of N new documents, then a re-sync where 1% changed; prints seconds per step.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ragline.ledger import STATUS_INDEXED, Ledger  # noqa: E402
from ragline.types import DocRef  # noqa: E402


def listing(n: int, changed_fingerprint: str):
    for i in range(n):
        yield DocRef("bench", f"doc/{i:08d}.txt", changed_fingerprint if i % 100 == 0 else "f1", f"file:///doc/{i}")


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, round(time.perf_counter() - start, 3)


def sync_plan(ledger: Ledger, n: int, fingerprint: str) -> dict:
    run = ledger.begin_run("bench", dry_run=False)
    _, load_s = timed(lambda: ledger.load_listing(run, listing(n, fingerprint)))
    counts, plan_s = timed(lambda: ledger.plan_counts("bench", run))

    def walk() -> int:
        rows, seen = [], 0
        for p in ledger.iter_pending("bench", run):
            seen += 1
            rows.append({"source": "bench", "doc_id": p.ref.doc_id, "uri": p.ref.uri, "fingerprint": p.ref.fingerprint,
                         "version": "v", "title": None, "chunk_count": 1, "status": STATUS_INDEXED, "error": None,
                         "run_id": run})
            if len(rows) == 1000:
                ledger.record_documents(rows)
                rows.clear()
        ledger.record_documents(rows)
        return seen

    pending, walk_s = timed(walk)
    ledger.finish_run(run, status="ok", counts={}, seconds=0, report={})
    return {"load_listing_s": load_s, "plan_s": plan_s, "walk_and_record_s": walk_s,
            "new": counts.new, "changed": counts.changed, "unchanged": counts.unchanged, "pending": pending}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--url", default=None)
    args = parser.parse_args()
    url = args.url or f"sqlite:///{tempfile.mkdtemp()}/ledger.db"
    ledger = Ledger(url)
    first = sync_plan(ledger, args.docs, "f1")
    resync = sync_plan(ledger, args.docs, "f2")
    ledger.close()
    print(json.dumps({"docs": args.docs, "backend": url.split(":")[0], "first_sync": first, "one_percent_changed": resync},
                     indent=2))


if __name__ == "__main__":
    main()
