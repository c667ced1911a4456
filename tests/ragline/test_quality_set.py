"""The labelled retrieval-quality set (bench/quality/questions.yaml) and the rules that score it.

Every label is checked against what ragline's parser extracts, so a parser change that moves a
passage to another page, or a typo in a passage, fails here and not as a silent drop in the
benchmark's figures. Fast: no model.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from ragline import parsers
from ragline.clean import CleanResult, strip_headers_footers
from ragline.types import ParsedDocument

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "samples" / "corpus"


def _load_bench():
    spec = importlib.util.spec_from_file_location("retrieval_quality", REPO / "bench" / "retrieval_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


rq = _load_bench()
QUESTIONS = rq.load_questions()  # Question(**item): a missing or unknown key fails here


def _ws(text: str) -> str:
    return " ".join(text.split())


@cache
def parsed(doc_id: str) -> ParsedDocument:
    path = CORPUS / doc_id
    return parsers.parse(path.name, path.read_bytes())


def page_text(doc_id: str, page: int) -> str:
    return _ws("\n".join(b.text for b in parsed(doc_id).blocks if b.page == page))


def test_at_least_100_questions_with_unique_ids_and_wording():
    assert len(QUESTIONS) >= 100
    ids = [q.id for q in QUESTIONS]
    assert all(re.fullmatch(r"q\d{3}", i) for i in ids), [i for i in ids if not re.fullmatch(r"q\d{3}", i)]
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    wording = Counter(_ws(q.question).lower() for q in QUESTIONS)
    assert [w for w, n in wording.items() if n > 1] == []


def test_every_document_exists_and_every_corpus_document_is_asked_about():
    corpus = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file() and parsers.is_supported(p.name)}
    asked = {q.doc_id for q in QUESTIONS}
    assert asked - corpus == set(), "questions name documents that are not in samples/corpus"
    assert corpus - asked == set(), "corpus documents without a question"


def test_questions_are_spread_roughly_by_document_length():
    """No document is left with a token question while a long one takes most of the set."""
    lengths = {doc_id: len(parsed(doc_id).text) for doc_id in {q.doc_id for q in QUESTIONS}}
    total = sum(lengths.values())
    asked = Counter(q.doc_id for q in QUESTIONS)
    for doc_id, length in lengths.items():
        expected = len(QUESTIONS) * length / total
        assert expected / 2 <= asked[doc_id] <= expected * 2, (doc_id, asked[doc_id], round(expected, 1))


@pytest.mark.parametrize("q", QUESTIONS, ids=lambda q: q.id)
def test_passage_is_verbatim_on_the_stated_page(q):
    doc = parsed(q.doc_id)
    pages = {b.page for b in doc.blocks}
    assert q.page in pages, f"{q.doc_id} has pages {sorted(pages)}, not {q.page}"
    assert _ws(q.passage) in page_text(q.doc_id, q.page)


@pytest.mark.parametrize("q", QUESTIONS, ids=lambda q: q.id)
def test_passage_is_a_short_span_and_the_labels_are_typed(q):
    assert 15 <= len(q.passage) <= 200
    assert isinstance(q.paraphrase, bool)
    assert isinstance(q.page, int) and q.page >= 1
    assert q.question.strip().endswith("?")


def test_at_least_30_percent_are_paraphrased_and_both_kinds_are_present():
    share = sum(q.paraphrase for q in QUESTIONS) / len(QUESTIONS)
    assert 0.3 <= share < 1.0


# --- the benchmark's scoring rules -----------------------------------------------------------

PASSAGE = "Full-time employees receive 22 days of paid annual leave per calendar year."


def test_a_chunk_holding_the_passage_matches_whatever_its_line_breaks_and_case():
    chunk = "Annual leave\nFULL-TIME employees receive 22 days of paid\nannual leave per calendar year. Part-time ..."
    assert rq.contains_passage(chunk, PASSAGE)


def test_a_passage_cut_across_two_chunks_matches_the_part_holding_60_percent_of_its_words():
    words = PASSAGE.split()  # 12 words: a run of 8 (ceil of 7.2) is needed
    assert rq.contains_passage("... 5. Time off Annual leave " + " ".join(words[:8]), PASSAGE)
    assert rq.contains_passage(" ".join(words[4:]) + " Part-time employees ...", PASSAGE)
    assert not rq.contains_passage("Annual leave " + " ".join(words[:7]), PASSAGE)
    # 8 words, but not one run: the chunk holds the passage's start and end, not a contiguous 60%.
    assert not rq.contains_passage(" ".join(words[:4]) + " and then " + " ".join(words[-4:]), PASSAGE)


def test_a_partial_run_must_sit_on_word_boundaries():
    passage = "one two three four five"  # a run of 3 words is needed
    assert rq.contains_passage("zero one two three", passage)
    assert not rq.contains_passage("zero one two threefold", passage)
    assert not rq.contains_passage("someone two three", passage)


def test_relevance_needs_the_same_document_and_ranks_count_from_one():
    q = rq.Question(id="q999", question="How many days?", doc_id="hr/employee-handbook.pdf", page=2,
                    passage=PASSAGE, paraphrase=False)
    other_doc = {"doc_id": "hr/onboarding-guide.md", "text": PASSAGE}
    same_doc_elsewhere = {"doc_id": q.doc_id, "text": "Working hours: a full-time schedule is 40 hours per week."}
    answer = {"doc_id": q.doc_id, "text": "Annual leave. " + PASSAGE}
    hits = [other_doc, same_doc_elsewhere, answer]
    assert rq.first_relevant(hits, q, passage_level=False) == 2
    assert rq.first_relevant(hits, q, passage_level=True) == 3
    assert rq.first_relevant([other_doc], q, passage_level=False) is None


def test_recall_at_5_and_mrr_at_10():
    m = rq.metrics([1, 2, 6, None])
    assert m["recall@5"] == 0.5
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 6) / 4, abs=1e-4)
    assert rq.metrics([11]) == {"recall@5": 0.0, "mrr@10": 0.0}


def test_score_splits_by_paraphrase_and_lists_passage_misses():
    def question(i: str, paraphrase: bool):
        return rq.Question(id=i, question="?", doc_id="a.md", page=1, passage="alpha beta gamma", paraphrase=paraphrase)

    questions = [question("q1", False), question("q2", True)]
    hits = [[{"doc_id": "a.md", "text": "alpha beta gamma"}], [{"doc_id": "a.md", "text": "delta"}]]
    result = rq.score(questions, hits)
    assert result["literal"]["passage"]["recall@5"] == 1.0
    assert result["paraphrase"]["passage"]["recall@5"] == 0.0
    assert result["paraphrase"]["document"]["recall@5"] == 1.0
    assert result["all"]["passage"]["mrr@10"] == 0.5
    assert result["passage_misses"] == ["q2"]


def test_header_stripping_off_keeps_every_block_and_the_result_type():
    doc = parsed("hr/employee-handbook.pdf")
    stripped = strip_headers_footers(doc)
    kept = rq._keep_everything(doc)
    assert stripped.removed_lines > 0  # the handbook has a running title and page numbers to remove
    assert isinstance(kept, CleanResult) and kept.removed_lines == 0
    assert kept.document.blocks == doc.blocks and kept.document.blocks is not doc.blocks


def test_header_stripping_switch_restores_the_pipeline_function():
    import ragline.pipeline as pipeline

    original = pipeline.strip_headers_footers
    with rq.header_stripping(False):
        assert pipeline.strip_headers_footers is rq._keep_everything
    assert pipeline.strip_headers_footers is original
    with pytest.raises(RuntimeError), rq.header_stripping(False):
        raise RuntimeError("a failed run")
    assert pipeline.strip_headers_footers is original


def test_a_variant_naming_a_settings_field_that_does_not_exist_is_reported():
    assert rq.unknown_fields({"chunk_tokens": 128, "no_such_field": 1}) == ["no_such_field"]
    variant = rq.parse_variant('int8={"embed_backend": "int8"}')
    assert variant.name == "int8" and variant.overrides["embed_backend"] == "int8"
    assert variant.overrides["chunk_tokens"] == 250
