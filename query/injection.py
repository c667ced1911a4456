"""A basic screen for instructions aimed at the model inside retrieved documents (prompt injection).

A retrieved chunk is data, yet a model reads it like any other prompt text; a document that says
"ignore all previous instructions" may be obeyed. Before chunks go into a prompt, `screen` finds
such instructions by rule and replaces each (to the end of its sentence, or of its line for the
line-oriented rules) with "[instruction removed]", so the rest of the chunk can still be used.

    rule                          matches (case-insensitive, any whitespace between words)
    ----                          -------
    ignore-previous-instructions  ignore / disregard / forget (all) previous / prior / above
                                  instructions, rules, prompts...; "... the instructions above";
                                  "ignore everything above"; "ignore / disregard your instructions";
                                  not after "not" / "never" ("do not ignore the previous rules")
    role-switch                   "you are now ..." / "act as ..." / "from now on you are ..." /
                                  "pretend to be ..." naming a persona for a model (an AI, an
                                  assistant, DAN, an unrestricted..., a terminal, developer mode)
    system-prompt-disclosure      reveal / print / show ... your system prompt (or initial
                                  instructions); "what is your system prompt"; "repeat the text above"
    chat-template-token           <|im_start|>, <|system|>, [INST], <<SYS>>, ### System: ...
    new-instructions              "new instructions:" (also updated / revised / system instructions:)
    exfiltration                  send / post / forward ... the conversation, user data, secrets...
                                  to a URL or an e-mail address

The rules are narrow on purpose: ordinary prose ("follow the instructions in the manual", "the
previous section", "you are now logged in", "she will act as a liaison", "send the form to
hr@example.com") is left alone. Matching runs on a normalised view of the text (NFKC, so
full-width letters count; format characters such as zero-width spaces dropped; common Cyrillic
and Greek look-alike letters mapped to Latin), and spans are mapped back to the original text.
This is a screen, not a guarantee: a determined paraphrase gets through, which is why the prompt
also tells the model that passages are data.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

REMOVED = "[instruction removed]"
MAX_EXCERPT = 120
_MAX_EXTENT = 400  # how far past a match its sentence may run before the removal stops anyway


@dataclass(frozen=True)
class InjectionFinding:
    rule: str  # short name of the rule that matched, e.g. "ignore-previous-instructions"
    excerpt: str  # the matched text, at most 120 chars


@dataclass(frozen=True)
class Screened:
    text: str  # the text with each matched instruction replaced by "[instruction removed]"
    findings: list[InjectionFinding]

    @property
    def flagged(self) -> bool:
        return bool(self.findings)


# -- the rules -----------------------------------------------------------------------------------
# Word gaps are \s+ (any whitespace, newlines included, after normalisation).

_QUAL = r"(?:(?:all|any|every|each|of|the|your|my|these|those|its|such)\s+)"
_WHEN = r"(?:previous|previously\s+given|prior|above|preceding|earlier|foregoing|former|original|initial)"
_OBJ = r"(?:instructions?|rules?|prompts?|directions?|directives?|guidelines?|commands?|system\s+prompt)"
_IGNORE = rf"""
    (?<!not\s)(?<!n't\s)(?<!never\s)                                          # "do not ignore ..." is advice
    \b(?:ignore|disregard|forget)\s+(?:
        {_QUAL}{{0,3}}{_WHEN}\s+{_OBJ}                                        # ignore all previous instructions
      | {_QUAL}{{0,3}}{_OBJ}\s+(?:above|before|so\s+far|(?:given|provided)\s+(?:before|earlier|above)
            |you\s+(?:were|have\s+been)\s+given)\b                              # ignore the instructions above
      | (?:everything|anything|all)\s+(?:above|before|(?:said|written|stated)\s+(?:above|before))\b
    )
  | \b(?<!not\s)(?:ignore|disregard)\s+(?:all\s+)?your\s+(?:\w+\s+)?
    (?:instructions|rules|guidelines|programming|system\s+prompt)\b            # not "forget": "don't forget your ..."
"""

# What makes "you are now X" / "act as X" a role for a model rather than a state of a reader. X is
# the complement itself: an optional article, at most three words that are not articles or
# prepositions, then the persona, so "you are now using the model" is no role switch.
_PERSONA = r"""(?:
      AI\b|A\.I\.|assistant|chat\s*bot|bot\b|(?:language\s+)?model\b|LLM|GPT|ChatGPT|DAN\b
    | jail\s*broken|jailbreak|unrestricted|unfiltered|uncensored|unlimited|evil|malicious|hacker
    | (?:developer|dev|god|debug|admin|sudo)\s+mode|(?:linux\s+|unix\s+|bash\s+)?terminal|shell\b
    | persona\b|character\b|no\s+longer\s+(?:an?\s+)?(?:AI|assistant|bound|restricted)
)"""
_ROLE = rf"""
    (?:
        \byou\s+are\s+now\b                                                     # you are now ...
      | \bfrom\s+now\s+on\b[\s,]*(?:you\s+(?:are|will\s+be|will\s+act\s+as)\b)?
      | \bpretend\s+(?:to\s+be|you\s+are|that\s+you\s+are)\b
      | (?:^|(?<=[.!?:;\n>\]])|\bplease|\bnow|\byou\s+(?:will|must|should|shall)\s+(?:now\s+)?)
        \s*act\s+as\b(?:\s+if\s+you\s+(?:are|were))?                            # imperative "act as"
    )
    \s+(?:(?:a|an|the|my|your|in|into|called|named|no\s+longer(?:\s+an?)?)\s+)?
    (?:(?!(?:to|the|a|an|with|using|in|on|for|of|and|or|by|from|at|as|that)\b)[\w'-]+\s+){{0,3}}?
    {_PERSONA}                                                                  # ... a persona for a model
  | \b(?:assistant|AI|model|chat\s*bot|ChatGPT|GPT|LLM)\s*[,:]\s*(?:you\s+are\s+now|act\s+as|from\s+now\s+on)\b
"""

_DISCLOSE = r"""
    \b(?:reveal|print|show|display|output|repeat|tell|give|share|leak|dump|disclose|write\s+out
        |return|list|recite|spell\s+out)
    \s+(?:me\s+|us\s+)?(?:(?:all|the|full|entire|exact|complete|verbatim)\s+)*
    (?:your|the\s+assistant'?s|the\s+model'?s|the\s+AI'?s)\s+
    (?:(?:full|entire|exact|complete|original|initial|hidden|secret|internal|underlying)\s+)*
    (?:system\s+(?:prompt|message|instructions)|prompt\b|(?:initial|original|hidden|secret)\s+instructions)
  | \b(?:reveal|print|show|display|output|repeat|dump|disclose|leak)\s+(?:me\s+|us\s+)?(?:the\s+)?
    (?:(?:full|entire|original|initial|hidden|secret)\s+)+(?:system\s+)?(?:prompt|instructions)
  | \bwhat\s+(?:is|are|was|were)\s+your\s+(?:(?:full|exact|original|initial|hidden|secret)\s+)*
    (?:system\s+prompt|system\s+message|instructions|prompt)\b
  | \b(?:repeat|print|output|reproduce)\s+(?:all\s+|the\s+)*(?:text|words|everything|content|lines)\s+
    (?:above|before\s+this|preceding\s+this|so\s+far)\b
"""

_TEMPLATE = r"""
    <\|\s*(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|begin_of_text|end_of_text
        |start_header_id|end_header_id|eom_id)\s*\|>
  | <\s*/?\s*(?:start_of_turn|end_of_turn)\s*>
  | \[\s*/?\s*INST\s*\]
  | <<\s*/?\s*SYS\s*>>
  | (?:^|(?<=\n))[ \t]*\#{2,}\s*(?:system|assistant|instruction|response)\s*:
"""

_NEW_INSTRUCTIONS = r"\b(?:new|updated|revised|additional|real|actual|system)\s+instructions?\s*:"

# A URL stops before trailing punctuation, so the sentence it ends is found where it really ends.
_URL_OR_MAIL = r"(?:(?:https?://|ftp://|www\.|mailto:)\S*[^\s.,;:!?)\]'\"]|[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
_LOOT = r"""(?:
      (?:this|the|our|all|entire|full|whole|previous)\s+(?:\w+\s+)?(?:conversation|chat|dialog(?:ue)?|session|history|context|messages?)
    | conversation|chat\s+history|system\s+prompt|(?:your\s+)?instructions
    | (?:the\s+|all\s+|any\s+)?(?:user|customer|client|patient|employee)s?'?\s*(?:data|details|information|messages|records|emails?)
    | (?:all|any|every)\s+(?:the\s+)?(?:data|information|documents|files|records|emails|messages)
    | (?:personal|private|sensitive|confidential)\s+(?:data|information|details)
    | credentials|passwords?|api[\s_-]*keys?|access\s+tokens?|tokens|secrets?|session\s+cookies?
    | everything\s+(?:above|you\s+know|in\s+(?:this|the)\s+\w+)
)"""
_EXFIL = rf"""
    \b(?:send|post|upload|forward|transmit|submit|exfiltrate|leak|e-?mail|copy|append|include)\s+
    [^.!?\n]{{0,60}}?{_LOOT}[^.!?\n]{{0,60}}?\b(?:to|at|into|via)\s+{_URL_OR_MAIL}
"""

_RULES: tuple[tuple[str, re.Pattern[str], bool], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE | re.VERBOSE | re.MULTILINE), to_line_end)
    for name, pattern, to_line_end in (
        ("ignore-previous-instructions", _IGNORE, False),
        ("role-switch", _ROLE, False),
        ("system-prompt-disclosure", _DISCLOSE, False),
        ("chat-template-token", _TEMPLATE, True),
        ("new-instructions", _NEW_INSTRUCTIONS, True),
        ("exfiltration", _EXFIL, False),
    )
)

# -- normalisation -------------------------------------------------------------------------------

# Look-alike letters used to slip past filters ("ignоre" with a Cyrillic о). Kept to the common ones.
_CONFUSABLES = str.maketrans(
    "аеорсухіјѕԁԛԝАЕОРСХІЈЅВНКМТαοιυνρτΑΒΕΗΙΚΜΝΟΡΤΧΥΖ",
    "aeopcyxijsdqwAEOPCXIJSBHKMTaoiuvptABEHIKMNOPTXYZ",
)


def _normalised(text: str) -> tuple[str, list[int]]:
    """`text` as the rules see it, and for each of its characters the index it came from."""
    chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        if unicodedata.category(ch) == "Cf":  # zero-width spaces and joiners, bidi marks, soft hyphens
            continue
        for out in unicodedata.normalize("NFKC", ch).translate(_CONFUSABLES):
            chars.append(out)
            origin.append(i)
    return "".join(chars), origin


# -- screening -----------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")


def _extent(text: str, end: int, to_line_end: bool) -> int:
    """Where the instruction matched up to `end` stops: its sentence's end (or its line's)."""
    limit = min(len(text), end + _MAX_EXTENT)
    stop = re.compile(r"\n") if to_line_end else _SENTENCE_END
    m = stop.search(text, end, limit)
    if m is None:
        return limit
    return m.end() if m.group(0) != "\n" else m.start()  # keep the newline, drop the full stop


def _excerpt(matched: str) -> str:
    flat = " ".join(matched.split())
    return flat if len(flat) <= MAX_EXCERPT else flat[: MAX_EXCERPT - 1] + "…"


def screen(text: str) -> Screened:
    """`text` with instructions aimed at the model replaced by "[instruction removed]", and what was found."""
    norm, origin = _normalised(text)
    spans: list[tuple[int, int]] = []
    found: list[tuple[int, InjectionFinding]] = []
    for rule, pattern, to_line_end in _RULES:
        for m in pattern.finditer(norm):
            if m.end() == m.start():
                continue
            start, end = origin[m.start()], origin[m.end() - 1] + 1
            found.append((start, InjectionFinding(rule, _excerpt(text[start:end]))))
            spans.append((start, _extent(text, end, to_line_end)))
    if not spans:
        return Screened(text, [])
    spans.sort()
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    parts: list[str] = []
    pos = 0
    for start, end in merged:
        parts.append(text[pos:start])
        parts.append(REMOVED)
        pos = end
    parts.append(text[pos:])
    # Each removal leaves the marker in place, so no two halves of an instruction are ever joined:
    # one pass is enough (see test_screening_twice_changes_nothing_more).
    findings = [f for _, f in sorted(found, key=lambda sf: sf[0])]  # in text order; stable for ties
    return Screened("".join(parts), findings)
