"""strip_headers_footers on real-looking PDFs (fpdf2 -> pypdf -> one Block per line)."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from pypdf import PdfReader

from ragline.clean import CleanResult, normalise_line, strip_headers_footers
from ragline.types import Block, ParsedDocument

TITLE = "Northwind Outfitters - Employee Handbook"

PARAGRAPHS = [
    "Northwind Outfitters sells tents, packs and technical clothing from twelve stores "
    "and an online shop. This handbook explains how we work together and what you can "
    "expect from the company in return.",
    "Full-time employees receive twenty-two days of paid annual leave per calendar year. "
    "Leave of more than five consecutive days should be requested four weeks in advance "
    "through the scheduling tool, so that store rotas can be planned.",
    "Employees are paid every other Friday by direct deposit. Overtime beyond forty hours "
    "in a week is paid at one and a half times the regular rate and must be approved by "
    "a manager before it is worked.",
    "The gear library lends tents, stoves and sleeping bags to staff free of charge for "
    "up to seven days. Items are checked on return and cleaned by the store team before "
    "they go back on the shelf.",
    "Store staff receive the rota fourteen days ahead. Swaps between colleagues are "
    "allowed when both people are trained for the role and the shift lead agrees.",
    "Every employee has a yearly learning budget for courses, certifications and books "
    "that help in the current role or the next one. Unused budget does not carry over.",
]

SECTIONS = ["Welcome", "Annual leave", "Pay and overtime", "Gear library", "Rotas", "Learning"]


class _Handbook(FPDF):
    """A letter-size PDF with a running title on top and "Page N of M" at the bottom."""

    def __init__(self, header_text: Callable[[int], str] | None, footer: bool = True):
        super().__init__(format="letter")
        self._header_text = header_text
        self._footer = footer
        self.set_auto_page_break(auto=True, margin=20)
        self.alias_nb_pages()

    def header(self) -> None:
        if self._header_text is None:
            return
        self.set_font("Helvetica", "B", 9)
        self.cell(0, 6, self._header_text(self.page_no()), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(4)

    def footer(self) -> None:
        if not self._footer:
            return
        self.set_y(-15)
        self.set_font("Helvetica", "", 9)
        self.cell(0, 10, f"Page {self.page_no()} of {{nb}}", align="C")


def _paragraph(pdf: FPDF, text: str) -> None:
    pdf.multi_cell(0, 5.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


def _make_pdf(
    pages: int,
    *,
    header_text: Callable[[int], str] | None = lambda n: TITLE,
    footer: bool = True,
    per_page: Callable[[FPDF, int], None] | None = None,
) -> bytes:
    """`pages` pages, each with a heading and body paragraphs; `per_page` adds extra content."""
    assert pages <= len(SECTIONS)
    pdf = _Handbook(header_text, footer)
    for n in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 13)
        pdf.cell(0, 8, SECTIONS[n - 1], new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("Helvetica", "", 11)
        # Rotate the paragraphs so that every page opens and closes with different text.
        for i in range(len(PARAGRAPHS)):
            _paragraph(pdf, PARAGRAPHS[(n - 1 + i) % len(PARAGRAPHS)])
            if i == 2 and per_page is not None:
                per_page(pdf, n)
        assert pdf.page_no() == n, "body must fit on one page"
    return bytes(pdf.output())


def _parse(data: bytes) -> ParsedDocument:
    """What the PDF parser produces: one Block per non-empty, stripped line."""
    reader = PdfReader(io.BytesIO(data))
    blocks = [
        Block(text=" ".join(line.split()), page=number)
        for number, page in enumerate(reader.pages, start=1)
        for line in (page.extract_text() or "").splitlines()
        if line.strip()
    ]
    return ParsedDocument(title="handbook.pdf", blocks=blocks, page_count=len(reader.pages))


def _texts(doc: ParsedDocument) -> list[str]:
    return [b.text for b in doc.blocks]


def _is_furniture(text: str) -> bool:
    return text == TITLE or (text.startswith("Page ") and " of " in text)


# --- PDFs -------------------------------------------------------------------------


def test_running_header_and_page_footer_are_removed_from_every_page():
    doc = _parse(_make_pdf(6))
    # The PDF really does carry the furniture on each page, as first and last line.
    for n in range(1, 7):
        lines = [b.text for b in doc.blocks if b.page == n]
        assert lines[0] == TITLE
        assert lines[-1] == f"Page {n} of 6"

    result = strip_headers_footers(doc)

    assert isinstance(result, CleanResult)
    assert result.removed_lines == 12  # a header and a footer on each of 6 pages
    texts = _texts(result.document)
    assert TITLE not in texts
    assert not any(t.startswith("Page ") and t.endswith(" of 6") for t in texts)
    # Every other block is kept, in order and on its page.
    assert result.document.blocks == [b for b in doc.blocks if not _is_furniture(b.text)]
    assert len(result.document.blocks) == len(doc.blocks) - 12
    assert result.document.page_count == 6
    assert result.document.title == doc.title


def test_sentence_repeated_in_the_body_is_kept():
    safety = "Safety first: report every incident."

    def add_safety(pdf: FPDF, n: int) -> None:
        _paragraph(pdf, safety)

    doc = _parse(_make_pdf(5, per_page=add_safety))
    assert _texts(doc).count(safety) == 5

    result = strip_headers_footers(doc)

    assert _texts(result.document).count(safety) == 5
    assert result.removed_lines == 10
    assert TITLE not in _texts(result.document)


def test_two_page_document_is_left_unchanged():
    doc = _parse(_make_pdf(2))
    assert _texts(doc).count(TITLE) == 2

    result = strip_headers_footers(doc)

    assert result.removed_lines == 0
    assert result.document.blocks == doc.blocks
    assert result.document is not doc


def test_line_that_appears_once_in_a_zone_is_kept():
    draft = "DRAFT - for review by the works council"

    def header(n: int) -> str:
        return draft if n == 1 else TITLE

    doc = _parse(_make_pdf(4, header_text=header))
    assert doc.blocks[0].text == draft

    result = strip_headers_footers(doc)

    texts = _texts(result.document)
    assert draft in texts
    assert TITLE not in texts  # on 3 of 4 pages: still a running header
    assert result.removed_lines == 3 + 4


def test_line_on_too_few_pages_is_kept():
    # A notice at the top of 2 pages out of 6 is below the default share of one half.
    notice = "Updated for the 2026 season"

    def header(n: int) -> str:
        return notice if n in (2, 5) else f"Chapter {n}: notes from the field team"

    doc = _parse(_make_pdf(6, header_text=header))

    result = strip_headers_footers(doc)

    assert _texts(result.document).count(notice) == 2
    # "Chapter N: notes ..." differs only by its digit on 4 pages of 6: removed.
    assert not any(t.startswith("Chapter ") for t in _texts(result.document))
    assert result.removed_lines == 4 + 6


def test_headers_that_differ_only_by_digits_are_caught():
    def header(n: int) -> str:
        return f"Employee Handbook rev. {n + 3} - printed 2026-01-{10 + n:02d} 08:{n:02d}"

    doc = _parse(_make_pdf(5, header_text=header))
    headers = [b.text for b in doc.blocks if b.text.startswith("Employee Handbook rev.")]
    assert len(set(headers)) == 5  # all different as text

    result = strip_headers_footers(doc)

    assert not any(t.startswith("Employee Handbook rev.") for t in _texts(result.document))
    assert result.removed_lines == 10


def test_input_document_is_not_mutated():
    doc = _parse(_make_pdf(3))
    before = list(doc.blocks)
    metadata = {"source": "fs"}
    doc.metadata = metadata

    result = strip_headers_footers(doc)

    assert result.removed_lines == 6
    assert doc.blocks == before
    assert doc.metadata is metadata
    assert result.document.metadata == metadata
    assert result.document.metadata is not metadata


# --- synthetic block lists ------------------------------------------------------------


def _doc(pages: list[list[str]], **kw) -> ParsedDocument:
    blocks = [Block(text=t, page=n) for n, lines in enumerate(pages, start=1) for t in lines]
    return ParsedDocument(title="t", blocks=blocks, page_count=len(pages), **kw)


_GEAR = "tents stoves boots packs ropes kayaks lanterns helmets gloves maps compasses".split()
_VERBS = "dry repair count label sell check pack ship".split()


def _body(n: int) -> list[str]:
    """Eight body lines, different in words (not only digits) from every other page's."""
    this, that = _GEAR[n], _GEAR[(n + 1) % len(_GEAR)]
    return [f"We {verb} the {this} before the {that} arrive." for verb in _VERBS]


@pytest.mark.parametrize(
    "style", [lambda n: str(n), lambda n: f"- {n} -", lambda n: f"[{n}]", lambda n: f"Page {n}"]
)
def test_bare_page_numbers_are_removed(style):
    doc = _doc([_body(n) + [style(n)] for n in range(1, 6)])

    result = strip_headers_footers(doc)

    assert result.removed_lines == 5
    assert _texts(result.document) == [t for n in range(1, 6) for t in _body(n)]


def test_roman_and_arabic_page_numbers_count_together():
    numbers = ["i", "ii", "iii", "1", "2", "3"]
    doc = _doc([_body(n) + [numbers[n - 1]] for n in range(1, 7)])

    result = strip_headers_footers(doc)

    assert result.removed_lines == 6


def test_running_title_set_as_heading_is_a_candidate():
    pages = [[TITLE] + _body(n) for n in range(1, 5)]
    blocks = [
        Block(text=t, page=n, heading=(i == 0))
        for n, lines in enumerate(pages, start=1)
        for i, t in enumerate(lines)
    ]
    doc = ParsedDocument(title="t", blocks=blocks, page_count=4)

    result = strip_headers_footers(doc)

    assert result.removed_lines == 4
    assert not any(b.heading for b in result.document.blocks)


def test_repeated_line_outside_the_zones_is_never_removed():
    # The same line sits in the middle of every page: fifth of eleven blocks.
    repeated = "Safety first: report every incident."
    doc = _doc([_body(n)[:4] + [repeated] + _body(n)[4:] + ["2"] for n in range(1, 6)])

    result = strip_headers_footers(doc, zone=3)

    assert _texts(result.document).count(repeated) == 5


def test_bottom_pattern_does_not_strip_a_number_at_the_top():
    # Page numbers recur at the bottom; a lone "2026" opening one page is not a footer.
    pages = [_body(n) + [str(n)] for n in range(1, 6)]
    pages[2] = ["2026"] + pages[2]
    doc = _doc(pages)

    result = strip_headers_footers(doc)

    assert "2026" in _texts(result.document)
    assert result.removed_lines == 5


def test_single_page_format_is_untouched():
    doc = _doc([["Title", "Title", "Title", "Body"]])

    result = strip_headers_footers(doc)

    assert result.removed_lines == 0
    assert result.document.blocks == doc.blocks


def test_min_pages_is_respected():
    pages = [[TITLE] + _body(n) for n in range(1, 4)]
    assert strip_headers_footers(_doc(pages)).removed_lines == 3
    assert strip_headers_footers(_doc(pages), min_pages=4).removed_lines == 0


def test_threshold_follows_min_share():
    pages = [([TITLE] if n <= 3 else []) + _body(n) for n in range(1, 11)]
    assert strip_headers_footers(_doc(pages)).removed_lines == 0  # 3 of 10 < 5
    assert strip_headers_footers(_doc(pages), min_share=0.3).removed_lines == 3


def test_empty_document():
    doc = ParsedDocument(title="empty", blocks=[], page_count=5)
    result = strip_headers_footers(doc)
    assert result.removed_lines == 0
    assert result.document.blocks == []


@pytest.mark.parametrize("kw", [{"zone": 0}, {"min_share": 0.0}, {"min_share": 1.5}])
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        strip_headers_footers(_doc([["a"]] * 3), **kw)


def test_numeric_table_rows_are_not_candidates():
    # A table that runs across pages: each page starts with a row differing only in digits.
    pages = [
        [f"Q{n} 2025 {n}1.5 {n}4.1", f"Q{n} 2026 {n}2.5 {n}3.9"] + _body(n) for n in range(1, 5)
    ]
    doc = _doc(pages)

    result = strip_headers_footers(doc)

    assert result.removed_lines == 0


def test_normalise_line():
    assert normalise_line("Release 3 of 12") == normalise_line("release  4 of 13")
    assert normalise_line("Release 3 of 12") == "release # of #"
    assert normalise_line("- 7 -") == normalise_line("xii") == normalise_line("12")
    assert normalise_line("Page 3 of 12") == normalise_line("3 / 12") == normalise_line("p. 4")
    assert normalise_line("Handbook 2026-01-05") == "handbook #-#-#"
    assert normalise_line("Summary") == "summary"
