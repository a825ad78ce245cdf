"""Rule ``case_summary``: case.json + case.html -- every recording with its status (done, or
failed and why) and score, every other entry of the case folder with its status and reason,
the findings queue and the reviewer verdicts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import voiceman

from .. import atomic
from ..case import DONE, FAILED, IGNORED
from .jobkit import RuleJob, job_logging


def run(job: RuleJob) -> None:
    from ..htmlreport import render_case_report
    from ..review.findings import attach, case_findings, counts, ingest_codec
    from ..review.store import ReviewError, empty_state, load_state

    with job_logging(job) as log:
        recordings = list(job.params.recordings)  # [{key, name, kind}], in the order of the reports
        paths = dict(zip([r["key"] for r in recordings], job.input.reports))
        reports = {key: atomic.read_json(path) for key, path in paths.items()}
        summary = summarize(
            reports,
            paths,
            list(job.params.entries),
            job.config["case_dir"],
            job.params.config_sha256,
            voiceman.__version__,
            recordings=recordings,
        )
        # The findings queue and the reviewer verdicts (results/review/, an input once imported:
        # an import reruns this job); each verdict attaches only to the report hash it was made on.
        results = job.config["results_dir"]
        findings = case_findings(
            reports,
            paths,
            {r["key"]: r["name"] for r in recordings},
            {key: ingest_codec(results, key) for key in paths},
        )
        try:
            state, error = load_state(results), None
        except ReviewError as exc:
            log.error("%s", exc)
            state, error = empty_state(), str(exc)
        findings, stale = attach(findings, state)
        summary["review"] = {**counts(findings, stale, state, results), **({"error": error} if error else {})}
        atomic.write_json(job.output.case, summary)
        page_dir = Path(job.output.html).parent
        page = with_links_from(summary, page_dir)
        atomic.write_text(job.output.html, render_case_report(page, findings, stale, page_dir))


def summarize(
    reports: dict[str, dict[str, Any]],
    report_paths: dict[str, str],
    entries: list[dict[str, Any]] | list[str],
    case_dir: str,
    config_sha256: str,
    software_version: str,
    recordings: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """``case.json``.

    ``reports``/``report_paths``: {key: report / its path} of every recording; ``recordings``:
    [{key, name, kind}] (:meth:`voiceman.case.Inventory.recording_records`; default: the report's ``file``
    as name, kind "file"); ``entries``: every other entry of the case
    folder with its status and reason (see :func:`voiceman.case.inventory`; plain names = ignored entries).

    ``files``: every recording (done/failed; the report path only when done) and every entry
    that looked like a recording but could not be analysed (failed, no report).  ``entries``:
    every entry of the case folder exactly once with its status -- done, failed or ignored --
    and reason.  ``ignored``: the names of the ignored entries.
    """
    others = [
        e if isinstance(e, dict) else {"name": e, "kind": "file", "status": IGNORED, "reason": "not a recording"}
        for e in entries
    ]
    files, listed = [], []
    known = {r["key"]: r for r in recordings or []}
    for key, rep in reports.items():
        done = rep.get("status") == DONE
        custody = rep.get("custody") or {}
        name = known.get(key, {}).get("name") or rep.get("file") or key
        files.append(
            {
                "name": name,
                "key": key,
                "status": DONE if done else FAILED,
                "reason": None if done else rep.get("reason") or "unknown failure",
                "report": report_paths[key] if done else None,
                "input_sha256": custody.get("input_sha256_before"),
                "input_sha256_first_seen": custody.get("input_sha256_first_seen"),
                "duration_s": rep.get("duration_s"),
                "file_score": (rep.get("file_score") or {}).get("score"),
                "flagged_segments": (rep.get("summary") or {}).get("flagged_segments"),
            }
        )
        listed.append(
            {
                "name": name,
                "kind": known.get(key, {}).get("kind", "file"),
                "status": files[-1]["status"],
                "reason": files[-1]["reason"],
                "key": key,
            }
        )
    for entry in others:
        if entry["status"] == FAILED:
            files.append(
                {
                    "name": entry["name"],
                    "key": None,
                    "status": FAILED,
                    "reason": entry["reason"],
                    "report": None,
                    "input_sha256": None,
                    "input_sha256_first_seen": None,
                    "duration_s": None,
                    "file_score": None,
                    "flagged_segments": None,
                }
            )
        listed.append({**entry, "key": None})
    files.sort(key=lambda f: f["name"])
    listed.sort(key=lambda e: e["name"])
    return {
        "case_dir": str(Path(case_dir).resolve()),
        "n_files": len(files),
        "n_done": sum(f["status"] == DONE for f in files),
        "n_failed": sum(f["status"] == FAILED for f in files),
        "n_entries": len(listed),
        "n_ignored": sum(e["status"] == IGNORED for e in listed),
        "files": files,
        "ignored": [e["name"] for e in listed if e["status"] == IGNORED],
        "entries": listed,
        "config_sha256": config_sha256,
        "software_version": software_version,
    }


def with_links_from(summary: dict[str, Any], page_dir: str | Path) -> dict[str, Any]:
    """A copy of the summary whose report paths are relative to ``page_dir``, for a page
    (case.html) stored there: case.json keeps paths as the workflow wrote them."""
    files = []
    for entry in summary["files"]:
        report = entry.get("report")
        if report:
            report = os.path.relpath(Path(report).resolve(), Path(page_dir).resolve())
        files.append({**entry, "report": report})
    return {**summary, "files": files}
