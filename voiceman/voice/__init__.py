"""Voice stress features per transcript segment (Praat definitions via parselmouth),
per-speaker baselines and z-scores against them. CPU only; no models."""

from voiceman.voice.baseline import UNKNOWN_SPEAKER, SpeakerBaseline, speaker_baselines, zscores
from voiceman.voice.config import VoiceFeatureConfig
from voiceman.voice.segment_features import (
    NUMERIC_FEATURES,
    SegmentVoiceFeatures,
    measure_segment,
    measure_segments,
)

__all__ = [
    "NUMERIC_FEATURES",
    "UNKNOWN_SPEAKER",
    "SegmentVoiceFeatures",
    "SpeakerBaseline",
    "VoiceFeatureConfig",
    "measure_segment",
    "measure_segments",
    "speaker_baselines",
    "zscores",
]
