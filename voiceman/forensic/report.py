"""Assembling and validating the per-file forensic report (voiceman/schemas/report.schema.json)."""

from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache
from typing import Any

import jsonschema

from voiceman.forensic.cross_validation import crosscheck
from voiceman.forensic.rules import resolve_rules, rules_sha256
from voiceman.forensic.scoring import score_file, score_segment, score_speakers
from voiceman.resources import load_schema, schema_path

REPORT_SCHEMA_NAME = "report.schema.json"
REPORT_SCHEMA_PATH = schema_path(REPORT_SCHEMA_NAME)
REPORT_SCHEMA_VERSION = 1


class ReportValidationError(ValueError):
    """A report dict does not match voiceman/schemas/report.schema.json."""


@lru_cache(maxsize=1)
def _report_validator() -> jsonschema.Draft202012Validator:
    try:
        schema = load_schema(REPORT_SCHEMA_NAME)
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportValidationError(f"{REPORT_SCHEMA_PATH}: cannot read report schema: {exc}") from exc
    return jsonschema.Draft202012Validator(schema)


def validate_report(report: dict[str, Any]) -> None:
    """Raise ReportValidationError listing where and why `report` breaks the schema."""
    errors = sorted(_report_validator().iter_errors(report), key=lambda e: list(e.absolute_path))
    if errors:
        name = report.get("file", "<unnamed>") if isinstance(report, dict) else "<not a dict>"
        lines = [f"  at {'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors[:10]]
        raise ReportValidationError(
            f"report for {name!r} does not match {REPORT_SCHEMA_PATH.name}:\n" + "\n".join(lines)
        )


def _missing_emotion(reason: str) -> dict[str, Any]:
    return {"status": "not_analysed", "reason": reason, "device": None, "dimensional": None, "categorical": None}


def analyse_segment(
    index: int,
    segment: dict[str, Any],
    emotion: dict[str, Any] | None,
    voice: dict[str, Any] | None,
    patterns: list[dict[str, Any]] | None,
    rules: dict[str, Any],
    language: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Cross-check and score one segment; return its report entry."""
    hits = list(patterns or [])
    emotion_entry = emotion if emotion is not None else _missing_emotion("no emotion result for this segment")
    check = crosscheck(segment, emotion_entry, voice, hits, rules)
    score = score_segment(segment, emotion_entry, voice, hits, check, rules)
    entry = {
        "index": index,
        "start": float(segment["start"]),
        "end": float(segment["end"]),
        "speaker": segment.get("speaker"),
        "text": segment.get("text", ""),
        "emotion": emotion_entry,
        "voice": voice,
        "patterns": hits,
        "crosscheck": check.to_dict(),
        "score": score.score,
        "uncapped_total": score.uncapped_total,
        "evidence": [e.to_dict() for e in score.evidence],
    }
    if segment.get("words") is not None:
        entry["words"] = segment["words"]
    if language is not None:
        entry["language"] = language  # which language's pattern rules scanned the text, and why
    return entry


def _summary(segments: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "segment_count": len(segments),
        "flagged_segments": sum(1 for s in segments if s["crosscheck"]["flagged"]),
        "pattern_hits": sum(len(s["patterns"]) for s in segments),
        "emotion_not_analysed": sum(1 for s in segments if s["emotion"].get("status") != "analysed"),
        "outcomes": dict(sorted(Counter(s["crosscheck"]["outcome"] for s in segments).items())),
    }


def _custody(custody: dict[str, Any], rules: dict[str, Any]) -> dict[str, Any]:
    before, after = custody.get("input_sha256_before"), custody.get("input_sha256_after")
    return {
        **custody,
        "input_unchanged": (before == after) if before and after else None,
        "forensic_rules_sha256": rules_sha256(rules),
    }


def assemble_file_report(
    *,
    file: str,
    custody: dict[str, Any],
    segments: list[dict[str, Any]] | None = None,
    emotions: list[dict[str, Any] | None] | None = None,
    voices: list[dict[str, Any] | None] | None = None,
    patterns: list[list[dict[str, Any]] | None] | None = None,
    duration_s: float | None = None,
    language: str | None = None,
    status: str = "done",
    reason: str | None = None,
    rules: dict[str, Any] | None = None,
    segment_languages: list[dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """Build a schema-valid report from per-segment parts (lists aligned with `segments`).

    `custody` carries input_sha256_before/after, models, config_sha256, software_version,
    started_utc, finished_utc (plus optional input_path, input_size_bytes, host); this
    function adds input_unchanged and forensic_rules_sha256. A missing emotion entry becomes
    an explicit not_analysed record; a failed report (status="failed") needs a reason and
    has no file score. Raises ValueError on misaligned lists, ReportValidationError on a
    schema violation.
    """
    rules = resolve_rules(rules)
    segments = list(segments or [])
    n = len(segments)
    aligned = {
        "emotions": list(emotions) if emotions is not None else [None] * n,
        "voices": list(voices) if voices is not None else [None] * n,
        "patterns": list(patterns) if patterns is not None else [[] for _ in range(n)],
        "languages": list(segment_languages) if segment_languages is not None else [None] * n,
    }
    for name, values in aligned.items():
        if len(values) != n:
            raise ValueError(f"report for {file!r}: {name} has {len(values)} entries for {n} segments")
    entries = [
        analyse_segment(
            i, seg, aligned["emotions"][i], aligned["voices"][i], aligned["patterns"][i], rules, aligned["languages"][i]
        )
        for i, seg in enumerate(segments)
    ]
    done = status == "done"
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "file": file,
        "status": status,
        "reason": reason,
        "duration_s": duration_s,
        "language": language,
        "custody": _custody(custody, rules),
        "segments": entries,
        "speakers": score_speakers(entries, rules) if done else [],
        "file_score": score_file(entries, rules) if done else None,
        "summary": _summary(entries),
    }
    validate_report(report)
    return report
