"""Compositional rules: slots that must co-occur within a scope, in order, within distances.

A pattern's ``match`` is either one phrase regex (``regex`` / ``morphs``) or a list of
``rules``. A rule names slots -- regexes over the same line the phrase rules use (English:
the normalised text; Korean: the ' form/TAG ' morpheme line), usually written with lexicon
macros ({{harm_verb}}, {{exposure_object}}) -- and says where they must meet:

  scope     sentence | clause | text: the slots must all fall in one such span;
  slots     in order; each after the previous one, at most ``max_gap`` tokens (words or
            morphemes) after it when max_gap is given;
  unless    regexes that veto the rule when any of them matches the scope.

A hit of a rule spans its first slot's start to its last slot's end, and carries the rule
id (``<pattern id>#<rule name>``) and each slot's name and offsets, so a report can say
exactly which words made which part of the rule fire.

Both languages run the same search (``find``) over a ``Scope``: a line to match on, plus
the functions that count tokens between two line offsets and map a line span back to the
input text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

PHRASE_RULE = "phrase"  # the rule name of a pattern matched by one regex
SCOPES = ("clause", "sentence", "text")


@dataclass(frozen=True)
class Slot:
    name: str
    source: str  # as written in the YAML (before macro expansion)
    compiled: re.Pattern = field(repr=False, compare=False)
    max_gap: int | None = None  # tokens allowed between the previous slot and this one


@dataclass(frozen=True)
class Rule:
    """One way a pattern can fire: a phrase regex (one slot), or a slot composition."""

    id: str  # "<pattern id>#<name>"
    name: str
    slots: tuple[Slot, ...]
    scope: str = "text"
    unless: tuple[re.Pattern, ...] = field(default=(), compare=False)
    unless_source: tuple[str, ...] = ()

    @property
    def is_phrase(self) -> bool:
        return self.name == PHRASE_RULE

    def to_dict(self) -> dict:
        entry = {
            "id": self.id,
            "scope": self.scope,
            "slots": [
                {"name": s.name, "rule": s.source, **({"max_gap": s.max_gap} if s.max_gap is not None else {})}
                for s in self.slots
            ],
        }
        if self.unless_source:
            entry["unless"] = list(self.unless_source)
        return entry


@dataclass(frozen=True)
class SlotMatch:
    name: str
    start: int  # offsets into the scanned input text
    end: int
    text: str

    def to_dict(self) -> dict:
        return {"name": self.name, "start": self.start, "end": self.end, "text": self.text}


@dataclass(frozen=True)
class RuleMatch:
    rule: Rule
    slots: tuple[SlotMatch, ...]
    line_start: int  # where the first slot starts in the language's full line (context checks)
    line_end: int
    line_spans: tuple[tuple[int, int], ...] = ()  # each slot's span in the full line

    @property
    def start(self) -> int:
        return min(s.start for s in self.slots)

    @property
    def end(self) -> int:
        return max(s.end for s in self.slots)

    def to_dict(self) -> dict:
        return {"id": self.rule.id, "slots": [s.to_dict() for s in self.slots]}


@dataclass
class Scope:
    """A span of the scanned line that a rule's slots must share."""

    line: str
    # tokens between two offsets of `line` (for max_gap)
    gap: Callable[[int, int], int]
    # a span of `line` -> (start, end) in the input text
    original: Callable[[int, int], tuple[int, int]]
    text: str  # the input text (for SlotMatch.text)
    offset: int = 0  # where `line` starts in the language's full line (for context checks)


def find(rule: Rule, scope: Scope) -> list[RuleMatch]:
    """Non-overlapping matches of `rule` in `scope`, leftmost first."""
    if any(veto.search(scope.line) for veto in rule.unless):
        return []
    # Every match starting at a token start, overlapping ones included: a slot may begin
    # inside what another slot's leftmost match would have taken ("and | nobody gets hurt").
    starts = [0] + [i + 1 for i, c in enumerate(scope.line) if c in " \n"]
    candidates = []
    for slot in rule.slots:
        spans = set()
        for position in starts:
            m = slot.compiled.match(scope.line, position)
            if m is not None and m.end() > m.start():
                spans.add(m.span())
        candidates.append(sorted(spans))
    if any(not c for c in candidates):
        return []
    found: list[RuleMatch] = []
    after = 0
    while True:
        chain = _search(rule, candidates, 0, after, None, scope)
        if chain is None:
            return found
        slots = []
        for slot, (a, b) in zip(rule.slots, chain):
            start, end = scope.original(a, b)
            slots.append(SlotMatch(slot.name, start, end, scope.text[start:end]))
        found.append(
            RuleMatch(
                rule,
                tuple(slots),
                chain[0][0] + scope.offset,
                chain[-1][1] + scope.offset,
                tuple((a + scope.offset, b + scope.offset) for a, b in chain),
            )
        )
        after = chain[-1][1]


def _search(rule: Rule, candidates, index: int, after: int, previous_end: int | None, scope: Scope):
    slot = rule.slots[index]
    for a, b in candidates[index]:
        if a < after:
            continue
        if previous_end is not None and slot.max_gap is not None and scope.gap(previous_end, a) > slot.max_gap:
            break  # candidates are in order: every later one is further away
        if index + 1 == len(rule.slots):
            return [(a, b)]
        rest = _search(rule, candidates, index + 1, b, b, scope)
        if rest is not None:
            return [(a, b)] + rest
    return None
