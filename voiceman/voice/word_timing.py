"""Speech rate and pause ratio from a transcript segment's word times.

Definitions (stated once here, repeated in the report documentation):

- speech_rate_wps = number of words in the segment / segment duration (end - start).
  The duration includes the pauses inside the segment, so this is speaking rate in the
  ordinary sense, not articulation rate; the pause ratio reports the pauses separately.
- pause_ratio = 1 - (time covered by the union of the words' [start, end] intervals,
  clipped to the segment) / segment duration. Overlapping words are counted once.
  If any word lacks usable times, the word-based ratio would understate the speech, so
  none is given here and the caller falls back to Praat's silence detector.
"""

from __future__ import annotations

import math
from typing import Any


def _finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _check_words(words: list[dict]) -> None:
    if not isinstance(words, list):
        raise ValueError(f"segment words: expected a list of word dicts, got {type(words).__name__}")
    for index, word in enumerate(words):
        if not isinstance(word, dict):
            raise ValueError(f"segment words[{index}]: expected a dict, got {type(word).__name__}")


def count_words(words: list[dict]) -> int:
    """Words with non-empty text; punctuation-only tokens are not in WhisperX's word list."""
    _check_words(words)
    return sum(1 for word in words if isinstance(word.get("word"), str) and word["word"].strip())


def speech_rate_wps(words: list[dict] | None, start: float, end: float, notes: list[str]) -> float | None:
    if not words:
        notes.append("speech_rate_wps: segment has no words")
        return None
    duration = end - start
    if duration <= 0:
        notes.append("speech_rate_wps: segment has no duration")
        return None
    return count_words(words) / duration


def word_pause_ratio(words: list[dict] | None, start: float, end: float, notes: list[str]) -> float | None:
    """Pause ratio from word coverage, or None (with a note) when word times cannot give it."""
    if not words:
        notes.append("pause_ratio: no words; measured by intensity-based silence instead")
        return None
    _check_words(words)
    duration = end - start
    if duration <= 0:
        raise ValueError(f"word_pause_ratio: segment end ({end}) must be after start ({start})")
    intervals: list[tuple[float, float]] = []
    untimed = 0
    for word in words:
        word_start, word_end = _finite_number(word.get("start")), _finite_number(word.get("end"))
        if word_start is None or word_end is None or word_end < word_start:
            untimed += 1
            continue
        clipped_start, clipped_end = max(word_start, start), min(word_end, end)
        if clipped_end > clipped_start:
            intervals.append((clipped_start, clipped_end))
    if untimed:
        notes.append(
            f"pause_ratio: {untimed} of {len(words)} words lack times; measured by intensity-based silence instead"
        )
        return None
    covered = 0.0
    reach = -math.inf  # end of the union built so far; intervals are visited by start time
    for interval_start, interval_end in sorted(intervals):
        if interval_end <= reach:
            continue
        covered += interval_end - max(interval_start, reach)
        reach = interval_end
    return min(1.0, max(0.0, 1.0 - covered / duration))
