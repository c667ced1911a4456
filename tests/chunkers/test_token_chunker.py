"""TokenChunker against the real tokenizer of the bundled all-MiniLM-L6-v2 (no model weights needed)."""

from __future__ import annotations

import random
import re
import time

import pytest

from chunkers.token_chunker import TokenChunker, split_sentences
from embedders.sentence_transformer import SentenceTransformerEmbedder
from ragline.errors import ConfigError
from ragline.types import Block, Chunk, ParsedDocument


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    embedder = SentenceTransformerEmbedder()
    embedder.count_tokens("warm up")  # load the tokenizer once, outside any timing
    return embedder


def _doc(blocks: list[Block]) -> ParsedDocument:
    return ParsedDocument(title="t", blocks=blocks, page_count=max((b.page for b in blocks), default=1))


def _compact(text: str) -> str:
    return "".join(text.split())


def assert_valid(chunks: list[Chunk], doc: ParsedDocument, chunker: TokenChunker, counter) -> None:
    """The hard guarantee, plus: ordered indexes, sane pages, and no text lost or reordered."""
    assert [c.index for c in chunks] == list(range(len(chunks)))
    pages = [b.page for b in doc.blocks] or [1]
    for c in chunks:
        assert c.text and c.text == c.text.strip()
        assert c.token_count == counter.count_tokens(c.text), c.text
        assert 0 < c.token_count <= chunker.chunk_tokens, (c.token_count, c.text)
        assert min(pages) <= c.page_start <= c.page_end <= max(pages)
    # Every non-space character of the document appears, in order, with no gap between chunks:
    # some placement of each chunk in the document starts within the previous chunk's
    # placement and ends after it. (All placements are tracked: repetitive text is ambiguous.)
    whole = _compact(doc.text)
    if not chunks:
        assert whole == ""
        return
    first = _compact(chunks[0].text)
    assert whole.startswith(first), "the document's beginning is missing"
    placements = {(0, len(first))}
    for c in chunks[1:]:
        part = _compact(c.text)
        lo = min(start for start, _ in placements)
        hi = max(end for _, end in placements)
        candidates = []
        pos = whole.find(part, lo)
        while pos != -1 and pos <= hi:
            candidates.append(pos)
            pos = whole.find(part, pos + 1)
        placements = {
            (pos, pos + len(part))
            for pos in candidates
            if any(start <= pos <= end < pos + len(part) for start, end in placements)
        }
        assert placements, f"chunk {c.index} does not continue the previous one"
    assert any(end == len(whole) for _, end in placements), "the end of the document is missing"


def overlap_of(a: str, b: str) -> str:
    """The longest prefix of b that is a suffix of a."""
    for length in range(min(len(a), len(b)), 0, -1):
        if a.endswith(b[:length]):
            return b[:length]
    return ""


# ---------------------------------------------------------------- hostile text

WORDS = "the of model vector index search quantum café naïve résumé Straße über déjà".split()


def _hostile_word(rng: random.Random) -> str:
    kind = rng.randrange(11)
    if kind == 0:  # a long URL
        segments = ["api", "v2", "documents", "a1b2c3", "x_y-z", "%20"]
        path = "/".join(rng.choice(segments) for _ in range(rng.randint(3, 30)))
        return f"https://example.com/{path}?q={rng.randint(0, 10**9)}&lang=en#frag"
    if kind == 1:  # CJK
        return "".join(rng.choice("日本語中文字漢字テキストですかなひらがな한국어텍스트") for _ in range(rng.randint(1, 40)))
    if kind == 2:  # emoji, with skin tones and ZWJ sequences
        return "".join(rng.choice(["😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "✨", "🔥"]) for _ in range(rng.randint(1, 12)))
    if kind == 3:  # a long "word" with punctuation (many tokens, no spaces)
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_./:"
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(20, 400)))
    if kind == 4:  # numbers, decimals, abbreviations
        return rng.choice(
            [f"{rng.uniform(0, 1e6):.4f}", "e.g.", "Dr.", "i.e.", "3.14", "U.S.", f"{rng.randint(0, 99)}%"]
        )
    if kind == 5:  # other scripts, combining marks
        return rng.choice(["Ελληνικά", "русский", "العربية", "हिन्दी", "e\u0301te\u0301", "ﬁnance", "Ⅻ"])
    if kind == 6:  # sentence end
        return rng.choice(WORDS) + rng.choice([".", "!", "?", '."', "。"])
    return rng.choice(WORDS)


def _hostile_doc(rng: random.Random) -> ParsedDocument:
    blocks: list[Block] = []
    page = 1
    for _ in range(rng.randint(1, 20)):
        kind = rng.randrange(10)
        if kind == 0:
            text = " ".join(_hostile_word(rng) for _ in range(rng.randint(1, 8)))
            blocks.append(Block(text, page, heading=True))
        elif kind == 1:  # one giant sentence with no spaces at all
            alphabet = "abcdefghijklmnopqrstuvwxyz0123456789.,;/-"
            blocks.append(Block("".join(rng.choice(alphabet) for _ in range(rng.randint(500, 3000))), page))
        elif kind == 2:  # a long table, one row per block
            for row in range(rng.randint(5, 50)):
                cells = [
                    f"r{row}c{rng.randint(0, 9)}",
                    f"{rng.uniform(-1e4, 1e4):.2f}",
                    rng.choice(WORDS),
                    _hostile_word(rng),
                ]
                blocks.append(Block("| " + " | ".join(cells) + " |", page))
        elif kind == 3:  # whitespace-only and empty blocks are skipped
            blocks.append(Block(rng.choice(["", "   ", "\n\t"]), page))
        else:
            text = " ".join(_hostile_word(rng) for _ in range(rng.randint(1, 120)))
            blocks.append(Block(text, page))
        if rng.random() < 0.3:
            page += 1
    return _doc(blocks)


@pytest.mark.parametrize(
    ("chunk_tokens", "overlap", "documents"), [(250, 38, 30), (100, 50, 20), (64, 10, 15), (20, 10, 8), (16, 0, 8)]
)
def test_size_guarantee_on_hostile_text(embedder, chunk_tokens, overlap, documents):
    chunker = TokenChunker(embedder, chunk_tokens=chunk_tokens, overlap_tokens=overlap)
    rng = random.Random(1234 + chunk_tokens)
    for _ in range(documents):
        doc = _hostile_doc(rng)
        chunks = chunker.chunk(doc)
        assert_valid(chunks, doc, chunker, embedder)


_RNG = random.Random(7)


@pytest.mark.parametrize(
    "text",
    [
        "x" * 20000,  # one "word": a single [UNK]
        "".join(_RNG.choice("abcdefghij0123456789-./") for _ in range(20000)),
        "https://example.com/" + "/".join(f"segment-{i}-with_words" for i in range(2000)),
        "".join(_RNG.choice("日本語のテキストです中文字漢") for _ in range(8000)),
        "".join(_RNG.choice(["🔥", "👍🏽", "✨", "👨‍👩‍👧"]) for _ in range(6000)),
        "".join(_RNG.choice(["🔥 ", "👍🏽 ", "✨", "👨‍👩‍👧 ", "x"]) for _ in range(6000)),
        " ".join(  # long made-up words: many word-pieces each
            "".join(_RNG.choice("bcdfghjklmnpqrstvwxz") for _ in range(_RNG.randint(10, 40))) for _ in range(1500)
        ),
        " ".join(f"{i}.{i}" for i in range(5000)),
    ],
)
def test_giant_sentences_are_cut_within_budget(embedder, text):
    chunker = TokenChunker(embedder, chunk_tokens=100, overlap_tokens=15)
    doc = _doc([Block(text, 1)])
    chunks = chunker.chunk(doc)
    assert chunks
    assert_valid(chunks, doc, chunker, embedder)


def test_guarantee_holds_when_joining_changes_the_count():
    """A counter for which a newline costs a token: chunks built by summing must be re-verified."""

    class NewlineCostsAToken:
        max_tokens = 40

        def count_tokens(self, text: str) -> int:
            return len(text.split()) + text.count("\n")

        def token_spans(self, text: str) -> list[tuple[int, int]]:
            return [m.span() for m in re.finditer(r"\S+", text)]

    counter = NewlineCostsAToken()
    chunker = TokenChunker(counter, chunk_tokens=30, overlap_tokens=5)
    doc = _doc([Block(" ".join(f"w{i}x{j}" for j in range(4)), 1 + i // 10) for i in range(100)])
    chunks = chunker.chunk(doc)
    assert_valid(chunks, doc, chunker, counter)


# ---------------------------------------------------------------- overlap


def _prose(rng: random.Random, paragraphs: int, per_paragraph: tuple[int, int]) -> list[str]:
    nouns = "vector index corpus window token model query chunk page section".split()
    out, n = [], 0
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(*per_paragraph)):
            sentences.append(f"Item {n} explains the {rng.choice(nouns)} of the {rng.choice(nouns)} today.")
            n += 1
        out.append(" ".join(sentences))
    return out


def test_overlap_is_trailing_whole_sentences_within_budget(embedder):
    chunker = TokenChunker(embedder, chunk_tokens=250, overlap_tokens=38)
    rng = random.Random(5)
    doc = _doc([Block(p, 1) for p in _prose(rng, 40, (2, 9))])
    chunks = chunker.chunk(doc)
    assert_valid(chunks, doc, chunker, embedder)
    assert len(chunks) > 5
    longest_sentence = max(embedder.count_tokens(s) for b in doc.blocks for s in split_sentences(b.text))
    for a, b in zip(chunks, chunks[1:]):
        shared = overlap_of(a.text, b.text)
        assert shared, f"chunk {b.index} does not begin with the end of chunk {a.index}"
        assert shared.startswith("Item ") and shared.endswith(".")  # whole sentences
        assert a.text[-len(shared) - 1] in " \n"  # ... that start a sentence in the previous chunk too
        tokens = embedder.count_tokens(shared)
        assert tokens <= 38
        assert tokens > 38 - longest_sentence  # greedy: as many trailing sentences as fit
        assert len(shared) < len(b.text)  # and the chunk adds something new


def test_long_sentences_overlap_by_a_token_tail(embedder):
    chunker = TokenChunker(embedder, chunk_tokens=50, overlap_tokens=10)
    text = " ".join(f"word{i}" for i in range(3000))  # one sentence, no punctuation
    doc = _doc([Block(text, 1)])
    chunks = chunker.chunk(doc)
    assert_valid(chunks, doc, chunker, embedder)
    for a, b in zip(chunks, chunks[1:]):
        shared = overlap_of(a.text, b.text)
        assert shared and shared.startswith("word")  # starts at a word
        assert a.text[-len(shared) - 1] == " "
        assert embedder.count_tokens(shared) <= 10
        assert len(shared) < len(b.text)
    # the long sentence fills its chunks
    assert all(c.token_count >= 40 for c in chunks[:-1])


def test_no_overlap_when_disabled(embedder):
    chunker = TokenChunker(embedder, chunk_tokens=60, overlap_tokens=0)
    doc = _doc([Block(p, 1) for p in _prose(random.Random(9), 20, (2, 6))])
    chunks = chunker.chunk(doc)
    assert_valid(chunks, doc, chunker, embedder)
    assert sum(len(_compact(c.text)) for c in chunks) == len(_compact(doc.text))


def test_last_chunk_is_not_only_overlap(embedder):
    chunker = TokenChunker(embedder, chunk_tokens=40, overlap_tokens=20)
    for n in range(1, 30):
        doc = _doc([Block(" ".join(f"Short sentence {i} here." for i in range(n)), 1)])
        chunks = chunker.chunk(doc)
        assert_valid(chunks, doc, chunker, embedder)
        for a, b in zip(chunks, chunks[1:]):
            assert len(overlap_of(a.text, b.text)) < len(b.text)


# ---------------------------------------------------------------- pages and sections


def test_page_ranges_follow_the_blocks(embedder):
    chunker = TokenChunker(embedder, chunk_tokens=120, overlap_tokens=20)
    blocks = [
        Block(f"Line L{page}-{line} on page {page} mentions the index.", page)
        for page in range(1, 8)
        for line in range(12)
    ]
    doc = _doc(blocks)
    chunks = chunker.chunk(doc)
    assert_valid(chunks, doc, chunker, embedder)
    spanning = 0
    for c in chunks:
        pages = [int(p) for p, _ in re.findall(r"L(\d+)-(\d+)", c.text)]
        assert (c.page_start, c.page_end) == (min(pages), max(pages))
        spanning += c.page_start != c.page_end
    assert spanning > 0
    assert [c.page_start for c in chunks] == sorted(c.page_start for c in chunks)
    assert chunks[-1].page_end == 7


def test_sections_follow_the_most_recent_heading(embedder):
    chunker = TokenChunker(embedder, chunk_tokens=100, overlap_tokens=15)
    rng = random.Random(3)
    blocks = [Block("A preface before any heading, in section none.", 1)]
    titles = ["Introduction", "Related work", "Methods and materials", "Results"]
    for number, title in enumerate(titles):
        blocks.append(Block(title, 1 + number, heading=True))
        for p in range(rng.randint(1, 5)):
            sentences = [f"In section {number} paragraph {p} fact {i} is stated." for i in range(rng.randint(1, 7))]
            blocks.append(Block(" ".join(sentences), 1 + number))
    doc = _doc(blocks)
    chunks = chunker.chunk(doc)
    assert_valid(chunks, doc, chunker, embedder)
    assert chunks[0].section is None
    for c in chunks:
        starts_with_title = [t for t in titles if c.text.startswith(t + "\n") or c.text == t]
        if starts_with_title:
            assert c.section == starts_with_title[0]
        else:
            first = re.search(r"section (\w+)", c.text)
            assert first is not None
            expected = None if first.group(1) == "none" else titles[int(first.group(1))]
            assert c.section == expected, c.text
        # a chunk does not end on a heading unless it is nothing but that heading
        last_line = c.text.rsplit("\n", 1)[-1]
        assert last_line not in titles or c.text == last_line
    for title in titles:  # headings are part of the text
        assert any(title in c.text for c in chunks)


def test_heading_starts_a_new_chunk_when_more_than_half_full(embedder):
    # The packing rules alone (anchors would end the chunk earlier, at a content-chosen sentence).
    chunker = TokenChunker(embedder, chunk_tokens=100, overlap_tokens=10, anchored=False)
    para = " ".join(f"Alpha fact {i} is here." for i in range(11))  # ~66 tokens: more than half
    doc = _doc([Block(para, 1), Block("Second part", 2, heading=True), Block("Beta fact one is here.", 2)])
    chunks = chunker.chunk(doc)
    assert_valid(chunks, doc, chunker, embedder)
    assert [c.text for c in chunks] == [para, "Second part\nBeta fact one is here."]
    assert [c.section for c in chunks] == [None, "Second part"]
    assert [(c.page_start, c.page_end) for c in chunks] == [(1, 1), (2, 2)]


def test_short_heading_joins_a_chunk_that_is_not_half_full(embedder):
    chunker = TokenChunker(embedder, chunk_tokens=100, overlap_tokens=10)
    doc = _doc([Block("A short opening.", 1), Block("Next", 1, heading=True), Block("Body text here.", 1)])
    chunks = chunker.chunk(doc)
    assert [c.text for c in chunks] == ["A short opening.\nNext\nBody text here."]
    assert chunks[0].section is None


# ---------------------------------------------------------------- configuration


def test_chunk_larger_than_the_model_window_is_refused(embedder):
    with pytest.raises(ConfigError) as excinfo:
        TokenChunker(embedder, chunk_tokens=500)
    message = str(excinfo.value)
    assert "500" in message and "256" in message and "502" in message
    assert "254" in message  # the largest chunk that fits
    assert "larger window" in message
    TokenChunker(embedder, chunk_tokens=254)
    with pytest.raises(ConfigError, match="255"):
        TokenChunker(embedder, chunk_tokens=255)


@pytest.mark.parametrize(
    "kwargs",
    [{"chunk_tokens": 0}, {"chunk_tokens": -5}, {"overlap_tokens": -1}, {"chunk_tokens": 100, "overlap_tokens": 51}],
)
def test_bad_settings_are_refused(embedder, kwargs):
    with pytest.raises(ConfigError):
        TokenChunker(embedder, **kwargs)


def test_chunk_of_500_with_a_512_window(embedder):
    wide = SentenceTransformerEmbedder(max_tokens=512)
    chunker = TokenChunker(wide, chunk_tokens=500, overlap_tokens=75)
    doc = _doc([Block(p, 1 + i // 4) for i, p in enumerate(_prose(random.Random(11), 30, (4, 12)))])
    chunks = chunker.chunk(doc)
    assert_valid(chunks, doc, chunker, wide)
    assert max(c.token_count for c in chunks) > 254


# ---------------------------------------------------------------- structure


def test_paragraphs_are_not_split_when_they_fit(embedder):
    chunker = TokenChunker(embedder, chunk_tokens=250, overlap_tokens=38, anchored=False)  # packing rules alone
    rng = random.Random(21)
    paragraphs = []
    while len(paragraphs) < 40:
        p = " ".join(_prose(rng, 1, (5, 11)))
        if 60 <= embedder.count_tokens(p) <= 125:
            paragraphs.append(p)
    doc = _doc([Block(p, 1) for p in paragraphs])
    chunks = chunker.chunk(doc)
    assert_valid(chunks, doc, chunker, embedder)
    for p in paragraphs:
        assert any(p in c.text for c in chunks), p


def test_a_paragraph_too_long_for_a_chunk_is_split_at_sentences(embedder):
    chunker = TokenChunker(embedder, chunk_tokens=60, overlap_tokens=0)
    para = " ".join(f"Sentence number {i} is short." for i in range(40))
    doc = _doc([Block(para, 1)])
    chunks = chunker.chunk(doc)
    assert_valid(chunks, doc, chunker, embedder)
    assert len(chunks) > 1
    for c in chunks:
        assert c.text.startswith("Sentence number") and c.text.endswith("short.")


def test_empty_documents(embedder):
    chunker = TokenChunker(embedder)
    assert chunker.chunk(_doc([])) == []
    assert chunker.chunk(_doc([Block("", 1), Block("   \n", 2), Block("\t", 3, heading=True)])) == []


def test_small_document_is_one_chunk(embedder):
    chunker = TokenChunker(embedder)
    doc = _doc([Block("Title", 1, heading=True), Block("First line.", 1), Block("Second line.", 2)])
    [chunk] = chunker.chunk(doc)
    assert chunk.text == "Title\nFirst line.\nSecond line."
    assert (chunk.index, chunk.page_start, chunk.page_end, chunk.section) == (0, 1, 2, "Title")
    assert chunk.token_count == embedder.count_tokens(chunk.text)


def test_output_is_deterministic(embedder):
    doc = _hostile_doc(random.Random(99))
    first = TokenChunker(embedder, chunk_tokens=80, overlap_tokens=12).chunk(doc)
    second = TokenChunker(embedder, chunk_tokens=80, overlap_tokens=12).chunk(doc)
    assert first == second
    assert TokenChunker(embedder, chunk_tokens=80, overlap_tokens=12).chunk(doc) == first


def test_sentence_splitter():
    text = (
        "Dr. Smith arrived, e.g. by train. Pi is about 3.14 today! J. Doe agreed? "
        '"Yes." Then 2 more came.\nA new line starts here 日本語です。次の文。end'
    )
    assert split_sentences(text) == [
        "Dr. Smith arrived, e.g. by train.",
        "Pi is about 3.14 today!",
        "J. Doe agreed?",
        '"Yes."',
        "Then 2 more came.",
        "A new line starts here 日本語です。",
        "次の文。",
        "end",
    ]
    assert split_sentences("no end mark") == ["no end mark"]
    assert split_sentences("   ") == []


# ---------------------------------------------------------------- performance


def test_a_hundred_page_document_is_fast(embedder):
    rng = random.Random(42)
    vocabulary = (
        "the a retrieval embedding model vector chunk token index query document page section "
        "pipeline ingestion quality latency throughput evaluation benchmark dataset corpus"
    ).split()
    blocks: list[Block] = []
    words = 0
    for page in range(1, 101):
        if page % 10 == 1:
            blocks.append(Block(f"Chapter {page // 10 + 1}", page, heading=True))
        for _ in range(12):
            sentences = []
            for _ in range(rng.randint(2, 6)):
                sentence = [rng.choice(vocabulary) for _ in range(rng.randint(6, 14))]
                words += len(sentence)
                sentences.append(" ".join(sentence).capitalize() + ".")
            blocks.append(Block(" ".join(sentences), page))
    assert words >= 45_000
    doc = _doc(blocks)
    chunker = TokenChunker(embedder)
    started = time.perf_counter()
    chunks = chunker.chunk(doc)
    elapsed = time.perf_counter() - started
    assert elapsed < 5, f"{elapsed:.2f} s for {words} words"
    assert_valid(chunks, doc, chunker, embedder)
    assert chunks[-1].page_end == 100


# ---------------------------------------------------------------- anchors (content-defined boundaries)


def _changed_chunks(chunker: TokenChunker, before: list[str], after: list[str]) -> int:
    old = {c.text for c in chunker.chunk(_doc([Block(p, 1 + i // 4) for i, p in enumerate(before)]))}
    new = chunker.chunk(_doc([Block(p, 1 + i // 4) for i, p in enumerate(after)]))
    return sum(c.text not in old for c in new)


def test_an_edit_that_changes_a_paragraphs_length_changes_only_the_chunks_around_it(embedder):
    """What lets the embedding cache reuse the rest of a long document: anchored boundaries come back
    in step right after an edit, where greedy packing shifts every later boundary."""
    rng = random.Random(8)
    paragraphs = _prose(rng, 120, (2, 6))
    anchored = TokenChunker(embedder, chunk_tokens=250, overlap_tokens=38)
    greedy = TokenChunker(embedder, chunk_tokens=250, overlap_tokens=38, anchored=False)
    changed = {"anchored": [], "greedy": []}
    for n, where in enumerate(rng.sample(range(5, 115), 8)):
        edited = list(paragraphs)
        if n % 2:
            edited[where] += " An added sentence explains the window of the query once more today."
        else:
            edited[where] = edited[where].split(". ")[0] + "."
        changed["anchored"].append(_changed_chunks(anchored, paragraphs, edited))
        changed["greedy"].append(_changed_chunks(greedy, paragraphs, edited))
    assert max(changed["anchored"]) <= 3, changed
    assert sum(changed["greedy"]) > 2 * sum(changed["anchored"]), changed


def test_anchored_chunks_keep_every_guarantee_and_are_at_least_half_full(embedder):
    chunker = TokenChunker(embedder, chunk_tokens=120, overlap_tokens=18)
    doc = _doc([Block(p, 1 + i // 3) for i, p in enumerate(_prose(random.Random(4), 40, (1, 7)))])
    chunks = chunker.chunk(doc)
    assert_valid(chunks, doc, chunker, embedder)
    assert all(c.token_count >= 60 for c in chunks[:-1]), [c.token_count for c in chunks]
