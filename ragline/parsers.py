"""Turn the bytes of one document into a ParsedDocument: title, blocks in reading order, pages.

    parse("report.pdf", data) -> ParsedDocument(title, [Block(text, page, heading), ...], page_count)

One small function per format, each built on the library that reads that format
directly: pypdf, BeautifulSoup + lxml, python-docx, python-pptx, the stdlib `email`
package and pandas (+ openpyxl). Markdown and plain text need no library.

Why not `unstructured`: its partitioners download an NLTK/spaCy model the first time
they run, which fails (or hangs) on a machine without network access, and nothing may
download at run time here. They are also slow to import and hide which library failed
and why. The direct parsers below are offline, fast and give errors we can explain.

Contract for callers:
- Every failure raises `ParseError(filename, reason)`, with a reason written for the
  person who has to fix the file. No library exception escapes `parse`.
- A document that opens but yields no text raises ParseError as well (NO_TEXT).
- Each block's text has NUL bytes removed and whitespace runs collapsed to one space;
  empty blocks are dropped.
- PDF: one block per visual line of a page, in order, `page` = 1-based page number.
  The header/footer stripper downstream relies on this.
- Hostile files cost bounded time and memory here, before any worker-process limit: zip packages
  are checked for bombs before a part is inflated, HTML for its tag count, XLSX for cells with
  values (empty cells are dropped unread); see the limits below. Text is decoded from BOMs, UTF-8,
  BOM-less UTF-16, then line by line as UTF-8 or cp1252, so mixed files read right.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from email import policy
from email.message import Message
from email.parser import BytesParser
from pathlib import PurePosixPath
from typing import Any

from ragline.errors import ParseError
from ragline.types import Block, ParsedDocument

NO_TEXT = "no extractable text (scanned image or empty file?)"

# Limits that keep one hostile file from taking the machine's memory or hours of CPU. Each is far
# above what a real document of its kind needs; a file over one fails with a reason naming it.
ZIP_MAX_MEMBERS = 10_000  # parts in a DOCX/PPTX/XLSX package (a large deck has a few hundred)
ZIP_MAX_TOTAL_BYTES = 1024 * 1024 * 1024  # everything in the package, inflated
ZIP_MAX_XML_PART_BYTES = 256 * 1024 * 1024  # one XML part, inflated: the readers hold it as a tree in memory
ZIP_MAX_RATIO = 100  # inflated/compressed, for parts over ZIP_RATIO_FLOOR_BYTES; office XML runs 5-30
ZIP_RATIO_FLOOR_BYTES = 10 * 1024 * 1024
HTML_MAX_TAGS = 500_000  # BeautifulSoup keeps ~1 KB per tag: this bounds a page at a few hundred MB
XLSX_MAX_CELLS = 2_000_000  # cells holding a value, over all sheets (empty cells are dropped first)
CSV_MAX_FIELD_CHARS = 64 * 1024 * 1024  # the csv module's default of 128 KiB refuses real exports

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {
        ".pdf",
        ".html",
        ".htm",
        ".md",
        ".markdown",
        ".txt",
        ".text",
        ".docx",
        ".pptx",
        ".eml",
        ".csv",
        ".xlsx",
    }
)


def _suffix(filename: str) -> str:
    return PurePosixPath(filename.replace("\\", "/")).suffix.lower()


def _stem(filename: str) -> str:
    return PurePosixPath(filename.replace("\\", "/")).stem


def is_supported(filename: str) -> bool:
    return _suffix(filename) in SUPPORTED_SUFFIXES


def parse(filename: str, data: bytes) -> ParsedDocument:
    """Parse `data` according to the suffix of `filename` (case-insensitive)."""
    suffix = _suffix(filename)
    parser = _PARSERS.get(suffix)
    if parser is None:
        if not suffix:
            reason = "file has no extension, so its format is unknown"
        else:
            reason = f"unsupported file type {suffix!r} (supported: {', '.join(sorted(SUPPORTED_SUFFIXES))})"
        raise ParseError(filename, reason)
    if not data:
        raise ParseError(filename, "empty file (0 bytes)")
    try:
        doc = parser(filename, bytes(data))
    except ParseError:
        raise
    except Exception as exc:  # a library failed in a way we did not foresee: still a ParseError
        raise ParseError(filename, f"could not read {suffix[1:].upper()} file: {_short(exc)}") from exc
    if not doc.blocks:
        raise ParseError(filename, NO_TEXT)
    doc.title = _clean(doc.title) or _stem(filename)
    return doc


# --------------------------------------------------------------------------- helpers

_MAGIC = [
    (b"%PDF-", "a PDF file"),
    (b"PK\x03\x04", "a zip archive (e.g. DOCX/XLSX/PPTX)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy or encrypted Office file"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "an executable"),
    (b"\x1f\x8b", "a gzip archive"),
]
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v\x1b")


def _clean(text: str | None) -> str:
    """Drop NULs and collapse every run of whitespace (newlines included) to one space."""
    if not text:
        return ""
    return " ".join(text.replace("\x00", "").split())


def _short(exc: BaseException, limit: int = 160) -> str:
    """A library's message, one line, without the in-memory stream's repr it sometimes names."""
    msg = _clean(re.sub(r"\s*'?<_io\.BytesIO object at 0x[0-9a-fA-F]+>'?", "", str(exc))) or type(exc).__name__
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


class _Blocks:
    """Collects blocks, cleaning text and dropping empty ones."""

    def __init__(self) -> None:
        self.items: list[Block] = []

    def add(self, text: str | None, page: int = 1, heading: bool = False) -> None:
        text = _clean(text)
        if text:
            self.items.append(Block(text=text, page=page, heading=heading))

    def first_heading(self) -> str:
        return next((b.text for b in self.items if b.heading), "")


def _paragraphs(text: str) -> Iterator[str]:
    """Runs of non-blank lines, i.e. paragraphs separated by blank lines."""
    current: list[str] = []
    for line in text.splitlines():
        if line.strip():
            current.append(line)
        elif current:
            yield "\n".join(current)
            current = []
    if current:
        yield "\n".join(current)


def _decode_text(filename: str, data: bytes) -> str:
    """Bytes of a text file -> str. Never fails on bytes; rejects binary data."""
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise ParseError(filename, f"binary data, not text (looks like {what})")
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        text = data.decode("utf-32", errors="replace")
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace")
    elif data.startswith(b"\xef\xbb\xbf"):
        text = data[3:].decode("utf-8", errors="replace")
    else:
        bom_less_utf16 = _guess_utf16(data)
        if bom_less_utf16:
            text = data.decode(bom_less_utf16, errors="replace")
        else:
            text = _decode_8bit(data)
    # NULs go before judging: text padded with NULs (preallocated logs, fixed-width exports) is still
    # text, while binary data keeps plenty of other control bytes once its NULs are gone.
    text = text.replace("\x00", "")
    if not text and data:
        raise ParseError(filename, "the file holds only NUL bytes (a write that never finished, or a preallocated "
                                   "file?)")
    sample = text[:8192]
    controls = sum(1 for ch in sample if (ch < " " and ch not in _ALLOWED_CONTROLS) or ch == "\x7f")
    if sample and controls / len(sample) > 0.05:
        # UTF-16 of non-Latin text without a byte-order mark has no NUL pattern to tell it by
        raise ParseError(filename, "binary data, not text (if it is UTF-16 text, save it with a byte-order mark)")
    return text


def _decode_8bit(data: bytes) -> str:
    """UTF-8, else line by line: UTF-8 where a line is valid UTF-8, cp1252 (then latin-1) where not.

    Files that were appended to by different tools mix encodings; decoding each line on its own reads
    both halves correctly instead of turning the UTF-8 half into mojibake."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    return "".join(_decode_line(line) for line in data.splitlines(keepends=True))


def _decode_line(line: bytes) -> str:
    for encoding in ("utf-8", "cp1252"):
        try:
            return line.decode(encoding)
        except UnicodeDecodeError:
            continue
    return line.decode("latin-1")  # maps every byte: cannot fail


def _guess_utf16(data: bytes) -> str | None:
    """UTF-16 without a BOM: ASCII-range text leaves a NUL in every other byte."""
    sample = data[:4096]
    half = len(sample) // 2
    if half < 2:
        return None
    even_nuls = sample[0::2].count(0)
    odd_nuls = sample[1::2].count(0)
    if odd_nuls > 0.4 * half and even_nuls < 0.05 * half:
        return "utf-16-le"
    if even_nuls > 0.4 * half and odd_nuls < 0.05 * half:
        return "utf-16-be"
    return None


# What python-docx, python-pptx and openpyxl raise on a damaged package: zip errors, zlib
# errors, missing parts (KeyError), wrong content types (ValueError), XML errors (lxml's
# XMLSyntaxError is a SyntaxError), unsupported zip features or encrypted members (RuntimeError).
_OOXML_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, zlib.error, KeyError, ValueError, RuntimeError, EOFError, OSError, SyntaxError,
)


@contextmanager
def _ooxml(filename: str, data: bytes, kind: str, *errors: type[BaseException]) -> Iterator[None]:
    """Check that `data` is a zip, then turn the reader's errors into ParseError."""
    _check_zip(filename, data, kind)
    try:
        yield
    except ParseError:
        raise
    except (*_OOXML_ERRORS, *errors) as exc:
        raise ParseError(filename, f"not a valid {kind}: {_short(exc)}") from exc


_OOXML_MAIN_PART = {"DOCX": "word/document.xml", "PPTX": "ppt/presentation.xml", "XLSX": "xl/workbook.xml"}


def _check_zip(filename: str, data: bytes, kind: str) -> None:
    """OOXML formats are zip archives; explain the common ways a file is not one."""
    if data.startswith(_OLE2):
        legacy = {"DOCX": ".doc", "PPTX": ".ppt", "XLSX": ".xls"}[kind]
        raise ParseError(
            filename,
            f"not a valid {kind}: it is a password-protected Office file or a legacy {legacy} file "
            f"(remove the password, or save it as {kind.lower()})",
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ParseError(filename, f"not a valid {kind} (not a zip archive; truncated or another format?)") from None
    except RuntimeError as exc:  # NotImplementedError: a zip feature (version, compression) Python lacks
        raise ParseError(filename, f"not a valid {kind}: damaged or unsupported zip archive: {_short(exc)}") from exc
    _check_zip_sizes(filename, kind, members)
    names = {member.filename for member in members}
    if _OOXML_MAIN_PART[kind] in names:
        return
    for other, part in _OOXML_MAIN_PART.items():
        if part in names:
            raise ParseError(filename, f"not a valid {kind}: it is really a .{other.lower()} file; rename it")
    raise ParseError(filename, f"not a valid {kind}: a zip archive without {_OOXML_MAIN_PART[kind]} inside")


def _check_zip_sizes(filename: str, kind: str, members: list[zipfile.ZipInfo]) -> None:
    """Refuse a zip bomb before any part is inflated.

    The sizes checked are the ones the archive declares, and they can be trusted here: Python's
    zipfile never inflates a part past its declared size (it fails the CRC check instead), and the
    readers (python-docx, python-pptx, openpyxl) go through zipfile."""
    if len(members) > ZIP_MAX_MEMBERS:
        raise ParseError(filename, f"not a valid {kind}: the archive holds {len(members):,} parts, more than the "
                                   f"limit of {ZIP_MAX_MEMBERS:,} (a damaged or crafted file)")
    total = sum(member.file_size for member in members)
    if total > ZIP_MAX_TOTAL_BYTES:
        raise ParseError(filename, f"not a valid {kind}: looks like a zip bomb: its parts inflate to {_mib(total)}, "
                                   f"more than the limit of {_mib(ZIP_MAX_TOTAL_BYTES)}")
    for member in members:
        size = member.file_size
        ratio = size / max(member.compress_size, 1)
        if size > ZIP_RATIO_FLOOR_BYTES and ratio > ZIP_MAX_RATIO:
            raise ParseError(filename, f"not a valid {kind}: looks like a zip bomb: {member.filename} inflates "
                                       f"{ratio:,.0f}-fold to {_mib(size)} (real documents stay under "
                                       f"{ZIP_MAX_RATIO}-fold)")
        if size > ZIP_MAX_XML_PART_BYTES and member.filename.lower().endswith((".xml", ".rels")):
            raise ParseError(filename, f"not a valid {kind}: {member.filename} inflates to {_mib(size)}, more than "
                                       f"the limit of {_mib(ZIP_MAX_XML_PART_BYTES)} for one part")


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):,.0f} MiB"


# --------------------------------------------------------------------------- PDF


def _parse_pdf(filename: str, data: bytes) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PyPdfError
    from pypdf.errors import DeprecationError as PdfDeprecationError  # not a PyPdfError

    if b"%PDF-" not in data[:1024]:
        raise ParseError(filename, "not a PDF file (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
        if encrypted:
            try:
                result = reader.decrypt("")
            except DependencyError as exc:
                raise ParseError(filename, f"PDF is encrypted and cannot be decrypted here: {_short(exc)}") from exc
            if result == 0:  # PasswordType.NOT_DECRYPTED: the empty user password is not it
                raise ParseError(filename, "PDF is encrypted (a password is needed to open it)")
        page_count = len(reader.pages)
        blocks = _Blocks()
        for number, page in enumerate(reader.pages, start=1):
            for line in (page.extract_text() or "").splitlines():
                blocks.add(line, page=number)
        title = _pdf_title(reader)
    except ParseError:
        raise
    except (PyPdfError, PdfDeprecationError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            AssertionError, RuntimeError, OSError, zlib.error) as exc:
        # pypdf reports damage as PdfReadError, but also as plain Python errors from deep inside.
        # (DependencyError is a PyPdfError too, but it is caught above, next to decrypt.)
        raise ParseError(filename, f"PDF is damaged: {_short(exc)}") from exc
    if page_count == 0:
        raise ParseError(filename, "PDF has no pages")
    if not blocks.items:
        raise ParseError(filename, NO_TEXT)
    return ParsedDocument(
        title=title or blocks.items[0].text,
        blocks=blocks.items,
        page_count=page_count,
        metadata={"encrypted": encrypted},
    )


def _pdf_title(reader: Any) -> str:
    try:
        meta = reader.metadata
        return _clean(str(meta.title)) if meta is not None and meta.title else ""
    except Exception:  # a broken Info dictionary must not lose the text
        return ""


# --------------------------------------------------------------------------- HTML

_HTML_DROP = frozenset(
    {"script", "style", "nav", "noscript", "template", "head", "svg", "iframe", "object", "embed", "canvas"}
)
_HTML_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_HTML_CELLS = frozenset({"td", "th"})
# Tags whose start and end break the text into separate blocks.
_HTML_BLOCK = _HTML_HEADINGS | frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog",
        "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hr",
        "html", "li", "main", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot",
        "thead", "tr", "ul", "br",
    }
)


class _End:
    __slots__ = ("tag",)

    def __init__(self, tag: Any):
        self.tag = tag


def _html_events(root: Any) -> Iterator[tuple[str, Any]]:
    """("start", tag) / ("text", str) / ("end", tag) in document order, iteratively.

    A plain stack, no recursion: linear in the size of the tree and safe on deep nesting.
    """
    from bs4 import NavigableString, Tag
    from bs4.element import PreformattedString  # comments, doctypes, CDATA, processing instructions

    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, _End):
            yield "end", node.tag
        elif isinstance(node, Tag):
            name = (node.name or "").lower()
            if name in _HTML_DROP:
                continue
            yield "start", node
            stack.append(_End(node))
            stack.extend(reversed(node.contents))
        elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
            yield "text", str(node)


def _html_blocks(markup: str | bytes, page: int = 1) -> tuple[list[Block], str]:
    """HTML -> (blocks, title). Headings are heading blocks; table rows join cells with " | "."""
    from bs4 import BeautifulSoup

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bs4 warns about markup that looks like a URL or a filename
        soup = BeautifulSoup(markup, "lxml")
    title_tag = soup.find("title")
    title = _clean(title_tag.get_text(" ")) if title_tag else ""

    blocks = _Blocks()
    buffer: list[str] = []
    heading_depth = 0
    row: Any = None  # the open <tr>, whose finished cells are in `cells`
    cells: list[str] = []
    cell: Any = None  # the open <td>/<th>, whose text is in `cell_text`
    cell_text: list[str] = []

    def flush() -> None:
        if buffer:
            blocks.add("".join(buffer), page=page, heading=heading_depth > 0)
            buffer.clear()

    for kind, item in _html_events(soup):
        if kind == "text":
            (cell_text if cell is not None else buffer).append(item)
            continue
        if cell is not None:
            if kind == "end" and item is cell:
                text = _clean("".join(cell_text))
                if row is None:  # a cell outside any row: a block of its own
                    blocks.add(text, page=page)
                elif text:
                    cells.append(text)
                cell, cell_text = None, []
            else:  # tags inside a cell (even a nested table) only separate words
                cell_text.append(" ")
            continue
        name = (item.name or "").lower()
        if name in _HTML_CELLS and kind == "start":
            flush()
            cell = item
        elif name == "tr" and kind == "start":
            flush()
            if cells:  # a row left open by broken markup
                blocks.add(" | ".join(cells), page=page)
            row, cells = item, []
        elif name == "tr" and item is row:
            blocks.add(" | ".join(cells), page=page)
            row, cells = None, []
        elif name in _HTML_BLOCK:
            flush()
            if name in _HTML_HEADINGS:
                heading_depth += 1 if kind == "start" else -1
        elif name == "img" and kind == "start" and item.get("alt"):
            buffer.append(f" {item.get('alt')} ")
    flush()
    if not title:
        h1 = soup.find("h1")
        title = _clean(h1.get_text(" ")) if h1 else ""
    return blocks.items, title


def _check_html_size(filename: str, markup: str | bytes) -> None:
    """Bound BeautifulSoup's tree: one Python object per tag, so the tag count is what costs memory
    and time, not the bytes (a 50 MB page with one inline image is cheap)."""
    tags = markup.count(b"<" if isinstance(markup, bytes) else "<")
    if tags > HTML_MAX_TAGS:
        raise ParseError(filename, f"HTML has about {tags:,} tags, more than the limit of {HTML_MAX_TAGS:,}; "
                                   "split the page or export it as text")


def _parse_html(filename: str, data: bytes) -> ParsedDocument:
    _check_html_size(filename, data)
    blocks, title = _html_blocks(data)
    return ParsedDocument(title=title or _stem(filename), blocks=blocks)


# --------------------------------------------------------------------------- Markdown

_MD_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*))?$")
_MD_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_MD_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_MD_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+")
_MD_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_MD_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
# Bounded repeats: a paragraph full of unmatched "[" or "**" must not make these quadratic.
_MD_INLINE = [
    (re.compile(r"!\[([^\]]{0,300})\]\([^)]{0,2000}\)"), r"\1"),  # image -> alt text
    (re.compile(r"\[([^\]]{1,300})\]\([^)]{0,2000}\)"), r"\1"),  # link -> its text
    (re.compile(r"\*\*(?=[^\s*])([^*]{1,300}?)(?<=\S)\*\*"), r"\1"),  # **bold** (not __bold__: it eats __init__)
    (re.compile(r"(?<![\w*])\*(?=[^\s*])([^*]{1,300}?)(?<=\S)\*(?![\w*])"), r"\1"),  # *italic*
    (re.compile(r"`([^`]{1,300})`"), r"\1"),  # `inline code`
]


def _md_inline(text: str) -> str:
    for pattern, replacement in _MD_INLINE:
        text = pattern.sub(replacement, text)
    return text


def _md_heading_text(text: str) -> str:
    """Drop the optional closing #'s of "## Title ##" (string ops: no regex backtracking)."""
    text = text.rstrip()
    without = text.rstrip("#")
    if without != text and (not without or without[-1] in " \t"):
        return without.rstrip()
    return text


def _md_front_matter(lines: list[str]) -> tuple[list[str], str]:
    """Drop a leading YAML front matter block; return its `title:` if any."""
    if not lines or lines[0].strip() != "---":
        return lines, ""
    for end in range(1, min(len(lines), 200)):
        if lines[end].strip() in ("---", "..."):
            title = ""
            for line in lines[1:end]:
                key, _, value = line.partition(":")
                if key.strip().lower() == "title":
                    title = value.strip().strip("'\"")
            return lines[end + 1 :], title
    return lines, ""


def _parse_markdown(filename: str, data: bytes) -> ParsedDocument:
    lines, meta_title = _md_front_matter(_decode_text(filename, data).splitlines())
    blocks = _Blocks()
    paragraph: list[str] = []
    fence: str | None = None
    code: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.add(_md_inline(" ".join(paragraph)))
            paragraph.clear()

    for line in lines:
        if fence is not None:  # inside a fenced code block: '#' lines are comments, not headings
            if line.strip().startswith(fence):
                blocks.add("\n".join(code))
                code, fence = [], None
            else:
                code.append(line)
            continue
        if match := _MD_FENCE.match(line):
            flush()
            fence = match.group(1)[:3]
            continue
        if not line.strip():
            flush()
            continue
        if match := _MD_ATX.match(line):
            flush()
            blocks.add(_md_inline(_md_heading_text(match.group(2) or "")), heading=True)
            continue
        if paragraph and _MD_SETEXT.match(line):
            blocks.add(_md_inline(" ".join(paragraph)), heading=True)  # "Title\n=====" style
            paragraph.clear()
            continue
        if _MD_RULE.match(line) or ("|" in line and _MD_TABLE_SEP.match(line)):
            flush()
            continue
        stripped = line.strip()
        if stripped.startswith("|"):  # table row: one block per row
            flush()
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            blocks.add(_md_inline(" | ".join(c for c in cells if c)))
            continue
        if _MD_LIST_ITEM.match(line):  # each list item is its own block
            flush()
            line = _MD_LIST_ITEM.sub("", line, count=1)
        line = re.sub(r"^\s*(>\s?)+", "", line)  # blockquote markers
        paragraph.append(line)
    flush()
    if code:  # unclosed fence
        blocks.add("\n".join(code))
    return ParsedDocument(title=meta_title or blocks.first_heading() or _stem(filename), blocks=blocks.items)


# --------------------------------------------------------------------------- plain text


def _parse_text(filename: str, data: bytes) -> ParsedDocument:
    blocks = _Blocks()
    for paragraph in _paragraphs(_decode_text(filename, data)):
        blocks.add(paragraph)
    return ParsedDocument(title=_stem(filename), blocks=blocks.items)


# --------------------------------------------------------------------------- DOCX


def _parse_docx(filename: str, data: bytes) -> ParsedDocument:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    blocks = _Blocks()
    with _ooxml(filename, data, "DOCX", PackageNotFoundError):
        document = docx.Document(io.BytesIO(data))
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                for row in _docx_rows(item):
                    blocks.add(row)
            else:
                blocks.add(item.text, heading=_docx_is_heading(item))
        title = _clean(document.core_properties.title) or blocks.first_heading()
    return ParsedDocument(title=title or _stem(filename), blocks=blocks.items)


def _docx_is_heading(paragraph: Any) -> bool:
    try:
        name = paragraph.style.name if paragraph.style is not None else ""
    except Exception:
        return False
    return bool(name) and name.startswith(("Heading", "Title"))


def _docx_rows(table: Any) -> Iterator[str]:
    for row in table.rows:
        texts: list[str] = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:  # a merged cell is listed once per grid column it spans
                continue
            previous = cell._tc
            text = _clean(cell.text)
            if text:
                texts.append(text)
        yield " | ".join(texts)


# --------------------------------------------------------------------------- PPTX


def _parse_pptx(filename: str, data: bytes) -> ParsedDocument:
    import pptx
    from pptx.exc import PackageNotFoundError

    blocks = _Blocks()
    first_title = ""
    with _ooxml(filename, data, "PPTX", PackageNotFoundError):
        presentation = pptx.Presentation(io.BytesIO(data))
        slides = list(presentation.slides)
        for number, slide in enumerate(slides, start=1):
            slide_title = _pptx_slide(slide, number, blocks)
            first_title = first_title or slide_title
        title = _clean(presentation.core_properties.title) or first_title
    return ParsedDocument(title=title or _stem(filename), blocks=blocks.items, page_count=max(len(slides), 1))


def _pptx_slide(slide: Any, number: int, blocks: _Blocks) -> str:
    """Add one slide's blocks (title, text frames, tables, notes); return its title."""
    title_shape = slide.shapes.title
    title = ""
    if title_shape is not None and title_shape.has_text_frame:
        title = _clean(title_shape.text_frame.text)
        blocks.add(title, page=number, heading=True)
    for shape in _pptx_shapes(slide.shapes):
        if title_shape is not None and shape.shape_id == title_shape.shape_id:
            continue
        if getattr(shape, "has_text_frame", False):
            for paragraph in shape.text_frame.paragraphs:
                blocks.add(paragraph.text, page=number)
        elif getattr(shape, "has_table", False):
            for row in shape.table.rows:
                blocks.add(" | ".join(t for t in (_clean(c.text) for c in row.cells) if t), page=number)
    if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
        for paragraph in slide.notes_slide.notes_text_frame.paragraphs:
            blocks.add(paragraph.text, page=number)
    return title


def _pptx_shapes(shapes: Iterable[Any]) -> Iterator[Any]:
    """Shapes in order, descending into groups."""
    from pptx.shapes.group import GroupShape

    for shape in shapes:
        if isinstance(shape, GroupShape):
            yield from _pptx_shapes(shape.shapes)
        else:
            yield shape


# --------------------------------------------------------------------------- e-mail


def _parse_eml(filename: str, data: bytes) -> ParsedDocument:
    message = BytesParser(policy=policy.default).parsebytes(data)
    headers = {name: _header(message, name) for name in ("from", "to", "cc", "date", "subject")}
    if not any(headers.values()) and not message.get("message-id"):
        raise ParseError(filename, "not an e-mail message (no From/To/Date/Subject headers)")
    blocks = _Blocks()
    blocks.add(" / ".join(f"{name.capitalize()}: {value}" for name, value in headers.items()
                          if value and name != "subject"))

    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        text = _part_text(body)
        if body.get_content_subtype() == "html":
            _check_html_size(filename, text)
            for block in _html_blocks(text)[0]:
                blocks.add(block.text, heading=block.heading)
        else:
            for paragraph in _paragraphs(text):
                blocks.add(paragraph)

    attachments = [
        _clean(part.get_filename()) or "(unnamed)"
        for part in message.walk()
        if part is not body and (part.is_attachment() or part.get_filename())
    ]
    metadata: dict[str, Any] = {name: value for name, value in headers.items() if value}
    metadata["attachments"] = attachments
    return ParsedDocument(title=headers["subject"] or _stem(filename), blocks=blocks.items, metadata=metadata)


def _header(message: Message, name: str) -> str:
    try:
        values = message.get_all(name) or []
        return _clean(", ".join(str(v) for v in values))
    except Exception:  # malformed header the policy cannot parse: fall back to the raw value
        raw = [v for k, v in message.raw_items() if k.lower() == name]
        return _clean(", ".join(str(v) for v in raw))


def _part_text(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content.replace("\x00", "")
    except Exception:  # unknown charset or broken transfer encoding
        pass
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return _decode_8bit(payload).replace("\x00", "")
    return ""


# --------------------------------------------------------------------------- CSV / XLSX


def _row_text(columns: list[str], values: Iterable[Any]) -> str:
    """"col1: v1; col2: v2" for non-empty values, so that every row describes itself."""
    parts = []
    for column, value in zip(columns, values):
        value = _clean("" if value is None else str(value))
        if not value or value.lower() == "nan":
            continue
        parts.append(value if column.startswith("Unnamed:") or not column else f"{column}: {value}")
    return "; ".join(parts)


def _csv_delimiter(text: str) -> str:
    """Comma, semicolon, tab or pipe: ask csv.Sniffer, else count them in the header line."""
    try:
        return csv.Sniffer().sniff(text[:16384], delimiters=",;\t|").delimiter
    except csv.Error:  # e.g. a few inconsistent lines in the sample
        header = next((line for line in text.splitlines() if line.strip()), "")
        counts = {d: header.count(d) for d in ",;\t|"}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def _parse_csv(filename: str, data: bytes) -> ParsedDocument:
    """One block per row. Ragged rows are read, not dropped: a short row has fewer fields, and the
    extra fields of a long row are kept under "column N" (the csv module, since pandas drops them)."""
    text = _decode_text(filename, data)
    delimiter = _csv_delimiter(text)
    if csv.field_size_limit() < CSV_MAX_FIELD_CHARS:  # process-wide, but only ever raised
        csv.field_size_limit(CSV_MAX_FIELD_CHARS)
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if any(
            cell.strip() for cell in row)]
    except csv.Error as exc:
        raise ParseError(filename, f"not a readable CSV: {_short(exc)}") from exc
    if not rows:
        raise ParseError(filename, NO_TEXT)
    header, records = [_clean(c) for c in rows[0]], rows[1:]
    if not records:
        raise ParseError(filename, "CSV has a header row but no data rows")
    width = max(len(row) for row in records)
    columns = header + [f"column {n}" for n in range(len(header) + 1, width + 1)]
    blocks = _Blocks()
    for row in records:
        blocks.add(_row_text(columns, row))
    return ParsedDocument(
        title=_stem(filename),
        blocks=blocks.items,
        metadata={
            "columns": header,
            "rows": len(records),
            "skipped_lines": 0,  # kept for readers of older reports: no line is skipped any more
            "ragged_rows": sum(1 for row in records if len(row) != len(header)),
        },
    )


def _parse_xlsx(filename: str, data: bytes) -> ParsedDocument:
    import pandas as pd
    from openpyxl.utils.exceptions import InvalidFileException

    with _ooxml(filename, data, "XLSX", InvalidFileException):
        compact = _xlsx_without_empty_cells(filename, data)
        sheets = pd.read_excel(
            io.BytesIO(compact), sheet_name=None, dtype=str, keep_default_na=False, engine="openpyxl"
        )
    blocks = _Blocks()
    for number, (name, frame) in enumerate(sheets.items(), start=1):
        columns = [_clean(str(c)) for c in frame.columns]
        rows = [_row_text(columns, values) for values in frame.fillna("").itertuples(index=False, name=None)]
        rows = [row for row in rows if row]
        if not rows and all(c.startswith("Unnamed:") for c in columns):
            continue  # empty sheet
        blocks.add(str(name), page=number, heading=True)
        if not rows:  # a sheet with a single row: pandas read it as the header
            blocks.add("; ".join(c for c in columns if not c.startswith("Unnamed:")), page=number)
        for row in rows:
            blocks.add(row, page=number)
    return ParsedDocument(
        title=_stem(filename),
        blocks=blocks.items,
        page_count=max(len(sheets), 1),
        metadata={"sheets": [str(name) for name in sheets]},
    )


# A cell without a value is a self-closing <c .../> (formatting only; values, inline strings and
# formulas are child elements). Sheets formatted down to row 1,048,576 hold millions of them.
_XLSX_EMPTY_CELL = re.compile(rb"<(?:\w+:)?c\b[^<>]*/>")
_XLSX_EMPTY_ROW = re.compile(rb"<(?:\w+:)?row\b[^<>]*/>|<((?:\w+:)?row)\b[^<>]*>\s*</\1>")
# The declared size ("A1:XFD1048576") is what the reader pads every row to: dropped, it counts.
_XLSX_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\b[^<>]*/>")
_XLSX_CELL = re.compile(rb"<(?:\w+:)?c[\s>]")


def _xlsx_without_empty_cells(filename: str, data: bytes) -> bytes:
    """The workbook with its value-less cells, empty rows and declared dimensions removed.

    openpyxl creates a Python object per cell, empty or not (about 5 s per million here), and pandas
    then pads rows to the declared width; text extraction needs neither. The result is re-zipped
    stored (not compressed): it is read once, right away. Raises ParseError past XLSX_MAX_CELLS."""
    cells = 0
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for member in source.infolist():
            content = source.read(member)
            if member.filename.startswith("xl/worksheets/") and member.filename.endswith(".xml"):
                content = _XLSX_EMPTY_CELL.sub(b"", content)
                content = _XLSX_EMPTY_ROW.sub(b"", content)
                content = _XLSX_DIMENSION.sub(b"", content)
                cells += sum(1 for _ in _XLSX_CELL.finditer(content))
                if cells > XLSX_MAX_CELLS:
                    raise ParseError(filename, f"XLSX has more than {XLSX_MAX_CELLS:,} cells with values; "
                                               "export the sheets to index as CSV, or split the workbook")
            target.writestr(member.filename, content)
    return out.getvalue()


_PARSERS: dict[str, Callable[[str, bytes], ParsedDocument]] = {
    ".pdf": _parse_pdf,
    ".html": _parse_html,
    ".htm": _parse_html,
    ".md": _parse_markdown,
    ".markdown": _parse_markdown,
    ".txt": _parse_text,
    ".text": _parse_text,
    ".docx": _parse_docx,
    ".pptx": _parse_pptx,
    ".eml": _parse_eml,
    ".csv": _parse_csv,
    ".xlsx": _parse_xlsx,
}
assert set(_PARSERS) == SUPPORTED_SUFFIXES
