"""Self-contained HTML reports: escaping, plots, highlighted hits, and a real render in Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from voiceman.forensic import assemble_file_report, load_forensic_config
from voiceman.htmlreport import render_case_report, render_file_report

RULES = load_forensic_config()
EVIL = "<script>alert('x')</script>"
THREAT_TEXT = "I will kill you " + EVIL


def _emotion(arousal, valence):
    return {
        "status": "analysed",
        "reason": None,
        "device": "cpu",
        "dimensional": {"arousal": arousal, "dominance": 0.5, "valence": valence},
        "categorical": {"label": "ang", "probabilities": {"ang": 0.6, "neu": 0.2, "hap": 0.1, "sad": 0.1}},
    }


def _voice(f0, **z):
    return {
        "f0_mean_hz": f0,
        "f0_sd_hz": 20.0,
        "f0_range_hz": 70.0,
        "jitter_local": 0.012,
        "shimmer_local": 0.06,
        "hnr_db": 14.0,
        "intensity_db": 66.0,
        "speech_rate_wps": 2.8,
        "pause_ratio": 0.1,
        "notes": ["f0 from voiced frames only"],
        "z": dict(z),
    }


def build_report(file_name="rec<01>.m4a"):
    segments = [
        {"start": 0.0, "end": 4.0, "text": THREAT_TEXT, "speaker": "SPEAKER_00<b>", "words": []},
        {"start": 4.0, "end": 4.6, "text": "uh", "speaker": "SPEAKER_01", "words": []},
        {
            "start": 5.0,
            "end": 9.0,
            "text": "you never said that, you imagine things",
            "speaker": "SPEAKER_01",
            "words": [],
        },
    ]
    hits = [
        [
            {
                "pattern_id": "EN-THR-001",
                "category": "threat",
                "severity": 5,
                "start": 2,
                "end": 15,
                "text": "will kill you",
                "context": "direct",
            },
            {
                "pattern_id": "EN-THR-009",
                "category": "intimidation",
                "severity": 3,
                "start": 7,
                "end": 11,
                "text": "kill",
                "context": "direct",
            },
            {
                "pattern_id": "EN-BAD-000",
                "category": "insult",
                "severity": 1,
                "start": 500,
                "end": 510,
                "text": "?",
                "context": "direct",
            },
        ],
        [],
        [
            {
                "pattern_id": "EN-GAS-002",
                "category": "gaslighting",
                "severity": 3,
                "start": 4,
                "end": 20,
                "text": "never said that",
                "context": "direct",
            }
        ],
    ]
    custody = {
        "input_sha256_before": "a" * 64,
        "input_sha256_after": "a" * 64,
        "models": [{"id": "org/model<x>", "role": "asr", "revision": "r1", "sha256": "b" * 64}],
        "config_sha256": "c" * 64,
        "software_version": "voiceman 0.1.0",
        "started_utc": "2026-11-27T10:00:00Z",
        "finished_utc": "2026-11-27T10:01:00Z",
    }
    not_analysed = {
        "status": "not_analysed",
        "reason": "segment shorter than 1.0 s <i>",
        "device": None,
        "dimensional": None,
        "categorical": None,
    }
    return assemble_file_report(
        file=file_name,
        custody=custody,
        segments=segments,
        emotions=[_emotion(0.85, 0.15), not_analysed, _emotion(0.35, 0.55)],
        voices=[_voice(230.0, f0_mean_hz=2.6), _voice(None), _voice(170.0, f0_mean_hz=-0.3)],
        patterns=hits,
        duration_s=10.0,
        language="en",
        rules=RULES,
    )


def build_case(report):
    return {
        "case": "case <2026-01>",
        "files": [
            {
                "name": "rec<01>.m4a",
                "status": "done",
                "reason": None,
                "report": "reports/rec01.json",
                "file_score": report["file_score"],
            },
            {
                "name": "broken.m4a",
                "status": "failed",
                "reason": "decode error: <moov atom not found>",
                "report": "javascript:alert(1)",
                "file_score": None,
            },
            {"name": "quiet.wav", "status": "done", "reason": None, "report": "reports/quiet.json", "file_score": 3.5},
        ],
        "run": {"wall_s": 12.5},
    }


def test_file_report_escapes_transcript_and_labels():
    html = render_file_report(build_report())
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "SPEAKER_00&lt;b&gt;" in html and "<b>" not in html
    assert "rec&lt;01&gt;.m4a" in html and "org/model&lt;x&gt;" in html


def test_file_report_is_self_contained():
    html = render_file_report(build_report())
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"<(link|img|iframe|object|embed)\b|\bsrc=|@import|url\(http", html, re.I)
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}


def test_file_report_highlights_hits_by_offset():
    html = render_file_report(build_report())
    # Overlap: "will " and " you" are only threat; "kill" is covered by both, marked as the most severe.
    assert '<mark class="hit cat-threat ctx-direct" title="threat EN-THR-001 severity 5 (direct)">will </mark>' in html
    assert re.search(
        r'<mark class="hit cat-threat ctx-direct" title="threat EN-THR-001 severity 5 \(direct\); '
        r'intimidation EN-THR-009 severity 3 \(direct\)">kill</mark>',
        html,
    )
    assert '<mark class="hit cat-gaslighting ctx-direct"' in html and ">never said that,</mark>" in html
    assert "offsets 500–510 outside the text (not highlighted)" in html


def test_file_report_plots_flags_scores_and_missing_emotion():
    report = build_report()
    html = render_file_report(report)
    svg = re.search(r'<svg class="timeline".*?</svg>', html, re.S).group(0)
    assert svg.count('class="flag-band"') == report["summary"]["flagged_segments"] == 1
    assert svg.count('class="not-analysed"') == 1
    for panel in ("Emotion (0.5 neutral)", "Pitch F0 mean (Hz)", "Voice stress", "Forensic score"):
        assert panel in svg
    assert "arousal 0.85 at 0:00.0–0:04.0" in svg  # values drawn from the report, not invented
    # arousal+valence on 2 analysed segments, F0 on 2 voiced, stress z on 2 with z-scores, score on all 3
    assert svg.count('class="series"') == 2 * 2 + 2 + 2 + 3
    assert "not analysed: segment shorter than 1.0 s &lt;i&gt;" in html
    assert "corroborated" in html and "will kill you" in html
    assert f"{report['file_score']['score']:.2f}</span> / 100" in html
    for e in report["segments"][0]["evidence"]:
        assert f"{e['contribution']:.2f}" in html


def test_failed_file_report_says_why():
    report = assemble_file_report(
        file="x.m4a",
        status="failed",
        reason="decode error: <bad header>",
        rules=RULES,
        custody={
            "input_sha256_before": None,
            "input_sha256_after": None,
            "models": [],
            "config_sha256": "c" * 64,
            "software_version": "0.1.0",
            "started_utc": "2026-11-27T10:00:00Z",
            "finished_utc": "2026-11-27T10:00:01Z",
        },
    )
    html = render_file_report(report)
    assert "Analysis failed: decode error: &lt;bad header&gt;" in html and "<svg" not in html


def test_case_report_lists_every_file_status_score_and_failure():
    report = build_report()
    html = render_case_report(build_case(report))
    assert "<script" not in html.lower() and "case &lt;2026-01&gt;" in html
    assert html.count('class="bar"') == 2  # two done files with a score; the failed one is labelled
    assert "decode error: &lt;moov atom not found&gt;" in html
    assert '<a href="reports/rec01.json">' in html and '<a href="reports/rec01.html">html</a>' in html
    assert 'href="javascript' not in html and "javascript:alert(1)" in html  # shown as text, never linked
    # Real evidence names (spaces, quotes, Hangul) still get working, percent-encoded links.
    named = render_case_report(
        {
            "files": [
                {
                    "name": "통화 (1).wav",
                    "status": "done",
                    "reason": None,
                    "report": "report/통화 it's (1).wav.json",
                    "file_score": 1.0,
                }
            ]
        }
    )
    assert 'href="report/%ED%86%B5%ED%99%94%20it%27s%20%281%29.wav.html"' in named
    assert f"{report['file_score']['score']:.2f}" in html and "3.50" in html
    # Ranked: done files by score descending, then failed files.
    assert html.index("rec&lt;01&gt;.m4a</td>") < html.index("quiet.wav</td>") < html.index("broken.m4a</td>")


# ------------------------------------------------------------------ real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def _chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{page.stem}-{len(extra)}"
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install -y chromium)")
def test_reports_render_in_headless_chromium_without_console_errors(tmp_path):
    # Control: a page with a broken script must show up as a console message, or the check below proves nothing.
    control = tmp_path / "control.html"
    control.write_text("<!DOCTYPE html><html><body><script>undefined_function()</script></body></html>")
    assert _console_messages(_chromium(tmp_path, control, "--dump-dom").stderr), "console capture is not working"

    report = build_report()
    file_page, case_page = tmp_path / "file.html", tmp_path / "case.html"
    file_page.write_text(render_file_report(report), encoding="utf-8")
    case_page.write_text(render_case_report(build_case(report)), encoding="utf-8")

    dom = _chromium(tmp_path, file_page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console_messages(dom.stderr) == []
    assert '<svg class="timeline"' in dom.stdout and 'class="flag-band"' in dom.stdout
    assert '<mark class="hit cat-threat' in dom.stdout and "<script" not in dom.stdout.lower()

    case_dom = _chromium(tmp_path, case_page, "--dump-dom")
    assert _console_messages(case_dom.stderr) == [] and '<svg class="case-scores"' in case_dom.stdout

    from PIL import Image  # pillow is in requirements.lock

    shot = tmp_path / "file.png"
    result = _chromium(tmp_path, file_page, f"--screenshot={shot}", "--window-size=1100,1600", "--hide-scrollbars")
    assert shot.exists(), result.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert image.size == (1100, 1600) and len(colours) > 50, "screenshot looks blank"
    # The timeline's arousal strokes (#d9480f) are painted, so the SVG really rendered.
    assert any(abs(r - 0xD9) + abs(g - 0x48) + abs(b - 0x0F) < 40 for _, (r, g, b) in colours)
