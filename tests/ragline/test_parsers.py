"""ragline.parsers: every format yields real text, and every broken file a ParseError.

All fixtures are built here, in memory, so the tests need no files and no network.
"""

from __future__ import annotations

import importlib.util
import io
import random
import socket
import time
import zipfile
from email.message import EmailMessage

import docx
import pandas as pd
import pptx
import pytest
from fpdf import FPDF
from fpdf.enums import EncryptionMethod
from pptx.util import Inches

from ragline.errors import ParseError
from ragline.parsers import NO_TEXT, SUPPORTED_SUFFIXES, is_supported, parse

# --------------------------------------------------------------------------- fixture builders


def make_pdf(
    pages: list[list[str]],
    title: str | None = None,
    user_password: str | None = None,
    encryption_method: EncryptionMethod = EncryptionMethod.RC4,
) -> bytes:
    pdf = FPDF()
    if title:
        pdf.set_title(title)
    if user_password is not None:
        pdf.set_encryption(
            owner_password="owner-secret", user_password=user_password, encryption_method=encryption_method
        )
    pdf.set_font("Helvetica", size=12)
    for lines in pages:
        pdf.add_page()
        for line in lines:
            if line:
                pdf.cell(text=line)
            pdf.ln(10)
    return bytes(pdf.output())


def make_docx() -> bytes:
    document = docx.Document()
    document.add_heading("Quarterly Report", level=0)  # style "Title"
    document.add_heading("Revenue", level=1)
    document.add_paragraph("Revenue grew   by twelve percent.")
    table = document.add_table(rows=2, cols=3)
    for i, text in enumerate(["Region", "Q1", "Q2"]):
        table.cell(0, i).text = text
    for i, text in enumerate(["North", "10", "12"]):
        table.cell(1, i).text = text
    document.add_heading("Outlook", level=2)
    document.add_paragraph("Stable demand expected.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_pptx() -> bytes:
    presentation = pptx.Presentation()
    slide = presentation.slides.add_slide(presentation.slide_layouts[1])  # title + content
    slide.shapes.title.text = "Roadmap"
    slide.placeholders[1].text_frame.text = "Ship the ingestion pipeline"
    slide.notes_slide.notes_text_frame.text = "Speaker note about budgets"
    slide = presentation.slides.add_slide(presentation.slide_layouts[5])  # title only
    slide.shapes.title.text = "Risks"
    box = slide.shapes.add_textbox(Inches(1), Inches(2), Inches(5), Inches(1))
    box.text_frame.text = "Vendor lock-in"
    rows = slide.shapes.add_table(2, 2, Inches(1), Inches(3), Inches(4), Inches(1)).table
    rows.cell(0, 0).text, rows.cell(0, 1).text = "Risk", "Owner"
    rows.cell(1, 0).text, rows.cell(1, 1).text = "Outage", "Ops"
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


def make_eml(html_only: bool = False, attachment: bool = True) -> bytes:
    message = EmailMessage()
    message["From"] = "Alice Example <alice@example.com>"
    message["To"] = "bob@example.com"
    message["Date"] = "Tue, 02 Jan 2024 10:00:00 +0000"
    message["Subject"] = "Migration plan"
    if html_only:
        message.set_content(
            "<html><body><h2>Plan</h2><p>Move the cluster on Friday.</p></body></html>", subtype="html"
        )
    else:
        message.set_content("Hi Bob,\n\nMove the cluster on Friday.\n\nAlice")
        message.add_alternative("<p>HTML twin that should not be used</p>", subtype="html")
    if attachment:
        message.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="plan.pdf")
    return message.as_bytes()


def make_xlsx() -> bytes:
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        pd.DataFrame({"name": ["Ada", None, "Linus"], "lang": ["Ada", None, "C"]}).to_excel(
            writer, sheet_name="People", index=False
        )
        pd.DataFrame({"city": ["Oslo"], "pop": [709000]}).to_excel(writer, sheet_name="Cities", index=False)
    return buffer.getvalue()


HTML = b"""<!doctype html><html><head><title>Team Handbook</title>
<style>body { color: red }</style><script>var secret = "tracking";</script></head>
<body><nav><a href="/">Home menu</a></nav>
<h1>Welcome</h1><p>First   paragraph with <b>bold</b> text.</p>
<ul><li>Item one</li><li>Item two</li></ul>
<table><tr><th>Tool</th><th>Use</th></tr><tr><td>Git</td><td>versioning</td></tr></table>
<blockquote>Quoted wisdom</blockquote><pre>code   block</pre>
<noscript>enable js</noscript><template><p>hidden template</p></template>
<!-- a comment --></body></html>"""

MARKDOWN = b"""# Install Guide

Run the installer
and wait.

```bash
# not a heading: a shell comment
make install
```

## Configure

- set **HOST**
- set [PORT](http://example.com)
"""


def sample_files() -> dict[str, bytes]:
    """One valid file of every supported format."""
    return {
        "doc.pdf": make_pdf([["Hello PDF"]]),
        "doc.html": HTML,
        "doc.htm": HTML,
        "doc.md": MARKDOWN,
        "doc.markdown": MARKDOWN,
        "doc.txt": b"plain text file",
        "doc.text": b"plain text file",
        "doc.docx": make_docx(),
        "doc.pptx": make_pptx(),
        "doc.eml": make_eml(),
        "doc.csv": b"a,b\n1,2\n",
        "doc.xlsx": make_xlsx(),
    }


def texts(doc) -> list[str]:
    return [b.text for b in doc.blocks]


# --------------------------------------------------------------------------- dispatch


def test_supported_suffixes_and_dispatch_is_case_insensitive():
    assert SUPPORTED_SUFFIXES == {
        ".pdf", ".html", ".htm", ".md", ".markdown", ".txt", ".text",
        ".docx", ".pptx", ".eml", ".csv", ".xlsx",
    }
    assert is_supported("a/b/Report.PDF")
    assert is_supported("notes.Markdown")
    assert not is_supported("image.png")
    assert not is_supported("README")
    assert texts(parse("NOTES.TXT", b"hello")) == ["hello"]


def test_every_sample_parses():
    for name, data in sample_files().items():
        doc = parse(name, data)
        assert doc.blocks, name
        assert doc.title, name


@pytest.mark.parametrize("name", ["x.exe", "archive.tar.gz", "noextension"])
def test_unsupported_suffix(name):
    with pytest.raises(ParseError) as info:
        parse(name, b"data")
    assert info.value.name == name
    assert "unsupported" in info.value.reason or "no extension" in info.value.reason


@pytest.mark.parametrize("suffix", sorted(SUPPORTED_SUFFIXES))
def test_zero_byte_file_of_each_format(suffix):
    with pytest.raises(ParseError) as info:
        parse("empty" + suffix, b"")
    assert "empty" in info.value.reason


@pytest.mark.parametrize("suffix", sorted(SUPPORTED_SUFFIXES))
def test_whitespace_only_file_has_no_text(suffix):
    with pytest.raises(ParseError):
        parse("blank" + suffix, b"   \n\n  \t \n")


def test_damaged_files_only_ever_raise_parse_error():
    """Truncations and byte flips of every format: a ParsedDocument or a ParseError, nothing else."""
    rng = random.Random(1234)
    for name, data in sample_files().items():
        variants = [data[: len(data) * k // 5] for k in range(1, 5)]
        for _ in range(4):
            mutated = bytearray(data)
            for _ in range(10):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            variants.append(bytes(mutated))
        for variant in variants:
            try:
                parse(name, variant)
            except ParseError as exc:
                assert exc.reason, name


# --------------------------------------------------------------------------- PDF


def test_pdf_one_block_per_line_with_page_numbers():
    pages = [["ACME Corp confidential", f"Page {n} talks about topic{n}", "Footer line"] for n in (1, 2, 3)]
    doc = parse("report.pdf", make_pdf(pages, title="Annual Report"))
    assert doc.page_count == 3
    assert doc.title == "Annual Report"
    by_page = {n: [b.text for b in doc.blocks if b.page == n] for n in (1, 2, 3)}
    for n in (1, 2, 3):
        assert by_page[n] == ["ACME Corp confidential", f"Page {n} talks about topic{n}", "Footer line"]
    assert not any(b.heading for b in doc.blocks)


def test_pdf_title_falls_back_to_first_line():
    doc = parse("x.pdf", make_pdf([["", "  Introduction to widgets  ", "body"]]))
    assert doc.title == "Introduction to widgets"
    assert doc.blocks[0].text == "Introduction to widgets"


def test_pdf_without_text_is_reported():
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50)  # drawing only, like a scanned page
    with pytest.raises(ParseError) as info:
        parse("scan.pdf", bytes(pdf.output()))
    assert info.value.reason == NO_TEXT


ENCRYPTIONS = [
    EncryptionMethod.RC4,
    # pypdf decrypts AES only with the `cryptography` package
    pytest.param(EncryptionMethod.AES_256, marks=pytest.mark.skipif(
        importlib.util.find_spec("cryptography") is None, reason="cryptography not installed")),
]


@pytest.mark.parametrize("method", ENCRYPTIONS)
def test_pdf_encrypted_with_user_password(method):
    data = make_pdf([["Top secret"]], user_password="hunter2", encryption_method=method)
    with pytest.raises(ParseError) as info:
        parse("locked.pdf", data)
    assert "encrypted" in info.value.reason


@pytest.mark.parametrize("method", ENCRYPTIONS)
def test_pdf_encrypted_with_empty_user_password_opens(method):
    data = make_pdf([["Readable anyway"], ["second page"]], user_password="", encryption_method=method)
    doc = parse("owner-only.pdf", data)
    assert texts(doc) == ["Readable anyway", "second page"]
    assert [b.page for b in doc.blocks] == [1, 2]
    assert doc.metadata["encrypted"] is True


def test_pdf_truncated():
    data = make_pdf([["some text"]] * 3)
    with pytest.raises(ParseError) as info:
        parse("cut.pdf", data[: len(data) // 2])
    assert info.value.reason.startswith("PDF is damaged: ")


def test_not_a_pdf():
    with pytest.raises(ParseError) as info:
        parse("fake.pdf", b"<html>this is not a pdf</html>")
    assert "not a PDF" in info.value.reason


# --------------------------------------------------------------------------- HTML


def test_html_structure():
    doc = parse("handbook.html", HTML)
    assert doc.title == "Team Handbook"
    assert doc.blocks[0].text == "Welcome" and doc.blocks[0].heading
    assert texts(doc) == [
        "Welcome",
        "First paragraph with bold text.",
        "Item one",
        "Item two",
        "Tool | Use",
        "Git | versioning",
        "Quoted wisdom",
        "code block",
    ]
    assert [b.heading for b in doc.blocks].count(True) == 1
    for dropped in ("tracking", "color", "Home menu", "enable js", "hidden template", "comment"):
        assert dropped not in doc.text


def test_html_title_falls_back_to_h1_and_nested_blocks_are_not_duplicated():
    data = b"<div><h1>Main <i>Topic</i></h1><div>Intro <p>inner para</p> tail</div>" \
        b"<ul><li>outer<ul><li>inner item</li></ul></li></ul>" \
        b"<table><tr><td>a<table><tr><td>nested</td></tr></table></td><td>b</td></tr></table></div>"
    doc = parse("page.htm", data)
    assert doc.title == "Main Topic"
    assert texts(doc) == ["Main Topic", "Intro", "inner para", "tail", "outer", "inner item", "a nested | b"]
    assert doc.text.count("inner para") == 1


# Time limits below are in CPU seconds (time.process_time) of this process: a machine busy with
# other work slows the wall clock several-fold, but not the work these tests measure.


def test_html_large_document_is_linear():
    paragraph = b"<p>Lorem ipsum dolor sit amet, <b>consectetur</b> adipiscing elit.</p>\n"
    nested = b"<div>" * 200 + b"deep text" + b"</div>" * 200
    data = b"<html><body><h1>Big</h1>" + paragraph * 40_000 + nested + b"</body></html>"  # ~3 MB
    start = time.process_time()
    doc = parse("big.html", data)
    elapsed = time.process_time() - start
    assert len(doc.blocks) == 40_002
    assert doc.blocks[-1].text == "deep text"
    assert elapsed < 8, elapsed


# --------------------------------------------------------------------------- Markdown


def test_markdown_structure():
    doc = parse("guide.md", MARKDOWN)
    assert doc.title == "Install Guide"
    headings = [b.text for b in doc.blocks if b.heading]
    assert headings == ["Install Guide", "Configure"]
    assert "Run the installer and wait." in texts(doc)
    assert "# not a heading: a shell comment make install" in texts(doc)
    assert "set HOST" in texts(doc) and "set PORT" in texts(doc)


def test_markdown_without_heading_uses_filename_stem():
    doc = parse("docs/release-notes.markdown", b"Setext Title\n\nJust text.\n")
    assert doc.title == "release-notes"
    doc = parse("x.md", b"Setext Title\n============\n\nbody\n")
    assert doc.title == "Setext Title" and doc.blocks[0].heading


# --------------------------------------------------------------------------- plain text


def test_text_paragraphs_and_whitespace():
    doc = parse("notes.txt", b"First line\nsame   paragraph\r\n\r\n\n  Second\tparagraph \x00here\n")
    assert texts(doc) == ["First line same paragraph", "Second paragraph here"]
    assert doc.title == "notes"


@pytest.mark.parametrize(
    "data",
    [
        "Café naïve – “quoted”".encode("utf-8"),
        "\ufeffCafé naïve – “quoted”".encode("utf-8"),
        "Café naïve – “quoted”".encode("utf-16"),  # with BOM
        "Café naïve – “quoted”".encode("utf-16-le"),  # no BOM
        "Café naïve – “quoted”".encode("cp1252"),
    ],
)
def test_text_encodings(data):
    assert texts(parse("enc.txt", data)) == ["Café naïve – “quoted”"]


def test_text_latin1_fallback_never_crashes():
    doc = parse("odd.text", b"abc \x81\x8d def")  # bytes cp1252 leaves undefined
    assert doc.blocks[0].text.startswith("abc")


@pytest.mark.parametrize(
    "data",
    [random.Random(7).randbytes(4096), b"\x00\x01\x02\x03" * 100, b"\x89PNG\r\n\x1a\nrest"],
)
def test_binary_garbage_txt(data):
    with pytest.raises(ParseError) as info:
        parse("garbage.txt", data)
    assert "binary data, not text" in info.value.reason


# --------------------------------------------------------------------------- DOCX


def test_docx_structure():
    doc = parse("report.docx", make_docx())
    assert doc.title == "Quarterly Report"
    assert [(b.text, b.heading) for b in doc.blocks] == [
        ("Quarterly Report", True),
        ("Revenue", True),
        ("Revenue grew by twelve percent.", False),
        ("Region | Q1 | Q2", False),
        ("North | 10 | 12", False),
        ("Outlook", True),
        ("Stable demand expected.", False),
    ]


def test_docx_not_a_zip():
    with pytest.raises(ParseError) as info:
        parse("fake.docx", b"This is plain text, not a Word document.")
    assert "not a valid DOCX (not a zip archive" in info.value.reason


def test_docx_that_is_another_office_format():
    with pytest.raises(ParseError) as info:
        parse("actually-excel.docx", make_xlsx())
    assert info.value.reason == "not a valid DOCX: it is really a .xlsx file; rename it"
    with pytest.raises(ParseError) as info:
        parse("some.pptx", _zip({"hello.txt": "hi"}))
    assert "not a valid PPTX" in info.value.reason


def test_ooxml_with_broken_part_is_a_parse_error():
    with pytest.raises(ParseError) as info:
        parse("broken.docx", _zip({"[Content_Types].xml": "<not xml", "word/document.xml": "<w:document"}))
    assert info.value.reason.startswith("not a valid DOCX:")


def _zip(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_docx_legacy_or_password_protected():
    with pytest.raises(ParseError) as info:
        parse("old.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512)
    assert "password-protected" in info.value.reason


# --------------------------------------------------------------------------- PPTX


def test_pptx_slides_are_pages():
    doc = parse("deck.pptx", make_pptx())
    assert doc.page_count == 2
    assert doc.title == "Roadmap"
    assert [(b.text, b.page, b.heading) for b in doc.blocks] == [
        ("Roadmap", 1, True),
        ("Ship the ingestion pipeline", 1, False),
        ("Speaker note about budgets", 1, False),
        ("Risks", 2, True),
        ("Vendor lock-in", 2, False),
        ("Risk | Owner", 2, False),
        ("Outage | Ops", 2, False),
    ]


def test_pptx_not_a_zip():
    with pytest.raises(ParseError) as info:
        parse("deck.pptx", b"not a presentation")
    assert "not a valid PPTX" in info.value.reason


# --------------------------------------------------------------------------- e-mail


def test_eml_plain_body_headers_and_attachments():
    doc = parse("mail.eml", make_eml())
    assert doc.title == "Migration plan"
    assert doc.blocks[0].text == (
        "From: Alice Example <alice@example.com> / To: bob@example.com / Date: Tue, 02 Jan 2024 10:00:00 +0000"
    )
    assert texts(doc)[1:] == ["Hi Bob,", "Move the cluster on Friday.", "Alice"]
    assert "HTML twin" not in doc.text
    assert doc.metadata["attachments"] == ["plan.pdf"]
    assert doc.metadata["subject"] == "Migration plan"
    assert doc.metadata["from"] == "Alice Example <alice@example.com>"
    assert doc.metadata["to"] == "bob@example.com"
    assert doc.metadata["date"].startswith("Tue, 02 Jan 2024")


def test_eml_html_only_body():
    doc = parse("mail.eml", make_eml(html_only=True, attachment=False))
    assert [(b.text, b.heading) for b in doc.blocks[1:]] == [("Plan", True), ("Move the cluster on Friday.", False)]
    assert doc.metadata["attachments"] == []


def test_eml_that_is_not_an_email():
    with pytest.raises(ParseError) as info:
        parse("x.eml", b"just some words\nand more words\n")
    assert "not an e-mail" in info.value.reason


# --------------------------------------------------------------------------- CSV / XLSX


def test_csv_rows_describe_themselves():
    data = b"name,role,notes\nAda,engineer,\"likes, commas\"\nGrace,admiral,\n"
    doc = parse("staff.csv", data)
    assert doc.title == "staff"
    assert texts(doc) == ["name: Ada; role: engineer; notes: likes, commas", "name: Grace; role: admiral"]
    assert doc.metadata["columns"] == ["name", "role", "notes"]


def test_csv_semicolons_latin1_and_ragged_rows_are_kept():
    data = "ville;pays\nMontréal;Canada\nLyon;France;extra\nNîmes\n".encode("latin-1")
    doc = parse("villes.csv", data)
    assert texts(doc) == ["ville: Montréal; pays: Canada", "ville: Lyon; pays: France; column 3: extra", "ville: Nîmes"]
    assert doc.metadata["skipped_lines"] == 0 and doc.metadata["ragged_rows"] == 2


def test_csv_header_only():
    with pytest.raises(ParseError) as info:
        parse("h.csv", b"a,b,c\n")
    assert "no data rows" in info.value.reason


def test_xlsx_sheets_are_pages():
    doc = parse("book.xlsx", make_xlsx())
    assert doc.page_count == 2
    assert doc.title == "book"
    assert [(b.text, b.page, b.heading) for b in doc.blocks] == [
        ("People", 1, True),
        ("name: Ada; lang: Ada", 1, False),
        ("name: Linus; lang: C", 1, False),
        ("Cities", 2, True),
        ("city: Oslo; pop: 709000", 2, False),
    ]


def test_xlsx_not_a_zip():
    with pytest.raises(ParseError) as info:
        parse("book.xlsx", b"a,b\n1,2\n")
    assert "not a valid XLSX" in info.value.reason


# --------------------------------------------------------------------------- offline


def test_parsing_opens_no_network_connection(monkeypatch):
    files = sample_files()  # build fixtures before the network is cut

    def refuse(*args, **kwargs):
        raise AssertionError("parser tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name, data in files.items():
        assert parse(name, data).blocks, name
    assert {name[name.rindex("."):] for name in files} == SUPPORTED_SUFFIXES


# --------------------------------------------------------------------------- hostile input (issue 7)


def _stream_zip(members: dict[str, tuple[bytes, int]]) -> bytes:
    """A zip whose members are `chunk` repeated `times` times, streamed (never whole in memory)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, (chunk, times) in members.items():
            with archive.open(name, "w", force_zip64=True) as member:
                for _ in range(times):
                    member.write(chunk)
    return buffer.getvalue()


DOCX_SHELL = {"[Content_Types].xml": (b"<Types/>", 1)}


@pytest.mark.parametrize("suffix", [".docx", ".pptx", ".xlsx"])
def test_a_zip_bomb_is_refused_before_anything_is_inflated(suffix):
    main = {".docx": "word/document.xml", ".pptx": "ppt/presentation.xml", ".xlsx": "xl/workbook.xml"}[suffix]
    data = _stream_zip({**DOCX_SHELL, main: (b"\0" * 1024 * 1024, 64)})  # 64 MiB of zeros in ~64 KiB
    start = time.process_time()
    with pytest.raises(ParseError) as info:
        parse("bomb" + suffix, data)
    assert time.process_time() - start < 1
    assert "looks like a zip bomb" in info.value.reason and main in info.value.reason and "64 MiB" in info.value.reason


def test_zip_limits_on_total_size_part_size_and_part_count(monkeypatch):
    from ragline import parsers

    # Real limits are 1 GiB / 256 MiB / 10,000 parts; lowered here so the archives stay small.
    monkeypatch.setattr(parsers, "ZIP_MAX_TOTAL_BYTES", 3 * 1024 * 1024)
    monkeypatch.setattr(parsers, "ZIP_MAX_XML_PART_BYTES", 1024 * 1024)
    monkeypatch.setattr(parsers, "ZIP_MAX_MEMBERS", 50)
    noise = random.Random(5).randbytes(1024 * 1024)  # incompressible: no ratio alarm
    total = _stream_zip({**DOCX_SHELL, "word/document.xml": (b"<w/>", 1), "word/media/a.bin": (noise, 4)})
    with pytest.raises(ParseError, match=r"zip bomb: its parts inflate to 4 MiB, more than the limit of 3 MiB"):
        parse("big.docx", total)
    part = _stream_zip({**DOCX_SHELL, "word/document.xml": (noise, 2)})
    with pytest.raises(ParseError, match=r"word/document.xml inflates to 2 MiB, more than the limit of 1 MiB"):
        parse("part.docx", part)
    many = _stream_zip({**DOCX_SHELL, **{f"word/p{i}.xml": (b"<p/>", 1) for i in range(60)}})
    with pytest.raises(ParseError, match=r"holds 61 parts, more than the limit of 50"):
        parse("many.docx", many)


def test_html_with_too_many_tags_is_refused_quickly_and_a_big_page_with_few_tags_is_read():
    from ragline.parsers import HTML_MAX_TAGS

    tags = b"<html><body>" + b"<i>w</i>" * (HTML_MAX_TAGS // 2 + 1) + b"</body></html>"
    start = time.process_time()
    with pytest.raises(ParseError) as info:
        parse("tags.html", tags)
    assert time.process_time() - start < 1
    assert "tags, more than the limit of" in info.value.reason
    one_line = b"<p>Visible words.</p><img src=\"data:image/png;base64," + b"QUJD" * 5_000_000 + b"\">"  # 20 MB line
    assert texts(parse("one-line.html", one_line)) == ["Visible words."]


def test_deeply_nested_html_is_read():
    data = b"<div>" * 100_000 + b"<p>at the bottom</p>" + b"</div>" * 100_000
    assert texts(parse("deep.html", data)) == ["at the bottom"]


def test_mixed_encodings_are_read_line_by_line():
    data = "réunion à midi\n".encode() + "café crème\n".encode("cp1252") + "naïve\n".encode()
    assert texts(parse("mixed.txt", data)) == ["réunion à midi café crème naïve"]


def test_nul_padded_text_is_text_and_nuls_are_removed():
    data = b"log line\x00 one\n" + bytes(100_000)
    assert texts(parse("padded.txt", data)) == ["log line one"]
    with pytest.raises(ParseError, match="only NUL bytes"):
        parse("zeros.txt", bytes(100_000))


def _sheet_xlsx(sheet_xml: bytes) -> bytes:
    from tests.hardening.hostile import (
        _XLSX_CONTENT_TYPES,
        _XLSX_RELS,
        _XLSX_STYLES,
        _XLSX_WORKBOOK,
        _XLSX_WORKBOOK_RELS,
    )

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in (("[Content_Types].xml", _XLSX_CONTENT_TYPES), ("_rels/.rels", _XLSX_RELS),
                           ("xl/workbook.xml", _XLSX_WORKBOOK), ("xl/_rels/workbook.xml.rels", _XLSX_WORKBOOK_RELS),
                           ("xl/styles.xml", _XLSX_STYLES)):
            archive.writestr(name, text)
        archive.writestr("xl/worksheets/sheet1.xml", sheet_xml)
    return buffer.getvalue()


def _sheet(dimension: str, rows: bytes) -> bytes:
    return (b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            + f'<dimension ref="{dimension}"/>'.encode() + b"<sheetData>" + rows + b"</sheetData></worksheet>")


def _cell(ref: str, text: str) -> bytes:
    return f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>'.encode()


def test_xlsx_with_a_million_empty_cells_and_a_huge_declared_size_is_read_quickly():
    empty_rows = b"".join(
        f'<row r="{r}">'.encode() + b"".join(f'<c r="{c}{r}" s="1"/>'.encode() for c in "ABCDEFGHIJ") + b"</row>"
        for r in range(3, 100_003)
    )  # 1,000,000 styled cells without values
    rows = (b'<row r="1">' + _cell("A1", "item") + _cell("B1", "owner") + b"</row>"
            + b'<row r="2">' + _cell("A2", "projector") + _cell("B2", "Sam") + b"</row>" + empty_rows)
    start = time.process_time()
    doc = parse("budget.xlsx", _sheet_xlsx(_sheet("A1:XFD1048576", rows)))  # claims 17 billion cells
    elapsed = time.process_time() - start
    assert texts(doc) == ["Budget", "item: projector; owner: Sam"]
    assert elapsed < 5, elapsed


def test_xlsx_over_the_cell_limit_is_refused(monkeypatch):
    from ragline import parsers

    monkeypatch.setattr(parsers, "XLSX_MAX_CELLS", 100)  # the real limit is 2,000,000 cells with values
    rows = b"".join(f'<row r="{r}">'.encode() + _cell(f"A{r}", "x") + _cell(f"B{r}", "y") + b"</row>"
                    for r in range(1, 52))
    with pytest.raises(ParseError, match=r"XLSX has more than 100 cells with values"):
        parse("wide.xlsx", _sheet_xlsx(_sheet("A1:B51", rows)))


def test_eml_with_a_broken_mime_tree_and_a_big_attachment_keeps_its_body():
    from tests.hardening.hostile import malformed_mime_eml

    doc = parse("broken.eml", malformed_mime_eml(2 * 1024 * 1024))
    assert "The datacenter migration window is Saturday from 02:00 to 06:00." in texts(doc)
    assert doc.metadata["attachments"] == ["dump.bin"]
