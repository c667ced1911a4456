"""Property-based fuzzing (hypothesis) of the cleaner, the chunker and the parsers' text paths.

What must hold, whatever the input:

* `strip_headers_footers` never raises, removes only blocks from the top/bottom zone of a page,
  only lines that recur on at least two pages, keeps the order of what it keeps, counts what it
  removed, and leaves documents of fewer than three pages alone;
* `TokenChunker.chunk` (the real MiniLM tokenizer, at the default size and at a tiny one that forces
  cuts inside sentences and words) never raises, gives no empty chunk, no chunk over the token limit
  (counted again by the tokenizer), numbers chunks 0..n-1, takes every word of a chunk from the
  input, loses no word of the input, and gives the same chunks twice;
* `parsers.parse` on `.txt`, `.md`, `.html`, `.csv` and `.eml`, fed arbitrary bytes or arbitrary text,
  raises nothing but `ParseError` (with a reason naming the file) or returns a document whose blocks
  are non-empty, single-line, NUL-free text on pages >= 1; plain text and Markdown are ragline's own
  code, so there not even a library error may be wrapped; UTF-8 plain text keeps every word.

Example counts: `RAGLINE_FUZZ_EXAMPLES` per property (default 60, about 30 s for the module on a
2-core machine). The long run, before a release or after touching these modules:

    RAGLINE_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest -q tests/hardening/test_fuzz.py

Hypothesis keeps failing examples in `.hypothesis/` and replays them first on the next run.
"""

from __future__ import annotations

import os
import re
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chunkers.token_chunker import TokenChunker
from ragline import parsers
from ragline.clean import _candidate_key, strip_headers_footers
from ragline.errors import ParseError
from ragline.types import Block, ParsedDocument

pytestmark = pytest.mark.model

EXAMPLES = int(os.environ.get("RAGLINE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the tokenizer's first calls and the machine's load vary; speed is not the property
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("RAGLINE_FUZZ_RANDOM") != "1",  # CI: the same examples every run
)

# Text that exercises sentence ends, abbreviations, headings, page furniture, digits, CJK, RTL,
# combining and zero-width characters, emoji and long unbroken words.
WORDS = st.sampled_from([
    "Page", "3", "of", "12", "iii", "- 4 -", "Dr.", "e.g.", "U.S.", "Mr.", "Annual", "leave", "policy",
    "Handbook", "2026", "Q3", "12.5", "é", "naïve", "日本語の文。", "これは文です！", "مرحبا", "שלום",
    "e\u0301", "\u200b", "\u00ad", "🙂", "x" * 300, "supercalifragilisticexpialidocious" * 8, "a.b.c.d",
    "?!", "...", "…", "(", ")", "\"Quoted.\"", "'single'", "\t", "", "#", "*", "•",
])
TEXT_PIECE = st.one_of(WORDS, st.text(min_size=0, max_size=40))
SENTENCE = st.lists(TEXT_PIECE, min_size=0, max_size=30).map(" ".join)
SEPARATOR = st.sampled_from([" ", "\n", ". ", "! ", "? ", ".\n", "\n\n", "。", "  "])
BLOCK_TEXT = st.lists(st.tuples(SENTENCE, SEPARATOR), max_size=8).map(lambda parts: "".join(a + b for a, b in parts))
BLOCK = st.builds(Block, text=BLOCK_TEXT, page=st.integers(1, 6), heading=st.booleans())
DOCUMENT = st.builds(
    lambda blocks, extra_pages: ParsedDocument(
        title="fuzz", blocks=sorted(blocks, key=lambda b: b.page),
        page_count=max([b.page for b in blocks] or [1]) + extra_pages,
    ),
    st.lists(BLOCK, max_size=25),
    st.integers(0, 2),
)

# Paged documents with real running headers and footers, so the cleaner has something to remove.
FURNITURE = st.sampled_from(["Northwind Handbook", "Confidential - rev 7", "Page {n} of 9", "- {n} -", "{n}",
                             "Chapter {n}", "ACME Corp 2026", "iv"])


@st.composite
def paged_documents(draw) -> ParsedDocument:
    pages = draw(st.integers(1, 9))
    header = draw(FURNITURE)
    footer = draw(FURNITURE)
    blocks: list[Block] = []
    for n in range(1, pages + 1):
        if draw(st.booleans()):
            blocks.append(Block(header.format(n=n), page=n, heading=draw(st.booleans())))
        blocks.extend(Block(t, page=n) for t in draw(st.lists(BLOCK_TEXT, max_size=5)))
        if draw(st.booleans()):
            blocks.append(Block(footer.format(n=n), page=n))
    return ParsedDocument(title="paged", blocks=blocks, page_count=pages)


# -- the cleaner ---------------------------------------------------------------------------------


@FUZZ
@given(doc=st.one_of(DOCUMENT, paged_documents()), zone=st.integers(1, 4), share=st.floats(0.05, 1.0))
def test_cleaner_removes_only_recurring_zone_lines(doc, zone, share):
    before = list(doc.blocks)
    result = strip_headers_footers(doc, zone=zone, min_share=share)

    assert doc.blocks == before, "the input document was modified"
    kept = result.document.blocks
    assert result.removed_lines == len(before) - len(kept)
    # What is kept is the input in its order, minus the removed blocks.
    position = 0
    removed: list[int] = []
    for i, block in enumerate(before):
        if position < len(kept) and kept[position] is block:
            position += 1
        else:
            removed.append(i)
    assert position == len(kept), "the cleaner reordered or invented blocks"

    pages = max(doc.page_count, len({b.page for b in before}))
    if pages < 3:
        assert removed == []
    by_page: dict[int, list[int]] = {}
    for i, block in enumerate(before):
        by_page.setdefault(block.page, []).append(i)
    for i in removed:
        on_page = by_page[before[i].page]
        assert i in on_page[:zone] or i in on_page[-zone:], f"removed a body line: {before[i].text!r}"
        key = _candidate_key(before[i].text)
        assert key is not None, f"removed a line that is never a candidate: {before[i].text!r}"
        recurring = {b.page for j, b in enumerate(before) if _candidate_key(b.text) == key
                     and (j in by_page[b.page][:zone] or j in by_page[b.page][-zone:])}
        assert len(recurring) >= 2, f"removed a line seen on one page only: {before[i].text!r}"


# -- the chunker ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_chunker(embedder) -> TokenChunker:
    """A small budget, so that sentences and words are cut at token boundaries, and overlap is used."""
    return TokenChunker(embedder, chunk_tokens=24, overlap_tokens=6, special_tokens=embedder.special_tokens)


_WS = re.compile(r"\s+")
_ASCII_WORD = re.compile(r"^[A-Za-z0-9]+$")


def check_chunks(chunker: TokenChunker, doc: ParsedDocument) -> None:
    chunks = chunker.chunk(doc)
    source = "\n".join(b.text for b in doc.blocks)
    pages = {b.page for b in doc.blocks}
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text.strip(), f"empty chunk {chunk.index}"
        counted = chunker.counter.count_tokens(chunk.text)
        assert chunk.token_count == counted, "the chunk's token count is not the tokenizer's"
        assert 0 < counted <= chunker.chunk_tokens, f"chunk {chunk.index} has {counted} tokens"
        assert chunk.page_start <= chunk.page_end and {chunk.page_start, chunk.page_end} <= pages
        for word in chunk.text.split():
            assert word in source, f"chunk word {word!r} is not in the input"
    # Nothing is lost: every plain word of the input is in the chunks (a word cut at a chunk
    # boundary is whole again once the chunks' text is put together without whitespace).
    joined = "".join(_WS.sub("", c.text) for c in chunks)
    for word in source.split():
        if _ASCII_WORD.match(word):
            assert word in joined, f"input word {word!r} is in no chunk"
    assert chunker.chunk(doc) == chunks, "chunking is not deterministic"


@FUZZ
@given(doc=st.one_of(DOCUMENT, paged_documents()))
def test_chunker_invariants_at_the_default_size(chunker, doc):
    check_chunks(chunker, doc)


@FUZZ
@given(doc=st.one_of(DOCUMENT, paged_documents()))
def test_chunker_invariants_at_a_tiny_size(tiny_chunker, doc):
    check_chunks(tiny_chunker, doc)


# -- the parsers' text paths ---------------------------------------------------------------------

TEXT_SUFFIXES = (".txt", ".md", ".html", ".csv", ".eml")
OWN_CODE = (".txt", ".md")  # no library under them: any exception there is a bug of ours

# Bytes that look like the formats, so the fuzzer gets past the first check more often than random bytes.
SEEDS = st.sampled_from([
    b"", b"\x00", b"\xff\xfe", b"\xfe\xff\x00a", b"\xef\xbb\xbf", b"%PDF-", b"PK\x03\x04", b"<html><body><p>",
    b"<h1>T</h1>", b"<table><tr><td>", b"<!--", b"<script>", b"# Title\n", b"---\ntitle: x\n---\n", b"```\n",
    b"a,b,c\n", b"1;2;3\n", b'"x","y\n', b"\t|\t\n", b"From: a@b\r\nSubject: s\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\n", b"Content-Transfer-Encoding: base64\r\n",
    b"=?utf-8?q?x?=", b"\r\n", b"\xc3\x28", b"\xe9t\xe9", "é日本".encode("utf-16-le"),
])
BYTES = st.one_of(st.binary(max_size=2000), st.lists(st.one_of(SEEDS, st.binary(max_size=40)), max_size=30).map(b"".join))


def check_parse(suffix: str, data: bytes) -> None:
    name = f"fuzz{suffix}"
    try:
        doc = parsers.parse(name, data)
    except ParseError as error:
        assert error.reason and str(error).startswith(name), f"unclear error: {error!r}"
        if suffix in OWN_CODE:
            assert error.__cause__ is None, f"{suffix} parser crashed: {error.__cause__!r}"
        return
    assert doc.blocks, "a parsed document without blocks"
    assert isinstance(doc.title, str) and doc.title
    for block in doc.blocks:
        assert block.text and block.text == block.text.strip(), f"untrimmed or empty block {block.text!r}"
        assert "\x00" not in block.text and "\n" not in block.text, f"block not cleaned: {block.text!r}"
        assert block.page >= 1


@FUZZ
@given(suffix=st.sampled_from(TEXT_SUFFIXES), data=BYTES)
def test_parsers_on_arbitrary_bytes(suffix, data):
    check_parse(suffix, data)


@FUZZ
@given(suffix=st.sampled_from(TEXT_SUFFIXES), text=st.one_of(st.text(max_size=1500), BLOCK_TEXT),
       encoding=st.sampled_from(["utf-8", "utf-16", "utf-16-le", "latin-1", "cp1252"]))
def test_parsers_on_arbitrary_text(suffix, text, encoding):
    data = text.encode(encoding, errors="replace")
    check_parse(suffix, data)


def _printable(text: str) -> bool:
    return all(ch in "\t\n" or unicodedata.category(ch) not in ("Cc", "Cs") for ch in text) and not any(
        text.encode().startswith(magic) for magic, _ in parsers._MAGIC) and not text.startswith("\ufeff")


# Printable text: no control characters but tab and newline, and no prefix that reads as a binary format.
PRINTABLE = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), whitelist_characters="\t\n"), max_size=1500
).filter(_printable)


@FUZZ
@given(text=st.one_of(PRINTABLE, BLOCK_TEXT.filter(_printable)))
def test_utf8_plain_text_keeps_every_word(text):
    words = text.split()
    try:
        doc = parsers.parse("notes.txt", text.encode("utf-8"))
    except ParseError as error:
        assert not words, f"printable text with words was refused: {error.reason}"
        assert error.reason in (parsers.NO_TEXT, "empty file (0 bytes)"), error.reason
        return
    assert " ".join(b.text for b in doc.blocks).split() == words
