"""Typed records of the pattern database: a compiled pattern and a hit in a text."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

CATEGORIES = ("threat", "intimidation", "coercion", "gaslighting", "insult")
LANGUAGES = ("ko", "en")

# Where a hit sits in the speech act: said by the speaker ("direct"), quoted from
# someone else ("reported"), or denied ("negated" -- suppressed unless asked for).
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
    rule: str  # the rule as written in the YAML file (before macro expansion)
    compiled: re.Pattern = field(repr=False, compare=False)
    positive_examples: tuple[str, ...] = ()
    negative_examples: tuple[str, ...] = ()
    source_file: Path | None = None
    line: int = 0  # 1-based line of the pattern's mapping in source_file

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "category": self.category,
            "severity": self.severity,
            "description": self.description,
            "language": self.language,
            "rule": self.rule,
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

    def to_dict(self) -> dict:
        return {
            "pattern_id": self.pattern_id,
            "category": self.category,
            "severity": self.severity,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "context": self.context,
        }


class PatternDatabaseError(ValueError):
    """The database on disk is malformed; names the file and (where known) the line."""

    def __init__(self, file: Path | str, line: int | None, cause: str):
        self.file = Path(file)
        self.line = line
        self.cause = cause
        where = f"{self.file}:{line}" if line else f"{self.file}"
        super().__init__(f"{where}: {cause}")
