"""HTML page for a whole case: every file, its score, its status and why it failed."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import quote

from voiceman.htmlreport.findings import FINDINGS_STYLE, SCRIPT, render_findings
from voiceman.htmlreport.html_parts import esc, fmt_num, json_block, key_value_table, page

# Only plain relative paths become links: no scheme (javascript:, http:), no absolute
# path, so a case report never points outside its own folder or runs anything.
_SAFE_LINK = re.compile(r"^(?![a-zA-Z][a-zA-Z0-9+.-]*:)(?!/)(?!\\)[^\s\"'<>]+$")

BAR_W, BAR_H, LABEL_W = 560, 18, 260


def _score_of(entry: dict[str, Any]) -> float | None:
    """file_score may be the aggregate dict from score_file or a bare number."""
    value = entry.get("file_score")
    if isinstance(value, dict):
        value = value.get("score")
    if value is None and isinstance(entry.get("report"), dict):
        value = (entry["report"].get("file_score") or {}).get("score")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _visible(name: Any) -> str:
    """A file name with its invisible characters shown as escapes (a newline as \\n, a bidi
    override as \\u202e), so the page shows the name the file system has, not a look-alike."""
    text = str(name)
    out = []
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs"):
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def _href(path: str) -> str:
    return quote(path, safe="/:")


def _report_cell(report: Any) -> str:
    # Percent-encode (evidence file names have spaces, quotes, Hangul) but keep ':' as is,
    # so a scheme such as javascript: is still seen and refused.
    if isinstance(report, str) and _SAFE_LINK.match(_href(report)):
        html_path = report[:-5] + ".html" if report.endswith(".json") else None
        link = f'<a href="{esc(_href(report))}">{esc(report)}</a>'
        return link + (f' · <a href="{esc(_href(html_path))}">html</a>' if html_path else "")
    if isinstance(report, dict):
        summary = report.get("summary") or {}
        return esc(f"{summary.get('segment_count', 0)} segments, {summary.get('flagged_segments', 0)} flagged")
    return esc(report)


def _score_chart(files: list[dict[str, Any]]) -> str:
    """Horizontal bar per file (score 0–100); failed files drawn as a labelled empty row."""
    height = BAR_H * len(files) + 30
    rows = []
    for i, entry in enumerate(files):
        y = 10 + i * BAR_H
        name = _visible(entry.get("name"))
        short = name if len(name) <= 38 else name[:37] + "…"
        score = _score_of(entry)
        rows.append(
            f'<text x="{LABEL_W - 6}" y="{y + 13}" text-anchor="end" font-size="11">'
            f"{esc(short)}<title>{esc(name)}</title></text>"
        )
        if entry.get("status") != "done":
            why = f"{name}: {entry.get('status')} – {entry.get('reason') or 'no reason given'}"
            rows.append(
                f'<text class="failed" x="{LABEL_W + 4}" y="{y + 13}" font-size="11" fill="#b42318">'
                f"{esc(entry.get('status'))}: {esc(entry.get('reason') or 'no reason given')}"
                f"<title>{esc(why)}</title></text>"
            )
        elif score is not None:
            width = BAR_W * min(max(score, 0.0), 100.0) / 100.0
            colour = "#b42318" if score >= 60 else "#e8590c" if score >= 30 else "#2f9e44"
            rows.append(
                f'<rect class="bar" x="{LABEL_W}" y="{y + 2}" width="{max(width, 1):.1f}" '
                f'height="{BAR_H - 5}" fill="{colour}">'
                f"<title>{esc(f'{name}: score {score:.2f}')}</title></rect>"
                f'<text x="{LABEL_W + width + 4:.1f}" y="{y + 13}" font-size="10">{score:.1f}</text>'
            )
    axis_y = 10 + len(files) * BAR_H + 4
    ticks = "".join(
        f'<line x1="{LABEL_W + BAR_W * t / 100}" x2="{LABEL_W + BAR_W * t / 100}" '
        f'y1="{axis_y}" y2="{axis_y + 4}" stroke="#555"/>'
        f'<text x="{LABEL_W + BAR_W * t / 100}" y="{axis_y + 14}" text-anchor="middle" font-size="9">{t}</text>'
        for t in (0, 25, 50, 75, 100)
    )
    return (
        f'<svg class="case-scores" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {LABEL_W + BAR_W + 60} {height}" '
        f'width="{LABEL_W + BAR_W + 60}" height="{height}" role="img" aria-label="File scores">'
        + "".join(rows)
        + ticks
        + "</svg>"
    )


def render_case_report(
    case: dict[str, Any],
    findings: list[dict[str, Any]] | None = None,
    stale: list[dict[str, Any]] | None = None,
    page_dir: str | Path | None = None,
) -> str:
    """Self-contained HTML for case.json = {"files": [{"name","status","reason","report","file_score"}], ...}.

    ``findings`` (voiceman.review.findings.case_findings + attach: with their verdicts) adds the findings
    queue -- and with it the page's one script and its play controls, linked relative to
    ``page_dir``; ``stale``: stored verdicts made on an earlier analysis (listed, not applied)."""
    files = list(case.get("files") or [])
    done = [f for f in files if f.get("status") == "done"]
    failed = [f for f in files if f.get("status") != "done"]
    scores = [s for s in (_score_of(f) for f in done) if s is not None]
    title = case.get("case") or case.get("name") or "case"
    body = [
        f"<h1>Case report: {esc(title)}</h1>",
        key_value_table(
            [
                ("files", esc(len(files))),
                ("done", f'<span class="status-done">{esc(len(done))}</span>'),
                ("failed", f'<span class="status-failed">{esc(len(failed))}</span>'),
                ("highest file score", fmt_num(max(scores)) if scores else "—"),
                *([("entries of the case folder", esc(len(case["entries"])))] if case.get("entries") else []),
                *([("findings", esc(_review_line(case["review"])))] if isinstance(case.get("review"), dict) else []),
            ]
        ),
    ]
    if files:
        body.append("<h2>File scores</h2>" + _score_chart(files))
    if findings:
        body.append(render_findings(findings, stale or [], page_dir, case, case.get("review")))
    elif findings is not None:
        body.append("<h2>Findings (0)</h2><p>No segment of any recording was flagged or has a pattern hit.</p>")
    if failed:
        items = "".join(
            f"<li><b>{esc(_visible(f.get('name')))}</b> ({esc(f.get('status'))}): "
            f"{esc(_visible(f.get('reason') or 'no reason given'))}</li>"
            for f in failed
        )
        body.append(f'<h2>Failed files</h2><ul class="failures">{items}</ul>')
    ranked = sorted(files, key=lambda f: (f.get("status") != "done", -(_score_of(f) or 0.0), str(f.get("name"))))
    rows = "".join(
        f'<tr class="{"" if f.get("status") == "done" else "flagged"}"><td>{esc(_visible(f.get("name")))}</td>'
        f'<td class="{"status-done" if f.get("status") == "done" else "status-failed"}">{esc(f.get("status"))}</td>'
        f'<td class="num">{fmt_num(_score_of(f))}</td>'
        f"<td>{esc(_visible(f.get('reason'))) if f.get('reason') else '—'}</td>"
        f"<td>{_report_cell(f.get('report'))}</td></tr>"
        for f in ranked
    )
    body.append(
        "<h2>All files</h2><table><thead><tr><th>file</th><th>status</th><th>score</th><th>reason</th>"
        f"<th>report</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    ignored = [e for e in case.get("entries") or [] if e.get("status") == "ignored"]
    if ignored:
        rows = "".join(
            f"<tr><td>{esc(_visible(e.get('name')))}</td><td>{esc(e.get('kind'))}</td>"
            f"<td>{esc(_visible(e.get('reason') or 'no reason given'))}</td></tr>"
            for e in ignored
        )
        body.append(
            f"<h2>Not analysed ({esc(len(ignored))} of {esc(len(case.get('entries') or []))} entries "
            "of the case folder)</h2>"
            '<table class="ignored"><thead><tr><th>entry</th><th>kind</th><th>why</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
        )
    extra = {k: v for k, v in case.items() if k not in ("files", "entries")}
    if extra:
        body.append("<h2>Case details</h2>" + json_block(extra))
    if findings:
        return page(f"voiceman case report – {title}", "\n".join(body), script=SCRIPT, media=True, style=FINDINGS_STYLE)
    return page(f"voiceman case report – {title}", "\n".join(body))


def _review_line(review: dict[str, Any]) -> str:
    line = (
        f"{review.get('findings', 0)} ({review.get('flagged', 0)} flagged): {review.get('confirmed', 0)} confirmed, "
        f"{review.get('rejected', 0)} rejected, {review.get('unsure', 0)} unsure, "
        f"{review.get('unreviewed', 0)} unreviewed"
    )
    if review.get("stale_verdicts"):
        line += f"; {review['stale_verdicts']} verdicts on earlier analyses (not applied)"
    if review.get("error"):
        line += f"; stored verdicts not read: {review['error']}"
    return line
