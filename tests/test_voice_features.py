"""Voice stress features on synthetic signals whose right answer is known by construction.

The test signal is a glottal-like pulse train: one fixed-shape, zero-mean pulse (a Ricker
wavelet, 0.5 ms wide) at each glottal instant, rendered at exact fractional times. Because
the pulse shape never changes, the distance between Praat's detected pulses is the
injected period and the pulse's local RMS is the injected amplitude, so Praat's jitter
(local) and shimmer (local) formulas can be evaluated on the injected sequences directly.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from voiceman.voice import (
    NUMERIC_FEATURES,
    SegmentVoiceFeatures,
    VoiceFeatureConfig,
    measure_segment,
    measure_segments,
    speaker_baselines,
    zscores,
)

SR = 16000


def glottal_pulse_train(
    f0_hz=200.0, duration_s=1.0, period_jitter=0.0, amplitude_jitter=0.0, seed=0, pulse_width_s=0.0005
):
    """Return (samples, periods_s, amplitudes) for a pulse train with Gaussian perturbations.

    period_jitter / amplitude_jitter are the relative standard deviations of the random
    period and amplitude perturbation (0.02 = 2 %).
    """
    rng = np.random.default_rng(seed)
    period = 1.0 / f0_hz
    times = [0.01]
    while times[-1] < duration_s - 0.01:
        times.append(times[-1] + period * (1.0 + period_jitter * rng.standard_normal()))
    pulse_times = np.array(times[:-1])
    amplitudes = 1.0 + amplitude_jitter * rng.standard_normal(len(pulse_times))
    t = np.arange(int(duration_s * SR)) / SR
    x = np.zeros_like(t)
    for pulse_time, amplitude in zip(pulse_times, amplitudes):
        near = np.abs(t - pulse_time) < 8 * pulse_width_s
        u = (t[near] - pulse_time) / pulse_width_s
        x[near] += amplitude * (1.0 - u * u) * np.exp(-u * u / 2.0)
    return (0.3 * x).astype(np.float32), np.diff(pulse_times), amplitudes


def relative_mean_abs_difference(sequence):
    """Praat's 'local' perturbation formula: mean |x_i - x_(i+1)| / mean x."""
    sequence = np.asarray(sequence, dtype=np.float64)
    return float(np.mean(np.abs(np.diff(sequence))) / np.mean(sequence))


def test_f0_of_200hz_pulse_train_within_1hz():
    audio, _, _ = glottal_pulse_train(f0_hz=200.0)
    features = measure_segment(audio, SR, 0.0, 1.0, None)
    assert features.f0_mean_hz == pytest.approx(200.0, abs=1.0)  # tolerance: +-1 Hz
    assert features.f0_sd_hz < 1.0
    assert features.f0_range_hz < 2.0
    assert features.jitter_local < 0.001 and features.shimmer_local < 0.001  # perfectly periodic


def test_f0_of_130hz_pulse_train_within_1hz():
    audio, _, _ = glottal_pulse_train(f0_hz=130.0)
    features = measure_segment(audio, SR, 0.0, 1.0, None)
    assert features.f0_mean_hz == pytest.approx(130.0, abs=1.0)  # tolerance: +-1 Hz


def test_pitch_ceiling_is_honoured():
    audio, _, _ = glottal_pulse_train(f0_hz=200.0)
    config = VoiceFeatureConfig(pitch_floor_hz=60.0, pitch_ceiling_hz=150.0)
    features = measure_segment(audio, SR, 0.0, 1.0, None, config)
    # 200 Hz is outside the allowed range, so Praat must not report it.
    assert features.f0_mean_hz is None or features.f0_mean_hz <= 150.0


@pytest.mark.parametrize("seed", [0, 1])
def test_jitter_local_matches_injected_2pct_period_perturbation_within_0p001_absolute(seed):
    audio, periods, _ = glottal_pulse_train(period_jitter=0.02, seed=seed)
    injected = relative_mean_abs_difference(periods)
    # For i.i.d. Gaussian periods E|T_i - T_i+1| = 2/sqrt(pi) * sd, i.e. about 2.26 % here.
    assert 0.015 < injected < 0.03
    features = measure_segment(audio, SR, 0.0, 1.0, None)
    assert features.jitter_local == pytest.approx(injected, abs=0.001)  # tolerance: 0.1 % absolute


@pytest.mark.parametrize("seed", [0, 2])
def test_shimmer_local_matches_injected_5pct_amplitude_perturbation_within_5pct_relative(seed):
    audio, _, amplitudes = glottal_pulse_train(amplitude_jitter=0.05, seed=seed)
    injected = relative_mean_abs_difference(amplitudes)
    features = measure_segment(audio, SR, 0.0, 1.0, None)
    assert features.shimmer_local == pytest.approx(injected, rel=0.05)  # tolerance: 5 % of the value
    assert features.jitter_local < 0.001  # periods were left untouched


def test_hnr_high_for_clean_signal_and_lowered_by_white_noise():
    audio, _, _ = glottal_pulse_train()
    clean = measure_segment(audio, SR, 0.0, 1.0, None)
    noise = np.random.default_rng(7).standard_normal(len(audio)).astype(np.float32) * 0.03
    noisy = measure_segment(audio + noise, SR, 0.0, 1.0, None)
    assert clean.hnr_db > 40.0
    assert noisy.hnr_db < 20.0
    assert clean.hnr_db - noisy.hnr_db > 20.0
    # Noise adds energy: intensity rises, and both are real dB numbers.
    assert noisy.intensity_db > clean.intensity_db > 0.0


def test_silence_gives_no_voice_measures_and_says_why():
    silence = np.zeros(SR, dtype=np.float32)
    features = measure_segment(silence, SR, 0.0, 1.0, None)
    for name in (
        "f0_mean_hz",
        "f0_sd_hz",
        "f0_range_hz",
        "jitter_local",
        "shimmer_local",
        "hnr_db",
        "intensity_db",
        "speech_rate_wps",
    ):
        assert getattr(features, name) is None, name
    assert "unvoiced: no pitch frames" in features.notes
    assert any(note.startswith("intensity_db: digital silence") for note in features.notes)
    assert any(note.startswith("speech_rate_wps:") for note in features.notes)
    assert features.pause_ratio == 1.0  # all-zero audio is all pause


def test_speech_rate_and_pause_ratio_from_word_times_exact():
    audio, _, _ = glottal_pulse_train(duration_s=4.0)
    words = [
        {"word": "one", "start": 1.0, "end": 1.4, "probability": 0.9},
        {"word": "two", "start": 1.3, "end": 1.8, "probability": 0.9},  # overlaps "one": counted once
        {"word": "three", "start": 2.2, "end": 2.6, "probability": 0.9},
        {"word": "four", "start": 2.9, "end": 3.2, "probability": 0.9},  # runs past the segment end
    ]
    features = measure_segment(audio, SR, 1.0, 3.0, words)
    # Speech rate = 4 words / 2.0 s segment duration.
    assert features.speech_rate_wps == pytest.approx(2.0, abs=1e-12)
    # Covered: [1.0, 1.8] + [2.2, 2.6] + [2.9, 3.0] = 1.3 s of 2.0 s -> pause 0.35.
    assert features.pause_ratio == pytest.approx(0.35, abs=1e-12)


def test_pause_ratio_falls_back_to_intensity_silence_when_a_word_lacks_times():
    voiced, _, _ = glottal_pulse_train(duration_s=1.0)
    half_second = np.zeros(SR // 2, dtype=np.float32)
    audio = np.concatenate([half_second, voiced, half_second])  # 0.5 s pause, 1 s voice, 0.5 s pause
    words = [{"word": "hello", "start": 0.6, "end": 1.0}, {"word": "2024"}]  # second word has no times
    features = measure_segment(audio, SR, 0.0, 2.0, words)
    assert any("lack times" in note for note in features.notes)
    # Silent half = 1.0 s of 2.0 s; Praat's intensity frames blur edges by a few tens of ms.
    assert features.pause_ratio == pytest.approx(0.5, abs=0.03)
    assert features.speech_rate_wps == pytest.approx(1.0, abs=1e-12)  # untimed words still count


def test_too_short_segment_has_no_acoustics_but_keeps_word_measures():
    audio, _, _ = glottal_pulse_train(duration_s=1.0)
    words = [{"word": "hi", "start": 0.10, "end": 0.15}]
    features = measure_segment(audio, SR, 0.10, 0.20, words)
    assert features.f0_mean_hz is None and features.hnr_db is None and features.intensity_db is None
    assert any(note.startswith("too short") for note in features.notes)
    assert features.speech_rate_wps == pytest.approx(10.0)
    assert features.pause_ratio == pytest.approx(0.5)


def test_segment_past_the_end_of_audio_is_clipped_with_a_note():
    audio, _, _ = glottal_pulse_train(duration_s=1.0)
    features = measure_segment(audio, SR, 0.5, 1.5, None)
    assert any("clipped" in note for note in features.notes)
    assert features.f0_mean_hz == pytest.approx(200.0, abs=1.0)
    outside = measure_segment(audio, SR, 2.0, 3.0, None)
    assert outside.f0_mean_hz is None and outside.pause_ratio is None
    assert any(note.startswith("no audio") for note in outside.notes)


def test_measure_segments_gives_json_ready_dicts_in_order():
    voiced, _, _ = glottal_pulse_train(duration_s=1.0)
    audio = np.concatenate([voiced, np.zeros(SR, dtype=np.float32)])
    segments = [
        {
            "start": 0.0,
            "end": 1.0,
            "text": "a b",
            "speaker": "SPEAKER_00",
            "words": [
                {"word": "a", "start": 0.0, "end": 0.5, "probability": 1.0},
                {"word": "b", "start": 0.5, "end": 1.0, "probability": 1.0},
            ],
        },
        {"start": 1.0, "end": 2.0, "text": "", "speaker": None, "words": []},
    ]
    results = measure_segments(audio, SR, segments)
    dicts = [result.to_dict() for result in results]
    json.dumps(dicts)
    assert set(dicts[0]) == set(NUMERIC_FEATURES) | {"notes"}
    assert dicts[0]["f0_mean_hz"] == pytest.approx(200.0, abs=1.0)
    assert dicts[0]["pause_ratio"] == 0.0 and dicts[0]["speech_rate_wps"] == 2.0
    assert dicts[1]["f0_mean_hz"] is None and "unvoiced: no pitch frames" in dicts[1]["notes"]


def test_bad_inputs_are_rejected_with_the_cause():
    audio = np.zeros(SR, dtype=np.float32)
    with pytest.raises(ValueError, match="mono"):
        measure_segment(np.zeros((2, SR), dtype=np.float32), SR, 0.0, 1.0, None)
    with pytest.raises(ValueError, match=r"segments\[0\].*start"):
        measure_segments(audio, SR, [{"end": 1.0}])
    with pytest.raises(ValueError, match="unknown key"):
        VoiceFeatureConfig.from_dict({"pitch_floor": 75})
    with pytest.raises(ValueError, match="below"):
        VoiceFeatureConfig.from_dict({"pitch_floor_hz": 300, "pitch_ceiling_hz": 200})
    assert VoiceFeatureConfig.from_dict({"pitch_floor_hz": 60}).pitch_floor_hz == 60


def _features(**values) -> SegmentVoiceFeatures:
    return SegmentVoiceFeatures(**values)


def test_zscores_against_own_speaker_baseline_two_speakers_exact():
    segments = [
        {"start": 0, "end": 1, "speaker": "A"},
        {"start": 1, "end": 2, "speaker": "B"},
        {"start": 2, "end": 3, "speaker": "A"},
        {"start": 3, "end": 4, "speaker": "B"},
        {"start": 4, "end": 5, "speaker": "A"},
        {"start": 5, "end": 6, "speaker": None},  # grouped as "unknown", alone -> no z
    ]
    features = [
        _features(f0_mean_hz=100.0, hnr_db=10.0, pause_ratio=0.2),
        _features(f0_mean_hz=200.0, hnr_db=5.0),
        _features(f0_mean_hz=110.0, hnr_db=10.0, pause_ratio=0.4),
        _features(f0_mean_hz=240.0, hnr_db=None),
        _features(f0_mean_hz=120.0, hnr_db=10.0, pause_ratio=None),
        _features(f0_mean_hz=150.0),
    ]
    baselines = speaker_baselines(segments, features)
    assert set(baselines) == {"A", "B", "unknown"}
    a, b = baselines["A"], baselines["B"]
    assert a.n_segments == 3 and a.mean["f0_mean_hz"] == 110.0 and a.sd["f0_mean_hz"] == 10.0
    assert b.mean["f0_mean_hz"] == 220.0 and b.sd["f0_mean_hz"] == pytest.approx(math.sqrt(800.0), rel=1e-15)
    assert a.sd["hnr_db"] == 0.0  # identical values
    assert b.mean["hnr_db"] == 5.0 and b.sd["hnr_db"] is None  # one measured value only
    assert a.mean["pause_ratio"] == pytest.approx(0.3) and a.sd["pause_ratio"] == pytest.approx(math.sqrt(0.02))

    z = zscores(features, segments, baselines)
    assert [s["f0_mean_hz"] for s in z[0::2][:3]] == [-1.0, 0.0, 1.0]  # A: (x - 110) / 10
    assert z[1]["f0_mean_hz"] == pytest.approx(-20.0 / math.sqrt(800.0), rel=1e-15)
    assert z[3]["f0_mean_hz"] == pytest.approx(20.0 / math.sqrt(800.0), rel=1e-15)
    assert z[0]["pause_ratio"] == pytest.approx(-1 / math.sqrt(2), rel=1e-12)
    assert z[4]["pause_ratio"] is None  # value not measured
    assert all(s["hnr_db"] is None for s in z)  # A: sd == 0; B: < 2 measured
    assert all(value is None for value in z[5].values())  # unknown: one segment
    assert all(set(s) == set(NUMERIC_FEATURES) for s in z)

    as_dict = a.to_dict()
    json.dumps(as_dict)
    assert set(as_dict) == {"speaker", "n_segments", "mean", "sd"}
    assert as_dict["speaker"] == "A" and set(as_dict["mean"]) == set(NUMERIC_FEATURES)


def test_baselines_need_one_feature_result_per_segment():
    with pytest.raises(ValueError, match="paired"):
        speaker_baselines([{"speaker": "A"}], [])
