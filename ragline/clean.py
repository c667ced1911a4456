"""Remove running headers and footers from paged documents.

A PDF page usually carries furniture that is not content: a running title at
the top ("Northwind Outfitters - Employee Handbook"), a page number at the
bottom ("Page 3 of 12", "- 3 -", "iii"). Left in, it is repeated in every chunk,
dilutes every embedding and shows up as a false match for any query that names
the document. This module learns that furniture from the document itself.

The rule
--------
For every page, only its first `zone` and its last `zone` blocks are
candidates (the top and the bottom zone). Each candidate is normalised:
lower-cased, whitespace collapsed, every run of digits replaced by "#", so
"Page 3 of 12" and "Page 4 of 12" become the same line, and so do running
titles that carry a date or a revision number. A line that is nothing but a
page number ("3", "- 3 -", "[3]", "Page 3", "3 / 12", "Page 3 of 12", "iii")
normalises to one shared key, whatever its style.

A normalised line is boilerplate for the top (or the bottom) when it occurs in
the top (or the bottom) zone of at least ``max(2, ceil(min_share * page_count))``
distinct pages. Its occurrences inside that zone are removed; nothing else is.

Why it is conservative
----------------------
Deleting a sentence of real content is worse than keeping a stray header, so:

* nothing outside the zones is ever looked at or removed: a sentence that
  legitimately repeats in the body of many pages ("Safety first: report every
  incident.") stays, every time;
* a line must recur on a share of the pages (half of them by default) and on
  at least two pages; a line seen once is never removed;
* a line made mostly of digits (a table row running across pages, such as
  "Q3 2025 12.5 14.1") is never a candidate, since folding digits to "#" would
  make every row of the table look alike; bare page numbers are the exception;
* a line is removed only from the zone (top or bottom) where it was found to
  recur, so a page-number pattern learnt from the footers does not strip a
  lone number at the top of some page;
* documents with fewer than `min_pages` pages (3 by default) are returned as
  they are: one or two pages give too little evidence to tell a header from a
  title. Non-paged formats (everything on page 1) are therefore never touched.

Headings are candidates like any other block, since running titles are often
set in bold. The input document is not modified; a new one is returned.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

from ragline.types import Block, ParsedDocument

__all__ = ["CleanResult", "strip_headers_footers", "normalise_line"]

_WS = re.compile(r"\s+")
_DIGITS = re.compile(r"\d+")
_ROMAN = r"m{0,3}(?:cm|cd|d?c{0,3})(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3})"
# A line that is only a page number: "3", "- 3 -", "(3)", "[iv]", "page 3", "p. 3", "3 |", "3 / 12".
_PAGE_NUMBER = re.compile(
    r"^(?:(?:page|pg\.?|p\.)\s*)?[-–—|(\[]*\s*"
    rf"(?:\d+(?:\s*(?:/|of)\s*\d+)?|(?=[mdclxvi]){_ROMAN})"
    r"\s*[-–—|)\]]*$"
)
_PAGE_NUMBER_KEY = "<page-number>"


@dataclass(frozen=True)
class CleanResult:
    document: ParsedDocument
    removed_lines: int  # how many blocks were removed


def normalise_line(text: str) -> str:
    """The key under which a candidate header/footer line is counted."""
    line = _WS.sub(" ", text.strip().lower())
    if line and _PAGE_NUMBER.match(line):
        return _PAGE_NUMBER_KEY
    return _DIGITS.sub("#", line)


def _candidate_key(text: str) -> str | None:
    """`normalise_line(text)`, or None for a line that must never be counted.

    A line made mostly of digits (a table row such as "Q3 2025 12.5 14.1") loses
    everything that tells it apart from the next page's row when its digits are
    folded to "#", so only lines that are mostly letters, and bare page numbers,
    are candidates.
    """
    key = normalise_line(text)
    if key == _PAGE_NUMBER_KEY:
        return key
    letters = sum(c.isalpha() for c in text)
    digits = sum(c.isdigit() for c in text)
    if letters == 0 or letters < digits:
        return None
    return key


def strip_headers_footers(
    doc: ParsedDocument, *, zone: int = 3, min_share: float = 0.5, min_pages: int = 3
) -> CleanResult:
    """Return `doc` without the lines repeated in the top or bottom zone of many pages.

    See the module docstring for the rule. `zone` is how many blocks at each end
    of a page are candidates, `min_share` the share of the document's pages a
    line must recur on, `min_pages` the fewest pages a document needs before
    anything is removed.
    """
    if zone < 1:
        raise ValueError(f"zone must be at least 1, got {zone}")
    if not 0.0 < min_share <= 1.0:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")

    page_count = max(doc.page_count, len({b.page for b in doc.blocks}))
    if page_count < min_pages or not doc.blocks:
        return CleanResult(_copy(doc, list(doc.blocks)), 0)

    # Block indices of each page, in reading order.
    pages: dict[int, list[int]] = defaultdict(list)
    for i, block in enumerate(doc.blocks):
        pages[block.page].append(i)

    keys: dict[int, str | None] = {}
    top: dict[int, list[int]] = {}
    bottom: dict[int, list[int]] = {}
    top_pages: Counter[str | None] = Counter()
    bottom_pages: Counter[str | None] = Counter()
    for page, idx in pages.items():
        top[page] = idx[:zone]
        bottom[page] = idx[-zone:]
        for i in top[page] + bottom[page]:
            keys.setdefault(i, _candidate_key(doc.blocks[i].text))
        # Count pages, not occurrences: a line twice on one page is still one page.
        top_pages.update({keys[i] for i in top[page]} - {None})
        bottom_pages.update({keys[i] for i in bottom[page]} - {None})

    # The small epsilon keeps e.g. 0.1 * 30 = 3.0000000000000004 from rounding up to 4.
    threshold = max(2, math.ceil(min_share * page_count - 1e-9))
    top_boiler = {k for k, n in top_pages.items() if n >= threshold}
    bottom_boiler = {k for k, n in bottom_pages.items() if n >= threshold}

    remove: set[int] = set()
    for page in pages:
        remove.update(i for i in top[page] if keys[i] in top_boiler)
        remove.update(i for i in bottom[page] if keys[i] in bottom_boiler)

    kept = [b for i, b in enumerate(doc.blocks) if i not in remove]
    return CleanResult(_copy(doc, kept), len(remove))


def _copy(doc: ParsedDocument, blocks: list[Block]) -> ParsedDocument:
    return ParsedDocument(
        title=doc.title,
        blocks=blocks,
        page_count=doc.page_count,
        metadata=dict(doc.metadata),
    )
