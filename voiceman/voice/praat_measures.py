"""Acoustic voice measures on one stretch of sound, computed by Praat (via parselmouth).

Each measure uses the Praat command named in its comment with the arguments a Praat user
gets by default, so an examiner can reproduce a number by hand in Praat. Whenever Praat
cannot produce a value (too few periods, unvoiced, too short) the value is None and a
note says why; nothing is filled in.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import parselmouth
from parselmouth.praat import call

from voiceman.voice.config import VoiceFeatureConfig

# Praat writes -300 dB for frames with no energy at all (its stand-in for minus infinity).
_PRAAT_ZERO_ENERGY_DB = -300.0


@dataclass
class AcousticMeasures:
    f0_mean_hz: float | None = None
    f0_sd_hz: float | None = None
    f0_range_hz: float | None = None
    jitter_local: float | None = None
    shimmer_local: float | None = None
    hnr_db: float | None = None
    intensity_db: float | None = None
    notes: list[str] = field(default_factory=list)


# The numeric fields above: what a segment takes over from the Praat measures.
ACOUSTIC_FEATURES: tuple[str, ...] = tuple(f.name for f in fields(AcousticMeasures) if f.name != "notes")


def _defined(value: Any) -> float | None:
    """Praat reports 'undefined' as NaN; turn that (and infinities) into None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _praat(notes: list[str], what: str, *args: Any) -> Any:
    """Run a Praat command; a Praat error becomes a note and None, warnings become notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", parselmouth.PraatWarning)
        try:
            result = call(*args)
        except parselmouth.PraatError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unknown error"
            notes.append(f"{what}: Praat could not analyse this segment ({first_line})")
            result = None
    for warning in caught:
        if issubclass(warning.category, parselmouth.PraatWarning):
            notes.append(f"{what}: Praat warning: {str(warning.message).strip()}")
    return result


def make_sound(samples: np.ndarray, sample_rate: int, start_time: float) -> parselmouth.Sound:
    """A Praat Sound whose time axis is the recording's, so Praat's times match word times.

    Samples are taken as pascals, as Praat does for any sound file, so intensity in dB is
    relative to 2e-5 and comparable within a recording, not a calibrated sound level.
    """
    return parselmouth.Sound(np.asarray(samples, dtype=np.float64), float(sample_rate), float(start_time))


def _measure_pitch(sound: parselmouth.Sound, config: VoiceFeatureConfig, out: AcousticMeasures) -> None:
    # Sound: To Pitch... (time step, pitch floor, pitch ceiling)
    pitch = _praat(
        out.notes, "f0", sound, "To Pitch", config.pitch_time_step_s, config.pitch_floor_hz, config.pitch_ceiling_hz
    )
    if pitch is None:
        return
    voiced_frames = int(call(pitch, "Count voiced frames"))
    if voiced_frames == 0:
        out.notes.append("unvoiced: no pitch frames")
        return
    out.f0_mean_hz = _defined(call(pitch, "Get mean", 0, 0, "Hertz"))
    # Praat's standard deviation needs two voiced frames; with one it is undefined.
    out.f0_sd_hz = _defined(call(pitch, "Get standard deviation", 0, 0, "Hertz"))
    if out.f0_sd_hz is None:
        out.notes.append(f"f0_sd_hz: undefined with {voiced_frames} voiced frame(s)")
    lowest = _defined(call(pitch, "Get minimum", 0, 0, "Hertz", "Parabolic"))
    highest = _defined(call(pitch, "Get maximum", 0, 0, "Hertz", "Parabolic"))
    if lowest is not None and highest is not None:
        out.f0_range_hz = highest - lowest
    else:
        out.notes.append("f0_range_hz: Praat gave no pitch minimum/maximum")


def _measure_perturbation(sound: parselmouth.Sound, config: VoiceFeatureConfig, out: AcousticMeasures) -> None:
    # Sound: To PointProcess (periodic, cc)... (pitch floor, pitch ceiling): glottal pulses.
    pulses = _praat(
        out.notes,
        "jitter_local/shimmer_local",
        sound,
        "To PointProcess (periodic, cc)",
        config.pitch_floor_hz,
        config.pitch_ceiling_hz,
    )
    if pulses is None:
        return
    pulse_count = int(call(pulses, "Get number of points"))
    if pulse_count < 3:
        out.notes.append(f"jitter_local/shimmer_local: {pulse_count} glottal pulse(s) found, need at least 3")
        return
    # PointProcess: Get jitter (local)... (time range, shortest period, longest period, max period factor)
    out.jitter_local = _defined(
        _praat(
            out.notes,
            "jitter_local",
            pulses,
            "Get jitter (local)",
            0,
            0,
            config.period_floor_s,
            config.period_ceiling_s,
            config.max_period_factor,
        )
    )
    if out.jitter_local is None:
        out.notes.append("jitter_local: undefined (no consecutive periods within Praat's period limits)")
    # Sound & PointProcess: Get shimmer (local)... (same, plus max amplitude factor)
    out.shimmer_local = _defined(
        _praat(
            out.notes,
            "shimmer_local",
            [sound, pulses],
            "Get shimmer (local)",
            0,
            0,
            config.period_floor_s,
            config.period_ceiling_s,
            config.max_period_factor,
            config.max_amplitude_factor,
        )
    )
    if out.shimmer_local is None:
        out.notes.append("shimmer_local: undefined (no consecutive periods within Praat's period/amplitude limits)")


def _measure_hnr(sound: parselmouth.Sound, config: VoiceFeatureConfig, out: AcousticMeasures) -> None:
    # Sound: To Harmonicity (cc)... (time step, minimum pitch, silence threshold, periods per window)
    harmonicity = _praat(
        out.notes,
        "hnr_db",
        sound,
        "To Harmonicity (cc)",
        config.hnr_time_step_s,
        config.pitch_floor_hz,
        config.hnr_silence_threshold,
        config.hnr_periods_per_window,
    )
    if harmonicity is None:
        return
    # Harmonicity: Get mean skips Praat's silent frames (-200 dB); all silent -> undefined.
    out.hnr_db = _defined(call(harmonicity, "Get mean", 0, 0))
    if out.hnr_db is None:
        out.notes.append("hnr_db: no frames above Praat's silence threshold")


def _measure_intensity(sound: parselmouth.Sound, config: VoiceFeatureConfig, out: AcousticMeasures) -> None:
    # Sound: To Intensity... (minimum pitch, time step 0 = auto, subtract mean = yes)
    intensity = _praat(out.notes, "intensity_db", sound, "To Intensity", config.intensity_min_pitch_hz, 0.0, "yes")
    if intensity is None:
        return
    # Intensity: Get mean... averaging "energy" (Praat's default for this query).
    mean_db = _defined(call(intensity, "Get mean", 0, 0, "energy"))
    if mean_db is None or mean_db <= _PRAAT_ZERO_ENERGY_DB:
        out.notes.append("intensity_db: digital silence (no energy in any frame)")
        return
    out.intensity_db = mean_db


def measure_acoustics(sound: parselmouth.Sound, config: VoiceFeatureConfig) -> AcousticMeasures:
    out = AcousticMeasures()
    _measure_pitch(sound, config, out)
    _measure_perturbation(sound, config, out)
    _measure_hnr(sound, config, out)
    _measure_intensity(sound, config, out)
    return out


def silent_fraction(sound: parselmouth.Sound, config: VoiceFeatureConfig, notes: list[str]) -> float | None:
    """Fraction of the sound that Praat's silence detector labels silent.

    Sound: To TextGrid (silences)... with the threshold relative to the loudest frame of
    this stretch. A stretch of all-zero samples is wholly silent; Praat itself would label
    it "sounding" (its loudest and softest parts do not differ), so that case is decided here.
    """
    duration = sound.xmax - sound.xmin
    if duration <= 0:
        return None
    if not np.any(sound.values):
        notes.append("pause_ratio: digital silence (all samples zero)")
        return 1.0
    grid = _praat(
        notes,
        "pause_ratio",
        sound,
        "To TextGrid (silences)",
        config.intensity_min_pitch_hz,
        0.0,
        config.silence_threshold_db,
        config.min_silent_interval_s,
        config.min_sounding_interval_s,
        "silent",
        "sounding",
    )
    if grid is None:
        return None
    silent = 0.0
    for index in range(1, int(call(grid, "Get number of intervals", 1)) + 1):
        if call(grid, "Get label of interval", 1, index) == "silent":
            silent += call(grid, "Get end time of interval", 1, index) - call(
                grid, "Get start time of interval", 1, index
            )
    return min(1.0, max(0.0, silent / duration))
