"""How many chunks a one-paragraph edit changes, anchored vs greedy chunk boundaries.

    python bench/anchor_edits.py [--edits 12] [--seed 11]

Chunks the 100-page manual of bench/resync.py (parse, strip headers/footers, chunk at 250/38 with
the bundled model's tokenizer) before and after each of --edits random one-paragraph edits (a word
changed, a sentence added, the paragraph cut to its first sentence, in turn), and counts the
chunks of the edited version whose text the original does not have: what a sync re-embeds when
the embedding cache holds everything else. No embedding is done. Prints JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chunkers.token_chunker import TokenChunker  # noqa: E402
from embedders.sentence_transformer import SentenceTransformerEmbedder  # noqa: E402
from ragline import parsers  # noqa: E402
from ragline.clean import strip_headers_footers  # noqa: E402


def resync_bench():
    spec = importlib.util.spec_from_file_location("bench_resync", REPO / "bench" / "resync.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edits", type=int, default=12)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    resync = resync_bench()
    paragraphs = resync.manual_paragraphs()

    def parsed(paras: list[str]):
        return strip_headers_footers(parsers.parse("manual.pdf", resync.manual_pdf(paras))).document

    rng = random.Random(args.seed)
    original = parsed(paragraphs)
    edited = []
    for n in range(args.edits):
        where, changed = rng.randrange(20, len(paragraphs) - 20), list(paragraphs)
        if n % 3 == 0:
            changed[where] = changed[where].replace("team", "crew", 1)
        elif n % 3 == 1:
            changed[where] += resync.ADDED_SENTENCE
        else:
            changed[where] = changed[where].split(". ")[0] + "."
        edited.append(parsed(changed))

    embedder = SentenceTransformerEmbedder()
    results = {}
    for name, anchored in (("anchored", True), ("greedy", False)):
        chunker = TokenChunker(embedder, chunk_tokens=250, overlap_tokens=38, anchored=anchored)
        before = chunker.chunk(original)
        known = {c.text for c in before}
        changed_counts = [sum(c.text not in known for c in chunker.chunk(doc)) for doc in edited]
        results[name] = {
            "chunks": len(before),
            "mean_tokens_per_chunk": round(statistics.fmean(c.token_count for c in before), 1),
            "changed_per_edit": changed_counts,
            "mean": round(statistics.fmean(changed_counts), 2),
            "max": max(changed_counts),
            "edits_within_3": sum(c <= 3 for c in changed_counts),
        }
    print(json.dumps({"edits": args.edits, "seed": args.seed, **results}, indent=2))


if __name__ == "__main__":
    main()
