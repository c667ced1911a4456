"""Embedding backends of the bundled model: each one's vectors against fp32's on real chunk texts.

The chunk texts come from the sample corpus, parsed, cleaned and chunked as an ingest does it.
The fp32 reference is the session's `embedder` fixture (backend "torch").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedders.sentence_transformer import (
    BACKENDS,
    BUNDLED_MODEL_NAME,
    DEFAULT_BACKEND,
    SentenceTransformerEmbedder,
)
from ragline import parsers
from ragline.clean import strip_headers_footers
from ragline.errors import ConfigError

SAMPLE_CORPUS = Path(__file__).resolve().parents[2] / "samples" / "corpus"
FAST_BACKENDS = [name for name in BACKENDS if name != DEFAULT_BACKEND]
TIE = 0.005  # fp32 scores this close are a tie: bf16's rounding may order them either way


@pytest.fixture(scope="module")
def chunk_texts(chunker) -> list[str]:
    """About 50 distinct chunk texts, spread over every file of the sample corpus."""
    texts: list[str] = []
    for path in sorted(p for p in SAMPLE_CORPUS.rglob("*") if p.is_file() and parsers.is_supported(p.name)):
        document = strip_headers_footers(parsers.parse(path.name, path.read_bytes())).document
        texts.extend(chunk.text for chunk in chunker.chunk(document))
    distinct = list(dict.fromkeys(texts))
    assert len(distinct) >= 50, "the sample corpus should give at least 50 distinct chunks"
    return distinct[:: len(distinct) // 50][:50]


@pytest.fixture(scope="module")
def fp32_vectors(embedder, chunk_texts) -> np.ndarray:
    return embedder.embed(chunk_texts)


@pytest.fixture(scope="module", params=FAST_BACKENDS)
def fast_embedder(request) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(backend=request.param)


def test_unknown_backend_is_a_config_error_naming_value_and_choices():
    with pytest.raises(ConfigError) as caught:
        SentenceTransformerEmbedder(backend="tensorrt")
    message = str(caught.value)
    assert "'tensorrt'" in message
    assert all(name in message for name in BACKENDS)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_model_name_carries_the_backend_and_nothing_else_changes(backend):
    fp32 = SentenceTransformerEmbedder()
    fast = SentenceTransformerEmbedder(backend=backend)
    assert fp32.model_name == BUNDLED_MODEL_NAME  # existing indexes keep matching
    assert fast.model_name != fp32.model_name
    assert backend in fast.model_name
    assert (fast.dim, fast.max_tokens, fast.special_tokens) == (fp32.dim, fp32.max_tokens, fp32.special_tokens)
    text = "Employees accrue 25 days of annual leave; see https://intranet.example/hr/leave-policy#carry-over."
    assert fast.count_tokens(text) == fp32.count_tokens(text)
    assert fast.token_spans(text) == fp32.token_spans(text)


def test_an_explicit_model_name_also_carries_the_backend():
    fast = SentenceTransformerEmbedder(model_name="minilm-local", backend=FAST_BACKENDS[0])
    assert fast.model_name == f"minilm-local+{FAST_BACKENDS[0]}"
    assert SentenceTransformerEmbedder(model_name="minilm-local").model_name == "minilm-local"


@pytest.mark.model
def test_vectors_are_unit_length_float32_and_close_to_fp32(fast_embedder, chunk_texts, fp32_vectors):
    vectors = fast_embedder.embed(chunk_texts)
    assert vectors.dtype == np.float32
    assert vectors.shape == fp32_vectors.shape
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosine = np.einsum("ij,ij->i", vectors, fp32_vectors)
    worst = int(cosine.argmin())
    assert cosine.min() >= 0.99, f"chunk {worst}: cosine {cosine[worst]:.4f} against fp32: {chunk_texts[worst][:60]!r}"
    assert not np.array_equal(vectors, fp32_vectors), f"{fast_embedder.backend} gave fp32's exact vectors"


@pytest.mark.model
def test_rows_follow_input_order(fast_embedder, chunk_texts, fp32_vectors):
    """Shuffled input: row i is still the vector of text i (its nearest fp32 vector is text i's)."""
    order = np.random.default_rng(7).permutation(len(chunk_texts))
    vectors = fast_embedder.embed([chunk_texts[i] for i in order])
    nearest = (vectors @ fp32_vectors.T).argmax(axis=1)
    assert nearest.tolist() == order.tolist()


@pytest.mark.model
def test_retrieval_ranks_match_fp32(fast_embedder, embedder, chunk_texts, fp32_vectors):
    """A question's top 3 under the fast backend are fp32's top 3, rank by rank, up to swaps of
    chunks whose fp32 scores are within TIE of each other."""
    questions = [
        "How many days of annual leave do employees get?",
        "What is the expense limit for hotels?",
        "How do I report a phishing e-mail?",
    ]
    fast_docs = fast_embedder.embed(chunk_texts)
    for question, fp32_q, fast_q in zip(questions, embedder.embed(questions), fast_embedder.embed(questions)):
        fp32_scores = fp32_vectors @ fp32_q
        fp32_top = np.argsort(-fp32_scores)[:3]
        fast_top = np.argsort(-(fast_docs @ fast_q))[:3]
        for rank, (fast_pick, fp32_pick) in enumerate(zip(fast_top, fp32_top), start=1):
            assert fp32_scores[fast_pick] >= fp32_scores[fp32_pick] - TIE, (
                f"{question!r} rank {rank}: chunk {fast_pick} instead of {fp32_pick}"
            )


@pytest.mark.model
def test_empty_input_gives_no_rows(fast_embedder):
    vectors = fast_embedder.embed([])
    assert vectors.shape == (0, fast_embedder.dim)
    assert vectors.dtype == np.float32


def test_the_backend_setting_reaches_every_embedder_a_run_builds(monkeypatch):
    from flows.dask_runner import ModelRecipe
    from ragline.components import build_embedder
    from ragline.config import Settings

    monkeypatch.setenv("RAGLINE_EMBED_BACKEND", "bf16")
    settings = Settings()
    assert build_embedder(settings).model_name == "all-MiniLM-L6-v2+bf16"
    assert ModelRecipe.from_settings(settings).embed_backend == "bf16"  # Dask workers embed as the driver does
    assert build_embedder(Settings(embed_backend="torch")).model_name == "all-MiniLM-L6-v2"
