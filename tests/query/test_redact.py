"""PII redaction: each kind found in real sentences, look-alikes left alone, placeholders reversible."""

from __future__ import annotations

import pytest

from query.redact import PiiSpan, Redactor, Vault
from ragline.errors import ConfigError


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(extra_patterns={"employee_id": r"EMP-\d{6}"})


def kinds(redactor: Redactor, text: str) -> list[tuple[str, str]]:
    return [(s.kind, s.text) for s in redactor.find(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Write to ana.lopez@example.org for details.", ("EMAIL", "ana.lopez@example.org")),
        ("Kontakt: jürgen.müller+rag@bücher-shop.de.", ("EMAIL", "jürgen.müller+rag@bücher-shop.de")),
        ("Please call +49 30 901820 before noon.", ("PHONE", "+49 30 901820")),
        ("Reach the desk on (212) 555-0199 any time.", ("PHONE", "(212) 555-0199")),
        ("Our London office: 020 7946 0958.", ("PHONE", "020 7946 0958")),
        ("Le standard: 01 42 68 53 00.", ("PHONE", "01 42 68 53 00")),
        ("Sydney line +61 2 9374 4000 is open.", ("PHONE", "+61 2 9374 4000")),  # +CC of a region not configured
        ("tel 4155550123", ("PHONE", "4155550123")),  # a bare run, after a cue word
        ("Paid with 4111 1111 1111 1111 yesterday.", ("CARD", "4111 1111 1111 1111")),
        ("Card no. 5500-0000-0000-0004 expired.", ("CARD", "5500-0000-0000-0004")),
        ("Amex 3782 822463 10005 on file.", ("CARD", "3782 822463 10005")),
        ("Charged to 4012888888881881.", ("CARD", "4012888888881881")),
        ("Transfer to DE89 3704 0044 0532 0130 00 please.", ("IBAN", "DE89 3704 0044 0532 0130 00")),
        ("Transfer to DE89370400440532013000 please.", ("IBAN", "DE89370400440532013000")),
        ("Account GB82WEST12345698765432 is closed.", ("IBAN", "GB82WEST12345698765432")),
        ("Account GB82 WEST 1234 5698 7654 32 is closed.", ("IBAN", "GB82 WEST 1234 5698 7654 32")),
        ("Her SSN is 536-22-8726.", ("NATIONAL_ID", "536-22-8726")),
        ("NI number AB 12 34 56 C on the payslip.", ("NATIONAL_ID", "AB 12 34 56 C")),
        ("NI number AB123456C on the payslip.", ("NATIONAL_ID", "AB123456C")),
        ("Steuer-ID 36 574 261 809 laut Bescheid.", ("NATIONAL_ID", "36 574 261 809")),
        ("Steuer-ID 36574261809 laut Bescheid.", ("NATIONAL_ID", "36574261809")),
        ("Numéro de sécurité sociale 2 95 10 99 126 111 93.", ("NATIONAL_ID", "2 95 10 99 126 111 93")),
        ("DNI 54362315K y NIE X2482300W.", ("NATIONAL_ID", "54362315K")),
        ("Badge EMP-123456 was revoked.", ("EMPLOYEE_ID", "EMP-123456")),
    ],
)
def test_each_kind_is_found_in_a_sentence(redactor: Redactor, text: str, expected: tuple[str, str]) -> None:
    assert expected in kinds(redactor, text)


def test_spans_point_into_the_text_in_order(redactor: Redactor) -> None:
    text = "Mail bo@example.com, then call +44 20 7946 0958 about DE89370400440532013000."
    spans = redactor.find(text)
    assert [s.kind for s in spans] == ["EMAIL", "PHONE", "IBAN"]
    assert all(text[s.start : s.end] == s.text for s in spans)
    assert spans == sorted(spans, key=lambda s: s.start)


@pytest.mark.parametrize(
    "text",
    [
        "Reference 4111 1111 1111 1112 was declined.",  # 16 digits failing Luhn
        "Ticket 1234567890123456 is open.",  # 16 digits failing Luhn, one block
        "Order number 4012345678 shipped.",  # 10 digits that would be a valid US number
        "Order #48213-775 and invoice 2024-000123 are paid.",
        "Meeting on 2024-03-15 at 10:30, or 15/03/2024.",
        "IBAN DE89 3704 0044 0532 0130 01 bounced.",  # bad check digits, spaced
        "IBAN DE89370400440532013001 bounced.",  # bad check digits, compact
        "Upgrade from 1.2.3.4 to 10.20.30.40 today.",  # version strings
        "Total 1,234,567.89 EUR, ZIP 90210, pi 3.14159.",
        "SSN 000-12-3456 is not issued.",  # all-zero area: stdnum rejects it
        "Ref GB 12 34 56 A is a made-up prefix.",  # GB is never a NINO prefix
    ],
)
def test_look_alikes_are_not_redacted(redactor: Redactor, text: str) -> None:
    assert redactor.find(text) == []
    assert redactor.redact(text, Vault()) == text


def test_the_digits_of_a_bad_iban_are_no_card(redactor: Redactor) -> None:
    # "3704 0044 0532 0130 01" passes Luhn by chance; it is the body of an IBAN that failed its check.
    assert redactor.find("bad DE89 3704 0044 0532 0130 01") == []


def test_longest_span_wins_on_overlap() -> None:
    # The configured pattern matches inside the e-mail address; the longer e-mail wins.
    r = Redactor(extra_patterns={"ticket": r"T-\d{4}"})
    assert kinds(r, "From ops.T-1234@example.com today") == [("EMAIL", "ops.T-1234@example.com")]
    assert kinds(r, "Ticket T-1234 open") == [("TICKET", "T-1234")]


def test_a_card_number_followed_by_another_number_is_still_found(redactor: Redactor) -> None:
    assert kinds(redactor, "card 4111 1111 1111 1111 2 times") == [("CARD", "4111 1111 1111 1111")]


def test_same_original_gets_same_placeholder_across_texts(redactor: Redactor) -> None:
    vault = Vault()
    question = redactor.redact("What did ana@example.org order?", vault)
    chunk = redactor.redact("ana@example.org and bo@example.org paid with 4111 1111 1111 1111.", vault)
    assert question == "What did <EMAIL_1> order?"
    assert chunk == "<EMAIL_1> and <EMAIL_2> paid with <CARD_1>."
    assert vault.counts == {"EMAIL": 2, "CARD": 1}
    assert len(vault) == 3


def test_spellings_of_one_value_share_a_placeholder(redactor: Redactor) -> None:
    vault = Vault()
    text = "DE89370400440532013000 is DE89 3704 0044 0532 0130 00; +49 30 901820 is 030 901820."
    assert redactor.redact(text, vault) == "<IBAN_1> is <IBAN_1>; <PHONE_1> is <PHONE_1>."
    assert vault.counts == {"IBAN": 1, "PHONE": 1}


def test_restore_round_trip(redactor: Redactor) -> None:
    text = (
        "Ana (ana@example.org, +44 20 7946 0958) paid 4111 1111 1111 1111 from GB82WEST12345698765432; "
        "SSN 536-22-8726, badge EMP-123456."
    )
    vault = Vault()
    redacted = redactor.redact(text, vault)
    for secret in ("ana@example.org", "7946", "4111", "GB82", "536-22", "EMP-123456"):
        assert secret not in redacted
    assert vault.restore(redacted) == text


def test_restore_tells_ten_from_one() -> None:
    vault = Vault()
    for i in range(1, 11):
        vault.placeholder("EMAIL", f"user{i}@example.org")
    assert vault.restore("<EMAIL_10> and <EMAIL_1>") == "user10@example.org and user1@example.org"


def test_restore_survives_a_model_echoing_placeholders() -> None:
    vault = Vault()
    p = vault.placeholder("EMAIL", "ana@example.org")
    assert p == "<EMAIL_1>"
    echoed = "Write to < email_1 >, &lt;EMAIL_1&gt; or <EMAIL_1>. <EMAIL_2> and <CARD_1> are unknown."
    assert vault.restore(echoed) == (
        "Write to ana@example.org, ana@example.org or ana@example.org. <EMAIL_2> and <CARD_1> are unknown."
    )


def test_redaction_is_idempotent(redactor: Redactor) -> None:
    vault = Vault()
    text = "Call +1 (212) 555-0199 or mail ana@example.org, NI AB123456C, EMP-123456."
    once = redactor.redact(text, vault)
    assert redactor.redact(once, vault) == once
    assert redactor.find(once) == []
    # Even a catch-all configured pattern does not eat placeholders.
    greedy = Redactor(extra_patterns={"digits": r"\d+"})
    assert greedy.redact(once, Vault()) == once


def test_placeholders_of_many_values_are_never_redacted_again() -> None:
    vault = Vault()
    r = Redactor()
    text = " ".join(f"u{i}@example.org" for i in range(12))
    once = r.redact(text, vault)
    assert "<EMAIL_12>" in once
    assert r.redact(once, vault) == once
    assert vault.restore(once) == text


def test_extra_pattern_kind_is_upper_cased() -> None:
    r = Redactor(extra_patterns={"case_ref": r"CASE/\d{4}/[A-Z]{2}"})
    vault = Vault()
    assert r.redact("See CASE/2024/AB.", vault) == "See <CASE_REF_1>."
    assert r.find("See CASE/2024/AB.") == [PiiSpan("CASE_REF", 4, 16, "CASE/2024/AB")]


def test_extra_pattern_matching_empty_text_redacts_nothing_empty() -> None:
    r = Redactor(extra_patterns={"maybe": r"X*"})
    assert r.redact("a XX b", Vault()) == "a <MAYBE_1> b"


def test_bad_extra_pattern_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        Redactor(extra_patterns={"employee_id": r"EMP-(\d{6}"})
    message = str(info.value)
    assert "'employee_id'" in message
    assert "invalid regular expression" in message
    assert "missing )" in message


def test_bad_extra_pattern_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'employee id'.*letters, digits and '_'"):
        Redactor(extra_patterns={"employee id": r"EMP-\d{6}"})


def test_unknown_phone_region_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'XX'"):
        Redactor(phone_regions=("US", "XX"))


def test_phone_regions_are_a_parameter() -> None:
    text = "Le standard: 01 42 68 53 00, or +49 30 901820."
    assert kinds(Redactor(phone_regions=("FR",)), text) == [("PHONE", "01 42 68 53 00"), ("PHONE", "+49 30 901820")]
    # Without FR the national French number is not recognised; +CC numbers still are, even with no region.
    assert kinds(Redactor(phone_regions=("US",)), text) == [("PHONE", "+49 30 901820")]
    assert kinds(Redactor(phone_regions=()), text) == [("PHONE", "+49 30 901820")]
