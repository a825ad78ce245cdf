"""Typed per-segment results of the speech-emotion models.

Each result turns into a plain JSON-able dict with `to_dict()`; that dict is what
travels over msgpack to the workflow and ends up in the reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DimensionalResult:
    """Arousal, dominance and valence of one segment (the model's own scale, about 0..1)."""

    arousal: float
    dominance: float
    valence: float

    def to_dict(self) -> dict:
        return {
            "arousal": float(self.arousal),
            "dominance": float(self.dominance),
            "valence": float(self.valence),
        }


@dataclass(frozen=True)
class CategoricalResult:
    """Most probable emotion label of one segment and the full distribution."""

    label: str
    probabilities: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "probabilities": {name: float(p) for name, p in self.probabilities.items()},
        }


@dataclass(frozen=True)
class SegmentError:
    """A segment the model could not score (too short, empty, not finite ...).

    It takes the segment's place in the result list so one bad segment never
    fails the whole batch.
    """

    error: str

    def to_dict(self) -> dict:
        return {"error": self.error}


DimensionalItem = DimensionalResult | SegmentError
CategoricalItem = CategoricalResult | SegmentError
