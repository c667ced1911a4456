"""A hostile corpus, built at test time: files that break parsers, each with the outcome it must have.

    cases = build_hostile_corpus(folder)   # writes every file, returns one HostileCase per kind

Nothing binary is committed: every file is generated here, deterministically (fixed seeds, fixed
dates), in well under a minute. Each case says what a sync of the folder must do with it:

- INDEXED: read and searchable; `phrase` is a piece of its text that must reach the index intact
  (so an encoding read wrongly, or NULs left in, shows up as a missing phrase);
- QUARANTINED: recorded as failed, with every `reason` substring in the failure reason;
- NO_TEXT: recorded as failed with the parsers' "no extractable text" reason, never as empty chunks;
- SKIPPED: passed over by the listing (`doc_id` is the name it reports, bad bytes as \\xNN), with
  every `reason` substring in the reported reason.
"""

from __future__ import annotations

import io
import os
import random
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import docx
from fpdf import FPDF
from fpdf.enums import EncryptionMethod
from PIL import Image, ImageDraw

INDEXED = "indexed"
QUARANTINED = "quarantined"
NO_TEXT = "no text"
SKIPPED = "skipped"

MiB = 1024 * 1024


@dataclass(frozen=True)
class HostileCase:
    kind: str  # what is wrong with it, in the words of the issue
    doc_id: str  # the path relative to the corpus root, as the listing (or its skipped list) names it
    outcome: str  # INDEXED | QUARANTINED | NO_TEXT | SKIPPED
    reason: tuple[str, ...] = ()  # substrings of the failure (or skip) reason, case-insensitive
    phrase: str = ""  # INDEXED: text that must be found in the document's chunks


# --------------------------------------------------------------------------- builders of single files


def pdf_bytes(lines: list[str], *, user_password: str | None = None) -> bytes:
    pdf = FPDF()
    pdf.set_creation_date(_FIXED_DATE)
    if user_password is not None:
        pdf.set_encryption(owner_password="owner-secret", user_password=user_password,
                           encryption_method=EncryptionMethod.RC4)
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    for line in lines:
        pdf.cell(text=line)
        pdf.ln(10)
    return bytes(pdf.output())


def image_only_pdf() -> bytes:
    """A 'scanned' page: a picture of text, no text layer."""
    picture = Image.new("RGB", (400, 120), "white")
    ImageDraw.Draw(picture).text((10, 40), "Scanned invoice 4711: total 99 EUR", fill="black")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    pdf = FPDF()
    pdf.set_creation_date(_FIXED_DATE)
    pdf.add_page()
    pdf.image(io.BytesIO(buffer.getvalue()), x=10, y=10, w=180)
    return bytes(pdf.output())


def broken_xref_pdf(lines: list[str]) -> bytes:
    """A valid PDF whose xref table and startxref point at the wrong offsets (a file edited by hand)."""
    data = pdf_bytes(lines)
    head, sep, tail = data.rpartition(b"xref\n")
    entries = tail.split(b"\n")
    garbage = [b"%010d 00000 n " % (9_000_000 + i) if e.endswith(b" n ") else e for i, e in enumerate(entries)]
    broken = head + sep + b"\n".join(garbage)
    start = broken.rindex(b"startxref\n") + len(b"startxref\n")
    end = broken.index(b"\n", start)
    return broken[:start] + b"123" + broken[end:]


def docx_bytes(paragraphs: list[str]) -> bytes:
    document = docx.Document()
    document.core_properties.created = document.core_properties.modified = _FIXED_DATE
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    saved = io.BytesIO()
    document.save(saved)
    fixed = io.BytesIO()  # python-docx stamps the zip entries with the time of saving: re-stamped
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(fixed, "w") as target:
        for info in source.infolist():
            target.writestr(_member(info.filename), source.read(info))
    return fixed.getvalue()


def zip_bomb_docx(path: Path, uncompressed: int = 512 * MiB) -> None:
    """A .docx whose document.xml inflates to `uncompressed` bytes from about a thousandth of that.

    Streamed to disk chunk by chunk, so building it never holds the inflated part in memory."""
    chunk = b"<w:p><w:r><w:t>bomb</w:t></w:r></w:p>" * (MiB // 38)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr(_member("[Content_Types].xml"), _DOCX_CONTENT_TYPES)
        archive.writestr(_member("_rels/.rels"), _DOCX_RELS)
        with archive.open(_member("word/document.xml"), "w", force_zip64=True) as member:
            member.write(b'<?xml version="1.0"?><w:document xmlns:w="' + _W_NS + b'"><w:body>')
            written = 0
            while written < uncompressed:
                member.write(chunk)
                written += len(chunk)
            member.write(b"</w:body></w:document>")


def xlsx_with_empty_cells(path: Path, rows: int, cols: int) -> None:
    """An XLSX of rows x cols cells that all exist but hold nothing (styled, as a spreadsheet that
    was formatted down to its last row leaves them), with one real value in A1 and one at the end."""
    letters = [_column_letter(c) for c in range(1, cols + 1)]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_member("[Content_Types].xml"), _XLSX_CONTENT_TYPES)
        archive.writestr(_member("_rels/.rels"), _XLSX_RELS)
        archive.writestr(_member("xl/workbook.xml"), _XLSX_WORKBOOK)
        archive.writestr(_member("xl/_rels/workbook.xml.rels"), _XLSX_WORKBOOK_RELS)
        archive.writestr(_member("xl/styles.xml"), _XLSX_STYLES)
        with archive.open(_member("xl/worksheets/sheet1.xml"), "w", force_zip64=True) as sheet:
            sheet.write(b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="' + _SS_NS + b'">'
                        + f'<dimension ref="A1:{letters[-1]}{rows}"/><sheetData>'.encode())
            for r in range(1, rows + 1):
                cells = []
                for c, letter in enumerate(letters):
                    if (r, c) in ((1, 0), (rows, 0)):
                        text = "Quarterly budget" if r == 1 else "Closing balance approved"
                        cells.append(f'<c r="{letter}{r}" t="inlineStr"><is><t>{text}</t></is></c>')
                    else:
                        cells.append(f'<c r="{letter}{r}" s="1"/>')
                sheet.write(f'<row r="{r}">{"".join(cells)}</row>'.encode())
            sheet.write(b"</sheetData></worksheet>")


def malformed_mime_eml(attachment_bytes: int) -> bytes:
    """A multipart e-mail whose outer boundary is never closed, with a part that declares a boundary
    it never uses, a bogus transfer encoding, and a huge base64 attachment."""
    message = EmailMessage()
    message["From"] = "Ops <ops@example.com>"
    message["To"] = "team@example.com"
    message["Date"] = "Tue, 02 Jan 2024 10:00:00 +0000"
    message["Subject"] = "Datacenter migration window"
    message.set_content("The datacenter migration window is Saturday from 02:00 to 06:00.\n")
    message.add_attachment(random.Random(11).randbytes(attachment_bytes), maintype="application",
                           subtype="octet-stream", filename="dump.bin")
    message.set_boundary("hostile-outer-boundary")  # else a random one: the same bytes on every build
    raw = message.as_bytes()
    boundary = message.get_boundary().encode()
    closing = b"--" + boundary + b"--"
    raw = raw[: raw.rindex(closing)]  # the outer multipart never ends
    broken_part = (b"--" + boundary + b"\r\nContent-Type: multipart/mixed; boundary=\"never-used\"\r\n"
                   b"Content-Transfer-Encoding: x-unknown\r\n\r\nno parts here at all\r\n")
    return raw + broken_part


# --------------------------------------------------------------------------- the corpus

GOOD_DOCUMENTS: dict[str, str] = {
    "good/leave-policy.md": "# Annual leave\n\nEmployees receive twenty-eight days of annual leave each year.\n",
    "good/expenses.txt": "Hotel expenses are reimbursed up to 180 euros per night in capital cities.\n",
    "good/security.html": "<html><head><title>Security</title></head><body><h1>Laptops</h1>"
                          "<p>Every laptop disk must be encrypted with a recovery key held by IT.</p></body></html>",
    "good/contacts.csv": "team,owner\nPayroll,Dana Whitfield\nFacilities,Omar Haddad\n",
}
GOOD_PHRASES: dict[str, str] = {
    "good/leave-policy.md": "twenty-eight days of annual leave",
    "good/expenses.txt": "180 euros per night",
    "good/security.html": "recovery key held by IT",
    "good/contacts.csv": "Dana Whitfield",
    "good/onboarding.docx": "badge at the front desk",
    "good/handbook.pdf": "Remote work needs a manager's approval",
}

ACCENTED = "Müller's façade café serves crème brûlée – naïve “quotes” included"


def build_hostile_corpus(root: Path) -> list[HostileCase]:
    """Write the good documents and every hostile file under `root`; return the hostile cases."""
    root.mkdir(parents=True, exist_ok=True)
    for doc_id, text in GOOD_DOCUMENTS.items():
        _write(root / doc_id, text.encode("utf-8"))
    _write(root / "good/onboarding.docx", docx_bytes(["Collect your badge at the front desk on day one."]))
    _write(root / "good/handbook.pdf", pdf_bytes(["Remote work needs a manager's approval in writing."]))

    cases: list[HostileCase] = []

    def add(kind: str, doc_id: str, data: bytes | None, outcome: str, *reason: str, phrase: str = "") -> None:
        if data is not None:
            _write(root / doc_id, data)
        cases.append(HostileCase(kind, doc_id, outcome, tuple(reason), phrase))

    three_pages = pdf_bytes([f"Section {i}: the warranty covers parts and labour." for i in range(40)])
    add("truncated PDF", "bad/truncated.pdf", three_pages[: len(three_pages) // 3], QUARANTINED, "PDF is damaged")
    add("PDF with a broken xref table", "bad/broken-xref.pdf",
        broken_xref_pdf(["The broken xref file still says: invoices are due in 30 days."]),
        INDEXED, phrase="invoices are due in 30 days")
    add("encrypted PDF, password needed", "bad/locked.pdf",
        pdf_bytes(["Salary bands for 2024"], user_password="hunter2"), QUARANTINED, "encrypted", "password")
    add("encrypted PDF, empty user password", "bad/owner-only.pdf",
        pdf_bytes(["The owner-only PDF opens: fire drills happen every March."], user_password=""),
        INDEXED, phrase="fire drills happen every March")
    add("zero-byte file", "bad/empty.txt", b"", QUARANTINED, "empty file", "0 bytes")
    add("zero-byte PDF", "bad/empty.pdf", b"", QUARANTINED, "empty file", "0 bytes")
    add("PDF that is only an image (no text layer)", "bad/scanned.pdf", image_only_pdf(), NO_TEXT,
        "no extractable text")
    add("text file of nothing but NUL bytes", "bad/all-nuls.txt", bytes(8192), QUARANTINED, "only NUL bytes")
    add("binary data named .txt", "bad/random.txt", random.Random(3).randbytes(64 * 1024), QUARANTINED,
        "binary data, not text")
    add("executable named .txt", "bad/program.txt", b"\x7fELF\x02\x01\x01" + bytes(2000), QUARANTINED,
        "binary data", "executable")
    zip_bomb_docx(root / "bad/bomb.docx")
    add("DOCX zip bomb", "bad/bomb.docx", None, QUARANTINED, "zip bomb")
    add("DOCX that is not a zip", "bad/not-a-zip.docx", b"This was saved as plain text, then renamed.\n" * 20,
        QUARANTINED, "not a valid DOCX", "not a zip")
    add("DOCX that is really an XLSX", "bad/renamed.docx", _small_xlsx(), QUARANTINED, "really a .xlsx")
    depth = 100_000
    add("HTML nested 100,000 levels deep", "bad/deep.html",
        b"<html><body>" + b"<div>" * depth + b"<p>Deep inside: the vault code rotates weekly.</p>"
        + b"</div>" * depth + b"</body></html>", INDEXED, phrase="the vault code rotates weekly")
    add("HTML of one 50 MB line", "bad/one-line.html",
        b"<html><body><p>The one-line page says: parking permits renew in January.</p><img src=\"data:image/png;base64,"
        + b"QUJD" * (50 * MiB // 4) + b"\"></body></html>", INDEXED, phrase="parking permits renew in January")
    add("HTML of 600,000 tags (a tree too big to hold)", "bad/tag-soup.html",
        b"<html><body>" + b"<b>x</b>" * 300_000 + b"</body></html>", QUARANTINED, "tags, more than the limit")
    add("text in Latin-1", "bad/latin1.txt", ACCENTED.replace("–", "-").replace("“", '"').replace("”", '"')
        .encode("latin-1"), INDEXED, phrase="Müller's façade café serves crème brûlée")
    add("text in cp1252", "bad/cp1252.txt", ACCENTED.encode("cp1252"), INDEXED, phrase=ACCENTED)
    add("text in UTF-16 with BOM", "bad/utf16-bom.txt", ACCENTED.encode("utf-16"), INDEXED, phrase=ACCENTED)
    add("text in UTF-16 without BOM", "bad/utf16-le.txt", ACCENTED.encode("utf-16-le"), INDEXED, phrase=ACCENTED)
    add("text in UTF-16 big-endian without BOM", "bad/utf16-be.txt", ACCENTED.encode("utf-16-be"), INDEXED,
        phrase=ACCENTED)
    add("mixed encodings (UTF-8 and cp1252 lines in one file)", "bad/mixed.txt",
        "Première ligne en UTF-8: réunion à midi.\n".encode()
        + "Deuxième ligne en cp1252: café crème.\n".encode("cp1252"),
        INDEXED, phrase="réunion à midi. Deuxième ligne en cp1252: café crème")
    add("NUL bytes in text", "bad/nuls.txt",
        b"Backups run\x00 nightly at\x00 01:00 and are kept for\x00 35 days.\n" + bytes(64 * 1024),
        INDEXED, phrase="Backups run nightly at 01:00 and are kept for 35 days")
    add("CSV with ragged rows", "bad/ragged.csv",
        b"name,room,phone\nAda,101\nGrace,102,555-0102,ext 7,night shift\nLinus,103,555-0103\n",
        INDEXED, phrase="night shift")
    xlsx_with_empty_cells(root / "bad/empty-cells.xlsx", rows=20_000, cols=50)  # 1,000,000 cells
    add("XLSX with 1,000,000 empty cells", "bad/empty-cells.xlsx", None, INDEXED, phrase="Closing balance approved")
    add("e-mail with a malformed MIME tree and a huge attachment", "bad/broken-mime.eml",
        malformed_mime_eml(20 * MiB), INDEXED, phrase="migration window is Saturday")
    add("file name with a newline", "bad/two\nlines.txt", b"The newline file: lunch is served at noon.\n",
        INDEXED, phrase="lunch is served at noon")

    bad_name = os.path.join(os.fsencode(root), b"bad", b"new\nline \xff\xfe name.txt")
    with open(bad_name, "wb") as handle:
        handle.write(b"A file whose name is not UTF-8.\n")
    cases.append(HostileCase("file name with a newline and non-UTF-8 bytes", "bad/new\nline \\xff\\xfe name.txt",
                             SKIPPED, ("not valid UTF-8", "rename")))

    (root / "bad/loop-a.txt").symlink_to("loop-b.txt")
    (root / "bad/loop-b.txt").symlink_to("loop-a.txt")
    cases.append(HostileCase("symlink loop (two links pointing at each other)", "bad/loop-a.txt", SKIPPED,
                             ("symbolic links",)))
    cases.append(HostileCase("symlink loop (the other link)", "bad/loop-b.txt", SKIPPED, ("symbolic links",)))
    (root / "bad/loop-dir").symlink_to(".", target_is_directory=True)
    cases.append(HostileCase("symlink loop (a folder linking to its parent)", "bad/loop-dir", SKIPPED,
                             ("symlink to a folder", "loop")))
    return cases


# --------------------------------------------------------------------------- details

_FIXED_DATE = datetime(2024, 1, 2, tzinfo=UTC)

_W_NS = b"http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_SS_NS = b"http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_DOCX_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)
_DOCX_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="word/document.xml"/></Relationships>'
)
_XLSX_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>'
)
_XLSX_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>'
)
_XLSX_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="Budget" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_XLSX_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" '
    'Target="styles.xml"/></Relationships>'
)
_XLSX_STYLES = (
    '<?xml version="1.0" encoding="UTF-8"?><styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<fonts count="1"><font/></fonts><fills count="1"><fill><patternFill patternType="none"/></fill></fills>'
    '<borders count="1"><border/></borders>'
    '<cellStyleXfs count="1"><xf/></cellStyleXfs><cellXfs count="2"><xf/><xf applyBorder="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'
)


def _small_xlsx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(_member("[Content_Types].xml"), _XLSX_CONTENT_TYPES)
        archive.writestr(_member("xl/workbook.xml"), _XLSX_WORKBOOK)
    return buffer.getvalue()


def _member(name: str) -> zipfile.ZipInfo:
    """A deflated zip member with a fixed date, so that the archive's bytes are the same on every build."""
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 2, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _column_letter(number: int) -> str:
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)

