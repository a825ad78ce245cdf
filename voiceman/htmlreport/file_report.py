"""HTML page for one recording's report dict (see voiceman/schemas/report.schema.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voiceman.htmlreport import media
from voiceman.htmlreport.html_parts import (
    esc,
    evidence_table,
    fmt_num,
    fmt_time,
    highlight_text,
    json_block,
    key_value_table,
    page,
)
from voiceman.htmlreport.timeline_svg import render_timeline

_VOICE_FIELDS = (
    ("f0_mean_hz", "F0 mean Hz", 1),
    ("f0_sd_hz", "F0 sd Hz", 1),
    ("jitter_local", "jitter", 4),
    ("shimmer_local", "shimmer", 4),
    ("hnr_db", "HNR dB", 1),
    ("intensity_db", "intensity dB", 1),
    ("speech_rate_wps", "words/s", 2),
    ("pause_ratio", "pause ratio", 2),
)


def _emotion_html(emotion: dict[str, Any] | None) -> str:
    if not emotion or emotion.get("status") != "analysed":
        reason = (emotion or {}).get("reason") or "no reason given"
        return f'<span class="not-analysed">not analysed: {esc(reason)}</span>'
    dims = emotion.get("dimensional") or {}
    parts = [f"{k} {fmt_num(dims.get(k))}" for k in ("arousal", "valence", "dominance")]
    categorical = emotion.get("categorical") or {}
    if categorical.get("label"):
        prob = (categorical.get("probabilities") or {}).get(categorical["label"])
        parts.append(f"label {categorical['label']}" + (f" ({prob:.2f})" if isinstance(prob, (int, float)) else ""))
    if emotion.get("device"):
        parts.append(f"on {emotion['device']}")
    return esc(", ".join(parts))


def _voice_html(voice: dict[str, Any] | None) -> str:
    if not voice:
        return '<span class="not-analysed">not measured</span>'
    z = voice.get("z") or {}
    parts = []
    for key, label, digits in _VOICE_FIELDS:
        if voice.get(key) is None:
            continue
        z_val = z.get(key)
        parts.append(
            f"{label} {voice[key]:.{digits}f}" + (f" (z {z_val:+.1f})" if isinstance(z_val, (int, float)) else "")
        )
    notes = voice.get("notes") or []
    text = esc(", ".join(parts) or "no feature measurable")
    return text + (f'<br><span class="explain">{esc("; ".join(map(str, notes)))}</span>' if notes else "")


def _hits_list(hits: list[dict[str, Any]], text: str) -> str:
    if not hits:
        return ""
    items = []
    for h in hits:
        start, end = h.get("start"), h.get("end")
        in_range = isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)
        where = f"chars {start}–{end}" if in_range else f"offsets {start}–{end} outside the text (not highlighted)"
        items.append(
            f'<li>{esc(h.get("category"))} <span class="mono">{esc(h.get("pattern_id"))}</span> '
            f"severity {esc(h.get('severity'))}, {esc(h.get('context'))}: “{esc(h.get('text'))}” ({esc(where)})</li>"
        )
    return f"<ul>{''.join(items)}</ul>"


def _segment_row(seg: dict[str, Any], play: tuple[str | None, tuple[str, str]] | None = None) -> str:
    check = seg.get("crosscheck") or {}
    flagged = bool(check.get("flagged"))
    badge = f'<span class="badge{" flag" if flagged else ""}">{esc(check.get("outcome"))}</span>'
    text = str(seg.get("text") or "")
    return (
        f'<tr class="segment{" flagged" if flagged else ""}" id="seg-{int(seg.get("index", 0))}">'
        f'<td class="num">{int(seg.get("index", 0))}</td>'
        f'<td class="mono time">{esc(fmt_time(seg.get("start")))}–{esc(fmt_time(seg.get("end")))}</td>'
        + (
            f'<td class="play-cell">{media.segment_player(play[0], seg.get("start"), seg.get("end"), play[1])}</td>'
            if play
            else ""
        )
        + f"<td>{esc(seg.get('speaker') or 'unassigned')}</td>"
        f'<td><div class="text">{highlight_text(text, seg.get("patterns") or [])}</div>'
        f"{_hits_list(seg.get('patterns') or [], text)}</td>"
        f"<td>{_emotion_html(seg.get('emotion'))}</td>"
        f"<td>{_voice_html(seg.get('voice'))}</td>"
        f'<td>{badge}<div class="explain">{esc(check.get("explanation"))}</div></td>'
        f'<td class="num"><details><summary>{fmt_num(seg.get("score"))}</summary>'
        f"{evidence_table(seg.get('evidence') or [])}</details></td>"
        "</tr>"
    )


def _top_segments_html(top: list[dict[str, Any]]) -> str:
    if not top:
        return ""
    rows = "".join(
        f'<tr><td><a href="#seg-{int(t.get("index", 0))}">#{int(t.get("index", 0))}</a></td>'
        f'<td class="mono time">{esc(fmt_time(t.get("start")))}–{esc(fmt_time(t.get("end")))}</td>'
        f'<td>{esc(t.get("speaker") or "unassigned")}</td><td class="num">{fmt_num(t.get("score"))}</td>'
        f"<td>{esc(t.get('outcome'))}{' (flagged)' if t.get('flagged') else ''}</td>"
        f"<td>{esc('; '.join(str(e.get('detail')) for e in t.get('top_evidence') or []))}</td></tr>"
        for t in top
    )
    return (
        "<table><thead><tr><th>segment</th><th>time</th><th>speaker</th><th>score</th><th>outcome</th>"
        f"<th>largest contributions</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _aggregate_html(agg: dict[str, Any]) -> str:
    outcomes = ", ".join(f"{k}: {v}" for k, v in (agg.get("outcomes") or {}).items()) or "—"
    return (
        f'<p><span class="score">{fmt_num(agg.get("score"))}</span> / 100 — {esc(agg.get("method"))}</p>'
        f'<p class="explain">{esc(agg.get("segment_count"))} segments, {fmt_num(agg.get("speech_s"), 1)} s of speech, '
        f"{esc(agg.get('flagged_segments'))} flagged; outcomes: {esc(outcomes)}</p>"
        + evidence_table(agg.get("evidence") or [])
        + _top_segments_html(agg.get("top_segments") or [])
    )


def _custody_html(custody: dict[str, Any]) -> str:
    rows = [
        (k, f'<span class="mono">{esc(custody.get(k))}</span>')
        for k in (
            "input_path",
            "input_size_bytes",
            "input_sha256_before",
            "input_sha256_after",
            "input_unchanged",
            "config_sha256",
            "forensic_rules_sha256",
            "software_version",
            "started_utc",
            "finished_utc",
            "host",
        )
        if k in custody
    ]
    models = custody.get("models") or []
    model_rows = "".join(
        f'<tr><td>{esc(m.get("role"))}</td><td class="mono">{esc(m.get("id"))}</td>'
        f'<td class="mono">{esc(m.get("revision") or m.get("path"))}</td>'
        f'<td class="mono">{esc(m.get("sha256"))}</td></tr>'
        for m in models
    )
    model_table = (
        (
            f"<table><thead><tr><th>role</th><th>model</th><th>revision / path</th><th>weights SHA-256</th></tr>"
            f"</thead><tbody>{model_rows}</tbody></table>"
        )
        if models
        else "<p>No models recorded.</p>"
    )
    return key_value_table(rows) + model_table


def render_file_report(
    report: dict[str, Any], page_dir: str | Path | None = None, audio: dict[str, Any] | None = None
) -> str:
    """Self-contained HTML (inline CSS and SVG, no scripts) for one file's report dict.

    ``page_dir``: the folder the page is written to; with it, every segment gets a play
    control for its time range of the original recording (``custody.input_path``, linked
    relative to the page, never copied).  ``audio``: the ingest record's audio facts
    (``codec``), to say when a browser cannot play the file."""
    segments = report.get("segments") or []
    href = media.evidence_href((report.get("custody") or {}).get("input_path"), page_dir)
    play = (
        (href, media.playable((report.get("custody") or {}).get("input_path"), (audio or {}).get("codec")))
        if href
        else None
    )
    status = report.get("status")
    status_cls = "status-done" if status == "done" else "status-failed"
    header = [
        f"<h1>Forensic report: {esc(report.get('file'))}</h1>",
        key_value_table(
            [
                ("status", f'<span class="{status_cls}">{esc(status)}</span>'),
                ("reason", esc(report.get("reason")) if report.get("reason") else "—"),
                ("duration", f"{fmt_num(report.get('duration_s'), 1)} s"),
                ("language", esc(report.get("language"))),
                ("segments", esc(len(segments))),
                ("flagged segments", esc((report.get("summary") or {}).get("flagged_segments"))),
                ("emotion not analysed", esc((report.get("summary") or {}).get("emotion_not_analysed"))),
            ]
        ),
    ]
    if status != "done":
        header.append(f'<p class="status-failed">Analysis failed: {esc(report.get("reason") or "no reason given")}</p>')
    body = header
    file_score = report.get("file_score")
    body.append("<h2>File score</h2>")
    body.append(_aggregate_html(file_score) if file_score else "<p>No file score (analysis did not finish).</p>")
    if segments:
        body.append("<h2>Timeline</h2>")
        body.append(
            '<p class="legend"><span>red band / ▼ = flagged segment</span>'
            "<span>hatched = emotion not analysed</span><span>hover a mark for its values</span></p>"
        )
        body.append(render_timeline(segments, report.get("duration_s")))
    speakers = report.get("speakers") or []
    if speakers:
        body.append("<h2>Speakers</h2>")
        for spk in speakers:
            body.append(f"<h3>{esc(spk.get('speaker') or 'unassigned')}</h3>{_aggregate_html(spk)}")
    body.append("<h2>Transcript</h2>")
    if segments and play:
        level, why = play[1]
        body.append(
            f'<p class="explain">▶ plays the segment\'s time range of the original recording, read in place from '
            f'<a class="evidence" href="{esc(href)}">{esc(report.get("file"))}</a> (a link relative to this page: '
            "it works while the results folder stays where it is beside the case folder; no copy is made)"
            + (f'. <span class="media-note">{esc(why)}.</span>' if level != media.YES else ".")
            + "</p>"
        )
    if segments:
        body.append(
            '<table class="transcript"><thead><tr><th>#</th><th>time</th>'
            + ("<th>listen</th>" if play else "")
            + "<th>speaker</th><th>text and pattern hits</th>"
            "<th>emotion</th><th>voice</th><th>cross-check</th><th>score</th></tr></thead><tbody>"
            + "".join(_segment_row(s, play) for s in segments)
            + "</tbody></table>"
        )
    else:
        body.append("<p>No transcript segments.</p>")
    body.append("<h2>Chain of custody</h2>")
    body.append(_custody_html(report.get("custody") or {}))
    extra = {
        k: v
        for k, v in report.items()
        if k
        not in {
            "schema_version",
            "file",
            "status",
            "reason",
            "duration_s",
            "language",
            "custody",
            "segments",
            "speakers",
            "file_score",
            "summary",
        }
    }
    if extra:
        body.append("<h2>Other fields</h2>" + json_block(extra))
    return page(f"voiceman report – {report.get('file')}", "\n".join(body), media=play is not None)
