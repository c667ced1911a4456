"""PII redaction for text sent to an external model provider, with reversible placeholders.

    text ─find─▶ PiiSpan[] (non-overlapping, longest wins) ─redact─▶ "<EMAIL_1> called <PHONE_1>"
                                                                          │ Vault (one per request)
    model answer "write to <EMAIL_1>" ─────────────────────restore──────────┘─▶ "write to ana@example.org"

What is found, and how false positives are kept out:

    EMAIL        a regex after RFC 5322's dot-atom form (unicode letters allowed)
    PHONE        phonenumbers' PhoneNumberMatcher for each configured region, which also catches
                 +CC numbers of any country; leniency STRICT_GROUPING (a valid number whose digit
                 groups follow its country's format, so "2024-000123" is none); a bare digit run
                 (no +, brackets or separators) counts only after a cue such as "tel" or "call",
                 since bare runs in prose are mostly order or invoice numbers
    CARD         13-19 digits, issuer digit 2-6, Luhn valid; one block, or printed groups (first of
                 4 digits, each of 3-6, one kind of separator), not right after an IBAN's country
                 and check digits (the digits of an IBAN that failed its own check are no card)
    IBAN         compact or grouped by spaces, checked by stdnum.iban (country format + mod 97)
    NATIONAL_ID  US SSN (stdnum.us.ssn, only in its 3-2-4 grouped form), UK National Insurance
                 number (regex of the HMRC prefix rules; stdnum has no validator for it), German
                 Steuer-ID (stdnum.de.idnr), French NIR (stdnum.fr.nir), Spanish DNI and NIE
                 (stdnum.es.dni / stdnum.es.nie)
    extra        configured name -> regex; the kind is the name upper-cased

Candidates of the checksum kinds are found by regex and kept only when the validator accepts them,
so an order number or a date is not redacted. Grouped numbers are tried on whole groups only,
longest first, so "card 4111 1111 1111 1111 and 2" still yields the card.

Spellings of one value (an IBAN with and without spaces, a phone number in national and +CC form,
an e-mail address in another case) share one placeholder, which restores to the first spelling
seen: the model can relate them, at the cost of the restored text showing that one spelling.

Placeholders look like `<KIND_n>`. Text already shaped like a placeholder is never matched again,
so redacting twice changes nothing; restoring matches the whole placeholder up to its `>`, so
`<EMAIL_10>` is never read as `<EMAIL_1>`, and tolerates what models do when echoing it (case,
spaces inside the brackets, HTML-escaped brackets).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import phonenumbers
from stdnum import iban as std_iban
from stdnum import luhn
from stdnum.de import idnr as de_idnr
from stdnum.es import dni as es_dni
from stdnum.es import nie as es_nie
from stdnum.fr import nir as fr_nir
from stdnum.us import ssn as us_ssn

from ragline.errors import ConfigError

DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR")

# A placeholder as written by Vault.placeholder; also what find() must never match inside.
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_[1-9][0-9]*>")
# A placeholder as a model may echo it: any case, spaces inside the brackets, HTML-escaped brackets.
_ECHOED_PLACEHOLDER = re.compile(
    r"(?:<|&lt;)\s*([A-Za-z][A-Za-z0-9_]*?)_([1-9][0-9]*)\s*(?:>|&gt;)"
)
_KIND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class PiiSpan:
    kind: str  # "EMAIL", "PHONE", "CARD", "IBAN", "NATIONAL_ID", or the extra pattern's name upper-cased
    start: int
    end: int
    text: str


class Vault:
    """Placeholders of one request: the same original always maps to the same placeholder, across
    the question and every context chunk, so the model can still relate them."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], str] = {}
        self._originals: dict[str, str] = {}  # placeholder -> first original seen
        self._counts: dict[str, int] = {}

    def placeholder(self, kind: str, original: str, key: str | None = None) -> str:
        """The placeholder of `original`. `key` identifies the value when one value has several
        spellings (an IBAN with and without spaces, a phone number in national and +CC form):
        all spellings then share one placeholder, which restores to the first spelling seen."""
        if not _KIND_NAME.match(kind):
            raise ValueError(f"placeholder kind {kind!r}: use letters, digits and '_', starting with a letter")
        kind = kind.upper()
        lookup = (kind, original if key is None else key)
        found = self._by_key.get(lookup)
        if found is not None:
            return found
        n = self._counts.get(kind, 0) + 1
        self._counts[kind] = n
        made = f"<{kind}_{n}>"
        self._by_key[lookup] = made
        self._originals[made] = original
        return made

    def restore(self, text: str) -> str:
        """Placeholders back to originals; placeholders this vault did not issue are left as they are."""

        def back(m: re.Match[str]) -> str:
            issued = f"<{m.group(1).upper()}_{m.group(2)}>"
            return self._originals.get(issued, m.group(0))

        return _ECHOED_PLACEHOLDER.sub(back, text)

    @property
    def counts(self) -> dict[str, int]:
        """kind -> how many distinct values were redacted."""
        return dict(self._counts)

    def __len__(self) -> int:
        return len(self._originals)


# ---------------------------------------------------------------------------------------------
# Detectors. Each yields (kind, start, end, key); key groups spellings of one value (see Vault).

_Candidate = tuple[str, int, int, str | None]

_EMAIL = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])"
    r"[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*"
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}(?![\w-])"
)


def _emails(text: str) -> Iterator[_Candidate]:
    for m in _EMAIL.finditer(text):
        # The domain is case-insensitive and so, in practice, is the mailbox.
        yield "EMAIL", m.start(), m.end(), m.group(0).casefold()


def _grouped(
    text: str, run: re.Pattern[str], max_chars: int, valid: Callable[[str], bool]
) -> Iterator[tuple[int, int]]:
    """Spans inside each match of `run` (groups joined by single separators) that pass `valid`.

    Only whole groups are tried, longest first from each start, so a valid number followed by an
    unrelated group is still found, and a span never cuts a group in two."""
    for m in run.finditer(text):
        groups = [(g.start() + m.start(), g.end() + m.start()) for g in re.finditer(r"[^\s-]+", m.group(0))]
        i = 0
        while i < len(groups):
            start = groups[i][0]
            last = i  # the last group that still fits in max_chars: bounds the work on long runs
            while last + 1 < len(groups) and groups[last + 1][1] - start <= max_chars:
                last += 1
            for j in range(last, i - 1, -1):
                end = groups[j][1]
                if end - start <= max_chars and valid(text[start:end]):
                    yield start, end
                    i = j
                    break
            i += 1


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


_DIGIT_RUN = re.compile(r"(?<![\w.,/-])\d+(?:[ -]\d+)*(?![\w/-]|[.,]\d)")


_IBAN_HEAD = re.compile(r"[A-Z]{2}\d{2} \Z")


def _is_card(s: str) -> bool:
    d = _digits(s)
    if not (13 <= len(d) <= 19 and d[0] in "23456" and luhn.is_valid(d)):
        return False
    groups = re.split(r"[ -]", s)
    if len(groups) == 1:
        return True
    # Printed card numbers group as 4-4-4-4, 4-6-5, 4-4-4-4-3: one separator kind, first group of 4.
    return len(set(re.findall(r"[ -]", s))) == 1 and len(groups[0]) == 4 and all(3 <= len(g) <= 6 for g in groups)


def _cards(text: str) -> Iterator[_Candidate]:
    for start, end in _grouped(text, _DIGIT_RUN, 19 + 18, _is_card):
        if _IBAN_HEAD.search(text, max(0, start - 5), start):
            continue
        yield "CARD", start, end, _digits(text[start:end])


_IBAN_RUN = re.compile(r"(?<![\w-])[A-Z]{2}\d{2}[A-Z0-9]*(?: [A-Z0-9]+)*(?![\w-])")


def _ibans(text: str) -> Iterator[_Candidate]:
    for start, end in _grouped(text, _IBAN_RUN, 34 + 9, std_iban.is_valid):
        yield "IBAN", start, end, std_iban.compact(text[start:end])


# US SSN only in its grouped form: a bare 9-digit run is far more often something else.
_SSN = re.compile(r"(?<![\w-])\d{3}([- ])\d{2}\1\d{4}(?![\w-])")
# UK NINO: two prefix letters (not D, F, I, Q, U, V; second not O; not BG GB KN NK NT TN ZZ),
# six digits, suffix A-D. https://www.gov.uk/hmrc-internal-manuals/national-insurance-manual/nim39110
_NINO = re.compile(
    r"(?<![\w-])(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![\w-])"
)
_DE_IDNR = re.compile(r"(?<![\w.,/-])[1-9]\d(?: ?\d{3}){3}(?![\w/-]|[.,]\d)")
_FR_NIR = re.compile(r"(?<![\w.,/-])[1-478] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?![\w/-]|[.,]\d)")
_ES_DNI = re.compile(r"(?<![\w-])(?:\d{8}|[XYZ]\d{7})[- ]?[A-Z](?![\w-])")

_NATIONAL_IDS: tuple[tuple[re.Pattern[str], Callable[[str], bool]], ...] = (
    (_SSN, us_ssn.is_valid),
    (_NINO, lambda s: True),  # the regex carries every rule there is; NINOs have no check digit
    (_DE_IDNR, de_idnr.is_valid),
    (_FR_NIR, fr_nir.is_valid),
    (_ES_DNI, lambda s: es_dni.is_valid(s) or es_nie.is_valid(s)),
)


def _national_ids(text: str) -> Iterator[_Candidate]:
    for pattern, valid in _NATIONAL_IDS:
        for m in pattern.finditer(text):
            if valid(m.group(0)):
                yield "NATIONAL_ID", m.start(), m.end(), re.sub(r"[\s-]", "", m.group(0)).upper()


# Words that make a bare digit run a phone number ("tel 4155550123", "call 02079460958").
_PHONE_CUE = re.compile(
    r"(?:\b(?:tel|telephone|phone|mobile|mob|cell|fax|call|ring|text|whatsapp|contact|reach)\b|[☎📞])"
    r"(?:\W+\w+){0,3}?\W*$",
    re.IGNORECASE,
)


def _phones(text: str, regions: Sequence[str]) -> Iterator[_Candidate]:
    seen: set[tuple[int, int]] = set()
    # "ZZ" (unknown region) still finds numbers in +CC form when no region is configured.
    for region in regions or ("ZZ",):
        for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.STRICT_GROUPING):
            if (m.start, m.end) in seen:
                continue
            seen.add((m.start, m.end))
            if m.raw_string.isdigit() and not _PHONE_CUE.search(text[max(0, m.start - 30) : m.start]):
                continue
            key = phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)
            yield "PHONE", m.start, m.end, key


# On a tie in length, the earlier kind in this order wins (a configured pattern before all); a
# national id's check digits are stronger evidence than a card's Luhn digit.
_PRIORITY = ("EMAIL", "IBAN", "NATIONAL_ID", "CARD", "PHONE")


class Redactor:
    """Finds PII in text and replaces it with placeholders from a Vault. Cheap to build, no model."""

    def __init__(
        self,
        *,
        extra_patterns: Mapping[str, str] | None = None,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
    ):
        self.phone_regions = tuple(r.upper() for r in phone_regions)
        for region in self.phone_regions:
            if region not in phonenumbers.SUPPORTED_REGIONS:
                raise ConfigError(f"phone region {region!r}: not an ISO 3166 region phonenumbers knows")
        self._extra: list[tuple[str, re.Pattern[str]]] = []
        for name, pattern in (extra_patterns or {}).items():
            if not _KIND_NAME.match(name):
                raise ConfigError(
                    f"extra redaction pattern {name!r}: the name must be letters, digits and '_', "
                    "starting with a letter (it becomes the placeholder, e.g. <EMPLOYEE_ID_1>)"
                )
            try:
                compiled = re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"extra redaction pattern {name!r}: invalid regular expression: {e}") from e
            self._extra.append((name.upper(), compiled))

    def _candidates(self, text: str) -> Iterator[_Candidate]:
        for kind, pattern in self._extra:
            for m in pattern.finditer(text):
                if m.end() > m.start():  # a pattern that can match "" must not redact nothing
                    yield kind, m.start(), m.end(), None
        yield from _emails(text)
        yield from _ibans(text)
        yield from _cards(text)
        yield from _national_ids(text)
        yield from _phones(text, self.phone_regions)

    def _resolved(self, text: str) -> list[tuple[PiiSpan, str | None]]:
        taken = [(m.start(), m.end()) for m in _PLACEHOLDER.finditer(text)]  # never redact a placeholder
        extra_kinds = [k for k, _ in self._extra]

        def rank(c: _Candidate) -> tuple[int, int, int]:
            kind, start, end, _ = c
            order = -1 if kind in extra_kinds else _PRIORITY.index(kind)
            return (-(end - start), start, order)

        kept: list[tuple[PiiSpan, str | None]] = []
        for kind, start, end, key in sorted(self._candidates(text), key=rank):
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            kept.append((PiiSpan(kind, start, end, text[start:end]), key))
        kept.sort(key=lambda sk: sk[0].start)
        return kept

    def find(self, text: str) -> list[PiiSpan]:
        """PII in `text`: non-overlapping, in order; on overlap the longest span wins."""
        return [span for span, _ in self._resolved(text)]

    def redact(self, text: str, vault: Vault) -> str:
        """`text` with each PII value replaced by its placeholder in `vault`."""
        parts: list[str] = []
        pos = 0
        for span, key in self._resolved(text):
            parts.append(text[pos : span.start])
            parts.append(vault.placeholder(span.kind, span.text, key))
            pos = span.end
        parts.append(text[pos:])
        return "".join(parts)
