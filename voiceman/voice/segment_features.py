"""Voice stress features for transcript segments: Praat acoustics plus word-timing measures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voiceman.voice.config import VoiceFeatureConfig
from voiceman.voice.praat_measures import ACOUSTIC_FEATURES, make_sound, measure_acoustics, silent_fraction
from voiceman.voice.word_timing import speech_rate_wps, word_pause_ratio

# The numeric features, in report order; baselines and z-scores use exactly these keys.
NUMERIC_FEATURES: tuple[str, ...] = (
    "f0_mean_hz",
    "f0_sd_hz",
    "f0_range_hz",
    "jitter_local",
    "shimmer_local",
    "hnr_db",
    "intensity_db",
    "speech_rate_wps",
    "pause_ratio",
)


@dataclass
class SegmentVoiceFeatures:
    """One segment's measures. None means "not measurable here"; `notes` says why.

    jitter_local and shimmer_local are fractions, as Praat returns them (0.01 = 1 %).
    """

    f0_mean_hz: float | None = None
    f0_sd_hz: float | None = None
    f0_range_hz: float | None = None
    jitter_local: float | None = None
    shimmer_local: float | None = None
    hnr_db: float | None = None
    intensity_db: float | None = None
    speech_rate_wps: float | None = None
    pause_ratio: float | None = None
    notes: list[str] = field(default_factory=list)

    def value(self, feature: str) -> float | None:
        if feature not in NUMERIC_FEATURES:
            raise KeyError(f"unknown voice feature {feature!r}; known: {list(NUMERIC_FEATURES)}")
        return getattr(self, feature)

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {name: getattr(self, name) for name in NUMERIC_FEATURES}
        result["notes"] = list(self.notes)
        return result


def _check_audio(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"voice features: sample_rate must be a positive integer, got {sample_rate!r}")
    samples = np.asarray(audio)
    if samples.ndim != 1:
        raise ValueError(f"voice features: audio must be mono (1-D), got shape {samples.shape}")
    if not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(f"voice features: audio must be floating point samples, got dtype {samples.dtype}")
    return samples


def _check_time(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"voice features: segment {name} must be a finite number of seconds, got {value!r}")
    return float(value)


def _measure_checked(
    samples: np.ndarray,
    sample_rate: int,
    start: float,
    end: float,
    words: list[dict] | None,
    config: VoiceFeatureConfig,
) -> SegmentVoiceFeatures:
    features = SegmentVoiceFeatures()
    notes = features.notes
    if end <= start:
        notes.append(f"empty segment: end ({end}) is not after start ({start})")
        return features

    features.speech_rate_wps = speech_rate_wps(words, start, end, notes)
    features.pause_ratio = word_pause_ratio(words, start, end, notes)

    # The acoustic part looks only at the samples the recording actually has.
    audio_duration = len(samples) / sample_rate
    clipped_start, clipped_end = max(start, 0.0), min(end, audio_duration)
    if clipped_start != start or clipped_end != end:
        notes.append(
            f"segment [{start:.3f}, {end:.3f}] s clipped to the audio [0, {audio_duration:.3f}] s for acoustic measures"
        )
    if clipped_end <= clipped_start:
        notes.append("no audio: segment lies outside the recording; no acoustic measures")
        if features.pause_ratio is None:
            notes.append("pause_ratio: no audio for intensity-based silence")
        return features
    first, last = int(round(clipped_start * sample_rate)), int(round(clipped_end * sample_rate))
    analysed_s = (last - first) / sample_rate
    if analysed_s < config.min_segment_s:
        notes.append(
            f"too short: {max(analysed_s, 0.0):.3f} s of audio < min_segment_s {config.min_segment_s} s; "
            "no acoustic measures"
        )
        if features.pause_ratio is None:
            notes.append("pause_ratio: too short for intensity-based silence")
        return features

    sound = make_sound(samples[first:last], sample_rate, first / sample_rate)
    acoustics = measure_acoustics(sound, config)
    for name in ACOUSTIC_FEATURES:
        setattr(features, name, getattr(acoustics, name))
    notes.extend(acoustics.notes)
    if features.pause_ratio is None:  # word times could not give it (see word_pause_ratio's note)
        features.pause_ratio = silent_fraction(sound, config, notes)
    return features


def measure_segment(
    audio: np.ndarray,
    sample_rate: int,
    start: float,
    end: float,
    words: list[dict] | None,
    config: VoiceFeatureConfig | None = None,
) -> SegmentVoiceFeatures:
    """Measure one segment [start, end) (seconds, recording time) of mono float audio."""
    samples = _check_audio(audio, sample_rate)
    return _measure_checked(
        samples,
        int(sample_rate),
        _check_time(start, "start"),
        _check_time(end, "end"),
        words,
        config or VoiceFeatureConfig(),
    )


def measure_segments(
    audio: np.ndarray, sample_rate: int, segments: list[dict], config: VoiceFeatureConfig | None = None
) -> list[SegmentVoiceFeatures]:
    """Measure every transcript segment ({"start", "end", "words", ...}); one result per segment, in order."""
    samples = _check_audio(audio, sample_rate)
    config = config or VoiceFeatureConfig()
    results = []
    for index, segment in enumerate(segments):
        if not isinstance(segment, dict):
            raise ValueError(f"voice features: segments[{index}] must be a dict, got {type(segment).__name__}")
        try:
            start = _check_time(segment.get("start"), "start")
            end = _check_time(segment.get("end"), "end")
        except ValueError as error:
            raise ValueError(f"segments[{index}]: {error}") from None
        results.append(_measure_checked(samples, int(sample_rate), start, end, segment.get("words"), config))
    return results
