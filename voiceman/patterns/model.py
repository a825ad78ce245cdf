"""Typed records of the pattern database: a compiled pattern and a hit in a text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .compose import Rule

CATEGORIES = ("threat", "intimidation", "coercion", "gaslighting", "insult")
LANGUAGES = ("ko", "en")

# Where a hit sits in the speech act: said by the speaker ("direct"); someone else's words
# or intent ("reported": quoted, after a reporting verb, or a third person harming someone
# other than the listener, "my boss will murder me"); or denied ("negated" -- suppressed
# unless asked for).
CONTEXT_DIRECT = "direct"
CONTEXT_REPORTED = "reported"
CONTEXT_NEGATED = "negated"
CONTEXTS = (CONTEXT_DIRECT, CONTEXT_REPORTED, CONTEXT_NEGATED)


@dataclass(frozen=True)
class Pattern:
    """One entry of the database, with its rule already expanded and compiled."""

    id: str
    category: str
    severity: int
    description: str
    language: str
    rule: str  # the rule as written in the YAML file (before macro expansion); JSON for rules
    compiled: re.Pattern | None = field(repr=False, compare=False)  # phrase patterns only
    positive_examples: tuple[str, ...] = ()
    negative_examples: tuple[str, ...] = ()
    source_file: Path | None = None
    line: int = 0  # 1-based line of the pattern's mapping in source_file
    rules: tuple[Rule, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "category": self.category,
            "severity": self.severity,
            "description": self.description,
            "language": self.language,
            "rule": self.rule,
            "rules": [r.to_dict() for r in self.rules],
            "examples": {
                "positive": list(self.positive_examples),
                "negative": list(self.negative_examples),
            },
            "source": f"{self.source_file}:{self.line}" if self.source_file else None,
        }


@dataclass(frozen=True)
class PatternHit:
    """A pattern found in a text; start/end are character offsets into the input."""

    pattern_id: str
    category: str
    severity: int
    start: int
    end: int
    text: str
    context: str
    # The rule that fired: {"id": "<pattern id>#<rule name>", "slots": [{"name", "start",
    # "end", "text"}, ...]} -- offsets into the input, like start/end.
    rule: dict | None = field(default=None, compare=False)
    language: str | None = None  # the language whose rules found it (ko/en)

    def to_dict(self) -> dict:
        entry = {
            "pattern_id": self.pattern_id,
            "category": self.category,
            "severity": self.severity,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "context": self.context,
        }
        if self.rule is not None:
            entry["rule"] = self.rule
        if self.language is not None:
            entry["language"] = self.language
        return entry


class PatternDatabaseError(ValueError):
    """The database on disk is malformed; names the file and (where known) the line."""

    def __init__(self, file: Path | str, line: int | None, cause: str):
        self.file = Path(file)
        self.line = line
        self.cause = cause
        where = f"{self.file}:{line}" if line else f"{self.file}"
        super().__init__(f"{where}: {cause}")
