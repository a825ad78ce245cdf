"""``voiceman review import``: validate a verdicts file downloaded from ``case.html`` against
``review.schema.json`` and the case's current reports, and store it under ``results/review/``
without touching the evidence or the machine-made reports.  Every import is kept as it came
(``imports/<id>.json``); verdicts merge into ``verdicts.json``, a later verdict on a finding
replacing the current one, which moves to that finding's ``history``.  A verdict on another
analysis (its ``report_sha256`` is not the current report's) refuses the whole import, unless
``skip_stale`` imports the others and records the refused ones."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from .. import atomic
from ..resources import load_schema
from ..timestamps import utc_now
from .findings import is_finding
from .store import IMPORTS_DIR, ReviewError, _case_keys, file_sha256, load_state, review_dir, state_path

REVIEW_SCHEMA_NAME = "review.schema.json"
_TIME_TOLERANCE_S = 1e-3
_VERDICT_FIELDS = ("verdict", "note", "reviewer", "decided_utc", "report_sha256")


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
