"""bench/llamaindex_pipeline.py: the LlamaIndex side of the ingest comparison builds a searchable
index, carries doc_id and pages for scoring, and skips unchanged documents on a re-run."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

for module, package in (
    ("llama_index.core", "llama-index-core"),
    ("llama_index.embeddings.huggingface", "llama-index-embeddings-huggingface"),
    ("llama_index.vector_stores.qdrant", "llama-index-vector-stores-qdrant"),
):
    pytest.importorskip(module, reason=f"{package} is not installed (pip install -e '.[bench]')")

from fpdf import FPDF  # noqa: E402

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[2]


def _load_bench_module():
    spec = importlib.util.spec_from_file_location("llamaindex_pipeline", REPO / "bench" / "llamaindex_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


lp = _load_bench_module()


def _two_page_pdf(pages: list[str]) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(w=0, text=text)
    return bytes(pdf.output())


def _make_corpus(root: Path) -> Path:
    (root / "gear").mkdir(parents=True)
    (root / "hr").mkdir()
    (root / "it").mkdir()
    (root / "gear" / "tents.md").write_text(
        "# Tent care\n\nDry the rain fly before folding it. Seam sealer is applied every second season, "
        "and torn mesh is patched with the repair kit that ships with every tent.\n"
    )
    (root / "hr" / "payroll.txt").write_text(
        "Payroll runs on the 25th of each month. Overtime is paid at one and a half times the hourly rate "
        "and must be approved by a shift lead before the payroll cut-off.\n"
    )
    (root / "it" / "phishing.html").write_text(
        "<html><body><h1>Phishing</h1><p>Forward suspicious e-mails to the security desk and never type "
        "your password into a page reached from a link in an e-mail.</p></body></html>"
    )
    (root / "hr" / "handbook.pdf").write_bytes(_two_page_pdf([
        "Expenses. Hotel nights are reimbursed up to 140 dollars with an itemised receipt.",
        "Annual leave. Every employee receives twenty-two days of paid annual leave per calendar year.",
    ]))
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    corpus = _make_corpus(tmp_path_factory.mktemp("corpus"))
    work = tmp_path_factory.mktemp("work")
    result = lp.build(corpus, work, chunk_tokens=250, overlap_tokens=38)
    yield corpus, work, result
    lp.close(work)


def test_build_reads_every_format_and_indexes_every_page(built):
    _, _, result = built
    assert result["files"] == 4 and result["unreadable"] == []
    assert result["documents"] == 5  # the PDF is read page by page
    assert result["nodes"] == result["nodes_total"] >= 5


@pytest.mark.parametrize(
    ("question", "doc_id", "page"),
    [
        ("How many days of paid holiday does a worker get each year?", "hr/handbook.pdf", 2),
        ("What is the hotel reimbursement limit per night?", "hr/handbook.pdf", 1),
        ("What should I do with a suspicious email?", "it/phishing.html", None),
        ("When is overtime pay approved?", "hr/payroll.txt", None),
    ],
)
def test_retrieve_ranks_the_answering_document_first(built, question, doc_id, page):
    _, work, _ = built
    hits = lp.retrieve(work, question, k=3)
    assert len(hits) == 3
    assert hits[0]["doc_id"] == doc_id
    assert hits[0]["page_start"] == hits[0]["page_end"] == page
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert hits[0]["text"].strip()


def test_rerun_with_nothing_changed_inserts_nothing(built):
    corpus, work, first = built
    again = lp.build(corpus, work, chunk_tokens=250, overlap_tokens=38)
    assert again["nodes"] == 0
    assert again["nodes_total"] == first["nodes_total"]
    assert again["seconds"]["embed"] == 0.0


def test_rerun_after_an_edit_replaces_only_that_documents_nodes(built, tmp_path):
    corpus_src, _, _ = built
    corpus = tmp_path / "corpus"
    shutil.copytree(corpus_src, corpus)
    work = tmp_path / "work"
    first = lp.build(corpus, work)
    (corpus / "hr" / "payroll.txt").write_text("Payroll now runs on the last Friday of each month.\n")
    edited = lp.build(corpus, work)
    assert edited["nodes"] == 1  # only the edited file was split and embedded again
    assert edited["nodes_total"] == first["nodes_total"]  # its old node was deleted, not kept beside the new one
    hits = lp.retrieve(work, "Which day of the month is payroll run?", k=1)
    assert hits[0]["doc_id"] == "hr/payroll.txt" and "last Friday" in hits[0]["text"]
    lp.close(work)
