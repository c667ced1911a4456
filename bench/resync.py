"""Re-sync benchmark: what an unchanged or slightly changed corpus costs, as a share of the full ingest.

    python bench/make_corpus.py /tmp/bench1k --docs 1000
    python bench/resync.py /tmp/bench1k [--work bench/out/resync] [--edit-share 0.01]

Copies CORPUS into the work dir, adds one 100-page PDF manual, then runs `ragline ingest` (each a
fresh process, embedded default store, SQLite ledger, bundled model):
  1. full ingest into an empty data dir;
  2. again, nothing changed;
  3. again after editing --edit-share of the documents (one sentence appended to a Markdown or
     text file: a real content change of a small document);
  4. again after editing one paragraph in the middle of the 100-page PDF (one sentence added,
     so the paragraph's length changes and greedy packing would shift every later chunk).
Each step reports wall seconds, its share of the full ingest, documents updated, and chunks
written / reused from the embedding cache / embedded by the model. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RAGLINE = [sys.executable, "-m", "ragline.cli"]
MANUAL = "manuals/store-operations-manual.pdf"
EDITED_PARAGRAPH = 201  # of 400: the middle of the manual
ADDED_SENTENCE = " A note added in this revision: the warranty desk now opens at eight on Saturdays."


def manual_paragraphs(seed: int = 3, count: int = 400) -> list[str]:
    """The prose of a long manual: `count` paragraphs of 3-7 sentences, deterministic."""
    rng = random.Random(seed)
    things = ("tent stove boot jacket order store customer warranty return shipping leave policy "
              "payroll manager review quarter").split()
    paragraphs = []
    for i in range(count):
        paragraphs.append(" ".join(
            f"Rule {i}.{j}: the {rng.choice(things)} {rng.choice(things)} is checked by the "
            f"{rng.choice(things)} team every {rng.randint(2, 30)} days."
            for j in range(rng.randint(3, 7))
        ))
    return paragraphs


def manual_pdf(paragraphs: list[str], pages: int = 100) -> bytes:
    """A `pages`-page PDF with a running header, a page footer and a heading every ten pages."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_creation_date(datetime(2026, 1, 1, tzinfo=UTC))  # same bytes for the same text
    per_page = max(1, len(paragraphs) // pages)
    for page in range(pages):
        pdf.add_page()
        pdf.set_font("Helvetica", size=9)
        pdf.cell(0, 8, "Northwind Outfitters - Store Operations Manual - Rev 3", new_x="LMARGIN", new_y="NEXT")
        if page % 10 == 0:
            pdf.set_font("Helvetica", "B", 14)
            pdf.multi_cell(0, 8, f"Part {page // 10 + 1}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        for paragraph in paragraphs[page * per_page : (page + 1) * per_page]:
            pdf.multi_cell(0, 5, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        pdf.set_font("Helvetica", size=9)
        pdf.cell(0, 8, f"Page {page + 1} of {pages}")
    return bytes(pdf.output())


def ingest(corpus: Path, data: Path) -> tuple[dict, float]:
    start = time.perf_counter()
    proc = subprocess.run([*RAGLINE, "ingest", str(corpus), "--source", "bench", "--data-dir", str(data), "--json"],
                          capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(f"ragline ingest failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout)["runs"][0]
    return report, wall


def step(name: str, report: dict, wall: float, full_wall: float) -> dict:
    return {
        "step": name,
        "wall_s": round(wall, 2),
        "share_of_full": round(wall / full_wall, 4),
        "run_s": report["seconds"],
        "added": report["added"], "updated": report["updated"], "unchanged": report["unchanged"],
        "chunks_written": report["chunks_embedded"],
        "chunks_reused": report["chunks_reused"],
        "chunks_embedded_by_model": report["chunks_embedded"] - report["chunks_reused"],
        "timings": report["timings"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "resync")
    parser.add_argument("--edit-share", type=float, default=0.01)
    args = parser.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    corpus, data = args.work / "corpus", args.work / "data"
    shutil.copytree(args.corpus, corpus)
    paragraphs = manual_paragraphs()
    (corpus / MANUAL).parent.mkdir(parents=True, exist_ok=True)
    (corpus / MANUAL).write_bytes(manual_pdf(paragraphs))

    steps = []
    full, full_wall = ingest(corpus, data)
    steps.append(step("full ingest", full, full_wall, full_wall))
    again, wall = ingest(corpus, data)
    steps.append(step("nothing changed", again, wall, full_wall))

    editable = sorted(p for p in corpus.rglob("*") if p.suffix in {".md", ".txt"})
    total_docs = full["added"]
    edits = random.Random(1).sample(editable, max(1, round(args.edit_share * total_docs)))
    for path in edits:
        with path.open("a", encoding="utf-8") as f:
            f.write("\n\nRevised: this document was reviewed again and its figures still hold.\n")
    edited, wall = ingest(corpus, data)
    steps.append(step(f"{len(edits)} documents edited ({len(edits) / total_docs:.1%})", edited, wall, full_wall))

    paragraphs[EDITED_PARAGRAPH] += ADDED_SENTENCE
    (corpus / MANUAL).write_bytes(manual_pdf(paragraphs))
    manual, wall = ingest(corpus, data)
    steps.append(step("one paragraph of the 100-page PDF edited", manual, wall, full_wall))

    print(json.dumps({"corpus": str(args.corpus), "documents": total_docs, "chunks": full["chunks_embedded"],
                      "steps": steps}, indent=2))


if __name__ == "__main__":
    main()
