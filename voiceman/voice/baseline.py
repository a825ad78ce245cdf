"""Per-speaker baselines and each segment's z-scores against its own speaker's baseline.

Stress shows as a departure from how a person normally sounds, so every feature is
compared with the same speaker's other segments, never with a population norm.

- mean: arithmetic mean of the speaker's measured (non-None) values of that feature.
- sd: sample standard deviation (n - 1 in the denominator) of those values; None when
  fewer than 2 segments have the feature measured.
- z = (value - mean) / sd; None when the value is None, sd is None, or sd == 0.
Segments whose speaker is missing or empty are grouped under "unknown".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from voiceman.voice.segment_features import NUMERIC_FEATURES, SegmentVoiceFeatures

UNKNOWN_SPEAKER = "unknown"


@dataclass
class SpeakerBaseline:
    speaker: str
    n_segments: int
    mean: dict[str, float | None] = field(default_factory=dict)
    sd: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "speaker": self.speaker,
            "n_segments": self.n_segments,
            "mean": {name: self.mean.get(name) for name in NUMERIC_FEATURES},
            "sd": {name: self.sd.get(name) for name in NUMERIC_FEATURES},
        }


def speaker_of(segment: dict) -> str:
    speaker = segment.get("speaker")
    if speaker is None or (isinstance(speaker, str) and not speaker.strip()):
        return UNKNOWN_SPEAKER
    return str(speaker)


def _check_pairing(segments: list[dict], features: list[SegmentVoiceFeatures]) -> None:
    if len(segments) != len(features):
        raise ValueError(
            f"voice baselines: {len(segments)} segments but {len(features)} feature results; "
            "they must be paired one to one, in order"
        )
    for index, segment in enumerate(segments):
        if not isinstance(segment, dict):
            raise ValueError(f"voice baselines: segments[{index}] must be a dict, got {type(segment).__name__}")


def _mean_and_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    variance = math.fsum((value - mean) ** 2 for value in values) / (len(values) - 1)
    return mean, math.sqrt(variance)


def speaker_baselines(segments: list[dict], features: list[SegmentVoiceFeatures]) -> dict[str, SpeakerBaseline]:
    _check_pairing(segments, features)
    grouped: dict[str, list[SegmentVoiceFeatures]] = {}
    for segment, measured in zip(segments, features):
        grouped.setdefault(speaker_of(segment), []).append(measured)
    baselines = {}
    for speaker, speaker_features in grouped.items():
        baseline = SpeakerBaseline(speaker=speaker, n_segments=len(speaker_features))
        for name in NUMERIC_FEATURES:
            values = [v for v in (f.value(name) for f in speaker_features) if v is not None]
            baseline.mean[name], baseline.sd[name] = _mean_and_sd(values)
        baselines[speaker] = baseline
    return baselines


def zscores(
    features: list[SegmentVoiceFeatures], segments: list[dict], baselines: dict[str, SpeakerBaseline]
) -> list[dict[str, float | None]]:
    """One dict per segment, keys = NUMERIC_FEATURES, value = z against its speaker's baseline."""
    _check_pairing(segments, features)
    result = []
    for segment, measured in zip(segments, features):
        baseline = baselines.get(speaker_of(segment))
        scores: dict[str, float | None] = {}
        for name in NUMERIC_FEATURES:
            value = measured.value(name)
            mean = baseline.mean.get(name) if baseline else None
            sd = baseline.sd.get(name) if baseline else None
            scores[name] = None if value is None or mean is None or not sd else (value - mean) / sd
        result.append(scores)
    return result
