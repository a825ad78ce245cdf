"""``voiceman review export``: the findings of a case with their verdicts, as CSV (one row per
finding, cells made safe for spreadsheets) or JSON (everything, with each verdict's history and
the stale verdicts)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .. import atomic
from ..timestamps import utc_now
from .findings import attach, case_findings, counts
from .store import VERSION, ReviewError, _case_keys, load_state

EXPORT_FORMAT = "voiceman-findings"


def load_case_findings(results_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(case.json, findings with verdicts, stale verdicts) from a results folder."""
    results_dir = Path(results_dir)
    keys = _case_keys(results_dir)
    summary = atomic.read_json(results_dir / "case.json")
    reports, paths = {}, {}
    for key in keys:
        path = results_dir / "report" / f"{key}.json"
        try:
            reports[key] = atomic.read_json(path)
        except (OSError, ValueError) as exc:
            raise ReviewError(f"{path}: cannot read the report of {key!r}: {exc}") from exc
        paths[key] = path
    findings = case_findings(reports, paths, keys)
    findings, stale = attach(findings, load_state(results_dir))
    return summary, findings, stale


CSV_COLUMNS = (
    "name",
    "file",
    "segment",
    "start",
    "end",
    "speaker",
    "text",
    "hits",
    "categories",
    "max_severity",
    "outcome",
    "flagged",
    "explanation",
    "arousal",
    "valence",
    "dominance",
    "emotion_label",
    "stressed_features",
    "score",
    "verdict",
    "note",
    "reviewer",
    "decided_utc",
    "verdict_import",
    "earlier_verdicts",
    "report_sha256",
    "evidence",
    "evidence_sha256",
)


def _csv_text(value: Any) -> Any:
    """A spreadsheet must not run a cell as a formula: text starting with = + - @ (or a tab /
    carriage return) gets a leading apostrophe.  Numbers stay numbers; the JSON export is exact."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv_row(f: dict[str, Any]) -> dict[str, Any]:
    verdict = f.get("verdict") or {}
    emotion = f.get("emotion") or {}
    row = {
        "name": f["name"],
        "file": f["file"],
        "segment": f["segment"],
        "start": f["start"],
        "end": f["end"],
        "speaker": f["speaker"],
        "text": f["text"],
        "hits": "; ".join(
            f"{h.get('category')} {h.get('pattern_id')} severity {h.get('severity')} "
            f"{h.get('context')}: {h.get('text')}"
            for h in f["patterns"]
        ),
        "categories": " ".join(f["categories"]),
        "max_severity": f["max_severity"],
        "outcome": f["outcome"],
        "flagged": f["flagged"],
        "explanation": f["explanation"],
        "arousal": emotion.get("arousal"),
        "valence": emotion.get("valence"),
        "dominance": emotion.get("dominance"),
        "emotion_label": emotion.get("label")
        if emotion.get("status") == "analysed"
        else f"not analysed: {emotion.get('reason') or 'no reason given'}",
        "stressed_features": "; ".join(
            f"{s['feature']} z={s['z']:+.2f}" if isinstance(s.get("z"), (int, float)) else str(s.get("feature"))
            for s in f["stress"]
        ),
        "score": f["score"],
        "verdict": verdict.get("verdict"),
        "note": verdict.get("note"),
        "reviewer": verdict.get("reviewer"),
        "decided_utc": verdict.get("decided_utc"),
        "verdict_import": verdict.get("import"),
        "earlier_verdicts": " | ".join(
            f"{h.get('verdict')} ({h.get('decided_utc')}, import {h.get('import')})"
            for h in verdict.get("history") or []
        ),
        "report_sha256": f["report_sha256"],
        "evidence": f["evidence"],
        "evidence_sha256": f["evidence_sha256"],
    }
    return {k: _csv_text(v) for k, v in row.items()}


def export(results_dir: str | Path, fmt: str, now: str | None = None) -> str:
    """The findings of the case with their verdicts, as CSV (one row per finding) or JSON
    (everything, with each verdict's history and the stale verdicts)."""
    summary, findings, stale = load_case_findings(results_dir)
    if fmt == "json":
        doc = {
            "format": EXPORT_FORMAT,
            "version": VERSION,
            "exported_utc": now or utc_now(),
            "case_dir": summary.get("case_dir"),
            "config_sha256": summary.get("config_sha256"),
            "software_version": summary.get("software_version"),
            "review": counts(findings, stale, load_state(results_dir), results_dir),
            "findings": [{k: v for k, v in f.items() if k != "codec"} for f in findings],
            "stale_verdicts": stale,
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        for f in findings:
            writer.writerow(_csv_row(f))
        return out.getvalue()
    raise ReviewError(f"unknown export format {fmt!r} (csv or json)")
