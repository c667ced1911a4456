"""Retrieval quality: recall@5 and MRR@10 of the labelled question set, per ingest configuration.

    python bench/retrieval_quality.py                        # every configuration in CONFIGS, JSON on stdout
    python bench/retrieval_quality.py --markdown             # the same, plus a table for BENCHMARKS.md
    python bench/retrieval_quality.py --llamaindex           # adds the LlamaIndex pipeline of benchmark 2
    python bench/retrieval_quality.py --only 250/38 --variant 'bf16={"embed_backend": "bf16"}'

The set is bench/quality/questions.yaml: questions over samples/corpus, each labelled with the
document, page and verbatim passage that answers it, and whether its wording paraphrases the
passage (tests/ragline/test_quality_set.py checks the labels against ragline's parser).

For each configuration the corpus is ingested in this process into a fresh data dir under
`--work` (ragline's own open_components / local_connector / sync_source), every question is
embedded with the run's embedder and the store is searched for the top 10 chunks. The model is
loaded once per process: configurations whose Settings differ only in chunking share one embedder.

Relevance of a hit (a chunk):
  document level  the hit's doc_id is the question's doc_id.
  passage level   same document, and the hit's text contains the passage, both compared
                  whitespace-normalised and case-insensitive; or, for a passage that the chunker
                  cut across two chunks, the hit's text contains at least 60% of the passage's
                  words (rounded up) as one contiguous run, starting and ending on word
                  boundaries. The page is not compared: a chunk may span pages, and the text is
                  the stricter test.
Metrics, each at both levels and split by the `paraphrase` label:
  recall@5        share of questions with a relevant hit among the top 5.
  MRR@10          mean of 1/rank of the first relevant hit in the top 10 (0 when there is none).

Configurations are named dicts of Settings overrides plus `strip_headers`. Header stripping off
replaces `ragline.pipeline.strip_headers_footers`, inside this process and for that run only,
with a function that removes nothing. A model choice is one more line of Settings overrides (in
MODEL_VARIANTS or with `--variant NAME=JSON`); a variant naming a Settings field that does not
exist yet is skipped with a note instead of running silently as the default (Settings ignores
unknown fields).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CORPUS = REPO / "samples" / "corpus"
QUESTIONS = REPO / "bench" / "quality" / "questions.yaml"
SOURCE = "sample"
TOP_K = 10  # hits fetched per question: MRR@10 needs 10, recall@5 reads the first 5
RECALL_AT = 5
RUN_SHARE = 0.6  # share of a passage's words a chunk must hold as one run when the passage was cut


@dataclass(frozen=True)
class Config:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)  # Settings fields
    strip_headers: bool = True


CONFIGS = [
    Config("128/0", {"chunk_tokens": 128, "overlap_tokens": 0}),
    Config("128/19", {"chunk_tokens": 128, "overlap_tokens": 19}),
    Config("192/0", {"chunk_tokens": 192, "overlap_tokens": 0}),
    Config("192/29", {"chunk_tokens": 192, "overlap_tokens": 29}),
    Config("250/0", {"chunk_tokens": 250, "overlap_tokens": 0}),
    Config("250/38", {"chunk_tokens": 250, "overlap_tokens": 38}),  # the shipped default
    Config("250/64", {"chunk_tokens": 250, "overlap_tokens": 64}),
    Config("250/38 no header stripping", {"chunk_tokens": 250, "overlap_tokens": 38}, strip_headers=False),
    # Greedy packing (no anchors): every boundary depends on all text before it (chunkers/token_chunker.py).
    Config("192/29 greedy", {"chunk_tokens": 192, "overlap_tokens": 29, "anchored_chunks": False}),
    Config("250/38 greedy", {"chunk_tokens": 250, "overlap_tokens": 38, "anchored_chunks": False}),
]

# Model choices, at the default chunking: one line each.
MODEL_VARIANTS = [
    Config("250/38 bf16", {"chunk_tokens": 250, "overlap_tokens": 38, "embed_backend": "bf16"}),
]

LLAMAINDEX = Config("LlamaIndex 250/38", {"chunk_tokens": 250, "overlap_tokens": 38})

# Settings fields that do not change how text is embedded: configurations differing only in
# these share one embedder (and so one loaded model).
NOT_EMBEDDING_FIELDS = frozenset({
    "data_dir", "chunk_tokens", "overlap_tokens", "anchored_chunks", "embedded_engine", "flush_chunks", "max_delete_share", "max_file_bytes",
    "collection", "qdrant_url", "qdrant_api_key", "ledger_url",
})


# --- the question set ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    doc_id: str
    page: int
    passage: str
    paraphrase: bool


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    import yaml

    items = yaml.safe_load(path.read_text(encoding="utf-8"))["questions"]
    return [Question(**item) for item in items]


# --- relevance and metrics ---------------------------------------------------------------------


def normalise(text: str) -> str:
    return " ".join(text.split()).lower()


def contains_passage(text: str, passage: str, *, run_share: float = RUN_SHARE) -> bool:
    """True when `text` holds `passage`, or `run_share` of its words as one contiguous run.

    Both are compared whitespace-normalised and case-insensitive; a partial run must start and end
    on word boundaries of `text`, so "day" does not match inside "Sunday".
    """
    text, passage = normalise(text), normalise(passage)
    if passage in text:
        return True
    words = passage.split()
    run = max(1, math.ceil(run_share * len(words)))
    for start in range(len(words) - run + 1):
        window = re.escape(" ".join(words[start:start + run]))
        if re.search(rf"(?<!\w){window}(?!\w)", text):
            return True
    return False


def first_relevant(hits: Sequence[dict[str, Any]], question: Question, *, passage_level: bool) -> int | None:
    """1-based rank of the first relevant hit (dicts with doc_id and text), None when none is."""
    for rank, hit in enumerate(hits, start=1):
        if hit.get("doc_id") != question.doc_id:
            continue
        if not passage_level or contains_passage(hit.get("text") or "", question.passage):
            return rank
    return None


def metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    """recall@5 and MRR@10 over first-relevant ranks (None: nothing relevant in the top 10)."""
    if not ranks:
        return {"recall@5": 0.0, "mrr@10": 0.0}
    recall = sum(1 for r in ranks if r is not None and r <= RECALL_AT) / len(ranks)
    mrr = sum(1 / r for r in ranks if r is not None and r <= TOP_K) / len(ranks)
    return {"recall@5": round(recall, 4), "mrr@10": round(mrr, 4)}


def score(questions: Sequence[Question], hits: Sequence[Sequence[dict[str, Any]]]) -> dict[str, Any]:
    """The metrics of one configuration: overall, literal and paraphrased, at both levels."""
    doc = [first_relevant(h, q, passage_level=False) for q, h in zip(questions, hits, strict=True)]
    passage = [first_relevant(h, q, passage_level=True) for q, h in zip(questions, hits, strict=True)]

    def split(paraphrase: bool | None) -> dict[str, dict[str, float]]:
        keep = [i for i, q in enumerate(questions) if paraphrase is None or q.paraphrase == paraphrase]
        return {"document": metrics([doc[i] for i in keep]), "passage": metrics([passage[i] for i in keep])}

    return {
        "all": split(None),
        "literal": split(False),
        "paraphrase": split(True),
        "passage_misses": [q.id for q, r in zip(questions, passage, strict=True) if r is None or r > RECALL_AT],
    }


# --- ragline runs ------------------------------------------------------------------------------


def unknown_fields(overrides: dict[str, Any]) -> list[str]:
    from ragline.config import Settings

    return sorted(set(overrides) - set(Settings.model_fields))


def _keep_everything(doc, **_: Any):
    """strip_headers_footers with nothing removed: same result type, the document as parsed."""
    from ragline.clean import CleanResult
    from ragline.types import ParsedDocument

    copy = ParsedDocument(title=doc.title, blocks=list(doc.blocks), page_count=doc.page_count, metadata=dict(doc.metadata))
    return CleanResult(copy, 0)


@contextmanager
def header_stripping(enabled: bool) -> Iterator[None]:
    """Header/footer stripping as ragline does it, or replaced by `_keep_everything` for the block."""
    import ragline.pipeline as pipeline

    original = pipeline.strip_headers_footers
    if not enabled:
        pipeline.strip_headers_footers = _keep_everything
    try:
        yield
    finally:
        pipeline.strip_headers_footers = original


def _embedder_key(settings) -> str:
    return json.dumps(settings.model_dump(mode="json", exclude=set(NOT_EMBEDDING_FIELDS)), sort_keys=True, default=str)


def run_ragline(config: Config, questions: Sequence[Question], work: Path, embedders: dict[str, Any]) -> dict[str, Any]:
    """Ingest the corpus with `config` into a fresh data dir, ask every question, score the hits."""
    from ragline.components import build_chunker, local_connector, open_components
    from ragline.config import Settings
    from ragline.pipeline import SyncOptions, sync_source

    data_dir = work / _slug(config.name)
    shutil.rmtree(data_dir, ignore_errors=True)
    settings = Settings(data_dir=data_dir, **config.overrides)
    if settings.qdrant_url or settings.ledger_url:
        raise SystemExit("unset RAGLINE_QDRANT_URL / QDRANT_URL and RAGLINE_LEDGER_URL: every configuration needs its own fresh local store")
    started = time.perf_counter()
    with open_components(settings) as parts, header_stripping(config.strip_headers):
        # Chunking changes leave the embedder as it was: reuse the one whose model is already loaded.
        embedder = embedders.setdefault(_embedder_key(parts.settings), parts.embedder)
        chunker = build_chunker(parts.settings, embedder)
        report = sync_source(
            local_connector(parts.settings, CORPUS, name=SOURCE),
            store=parts.store, ledger=parts.ledger, embedder=embedder, chunker=chunker,
            options=SyncOptions(flush_chunks=parts.settings.flush_chunks),
        )
        if report.failed:
            raise RuntimeError(f"{config.name}: {report.failed} documents failed: {report.failures}")
        ingest_seconds = time.perf_counter() - started
        vectors = embedder.embed([q.question for q in questions])
        hits = [[hit.payload for hit in parts.store.search(v, k=TOP_K)] for v in vectors]
    return {
        "name": config.name,
        "settings": config.overrides,
        "strip_headers": config.strip_headers,
        "chunks": report.chunks_embedded,
        "headers_removed": report.headers_removed,
        "ingest_seconds": round(ingest_seconds, 2),
        **score(questions, hits),
    }


def run_llamaindex(config: Config, questions: Sequence[Question], work: Path) -> dict[str, Any]:
    """The LlamaIndex pipeline of benchmark 2 (bench/llamaindex_pipeline.py), scored the same way."""
    sys.path.insert(0, str(REPO / "bench"))
    import llamaindex_pipeline as li

    index_dir = work / _slug(config.name)
    shutil.rmtree(index_dir, ignore_errors=True)
    chunking = {k: config.overrides[k] for k in ("chunk_tokens", "overlap_tokens")}
    built = li.build(CORPUS, index_dir, **chunking)
    try:
        hits = [li.retrieve(index_dir, q.question, TOP_K) for q in questions]
    finally:
        li.close(index_dir)
    return {
        "name": config.name,
        "settings": chunking,
        "strip_headers": False,  # LlamaIndex has no header/footer stripping
        "chunks": built["nodes"],
        "headers_removed": 0,
        "ingest_seconds": built["wall_seconds"],
        **score(questions, hits),
    }


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# --- output ------------------------------------------------------------------------------------


def markdown(rows: Sequence[dict[str, Any]], skipped: Sequence[dict[str, str]], questions: Sequence[Question]) -> str:
    paraphrased = sum(q.paraphrase for q in questions)
    lines = [
        f"{len(questions)} questions ({paraphrased} paraphrased, {len(questions) - paraphrased} literal). "
        "R@5 = recall@5, MRR = MRR@10; passage R@5 is also split into literal / paraphrased questions.",
        "",
        "| configuration | chunks | doc R@5 | doc MRR | passage R@5 | passage MRR | passage R@5 literal | passage R@5 paraphrased |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        a, lit, par = row["all"], row["literal"], row["paraphrase"]
        lines.append(
            f"| {row['name']} | {row['chunks']} | {a['document']['recall@5']:.3f} | {a['document']['mrr@10']:.3f} | "
            f"{a['passage']['recall@5']:.3f} | {a['passage']['mrr@10']:.3f} | "
            f"{lit['passage']['recall@5']:.3f} | {par['passage']['recall@5']:.3f} |"
        )
    for skip in skipped:
        lines.append(f"\nSkipped {skip['name']}: {skip['reason']}")
    return "\n".join(lines)


def parse_variant(text: str) -> Config:
    """`NAME=JSON` (Settings overrides, at the default chunking unless they name their own)."""
    name, sep, overrides = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=JSON, got {text!r}")
    try:
        values = json.loads(overrides)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{name}: {error}") from error
    if not isinstance(values, dict):
        raise argparse.ArgumentTypeError(f"{name}: the overrides must be a JSON object")
    return Config(name.strip(), {"chunk_tokens": 250, "overlap_tokens": 38, **values})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "quality",
                        help="folder for the per-configuration data dirs (emptied per configuration)")
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only the named configurations (repeatable)")
    parser.add_argument("--variant", action="append", type=parse_variant, default=[], metavar="NAME=JSON",
                        help='another model choice as Settings overrides, e.g. bf16=\'{"embed_backend": "bf16"}\'')
    parser.add_argument("--llamaindex", action="store_true", help="add the LlamaIndex pipeline (bench/llamaindex_pipeline.py)")
    parser.add_argument("--limit", type=int, default=None, help="ask only the first N questions (quick checks)")
    parser.add_argument("--markdown", action="store_true", help="also print a markdown table (after the JSON)")
    args = parser.parse_args(argv)

    from ragline.offline import enforce_offline

    enforce_offline()
    questions = load_questions(args.questions)[: args.limit]
    configs = [*CONFIGS, *MODEL_VARIANTS, *args.variant]
    if args.only:
        configs = [c for c in configs if c.name in args.only]
    args.work.mkdir(parents=True, exist_ok=True)

    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    embedders: dict[str, Any] = {}
    runs: list[tuple[Config, Callable[[], dict[str, Any]]]] = []
    for config in configs:
        missing = unknown_fields(config.overrides)
        if missing:
            skipped.append({"name": config.name, "reason": f"Settings has no field {', '.join(missing)} yet"})
            continue
        runs.append((config, lambda c=config: run_ragline(c, questions, args.work, embedders)))
    if args.llamaindex and (not args.only or LLAMAINDEX.name in args.only):
        if (REPO / "bench" / "llamaindex_pipeline.py").exists():
            runs.append((LLAMAINDEX, lambda: run_llamaindex(LLAMAINDEX, questions, args.work)))
        else:
            skipped.append({"name": LLAMAINDEX.name, "reason": "bench/llamaindex_pipeline.py is not there"})
    for config, run in runs:
        print(f"{config.name} ...", file=sys.stderr, flush=True)
        rows.append(run())

    result = {
        "questions": len(questions),
        "paraphrased": sum(q.paraphrase for q in questions),
        "corpus": str(CORPUS.relative_to(REPO)),
        "rows": rows,
        "skipped": skipped,
    }
    print(json.dumps(result, indent=2))
    if args.markdown:
        print()
        print(markdown(rows, skipped, questions))


if __name__ == "__main__":
    main()
