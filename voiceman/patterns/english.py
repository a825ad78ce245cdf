"""English matching: regexes over a normalised text, with negation and reported speech.

The text is normalised first (curly quotes, contractions, "gonna", whitespace) so a
rule written as "i will kill you" also finds "I'll kill you" and "I'm gonna kill
you". Each rule is run twice: on that text, and on a copy with negators ("not",
"never", "do not") removed. A hit that only exists once the negator is gone
("I would never hurt you") is a negated hit.
"""

from __future__ import annotations

import re

from . import compose
from .model import CONTEXT_DIRECT, CONTEXT_NEGATED, CONTEXT_REPORTED, Pattern
from .textview import TextView

_FLAGS = re.IGNORECASE

# Contractions that do not split as "stem + n't".
_IRREGULAR_NEGATIONS = {
    "won't": "will not",
    "can't": "can not",
    "shan't": "shall not",
    "ain't": "is not",
    "cannot": "can not",
}
# ASR often drops the apostrophe; only spellings that are not also real words.
_APOSTROPHE_LESS = {
    "dont": "do not",
    "doesnt": "does not",
    "didnt": "did not",
    "wouldnt": "would not",
    "couldnt": "could not",
    "shouldnt": "should not",
    "isnt": "is not",
    "arent": "are not",
    "wasnt": "was not",
    "werent": "were not",
    "havent": "have not",
    "im": "i am",
    "ive": "i have",
    "youre": "you are",
    "youll": "you will",
    "theyre": "they are",
}
_CLITICS = {"ll": " will", "d": " would", "re": " are", "m": " am", "ve": " have"}
_SLANG = {
    "gonna": "going to",
    "wanna": "want to",
    "gotta": "got to",
    "imma": "i am going to",
    "i'ma": "i am going to",
    "ima": "i am going to",
    "finna": "going to",
    "tryna": "trying to",
    "lemme": "let me",
    "gimme": "give me",
}
# "'s" is only expanded after pronouns, where it cannot be a possessive.
_S_PRONOUNS = ("he", "she", "it", "that", "there", "who", "what", "here", "where")

_APOSTROPHES = re.compile(r"[\u2018\u2019\u02bc\u0060\u00b4]")
_WHITESPACE = re.compile(r"\s+")
_IRREGULAR_RE = re.compile(r"\b(?:won't|can't|shan't|ain't|cannot)\b", _FLAGS)
_NT_RE = re.compile(r"(?<=\w)n't\b", _FLAGS)
_CLITIC_RE = re.compile(r"(?<=\w)'(ll|d|re|m|ve)\b", _FLAGS)
_S_RE = re.compile(r"\b(" + "|".join(_S_PRONOUNS) + r")'s\b", _FLAGS)
_SLANG_RE = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in _SLANG) + r")\b", _FLAGS)
_APOSTROPHE_LESS_RE = re.compile(r"\b(?:" + "|".join(_APOSTROPHE_LESS) + r")\b", _FLAGS)

# Negators removed for the second matching pass ("do not" goes as one unit so that
# "I don't want to hurt you" becomes "I want to hurt you").
_NEGATOR_RE = re.compile(r" ?\b(?:(?:do|does|did) not|not|never)\b", _FLAGS)
_NEGATOR_WORDS = {"not", "never"}
# "I'm not kidding, I will..." -- the negator denies the joke, not what follows.
_NOT_A_DENIAL = {
    "kidding",
    "joking",
    "playing",
    "lying",
    "bluffing",
    "messing",
    "afraid",
    "scared",
    "sorry",
    "only",
    "just",
    "even",
}
_NEGATION_WINDOW = 2  # words before a hit that can negate it ("would never | hurt you")

_CLAUSE_BREAK = re.compile(r"[.!?;,\n]|\bbut\b", _FLAGS)
_SENTENCE_BREAK = re.compile(r"[.!?;\n]")
_REPORTING_VERB = re.compile(
    r"\b(?:said|says|say|saying|told|tells|tell|telling|threatened|threatens|texted|texts|"
    r"wrote|writes|claimed|claims|warned|warns|yelled|screamed|shouted|mentioned|"
    r"messaged|emailed|swore|promised|kept telling|keeps telling|"
    r"reads?(?= ?:)|read out|reads out|reading out)\b",
    _FLAGS,
)
# Text between double quotes is someone's words, not the speaker's own speech act.
_QUOTED = re.compile(r'["\u201c\u201d\u201e]([^"\u201c\u201d\u201e]+)["\u201c\u201d\u201e]')
# The agent of a hit is a third person and nobody in it is the listener: "my boss will
# murder me", "he is going to hurt himself" -- someone else's intent, not the speaker's.
_THIRD_PERSON_START = re.compile(
    r"^(?:he|she|they|someone|somebody|people|(?:my|his|her|their|our|the) [a-z']+)\b", _FLAGS
)
_SECOND_PERSON = re.compile(r"\b(?:you|your|yours|yourself|yourselves|u|ya|ur|y'all|yall)\b", _FLAGS)
_ACCORDING_TO = re.compile(r"\baccording to\b", _FLAGS)
# Words allowed between the subject and the reporting verb ("he literally said").
_BETWEEN_SUBJECT_AND_VERB = {
    "just",
    "also",
    "then",
    "literally",
    "actually",
    "even",
    "once",
    "always",
    "had",
    "has",
    "have",
    "already",
    "kept",
    "keeps",
    "really",
    "basically",
    "allegedly",
    "apparently",
    "would",
    "did",
    "again",
    "still",
    "openly",
}
_FIRST_PERSON = {"i", "we"}
_WORD = re.compile(r"[\w']+")


def normalise(text: str) -> TextView:
    """The text rules are written against: expanded contractions, single spaces."""
    view = TextView.of(text)
    view = view.rewrite(_APOSTROPHES, lambda m: "'")
    view = view.rewrite(_IRREGULAR_RE, lambda m: _IRREGULAR_NEGATIONS[m.group(0).lower()])
    view = view.rewrite(_NT_RE, lambda m: " not")
    view = view.rewrite(_SLANG_RE, lambda m: _SLANG[m.group(0).lower()])
    view = view.rewrite(_CLITIC_RE, lambda m: _CLITICS[m.group(1).lower()])
    view = view.rewrite(_S_RE, lambda m: m.group(1) + " is")
    view = view.rewrite(_APOSTROPHE_LESS_RE, lambda m: _APOSTROPHE_LESS[m.group(0).lower()])
    return view.rewrite(_WHITESPACE, lambda m: " ")


def compile_rule(expanded_rule: str) -> re.Pattern:
    """Whole-word, case-insensitive regex; literal spaces in a rule match one space."""
    body = _WHITESPACE.sub(" ", expanded_rule.strip())
    return re.compile(r"(?<!\w)(?:" + body + r")(?!\w)", _FLAGS)


def scan(text: str, patterns: list[Pattern]) -> list[tuple[Pattern, int, int, str, dict]]:
    """(pattern, start, end, context, rule) for every English hit, offsets into `text`."""
    full = normalise(text)
    stripped = full.rewrite(_NEGATOR_RE, lambda m: "")
    quoted = [m.span() for m in _QUOTED.finditer(full.text)]
    found: list[tuple[Pattern, int, int, str, dict]] = []
    for pattern in patterns:
        for rule in pattern.rules:
            if rule.is_phrase:
                found.extend(_scan_phrase(text, pattern, rule, full, stripped, quoted))
            else:
                for scope in _scopes(text, full, rule.scope):
                    for match in compose.find(rule, scope):
                        context = _context(full.text, match.line_start, match.line_end, quoted)
                        if context != CONTEXT_NEGATED and _negated_between(full.text, match):
                            context = CONTEXT_NEGATED
                        found.append((pattern, match.start, match.end, context, match.to_dict()))
    return found


def _scan_phrase(
    text: str, pattern: Pattern, rule, full: TextView, stripped: TextView, quoted
) -> list[tuple[Pattern, int, int, str, dict]]:
    found = []
    spans: list[tuple[int, int]] = []
    slot = rule.slots[0]
    for match in slot.compiled.finditer(full.text):
        if match.end() == match.start() or _vetoed(rule, full.text, match.start()):
            continue
        start, end = full.original_span(*match.span())
        spans.append((start, end))
        found.append(
            (
                pattern,
                start,
                end,
                _context(full.text, match.start(), match.end(), quoted),
                _phrase_rule(rule, text, start, end),
            )
        )
    for match in slot.compiled.finditer(stripped.text):
        if match.end() == match.start():
            continue
        start, end = stripped.original_span(*match.span())
        if not any(start < e and s < end for s, e in spans):
            found.append((pattern, start, end, CONTEXT_NEGATED, _phrase_rule(rule, text, start, end)))
    return found


def _vetoed(rule, normalised: str, position: int) -> bool:
    """A phrase pattern's `unless` regexes veto a hit when found in its sentence."""
    if not rule.unless:
        return False
    bounds = [0] + [m.end() for m in _SENTENCE_BREAK.finditer(normalised)] + [len(normalised)]
    start = max(b for b in bounds if b <= position)
    end = min((b for b in bounds if b > position), default=len(normalised))
    return any(veto.search(normalised[start:end]) for veto in rule.unless)


def _phrase_rule(rule, text: str, start: int, end: int) -> dict:
    return compose.RuleMatch(
        rule, (compose.SlotMatch(rule.slots[0].name, start, end, text[start:end]),), 0, 0
    ).to_dict()


_SCOPE_BREAKS = {
    "sentence": _SENTENCE_BREAK,
    "clause": re.compile(r"[.!?;,:\n]|(?<!nothing )(?<!anything )\bbut\b", _FLAGS),
}


def _scopes(text: str, full: TextView, scope: str) -> list[compose.Scope]:
    line = full.text
    bounds = [0, len(line)]
    if scope in _SCOPE_BREAKS:
        bounds = [0] + [m.end() for m in _SCOPE_BREAKS[scope].finditer(line)] + [len(line)]
    scopes = []
    for a, b in zip(bounds, bounds[1:]):
        if b <= a or not line[a:b].strip():
            continue
        scopes.append(
            compose.Scope(
                line=line[a:b],
                gap=lambda x, y, a=a: len(_WORD.findall(line[a + x : a + y])),
                original=lambda x, y, a=a: full.original_span(a + x, a + y),
                text=text,
                offset=a,
            )
        )
    return scopes


def _context(normalised: str, hit_start: int, hit_end: int | None = None, quoted: list[tuple[int, int]] = ()) -> str:
    prefix = normalised[:hit_start]
    if _negated_by_prefix(prefix):
        return CONTEXT_NEGATED
    if any(a <= hit_start < b for a, b in quoted):
        return CONTEXT_REPORTED
    if _reported_by_prefix(prefix):
        return CONTEXT_REPORTED
    if hit_end is not None and _third_party(normalised[hit_start:hit_end]):
        return CONTEXT_REPORTED
    return CONTEXT_DIRECT


_GAP_NEGATOR = re.compile(r"\b(?:not|never|no longer)\b", _FLAGS)


def _negated_between(normalised: str, match: compose.RuleMatch) -> bool:
    """'I would never | hurt | you': a negator between two slots denies the composition."""
    spans = match.line_spans
    return any(_GAP_NEGATOR.search(normalised[a[1] : b[0]]) for a, b in zip(spans, spans[1:]))


def _third_party(hit: str) -> bool:
    return bool(_THIRD_PERSON_START.search(hit)) and not _SECOND_PERSON.search(hit)


def _negated_by_prefix(prefix: str) -> bool:
    clause = _CLAUSE_BREAK.split(prefix)[-1]
    words = [w.lower() for w in _WORD.findall(clause)]
    window = words[-_NEGATION_WINDOW:]
    for offset, word in enumerate(window):
        following = window[offset + 1] if offset + 1 < len(window) else None
        if word in _NEGATOR_WORDS and following not in _NOT_A_DENIAL:
            return True
    return False


def _reported_by_prefix(prefix: str) -> bool:
    """True when the sentence so far attributes the words to someone other than I/we."""
    sentence = _SENTENCE_BREAK.split(prefix)[-1]
    if _ACCORDING_TO.search(sentence):
        return True
    verbs = list(_REPORTING_VERB.finditer(sentence))
    if not verbs:
        return False
    before = [w.lower() for w in _WORD.findall(sentence[: verbs[-1].start()])]
    while before and before[-1] in _BETWEEN_SUBJECT_AND_VERB:
        before.pop()
    # "I told you I'll kill you" is the speaker's own threat, repeated.
    return not (before and before[-1] in _FIRST_PERSON)
