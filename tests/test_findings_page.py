"""The findings queue of case.html and the play controls of the per-file report: every finding
listed and escaped, play controls that point at the original recording (relative link, exact
time range), filters/sort read from the URL, verdict controls -- checked as HTML and in
headless Chromium (the script runs under the page's own CSP: no console error, no CSP
violation, the evidence really loads at the right position)."""

from __future__ import annotations

import json
import math
import re
import struct
import wave
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import pytest

from test_html_report import CHROMIUM, _chromium, _console_messages
from voiceman import atomic
from voiceman.benchmark.inprocess import case_summary
from voiceman.forensic import assemble_file_report, load_forensic_config
from voiceman.htmlreport import render_file_report
from voiceman.htmlreport.findings import SCRIPT
from voiceman.htmlreport.html_parts import script_hash

RULES = load_forensic_config()
EVIL = "<script>alert('x')</script>"
ODD = '통화 it\'s "q" #1 50%.wav'


def tone_wav(path: Path, seconds: float = 12.0, rate: int = 16000) -> None:
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 220 * i / rate))) for i in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)


def _emotion(arousal, valence):
    return {
        "status": "analysed",
        "reason": None,
        "device": "cpu",
        "dimensional": {"arousal": arousal, "dominance": 0.5, "valence": valence},
        "categorical": {"label": "ang", "probabilities": {"ang": 0.6, "neu": 0.4}},
    }


def _voice(z):
    return {
        "f0_mean_hz": 200.0,
        "f0_sd_hz": 20.0,
        "jitter_local": 0.01,
        "shimmer_local": 0.05,
        "hnr_db": 14.0,
        "intensity_db": 66.0,
        "speech_rate_wps": 2.5,
        "pause_ratio": 0.1,
        "notes": [],
        "z": {"f0_mean_hz": z},
    }


def _hit(pid, category, severity, text, phrase):
    start = text.index(phrase)
    return {
        "pattern_id": pid,
        "category": category,
        "severity": severity,
        "start": start,
        "end": start + len(phrase),
        "text": phrase,
        "context": "direct",
    }


def make_report(name: str, path: Path, speaker: str, variant: int) -> dict:
    """Three segments: a threat (flagged), a calm line (no finding), an insult/gaslighting line."""
    t0 = f"I will kill you {EVIL}" if variant == 0 else "I will kill you if you call the police"
    t2 = "you never said that, you imagine things" if variant != 2 else "you are an idiot"
    segments = [
        {"start": 1.0, "end": 3.5, "text": t0, "speaker": speaker, "words": []},
        {"start": 4.0, "end": 6.0, "text": "thank you for the dinner", "speaker": "SPEAKER_01", "words": []},
        {"start": 6.5, "end": 9.25, "text": t2, "speaker": "SPEAKER_01", "words": []},
    ]
    hits = [
        [_hit("EN-THR-001", "threat", 5, t0, "will kill you")],
        [],
        [_hit("EN-GAS-002", "gaslighting", 3, t2, "never said that")]
        if variant != 2
        else [_hit("EN-INS-001", "insult", 2, t2, "idiot")],
    ]
    custody = {
        "input_path": str(path),
        "input_sha256_before": "a" * 64,
        "input_sha256_after": "a" * 64,
        "models": [],
        "config_sha256": "c" * 64,
        "software_version": "test",
        "started_utc": "2026-11-27T10:00:00Z",
        "finished_utc": "2026-11-27T10:01:00Z",
    }
    return assemble_file_report(
        file=name,
        custody=custody,
        segments=segments,
        emotions=[_emotion(0.85, 0.15), _emotion(0.4, 0.6), _emotion(0.5 + 0.1 * variant, 0.4)],
        voices=[_voice(2.6), _voice(0.1), _voice(0.3)],
        patterns=hits,
        duration_s=12.0,
        language="en",
        rules=RULES,
    )


def build_results(root: Path, verdicts_first: bool = False) -> SimpleNamespace:
    """A case folder (a space in its name) with three recordings -- plain WAV, a WAV with an odd
    name, an AMR no browser plays -- their reports as the report rule writes them, and the
    case summary written by the case_summary rule's body."""
    case = root / "case files"
    results = root / "results"
    case.mkdir(parents=True)
    tone_wav(case / "call-01.wav")
    tone_wav(case / ODD)
    (case / "memo.amr").write_bytes(b"#!AMR\n" + bytes(64))
    config = {"case_dir": str(case), "results_dir": str(results), "audio_extensions": ["wav", "amr"]}
    from voiceman.case import inventory

    inv = inventory(case, config["audio_extensions"], results_dir=results)
    reports = {}
    for variant, rec in enumerate(sorted(inv.recordings, key=lambda r: r.name)):
        report = make_report(rec.display, Path(rec.path), "SPEAKER_00" if variant != 1 else "화자 <A>", variant)
        atomic.write_json(results / "report" / f"{rec.key}.json", report)
        atomic.write_text(
            results / "report" / f"{rec.key}.html", render_file_report(report, page_dir=results / "report")
        )
        if rec.name.endswith(".amr"):
            atomic.write_json(results / "ingest" / f"{rec.key}.json", {"audio": {"codec": "amr_nb"}})
        reports[rec.key] = report
    (results / "logs").mkdir(parents=True, exist_ok=True)
    case_summary(config, inv.keys)
    return SimpleNamespace(
        case=case,
        results=results,
        config=config,
        keys=inv.keys,
        reports=reports,
        html=(results / "case.html").read_text(encoding="utf-8"),
        summary=json.loads((results / "case.json").read_text(encoding="utf-8")),
    )


@pytest.fixture
def built(tmp_path) -> SimpleNamespace:
    return build_results(tmp_path)


class _Rows(HTMLParser):
    """The findings rows of a page (or DOM dump): their attributes, play links, hidden state."""

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []
        self.player: dict = {}
        self.section: dict = {}
        self.preview: list[str] = []
        self._in_preview = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "finding" in (a.get("class") or "").split():
            self.rows.append({**a, "play": None, "selected": None})
        elif tag == "a" and "play" in (a.get("class") or "").split() and self.rows:
            self.rows[-1]["play"] = a
        elif tag == "option" and "selected" in a and self.rows:
            self.rows[-1]["selected"] = a.get("value")
        elif tag == "audio" and a.get("id") == "player":
            self.player = a
        elif tag == "section" and a.get("id") == "findings":
            self.section = a
        elif tag == "pre" and a.get("id") == "verdicts-preview":
            self._in_preview = True

    def handle_endtag(self, tag):
        if tag == "pre":
            self._in_preview = False

    def handle_data(self, data):
        if self._in_preview:
            self.preview.append(data)


def rows_of(html: str) -> _Rows:
    parser = _Rows()
    parser.feed(html)
    return parser


def expected_findings(reports: dict) -> int:
    return sum(1 for r in reports.values() for s in r["segments"] if s["crosscheck"]["flagged"] or s["patterns"])


# ------------------------------------------------------------------ the page as written


def test_case_page_lists_every_finding_escaped(built):
    html = built.html
    parsed = rows_of(html)
    assert len(parsed.rows) == expected_findings(built.reports) == 6  # 2 per recording; the calm line is none
    assert built.summary["review"]["findings"] == 6 and built.summary["review"]["unreviewed"] == 6
    assert built.summary["review"]["flagged"] == sum(r["summary"]["flagged_segments"] for r in built.reports.values())
    # Transcript text and labels are data: escaped, never markup; only the page's own script exists.
    assert html.count("<script>") == 1 and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "화자 &lt;A&gt;" in html and "<A>" not in html
    assert '<mark class="hit cat-threat ctx-direct"' in html and ">will kill you</mark>" in html
    for row in parsed.rows:
        assert re.fullmatch(r"[0-9a-f]{64}", row["data-report-sha256"])
        assert row["data-categories"].startswith("|") and row["data-score"]
    # The page's one script is allowed by its hash, media from its own origin: nothing else.
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp and f"script-src {script_hash(SCRIPT)}" in csp
    assert "media-src 'self' file:" in csp and "unsafe-eval" not in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1]
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html)


def test_play_controls_point_at_the_evidence_and_time_range(built):
    parsed = rows_of(built.html)
    by_name = {}
    for row in parsed.rows:
        by_name.setdefault(row["data-name"], []).append(row)
    assert set(by_name) == {"call-01.wav", ODD, "memo.amr"}
    for name, rows in by_name.items():
        for row in rows:
            href = row["play"]["href"]
            path, frag = href.split("#")
            assert not path.startswith(("/", "file:")) and ":" not in path  # relative, no scheme
            assert (built.results / unquote(path)).resolve() == (built.case / name).resolve()
            assert frag == f"t={float(row['data-start']):.3f},{float(row['data-end']):.3f}"
            assert row["play"]["data-start"] == row["data-start"] and row["play"]["data-end"] == row["data-end"]
    odd = by_name[ODD][0]["play"]["href"]
    assert "%20" in odd and "%27" in odd and "%22" in odd and "%23" in odd and "%25" in odd and "%ED%86%B5" in odd
    # AMR: the codec from the ingest record says no browser plays it; the range to open elsewhere is given.
    assert {r["play"]["data-support"] for r in by_name["memo.amr"]} == {"no"}
    assert "browsers cannot play amr_nb audio" in built.html and "(1.000–3.500 s)" in built.html
    assert {r["play"]["data-support"] for r in by_name["call-01.wav"]} == {"yes"}


def test_file_report_plays_each_segment_from_the_evidence(built):
    key = next(k for k in built.keys if k.endswith(".wav") and k != "call-01.wav")
    html = (built.results / "report" / f"{key}.html").read_text(encoding="utf-8")
    srcs = re.findall(r'<audio class="segment-audio" controls preload="none" src="([^"]+)">', html)
    report = built.reports[key]
    assert len(srcs) == len(report["segments"]) == 3
    for src, seg in zip(srcs, report["segments"]):
        path, frag = src.replace("&amp;", "&").split("#")
        assert (built.results / "report" / unquote(path)).resolve() == (built.case / ODD).resolve()
        assert frag == f"t={seg['start']:.3f},{seg['end']:.3f}"
    assert "<script" not in html.lower() and "media-src 'self' file:" in html
    amr = (built.results / "report" / "memo.amr.html").read_text(encoding="utf-8")
    assert "<audio" not in amr and "browsers cannot play .amr files" in amr and "(6.500–9.250 s)" in amr
    # Without the page's folder (no evidence link possible) nothing changes: no media, no policy for it.
    plain = render_file_report(report)
    assert "<audio" not in plain and "media-src" not in plain


def test_no_findings_no_script(tmp_path):
    from voiceman.htmlreport import render_case_report

    html = render_case_report({"files": []}, findings=[], stale=[])
    assert "Findings (0)" in html and "<script" not in html and "script-src" not in html


# ------------------------------------------------------------------ real browser

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")


def _dom(tmp_path: Path, page: Path, fragment: str = "", budget_ms: int = 4000):
    """The DOM after the page's script ran (and media had time to load), and the console."""
    url_page = (
        page
        if not fragment
        else SimpleNamespace(as_uri=lambda: page.as_uri() + "#" + fragment, stem=page.stem + str(abs(hash(fragment))))
    )
    result = _chromium(
        tmp_path,
        url_page,
        f"--virtual-time-budget={budget_ms}",
        "--autoplay-policy=no-user-gesture-required",
        "--dump-dom",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, _console_messages(result.stderr)


@needs_chromium
def test_console_capture_sees_csp_violations(tmp_path):
    # Control: a script the policy does not allow must show up, or "no console errors" proves nothing.
    bad = tmp_path / "bad.html"
    bad.write_text(
        f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        f'script-src {script_hash(SCRIPT)}"></head><body><script>document.title="ran"</script></body></html>'
    )
    _, console = _dom(tmp_path, bad)
    assert any("Content Security Policy" in line for line in console), console


@needs_chromium
def test_findings_page_runs_without_console_errors_and_loads_the_first_finding(built, tmp_path):
    dom, console = _dom(tmp_path, built.results / "case.html")
    assert console == [], console
    parsed = rows_of(dom)
    assert parsed.section.get("class") == "js" and len(parsed.rows) == 6
    assert 'id="js-needed" class="media-note" hidden=""' in dom
    assert parsed.section["data-shown"] == "6"
    # Sorted by score, highest first; the player holds the first finding's range, loaded from the evidence.
    scores = [float(r["data-score"]) for r in parsed.rows]
    assert scores == sorted(scores, reverse=True)
    first = parsed.rows[0]
    assert parsed.player["data-current"] == first["id"] and parsed.player["src"].endswith(
        first["play"]["href"].split("/")[-1]
    )
    if first["play"]["data-support"] == "yes":
        assert parsed.player["data-state"] == "ready", parsed.player
        assert float(parsed.player["data-position"]) == pytest.approx(float(first["data-start"]), abs=0.05)


@needs_chromium
def test_filters_and_sort_from_the_url(built, tmp_path):
    page = built.results / "case.html"
    dom, console = _dom(tmp_path, page, "category=threat&min=50")
    assert console == []
    rows = rows_of(dom).rows
    visible = [r for r in rows if "hidden" not in r]
    expected = [r for r in rows if "|threat|" in r["data-categories"] and float(r["data-score"]) >= 50]
    assert visible and [r["id"] for r in visible] == [r["id"] for r in expected]
    assert len(visible) < len(rows)

    dom, _ = _dom(tmp_path, page, "speaker=" + "화자 <A>".replace(" ", "%20").replace("<", "%3C").replace(">", "%3E"))
    visible = [r for r in rows_of(dom).rows if "hidden" not in r]
    assert visible and {r["data-speaker"] for r in visible} == {"화자 <A>"}

    # The odd file name as a filter value; the player then loads that recording (Hangul, quotes,
    # '#', '%' in its name) from the case folder under the page's CSP.
    key = next(r["data-file"] for r in rows if r["data-name"] == ODD)
    from urllib.parse import quote

    dom, console = _dom(tmp_path, page, "file=" + quote(key) + "&sort=start&dir=asc")
    assert console == []
    parsed = rows_of(dom)
    visible = [r for r in parsed.rows if "hidden" not in r]
    assert {r["data-name"] for r in visible} == {ODD} and len(visible) == 2
    starts = [float(r["data-start"]) for r in visible]
    assert starts == sorted(starts)
    assert parsed.player["data-current"] == visible[0]["id"] and parsed.player["data-state"] == "ready"
    assert float(parsed.player["data-position"]) == pytest.approx(starts[0], abs=0.05)

    dom, _ = _dom(tmp_path, page, "verdict=confirmed")
    assert [r for r in rows_of(dom).rows if "hidden" not in r] == []  # nothing reviewed yet


@needs_chromium
def test_file_report_audio_loads_at_its_range(built, tmp_path):
    """The per-file report has no script: a harness beside it loads the same src attribute and
    reports where the media fragment put the playhead."""
    key = next(k for k in built.keys if k.endswith(".wav") and k != "call-01.wav")
    page = built.results / "report" / f"{key}.html"
    dom, console = _dom(tmp_path, page)
    assert console == [] and dom.count('class="segment-audio"') == 3
    src = re.findall(r'class="segment-audio" controls="" preload="none" src="([^"]+)"', dom)[2]
    harness = built.results / "report" / "harness.html"
    harness.write_text(
        f'<!DOCTYPE html><html><body><audio id="a" preload="auto" src="{src}"></audio><p id="out">none</p><script>'
        "var a=document.getElementById('a');function f(e){document.getElementById('out').textContent=e+' '+"
        "a.currentTime.toFixed(3)+' '+(a.error?a.error.code:'ok');}"
        "a.addEventListener('loadedmetadata',function(){f('meta')});a.addEventListener('error',function(){f('error')});"
        "</script></body></html>",
        encoding="utf-8",
    )
    dom, _ = _dom(tmp_path, harness)
    state = re.search(r'<p id="out">([^<]*)</p>', dom).group(1).split()
    assert state[0] == "meta" and state[2] == "ok", state
    assert float(state[1]) == pytest.approx(built.reports[key]["segments"][2]["start"], abs=0.05)


class _PipeBrowser:
    """Headless Chromium driven over --remote-debugging-pipe (the DevTools protocol on fds 3/4,
    no extra package): only for what a DOM dump cannot show -- a click that plays and stops,
    a verdict typed in, the file the page downloads."""

    def __init__(self, profile: Path, downloads: Path):
        import os
        import subprocess

        self._os = os
        chrome_in, self._to_chrome = os.pipe()
        self._from_chrome, chrome_out = os.pipe()

        def wire():
            os.dup2(chrome_in, 3)
            os.dup2(chrome_out, 4)

        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-pipe",
                "--autoplay-policy=no-user-gesture-required",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            pass_fds=(3, 4),
            preexec_fn=wire,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(chrome_in)
        os.close(chrome_out)
        self._id, self._buf, self.console, self.download_states = 0, b"", [], []
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        # eventsEnabled: Chromium reports each download's progress; the file's name appears on disk
        # (empty, reserving it) before its bytes are written, so only "completed" means it is whole.
        self.send(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(downloads), "eventsEnabled": True},
        )
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.send(domain, session=True)

    def send(self, method: str, params: dict | None = None, session: bool = False) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        self._os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._next_message(60.0)
            assert reply is not None, f"no answer from Chromium to {method}"
            if reply.get("id") == self._id:
                assert "error" not in reply, reply
                return reply.get("result", {})

    def _next_message(self, timeout_s: float) -> dict | None:
        """The next message from Chromium (None when none came within timeout_s); events worth
        keeping -- console output, download progress -- are recorded on the way."""
        import select

        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._from_chrome], [], [], max(timeout_s, 0.0))
            if not ready:
                return None
            chunk = self._os.read(self._from_chrome, 1 << 16)
            assert chunk, "Chromium closed the pipe"
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        message = json.loads(raw)
        if message.get("method") in ("Runtime.exceptionThrown", "Log.entryAdded", "Runtime.consoleAPICalled"):
            self.console.append(message)
        if message.get("method") == "Browser.downloadProgress":
            self.download_states.append(message["params"]["state"])
        return message

    def until_downloaded(self, timeout_s: float = 20.0) -> None:
        """Wait for Chromium to say the download finished (not merely that its file exists)."""
        import time

        deadline = time.monotonic() + timeout_s
        while "completed" not in self.download_states:
            assert "canceled" not in self.download_states, "Chromium canceled the download"
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"download not completed in {timeout_s} s: {self.download_states}"
            self._next_message(remaining)

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def until(self, expression: str, timeout_s: float = 20.0):
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")

    def close(self):
        self.proc.kill()
        self.proc.wait(10)
        self._os.close(self._to_chrome)
        self._os.close(self._from_chrome)


@needs_chromium
def test_click_plays_exactly_the_range_and_save_downloads_an_importable_file(built, tmp_path):
    from voiceman import review

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = _PipeBrowser(tmp_path / "cdp-profile", downloads)
    try:
        browser.send("Page.navigate", {"url": (built.results / "case.html").as_uri()}, session=True)
        browser.until("document.getElementById('findings') && document.getElementById('findings').dataset.verdicts")
        # Play the odd-named recording's first finding: it starts at its start and stops at its end.
        start, end = browser.js(
            "var r=[...document.querySelectorAll('tr.finding')].find(r=>r.dataset.name.startsWith('통화')"
            " && r.dataset.segment==='0'); r.querySelector('a.play').click(); [+r.dataset.start, +r.dataset.end]"
        )
        browser.until(f"var p=document.getElementById('player'); !p.paused && p.currentTime > {start}")
        browser.until(
            f"var p=document.getElementById('player'); p.paused && p.currentTime >= {end} - 0.05", timeout_s=30
        )
        assert browser.js("document.getElementById('player').currentTime") == pytest.approx(end, abs=0.1)
        # An AMR finding is not played: the row says so and gives the range.
        note = browser.js(
            "var r=[...document.querySelectorAll('tr.finding')].find(r=>r.dataset.name==='memo.amr');"
            "r.querySelector('a.play').click(); r.querySelector('.play-note').textContent"
        )
        assert "cannot play" in note and "(1.000–3.500 s)" in note
        # A verdict with a note, the reviewer's name, then "Download verdicts".
        browser.js(
            "document.getElementById('reviewer').value='analyst \"Q\"';"
            "var r=document.querySelectorAll('tr.finding')[0]; var s=r.querySelector('select.verdict');"
            "s.value='confirmed'; s.dispatchEvent(new Event('change'));"
            "var t=r.querySelector('textarea.note'); t.value='heard it </script>'; t.dispatchEvent(new Event('input'));"
        )
        assert "unsaved" in browser.js("document.getElementById('save-status').textContent")
        browser.js("document.getElementById('save-verdicts').click()")
        saved = browser.until("document.getElementById('download-verdicts').download")
        browser.until_downloaded()
    finally:
        browser.close()
    errors = [
        m
        for m in browser.console
        if m.get("method") == "Runtime.exceptionThrown"
        or (m.get("params", {}).get("entry", {}).get("level") == "error")
    ]
    assert errors == []
    doc = json.loads((downloads / saved).read_text(encoding="utf-8"))
    review.validate_document(doc)
    assert [(v["verdict"], v["note"], v["reviewer"]) for v in doc["verdicts"]] == [
        ("confirmed", "heard it </script>", 'analyst "Q"')
    ]
    result = review.import_file(downloads / saved, built.results)
    assert result.added == 1
