"""Analyst review: the findings of a case, reviewer verdicts on them, and their custody.

A *finding* is a segment of a recording's report that the cross-check flagged or that has at
least one pattern hit.  It is named by the recording's output key and the segment's index in
that report, and bound to the SHA-256 of the report's JSON file (``report_sha256``): a verdict
made on one analysis never attaches to another.

The analyst marks findings confirmed / rejected / unsure (with a note) in ``case.html`` and
downloads the verdicts as a JSON file (``voiceman/schemas/review.schema.json``).
``voiceman review import FILE`` validates it against the schema and the case's current
reports and stores it under ``results/review/`` -- never touching the evidence or the
machine-made reports:

- ``results/review/imports/<id>.json``: every import, kept as it came (the document, its
  SHA-256, where it came from, which verdicts attached and which were refused);
- ``results/review/verdicts.json``: the current verdict of each finding.  Imports merge: a
  later import's verdict on a finding replaces the current one, which moves to that
  finding's ``history`` (nothing is ever dropped); an identical verdict changes nothing.

A verdict whose ``report_sha256`` is not the current report's (the file was analysed again)
is refused -- the whole import, unless ``skip_stale`` imports the others and records the
refused ones in the import's record.  Verdicts already stored that no longer match (the file
was re-analysed after the import) stay in ``verdicts.json`` but are shown and counted as
*stale*, never as a verdict on the new analysis.  The next ``case.json`` counts the
verdicts (``review``), the next ``case.html`` shows them.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from . import atomic
from .resources import load_schema
from .timestamps import utc_now

REVIEW_SCHEMA_NAME = "review.schema.json"
FORMAT, VERSION = "voiceman-review", 1
STATE_FORMAT = "voiceman-verdicts"
EXPORT_FORMAT = "voiceman-findings"
VERDICTS = ("confirmed", "rejected", "unsure")
REVIEW_DIR = "review"
STATE_FILE = "verdicts.json"
IMPORTS_DIR = "imports"
_TIME_TOLERANCE_S = 1e-3
_VERDICT_FIELDS = ("verdict", "note", "reviewer", "decided_utc", "report_sha256")


class ReviewError(ValueError):
    """A verdicts file or the review folder cannot be used; the message says why."""


def review_dir(results_dir: str | Path) -> Path:
    return Path(results_dir) / REVIEW_DIR


def state_path(results_dir: str | Path) -> Path:
    return review_dir(results_dir) / STATE_FILE


def verdict_inputs(results_dir: str | Path) -> list[str]:
    """The case summary's review input: ``[results/review/verdicts.json]`` once a verdict was
    imported, else nothing (a Snakemake input function; an import reruns the case summary)."""
    path = state_path(results_dir)
    return [str(path)] if path.is_file() else []


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------ findings


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


# ------------------------------------------------------------------------------ state


def empty_state() -> dict[str, Any]:
    return {"format": STATE_FORMAT, "version": VERSION, "updated_utc": None, "imports": [], "verdicts": []}


def load_state(results_dir: str | Path) -> dict[str, Any]:
    """results/review/verdicts.json, or an empty state when nothing was imported yet."""
    path = state_path(results_dir)
    if not path.exists():
        return empty_state()
    try:
        state = atomic.read_json(path)
    except (OSError, ValueError) as exc:
        raise ReviewError(f"{path}: cannot read the stored verdicts: {exc}") from exc
    if (
        not isinstance(state, dict)
        or state.get("format") != STATE_FORMAT
        or not isinstance(state.get("verdicts"), list)
    ):
        raise ReviewError(f"{path}: not a voiceman verdicts file (format {STATE_FORMAT!r})")
    return state


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


# ------------------------------------------------------------------------------ import


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = load_schema(REVIEW_SCHEMA_NAME)
    return jsonschema.Draft202012Validator(schema)


def validate_document(doc: Any) -> None:
    """Raise ReviewError listing where and why ``doc`` breaks review.schema.json, or where a
    finding has two verdicts."""
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  at {'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors[:10]]
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise ReviewError(f"not a valid verdicts file ({REVIEW_SCHEMA_NAME}):\n" + "\n".join(lines) + more)
    seen: dict[tuple[str, int], int] = {}
    for i, v in enumerate(doc["verdicts"]):
        where = (v["file"], v["segment"])
        if where in seen:
            raise ReviewError(
                f"verdicts/{i}: a second verdict on {v['file']} segment {v['segment']} "
                f"(the first is verdicts/{seen[where]})"
            )
        seen[where] = i


@dataclass
class ImportResult:
    import_id: str | None
    record: Path | None
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    stale: list[dict[str, Any]] = field(default_factory=list)
    already: str | None = None  # the earlier import of the same bytes


@contextlib.contextmanager
def _locked(results_dir: str | Path) -> Iterator[None]:
    folder = review_dir(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _case_keys(results_dir: Path) -> dict[str, str]:
    """{key: name} of the recordings case.json lists as done."""
    path = results_dir / "case.json"
    try:
        summary = atomic.read_json(path)
    except FileNotFoundError:
        raise ReviewError(f"{path} not found: run the workflow for this case first (or pass --results)") from None
    except (OSError, ValueError) as exc:
        raise ReviewError(f"{path}: cannot read: {exc}") from exc
    return {f["key"]: f["name"] for f in summary.get("files") or [] if f.get("status") == "done" and f.get("key")}


def _check_against_reports(doc: dict[str, Any], results_dir: Path) -> tuple[list[dict], list[dict]]:
    """(verdicts that match the current reports, stale ones with a reason); raises on
    verdicts that name no file or segment of this case."""
    keys = _case_keys(results_dir)
    hashes: dict[str, str] = {}
    reports: dict[str, dict[str, Any]] = {}
    ok, stale, problems = [], [], []
    for i, v in enumerate(doc["verdicts"]):
        key = v["file"]
        if key not in keys:
            problems.append(f"verdicts/{i}: {key!r} is not an analysed recording of this case")
            continue
        path = results_dir / "report" / f"{key}.json"
        if key not in hashes:
            try:
                hashes[key] = file_sha256(path)
                reports[key] = atomic.read_json(path)
            except (OSError, ValueError) as exc:
                problems.append(f"verdicts/{i}: report of {key!r} cannot be read: {exc}")
                continue
        if hashes[key] != v["report_sha256"]:
            stale.append(
                {
                    **v,
                    "stale_reason": f"the report changed since the verdict: it was made on report "
                    f"sha256 {v['report_sha256']}, {path.name} is now {hashes[key]}",
                }
            )
            continue
        segments = {int(s.get("index", n)): s for n, s in enumerate(reports[key].get("segments") or [])}
        seg = segments.get(v["segment"])
        if seg is None:
            problems.append(f"verdicts/{i}: {key!r} has no segment {v['segment']}")
            continue
        for end in ("start", "end"):
            if end in v and not (
                isinstance(seg.get(end), (int, float)) and abs(float(seg[end]) - float(v[end])) <= _TIME_TOLERANCE_S
            ):
                problems.append(
                    f"verdicts/{i}: {key!r} segment {v['segment']} {end}s at {seg.get(end)}, the verdict says {v[end]}"
                )
        if not is_finding(seg):
            problems.append(f"verdicts/{i}: {key!r} segment {v['segment']} is not a finding")
        ok.append(v)
    if problems:
        raise ReviewError(
            "verdicts that do not belong to this case's reports (nothing imported):\n  "
            + "\n  ".join(problems[:20])
            + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        )
    return ok, stale


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k, "") == b.get(k, "") for k in _VERDICT_FIELDS)


def import_file(
    source: str | Path, results_dir: str | Path, skip_stale: bool = False, now: str | None = None
) -> ImportResult:
    """Validate the verdicts file ``source`` and store it in results/review/ (see the module
    docstring).  Raises ReviewError -- and stores nothing -- when it is invalid, names what is
    not in this case, or (without ``skip_stale``) holds a verdict on another analysis."""
    results_dir = Path(results_dir)
    source = Path(source)
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise ReviewError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ReviewError(f"{source}: not JSON: {exc}") from exc
    validate_document(doc)
    ok, stale = _check_against_reports(doc, results_dir)
    if stale and not skip_stale:
        raise ReviewError(
            f"{len(stale)} verdict(s) were made on an earlier analysis (the report hash differs), so nothing was "
            "imported; review those findings again in the new case.html, or import the others with --skip-stale:\n  "
            + "\n  ".join(f"{v['file']} segment {v['segment']}: {v['stale_reason']}" for v in stale[:20])
        )
    source_sha = hashlib.sha256(raw).hexdigest()
    now = now or utc_now()
    with _locked(results_dir):
        state = load_state(results_dir)
        for earlier in state["imports"]:
            if earlier.get("source_sha256") == source_sha:
                return ImportResult(None, None, stale=stale, already=earlier.get("id"))
        import_id = f"{len(state['imports']) + 1:04d}-{re.sub(r'[^0-9TZ]', '', now)}-{source_sha[:12]}"
        record_path = review_dir(results_dir) / IMPORTS_DIR / f"{import_id}.json"
        result = ImportResult(import_id, record_path, stale=stale)
        current = {(v["file"], v["segment"]): v for v in state["verdicts"]}
        reviewer = doc.get("reviewer") or ""
        for v in ok:
            entry = {
                "file": v["file"],
                "name": v.get("name") or v["file"],
                "segment": v["segment"],
                "start": v.get("start"),
                "end": v.get("end"),
                "report_sha256": v["report_sha256"],
                "verdict": v["verdict"],
                "note": v.get("note", ""),
                "reviewer": v.get("reviewer") or reviewer,
                "decided_utc": v["decided_utc"],
                "import": import_id,
            }
            where = (v["file"], v["segment"])
            old = current.get(where)
            if old is None:
                current[where] = {**entry, "history": []}
                result.added += 1
            elif _same(old, entry):
                result.unchanged += 1
            else:
                earlier = {k: val for k, val in old.items() if k != "history"}
                current[where] = {**entry, "history": [earlier, *(old.get("history") or [])]}
                result.changed += 1
        record = {
            "id": import_id,
            "imported_utc": now,
            "source": os.fsdecode(os.path.abspath(source)),
            "source_sha256": source_sha,
            "verdicts": len(doc["verdicts"]),
            "added": result.added,
            "changed": result.changed,
            "unchanged": result.unchanged,
            "refused_stale": stale,
            "document": doc,
        }
        atomic.write_json(record_path, record)  # the import as it came, kept for good
        state["imports"].append(
            {
                k: record[k]
                for k in ("id", "imported_utc", "source", "source_sha256", "verdicts", "added", "changed", "unchanged")
            }
            | {"refused_stale": len(stale), "record": f"{IMPORTS_DIR}/{import_id}.json"}
        )
        state["verdicts"] = sorted(current.values(), key=lambda v: (v["file"], v["segment"]))
        state["updated_utc"] = now
        atomic.write_json(state_path(results_dir), state)
    return result


# ------------------------------------------------------------------------------ export


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
