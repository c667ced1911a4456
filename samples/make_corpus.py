"""Regenerate the bundled sample corpus in samples/corpus/ and samples/QUESTIONS.md.

    python samples/make_corpus.py            # writes samples/corpus/ and samples/QUESTIONS.md
    python samples/make_corpus.py --check    # regenerates in memory, fails if a file differs

The corpus belongs to a fictional outdoor-gear retailer, Northwind Outfitters. All
names, addresses, phone numbers (555-01xx) and e-mail domains (.example) are
invented. The prose lives in samples/text/ in a small markup (``#``/``##``/``###``
headings, ``- `` bullets, ``| a | b |`` table rows, paragraphs separated by blank
lines); the shorter documents (e-mails, slides, the store list) live in this file.

Every output is deterministic: PDFs carry a fixed creation date, DOCX/PPTX carry
fixed core properties and are re-zipped with fixed timestamps, e-mails carry a
fixed Date, Message-ID and MIME boundary. Running the script twice gives the same
bytes (with the same library versions).

QUESTIONS.md is generated too: each question names the phrase that answers it,
and the script finds that phrase in the generated file (the page of a PDF, the
slide of a deck), so the page numbers cannot drift from the documents.
"""

from __future__ import annotations

import argparse
import csv
import email.policy
import html
import io
import re
import sys
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from docx import Document
from docx.shared import Pt
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from pptx import Presentation
from pptx.util import Pt as PptPt
from pypdf import PdfReader

HERE = Path(__file__).resolve().parent
TEXT = HERE / "text"
CORPUS = HERE / "corpus"
QUESTIONS = HERE / "QUESTIONS.md"

FIXED = datetime(2026, 1, 1, tzinfo=timezone.utc)
FIXED_NAIVE = datetime(2026, 1, 1)  # python-docx/pptx want naive UTC datetimes
ZIP_TIME = (2026, 1, 1, 0, 0, 0)
COMPANY = "Northwind Outfitters"


# --- markup ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    kind: str  # "h1", "h2", "h3", "p", "li", "table"
    text: str = ""
    rows: tuple[tuple[str, ...], ...] = ()


def parse_markup(source: str) -> list[Item]:
    items: list[Item] = []
    para: list[str] = []
    table: list[tuple[str, ...]] = []

    def flush() -> None:
        if para:
            items.append(Item("p", " ".join(para)))
            para.clear()
        if table:
            items.append(Item("table", rows=tuple(table)))
            table.clear()

    for raw in source.splitlines():
        line = raw.strip()
        if not line:
            flush()
        elif line.startswith("|"):
            if para:
                flush()
            cells = tuple(c.strip() for c in line.strip("|").split("|"))
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                table.append(cells)
        elif m := re.match(r"(#{1,3}) (.*)", line):
            flush()
            items.append(Item(f"h{len(m.group(1))}", m.group(2)))
        elif line.startswith("- "):
            flush()
            items.append(Item("li", line[2:]))
        else:
            if table:
                flush()
            para.append(line)
    flush()
    return items


def read_items(name: str) -> list[Item]:
    return parse_markup((TEXT / name).read_text(encoding="utf-8"))


# --- PDF ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PdfStyle:
    running_title: str
    body_size: float = 11
    line_height: float = 5.6
    para_gap: float = 2.4


class _RunningPdf(FPDF):
    def __init__(self, style: PdfStyle):
        super().__init__(orientation="P", unit="mm", format="letter")
        self.style = style
        self.set_margins(22, 18, 22)
        self.set_auto_page_break(auto=True, margin=22)
        self.alias_nb_pages()
        self.set_creation_date(FIXED)
        self.set_author(COMPANY)
        self.set_creator("samples/make_corpus.py")

    def header(self) -> None:
        self.set_font("Helvetica", "I", 8.5)
        self.set_text_color(90, 90, 90)
        self.cell(0, 5, self.style.running_title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(160, 160, 160)
        self.line(self.l_margin, self.get_y() + 1, self.w - self.r_margin, self.get_y() + 1)
        self.ln(7)
        self.set_text_color(0, 0, 0)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("Helvetica", "", 8.5)
        self.set_text_color(90, 90, 90)
        self.cell(0, 8, f"Page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0, 0, 0)


def render_pdf(items: list[Item], style: PdfStyle) -> bytes:
    pdf = _RunningPdf(style)
    pdf.add_page()
    title = next(i.text for i in items if i.kind == "h1")
    pdf.set_title(title)
    lh, size = style.line_height, style.body_size

    def room(mm: float) -> None:
        # Keep a heading together with the first lines of what follows it.
        if pdf.get_y() + mm > pdf.page_break_trigger:
            pdf.add_page()

    for item in items:
        if item.kind == "h1":
            pdf.set_font("Helvetica", "B", 20)
            pdf.multi_cell(0, 10, item.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(2)
        elif item.kind == "h2":
            room(28)
            pdf.ln(2)
            pdf.set_font("Helvetica", "B", size + 3)
            pdf.multi_cell(0, lh + 1.5, item.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(1.5)
        elif item.kind == "h3":
            room(22)
            pdf.set_font("Helvetica", "B", size + 0.5)
            pdf.multi_cell(0, lh + 0.5, item.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(0.5)
        elif item.kind == "p":
            pdf.set_font("Helvetica", "", size)
            pdf.multi_cell(0, lh, item.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(style.para_gap)
        elif item.kind == "li":
            pdf.set_font("Helvetica", "", size)
            pdf.set_x(pdf.l_margin + 4)
            pdf.cell(4, lh, "-")
            pdf.multi_cell(0, lh, item.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(1)
        elif item.kind == "table":
            pdf.set_font("Helvetica", "", size - 1)
            with pdf.table(first_row_as_headings=True, line_height=lh) as table:
                for row in item.rows:
                    table.row(row)
            pdf.ln(style.para_gap)
    return bytes(pdf.output())


# --- DOCX and PPTX ----------------------------------------------------------------------


def normalise_zip(data: bytes) -> bytes:
    """Re-zip an OOXML package with fixed timestamps and attributes, order kept."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=ZIP_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.create_system = 3
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, src.read(info.filename), compresslevel=6)
    return out.getvalue()


def _fix_core(props, title: str, subject: str) -> None:
    props.title = title
    props.subject = subject
    props.author = COMPANY
    props.last_modified_by = COMPANY
    props.revision = 1
    props.created = FIXED_NAIVE
    props.modified = FIXED_NAIVE
    props.last_printed = FIXED_NAIVE


def render_docx(items: list[Item], subject: str) -> bytes:
    doc = Document()
    doc.styles["Normal"].font.size = Pt(11)
    title = next(i.text for i in items if i.kind == "h1")
    for item in items:
        if item.kind == "h1":
            doc.add_heading(item.text, level=0)
        elif item.kind == "h2":
            doc.add_heading(item.text, level=1)
        elif item.kind == "h3":
            doc.add_heading(item.text, level=2)
        elif item.kind == "p":
            doc.add_paragraph(item.text)
        elif item.kind == "li":
            doc.add_paragraph(item.text, style="List Bullet")
        elif item.kind == "table":
            table = doc.add_table(rows=0, cols=len(item.rows[0]))
            table.style = "Table Grid"
            for r, row in enumerate(item.rows):
                cells = table.add_row().cells
                for cell, text in zip(cells, row):
                    cell.text = text
                    if r == 0:
                        for run in cell.paragraphs[0].runs:
                            run.bold = True
    section = doc.sections[0]
    section.header.paragraphs[0].text = f"{COMPANY} - {title}"
    _fix_core(doc.core_properties, title, subject)
    buf = io.BytesIO()
    doc.save(buf)
    return normalise_zip(buf.getvalue())


@dataclass(frozen=True)
class Slide:
    title: str
    bullets: tuple[str, ...]
    notes: str = ""


def render_pptx(title: str, subtitle: str, slides: list[Slide], notes: str) -> bytes:
    prs = Presentation()
    first = prs.slides.add_slide(prs.slide_layouts[0])
    first.shapes.title.text = title
    first.placeholders[1].text = subtitle
    first.notes_slide.notes_text_frame.text = notes
    for spec in slides:
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = spec.title
        body = slide.placeholders[1].text_frame
        for n, bullet in enumerate(spec.bullets):
            level = 1 if bullet.startswith("  ") else 0
            para = body.paragraphs[0] if n == 0 else body.add_paragraph()
            para.text = bullet.strip()
            para.level = level
            para.font.size = PptPt(20 if level == 0 else 16)
        if spec.notes:
            slide.notes_slide.notes_text_frame.text = spec.notes
    _fix_core(prs.core_properties, title, subtitle)
    buf = io.BytesIO()
    prs.save(buf)
    return normalise_zip(buf.getvalue())


# --- HTML -----------------------------------------------------------------------------

_NAV = ["Shop", "Stores", "Rentals", "Repairs", "Basecamp Club", "Help"]


def render_html(items: list[Item], description: str, slug: str) -> bytes:
    """A customer help page with the site chrome (nav, breadcrumb, footer) around it."""
    e = html.escape
    title = next(i.text for i in items if i.kind == "h1")
    body: list[str] = []
    in_list = False
    for item in items:
        if item.kind != "li" and in_list:
            body.append("      </ul>")
            in_list = False
        if item.kind in ("h1", "h2", "h3"):
            ident = re.sub(r"[^a-z0-9]+", "-", item.text.lower()).strip("-")
            body.append(f'      <{item.kind} id="{ident}">{e(item.text)}</{item.kind}>')
        elif item.kind == "p":
            text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", e(item.text))
            body.append(f"      <p>{text}</p>")
        elif item.kind == "li":
            if not in_list:
                body.append("      <ul>")
                in_list = True
            body.append(f"        <li>{e(item.text)}</li>")
        elif item.kind == "table":
            head, *rows = item.rows
            body.append("      <table>")
            body.append("        <tr>" + "".join(f"<th>{e(c)}</th>" for c in head) + "</tr>")
            for row in rows:
                body.append("        <tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
            body.append("      </table>")
    if in_list:
        body.append("      </ul>")
    nav = "\n".join(
        f'        <li><a href="/{re.sub(r"[^a-z]+", "-", n.lower())}">{e(n)}</a></li>' for n in _NAV
    )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{e(title)} | {COMPANY}</title>
  <meta name="description" content="{e(description)}">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="stylesheet" href="/assets/site.css">
  <link rel="canonical" href="https://northwind-outfitters.example/help/{slug}">
</head>
<body>
  <header class="site-header">
    <a class="logo" href="/">{COMPANY}</a>
    <nav aria-label="Main">
      <ul>
{nav}
      </ul>
    </nav>
    <form class="search" action="/search"><input name="q" placeholder="Search gear"></form>
  </header>
  <div class="banner">Free shipping on orders of 75 dollars or more.</div>
  <main>
    <nav class="breadcrumb" aria-label="Breadcrumb"><a href="/">Home</a> / <a href="/help">Help</a> / {e(title)}</nav>
    <article>
{chr(10).join(body)}
    </article>
  </main>
  <footer class="site-footer">
    <p>{COMPANY}, Inc. &middot; 1120 NW Flanders Street, Portland, OR 97209 &middot; 1-800-555-0142</p>
    <p><a href="/privacy">Privacy</a> &middot; <a href="/terms">Terms</a> &middot; <a href="/stores">Store finder</a> &middot; &copy; 2026 {COMPANY}, Inc.</p>
  </footer>
  <script src="/assets/site.js" defer></script>
</body>
</html>
"""
    return page.encode("utf-8")


# --- e-mail ---------------------------------------------------------------------------


def render_eml(
    *,
    sender: str,
    to: str,
    subject: str,
    date: datetime,
    message_id: str,
    text: str,
    cc: str | None = None,
    html_body: str | None = None,
) -> bytes:
    msg = EmailMessage(policy=email.policy.default)
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = f"<{message_id}@northwind-outfitters.example>"
    msg.set_content(text, cte="7bit")  # the texts are plain ASCII: keep the file readable
    if html_body is not None:
        msg.add_alternative(html_body, subtype="html", cte="7bit")
        msg.set_boundary(f"=_northwind_{message_id}")
    return msg.as_bytes()


PACIFIC = timezone(timedelta(hours=-8), "PST")

HYBRID_TEXT = """\
Hello everyone,

After a year of pilots in Finance, Marketing and Customer Care, we are making
hybrid work a permanent option for office-based roles. The new rule starts on
Monday 2 March 2026.

What changes

* Office employees may work from home up to 2 days per week.
* Tuesdays and Thursdays are anchor days: everybody in an office role is at the
  head office (or the Troutdale office) on those days, so that meetings,
  workshops and team lunches can happen in person.
* Core hours stay the same: 10:00 to 15:00, Monday to Friday, wherever you work.
* Each employee who works from home at least one day a week receives a one-time
  home office stipend of 400 dollars for a chair, a screen or a headset. Claim
  it in Ledgerly under "Home office" by 30 June 2026.
* Working from another country is allowed for up to 10 working days per year,
  with your manager's approval and a check by the People team beforehand (tax
  and insurance rules differ from country to country).

What does not change

Store and distribution center roles are not covered by the new rule, because
the work happens on the shop floor and in the warehouse. We know this feels
uneven; store teams will instead get more say over their rotas, which Jonah
will present at the March all-hands.

Fully remote work remains the exception. Requests need the approval of your
director and of the People team, and are reviewed once a year.

Managers will agree on the home-office days with their teams during February.
Please record your regular home-office days in Crewbase, so that reception
knows who is in the building in case of an evacuation.

The full rule, including equipment and data security at home, is on the
intranet under People > Ways of working. Questions go to #ask-people or to me.

Thank you to everyone who took part in the pilots and told us honestly what
worked and what did not.

Priya

--
Priya Raman
Director of People, Northwind Outfitters
people@northwind-outfitters.example | extension 2200
"""


def _hybrid_html() -> str:
    paras = [p.strip() for p in HYBRID_TEXT.split("\n\n")]
    out = []
    for p in paras:
        if p.startswith("*"):
            items = [" ".join(x.split()) for x in p.split("* ") if x.strip()]
            out.append("<ul>\n" + "".join(f"<li>{html.escape(i)}</li>\n" for i in items) + "</ul>")
        elif p in ("What changes", "What does not change"):
            out.append(f"<h3>{p}</h3>")
        elif p.startswith("--"):  # signature: keep its lines
            out.append("<p>" + "<br>\n".join(html.escape(x) for x in p.splitlines()) + "</p>")
        else:
            out.append("<p>" + html.escape(" ".join(p.split())) + "</p>")
    return "<html><body>\n" + "\n".join(out) + "\n</body></html>\n"


DELAY_TEXT = """\
Hi all,

Bad news on the Ridgeline shell jackets for the spring season.

Alder Ridge Textiles told us this morning that purchase order 48213 (6,200
Ridgeline shell jackets in all colours and sizes) will not arrive on
19 February as planned. A dye lot failed their colour-fastness test and has
to be re-dyed. Their new delivery date at Troutdale is 16 March 2026, which
means the jackets will be in stores from about 20 March, the first day of the
spring sale.

What this means for your store

1. Keep taking pre-orders, but tell customers to expect the jacket in the
   second half of March. Pre-orders can be cancelled at any time for a full
   refund.
2. Do not promise a specific date yet. I will confirm the delivery as soon as
   the re-dyed fabric passes testing, expected by 27 February.
3. If a customer needs a shell jacket now, the Cascade shell and the Kestrel
   shell are in stock in Troutdale and can be shipped to your store within two
   days. Offer the Basecamp Club price to pre-order customers who switch.
4. Please remove the Ridgeline launch posters from your windows until further
   notice; new posters will be sent with the delivery.

On the commercial side, the supply agreement with Alder Ridge has a late
delivery clause (0.5 percent of the value of the late goods per day, up to
10 percent of the order). Finance and I will handle this with Alder Ridge;
there is nothing you need to do about it, and please do not discuss it with
Alder Ridge staff if they visit your store.

We are also checking whether part of the order, in black and spruce, can be
air-freighted earlier. I will let you know next week.

Sorry for the trouble this causes during a busy month. Questions to me
directly or in #store-managers.

Gareth

--
Gareth Okafor
Supply Chain Manager, Northwind Outfitters
Distribution Center, 2400 NW Graham Road, Troutdale, OR 97060
+1 503-555-0188
"""


# --- slides ---------------------------------------------------------------------------

ALL_HANDS_TITLE = "Northwind All-Hands: Q4 2025"
ALL_HANDS_SUBTITLE = "Thursday 22 January 2026 - Maren Holt, Lena Castellanos, Desmond Achebe"
ALL_HANDS_NOTES = (
    "Welcome everyone in Portland, Troutdale and on the store video link. "
    "Recording will be available in Crewbase for 30 days."
)
ALL_HANDS = [
    Slide(
        "Q4 2025 in numbers",
        (
            "Q4 revenue: 48.6 million dollars, up 11% on Q4 2024",
            "Full-year 2025 revenue: 164.2 million dollars, up 8%",
            "Online share of sales: 34% (2024: 29%)",
            "Gross margin: 46.5%, up 1.2 points",
            "Basecamp Club: 312,000 members, 41,000 joined in 2025",
        ),
        "Desmond: Q4 was the strongest quarter in our history. Black Friday week alone brought "
        "9.1 million dollars. Margin improved because fewer items had to be cleared at the end "
        "of the season. Thank you to the stores for holding prices during December.",
    ),
    Slide(
        "Stores and services",
        (
            "Bozeman opened on 14 November 2025: our 12th store",
            "  Best first month of any Northwind store: 612,000 dollars",
            "Flagstaff, Arizona: lease signed soon, opening planned for May 2026",
            "Seattle Ballard remodel finished, rental counter doubled in size",
            "Repair workshop: 21,700 repairs in 2025, 38% more than in 2024",
        ),
        "Lena: The repair numbers are great but turnaround is slipping above 10 business days. "
        "We are looking at a second repair bench.",
    ),
    Slide(
        "People",
        (
            "640 employees at year end (2024: 575)",
            "Employee engagement (eNPS): +32, up from +24",
            "Learning budget raised to 1,200 dollars per person from 2026",
            "Hybrid work for office roles from March: details from the People team in February",
            "New handbook version 4.2 from 1 February: seniority steps for annual leave",
        ),
        "Maren: The engagement survey had an 81% response rate. Store teams asked for more say "
        "over rotas; Jonah will come back with a proposal in March.",
    ),
    Slide(
        "Priorities for 2026",
        (
            "New ERP system: vendor decision in February, go-live planned for September 2026",
            "Trail Promise extended to Northwind Trail packs from 1 April",
            "All Northwind Trail waterproofs PFAS-free by the end of 2026",
            "Cut shipping emissions 30% by 2028 compared with 2024",
            "Open Flagstaff and reach 175 million dollars revenue",
        ),
        "Maren: Five priorities, no more. If you are asked to work on something that does not "
        "serve one of them, ask why.",
    ),
]


# --- store list -------------------------------------------------------------------------

STORE_FIELDS = [
    "store_id", "store_name", "city", "state", "address", "manager", "phone", "opening_date",
    "mon_fri_hours", "saturday_hours", "sunday_hours", "rentals", "status",
]  # fmt: skip
STORES = [
    ("NW01", "Portland Pearl District", "Portland", "OR", "1015 NW Lovejoy Street", "Hannah Brandt", "503-555-0110", "2011-04-16", "10:00-20:00", "10:00-20:00", "11:00-18:00", "yes", "open"),
    ("NW02", "Portland Sellwood", "Portland", "OR", "7720 SE 13th Avenue", "Luis Ortega", "503-555-0121", "2013-09-07", "10:00-19:00", "09:00-19:00", "10:00-17:00", "yes", "open"),
    ("NW03", "Bend", "Bend", "OR", "455 NW Wall Street", "Dale Whitcomb", "541-555-0132", "2014-05-24", "09:00-19:00", "08:00-19:00", "09:00-17:00", "yes", "open"),
    ("NW04", "Seattle Ballard", "Seattle", "WA", "5402 22nd Avenue NW", "Tobias Lindqvist", "206-555-0143", "2015-10-03", "10:00-20:00", "09:00-20:00", "10:00-18:00", "yes", "open"),
    ("NW05", "Eugene", "Eugene", "OR", "960 Willamette Street", "Grace Liu", "541-555-0154", "2016-03-12", "10:00-19:00", "10:00-18:00", "11:00-17:00", "no", "open"),
    ("NW06", "Spokane", "Spokane", "WA", "811 W Riverside Avenue", "Nadia Haddad", "509-555-0165", "2017-06-10", "10:00-19:00", "10:00-19:00", "11:00-17:00", "no", "open"),
    ("NW07", "Boise", "Boise", "ID", "320 S 8th Street", "Cody Ramirez", "208-555-0176", "2018-04-21", "10:00-19:00", "09:00-19:00", "11:00-17:00", "yes", "open"),
    ("NW08", "Missoula", "Missoula", "MT", "210 N Higgins Avenue", "Erin McAllister", "406-555-0187", "2019-05-18", "09:00-19:00", "08:00-19:00", "10:00-17:00", "yes", "open"),
    ("NW09", "Salt Lake City", "Salt Lake City", "UT", "275 E 400 South", "Priyanka Desai", "801-555-0198", "2020-09-12", "10:00-20:00", "10:00-20:00", "closed", "no", "open"),
    ("NW10", "Denver Platte Street", "Denver", "CO", "1620 Platte Street", "Marcus Bell", "720-555-0109", "2021-08-28", "10:00-20:00", "09:00-20:00", "10:00-18:00", "no", "open"),
    ("NW11", "Reno Riverwalk", "Reno", "NV", "40 W 1st Street", "Jasmine Keller", "775-555-0114", "2023-03-25", "10:00-19:00", "10:00-19:00", "11:00-17:00", "no", "open"),
    ("NW12", "Bozeman", "Bozeman", "MT", "18 W Main Street", "Owen Fairbanks", "406-555-0125", "2025-11-14", "09:00-19:00", "08:00-19:00", "10:00-17:00", "yes", "open"),
    ("NW13", "Flagstaff", "Flagstaff", "AZ", "112 N Aspen Avenue", "Rosa Etsitty", "928-555-0136", "2026-05-16", "09:00-19:00", "08:00-19:00", "10:00-17:00", "no", "planned"),
]  # fmt: skip


def render_csv() -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(STORE_FIELDS)
    writer.writerows(STORES)
    return buf.getvalue().encode("utf-8")


# --- the corpus -------------------------------------------------------------------------


def build() -> dict[str, bytes]:
    """Every file of the corpus, by path relative to samples/corpus/."""
    files: dict[str, bytes] = {}
    files["hr/employee-handbook.pdf"] = render_pdf(
        read_items("employee-handbook.txt"),
        PdfStyle("Northwind Outfitters - Employee Handbook - Version 4.2", line_height=5.9),
    )
    files["finance/travel-and-expense-policy.pdf"] = render_pdf(
        read_items("travel-and-expense-policy.txt"),
        PdfStyle("Northwind Outfitters - Travel and Expense Policy (FIN-03 rev. 7)"),
    )
    files["legal/supply-agreement-alder-ridge.pdf"] = render_pdf(
        read_items("supply-agreement-alder-ridge.txt"),
        PdfStyle(
            "Supply Agreement NWO-SA-2025-017 - Confidential", body_size=10.5, line_height=5.3
        ),
    )
    files["it/it-security-policy.md"] = (TEXT / "it-security-policy.md").read_bytes()
    files["hr/onboarding-guide.md"] = (TEXT / "onboarding-guide.md").read_bytes()
    files["hr/code-of-conduct.docx"] = render_docx(
        read_items("code-of-conduct.txt"),
        "How we work with each other, our customers and suppliers",
    )
    files["customer/returns-policy.html"] = render_html(
        read_items("returns-policy.txt"),
        "Return window, refunds, exchanges and the Trail Promise repair guarantee.",
        "returns",
    )
    files["customer/faq.html"] = render_html(
        read_items("faq.txt"),
        "Shipping, Basecamp Club, price matching, rentals and repairs: answers to questions.",
        "faq",
    )
    files["comms/all-hands-2025-q4.pptx"] = render_pptx(
        ALL_HANDS_TITLE, ALL_HANDS_SUBTITLE, ALL_HANDS, ALL_HANDS_NOTES
    )
    files["comms/2026-02-03-hybrid-work-rule.eml"] = render_eml(
        sender="Priya Raman <priya.raman@northwind-outfitters.example>",
        to="All staff <all-staff@northwind-outfitters.example>",
        subject="New hybrid work rule for office roles from 2 March",
        date=datetime(2026, 2, 3, 9, 12, tzinfo=PACIFIC),
        message_id="20260203-hybrid-work-rule",
        text=HYBRID_TEXT,
        html_body=_hybrid_html(),
    )
    files["ops/2026-02-10-alder-ridge-delay.eml"] = render_eml(
        sender="Gareth Okafor <gareth.okafor@northwind-outfitters.example>",
        to="Store managers <store-managers@northwind-outfitters.example>",
        cc="Jonah Whitfield <jonah.whitfield@northwind-outfitters.example>",
        subject="Delay: Ridgeline shell jackets (PO 48213) now due 16 March",
        date=datetime(2026, 2, 10, 16, 47, tzinfo=PACIFIC),
        message_id="20260210-po48213-delay",
        text=DELAY_TEXT,
    )
    files["ops/store-locations.csv"] = render_csv()
    files["ops/2026-02-12-ops-sync-notes.txt"] = (TEXT / "ops-sync-notes.txt").read_bytes()
    return files


# --- questions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    question: str
    answer: str
    file: str
    phrase: str  # text in the file that answers the question; located to find the page
    where: str = ""  # for files without pages: the section


QUESTION_LIST = [
    Question(
        "How many days of annual leave do employees get?",
        "Full-time employees get 22 days of paid annual leave per calendar year (part-time pro "
        "rata). After three years of service it grows by one day, then one more day every two "
        "years, up to 27 days; up to 5 unused days carry over until 31 March.",
        "hr/employee-handbook.pdf",
        "Full-time employees receive 22 days of paid annual leave per calendar year",
    ),
    Question(
        "What is the hotel limit per night in a high-cost city like San Francisco?",
        "290 dollars per night before taxes (210 dollars in standard locations).",
        "finance/travel-and-expense-policy.pdf",
        "In high-cost cities the limit is 290 dollars per night",
    ),
    Question(
        "What happens if Alder Ridge delivers late?",
        "Liquidated damages of 0.5% of the value of the late products per calendar day, capped "
        "at 10% of the purchase order; after 30 days late Northwind may cancel the order.",
        "legal/supply-agreement-alder-ridge.pdf",
        "liquidated damages of 0.5 percent of the value of the late Products",
    ),
    Question(
        "How long does the Alder Ridge supply agreement run, and how is it renewed?",
        "Three years from 1 July 2025 to 30 June 2028, then automatic one-year renewals unless "
        "either party gives notice at least 90 days before the end of the term.",
        "legal/supply-agreement-alder-ridge.pdf",
        "continues for an initial term of three years, ending on 30 June 2028",
    ),
    Question(
        "What is the meal per diem on a domestic business trip?",
        "75 dollars per full travel day (15 breakfast, 20 lunch, 40 dinner); 95 dollars abroad.",
        "finance/travel-and-expense-policy.pdf",
        "meals are covered by a per diem of 75 dollars per full travel day",
    ),
    Question(
        "How long must a password be?",
        "At least 14 characters, stored only in the Keyward password manager; MFA everywhere.",
        "it/it-security-policy.md",
        "Passwords must be at least **14 characters** long",
        "section 2, Accounts and passwords",
    ),
    Question(
        "How long do Basecamp Club members have to return an item?",
        "90 days (60 days for other customers), for unused items in original condition.",
        "customer/returns-policy.html",
        "Members of the Basecamp Club have <strong>90 days</strong>",
        "section Return window",
    ),
    Question(
        "When is the Salt Lake City store open on Sundays?",
        "It is closed on Sundays; Monday to Friday and Saturday it is open 10:00-20:00.",
        "ops/store-locations.csv",
        "NW09,Salt Lake City,Salt Lake City,UT,275 E 400 South,Priyanka Desai",
        "row NW09",
    ),
    Question(
        "How many days a week can office staff work from home, and from when?",
        "Up to 2 days per week from 2 March 2026, with Tuesdays and Thursdays as anchor days in "
        "the office; a one-time 400 dollar home office stipend.",
        "comms/2026-02-03-hybrid-work-rule.eml",
        "Office employees may work from home up to 2 days per week.",
        "e-mail of 3 February 2026",
    ),
    Question(
        "When will the delayed Ridgeline jackets arrive, and what will Northwind deduct?",
        "PO 48213 is due at Troutdale on 16 March 2026 (25 days late); the 10% cap applies, so "
        "42,160 dollars are set off against the next Alder Ridge invoice.",
        "ops/2026-02-12-ops-sync-notes.txt",
        "we will deduct 10% of the PO value of 421,600 dollars, i.e. 42,160 dollars",
        "item 1, Alder Ridge delay",
    ),
    Question(
        "May I accept a gift from a supplier?",
        "Yes, up to 50 dollars per supplier per year; above that, declare it in Crewbase within "
        "5 working days. Never cash, gift cards or vouchers, and nothing during a tender.",
        "hr/code-of-conduct.docx",
        "You may accept gifts and hospitality worth up to 50 dollars per supplier per year",
        "section Gifts and hospitality",
    ),
    Question(
        "What was revenue in Q4 2025?",
        "48.6 million dollars, up 11% on Q4 2024 (full year 164.2 million dollars).",
        "comms/all-hands-2025-q4.pptx",
        "Q4 revenue: 48.6 million dollars, up 11% on Q4 2024",
    ),
]


def _squash(text: str) -> str:
    return " ".join(text.split())


def locate(path: str, data: bytes, phrase: str) -> str:
    """Where `phrase` is in the file: "page N" / "slide N", or "" for unpaged files."""
    want = _squash(phrase)
    if path.endswith(".pdf"):
        reader = PdfReader(io.BytesIO(data))
        for n, page in enumerate(reader.pages, start=1):
            if want in _squash(page.extract_text() or ""):
                return f"page {n}"
    elif path.endswith(".pptx"):
        prs = Presentation(io.BytesIO(data))
        for n, slide in enumerate(prs.slides, start=1):
            texts = [s.text_frame.text for s in slide.shapes if s.has_text_frame]
            if any(want in _squash(t) for t in texts):
                return f"slide {n}"
    elif path.endswith(".docx"):
        doc = Document(io.BytesIO(data))
        if any(want in _squash(p.text) for p in doc.paragraphs):
            return ""
    elif path.endswith(".eml"):
        msg = email.message_from_bytes(data, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        if body is not None and want in _squash(body.get_content()):
            return ""
    elif want in _squash(data.decode("utf-8")):
        return ""
    raise SystemExit(f"QUESTIONS: phrase not found in {path}: {phrase!r}")


def render_questions(files: dict[str, bytes]) -> bytes:
    lines = [
        "# Sample questions",
        "",
        "Questions about the sample corpus in `samples/corpus/`, with the file and the place "
        "that answers each. Generated by `samples/make_corpus.py`, which checks that every "
        "answer is in its file and finds the page (PDF) or slide (PPTX) it is on.",
        "",
    ]
    for n, q in enumerate(QUESTION_LIST, start=1):
        where = locate(q.file, files[q.file], q.phrase) or q.where
        lines += [
            f"{n}. **{q.question}**",
            f"   - Answer: {q.answer}",
            f"   - Source: `{q.file}`, {where}",
            "",
        ]
    return "\n".join(lines).encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if a committed file differs from a fresh build"
    )
    args = parser.parse_args(argv)

    files = build()
    outputs: dict[Path, bytes] = {CORPUS / rel: data for rel, data in files.items()}
    outputs[QUESTIONS] = render_questions(files)

    if args.check:
        stale = [p for p, d in outputs.items() if not p.exists() or p.read_bytes() != d]
        extra = [
            p for p in CORPUS.rglob("*") if p.is_file() and p not in outputs
        ] if CORPUS.exists() else []
        for p in stale:
            print(f"differs: {p.relative_to(HERE)}")
        for p in extra:
            print(f"not generated: {p.relative_to(HERE)}")
        return 1 if stale or extra else 0

    for path, data in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for rel, data in sorted(files.items()):
        extra = ""
        if rel.endswith(".pdf"):
            extra = f"  ({len(PdfReader(io.BytesIO(data)).pages)} pages)"
        print(f"{len(data):>8}  corpus/{rel}{extra}")
    print(f"wrote {len(files)} files to {CORPUS} and {QUESTIONS.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
