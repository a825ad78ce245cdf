"""Shared building blocks for the self-contained HTML reports.

Everything that came from a recording (transcript text, speaker labels, file names,
reasons) goes through `esc` before it reaches the page. The page also carries a
Content-Security-Policy that forbids any network fetch and every script but the page's own
inline one (allowed by its SHA-256, so an injected script never runs), so even a missed
escape cannot run code or phone home, and the report opens the same offline.

Pages with play controls also allow media from the page's own origin (`media-src 'self'
file:`): the original recording, read in place by a relative link -- never a copy. For a
page opened from disk Chromium counts every file: URL as 'self'; `file:` is named as well
for browsers that give each file its own origin.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Iterable
from typing import Any

CATEGORIES = ("threat", "intimidation", "coercion", "gaslighting", "insult")
CONTEXTS = ("direct", "reported", "negated")

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
MEDIA_SRC = "media-src 'self' file:"


def script_hash(script: str) -> str:
    """The CSP source that allows exactly this inline script: 'sha256-<base64>'."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


def csp(script: str | None = None, media: bool = False) -> str:
    """The page's policy: CSP, plus media from its own origin and its one inline script."""
    parts = [CSP]
    if media:
        parts.append(MEDIA_SRC)
    if script is not None:
        parts.append(f"script-src {script_hash(script)}")
    return "; ".join(parts)


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans KR",sans-serif;margin:1.5em;
color:#1b1b1b;background:#fff;line-height:1.4}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
th,td{border:1px solid #d0d0d0;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.num{text-align:right;font-variant-numeric:tabular-nums}
.status-done{color:#1a7f37;font-weight:600}.status-failed{color:#b42318;font-weight:600}
.flagged{background:#fff1f0}
.badge{display:inline-block;padding:0 .45em;border-radius:.6em;font-size:.85em;border:1px solid #999}
.badge.flag{background:#b42318;color:#fff;border-color:#b42318}
.not-analysed{color:#8a5a00;font-style:italic}
mark.hit{padding:0 .1em;border-radius:.2em;background:#ffd7d5}
mark.cat-threat{background:#ffb4ae}mark.cat-intimidation{background:#ffd2a8}
mark.cat-coercion{background:#e3cffa}mark.cat-gaslighting{background:#c9ede6}mark.cat-insult{background:#eadbc8}
mark.ctx-reported,mark.ctx-negated{background:transparent;border-bottom:2px dashed #b42318}
.score{font-size:1.8em;font-weight:700}
details{margin:.2em 0}summary{cursor:pointer}
.explain{color:#444;font-size:.9em}
.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;word-break:break-all}
.time{white-space:nowrap;word-break:normal}
svg{max-width:100%;height:auto;background:#fff}
.legend span{margin-right:1em;white-space:nowrap}
.media-note{color:#8a5a00;font-size:.85em}
details.play summary{white-space:nowrap}details.play audio{width:16em;display:block}
"""


def esc(value: Any) -> str:
    """HTML-escape anything (None becomes an em dash)."""
    if value is None:
        return "—"
    return html.escape(str(value), quote=True)


def fmt_num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return esc(value)
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}"
    return esc(value)


def fmt_time(seconds: float | None) -> str:
    """m:ss.s for times in a recording."""
    if seconds is None:
        return "—"
    minutes, rest = divmod(float(seconds), 60.0)
    return f"{int(minutes)}:{rest:04.1f}"


def safe_class(value: Any, allowed: Iterable[str], fallback: str = "other") -> str:
    """A CSS class name only from a fixed set, so data never writes markup."""
    return str(value) if value in tuple(allowed) else fallback


def page(title: str, body: str, script: str | None = None, media: bool = False, style: str = "") -> str:
    """A complete HTML document with inline CSS and the no-network policy; ``script`` (a
    constant: data reaches it only through escaped attributes) is the one inline script the
    policy allows, ``media`` allows play controls for the evidence."""
    tail = f"<script>{script}</script>\n" if script is not None else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp(script, media)}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}{style}</style></head>\n<body>\n{body}\n{tail}</body></html>\n"
    )


def key_value_table(rows: list[tuple[str, str]]) -> str:
    """Rows of (escaped label, already-rendered HTML value)."""
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def evidence_table(evidence: list[dict[str, Any]]) -> str:
    """The evidence behind a score, largest contribution first, with the sum shown."""
    if not evidence:
        return '<p class="explain">No evidence: nothing contributed to this score.</p>'
    ordered = sorted(evidence, key=lambda e: -abs(float(e.get("contribution") or 0)))
    rows = "".join(
        "<tr>"
        f"<td>{esc(e.get('source'))}</td><td>{esc(e.get('detail'))}</td>"
        f'<td class="num">{fmt_num(e.get("value"), 3)}</td><td class="num">{fmt_num(e.get("weight"), 3)}</td>'
        f'<td class="num">{fmt_num(e.get("contribution"), 2)}</td></tr>'
        for e in ordered
    )
    total = sum(float(e.get("contribution") or 0) for e in evidence)
    return (
        '<table class="evidence"><thead><tr><th>source</th><th>detail</th><th>value</th><th>weight</th>'
        f"<th>contribution</th></tr></thead><tbody>{rows}</tbody>"
        f'<tfoot><tr><th colspan="4">sum (score = sum clipped to 0–100)</th>'
        f'<td class="num">{total:.2f}</td></tr></tfoot></table>'
    )


def _valid_hit(hit: dict[str, Any], length: int) -> bool:
    start, end = hit.get("start"), hit.get("end")
    return isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= length


def highlight_text(text: str, hits: list[dict[str, Any]]) -> str:
    """Escaped `text` with each pattern hit wrapped in <mark>, using the hits' str offsets.

    Overlapping hits are handled by cutting the text at every hit boundary; each piece is
    marked by the most severe hit covering it and its title lists all of them. Hits whose
    offsets fall outside the text are not drawn (the transcript table lists them anyway).
    """
    valid = [h for h in hits if _valid_hit(h, len(text))]
    if not valid:
        return esc(text)
    cuts = sorted({0, len(text), *(h["start"] for h in valid), *(h["end"] for h in valid)})
    out = []
    for left, right in zip(cuts, cuts[1:]):
        piece = esc(text[left:right])
        covering = [h for h in valid if h["start"] <= left and right <= h["end"]]
        if not covering:
            out.append(piece)
            continue
        top = max(covering, key=lambda h: h.get("severity") or 0)
        title = "; ".join(
            f"{h.get('category')} {h.get('pattern_id')} severity {h.get('severity')} ({h.get('context')})"
            for h in covering
        )
        cat = safe_class(top.get("category"), CATEGORIES)
        ctx = safe_class(top.get("context"), CONTEXTS)
        out.append(f'<mark class="hit cat-{cat} ctx-{ctx}" title="{esc(title)}">{piece}</mark>')
    return "".join(out)


def json_block(value: Any) -> str:
    """Pretty JSON, escaped, for structured values a table would hide."""
    return f'<pre class="mono">{esc(json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True))}</pre>'
