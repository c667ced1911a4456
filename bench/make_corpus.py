"""Generate a deterministic synthetic corpus for benchmarks.

    python bench/make_corpus.py OUT_DIR --docs 1000 [--seed 7] [--jobs 2] [--manifest FILE]

Documents of a fictional outdoor-gear retailer, in mixed formats (shares of --docs):
30% multi-page PDFs (2-12 pages, each with a running header and a page footer in
one of several styles), 20% Markdown, 15% HTML, 10% DOCX, 10% plain text, 10%
e-mail (.eml), 5% CSV. The text is built from per-topic vocabularies and sentence
templates, so that documents about tents, payroll or phishing are about tents,
payroll or phishing, and retrieval over the corpus means something.

Each document also states one unique fact ("The reorder point for item NT-48213
at the Boise store is 37 units."); with --manifest, a JSON line per document
records its path, format, topic, page count and that fact, for recall checks.

Everything is derived from the seed: document i uses its own random.Random seeded
with f"{seed}:{i}", so the output does not depend on the number of worker
processes. PDFs carry a fixed creation date, DOCX files fixed core properties and
zip timestamps, e-mails fixed dates, ids and MIME boundaries.
"""

from __future__ import annotations

import argparse
import csv
import email.policy
import html
import io
import json
import multiprocessing
import os
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from samples.make_corpus import normalise_zip  # noqa: E402  (one OOXML normaliser for both corpora)

COMPANY = "Northwind Outfitters"
FIXED = datetime(2026, 1, 1, tzinfo=timezone.utc)

FORMAT_SHARES = {
    "pdf": 0.30,
    "md": 0.20,
    "html": 0.15,
    "docx": 0.10,
    "txt": 0.10,
    "eml": 0.10,
    "csv": 0.05,
}

# --- vocabulary ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    slug: str
    dept: str
    name: str
    nouns: tuple[str, ...]  # plural nouns
    verbs: tuple[tuple[str, str], ...]  # (base, past participle)
    adjectives: tuple[str, ...]
    roles: tuple[str, ...]
    metrics: tuple[tuple[str, str, int, int], ...]  # (name, unit, low, high)
    titles: tuple[str, ...]


def _v(spec: str) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(pair.split("/")) for pair in spec.split())  # type: ignore[misc]


TOPICS = (
    Topic(
        "footwear", "merchandising", "hiking footwear",
        ("hiking boots", "trail runners", "outsoles", "midsoles", "waterproof membranes",
         "lacing systems", "insoles", "approach shoes", "gaiters", "heel counters", "toe caps",
         "resoling kits"),
        _v("fit/fitted stock/stocked resole/resoled inspect/inspected break-in/broken-in "
           "waterproof/waterproofed stretch/stretched grade/graded"),
        ("lightweight", "stiff", "breathable", "leather", "vegan", "wide-fit", "cushioned",
         "grippy"),
        ("footwear buyer", "fitting specialist", "store associate", "product tester"),
        (("return rate", "percent", 2, 19), ("average fitting time", "minutes", 8, 35),
         ("sell-through", "percent", 40, 95)),
        ("Boot fitting guide", "Footwear range review", "Trail runner buying notes",
         "Resoling program handbook"),
    ),
    Topic(
        "shelters", "merchandising", "tents and shelters",
        ("tents", "tent poles", "flysheets", "guylines", "vestibules", "groundsheets", "stakes",
         "seam tapes", "bivy bags", "tarps", "inner tents", "pole sleeves"),
        _v("pitch/pitched seal/sealed patch/patched stake/staked tension/tensioned "
           "dry/dried fold/folded test/tested"),
        ("freestanding", "four-season", "ultralight", "double-wall", "silnylon", "storm-proof",
         "roomy", "compact"),
        ("tent buyer", "rental coordinator", "repair technician", "category manager"),
        (("pitching time", "minutes", 3, 25), ("packed weight", "grams", 850, 4200),
         ("warranty claims", "cases", 3, 120)),
        ("Tent range review", "Shelter testing report", "Rental tent care procedure",
         "Four-season tent buying notes"),
    ),
    Topic(
        "climbing", "merchandising", "climbing equipment",
        ("dynamic ropes", "harnesses", "carabiners", "belay devices", "quickdraws", "chalk bags",
         "climbing helmets", "slings", "cams", "nuts", "crash pads", "rope bags"),
        _v("inspect/inspected retire/retired belay/belayed clip/clipped load/loaded "
           "certify/certified coil/coiled label/labelled"),
        ("dynamic", "static", "auto-locking", "UIAA-certified", "dry-treated", "sport",
         "trad", "bouldering"),
        ("climbing buyer", "wall instructor", "gear inspector", "store associate"),
        (("rope length", "meters", 40, 80), ("inspection interval", "days", 30, 365),
         ("lot size", "units", 50, 900)),
        ("Climbing hardware inspection log", "Rope retirement policy", "Harness fitting guide",
         "Climbing range plan"),
    ),
    Topic(
        "paddling", "merchandising", "paddle sports",
        ("kayaks", "packrafts", "paddles", "buoyancy aids", "dry bags", "spray skirts",
         "bilge pumps", "throw bags", "paddle leashes", "roof racks", "wetsuits", "drysuits"),
        _v("inflate/inflated rinse/rinsed patch/patched launch/launched rent/rented "
           "strap/strapped store/stored check/checked"),
        ("inflatable", "sit-on-top", "whitewater", "touring", "self-bailing", "neoprene",
         "buoyant", "stable"),
        ("paddle sports buyer", "rental coordinator", "river guide", "store associate"),
        (("rental days", "days", 20, 640), ("hull length", "centimeters", 240, 520),
         ("damage rate", "percent", 1, 14)),
        ("Packraft rental procedure", "Paddle sports season review", "Dry bag testing report",
         "Kayak storage guide"),
    ),
    Topic(
        "cycling", "merchandising", "bikepacking and cycling",
        ("gravel bikes", "panniers", "frame bags", "tubeless tyres", "derailleurs",
         "bike lights", "chain lubes", "saddles", "handlebar rolls", "pumps", "helmets",
         "repair stands"),
        _v("tune/tuned true/trued lube/lubed service/serviced mount/mounted adjust/adjusted "
           "pack/packed assemble/assembled"),
        ("tubeless", "waterproof", "bolt-on", "lightweight", "reflective", "steel", "carbon",
         "rugged"),
        ("bike mechanic", "cycling buyer", "store associate", "workshop lead"),
        (("service time", "minutes", 20, 150), ("bag volume", "liters", 3, 40),
         ("workshop bookings", "bookings", 10, 400)),
        ("Bike workshop procedures", "Bikepacking bag range review", "Tubeless setup guide",
         "Cycling season plan"),
    ),
    Topic(
        "winter", "merchandising", "snow and avalanche safety",
        ("touring skis", "climbing skins", "avalanche transceivers", "probes", "shovels",
         "splitboards", "ski boots", "bindings", "snowshoes", "goggles", "airbag packs",
         "ski crampons"),
        _v("wax/waxed mount/mounted test/tested rent/rented sharpen/sharpened adjust/adjusted "
           "check/checked charge/charged"),
        ("backcountry", "alpine", "three-antenna", "telescopic", "waxless", "insulated",
         "avalanche-rated", "wide"),
        ("ski technician", "winter buyer", "avalanche instructor", "rental coordinator"),
        (("transceiver range", "meters", 40, 70), ("binding checks", "checks", 10, 300),
         ("rental weekends", "weekends", 4, 22)),
        ("Avalanche safety kit checklist", "Ski rental workshop guide", "Winter range review",
         "Transceiver testing log"),
    ),
    Topic(
        "logistics", "operations", "distribution and logistics",
        ("pallets", "inbound shipments", "cartons", "dock appointments", "picking waves",
         "carriers", "purchase orders", "packing lists", "forklifts", "returns bins",
         "cycle counts", "replenishment orders"),
        _v("receive/received scan/scanned dispatch/dispatched pick/picked count/counted "
           "label/labelled schedule/scheduled reconcile/reconciled"),
        ("inbound", "outbound", "late", "oversized", "mixed", "urgent", "palletised",
         "cross-docked"),
        ("warehouse supervisor", "forklift driver", "inventory planner", "carrier manager"),
        (("dock-to-stock time", "hours", 4, 72), ("picking accuracy", "percent", 95, 100),
         ("same-day dispatch", "percent", 82, 99)),
        ("Troutdale receiving procedure", "Carrier performance review", "Cycle count report",
         "Peak season logistics plan"),
    ),
    Topic(
        "stores", "operations", "store operations",
        ("rotas", "till counts", "opening checklists", "window displays", "fitting rooms",
         "stockrooms", "shrinkage reports", "price labels", "customer queues", "shift handovers",
         "floor plans", "safety walks"),
        _v("open/opened close/closed count/counted rotate/rotated restock/restocked "
           "audit/audited plan/planned brief/briefed"),
        ("weekly", "seasonal", "busy", "quiet", "flagship", "small-format", "tidy",
         "well-lit"),
        ("store manager", "shift lead", "visual merchandiser", "store associate"),
        (("footfall", "visitors", 800, 9000), ("conversion", "percent", 12, 48),
         ("queue time", "minutes", 1, 12)),
        ("Store opening checklist", "Visual merchandising guide", "Shrinkage review",
         "Store rota rules"),
    ),
    Topic(
        "finance", "finance", "finance and budgeting",
        ("budgets", "invoices", "accruals", "forecasts", "cost centers", "variances",
         "expense claims", "purchase approvals", "cash flows", "month-end closes",
         "credit notes", "capital requests"),
        _v("approve/approved reconcile/reconciled forecast/forecast book/booked accrue/accrued "
           "review/reviewed invoice/invoiced audit/audited"),
        ("quarterly", "annual", "unbudgeted", "capital", "operating", "overdue", "approved",
         "draft"),
        ("controller", "finance business partner", "accounts payable clerk", "CFO"),
        (("budget variance", "percent", 1, 18), ("invoice backlog", "invoices", 5, 600),
         ("days sales outstanding", "days", 12, 60)),
        ("Month-end close checklist", "Budget guidelines", "Capital request procedure",
         "Quarterly forecast memo"),
    ),
    Topic(
        "people", "hr", "people and payroll",
        ("leave requests", "pay statements", "performance reviews", "job offers",
         "onboarding plans", "benefit enrolments", "training records", "timesheets",
         "parental leave plans", "exit interviews", "probation reviews", "rota swaps"),
        _v("approve/approved submit/submitted review/reviewed schedule/scheduled record/recorded "
           "update/updated sign/signed process/processed"),
        ("annual", "paid", "part-time", "full-time", "seasonal", "confidential", "pending",
         "pro-rata"),
        ("People partner", "payroll specialist", "line manager", "recruiter"),
        (("time to hire", "days", 12, 70), ("leave balance", "days", 0, 27),
         ("training completion", "percent", 55, 100)),
        ("Leave request procedure", "Performance review guide", "Payroll calendar notes",
         "Seasonal hiring plan"),
    ),
    Topic(
        "security", "it", "information security",
        ("passwords", "laptops", "security keys", "phishing reports", "access reviews",
         "software updates", "VPN connections", "backups", "incident tickets", "admin accounts",
         "mobile devices", "firewall rules"),
        _v("patch/patched encrypt/encrypted revoke/revoked review/reviewed report/reported "
           "rotate/rotated restore/restored enroll/enrolled"),
        ("critical", "privileged", "encrypted", "unpatched", "suspicious", "shared", "managed",
         "offline"),
        ("security engineer", "service desk analyst", "system owner", "IT manager"),
        (("patch latency", "days", 1, 30), ("phishing click rate", "percent", 2, 15),
         ("restore time", "hours", 1, 24)),
        ("Access review procedure", "Phishing response runbook", "Laptop hardening standard",
         "Backup and restore test report"),
    ),
    Topic(
        "care", "customer", "customer care and repairs",
        ("returns", "refunds", "repair tickets", "warranty claims", "complaints",
         "order enquiries", "exchanges", "store credits", "shipping labels", "chat transcripts",
         "callbacks", "zipper repairs"),
        _v("refund/refunded repair/repaired answer/answered escalate/escalated ship/shipped "
           "log/logged close/closed replace/replaced"),
        ("urgent", "open", "resolved", "repeat", "online", "in-store", "damaged", "warranty"),
        ("care agent", "repair technician", "team lead", "returns clerk"),
        (("first reply time", "hours", 1, 30), ("repair turnaround", "business days", 5, 20),
         ("satisfaction score", "percent", 70, 98)),
        ("Returns handling guide", "Repair workshop procedures", "Complaint escalation policy",
         "Customer care monthly report"),
    ),
    Topic(
        "sustainability", "sustainability", "sustainability",
        ("emissions", "recycled fabrics", "PFAS-free finishes", "packaging", "supplier audits",
         "repair rates", "take-back bins", "energy audits", "transport routes",
         "material passports", "solar panels", "waste streams"),
        _v("measure/measured reduce/reduced audit/audited recycle/recycled report/reported "
           "certify/certified replace/replaced offset/offset"),
        ("recycled", "bluesign-approved", "low-carbon", "renewable", "compostable",
         "fluorine-free", "circular", "audited"),
        ("sustainability manager", "materials engineer", "supplier auditor", "energy lead"),
        (("recycled share", "percent", 10, 85), ("emissions cut", "percent", 2, 40),
         ("waste diverted", "tonnes", 5, 400)),
        ("Sustainability progress report", "PFAS phase-out plan", "Packaging guidelines",
         "Supplier audit summary"),
    ),
    Topic(
        "marketing", "marketing", "marketing and membership",
        ("campaigns", "newsletters", "Basecamp Club members", "promotions", "landing pages",
         "social posts", "catalogues", "loyalty rewards", "product photos", "store events",
         "ambassadors", "discount codes"),
        _v("launch/launched send/sent test/tested target/targeted publish/published "
           "plan/planned measure/measured brief/briefed"),
        ("seasonal", "regional", "email", "paid", "organic", "limited", "member-only",
         "national"),
        ("marketing manager", "content editor", "CRM analyst", "community lead"),
        (("open rate", "percent", 15, 55), ("new members", "members", 100, 9000),
         ("campaign budget", "dollars", 2000, 90000)),
        ("Spring campaign brief", "Basecamp Club rules", "Newsletter calendar",
         "Store events playbook"),
    ),
)  # fmt: skip

PLACES = ("Portland Pearl District", "Portland Sellwood", "Bend", "Seattle Ballard", "Eugene",
          "Spokane", "Boise", "Missoula", "Salt Lake City", "Denver", "Reno", "Bozeman",
          "Troutdale distribution center", "head office")  # fmt: skip
FIRST = ("Avery", "Ben", "Carla", "Deshawn", "Elif", "Farah", "Gus", "Hana", "Ivan", "Jade",
         "Kofi", "Lena", "Mateo", "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sven", "Tara",
         "Uma", "Vik", "Wren", "Yusuf")  # fmt: skip
LAST = ("Abbott", "Brandt", "Chen", "Diaz", "Eriksen", "Fofana", "Garcia", "Holm", "Ito",
        "Jensen", "Kowalski", "Lund", "Mbeki", "Novak", "Ortega", "Park", "Quist", "Reyes",
        "Sato", "Tran", "Umar", "Varga", "Weber", "Young")  # fmt: skip
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")  # fmt: skip
PERIODS = ("week", "month", "quarter", "season", "year")

TEMPLATES = (
    "Every {role} should {v} the {adj} {n} at least {k} times per {period}.",
    "The {adj} {n} are {vpp} before any {n2} leave the {site}.",
    "By the end of {month}, the {place} team had {vpp} {k3} {n} without major issues.",
    "Our {metric} for {n} was {metricv} last {period}, against a target of {metricv2}.",
    "When {n} arrive {adj2}, the {role} decides whether they are {vpp} or sent back.",
    "{person} from the {place} team asked that all {adj} {n} be {vpp} by {day} {month}.",
    "{N} that cannot be {vpp} on site go to the {site} with a short note.",
    "The checklist covers {n}, {n2} and the {adj} {n3} kept in the back room.",
    "We track {metric} every {period}; it reached {metricv} in {month} {year}.",
    "If a customer asks about {adj} {n}, the {role} explains how they are {vpp}.",
    "A {role} may {v} up to {k3} {n} without approval; above that, ask the {role2}.",
    "Since {year}, all {n} at the {site} have been {vpp} within {k} days.",
    "Mistakes with {n} are logged, and the {role} reviews the log each {period}.",
    "The {adj} {n} proved popular in {place}, where demand rose by {pct} percent.",
    "Before the {season} peak, {n} and {n2} are {vpp} and labelled by size.",
    "Do not {v} {adj} {n} alone; a second {role} checks the work.",
    "The {role2} signs off the plan for {n} once the {n2} have been {vpp}.",
    "Costs for {n} rose to {money} dollars this {period}, mostly because of {adj} {n2}.",
    "Training on {n} takes about {k} hours and is repeated every {period}.",
    "{person} keeps the list of {adj} {n}; send changes by e-mail before {day} {month}.",
    "At the {site}, {n} are stored next to the {n2} to save time.",
    "Feedback from the {site} shows that {adj} {n} matter more than {n2}.",
    "Only {vpp} {n} may be sold or rented to customers.",
    "The next review of {n} and {n2} is planned for {month} {year}.",
)  # fmt: skip

def site(place: str) -> str:
    """How a place is named after "the": "Boise store", "head office"."""
    return place if place.endswith(("center", "office")) else f"{place} store"


SEASONS = ("spring", "summer", "autumn", "winter", "holiday")
_WHEN = ("before opening", "", "after each use", "when they arrive", "with a colleague")


class Writer:
    """Sentences, paragraphs and sections for one document, from its own seeded RNG."""

    def __init__(self, rng: random.Random, topic: Topic):
        self.rng = rng
        self.topic = topic
        self.used_headings: set[str] = set()

    def person(self) -> str:
        return f"{self.rng.choice(FIRST)} {self.rng.choice(LAST)}"

    def sentence(self, topic: Topic | None = None) -> str:
        t, r = topic or self.topic, self.rng
        verb = r.choice(t.verbs)
        metric = r.choice(t.metrics)
        n, n2, n3 = r.sample(t.nouns, 3)
        fields = {
            "role": r.choice(t.roles),
            "role2": r.choice(t.roles),
            "v": verb[0],
            "vpp": verb[1],
            "adj": r.choice(t.adjectives),
            "adj2": r.choice(t.adjectives),
            "n": n,
            "N": n[0].upper() + n[1:],
            "n2": n2,
            "n3": n3,
            "k": r.randint(2, 12),
            "k3": r.randint(10, 900),
            "period": r.choice(PERIODS),
            "place": r.choice(PLACES),
            "site": site(r.choice(PLACES)),
            "month": r.choice(MONTHS),
            "day": r.randint(1, 28),
            "year": r.randint(2019, 2026),
            "metric": metric[0],
            "metricv": f"{r.randint(metric[2], metric[3])} {metric[1]}",
            "metricv2": f"{r.randint(metric[2], metric[3])} {metric[1]}",
            "person": self.person(),
            "pct": r.randint(3, 60),
            "money": f"{r.randint(2, 900) * 100:,}",
            "season": r.choice(SEASONS),
        }
        text = r.choice(TEMPLATES).format(**fields)
        return text[0].upper() + text[1:]

    def paragraph(self, lo: int = 3, hi: int = 6) -> str:
        # One paragraph in six strays into a neighbouring topic, as real documents do.
        other = self.rng.choice(TOPICS) if self.rng.random() < 1 / 6 else None
        return " ".join(self.sentence(other) for _ in range(self.rng.randint(lo, hi)))

    def heading(self) -> str:
        """A section heading not used before in this document."""
        for _ in range(20):
            text = self._heading()
            if text not in self.used_headings:
                break
        self.used_headings.add(text)
        return text

    def _heading(self) -> str:
        t, r = self.topic, self.rng
        forms = (
            f"{r.choice(t.adjectives).capitalize()} {r.choice(t.nouns)}",
            f"How we {r.choice(t.verbs)[0]} {r.choice(t.nouns)}",
            f"{r.choice(t.nouns).capitalize()} at the {r.choice(PLACES)}",
            f"Rules for {r.choice(t.nouns)}",
            f"{r.choice(t.metrics)[0].capitalize()} and targets",
        )
        return r.choice(forms)

    def bullets(self) -> list[str]:
        t, r = self.topic, self.rng
        out = []
        for _ in range(r.randint(3, 6)):
            when = r.choice(_WHEN) or f"every {r.choice(PERIODS)}"
            verb, adj, noun = r.choice(t.verbs)[0], r.choice(t.adjectives), r.choice(t.nouns)
            out.append(f"{verb.capitalize()} the {adj} {noun} {when}")
        return out


@dataclass
class Doc:
    index: int
    fmt: str
    topic: Topic
    title: str
    date: datetime
    fact: str  # one sentence only this document states
    fact_question: str
    fact_answer: str
    fact_place: str
    fact_qty: int
    path: str


def plan_doc(seed: int, index: int, fmt: str) -> tuple[Doc, Writer]:
    rng = random.Random(f"{seed}:{index}")
    topic = rng.choice(TOPICS)
    writer = Writer(rng, topic)
    date = datetime(2019, 1, 1, 9, 0, tzinfo=timezone.utc) + timedelta(
        days=rng.randint(0, 7 * 365), minutes=rng.randint(0, 9 * 60)
    )
    title = f"{rng.choice(topic.titles)} {date.year}"
    if rng.random() < 0.4:
        title += f" - {rng.choice(PLACES)}"
    code = f"NT-{index:05d}"
    place = rng.choice(PLACES)
    qty = rng.randint(3, 400)
    where = site(place)
    fact = f"The reorder point for item {code} at the {where} is {qty} units."
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    if fmt == "eml":
        folder = f"mail/{topic.dept}/{date.year}-{date.month:02d}"
    elif fmt == "csv":
        folder = f"{topic.dept}/data/{date.year}"
    else:
        folder = f"{topic.dept}/{date.year}/{topic.slug}"
    doc = Doc(
        index=index,
        fmt=fmt,
        topic=topic,
        title=title,
        date=date,
        fact=fact,
        fact_question=f"What is the reorder point for item {code} at the {where}?",
        fact_answer=f"{qty} units",
        fact_place=place,
        fact_qty=qty,
        path=f"{folder}/{slug}-{index:05d}.{fmt}",
    )
    return doc, writer


def sections(doc: Doc, w: Writer, lo: int, hi: int) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) pairs; the document's fact goes into one paragraph."""
    out = [(w.heading(), [w.paragraph() for _ in range(w.rng.randint(2, 4))]) for _ in
           range(w.rng.randint(lo, hi))]  # fmt: skip
    s = w.rng.randrange(len(out))
    paras = out[s][1]
    p = w.rng.randrange(len(paras))
    paras[p] = f"{paras[p]} {doc.fact}"
    return out


# --- renderers -------------------------------------------------------------------------------


def render_md(doc: Doc, w: Writer) -> tuple[bytes, int]:
    lines = []
    if w.rng.random() < 0.3:
        lines += ["---", f"title: {doc.title}", f"owner: {w.person()}",
                  f"updated: {doc.date.date().isoformat()}", "---", ""]  # fmt: skip
    lines += [f"# {doc.title}", "", f"_{COMPANY} - {doc.topic.dept} - {doc.date:%d %B %Y}_", ""]
    for heading, paras in sections(doc, w, 3, 7):
        lines += [f"## {heading}", ""]
        for p in paras:
            lines += [p, ""]
        if w.rng.random() < 0.3:
            lines += [f"- {b}" for b in w.bullets()] + [""]
        if w.rng.random() < 0.15:
            m = w.rng.choice(doc.topic.metrics)
            lines += [f"| Location | {m[0].capitalize()} ({m[1]}) |", "|---|---|"]
            lines += [f"| {pl} | {w.rng.randint(m[2], m[3])} |"
                      for pl in w.rng.sample(PLACES, 4)] + [""]  # fmt: skip
    return "\n".join(lines).encode("utf-8"), 1


def render_txt(doc: Doc, w: Writer) -> tuple[bytes, int]:
    lines = [doc.title.upper(), f"{COMPANY} - {doc.date:%Y-%m-%d}"]
    lines += [f"Prepared by: {w.person()}", ""]
    for n, (heading, paras) in enumerate(sections(doc, w, 2, 6), start=1):
        lines += [f"{n}. {heading.upper()}", ""]
        for p in paras:
            lines += _wrap(p, 78) + [""]
        if w.rng.random() < 0.3:
            lines += [f"  * {b}" for b in w.bullets()] + [""]
    return "\n".join(lines).encode("utf-8"), 1


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + ([line] if line else [])


_NAV = "".join(f'<li><a href="/{s}">{s.capitalize()}</a></li>' for s in
               ("shop", "stores", "rentals", "repairs", "help"))  # fmt: skip


def render_html(doc: Doc, w: Writer) -> tuple[bytes, int]:
    e = html.escape
    body = [f"<h1>{e(doc.title)}</h1>", f'<p class="meta">Updated {doc.date:%d %B %Y}</p>']
    for heading, paras in sections(doc, w, 3, 6):
        body.append(f"<h2>{e(heading)}</h2>")
        body += [f"<p>{e(p)}</p>" for p in paras]
        if w.rng.random() < 0.3:
            body.append("<ul>" + "".join(f"<li>{e(b)}</li>" for b in w.bullets()) + "</ul>")
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(doc.title)} | {COMPANY}</title>\n</head>\n<body>\n"
        f'<header><a href="/">{COMPANY}</a><nav><ul>{_NAV}</ul></nav></header>\n'
        "<main>\n<article>\n" + "\n".join(body) + "\n</article>\n</main>\n"
        f"<footer><p>&copy; {doc.date.year} {COMPANY}, Inc. &middot; "
        '<a href="/privacy">Privacy</a> &middot; <a href="/terms">Terms</a></p></footer>\n'
        "</body>\n</html>\n"
    )
    return page.encode("utf-8"), 1


def render_eml(doc: Doc, w: Writer) -> tuple[bytes, int]:
    sender, to = w.person(), w.person()
    paras = [p for _, ps in sections(doc, w, 1, 3) for p in ps]
    text = "\n\n".join([f"Hi {to.split()[0]},"] + ["\n".join(_wrap(p, 72)) for p in paras]
                       + [f"Thanks,\n{sender}\n{w.rng.choice(doc.topic.roles).capitalize()}, "
                          f"{COMPANY}"])  # fmt: skip
    msg = EmailMessage(policy=email.policy.default)

    def addr(name: str) -> str:
        return f"{name} <{name.lower().replace(' ', '.')}@northwind-outfitters.example>"

    msg["From"] = addr(sender)
    msg["To"] = addr(to)
    msg["Subject"] = doc.title
    msg["Date"] = format_datetime(doc.date)
    msg["Message-ID"] = f"<bench-{doc.index:05d}@northwind-outfitters.example>"
    msg.set_content(text + "\n", cte="7bit")
    if w.rng.random() < 0.4:
        html_body = "".join(f"<p>{html.escape(p)}</p>\n" for p in text.split("\n\n"))
        html_doc = f"<html><body>\n{html_body}</body></html>\n"
        msg.add_alternative(html_doc, subtype="html", cte="7bit")
        msg.set_boundary(f"=_bench_{doc.index:05d}")
    return msg.as_bytes(), 1


def render_csv(doc: Doc, w: Writer) -> tuple[bytes, int]:
    t, r = doc.topic, w.rng
    metric = r.choice(t.metrics)
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["item_code", "description", "location", "owner", metric[0].replace(" ", "_"),
                  "reorder_point", "last_checked"])  # fmt: skip
    # The document's fact is one row of the table.
    rows = [(
        f"NT-{doc.index:05d}", f"{doc.title} reference item", doc.fact_place, w.person(),
        r.randint(metric[2], metric[3]), doc.fact_qty, doc.date.date().isoformat(),
    )]  # fmt: skip
    for k in range(r.randint(20, 300)):
        rows.append((
            f"NT-{doc.index:05d}-{k:03d}",
            f"{r.choice(t.adjectives)} {r.choice(t.nouns)}",
            r.choice(PLACES),
            w.person(),
            r.randint(metric[2], metric[3]),
            r.randint(2, 400),
            (doc.date - timedelta(days=r.randint(0, 400))).date().isoformat(),
        ))  # fmt: skip
    r.shuffle(rows)
    out.writerows(rows)
    return buf.getvalue().encode("utf-8"), 1


def render_docx(doc: Doc, w: Writer) -> tuple[bytes, int]:
    from docx import Document

    d = Document()
    d.add_heading(doc.title, level=0)
    d.add_paragraph(f"{COMPANY} - {doc.topic.name} - {doc.date:%d %B %Y}")
    for heading, paras in sections(doc, w, 3, 6):
        d.add_heading(heading, level=1)
        for p in paras:
            d.add_paragraph(p)
        if w.rng.random() < 0.3:
            for b in w.bullets():
                d.add_paragraph(b, style="List Bullet")
        if w.rng.random() < 0.2:
            m = w.rng.choice(doc.topic.metrics)
            table = d.add_table(rows=1, cols=2)
            table.style = "Table Grid"
            table.rows[0].cells[0].text = "Location"
            table.rows[0].cells[1].text = f"{m[0].capitalize()} ({m[1]})"
            for pl in w.rng.sample(PLACES, 4):
                cells = table.add_row().cells
                cells[0].text, cells[1].text = pl, str(w.rng.randint(m[2], m[3]))
    props = d.core_properties
    props.title, props.author, props.last_modified_by = doc.title, COMPANY, COMPANY
    props.revision = 1
    naive = doc.date.replace(tzinfo=None)
    props.created = props.modified = props.last_printed = naive
    buf = io.BytesIO()
    d.save(buf)
    return normalise_zip(buf.getvalue()), 1


_HEADERS = (
    lambda d: f"{COMPANY} - {d.title}",
    lambda d: f"{d.title} | Revised {d.date:%Y-%m-%d}",
    lambda d: f"{d.topic.name.capitalize()} - Internal - {COMPANY}",
)
_FOOTERS = (
    lambda n: f"Page {n} of {{nb}}",
    lambda n: f"- {n} -",
    lambda n: f"{COMPANY} | Confidential | Page {n}",
    lambda n: str(n),
)


def render_pdf(doc: Doc, w: Writer) -> tuple[bytes, int]:
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    header_text = w.rng.choice(_HEADERS)(doc)
    footer = w.rng.choice(_FOOTERS)

    class Pdf(FPDF):
        def header(self) -> None:
            self.set_font("Helvetica", "I", 8.5)
            self.cell(0, 5, header_text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self.ln(5)

        def footer(self) -> None:
            self.set_y(-15)
            self.set_font("Helvetica", "", 8.5)
            self.cell(0, 8, footer(self.page_no()), align="C")

    pdf = Pdf(format=w.rng.choice(("letter", "A4")))
    pdf.set_margins(20, 16, 20)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.alias_nb_pages()
    pdf.set_creation_date(FIXED)
    pdf.set_title(doc.title)
    pdf.set_author(COMPANY)
    pdf.set_compression(True)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 17)
    _text_lines(pdf, doc.title, 8)
    pdf.ln(3)

    target = w.rng.randint(2, 12)
    fact_done = False
    # Fill `target` pages: sections until the last page is reached, then paragraphs while a
    # whole paragraph still fits on it.
    while True:
        on_last = pdf.page_no() >= target
        if on_last and pdf.get_y() > pdf.page_break_trigger - 70:
            break
        if not on_last or w.rng.random() < 0.3:
            if pdf.get_y() > pdf.page_break_trigger - 25:
                pdf.add_page()  # no heading alone at the foot of a page
            pdf.set_font("Helvetica", "B", 12.5)
            _text_lines(pdf, w.heading(), 7)
            pdf.ln(1)
        pdf.set_font("Helvetica", "", 10.5)
        text = w.paragraph(3, 5)
        if not fact_done and (pdf.page_no() >= (target + 1) // 2 or on_last):
            text, fact_done = f"{text} {doc.fact}", True
        _text_lines(pdf, text, 5.3)
        pdf.ln(2.5)
    if not fact_done:  # not reached with the sizes above; kept so every PDF states its fact
        _text_lines(pdf, doc.fact, 5.3)
    return bytes(pdf.output()), pdf.page_no()


_WIDTHS: dict[tuple[str, float, str], float] = {}


def _text_lines(pdf, text: str, height: float) -> None:
    """Write `text` as left-aligned lines of the current font, one cell per line.

    Does what multi_cell does for plain text, without its per-character line
    breaking, which costs most of the generation time: word widths are cached.
    """
    from fpdf.enums import XPos, YPos

    room = pdf.w - pdf.l_margin - pdf.r_margin - 2 * pdf.c_margin
    style, size = pdf.font_style, pdf.font_size_pt

    def width(word: str) -> float:
        key = (style, size, word)
        if key not in _WIDTHS:
            _WIDTHS[key] = pdf.get_string_width(word)
        return _WIDTHS[key]

    space = width(" ")
    line: list[str] = []
    used = 0.0
    for word in text.split():
        ww = width(word)
        if line and used + space + ww > room:
            pdf.cell(0, height, " ".join(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            line, used = [], 0.0
        used += ww + (space if line else 0.0)
        line.append(word)
    if line:
        pdf.cell(0, height, " ".join(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


RENDERERS = {
    "pdf": render_pdf,
    "md": render_md,
    "html": render_html,
    "docx": render_docx,
    "txt": render_txt,
    "eml": render_eml,
    "csv": render_csv,
}


# --- driver -------------------------------------------------------------------------------


def assign_formats(n: int, seed: int) -> list[str]:
    """Exactly the shares of FORMAT_SHARES (largest remainder), in a seeded order."""
    raw = {f: share * n for f, share in FORMAT_SHARES.items()}
    counts = {f: int(v) for f, v in raw.items()}
    for f in sorted(raw, key=lambda f: (counts[f] - raw[f], f))[: n - sum(counts.values())]:
        counts[f] += 1
    formats = [f for f in FORMAT_SHARES for _ in range(counts[f])]
    random.Random(f"{seed}:formats").shuffle(formats)
    return formats


_OUT = Path(".")  # set in each worker by _init
_SEED = 0


def _init(out: str, seed: int) -> None:
    global _OUT, _SEED
    _OUT, _SEED = Path(out), seed


def _make(job: tuple[int, str]) -> dict:
    index, fmt = job
    doc, writer = plan_doc(_SEED, index, fmt)
    data, pages = RENDERERS[fmt](doc, writer)
    path = _OUT / doc.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {
        "path": doc.path,
        "format": fmt,
        "topic": doc.topic.slug,
        "title": doc.title,
        "pages": pages,
        "bytes": len(data),
        "question": doc.fact_question,
        "answer": doc.fact_answer,
        "fact": doc.fact,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="directory to create (must be empty)")
    parser.add_argument("--docs", type=int, default=1000, help="number of documents")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--manifest", type=Path, help="write one JSON line per document here")
    args = parser.parse_args(argv)

    if args.docs < 1:
        parser.error("--docs must be at least 1")
    out: Path = args.out_dir
    if out.exists() and any(out.iterdir()):
        parser.error(f"{out} is not empty; remove it first (old files would mix with the corpus)")
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    jobs = list(enumerate(assign_formats(args.docs, args.seed)))
    if args.jobs > 1:
        ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
        with ctx.Pool(args.jobs, initializer=_init, initargs=(str(out), args.seed)) as pool:
            records = list(pool.imap(_make, jobs, chunksize=4))
    else:
        _init(str(out), args.seed)
        records = [_make(job) for job in jobs]
    elapsed = time.perf_counter() - started

    if args.manifest:
        args.manifest.parent.mkdir(parents=True, exist_ok=True)
        with args.manifest.open("w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, sort_keys=True) + "\n")

    files, size, pages = Counter(), Counter(), Counter()
    for rec in records:
        files[rec["format"]] += 1
        size[rec["format"]] += rec["bytes"]
        pages[rec["format"]] += rec["pages"]
    print(f"{len(records)} documents in {out} "
          f"(seed {args.seed}, {args.jobs} jobs, {elapsed:.1f} s)")  # fmt: skip
    print(f"{'format':<8}{'files':>7}{'bytes':>13}{'avg bytes':>11}  notes")
    for fmt in FORMAT_SHARES:
        if files[fmt]:
            note = ""
            if fmt == "pdf":
                note = f"{pages[fmt]} pages, {pages[fmt] / files[fmt]:.1f} per file"
            print(f"{fmt:<8}{files[fmt]:>7}{size[fmt]:>13,}{size[fmt] // files[fmt]:>11,}  {note}")
    print(f"{'total':<8}{sum(files.values()):>7}{sum(size.values()):>13,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
