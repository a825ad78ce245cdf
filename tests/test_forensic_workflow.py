"""The whole forensic workflow over real speech: real tiny.en ASR, SER models of the real
architectures (random weights, built here), Praat features, the pattern DB, cross-check,
scores, schema-valid JSON reports and self-contained HTML."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_snakemake
from ser_fixtures import build_dimensional_model
from voiceman.demo import encode, speak
from voiceman.forensic import validate_report

pytestmark = pytest.mark.timeout(900)


def test_forensic_case_end_to_end(speech_case, tiny_model, runtime_dir, tmp_path):
    case = tmp_path / "case"
    case.mkdir()
    for clip in speech_case.iterdir():
        (case / clip.name).write_bytes(clip.read_bytes())
    pause = np.zeros(8000, dtype=np.float32)
    threat = np.concatenate(
        [
            pause,
            speak("I will kill you if you call the police."),
            pause,
            speak("Thank you for the lovely dinner yesterday."),
            pause,
        ]
    )
    encode(threat, case / "threat.flac", "flac")
    dim = build_dimensional_model(tmp_path / "ser-dim")
    missing = tmp_path / "no-such-iemocap-model"
    overrides = tmp_path / "ser.yaml"
    overrides.write_text(
        json.dumps({"models": {"ser_dimensional": {"id": str(dim)}, "ser_categorical": {"id": str(missing)}}})
    )
    results = tmp_path / "results"
    run_snakemake(results, case, tiny_model, "--configfile", str(overrides))

    summary = json.loads((results / "case.json").read_text())
    assert {f["name"]: f["status"] for f in summary["files"]} == {
        "call-01.wav": "done",
        "call-02.mp3": "done",
        "call-03.m4a": "done",
        "threat.flac": "done",
    }
    assert "threat.flac" in (results / "case.html").read_text()

    report = json.loads((results / "report" / "threat.flac.json").read_text())
    validate_report(report)
    roles = {m["role"]: m for m in report["custody"]["models"]}
    assert set(roles) == {"asr", "diarization", "ser_dimensional"}
    # one synthetic voice: diarised (default resemblyzer) as one speaker, recorded in custody
    assert roles["diarization"]["method"] == "resemblyzer" and roles["diarization"]["sha256"]
    assert report["custody"]["diarization"]["speaker_count"] == 1
    assert {s["speaker"] for s in report["segments"]} == {"SPEAKER_00"}
    assert not any("not diarised" in note for note in report["notes"])
    assert roles["ser_dimensional"]["sha256"] and roles["ser_dimensional"]["path"] == str(dim)
    assert report["custody"]["input_unchanged"] is True
    assert any(f"no model at {missing}" in note for note in report["notes"])

    segments = report["segments"]
    threat_segments = [s for s in segments if any(h["category"] == "threat" for h in s["patterns"])]
    assert threat_segments, [s["text"] for s in segments]
    hit = threat_segments[0]["patterns"][0]
    assert threat_segments[0]["text"][hit["start"] : hit["end"]] == hit["text"]
    for seg in segments:
        assert seg["emotion"]["status"] == "analysed" and seg["emotion"]["device"] == "cpu"
        assert set(seg["emotion"]["dimensional"]) == {"arousal", "dominance", "valence"}
        assert seg["emotion"]["categorical"] is None  # that model is missing: never invented
        assert seg["voice"]["f0_mean_hz"] and 60 < seg["voice"]["f0_mean_hz"] < 300
        assert seg["crosscheck"]["outcome"] and seg["crosscheck"]["explanation"]
        total = sum(e["contribution"] for e in seg["evidence"])
        assert seg["score"] == pytest.approx(min(100.0, max(0.0, total)), abs=0.05)
    assert threat_segments[0]["score"] > 0
    assert report["file_score"]["score"] >= threat_segments[0]["score"] * 0.6 - 0.05

    html = (results / "report" / "threat.flac.html").read_text()
    assert "<svg" in html and "<script" not in html.lower()
    assert hit["text"] in html

    # The pipeline's own pages render in a real browser: plots present, no console errors.
    from test_html_report import CHROMIUM, _chromium, _console_messages

    if CHROMIUM is None:
        pytest.fail("chromium is required (scripts/setup.sh installs it)")
    for page in (results / "report" / "threat.flac.html", results / "case.html", results / "run_report.html"):
        dom = _chromium(tmp_path, page, "--dump-dom")
        assert dom.returncode == 0 and _console_messages(dom.stderr) == [], (page.name, dom.stderr[-2000:])
        assert "<svg" in dom.stdout, page.name
