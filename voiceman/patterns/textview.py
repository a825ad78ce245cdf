"""A rewritten copy of a text that still knows where each character came from.

English matching runs on a normalised text (contractions expanded, whitespace
collapsed, negators removed); every character of a view carries the original span
it stands for, so a match in the view maps back to exact offsets in the input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class TextView:
    text: str
    starts: tuple[int, ...]  # original start offset of each character of `text`
    ends: tuple[int, ...]  # original end offset (exclusive) of each character

    @classmethod
    def of(cls, text: str) -> TextView:
        return cls(text, tuple(range(len(text))), tuple(range(1, len(text) + 1)))

    def rewrite(self, pattern: re.Pattern, replace: Callable[[re.Match], str]) -> TextView:
        """Replace every non-empty match; new characters stand for the whole match."""
        pieces: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        kept_from = 0
        for match in pattern.finditer(self.text):
            a, b = match.span()
            if a == b:
                continue
            pieces.append(self.text[kept_from:a])
            starts.extend(self.starts[kept_from:a])
            ends.extend(self.ends[kept_from:a])
            new = replace(match)
            pieces.append(new)
            starts.extend([self.starts[a]] * len(new))
            ends.extend([self.ends[b - 1]] * len(new))
            kept_from = b
        pieces.append(self.text[kept_from:])
        starts.extend(self.starts[kept_from:])
        ends.extend(self.ends[kept_from:])
        return TextView("".join(pieces), tuple(starts), tuple(ends))

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Original [start, end) covered by view characters [start, end)."""
        return self.starts[start], max(self.ends[start:end])
