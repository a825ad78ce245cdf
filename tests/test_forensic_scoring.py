"""Cross-check rules, explained scores, aggregation and the per-file report schema."""

from __future__ import annotations

import copy
import json
import math

import pytest

from voiceman.forensic import (
    REPORT_SCHEMA_PATH,
    RULES_SCHEMA_PATH,
    ForensicConfigError,
    ReportValidationError,
    assemble_file_report,
    crosscheck,
    load_forensic_config,
    score_file,
    score_segment,
    score_speakers,
    validate_report,
)

RULES = load_forensic_config()
SEG = {"start": 1.0, "end": 4.0, "text": "I will kill you tonight", "speaker": "SPEAKER_00", "words": []}


def emotion(arousal=0.5, valence=0.5, label="neu", probs=None):
    return {
        "status": "analysed",
        "reason": None,
        "device": "cpu",
        "dimensional": {"arousal": arousal, "dominance": 0.5, "valence": valence},
        "categorical": {"label": label, "probabilities": probs or {"neu": 1.0, "ang": 0.0, "hap": 0.0, "sad": 0.0}},
    }


NOT_ANALYSED = {
    "status": "not_analysed",
    "reason": "segment shorter than 1.0 s",
    "device": None,
    "dimensional": None,
    "categorical": None,
}


def voice(**z):
    return {
        "f0_mean_hz": 180.0,
        "f0_sd_hz": 20.0,
        "f0_range_hz": 80.0,
        "jitter_local": 0.01,
        "shimmer_local": 0.05,
        "hnr_db": 15.0,
        "intensity_db": 65.0,
        "speech_rate_wps": 2.5,
        "pause_ratio": 0.1,
        "notes": [],
        "z": dict(z),
    }


def hit(category="threat", context="direct", severity=4, pid="EN-THR-001", start=2, end=11):
    return {
        "pattern_id": pid,
        "category": category,
        "severity": severity,
        "start": start,
        "end": end,
        "text": SEG["text"][start:end],
        "context": context,
    }


def check(emo, v=None, hits=(), rules=RULES):
    return crosscheck(SEG, emo, v if v is not None else voice(), list(hits), rules)


# ------------------------------------------------------------------ rules file


def test_default_rules_load_and_reject_bad_files_naming_them(tmp_path):
    assert RULES["crosscheck"]["high_arousal"] > RULES["crosscheck"]["calm_arousal"]
    bad = copy.deepcopy(RULES)
    bad["crosscheck"]["high_arousal"] = "high"
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(bad))
    with pytest.raises(ForensicConfigError, match=r"bad\.yaml.*\n.*crosscheck/high_arousal"):
        load_forensic_config(path)
    inverted = copy.deepcopy(RULES)
    inverted["crosscheck"]["calm_arousal"] = 0.7
    path.write_text(json.dumps(inverted))
    with pytest.raises(ForensicConfigError, match="calm_arousal.*must be below"):
        load_forensic_config(path)
    with pytest.raises(ForensicConfigError, match="missing.yaml"):
        load_forensic_config(tmp_path / "missing.yaml")


def _undescribed_properties(node, where="$"):
    """Paths of schema properties without a description (walks properties, items, $defs...)."""
    missing = []
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            if not isinstance(sub, dict) or "description" not in sub:
                missing.append(f"{where}.properties.{name}")
        for key, sub in node.items():
            missing += _undescribed_properties(sub, f"{where}.{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            missing += _undescribed_properties(sub, f"{where}[{i}]")
    return missing


@pytest.mark.parametrize("path", [RULES_SCHEMA_PATH, REPORT_SCHEMA_PATH], ids=["forensic", "report"])
def test_every_schema_property_has_a_description(path):
    assert _undescribed_properties(json.loads(path.read_text())) == []


# ------------------------------------------------------------------ cross-check


def test_corroborated_at_exact_thresholds_and_explains_numbers():
    result = check(emotion(arousal=0.65, valence=0.40), hits=[hit()])
    assert (result.outcome, result.flagged) == ("corroborated", True)
    assert "0.65 >= 0.65" in result.explanation and "0.40 <= 0.40" in result.explanation
    assert "EN-THR-001" in result.explanation
    assert result.to_dict()["content_pattern_ids"] == ["EN-THR-001"]


@pytest.mark.parametrize("arousal,valence", [(0.6499, 0.30), (0.80, 0.4001)])
def test_just_below_corroboration_thresholds_is_content_only(arousal, valence):
    result = check(emotion(arousal=arousal, valence=valence), hits=[hit()])
    assert (result.outcome, result.flagged) == ("content_only", False)


def test_calm_threat_at_calm_boundary_and_not_above_it():
    assert check(emotion(arousal=0.45, valence=0.5), hits=[hit()]).outcome == "calm_threat"
    assert check(emotion(arousal=0.45, valence=0.5), hits=[hit()]).flagged is True
    assert check(emotion(arousal=0.4501, valence=0.5), hits=[hit()]).outcome == "content_only"


def test_stressed_voice_is_not_calm_and_z_threshold_is_inclusive():
    calm = emotion(arousal=0.3, valence=0.5)
    assert check(calm, voice(jitter_local=1.99), [hit()]).outcome == "calm_threat"
    stressed = check(calm, voice(jitter_local=2.0), [hit()])
    assert stressed.outcome == "content_only"
    assert "jitter_local stress z=+2.00" in stressed.explanation


def test_stress_direction_from_config_inverts_hnr():
    calm = emotion(arousal=0.3, valence=0.5)
    assert check(calm, voice(hnr_db=2.5), [hit()]).outcome == "calm_threat"  # more harmonic = not strained
    strained = check(calm, voice(hnr_db=-2.5), [hit()])
    assert strained.outcome == "content_only"
    assert strained.max_stress_feature == "hnr_db" and strained.max_stress_z == 2.5


def test_affect_without_content_each_trigger_and_boundaries():
    agitated = check(emotion(arousal=0.65, valence=0.40))
    assert (agitated.outcome, agitated.flagged) == ("affect_without_content", True)
    assert "arousal 0.65 >= 0.65" in agitated.explanation
    very_negative = check(emotion(arousal=0.5, valence=0.25))
    assert very_negative.outcome == "affect_without_content" and "valence 0.25 <= 0.25" in very_negative.explanation
    stressed = check(emotion(arousal=0.5, valence=0.5), voice(intensity_db=2.0))
    assert stressed.outcome == "affect_without_content" and "intensity_db" in stressed.explanation
    # Happy excitement (high arousal, positive valence) is not negative affect.
    assert check(emotion(arousal=0.9, valence=0.8)).outcome == "consistent"


def test_consistent_just_outside_every_trigger():
    result = check(emotion(arousal=0.6499, valence=0.2501), voice(intensity_db=1.99))
    assert (result.outcome, result.flagged) == ("consistent", False)
    assert "intensity_db +1.99 < 2.00" in result.explanation


def test_not_assessable_quotes_reason_and_invents_nothing():
    result = check(NOT_ANALYSED, hits=[hit()])
    assert (result.outcome, result.flagged) == ("not_assessable", False)
    assert "segment shorter than 1.0 s" in result.explanation and "arousal" not in result.explanation
    assert check(None).explanation.endswith("(no emotion result for this segment)")
    missing_valence = emotion()
    missing_valence["dimensional"]["valence"] = None
    assert "valence missing" in check(missing_valence).explanation


def test_reported_and_negated_threats_do_not_drive_the_crosscheck():
    calm = emotion(arousal=0.3, valence=0.5)
    result = check(calm, hits=[hit(context="reported"), hit(context="negated", pid="EN-THR-002")])
    assert result.outcome == "consistent"
    assert "not counted (negated/reported)" in result.explanation


def test_gaslighting_in_calm_voice_is_content_only_and_flags_follow_config():
    calm = emotion(arousal=0.3, valence=0.5)
    assert check(calm, hits=[hit(category="gaslighting", pid="EN-GAS-001")]).outcome == "content_only"
    rules = copy.deepcopy(RULES)
    rules["crosscheck"]["flagged_outcomes"] = []
    assert check(emotion(0.9, 0.1), hits=[hit()], rules=rules).flagged is False
    assert crosscheck(SEG, emotion(0.9, 0.1), voice(), [hit()], rules["crosscheck"]).outcome == "corroborated"


# ------------------------------------------------------------------ scoring


def assert_identity(score):
    total = sum(e.contribution for e in score.evidence)
    assert math.isclose(score.score, round(min(100.0, max(0.0, total)), 2), abs_tol=1e-9)
    for e in score.evidence:
        expected = e.weight if e.value is None else e.value * e.weight
        assert math.isclose(e.contribution, expected, abs_tol=1e-3), e
        assert set(e.to_dict()) == {"source", "detail", "value", "weight", "contribution"}


@pytest.mark.parametrize(
    "emo,v,hits",
    [
        (
            emotion(0.82, 0.18, "ang", {"ang": 0.7, "neu": 0.2, "hap": 0.05, "sad": 0.05}),
            voice(f0_mean_hz=2.4, hnr_db=-6.0),
            [hit()],
        ),
        (emotion(0.3, 0.6), voice(), [hit(category="insult", severity=2, pid="EN-INS-004")]),
        (NOT_ANALYSED, voice(jitter_local=3.0), [hit(context="reported")]),
        (emotion(0.5, 0.5), voice(), []),
    ],
)
def test_score_is_clipped_sum_of_evidence(emo, v, hits):
    score = score_segment(SEG, emo, v, hits, rules=RULES)
    assert_identity(score)
    assert 0 <= score.score <= 100


def test_score_evidence_values_follow_config_weights():
    emo = emotion(0.82, 0.18, "ang", {"ang": 0.7, "neu": 0.3, "hap": 0.0, "sad": 0.0})
    score = score_segment(SEG, emo, voice(hnr_db=-6.0), [hit(severity=5)], rules=RULES)
    by_source = {}
    for e in score.evidence:
        by_source.setdefault(e.source, []).append(e)
    assert by_source["pattern"][0].contribution == 5 * 8.0 * 1.0 * 1.0
    assert math.isclose(by_source["emotion"][0].value, (0.82 - 0.5) / 0.5)
    assert by_source["voice"][0].value == 4.0 and "capped at 4" in by_source["voice"][0].detail
    assert by_source["crosscheck"][0].contribution == 15.0 and "corroborated" in by_source["crosscheck"][0].detail
    heavier = copy.deepcopy(RULES)
    heavier["scoring"]["pattern"]["points_per_severity"] = 4.0
    assert score_segment(SEG, emo, voice(hnr_db=-6.0), [hit(severity=5)], rules=heavier).score == score.score - 20


def test_reported_speech_weighs_less_than_direct_and_negated_least():
    calm = emotion(0.5, 0.5)
    direct, reported, negated = (
        score_segment(SEG, calm, voice(), [hit(context=c)], rules=RULES) for c in ("direct", "reported", "negated")
    )
    assert direct.evidence[0].contribution > reported.evidence[0].contribution > negated.evidence[0].contribution > 0


def test_unknown_pattern_category_is_a_clear_error():
    with pytest.raises(ValueError, match="'EN-X-1': category 'stalking'"):
        score_segment(
            SEG,
            emotion(),
            voice(),
            [hit(category="stalking", pid="EN-X-1")],
            check={"outcome": "consistent"},
            rules=RULES,
        )


def test_not_analysed_emotion_adds_no_emotion_evidence():
    score = score_segment(SEG, NOT_ANALYSED, voice(jitter_local=2.5), [hit()], rules=RULES)
    assert {e.source for e in score.evidence} == {"pattern", "voice"}


def test_many_hits_clip_at_100_but_keep_uncapped_total():
    hits = [hit(severity=5, pid=f"EN-THR-{i:03d}") for i in range(5)]
    score = score_segment(SEG, emotion(0.9, 0.1), voice(), hits, rules=RULES)
    assert score.score == 100.0 and score.uncapped_total > 100
    assert_identity(score)


# ------------------------------------------------------------------ aggregation


def scored(start, end, speaker, score, flagged=False):
    return {
        "start": start,
        "end": end,
        "speaker": speaker,
        "score": score,
        "evidence": [],
        "crosscheck": {"outcome": "corroborated" if flagged else "consistent", "flagged": flagged},
    }


def test_speaker_scores_are_max_plus_duration_weighted_mean():
    segs = [
        scored(0, 10, "A", 10.0),
        scored(10, 12, "A", 80.0, True),
        scored(12, 20, "B", 20.0),
        scored(20, 21, None, 5.0),
    ]
    speakers = score_speakers(segs, RULES)
    assert [s["speaker"] for s in speakers] == ["A", "B", None]
    a = speakers[0]
    mean = (10 * 10 + 80 * 2) / 12
    assert math.isclose(a["score"], round(0.6 * 80 + 0.4 * mean, 2))
    assert math.isclose(a["score"], round(sum(e["contribution"] for e in a["evidence"]), 2))
    assert a["flagged_segments"] == 1 and a["segment_count"] == 2 and a["speech_s"] == 12
    assert [t["index"] for t in a["top_segments"]] == [1, 0]
    assert "segment #1" in a["evidence"][0]["detail"]


def test_file_score_aggregates_all_segments_and_handles_edge_cases():
    segs = [scored(0, 10, "A", 10.0), scored(10, 12, "A", 80.0, True), scored(12, 20, "B", 20.0)]
    result = score_file(segs, RULES)
    mean = (100 + 160 + 160) / 20
    assert math.isclose(result["score"], round(0.6 * 80 + 0.4 * mean, 2))
    assert result["speaker_count"] == 2 and result["outcomes"] == {"consistent": 2, "corroborated": 1}
    empty = score_file([], RULES)
    assert empty["score"] == 0 and empty["evidence"] == []
    zero_length = score_file([scored(5, 5, "A", 30.0), scored(6, 6, "A", 10.0)], RULES)
    assert (
        math.isclose(zero_length["score"], 0.6 * 30 + 0.4 * 20) and "plain mean" in zero_length["evidence"][1]["detail"]
    )


# ------------------------------------------------------------------ report


def custody(**overrides):
    base = {
        "input_path": "case/rec01.m4a",
        "input_size_bytes": 1234,
        "input_sha256_before": "a" * 64,
        "input_sha256_after": "a" * 64,
        "models": [
            {
                "id": "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim",
                "role": "ser_dimensional",
                "path": "/models/msp-dim",
                "sha256": "b" * 64,
            },
            {"id": "Systran/faster-whisper-small", "role": "asr", "revision": "abc123", "sha256": "c" * 64},
        ],
        "config_sha256": "d" * 64,
        "software_version": "voiceman 0.1.0",
        "started_utc": "2026-11-27T10:00:00Z",
        "finished_utc": "2026-11-27T10:05:00.123456Z",
    }
    return {**base, **overrides}


def build_report(**overrides):
    segments = [
        SEG,
        {
            "start": 4.5,
            "end": 5.0,
            "text": "okay",
            "speaker": "SPEAKER_01",
            "words": [{"word": "okay", "start": 4.5, "end": 5.0, "probability": 0.9}],
        },
    ]
    args = dict(
        file="rec01.m4a",
        custody=custody(),
        segments=segments,
        emotions=[emotion(0.8, 0.2), NOT_ANALYSED],
        voices=[voice(f0_mean_hz=2.2), None],
        patterns=[[hit()], []],
        duration_s=6.0,
        language="en",
        rules=RULES,
    )
    return assemble_file_report(**{**args, **overrides})


def test_assembled_report_is_schema_valid_and_consistent():
    report = build_report()
    validate_report(json.loads(json.dumps(report)))  # survives a JSON round trip
    assert report["custody"]["input_unchanged"] is True
    assert len(report["custody"]["forensic_rules_sha256"]) == 64
    first, second = report["segments"]
    assert first["crosscheck"]["outcome"] == "corroborated" and second["crosscheck"]["outcome"] == "not_assessable"
    assert math.isclose(first["score"], round(sum(e["contribution"] for e in first["evidence"]), 2))
    assert report["summary"] == {
        "segment_count": 2,
        "flagged_segments": 1,
        "pattern_hits": 1,
        "emotion_not_analysed": 1,
        "outcomes": {"corroborated": 1, "not_assessable": 1},
    }
    assert [s["speaker"] for s in report["speakers"]] == ["SPEAKER_00", "SPEAKER_01"]
    assert report["file_score"]["top_segments"][0]["index"] == 0


def test_tampered_input_is_recorded_and_failed_reports_need_a_reason():
    assert build_report(custody=custody(input_sha256_after="e" * 64))["custody"]["input_unchanged"] is False
    failed = assemble_file_report(
        file="bad.m4a",
        custody=custody(input_sha256_after=None),
        status="failed",
        reason="decode error: moov atom not found",
        rules=RULES,
    )
    assert failed["file_score"] is None and failed["custody"]["input_unchanged"] is None
    with pytest.raises(ReportValidationError, match="reason"):
        assemble_file_report(file="bad.m4a", custody=custody(), status="failed", rules=RULES)


def test_schema_rejects_broken_custody_and_misaligned_parts():
    report = build_report()
    broken = copy.deepcopy(report)
    del broken["custody"]["config_sha256"]
    with pytest.raises(ReportValidationError, match="config_sha256"):
        validate_report(broken)
    broken = copy.deepcopy(report)
    broken["custody"]["models"][0].pop("path")  # neither revision nor path
    with pytest.raises(ReportValidationError, match="custody/models/0"):
        validate_report(broken)
    broken = copy.deepcopy(report)
    broken["segments"][0]["score"] = 140
    with pytest.raises(ReportValidationError, match="segments/0/score"):
        validate_report(broken)
    with pytest.raises(ValueError, match="emotions has 1 entries for 2 segments"):
        build_report(emotions=[NOT_ANALYSED])


# A report written by hand (as another producer would write one) validates against the schema.
EXAMPLE_REPORT = {
    "schema_version": 1,
    "file": "call-2026-03-02.wav",
    "status": "done",
    "reason": None,
    "duration_s": 12.0,
    "language": "ko",
    "custody": {
        "input_sha256_before": "1" * 64,
        "input_sha256_after": "1" * 64,
        "input_unchanged": True,
        "models": [
            {"id": "speechbrain/emotion-recognition-wav2vec2-IEMOCAP", "path": "/m/iemocap", "sha256": "2" * 64}
        ],
        "config_sha256": "3" * 64,
        "forensic_rules_sha256": "4" * 64,
        "software_version": "voiceman 0.1.0",
        "started_utc": "2026-03-02T09:00:00Z",
        "finished_utc": "2026-03-02T09:00:41Z",
    },
    "segments": [
        {
            "index": 0,
            "start": 0.0,
            "end": 12.0,
            "speaker": "SPEAKER_00",
            "text": "가만 안 둔다",
            "emotion": {
                "status": "analysed",
                "reason": None,
                "device": "cuda",
                "dimensional": {"arousal": 0.3, "dominance": 0.6, "valence": 0.45},
                "categorical": {"label": "neu", "probabilities": {"neu": 0.8, "ang": 0.1, "hap": 0.05, "sad": 0.05}},
            },
            "voice": None,
            "patterns": [
                {
                    "pattern_id": "KO-THR-003",
                    "category": "threat",
                    "severity": 4,
                    "start": 0,
                    "end": 7,
                    "text": "가만 안 둔다",
                    "context": "direct",
                }
            ],
            "crosscheck": {
                "outcome": "calm_threat",
                "flagged": True,
                "explanation": "threat:KO-THR-003 said in a calm voice: arousal 0.30 <= 0.45, valence 0.45",
            },
            "score": 42.0,
            "evidence": [
                {"source": "pattern", "detail": "threat KO-THR-003", "value": 4, "weight": 8, "contribution": 32},
                {"source": "crosscheck", "detail": "calm_threat", "value": None, "weight": 10, "contribution": 10},
            ],
        }
    ],
    "speakers": [],
    "file_score": {
        "score": 42.0,
        "uncapped_total": 42.0,
        "evidence": [
            {"source": "aggregate", "detail": "highest segment", "value": 42.0, "weight": 0.6, "contribution": 25.2},
            {"source": "aggregate", "detail": "mean", "value": 42.0, "weight": 0.4, "contribution": 16.8},
        ],
        "segment_count": 1,
        "speech_s": 12.0,
        "flagged_segments": 1,
        "outcomes": {"calm_threat": 1},
        "top_segments": [{"index": 0, "start": 0.0, "end": 12.0, "score": 42.0}],
        "method": "0.6 max + 0.4 mean",
    },
    "summary": {
        "segment_count": 1,
        "flagged_segments": 1,
        "pattern_hits": 1,
        "emotion_not_analysed": 0,
        "outcomes": {"calm_threat": 1},
    },
}


def test_hand_written_example_report_validates():
    validate_report(EXAMPLE_REPORT)
    wrong = copy.deepcopy(EXAMPLE_REPORT)
    wrong["custody"]["started_utc"] = "yesterday"
    with pytest.raises(ReportValidationError, match="started_utc"):
        validate_report(wrong)


def test_custody_digests(tmp_path):
    from voiceman.hashing import sha256_file, sha256_weights

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "weights.bin").write_bytes(b"\x00\x01")
    (tmp_path / "m" / "config.json").write_text("{}")
    first = sha256_weights(tmp_path / "m")
    assert (
        sha256_file(tmp_path / "m" / "config.json")
        == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )
    (tmp_path / "m" / "weights.bin").write_bytes(b"\x00\x02")
    assert sha256_weights(tmp_path / "m") != first
