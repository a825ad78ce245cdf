"""Korean matching: regexes over a morpheme sequence from the Kiwi analyser.

Korean glues particles and endings onto stems ("죽여버릴 거야" = 죽이 + 어 + 버리 + ㄹ
+ 거 + 이 + 야), so rules are written against the morpheme sequence, rendered as
" 죽이/VV 어/EC 버리/VX ㄹ/ETM 거/NNB 이/VCP 야/EF ". A rule is a regex over that
line whose tokens are "form/TAG" separated by single spaces. Offsets of a hit come
from the morphemes' own offsets, so they point into the original text.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_right
from dataclasses import dataclass

from . import compose
from .model import CONTEXT_DIRECT, CONTEXT_NEGATED, CONTEXT_REPORTED, Pattern

# Kiwi writes final consonants of endings as conjoining jamo (U+11A8..U+11C2: "ᆯ");
# people type compatibility jamo ("ㄹ"). Rules and tokens both use the typed form.
_JONGSEONG = "".join(chr(c) for c in range(0x11A8, 0x11C3))
_COMPAT = "ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ"
_JAMO_TO_COMPAT = str.maketrans(_JONGSEONG, _COMPAT)

_QUOTE_TAG = "QUOT"  # marker split off a quotative ending: 죽인다고 -> ㄴ다/EF + 고/QUOT
_QUOTATIVE_TAGS = {_QUOTE_TAG, "JKQ"}
# -다고/-라고/-자고/-냐고, -다며/-다면서 (quoting), -ㄴ대 (contracted "-다고 해").
_QUOTATIVE_ENDING = re.compile(r"^(.*(?:다|라|자|냐))(고|며|면서)$")
_CONTRACTED_QUOTE = re.compile(r"^(ㄴ|는)?대$")

_NEGATOR_ADVERBS = {"안", "못"}
_NEGATOR_TAG = "NEG"
_NEGATOR_AUXILIARIES = {"않", "못하", "말"}  # after -지: 죽이지 않아 / 못해 / 마
_NEGATED_INTENT_NOUNS = {"리", "생각", "일", "마음", "수", "적", "의도"}  # 죽일 리 없어
_NEGATION_LOOKAHEAD = 3
_REPORT_LOOKAHEAD = 4
_SENTENCE_END_TAGS = {"SF"}
_SCOPE_BREAK_TAGS = {"sentence": {"SF"}, "clause": {"SF", "SP"}}
# Text between quotation marks is someone's words, not the speaker's own speech act.
_QUOTED = re.compile(
    r'["\u201c\u201d\u2018\u2019\'「『]([^"\u201c\u201d\u2018\u2019\'「」『』]+)["\u201c\u201d\u2018\u2019\'」』]'
)
# Someone else's intent against the speaker ("팀장님이 나 죽일 거야"): a third person marked as
# subject before the hit, the speaker as its object, and the listener nowhere in it.
_FIRST_PERSON = {"나", "저", "우리", "내", "제"}
_SECOND_PERSON = {"너", "니", "당신", "네", "자기", "너희", "니네", "느그", "니들", "너네"}
_SUBJECT_PARTICLES = {"JKS"}

_kiwi = None
_kiwi_lock = threading.Lock()


def kiwi():
    """The process-wide analyser (building one takes over a second)."""
    global _kiwi
    with _kiwi_lock:
        if _kiwi is None:
            from kiwipiepy import Kiwi

            _kiwi = Kiwi()
        return _kiwi


@dataclass(frozen=True)
class Morpheme:
    form: str
    tag: str
    start: int
    end: int

    @property
    def item(self) -> str:
        return f"{self.form}/{self.tag}"


def normalise_rule_text(rule: str) -> str:
    return rule.translate(_JAMO_TO_COMPAT)


def compile_rule(expanded_rule: str) -> re.Pattern:
    """A rule must start and end on morpheme boundaries of the rendered line."""
    body = re.sub(r"\s+", " ", normalise_rule_text(expanded_rule).strip())
    return re.compile(r"(?<= )(?:" + body + r")(?= )")


def analyse(text: str) -> list[Morpheme]:
    morphemes: list[Morpheme] = []
    for token in kiwi().tokenize(text):
        form = re.sub(r"\s", "_", token.form.translate(_JAMO_TO_COMPAT))
        tag = str(token.tag).split("-")[0]  # VV-I / VV-R (irregular) -> VV
        if tag == "MAG" and form in _NEGATOR_ADVERBS:
            # Own tag, so a rule's "any adverb" slot ({{T}}/MAG) cannot swallow 안/못;
            # a rule that means negation (가만 안 둔다) writes 안/NEG.
            tag = _NEGATOR_TAG
        morphemes.extend(_split_quotative(form, tag, token.start, token.start + token.len))
    return morphemes


def _split_quotative(form: str, tag: str, start: int, end: int) -> list[Morpheme]:
    """Split a quoting ending so the quoted clause keeps its own final ending."""
    if tag in ("EC", "EF"):
        quoted = _QUOTATIVE_ENDING.match(form)
        contracted = _CONTRACTED_QUOTE.match(form) if tag == "EF" else None
        if quoted:
            base, marker = quoted.group(1), quoted.group(2)
        elif contracted:
            base, marker = (contracted.group(1) or "") + "다", "대"
        else:
            return [Morpheme(form, tag, start, end)]
        cut = max(start, end - len(marker))
        return [Morpheme(base, "EF", start, cut), Morpheme(marker, _QUOTE_TAG, cut, end)]
    return [Morpheme(form, tag, start, end)]


class _Rendered:
    """The morphemes as one line (" a/T b/T ... ") and where each one begins in it."""

    def __init__(self, morphemes: list[Morpheme]):
        self.morphemes = morphemes
        self.offsets: list[int] = []
        parts = [" "]
        length = 1
        for morpheme in morphemes:
            self.offsets.append(length)
            parts.append(morpheme.item + " ")
            length += len(morpheme.item) + 1
        self.line = "".join(parts)

    def morpheme_range(self, match: re.Match) -> tuple[int, int]:
        first = bisect_right(self.offsets, match.start()) - 1
        last = bisect_right(self.offsets, match.end() - 1) - 1
        return first, last


def _without_negators(morphemes: list[Morpheme]) -> list[Morpheme]:
    kept: list[Morpheme] = []
    skip_next = False
    for index, morpheme in enumerate(morphemes):
        if skip_next:
            skip_next = False
            continue
        following = morphemes[index + 1] if index + 1 < len(morphemes) else None
        if morpheme.tag == _NEGATOR_TAG:
            continue
        if (
            morpheme.form == "지"
            and morpheme.tag == "EC"
            and following is not None
            and following.tag == "VX"
            and following.form in _NEGATOR_AUXILIARIES
        ):
            skip_next = True
            continue
        kept.append(morpheme)
    return kept


def scan(text: str, patterns: list[Pattern]) -> list[tuple[Pattern, int, int, str, dict]]:
    """(pattern, start, end, context, rule) for every Korean hit, offsets into `text`."""
    morphemes = analyse(text)
    full = _Rendered(morphemes)
    stripped = _Rendered(_without_negators(morphemes))
    quoted = [m.span(1) for m in _QUOTED.finditer(text)]
    found: list[tuple[Pattern, int, int, str, dict]] = []
    for pattern in patterns:
        for rule in pattern.rules:
            if rule.is_phrase:
                found.extend(_scan_phrase(text, pattern, rule, morphemes, full, stripped, quoted))
                continue
            for first_index, scope_morphemes in _scopes(morphemes, rule.scope):
                rendered = _Rendered(scope_morphemes)
                scope = compose.Scope(
                    line=rendered.line,
                    gap=lambda x, y, r=rendered: _gap(r, x, y),
                    original=lambda x, y, r=rendered: _line_span(r, x, y),
                    text=text,
                )
                for match in compose.find(rule, scope):
                    first = first_index + _morpheme_at(rendered, match.line_start)
                    last = first_index + _morpheme_at(rendered, match.line_end - 1)
                    context = _context(morphemes, first, last, quoted, pattern.category)
                    if context != CONTEXT_NEGATED and _negated_between(rendered, match, scope_morphemes):
                        context = CONTEXT_NEGATED
                    found.append((pattern, match.start, match.end, context, match.to_dict()))
    return found


def _scan_phrase(text, pattern, rule, morphemes, full, stripped, quoted):
    found = []
    spans: list[tuple[int, int]] = []
    slot = rule.slots[0]
    for match in slot.compiled.finditer(full.line):
        first, last = full.morpheme_range(match)
        if _vetoed(rule, morphemes, first):
            continue
        start, end = _span(morphemes[first : last + 1])
        spans.append((start, end))
        found.append(
            (
                pattern,
                start,
                end,
                _context(morphemes, first, last, quoted, pattern.category),
                _phrase_rule(rule, text, start, end),
            )
        )
    # A hit that needs the negator gone (죽이지 않을 거야 -> 죽이 을 거야) is negated.
    for match in slot.compiled.finditer(stripped.line):
        first, last = stripped.morpheme_range(match)
        start, end = _span(stripped.morphemes[first : last + 1])
        if not any(start < e and s < end for s, e in spans):
            found.append((pattern, start, end, CONTEXT_NEGATED, _phrase_rule(rule, text, start, end)))
    return found


def _vetoed(rule, morphemes: list[Morpheme], index: int) -> bool:
    """A phrase pattern's `unless` regexes veto a hit when found in its sentence."""
    if not rule.unless:
        return False
    for first, sentence in _scopes(morphemes, "sentence"):
        if first <= index < first + len(sentence):
            line = _Rendered(sentence).line
            return any(veto.search(line) for veto in rule.unless)
    return False


def _phrase_rule(rule, text: str, start: int, end: int) -> dict:
    return compose.RuleMatch(
        rule, (compose.SlotMatch(rule.slots[0].name, start, end, text[start:end]),), 0, 0
    ).to_dict()


def _negated_between(rendered: _Rendered, match, scope_morphemes: list[Morpheme]) -> bool:
    """A negator (안/못, -지 않/못/말) between two slots denies the composition."""
    spans = match.line_spans
    for (_, end), (start, _) in zip(spans, spans[1:]):
        first = _morpheme_at(rendered, end - 1) + 1
        last = _morpheme_at(rendered, start)
        gap = scope_morphemes[first:last]
        for index, morpheme in enumerate(gap):
            if morpheme.tag == _NEGATOR_TAG:
                return True
            following = gap[index + 1] if index + 1 < len(gap) else None
            if (
                (morpheme.form, morpheme.tag) == ("지", "EC")
                and following is not None
                and following.form in _NEGATOR_AUXILIARIES
            ):
                return True
    return False


def _scopes(morphemes: list[Morpheme], scope: str) -> list[tuple[int, list[Morpheme]]]:
    breaks = _SCOPE_BREAK_TAGS.get(scope)
    if not breaks:
        return [(0, morphemes)] if morphemes else []
    scopes, begin = [], 0
    for index, morpheme in enumerate(morphemes):
        if morpheme.tag in breaks:
            if index + 1 > begin:
                scopes.append((begin, morphemes[begin : index + 1]))
            begin = index + 1
    if begin < len(morphemes):
        scopes.append((begin, morphemes[begin:]))
    return scopes


def _morpheme_at(rendered: _Rendered, line_offset: int) -> int:
    return max(0, bisect_right(rendered.offsets, line_offset) - 1)


def _gap(rendered: _Rendered, x: int, y: int) -> int:
    """Morphemes wholly between line offsets x (an end) and y (a start)."""
    return max(0, _morpheme_at(rendered, y) - _morpheme_at(rendered, max(0, x - 1)) - 1)


def _line_span(rendered: _Rendered, x: int, y: int) -> tuple[int, int]:
    first, last = _morpheme_at(rendered, x), _morpheme_at(rendered, y - 1)
    return _span(rendered.morphemes[first : last + 1])


def _span(morphemes: list[Morpheme]) -> tuple[int, int]:
    return min(m.start for m in morphemes), max(m.end for m in morphemes)


# Third-party harm ("팀장님이 나 죽일 거야") is judged for threats only: elsewhere a
# third-person subject is part of the speaker's own act ("부모님이 사진 보게 된다").
_THIRD_PARTY_CATEGORIES = {"threat"}


def _context(
    morphemes: list[Morpheme], first: int, last: int, quoted: list[tuple[int, int]] = (), category: str | None = None
) -> str:
    if _negated_around(morphemes, first, last) or _opinion_negated(morphemes, last):
        return CONTEXT_NEGATED
    if _quoted_after(morphemes, last):
        return CONTEXT_REPORTED
    start = morphemes[first].start
    if any(a <= start < b for a, b in quoted):
        return CONTEXT_REPORTED
    if category in _THIRD_PARTY_CATEGORIES and _third_party(morphemes, first, last):
        return CONTEXT_REPORTED
    if category == "intimidation" and _third_party(morphemes, first, last, strict=True):
        return CONTEXT_REPORTED
    return CONTEXT_DIRECT


def _third_party(morphemes: list[Morpheme], first: int, last: int, strict: bool = False) -> bool:
    """팀장님이 나 죽일 거야: a third-person subject, the speaker as object, no listener.
    strict (intimidation): a third-person subject and neither speaker nor listener at all
    (선생님이 걔 가만 안 둘 거야)."""
    begin = first
    while begin > 0 and morphemes[begin - 1].tag not in _SENTENCE_END_TAGS:
        begin -= 1
    sentence = morphemes[begin : last + 1]
    if any(m.form in _SECOND_PERSON and m.tag in ("NP", "IC") for m in sentence):
        return False
    subjects = [sentence[i - 1] for i, m in enumerate(sentence) if m.tag in _SUBJECT_PARTICLES and i > 0]
    third_subject = any(s.form not in _FIRST_PERSON and s.form not in _SECOND_PERSON for s in subjects)
    if not third_subject:
        return False
    first_person = [i for i, m in enumerate(sentence) if m.form in _FIRST_PERSON and m.tag == "NP"]
    if strict:
        return not first_person
    # the speaker as object: a first-person pronoun not marked as subject or topic
    speaker_object = any(
        i + 1 >= len(sentence) or not (sentence[i + 1].tag in _SUBJECT_PARTICLES or sentence[i + 1].tag == "JX")
        for i in first_person
    )
    return speaker_object or not first_person


def _negated_around(morphemes: list[Morpheme], first: int, last: int) -> bool:
    # 안 죽여 / 절대 안 죽여: the negating adverb sits right before the predicate.
    before = morphemes[max(0, first - 2) : first]
    if before and before[-1].tag == _NEGATOR_TAG:
        return True
    if len(before) == 2 and before[1].tag == "MAG" and before[0].tag == _NEGATOR_TAG:
        return True
    after = morphemes[last + 1 : last + 1 + _NEGATION_LOOKAHEAD]
    forms = [(m.form, m.tag) for m in after]
    # 죽이지 않아 / 죽이지 마 / 때리지 못해
    if (
        len(forms) >= 2
        and forms[0] == ("지", "EC")
        and ((forms[1][1] == "VX" and forms[1][0] in _NEGATOR_AUXILIARIES) or forms[1] == ("못", _NEGATOR_TAG))
    ):
        return True
    # 죽일 리가 없어 / 죽일 생각 없어 / 때릴 수 없어
    if forms and forms[0][0] in _NEGATED_INTENT_NOUNS and forms[0][1].startswith("NN"):
        rest = [f for f in forms[1:] if not f[1].startswith("J")]
        if rest and rest[0] == ("없", "VA"):
            return True
    return False


_THINKING = {"생각", "여기", "느끼", "믿"}  # -다고 생각해: an opinion, not a quotation


def _quoted_after(morphemes: list[Morpheme], last: int) -> bool:
    """죽인다고 했어 / 죽일 거라고 / "죽여버린다"라고: the words are someone else's."""
    index = _quote_index(morphemes, last)
    if index is None:
        return False
    after = morphemes[index + 1 : index + 3]
    if after and after[0].form in _THINKING:
        return False
    # 히스테리라고 할걸: a prediction of what someone will say, in the speaker's own voice
    if len(after) == 2 and after[0].form == "하" and after[1].form in ("ㄹ걸", "을걸"):
        return False
    return True


def _quote_index(morphemes: list[Morpheme], last: int) -> int | None:
    for index in range(last + 1, min(len(morphemes), last + 1 + _REPORT_LOOKAHEAD)):
        if morphemes[index].tag in _SENTENCE_END_TAGS:
            return None
        if morphemes[index].tag in _QUOTATIVE_TAGS:
            return index
    return None


def _opinion_negated(morphemes: list[Morpheme], last: int) -> bool:
    """멍청하다고 생각 안 해: an opinion the speaker denies."""
    index = _quote_index(morphemes, last)
    if index is None:
        return False
    after = morphemes[index + 1 : index + 6]
    if not after or after[0].form not in _THINKING:
        return False
    return any(m.tag == _NEGATOR_TAG or (m.form in _NEGATOR_AUXILIARIES and m.tag == "VX") for m in after[1:])
