"""Settings for the voice stress measurements.

Every default is Praat's own default for the command it feeds, so a measurement made here
can be repeated by hand in Praat with the same numbers (the forensic reason for using
Praat's definitions at all).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VoiceFeatureConfig:
    # Sound: To Pitch... (autocorrelation); time step 0 means Praat's automatic 0.75 / floor.
    pitch_floor_hz: float = 75.0
    pitch_ceiling_hz: float = 600.0
    pitch_time_step_s: float = 0.0
    # Segments shorter than this get no acoustic measures: pitch, jitter and HNR need
    # several periods at the pitch floor to mean anything.
    min_segment_s: float = 0.2
    # Get jitter (local) / Get shimmer (local): Praat's standard arguments.
    period_floor_s: float = 0.0001
    period_ceiling_s: float = 0.02
    max_period_factor: float = 1.3
    max_amplitude_factor: float = 1.6
    # Sound: To Harmonicity (cc)...; its minimum pitch is pitch_floor_hz.
    hnr_time_step_s: float = 0.01
    hnr_silence_threshold: float = 0.1
    hnr_periods_per_window: float = 1.0
    # Sound: To Intensity... (Praat's default minimum pitch is 100 Hz, not the pitch floor).
    intensity_min_pitch_hz: float = 100.0
    # Sound: To TextGrid (silences)... used for the pause ratio when a segment has no
    # usable word times; threshold is relative to the segment's loudest frame.
    silence_threshold_db: float = -25.0
    min_silent_interval_s: float = 0.1
    min_sounding_interval_s: float = 0.05

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"VoiceFeatureConfig.{field.name}: expected a finite number, got {value!r}")
        positive = (
            "pitch_floor_hz",
            "pitch_ceiling_hz",
            "period_floor_s",
            "period_ceiling_s",
            "max_period_factor",
            "max_amplitude_factor",
            "hnr_time_step_s",
            "hnr_periods_per_window",
            "intensity_min_pitch_hz",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"VoiceFeatureConfig.{name}: must be > 0, got {getattr(self, name)!r}")
        non_negative = (
            "pitch_time_step_s",
            "min_segment_s",
            "hnr_silence_threshold",
            "min_silent_interval_s",
            "min_sounding_interval_s",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"VoiceFeatureConfig.{name}: must be >= 0, got {getattr(self, name)!r}")
        if self.pitch_floor_hz >= self.pitch_ceiling_hz:
            raise ValueError(
                f"VoiceFeatureConfig: pitch_floor_hz ({self.pitch_floor_hz}) must be below "
                f"pitch_ceiling_hz ({self.pitch_ceiling_hz})"
            )
        if self.period_floor_s >= self.period_ceiling_s:
            raise ValueError(
                f"VoiceFeatureConfig: period_floor_s ({self.period_floor_s}) must be below "
                f"period_ceiling_s ({self.period_ceiling_s})"
            )
        if self.silence_threshold_db > 0:
            raise ValueError(
                f"VoiceFeatureConfig.silence_threshold_db: must be <= 0 dB (relative to the "
                f"loudest frame), got {self.silence_threshold_db!r}"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> VoiceFeatureConfig:
        """Build from a config mapping (e.g. the `voice:` section of config.yaml).

        Unknown keys are an error rather than silently ignored: a misspelt setting in a
        forensic run must not fall back to a default unnoticed.
        """
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise ValueError(f"VoiceFeatureConfig.from_dict: expected a mapping, got {type(d).__name__}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"VoiceFeatureConfig.from_dict: unknown key(s) {unknown}; known keys are {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, float]:
        return {field.name: float(getattr(self, field.name)) for field in dataclasses.fields(self)}
