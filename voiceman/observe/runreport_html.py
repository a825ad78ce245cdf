"""run_report.html: the run report for people -- tables plus inline SVG plots of temperature,
GPU utilisation and throughput over the run.  Self-contained: no scripts, no network (the
page carries the same Content-Security-Policy as the case reports)."""

from __future__ import annotations

from typing import Any

from ..htmlreport.html_parts import esc, fmt_num, key_value_table, page
from ..timestamps import unix_from_utc

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 720, 200, 52, 16, 24, 30
STATE_FILL = {"cooldown": "#ffe2b8", "halted": "#ffc4c0"}


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000, 2000, 5000, 10000):
        if value <= step * 5:
            return step * 5 if value > step * 4 else step * (int(value // step) + 1)
    return value * 1.1


def line_chart(
    title: str,
    points: list[tuple[float, float]],
    y_label: str,
    t0: float,
    y_max: float | None = None,
    color: str = "#1f5fa8",
    bands: list[tuple[float, float, str]] | None = None,
    thresholds: list[tuple[float, str]] | None = None,
) -> str:
    """One SVG line over run time (seconds since t0); bands shade governor states."""
    if not points:
        return f'<p class="explain">{esc(title)}: no data in this run.</p>'
    xs = [x - t0 for x, _ in points]
    x_max = max(max(xs), 1.0)
    top = y_max if y_max is not None else _nice_max(max(y for _, y in points))
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def sx(x: float) -> float:
        return PAD_L + (x / x_max) * pw

    def sy(y: float) -> float:
        return PAD_T + ph - (min(max(y, 0.0), top) / top) * ph

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" aria-label="{esc(title)}">',
        f'<text x="{PAD_L}" y="15" font-size="13" font-weight="600">{esc(title)}</text>',
    ]
    for a, b, state in bands or []:
        parts.append(
            f'<rect x="{sx(a - t0):.1f}" y="{PAD_T}" width="{max(sx(b - t0) - sx(a - t0), 1):.1f}" '
            f'height="{ph}" fill="{STATE_FILL.get(state, "#eee")}"><title>{esc(state)}</title></rect>'
        )
    for frac in (0, 0.5, 1):
        y = top * frac
        parts.append(
            f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#ddd"/>'
            f'<text x="{PAD_L - 4}" y="{sy(y) + 4:.1f}" font-size="10" text-anchor="end">{y:g}</text>'
        )
    for value, label in thresholds or []:
        if value <= top:
            parts.append(
                f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{sy(value):.1f}" y2="{sy(value):.1f}" '
                f'stroke="#b42318" stroke-dasharray="4 3"/><text x="{W - PAD_R}" y="{sy(value) - 3:.1f}" '
                f'font-size="10" text-anchor="end" fill="#b42318">{esc(label)}</text>'
            )
    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, (_, y) in zip(xs, points))
    parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.8"/>')
    if len(points) == 1:
        parts.append(f'<circle cx="{sx(xs[0]):.1f}" cy="{sy(points[0][1]):.1f}" r="3" fill="{color}"/>')
    parts.append(
        f'<text x="{PAD_L + pw / 2:.0f}" y="{H - 6}" font-size="10" text-anchor="middle">'
        f"seconds since run start (0 … {x_max:.0f} s)</text>"
        f'<text x="12" y="{PAD_T + ph / 2:.0f}" font-size="10" transform="rotate(-90 12 {PAD_T + ph / 2:.0f})" '
        f'text-anchor="middle">{esc(y_label)}</text></svg>'
    )
    return "".join(parts)


def _state_bands(samples: list[dict[str, Any]]) -> list[tuple[float, float, str]]:
    bands = []
    for a, b in zip(samples, samples[1:]):
        if a.get("state") in STATE_FILL:
            bands.append((a["unix"], b["unix"], a["state"]))
    return bands


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _device_banner(report: dict[str, Any]) -> str:
    """A GPU the models could not use (the daemon's device probe), above everything else."""
    warnings = report.get("device_warnings") or []
    device = report.get("device") or {}
    if not warnings:
        return f'<p class="explain">Devices: {esc(device["summary"])}</p>' if device.get("summary") else ""
    items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
    return (
        '<div class="device-warning" role="alert" style="border:2px solid #b42318;background:#fff1f0;'
        'padding:.4em 1em;margin:.6em 0"><p class="status-failed">Device warning: a GPU is present '
        "that not every model could use</p>"
        f"<ul>{items}</ul></div>"
    )


def render_run_report(report: dict[str, Any]) -> str:
    gpu = report["gpu"]
    samples = report.get("samples") or []
    t0 = min([s["unix"] for s in samples] + [t["unix"] for t in report.get("throughput") or []] or [0.0])
    if report.get("started_utc"):
        t0 = unix_from_utc(report["started_utc"]) or t0
    status_class = "status-done" if report["status"] == "success" else "status-failed"
    summary = key_value_table(
        [
            ("Status", f'<span class="{status_class}">{esc(report["status"])}</span>'),
            ("Started / finished (UTC)", f"{esc(report['started_utc'])} / {esc(report['finished_utc'])}"),
            ("Total wall time", f"{fmt_num(report['wall_s'], 1)} s"),
            (
                "Files",
                f"{report['files_total']} in all: {report['files_done']} done, {report['files_failed']} failed, "
                f"{report['files_incomplete']} incomplete, {report['files_reused']} reused from an earlier run",
            ),
            ("Audio processed", f"{fmt_num(report['audio_s'], 1)} s"),
            (
                "Realtime factor",
                f"{fmt_num(report['realtime_factor'], 3)} s per audio second "
                f"({fmt_num(report['speed_x_realtime'], 2)}× realtime)",
            ),
            ("Model loads", esc(", ".join(f"{k}: {v}" for k, v in report["model_loads"].items()) or None)),
        ]
    )
    gpu_table = key_value_table(
        [
            ("Sensor / samples", f"{esc(gpu['sensor'])} / {gpu['samples']} ({esc(gpu['source'])})"),
            (
                "GPU utilisation mean / p50 / p95",
                " / ".join(fmt_num(gpu[k], 1) for k in ("util_mean", "util_p50", "util_p95")) + " %",
            ),
            ("Temperature max / mean", f"{fmt_num(gpu['temp_max_c'], 1)} / {fmt_num(gpu['temp_mean_c'], 1)} °C"),
            (
                "Time in cooldown / halted",
                f"{fmt_num(gpu['time_in_cooldown_s'], 1)} / {fmt_num(gpu['time_in_halted_s'], 1)} s",
            ),
            (
                "Memory peak",
                f"{fmt_num(gpu['mem_peak_gb'], 2)} GB "
                f"({fmt_num((gpu['mem_peak_frac'] or 0) * 100 if gpu['mem_peak_frac'] is not None else None, 1)} %)",
            ),
            ("CPU fallback stages", esc(", ".join(report["governor"].get("cpu_fallback_stages") or []) or "none")),
        ]
    )
    stage_rows = [
        [esc(s["stage"]), str(s["files"]), fmt_num(s["total_s"], 2), fmt_num(s["mean_s"], 2), fmt_num(s["max_s"], 2)]
        for s in report["stages"]
    ]
    daemon_rows = [
        [
            esc(k),
            str(v.get("requests", 0)),
            fmt_num(v.get("mean_batch_size"), 2),
            fmt_num(v.get("requests_per_batch"), 2),
            fmt_num(v.get("padding_fraction"), 3),
            str(v.get("cpu_requests", 0)),
            fmt_num(v.get("halted_wait_s"), 1),
        ]
        for k, v in report["daemon_stages"].items()
    ]
    file_rows = [
        [
            esc(f["file"]),
            esc(f["status"]),
            fmt_num(f["audio_s"], 1),
            fmt_num(f["wall_s"], 2),
            esc(", ".join(f"{k} {v:.2f}" for k, v in f["stages_s"].items())),
        ]
        for f in report["files"]
    ]
    failed_rows = [[esc(f["file"]), esc(f["status"]), esc(f["stage"]), esc(f["reason"])] for f in report["failed"]]
    changes = report["governor"].get("device_changes") or []
    change_rows = [
        [esc(c["utc"]), esc(c["stage"]), esc(c["kind"]), esc(c["device"]), esc(c["reason"])] for c in changes
    ]
    events = report["governor"].get("events") or []
    event_rows = [[esc(e.get("kind")), esc(e.get("message"))] for e in events[-50:]]
    bands = _state_bands(samples)
    temps = [(s["unix"], s["temp_c"]) for s in samples if s.get("temp_c") is not None]
    util = [(s["unix"], s["util_pct"]) for s in samples if s.get("util_pct") is not None]
    thr = [(t["unix"], t["audio_s_done"]) for t in report.get("throughput") or []]
    plots = (
        line_chart(
            "GPU temperature",
            temps,
            "°C",
            t0,
            color="#b42318",
            bands=bands,
            thresholds=[(80, "80 °C cooldown"), (85, "85 °C halt")],
        )
        + line_chart("GPU utilisation", util, "%", t0, y_max=100, bands=bands)
        + line_chart("Throughput: audio seconds done", thr, "audio s", t0, color="#1a7f37")
    )
    bp = report.get("backpressure") or {}
    body = (
        "<h1>Run report</h1>"
        + _device_banner(report)
        + summary
        + "<h2>GPU and governor</h2>"
        + gpu_table
        + plots
        + "<h2>Stages (this run)</h2>"
        + _table(["stage", "files", "total s", "mean s", "max s"], stage_rows)
        + "<h2>Daemon requests per stage</h2>"
        + _table(
            ["stage", "requests", "mean batch size", "files per batch", "padding", "on CPU", "halted wait s"],
            daemon_rows,
        )
        + f'<p class="explain">SER backpressure (S5): paused {esc(bp.get("pauses", 0))} time(s), '
        f"{esc(bp.get('transcribe_held_total', 0))} transcription request(s) held, "
        f"{fmt_num(bp.get('held_wait_s'), 1)} s waited in all.</p>"
        + "<h2>Failed or unfinished files</h2>"
        + (_table(["file", "status", "stage", "reason"], failed_rows) if failed_rows else "<p>None.</p>")
        + "<h2>CPU fallback and device changes</h2>"
        + (_table(["UTC", "stage", "model", "device", "why"], change_rows) if change_rows else "<p>None.</p>")
        + "<h2>Per file</h2>"
        + _table(["file", "status", "audio s", "wall s", "stage seconds"], file_rows)
        + "<h2>Governor events</h2>"
        + (_table(["kind", "message"], event_rows) if event_rows else "<p>None.</p>")
        + "".join(f'<p class="explain">Note: {esc(n)}</p>' for n in report.get("notes") or [])
    )
    return page("voiceman run report", body)
