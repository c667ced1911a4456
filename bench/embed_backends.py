"""Embedding backends against fp32 on the same chunk texts, same run: throughput and cosine.

    python bench/embed_backends.py [CORPUS_DIR ...] [--markdown] [--probe-int8]

Chunk texts are made as an ingest makes them (parse, strip repeated headers/footers, chunk with
the bundled model's tokenizer at 250 tokens, 38 overlap), from samples/corpus and from each
CORPUS_DIR given (e.g. one made by `python bench/make_corpus.py /tmp/b200 --docs 200`); each
corpus is measured on its own.

Per corpus, every backend of embedders.sentence_transformer.BACKENDS is loaded and warmed up
before any timing, then `embed(texts)` is timed twice per backend, alternating between backends
(torch, bf16, torch, bf16), at batch size 32 with torch's default thread count; the best of the
two counts. Cosine is each chunk's vector against the fp32 ("torch") vector of the same chunk:
min, 1st percentile, mean. `--probe-int8` adds torch dynamic int8 quantisation of the Linear
layers (per-channel weights), which is measured here but not shipped as a backend.
Prints one JSON object, or with --markdown a table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from chunkers.token_chunker import TokenChunker
from embedders.sentence_transformer import BACKENDS, DEFAULT_BACKEND, SentenceTransformerEmbedder, native_bf16_cpu
from ragline import parsers
from ragline.clean import strip_headers_footers
from ragline.config import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS
from ragline.errors import DocumentError
from ragline.offline import enforce_offline

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples" / "corpus"
BATCH_SIZE = 32
ROUNDS = 2
INT8_PROBE = "int8-dynamic (not shipped)"

Embed = Callable[[Sequence[str]], np.ndarray]


def chunk_texts(folder: Path, chunker: TokenChunker) -> tuple[list[str], int]:
    """Chunk texts of every parseable file under `folder`, in path order, and the number of files
    that failed to parse (skipped, as an ingest quarantines them)."""
    texts: list[str] = []
    failed = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and parsers.is_supported(p.name)):
        try:
            document = strip_headers_footers(parsers.parse(path.name, path.read_bytes())).document
        except DocumentError:
            failed += 1
            continue
        texts.extend(chunk.text for chunk in chunker.chunk(document))
    return texts, failed


def int8_probe(fp32: SentenceTransformerEmbedder) -> Embed:
    """fp32 model with its Linear layers dynamically quantised to int8 (per-channel weights)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notice for eager-mode quantisation
        model = quantize_dynamic(copy.deepcopy(fp32.model), {torch.nn.Linear: per_channel_dynamic_qconfig},
                                 dtype=torch.qint8)

    def embed(texts: Sequence[str]) -> np.ndarray:
        return model.encode(list(texts), batch_size=BATCH_SIZE, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False).astype(np.float32, copy=False)

    return embed


def measure(texts: list[str], runners: dict[str, Embed]) -> dict[str, dict]:
    for embed in runners.values():  # load and warm every backend before any timing
        embed(texts[:BATCH_SIZE])
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(ROUNDS):  # alternate, so a noisy neighbour hurts every backend alike
        for name, embed in runners.items():
            start = time.perf_counter()
            vectors[name] = embed(texts)
            seconds[name].append(time.perf_counter() - start)
    base_cps = len(texts) / min(seconds[DEFAULT_BACKEND])
    results = {}
    for name in runners:
        cps = len(texts) / min(seconds[name])
        cosine = np.einsum("ij,ij->i", vectors[name], vectors[DEFAULT_BACKEND])
        results[name] = {
            "chunks_per_second": round(cps, 2),
            "runs_seconds": [round(s, 2) for s in seconds[name]],
            "ratio_vs_fp32": round(cps / base_cps, 3),
            "cosine_vs_fp32": {"min": round(float(cosine.min()), 5), "p1": round(float(np.percentile(cosine, 1)), 5),
                               "mean": round(float(cosine.mean()), 5)},
            "max_norm_error": round(float(np.abs(np.linalg.norm(vectors[name], axis=1) - 1).max()), 6),
        }
    return results


def markdown(report: dict) -> str:
    lines = [
        "| corpus | chunks | backend | model_name | chunks/s | vs fp32 | cosine min | cosine p1 | cosine mean |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for corpus in report["corpora"]:
        for name, r in corpus["backends"].items():
            c = r["cosine_vs_fp32"]
            lines.append(f"| {corpus['name']} | {corpus['chunks']:,} | {name} | {r.get('model_name', '-')} | "
                         f"{r['chunks_per_second']:.1f} | {r['ratio_vs_fp32']:.2f}x | {c['min']:.4f} | "
                         f"{c['p1']:.4f} | {c['mean']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpora", nargs="*", type=Path, help="corpus folders measured after samples/corpus")
    parser.add_argument("--markdown", action="store_true", help="print a table for BENCHMARKS.md instead of JSON")
    parser.add_argument("--probe-int8", action="store_true", help=f"also measure {INT8_PROBE}")
    args = parser.parse_args()
    enforce_offline()

    embedders = {name: SentenceTransformerEmbedder(backend=name, batch_size=BATCH_SIZE) for name in BACKENDS}
    fp32 = embedders[DEFAULT_BACKEND]
    chunker = TokenChunker(fp32, chunk_tokens=DEFAULT_CHUNK_TOKENS, overlap_tokens=DEFAULT_OVERLAP_TOKENS,
                           special_tokens=fp32.special_tokens)
    runners: dict[str, Embed] = {name: e.embed for name, e in embedders.items()}
    if args.probe_int8:
        runners[INT8_PROBE] = int8_probe(fp32)

    corpora = []
    for folder in [SAMPLES, *args.corpora]:
        texts, failed = chunk_texts(folder, chunker)
        if not texts:
            sys.exit(f"{folder}: no chunk texts")
        results = measure(texts, runners)
        for name, embedder in embedders.items():
            results[name]["model_name"] = embedder.model_name
        corpora.append({
            "name": folder.name if folder != SAMPLES else "sample (samples/corpus)",
            "path": str(folder),
            "chunks": len(texts),
            "failed_files": failed,
            "mean_tokens": round(float(np.mean([fp32.count_tokens(t) for t in texts])), 1),
            "backends": results,
        })
    report = {
        "batch_size": BATCH_SIZE,
        "rounds": ROUNDS,
        "torch_threads": torch.get_num_threads(),
        "native_bf16_cpu": native_bf16_cpu(),
        "chunking": {"chunk_tokens": DEFAULT_CHUNK_TOKENS, "overlap_tokens": DEFAULT_OVERLAP_TOKENS},
        "corpora": corpora,
    }
    print(markdown(report) if args.markdown else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
