"""The case-wide findings queue of case.html: every flagged segment (or segment with a pattern
hit) of every recording in one table -- file, time, speaker, text with the hit highlighted,
hits, emotion and voice-stress evidence, score -- sortable and filterable, with a play control
for exactly that time range of the original recording and the reviewer's verdict.

Everything here is server-rendered and escaped; the one inline script (:data:`SCRIPT`, a
constant allowed by its hash in the page's CSP) reads only ``data-*`` attributes and form
controls and writes only text (never markup).  It filters (category, speaker, file, minimum
score, verdict; also read from the URL fragment, e.g. ``case.html#category=threat&min=40``),
sorts (click a column head), plays (one shared player; it seeks to the start and stops at the
end; the link alone carries ``#t=start,end`` for a browser without the script), and saves the
verdicts as a JSON file the analyst downloads (a Blob; nothing is sent anywhere) for
``voiceman review import``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voiceman import resources
from voiceman.htmlreport import media
from voiceman.htmlreport.html_parts import esc, fmt_num, fmt_time, highlight_text
from voiceman.review import VERDICTS

# The page's one script and its style, shipped as package data (``assets/``) so they are read
# and checked as the JavaScript and CSS they are.  The script is a constant: the CSP allows it by
# its SHA-256 (html_parts.csp), so any other script -- injected or not -- is refused by the browser.
SCRIPT = resources.package_text("htmlreport", "assets", "findings.js")
FINDINGS_STYLE = resources.package_text("htmlreport", "assets", "findings.css")


def _rel(path: Any, page_dir: str | Path | None) -> str | None:
    """A link to a results file relative to the page, percent-encoded."""
    if not path or page_dir is None:
        return None
    return media.evidence_href(str(Path(path).resolve()), page_dir)


def _num_attr(value: Any) -> str:
    """A number for a data attribute exactly as JSON writes it ('' when missing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def _emotion_text(emotion: dict[str, Any]) -> str:
    if emotion.get("status") != "analysed":
        return (
            f'<span class="not-analysed">emotion not analysed: {esc(emotion.get("reason") or "no reason given")}</span>'
        )
    parts = [f"{k} {fmt_num(emotion.get(k))}" for k in ("arousal", "valence", "dominance")]
    if emotion.get("label"):
        prob = emotion.get("label_probability")
        parts.append(f"{emotion['label']}" + (f" ({prob:.2f})" if isinstance(prob, (int, float)) else ""))
    return "emotion: " + esc(", ".join(parts))


def _stress_text(stress: list[dict[str, Any]]) -> str:
    if not stress:
        return "voice: no stressed feature"
    items = [
        f"{s.get('feature')} z {s['z']:+.1f}" if isinstance(s.get("z"), (int, float)) else str(s.get("feature"))
        for s in stress
    ]
    return "stressed voice: " + esc(", ".join(items))


def _verdict_meta(verdict: dict[str, Any] | None) -> str:
    if not verdict:
        return ""
    who = f" by {verdict['reviewer']}" if verdict.get("reviewer") else ""
    text = f"imported: {verdict.get('verdict')}{who}, {verdict.get('decided_utc')} (import {verdict.get('import')})"
    history = verdict.get("history") or []
    if history:
        text += "; earlier: " + "; ".join(
            f"{h.get('verdict')}{' by ' + h['reviewer'] if h.get('reviewer') else ''} ({h.get('decided_utc')})"
            for h in history
        )
    return f'<div class="explain verdict-meta">{esc(text)}</div>'


def _play_cell(f: dict[str, Any], page_dir: str | Path | None) -> str:
    where = media.time_range(f.get("start"), f.get("end"))
    href = media.evidence_href(f.get("evidence"), page_dir)
    frag = media.fragment(f.get("start"), f.get("end"))
    if not href or not frag:
        return f'<span class="mono time">{esc(where)}</span>'
    level, why = media.playable(f.get("evidence"), f.get("codec"))
    mime = media.MIME.get(media.extension(f.get("evidence")), "")
    label = f"{fmt_time(f.get('start'))}–{fmt_time(f.get('end'))}"
    note = (
        ""
        if level == media.YES
        else f'<div class="media-note">{esc(why)}; if it does not play, open the file at {esc(where)}</div>'
    )
    if level == media.NO:
        note = f'<div class="media-note">{esc(why)}: open the file (the link) in a player at {esc(where)}</div>'
    return (
        f'<a class="play mono" href="{esc(href + frag)}" data-start="{_num_attr(f.get("start"))}" '
        f'data-end="{_num_attr(f.get("end"))}" data-range="{esc(where)}" data-mime="{esc(mime)}" '
        f'data-support="{esc(level)}" title="{esc(where)}">▶ {esc(label)}</a>{note}'
        '<div class="media-note play-note" hidden></div>'
    )


def _row(n: int, f: dict[str, Any], page_dir: str | Path | None) -> str:
    verdict = f.get("verdict") or {}
    value = verdict.get("verdict") or ""
    options = '<option value="">—</option>' + "".join(
        f'<option value="{v}"{" selected" if v == value else ""}>{v}</option>' for v in VERDICTS
    )
    report_href = _rel(str(f["report"])[:-5] + ".html" if str(f["report"]).endswith(".json") else None, page_dir)
    report_link = (
        f'<a href="{esc(report_href)}#seg-{int(f["segment"])}">report, segment {int(f["segment"])}</a>'
        if report_href
        else f"segment {int(f['segment'])}"
    )
    hits = "".join(
        f'<li>{esc(h.get("category"))} <span class="mono">{esc(h.get("pattern_id"))}</span> '
        f"severity {esc(h.get('severity'))}, {esc(h.get('context'))}</li>"
        for h in f["patterns"]
    )
    outcome = esc(f.get("outcome"))
    badge = f'<span class="badge{" flag" if f.get("flagged") else ""}">{outcome}</span>'
    return (
        f'<tr class="finding{" flagged" if f.get("flagged") else ""}" id="finding-{n}" data-file="{esc(f["file"])}" '
        f'data-name="{esc(f["name"])}" data-segment="{int(f["segment"])}" data-start="{_num_attr(f.get("start"))}" '
        f'data-end="{_num_attr(f.get("end"))}" data-speaker="{esc(f["speaker"])}" '
        f'data-categories="|{esc("|".join(f["categories"]))}|" data-severity="{_num_attr(f.get("max_severity"))}" '
        f'data-score="{_num_attr(f.get("score"))}" data-report-sha256="{esc(f["report_sha256"])}" '
        f'data-decided="{esc(verdict.get("decided_utc") or "")}" data-reviewer="{esc(verdict.get("reviewer") or "")}">'
        f'<td><span class="fname">{esc(f["name"])}</span><div class="explain">{report_link}</div></td>'
        f"<td>{_play_cell(f, page_dir)}</td>"
        f"<td>{esc(f['speaker'])}</td>"
        f'<td><div class="text">{highlight_text(str(f["text"]), f["patterns"])}</div></td>'
        f"<td>{f'<ul>{hits}</ul>' if hits else '—'}</td>"
        f'<td>{badge}<div class="explain">'
        f"{_emotion_text(f.get('emotion') or {})}<br>{_stress_text(f.get('stress') or [])}"
        f"<br>{esc(f.get('explanation'))}</div></td>"
        f'<td class="num f-score">{fmt_num(f.get("score"))}</td>'
        f'<td class="review"><select class="verdict" aria-label="verdict">{options}</select>'
        # the newline after <textarea> is dropped by the parser, so a note's own first newline is kept
        f'<textarea class="note" rows="2" maxlength="20000" placeholder="note" aria-label="note">\n'
        f"{esc(verdict['note']) if verdict.get('note') else ''}</textarea>{_verdict_meta(verdict or None)}</td>"
        "</tr>"
    )


def _options(values: list[tuple[str, str]]) -> str:
    return '<option value="">all</option>' + "".join(
        f'<option value="{esc(v)}">{esc(label)}</option>' for v, label in values
    )


def _stale_table(stale: list[dict[str, Any]]) -> str:
    if not stale:
        return ""
    rows = "".join(
        f'<tr><td>{esc(v.get("name") or v.get("file"))}</td><td class="num">{esc(v.get("segment"))}</td>'
        f"<td>{esc(v.get('verdict'))}</td><td>{esc(v.get('note') or '')}</td><td>{esc(v.get('reviewer') or '')}</td>"
        f'<td>{esc(v.get("decided_utc"))}</td><td class="explain">{esc(v.get("stale_reason"))}</td></tr>'
        for v in stale
    )
    return (
        f"<h3>Verdicts on earlier analyses ({len(stale)}): kept, not applied</h3>"
        '<p class="explain">These verdicts were made on a report that has since changed (the file was analysed '
        "again), so they are not shown as verdicts on the current findings. Review those findings again.</p>"
        '<table class="stale-verdicts"><thead><tr><th>file</th><th>segment</th><th>verdict</th><th>note</th>'
        f"<th>reviewer</th><th>decided</th><th>why not applied</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def render_findings(
    findings: list[dict[str, Any]],
    stale: list[dict[str, Any]],
    page_dir: str | Path | None,
    case: dict[str, Any],
    review: dict[str, Any] | None = None,
) -> str:
    """The findings section of case.html (the caller adds :data:`SCRIPT` to the page)."""
    categories = sorted({c for f in findings for c in f["categories"]})
    speakers = sorted({str(f["speaker"]) for f in findings})
    files = sorted({(f["file"], f["name"]) for f in findings}, key=lambda x: x[1])
    counts = review or {}
    summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in (*VERDICTS, "unreviewed")) if review else ""
    stale_note = (
        f"; {counts.get('stale_verdicts')} verdicts on earlier analyses" if counts.get("stale_verdicts") else ""
    )
    rows = "".join(_row(n, f, page_dir) for n, f in enumerate(findings, 1))
    head = (
        '<tr><th data-sort="file">file</th><th data-sort="start">time (▶ play)</th><th data-sort="speaker">speaker</th>'
        '<th>text (hits highlighted)</th><th data-sort="severity">hits</th><th>cross-check, emotion, voice stress</th>'
        '<th data-sort="score">score</th><th data-sort="verdict">verdict and note</th></tr>'
    )
    return (
        f'<section id="findings" data-case-dir="{esc(case.get("case_dir") or "")}" '
        f'data-config-sha256="{esc(case.get("config_sha256") or "")}" '
        f'data-generated="{esc(case.get("generated_utc") or "")}">'
        f"<h2>Findings ({len(findings)})</h2>"
        '<p class="explain">Every segment the cross-check flagged or with a pattern hit, across the case'
        + (f" — {esc(summary)}{esc(stale_note)}" if summary else "")
        + ". "
        "▶ plays exactly that time range of the original recording, read in place by a link relative to this page "
        "(no copy). Verdicts you set here are saved to a file you download (nothing is sent anywhere); store them "
        'with <span class="mono">voiceman review import FILE</span>, and the next case report shows them.</p>'
        '<p id="js-needed" class="media-note">Filtering, sorting, playing in the page and saving verdicts need '
        "JavaScript; the links still open each recording at its time range.</p>"
        '<div class="player-bar"><audio id="player" controls preload="metadata"></audio>'
        '<span id="now-playing" class="explain">nothing loaded</span></div>'
        '<div class="filters">'
        f'<label>category <select id="f-category">{_options([(c, c) for c in categories])}</select></label>'
        f'<label>speaker <select id="f-speaker">{_options([(s, s) for s in speakers])}</select></label>'
        f'<label>file <select id="f-file">{_options(files)}</select></label>'
        '<label>minimum score <input id="f-min" type="number" min="0" max="100" step="1" size="4"></label>'
        '<label>verdict <select id="f-verdict"><option value="">all</option>'
        '<option value="unreviewed">unreviewed</option>'
        + "".join(f'<option value="{v}">{v}</option>' for v in VERDICTS)
        + "</select></label>"
        f'<span id="shown" class="explain" role="status">{len(findings)} findings</span></div>'
        '<div class="savebar"><label>reviewer <input id="reviewer" type="text" maxlength="200" size="16"></label>'
        '<button type="button" id="save-verdicts">Download verdicts (JSON)</button>'
        '<a id="download-verdicts" hidden>verdicts.json</a>'
        '<span id="save-status" class="explain" role="status"></span></div>'
        f'<table id="findings-table"><thead>{head}</thead><tbody>{rows}</tbody></table>'
        "<details><summary>the verdicts file as it would be saved now</summary>"
        '<pre id="verdicts-preview" class="mono"></pre></details>' + _stale_table(stale) + "</section>"
    )
