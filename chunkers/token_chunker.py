"""Split a parsed document into chunks sized in the embedding model's own tokens.

Why tokens of the embedding model
    The embedder silently truncates anything longer than its window, so a chunk of
    "about 200 words" may lose its tail without a trace: words are not tokens, and URLs,
    code, numbers, CJK text or emoji take far more tokens per word than English prose.
    The chunker is therefore handed the model's own tokenizer (a `TokenCounter`) and
    measures every piece with it. The window is checked once, at construction:
    `chunk_tokens` plus the model's special tokens ([CLS], [SEP]) must fit in
    `counter.max_tokens`, else `ConfigError`. Nothing is ever truncated.

How a document is cut
    1. Blocks (paragraphs, headings, lines of a PDF page, table rows) are split into
       sentences with a cheap regex; "e.g.", "Dr.", initials and decimals do not end one.
    2. A sentence longer than `chunk_tokens` is cut at token boundaries taken from
       `token_spans`, so no cut falls inside a token; a cut between words or at
       punctuation is preferred to one between the word-pieces of a word.
    3. Sentences are packed greedily. Each is counted once; a chunk's size is the sum of
       its sentences' counts, and the chunk's final text is counted once more.
    4. When the current chunk is already more than half full, a heading starts a new
       chunk, and so does a block that would not fit in what is left but fits in a chunk
       of its own (blocks are not split when they fit). A chunk does not end on a
       heading: the heading moves on to the chunk that holds its section's text.
    5. The parts of a sentence cut in step 2 (and a sentence after a lone heading) are
       split further to fill the room left in a chunk, so a long sentence flows through
       full chunks.

Overlap rule
    A chunk begins with the trailing sentences of the previous chunk -- whole sentences,
    as many as fit in `overlap_tokens` and in the room its first new text leaves (the
    whole first block, when the chunk begins one that fits). When the previous chunk's
    last sentence alone is longer than that, the overlap is instead a tail of that
    sentence of at most that many tokens, starting at a word boundary, so the parts of a
    long sentence overlap too. A chunk that begins with a heading has no overlap: a new
    section is a clean break. Every chunk holds text the previous chunk does not; no
    chunk is only overlap.

Anchors (content-defined boundaries; on unless `anchored=False`)
    Greedy packing makes every boundary depend on everything before it: one sentence added
    to page 3 of a 100-page PDF shifts every later chunk, and a sync re-embeds the whole
    document. So once a chunk holds ANCHOR_FLOOR of `chunk_tokens`, it ends before the one
    sentence, among those that could still start the next chunk (the current one and those
    after it that fit), whose text hashes lowest. The choice depends on those sentences'
    text, not on where the chunk began, so after an edit the boundaries fall back in step
    within a chunk or two (the same idea as winnowing for document fingerprints), and the
    embedding cache reuses every other chunk's vector. The price: chunks are on average
    about three quarters full instead of nearly full, so there are more of them
    (BENCHMARKS.md measures both effects). Headings and blocks still close chunks as in 4.

Guarantee
    For every chunk, `token_count == counter.count_tokens(chunk.text) <= chunk_tokens`.
    Joining sentences with a space or a newline does not change WordPiece counts, but
    joining two parts of a word can; each chunk's text is therefore counted once more,
    and a chunk over budget hands its last unit on to the next chunk.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from dataclasses import dataclass

from ragline.errors import ConfigError
from ragline.types import Chunk, ParsedDocument, TokenCounter

# Anchors: the share of chunk_tokens a chunk holds before its end is chosen by content.
ANCHOR_FLOOR = 0.5

# Words ending in "." that do not end a sentence (lowercase, without the final dot).
_ABBREVIATIONS = frozenset(
    """
    e.g i.e cf vs viz al approx ca fig figs eq eqs no nos vol pp p ch sec sect ref refs
    dr mr mrs ms prof st jr sr mt gen col lt sgt capt rev hon inc ltd co corp dept est
    jan feb mar apr jun jul aug sep sept oct nov dec a.m p.m u.s u.k ph.d
    """.split()
)

# A candidate sentence end: Western terminal punctuation (plus closing quotes or brackets)
# followed by whitespace, or CJK terminal punctuation anywhere.
_CANDIDATE_END = re.compile(r"""(?:[.!?]+|…)["'”’)\]]*(?=\s)|[。！？]+[」』”’)）]*""")
_WHITESPACE = re.compile(r"\s+")
_OPENERS = "\"'“‘([¿¡"


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, stripped, in order; together they keep every non-space character."""
    sentences: list[str] = []
    start = 0
    n = len(text)
    for match in _CANDIDATE_END.finditer(text):
        end = match.end()
        if end >= n:
            break
        mark = match.group()
        if mark[0] in ".!?…":  # Western: an end only before a newline or a likely sentence start
            ws = _WHITESPACE.match(text, end)
            following = ws.end() if ws else end
            if following >= n:
                break
            if not (ws and "\n" in ws.group()):
                nxt = text[following]
                if not (nxt.isupper() or nxt.isdigit() or nxt in _OPENERS):
                    continue
                if mark == "." and _is_abbreviation(text, match.start()):
                    continue
        sentence = text[start:end].strip()
        if sentence:
            sentences.append(sentence)
        start = end
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def _is_abbreviation(text: str, dot: int) -> bool:
    """Whether the word ending at the "." at `dot` is a known abbreviation or an initial."""
    j = dot
    while j > 0 and not text[j - 1].isspace() and dot - j < 12:
        j -= 1
    word = text[j:dot].lstrip(_OPENERS).lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


@dataclass(slots=True)
class _Unit:
    """The smallest piece the packer moves: a sentence, or a part of a long one."""

    text: str
    tokens: int
    page: int
    section: str | None
    sep: str  # what joins it to the unit before it in the same chunk
    block_start: bool = False  # first unit of its block
    block_tokens: int = 0  # the whole block's tokens (set on its first unit)
    heading: bool = False  # part of a heading block
    part: bool = False  # a part of a sentence cut at token boundaries


def _anchor_key(unit: _Unit) -> bytes:
    """A sentence's rank as a chunk boundary: from its own text alone."""
    return hashlib.blake2b(unit.text.encode("utf-8"), digest_size=8).digest()


def _word_boundary(text: str, pos: int) -> bool:
    """Whether a cut at character `pos` (where a token starts) falls between words or at punctuation."""
    if pos <= 0 or pos >= len(text):
        return True
    before, at = text[pos - 1], text[pos]
    return before.isspace() or not before.isalnum() or not at.isalnum()


def _join(units: list[_Unit]) -> str:
    parts = [units[0].text]
    for unit in units[1:]:
        parts.append(unit.sep)
        parts.append(unit.text)
    return "".join(parts)


class TokenChunker:
    """Chunks of at most `chunk_tokens` tokens of `counter`'s tokenizer; see the module docstring.

    `special_tokens` is how many tokens the model adds to every input ([CLS] and [SEP] for
    BERT-like models); `chunk_tokens + special_tokens` must fit in `counter.max_tokens`.
    """

    def __init__(
        self,
        counter: TokenCounter,
        *,
        chunk_tokens: int = 250,
        overlap_tokens: int = 38,
        special_tokens: int = 2,
        anchored: bool = True,
    ):
        if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens <= 0:
            raise ConfigError(f"chunk_tokens must be a positive integer, got {chunk_tokens!r}")
        if isinstance(overlap_tokens, bool) or not isinstance(overlap_tokens, int) or overlap_tokens < 0:
            raise ConfigError(f"overlap_tokens must be a non-negative integer, got {overlap_tokens!r}")
        if overlap_tokens > chunk_tokens // 2:
            raise ConfigError(
                f"overlap_tokens={overlap_tokens} is more than half of chunk_tokens={chunk_tokens}; "
                f"use at most {chunk_tokens // 2} (about 15% of the chunk is usual)"
            )
        if isinstance(special_tokens, bool) or not isinstance(special_tokens, int) or special_tokens < 0:
            raise ConfigError(f"special_tokens must be a non-negative integer, got {special_tokens!r}")
        window = getattr(counter, "max_tokens", None)
        if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
            raise ConfigError(f"the token counter {counter!r} has no usable max_tokens (got {window!r})")
        if chunk_tokens + special_tokens > window:
            raise ConfigError(
                f"chunk_tokens={chunk_tokens} plus {special_tokens} special tokens is "
                f"{chunk_tokens + special_tokens}, more than the embedding model's window of {window} "
                f"tokens (max_tokens); the model would silently truncate every full chunk. Lower "
                f"chunk_tokens to at most {window - special_tokens}, or choose an embedding model "
                f"with a larger window."
            )
        self.counter = counter
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.special_tokens = special_tokens
        # Least room worth filling with part of a sentence rather than closing the chunk.
        self._min_fill = max(1, chunk_tokens // 8)
        self.anchored = anchored
        self._anchor_floor = int(chunk_tokens * ANCHOR_FLOOR)

    def __repr__(self) -> str:
        return (
            f"TokenChunker(chunk_tokens={self.chunk_tokens}, overlap_tokens={self.overlap_tokens}, "
            f"special_tokens={self.special_tokens})"
        )

    # ------------------------------------------------------------------ units

    def _units(self, doc: ParsedDocument) -> list[_Unit]:
        budget = self.chunk_tokens
        count = self.counter.count_tokens
        units: list[_Unit] = []
        section: str | None = None
        for block in doc.blocks:
            text = block.text.strip()
            if not text:
                continue
            if block.heading:
                section = " ".join(text.split())
            block_units: list[_Unit] = []
            for sentence in split_sentences(text):
                tokens = count(sentence)
                if tokens == 0:
                    continue  # nothing the model would see (control or zero-width characters)
                if tokens <= budget:
                    block_units.append(_Unit(sentence, tokens, block.page, section, " "))
                    continue
                for piece, piece_tokens, sep in self._cut(sentence):
                    block_units.append(_Unit(piece, piece_tokens, block.page, section, sep, part=True))
            if not block_units:
                continue
            first = block_units[0]
            first.sep = "\n"
            first.block_start = True
            first.block_tokens = sum(u.tokens for u in block_units)
            if block.heading:
                for unit in block_units:
                    unit.heading = True
            units.extend(block_units)
        return units

    def _cut_index(self, text: str, spans: list[tuple[int, int]], i: int, limit: int) -> int:
        """Index of the token to cut before, so that tokens i..k-1 (at most `limit`) form a part.

        Prefers a token that starts a word, in the second half of the allowance.
        """
        k = min(i + limit, len(spans) - 1)
        floor = i + max(1, limit // 2)
        j = k
        while j > floor and not _word_boundary(text, spans[j][0]):
            j -= 1
        return j if _word_boundary(text, spans[j][0]) else k

    def _cut(self, text: str) -> list[tuple[str, int, str]]:
        """Cut one over-long sentence at token boundaries into (part, tokens, sep), each within budget.

        A part that re-tokenizes to more than the budget gives up tokens at its end until it fits.
        """
        budget = self.chunk_tokens
        count = self.counter.count_tokens
        spans = list(self.counter.token_spans(text))
        n = len(spans)
        parts: list[tuple[str, int, str]] = []
        sep = " "
        i = 0  # first token of the next part
        char_start = 0
        while i < n:
            k = n if n - i <= budget else self._cut_index(text, spans, i, budget)
            while True:
                char_end = spans[k][0] if k < n else len(text)
                part = text[char_start:char_end].rstrip()
                tokens = count(part)
                if tokens <= budget or k - i == 1:
                    break
                k -= 1
            if tokens > budget:
                # One token whose characters alone re-tokenize to more than the budget (only
                # possible with a tiny budget): cut it by characters.
                part, char_end = self._cut_chars(text, char_start, char_end)
                tokens = count(part)
                if char_end < spans[i][1]:
                    spans[i] = (char_end, spans[i][1])  # the rest of the token starts the next part
                    k = i
                else:
                    k = i + 1
            if tokens:
                parts.append((part, tokens, sep))
            sep = " " if char_start + len(part) < char_end else ""
            char_start = char_end
            i = k
        return parts

    def _cut_chars(self, text: str, start: int, end: int) -> tuple[str, int]:
        """The longest prefix of text[start:end] within budget, and where it ends."""
        lo, hi = start + 1, end
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.counter.count_tokens(text[start:mid]) <= self.chunk_tokens:
                lo = mid
            else:
                hi = mid - 1
        return text[start:lo], lo

    def _split(self, unit: _Unit, room: int) -> tuple[_Unit, _Unit] | None:
        """`unit` cut at a token boundary into a head of at most `room` tokens and the rest."""
        text = unit.text
        spans = self.counter.token_spans(text)
        if len(spans) < 2 or room < 1:
            return None
        k = self._cut_index(text, spans, 0, room)
        while k >= 1:
            head = text[: spans[k][0]].rstrip()
            head_tokens = self.counter.count_tokens(head)
            if 0 < head_tokens <= room:
                break
            k -= 1
        else:
            return None
        cut = spans[k][0]
        rest = text[cut:]
        rest_tokens = self.counter.count_tokens(rest)
        if not 0 < rest_tokens <= self.chunk_tokens:
            return None
        first = _Unit(
            head, head_tokens, unit.page, unit.section, unit.sep,
            unit.block_start, unit.block_tokens, unit.heading, part=True,
        )
        sep = " " if len(head) < cut else ""
        second = _Unit(rest, rest_tokens, unit.page, unit.section, sep, heading=unit.heading, part=True)
        return first, second

    # ---------------------------------------------------------------- overlap

    def _overlap(self, previous: list[_Unit], limit: int) -> list[_Unit]:
        """Trailing whole units of `previous` within `limit` tokens, else a token tail of its last unit."""
        limit = min(limit, self.overlap_tokens)
        if limit <= 0 or not previous:
            return []
        taken: list[_Unit] = []
        total = 0
        for unit in reversed(previous):
            if total + unit.tokens > limit:
                break
            taken.append(unit)
            total += unit.tokens
        if taken:
            taken.reverse()
            return taken
        return self._tail(previous[-1], limit)

    def _tail(self, unit: _Unit, limit: int) -> list[_Unit]:
        """The longest tail of `unit` within `limit` tokens that starts a word (after whitespace if possible)."""
        text = unit.text
        spans = self.counter.token_spans(text)
        n = len(spans)
        first = max(1, n - limit)
        if first >= n:
            return []
        start = next((j for j in range(first, n) if text[spans[j][0] - 1].isspace()), None)
        if start is None:
            start = next((j for j in range(first, n) if _word_boundary(text, spans[j][0])), first)
        while start < n:
            tail = text[spans[start][0] :]
            tokens = self.counter.count_tokens(tail)
            if 0 < tokens <= limit:
                return [_Unit(tail, tokens, unit.page, unit.section, unit.sep, heading=unit.heading, part=True)]
            start += 1
        return []

    # ---------------------------------------------------------------- packing

    def _pick_anchor(self, unit: _Unit, queue: deque[_Unit], filled: int) -> _Unit | None:
        """Of the sentences that could still start the next chunk (this one and those after it that
        fit), the one whose text hashes lowest; None (a full chunk) when none of them is whole."""
        best, best_key = None, None
        room = self.chunk_tokens - filled
        candidate = unit
        lookahead = iter(queue)
        while candidate is not None:
            if not candidate.part:
                key = _anchor_key(candidate)
                if best_key is None or key < best_key:
                    best, best_key = candidate, key
            room -= candidate.tokens
            if room < 0:
                break
            candidate = next(lookahead, None)
        return best

    def chunk(self, doc: ParsedDocument) -> list[Chunk]:
        budget = self.chunk_tokens
        half = budget // 2
        queue = deque(self._units(doc))
        chunks: list[Chunk] = []
        current: list[_Unit] = []
        current_tokens = 0
        overlap_count = 0  # leading units of `current` that repeat the end of the previous chunk
        previous: list[_Unit] = []
        anchor: _Unit | None = None  # where the current chunk will end, once it is full enough to choose

        def emit(carry_heading: bool) -> None:
            nonlocal current, current_tokens, overlap_count, previous, anchor
            anchor = None
            units = current
            if carry_heading:
                # Do not end a chunk on a heading: hand it on to the chunk that holds its section.
                last_start = max(j for j, u in enumerate(units) if u.block_start or j == 0)
                if (
                    last_start > overlap_count
                    and units[last_start].block_start
                    and all(u.heading for u in units[last_start:])
                ):
                    queue.extendleft(reversed(units[last_start:]))
                    units = units[:last_start]
            while True:
                text = _join(units)
                tokens = self.counter.count_tokens(text)
                if tokens <= budget:
                    break
                if len(units) - overlap_count > 1:
                    queue.appendleft(units.pop())  # the joined text counts more: move the last unit on
                elif overlap_count:
                    units = units[1:]  # drop overlap until the one new unit fits (it does alone)
                    overlap_count -= 1
                else:
                    raise RuntimeError(f"token counter gave {tokens} tokens for a unit counted within {budget}")
            chunks.append(
                Chunk(
                    index=len(chunks),
                    text=text,
                    token_count=tokens,
                    page_start=min(u.page for u in units),
                    page_end=max(u.page for u in units),
                    section=units[0].section,
                )
            )
            previous = units
            current, current_tokens, overlap_count = [], 0, 0

        while True:
            if not queue:
                if len(current) > overlap_count:
                    emit(carry_heading=False)  # may hand units back to the queue
                    continue
                break
            unit = queue.popleft()
            if len(current) > overlap_count:  # the chunk already holds new text
                close = False
                if unit.block_start and current_tokens > half:
                    close = unit.heading or (
                        current_tokens + unit.block_tokens > budget and unit.block_tokens <= budget
                    )
                if not close and self.anchored and current_tokens >= self._anchor_floor:
                    if anchor is None:
                        anchor = self._pick_anchor(unit, queue, current_tokens)
                    if unit is anchor:
                        close = True  # a content-defined boundary: see "Anchors" in the module docstring
                if not close and current_tokens + unit.tokens > budget:
                    close = True
                    room = budget - current_tokens
                    only_headings = all(u.heading for u in current[overlap_count:])
                    if (unit.part or only_headings) and room >= self._min_fill:
                        split = self._split(unit, room)
                        if split:
                            unit, rest = split
                            queue.appendleft(rest)
                            close = False
                if close:
                    queue.appendleft(unit)  # before emit(), which may put units back ahead of it
                    emit(carry_heading=True)
                    continue
            elif not current and previous and not (unit.heading and unit.block_start):
                if unit.part:
                    need = min(unit.tokens, budget - self.overlap_tokens)  # a part can be split to make room
                elif unit.block_start and unit.block_tokens <= budget:
                    need = unit.block_tokens
                else:
                    need = unit.tokens
                current = self._overlap(previous, budget - need)
                current_tokens = sum(u.tokens for u in current)
                overlap_count = len(current)
                if current_tokens + unit.tokens > budget:  # only a part: split it to fill the room
                    split = self._split(unit, budget - current_tokens)
                    if split:
                        unit, rest = split
                        queue.appendleft(rest)
                    else:
                        current, current_tokens, overlap_count = [], 0, 0
            current.append(unit)
            current_tokens += unit.tokens
        return chunks
