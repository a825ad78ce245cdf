"""The findings of a case and the verdicts on them.  A *finding* is a segment of a recording's
report that the cross-check flagged or that has at least one pattern hit, named by the
recording's output key and the segment's index, and bound to the SHA-256 of the report's JSON
file: a stored verdict attaches only to the finding with its file, segment and report hash, and
any other is shown and counted as *stale*, never as a verdict on the new analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import atomic
from .store import VERDICTS, file_sha256, state_path


def is_finding(segment: dict[str, Any]) -> bool:
    """Flagged by the cross-check, or with a pattern hit."""
    return bool((segment.get("crosscheck") or {}).get("flagged")) or bool(segment.get("patterns"))


def _emotion(emotion: dict[str, Any] | None) -> dict[str, Any]:
    emotion = emotion or {}
    if emotion.get("status") != "analysed":
        return {"status": emotion.get("status") or "not_analysed", "reason": emotion.get("reason")}
    dims = emotion.get("dimensional") or {}
    categorical = emotion.get("categorical") or {}
    label = categorical.get("label")
    return {
        "status": "analysed",
        "arousal": dims.get("arousal"),
        "valence": dims.get("valence"),
        "dominance": dims.get("dominance"),
        "label": label,
        "label_probability": (categorical.get("probabilities") or {}).get(label) if label else None,
    }


def findings_of(
    key: str, name: str, report: dict[str, Any], report_path: str | Path, report_sha256: str, codec: str | None = None
) -> list[dict[str, Any]]:
    """The findings of one recording's report (none when the analysis failed)."""
    if report.get("status") != "done":
        return []
    custody = report.get("custody") or {}
    out = []
    for position, seg in enumerate(report.get("segments") or []):
        if not is_finding(seg):
            continue
        check = seg.get("crosscheck") or {}
        hits = list(seg.get("patterns") or [])
        out.append(
            {
                "file": key,
                "name": name,
                "segment": int(seg.get("index", position)),
                "start": seg.get("start"),
                "end": seg.get("end"),
                "speaker": seg.get("speaker") or "unassigned",
                "text": seg.get("text") or "",
                "patterns": hits,
                "categories": sorted({str(h.get("category")) for h in hits if h.get("category")}),
                "max_severity": max((h.get("severity") or 0 for h in hits), default=None),
                "outcome": check.get("outcome"),
                "flagged": bool(check.get("flagged")),
                "explanation": check.get("explanation"),
                "emotion": _emotion(seg.get("emotion")),
                "stress": [
                    {"feature": s.get("feature"), "z": s.get("z")} for s in check.get("stressed_features") or []
                ],
                "score": seg.get("score"),
                "report": str(report_path),
                "report_sha256": report_sha256,
                "evidence": custody.get("input_path"),
                "evidence_sha256": custody.get("input_sha256_before"),
                "codec": codec,
            }
        )
    return out


def case_findings(
    reports: dict[str, dict[str, Any]],
    report_paths: dict[str, str | Path],
    names: dict[str, str] | None = None,
    codecs: dict[str, str | None] | None = None,
) -> list[dict[str, Any]]:
    """Every finding of the case, by file name then time.  The report hash is taken from the
    file as it is on disk now -- the bytes a verdict will be checked against."""
    out: list[dict[str, Any]] = []
    for key, report in reports.items():
        if report.get("status") != "done":
            continue
        path = report_paths[key]
        out.extend(
            findings_of(
                key,
                (names or {}).get(key) or report.get("file") or key,
                report,
                path,
                file_sha256(path),
                (codecs or {}).get(key),
            )
        )
    out.sort(key=lambda f: (str(f["name"]), f["start"] if isinstance(f["start"], (int, float)) else 0, f["segment"]))
    return out


def ingest_codec(results_dir: str | Path, key: str) -> str | None:
    """The audio codec the ingest stage found (results/ingest/<key>.json), if it is there."""
    try:
        meta = atomic.read_json(Path(results_dir) / "ingest" / f"{key}.json")
    except (OSError, ValueError):
        return None
    codec = (meta.get("audio") or {}).get("codec") if isinstance(meta, dict) else None
    return codec if isinstance(codec, str) else None


def attach(findings: list[dict[str, Any]], state: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(findings, each with its current ``verdict`` or None; stale verdicts with ``stale_reason``).

    A stored verdict attaches only to the finding with its file, segment and report hash."""
    by_finding = {(f["file"], f["segment"]): f for f in findings}
    attached: dict[tuple[str, int], dict[str, Any]] = {}
    stale = []
    for verdict in state.get("verdicts") or []:
        where = (verdict.get("file"), verdict.get("segment"))
        finding = by_finding.get(where)
        if finding is None:
            stale.append(
                {
                    **verdict,
                    "stale_reason": "no such finding in the current reports "
                    "(the file is gone, failed, or was analysed again)",
                }
            )
        elif finding["report_sha256"] != verdict.get("report_sha256"):
            stale.append(
                {
                    **verdict,
                    "stale_reason": f"made on another analysis: report sha256 "
                    f"{verdict.get('report_sha256')}, now {finding['report_sha256']}",
                }
            )
        else:
            attached[where] = verdict
    out = [{**f, "verdict": attached.get((f["file"], f["segment"]))} for f in findings]
    return out, stale


def counts(
    findings: list[dict[str, Any]],
    stale: list[dict[str, Any]],
    state: dict[str, Any],
    results_dir: str | Path | None = None,
) -> dict[str, Any]:
    """case.json's ``review`` block."""
    tally = {v: 0 for v in VERDICTS}
    for f in findings:
        if f.get("verdict"):
            tally[f["verdict"]["verdict"]] += 1
    imports = state.get("imports") or []
    return {
        "findings": len(findings),
        "flagged": sum(1 for f in findings if f.get("flagged")),
        **tally,
        "unreviewed": sum(1 for f in findings if not f.get("verdict")),
        "stale_verdicts": len(stale),
        "imports": len(imports),
        "last_import_utc": imports[-1].get("imported_utc") if imports else None,
        "verdicts_file": str(state_path(results_dir)) if results_dir is not None and imports else None,
    }
