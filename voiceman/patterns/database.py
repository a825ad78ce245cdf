"""The loaded pattern database and the scan over a text."""

from __future__ import annotations

import re
from pathlib import Path

from . import english, korean
from . import language as language_id
from .compose import PHRASE_RULE
from .loader import DEFAULT_DATABASE_DIR, read_database
from .model import CONTEXT_NEGATED, Pattern, PatternHit

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_SCANNERS = {"ko": korean.scan, "en": english.scan}


class PatternDatabase:
    """Patterns of one database directory, plus its version and content hash."""

    def __init__(self, version: str, patterns: list[Pattern], sha256: str, path: Path, files: list[Path]):
        self.version = version
        self.patterns = tuple(patterns)
        self.sha256 = sha256
        self.path = path
        self.files = tuple(files)
        self._by_language: dict[str, list[Pattern]] = {}
        for pattern in self.patterns:
            self._by_language.setdefault(pattern.language, []).append(pattern)

    def to_dict(self) -> dict:
        """Provenance for reports: which database, which bytes."""
        return {
            "path": str(self.path),
            "version": self.version,
            "sha256": self.sha256,
            "pattern_count": len(self.patterns),
            "files": [f.name for f in self.files],
        }

    def scan(self, text: str, lang: str = "auto", include_negated: bool = False) -> list[PatternHit]:
        """Every pattern hit in `text`; negated hits only when include_negated is set."""
        if lang not in ("ko", "en", "auto"):
            raise ValueError(f"lang must be 'ko', 'en' or 'auto', not {lang!r}")
        return self._scan_languages(text, self._languages_for(text, lang), include_negated)

    def _scan_languages(self, text: str, languages: list[str], include_negated: bool) -> list[PatternHit]:
        hits: dict[tuple[str, int, int], PatternHit] = {}
        for language in languages:
            patterns = self._by_language.get(language, [])
            if not patterns:
                continue
            for pattern, start, end, context, rule in _SCANNERS[language](text, patterns):
                if context == CONTEXT_NEGATED and not include_negated:
                    continue
                key = (pattern.id, start, end)
                if key not in hits:  # the first rule of the pattern that found this span
                    hits[key] = PatternHit(
                        pattern.id,
                        pattern.category,
                        pattern.severity,
                        start,
                        end,
                        text[start:end],
                        context,
                        rule,
                        language,
                    )
        return sorted(_prefer_phrases(hits.values()), key=lambda h: (h.start, h.end, h.pattern_id))

    def scan_segment(
        self, text: str, lang: str = "auto", include_negated: bool = False
    ) -> tuple[list[PatternHit], dict]:
        """Hits of one transcript segment and the language record that chose its rules:
        {"language", "method", "score", "detected", "scanned"} (see language.py)."""
        if lang == "auto":
            chosen = language_id.detect(text)
            record = chosen.to_dict()
            hits = self._scan_languages(text, list(chosen.scanned), include_negated)
            return hits, record
        record = {"language": lang, "method": "configured", "score": None, "detected": None, "scanned": [lang]}
        return self.scan(text, lang=lang, include_negated=include_negated), record

    @staticmethod
    def _languages_for(text: str, lang: str) -> list[str]:
        if lang != "auto":
            return [lang]
        if not _HANGUL.search(text) and not _LATIN_WORD.search(text):
            return []
        return list(language_id.detect(text).scanned)


def _is_phrase(hit: PatternHit) -> bool:
    return bool(hit.rule) and hit.rule["id"].endswith(f"#{PHRASE_RULE}")


def _prefer_phrases(hits) -> list[PatternHit]:
    """A compositional hit that overlaps a listed phrase of the same category and context
    says nothing new: the listed phrase (the more specific pattern) is kept alone."""
    hits = list(hits)
    phrases = [h for h in hits if _is_phrase(h)]
    return [
        h
        for h in hits
        if _is_phrase(h)
        or not any(
            p.category == h.category and p.context == h.context and p.start < h.end and h.start < p.end for p in phrases
        )
    ]


def load_database(path: str | Path | None = None) -> PatternDatabase:
    """Load and validate the database (default: the repository's config/patterns/)."""
    directory = Path(path) if path is not None else DEFAULT_DATABASE_DIR
    loaded = read_database(directory)
    return PatternDatabase(loaded.version, loaded.patterns, loaded.sha256, directory, loaded.files)


def database_files(path: str | Path | None = None) -> list[str]:
    """Every file the database is read from (patterns, lexicons, manifest, schema), not its
    evaluation set: the patterns rule declares these as input, so editing one re-scans."""
    directory = Path(path) if path is not None else DEFAULT_DATABASE_DIR
    return sorted(str(p) for p in directory.rglob("*") if p.is_file() and "eval" not in p.relative_to(directory).parts)
