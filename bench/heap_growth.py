"""Heap growth during a sync, with and without handing freed memory back after each batch.

    python bench/heap_growth.py CORPUS_DIR

Runs the same in-process sync (real model, Qdrant Edge, SQLite ledger) twice in fresh child
processes, once as shipped (`ragline.pipeline.return_freed_memory` after every written batch) and
once with that call disabled, and records the process's anonymous RSS (RssAnon) every 25 documents.
Prints JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, re, sys
sys.path.insert(0, sys.argv[3])
import ragline.pipeline as pipeline
from ragline.components import local_connector, open_components
from ragline.config import Settings

if sys.argv[2] == "off":
    pipeline.return_freed_memory = lambda: None

def anon_mib():
    status = open("/proc/self/status").read()
    return int(re.search(r"RssAnon:\s+(\d+)", status).group(1)) // 1024

samples = []

class Progress:
    done = 0
    def planned(self, source, total): pass
    def advance(self, doc_id, action):
        Progress.done += 1
        if Progress.done % 25 == 0:
            samples.append(anon_mib())

settings = Settings(data_dir=sys.argv[4])
with open_components(settings) as c:
    report = pipeline.sync_source(local_connector(settings, sys.argv[1], name="bench"), store=c.store,
                                  ledger=c.ledger, embedder=c.embedder, chunker=c.chunker, progress=Progress())
print(json.dumps({"documents": report.added, "chunks": report.chunks_embedded, "anon_mib_every_25_docs": samples,
                  "anon_mib_at_end": anon_mib()}))
"""


def main() -> None:
    corpus = Path(sys.argv[1]).resolve()
    results = {}
    for mode in ("on", "off"):
        with tempfile.TemporaryDirectory() as data:
            proc = subprocess.run([sys.executable, "-c", CHILD, str(corpus), mode, str(REPO), data],
                                  capture_output=True, text=True, cwd=REPO, check=True)
        results[f"trim {mode}"] = json.loads(proc.stdout)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
