"""Inline SVG timeline of one recording: emotion, pitch, voice stress and score over time.

Four stacked panels share one time axis. Each segment is drawn as a horizontal stroke
from its start to its end at its value (a segment has one value, so a step is honest
where an interpolated line would invent values between segments). Missing values leave
gaps; segments without emotion get a hatched band saying why; flagged segments get a red
band across all panels and a marker on top. Every mark has a <title> tooltip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voiceman.htmlreport.html_parts import esc, fmt_time

WIDTH = 960
LEFT, RIGHT = 70, 20
PANEL_H, PANEL_GAP, TOP = 90, 26, 36
PLOT_W = WIDTH - LEFT - RIGHT

ValueOf = Callable[[dict[str, Any]], float | None]


def _dims(seg: dict[str, Any]) -> dict[str, Any]:
    emotion = seg.get("emotion") or {}
    return (emotion.get("dimensional") or {}) if emotion.get("status") == "analysed" else {}


def _arousal(seg: dict[str, Any]) -> float | None:
    return _dims(seg).get("arousal")


def _valence(seg: dict[str, Any]) -> float | None:
    return _dims(seg).get("valence")


def _f0(seg: dict[str, Any]) -> float | None:
    return (seg.get("voice") or {}).get("f0_mean_hz")


def _stress(seg: dict[str, Any]) -> float | None:
    return (seg.get("crosscheck") or {}).get("max_stress_z")


def _score(seg: dict[str, Any]) -> float | None:
    return seg.get("score")


def _nice_step(span: float) -> float:
    """A tick spacing giving about 8 ticks: 1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10 min ..."""
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if span / step <= 10:
            return float(step)
    return 3600.0 * max(1, round(span / 36000))


class _Axis:
    def __init__(self, duration: float):
        self.duration = max(duration, 1e-6)

    def x(self, seconds: float) -> float:
        return LEFT + PLOT_W * min(max(seconds, 0.0), self.duration) / self.duration


def _panel(
    axis: _Axis,
    index: int,
    label: str,
    segments: list[dict[str, Any]],
    series: list[tuple[str, str, ValueOf]],
    lo: float,
    hi: float,
    guides: list[tuple[float, str]],
) -> str:
    top = TOP + index * (PANEL_H + PANEL_GAP)
    span = (hi - lo) or 1.0

    def y(value: float) -> float:
        return top + PANEL_H * (1 - (min(max(value, lo), hi) - lo) / span)

    parts = [
        f'<g class="panel" data-panel="{esc(label)}">',
        f'<rect x="{LEFT}" y="{top}" width="{PLOT_W}" height="{PANEL_H}" fill="none" stroke="#bbb"/>',
        f'<text x="{LEFT - 6}" y="{top + 10}" text-anchor="end" font-size="10">{hi:g}</text>',
        f'<text x="{LEFT - 6}" y="{top + PANEL_H}" text-anchor="end" font-size="10">{lo:g}</text>',
        f'<text x="{LEFT}" y="{top - 5}" font-size="11" font-weight="bold">{esc(label)}</text>',
    ]
    for value, note in guides:
        gy = y(value)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#999" stroke-dasharray="3,3">'
            f"<title>{esc(note)}</title></line>"
        )
    legend_x = LEFT + 7 * len(label) + 24  # after the bold panel label (~7 px per char)
    for name, colour, value_of in series:
        parts.append(f'<text x="{legend_x}" y="{top - 5}" font-size="10" fill="{colour}">■ {esc(name)}</text>')
        legend_x += 110
        for seg in segments:
            value = value_of(seg)
            if value is None:
                continue
            x1, x2 = axis.x(float(seg["start"])), axis.x(float(seg["end"]))
            tip = (
                f"{name} {float(value):.2f} at {fmt_time(seg['start'])}–{fmt_time(seg['end'])} "
                f"({seg.get('speaker') or 'unassigned'})"
            )
            parts.append(
                f'<line class="series" x1="{x1:.1f}" x2="{max(x2, x1 + 1.5):.1f}" y1="{y(float(value)):.1f}" '
                f'y2="{y(float(value)):.1f}" stroke="{colour}" stroke-width="3"><title>{esc(tip)}</title></line>'
            )
    parts.append("</g>")
    return "".join(parts)


def render_timeline(segments: list[dict[str, Any]], duration_s: float | None) -> str:
    """The timeline as an inline <svg> element (no external resources)."""
    ends = [float(s["end"]) for s in segments]
    duration = float(duration_s) if duration_s else max(ends, default=1.0)
    duration = max(duration, max(ends, default=0.0))
    axis = _Axis(duration)
    f0_values = [v for v in (_f0(s) for s in segments) if v is not None]
    f0_lo = float(int(min(f0_values) // 50 * 50)) if f0_values else 50.0
    f0_hi = float(int(max(f0_values) // 50 * 50 + 50)) if f0_values else 400.0
    stress_values = [v for v in (_stress(s) for s in segments) if v is not None]
    stress_hi = max(4.0, float(int(max(stress_values, default=0)) + 1))
    stress_lo = min(-2.0, float(int(min(stress_values, default=0)) - 1))

    panels = [
        _panel(
            axis,
            0,
            "Emotion (0.5 neutral)",
            segments,
            [("arousal", "#d9480f", _arousal), ("valence", "#1c7ed6", _valence)],
            0.0,
            1.0,
            [(0.5, "neutral 0.5")],
        ),
        _panel(axis, 1, "Pitch F0 mean (Hz)", segments, [("F0", "#2b8a3e", _f0)], f0_lo, f0_hi, []),
        _panel(
            axis,
            2,
            "Voice stress (max directed z vs own baseline)",
            segments,
            [("stress z", "#862e9c", _stress)],
            stress_lo,
            stress_hi,
            [(0.0, "speaker baseline z=0")],
        ),
        _panel(axis, 3, "Forensic score (0-100)", segments, [("score", "#343a40", _score)], 0.0, 100.0, []),
    ]
    plot_bottom = TOP + 4 * (PANEL_H + PANEL_GAP) - PANEL_GAP
    height = plot_bottom + 30

    bands = []
    for seg in segments:
        x1, x2 = axis.x(float(seg["start"])), axis.x(float(seg["end"]))
        w = max(x2 - x1, 2.0)
        emotion = seg.get("emotion") or {}
        if emotion.get("status") != "analysed":
            why = (
                f"emotion not analysed: {emotion.get('reason') or 'no reason given'} "
                f"({fmt_time(seg['start'])}–{fmt_time(seg['end'])})"
            )
            bands.append(
                f'<rect class="not-analysed" x="{x1:.1f}" y="{TOP}" width="{w:.1f}" height="{PANEL_H}" '
                f'fill="url(#hatch)"><title>{esc(why)}</title></rect>'
            )
        check = seg.get("crosscheck") or {}
        if check.get("flagged"):
            tip = f"flagged {check.get('outcome')} at {fmt_time(seg['start'])}: {check.get('explanation')}"
            bands.append(
                f'<rect class="flag-band" x="{x1:.1f}" y="{TOP}" width="{w:.1f}" height="{plot_bottom - TOP}" '
                f'fill="#e03131" fill-opacity="0.13"><title>{esc(tip)}</title></rect>'
                f'<path class="flag-marker" d="M{(x1 + x2) / 2:.1f},{TOP - 22} l-5,-9 h10 z" fill="#e03131">'
                f"<title>{esc(tip)}</title></path>"
            )

    ticks = []
    step = _nice_step(duration)
    t = 0.0
    while t <= duration + 1e-9:
        tx = axis.x(t)
        ticks.append(
            f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{plot_bottom}" y2="{plot_bottom + 5}" stroke="#555"/>'
            f'<text x="{tx:.1f}" y="{plot_bottom + 17}" text-anchor="middle" font-size="10">'
            f"{int(t // 60)}:{int(t % 60):02d}</text>"
        )
        t += step

    return (
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="Timeline of emotion, pitch, voice stress and score">'
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#adb5bd" stroke-width="2"/></pattern></defs>'
        + "".join(bands)
        + "".join(panels)
        + "".join(ticks)
        + f'<text x="{LEFT + PLOT_W / 2}" y="{height - 2}" text-anchor="middle" font-size="10">time (m:ss)</text></svg>'
    )
