"""The case folder: which files are recordings, and the case summary (``case.json``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class CaseError(ValueError):
    """The case folder cannot be used (missing, not a folder)."""


def display_name(name: str) -> str:
    """A file name as JSON/HTML text: bytes that are not UTF-8 become ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def discover(case_dir: str | Path, extensions: list[str]) -> tuple[list[str], list[str]]:
    """(recordings, ignored) file names in ``case_dir`` (not recursive), sorted.

    Hidden files are skipped silently; any other non-recording file is listed as ignored so
    the case summary accounts for everything the investigator handed over.
    """
    root = Path(case_dir)
    if not root.is_dir():
        raise CaseError(f"case_dir '{case_dir}' is not a folder (set it with --config case_dir=...)")
    wanted = {"." + e.lower().lstrip(".") for e in extensions}
    recordings, ignored = [], []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        (recordings if entry.suffix.lower() in wanted else ignored).append(entry.name)
    return recordings, ignored


def summarize(reports: dict[str, dict[str, Any]], report_paths: dict[str, str], ignored: list[str],
              case_dir: str, config_sha256: str, software_version: str) -> dict[str, Any]:
    """``case.json``: every file with its status; the report path only for files that are done."""
    files = []
    for name in sorted(reports):
        rep = reports[name]
        done = rep.get("status") == "done"
        files.append({
            "name": name,
            "status": "done" if done else "failed",
            "reason": None if done else rep.get("reason") or "unknown failure",
            "report": report_paths[name] if done else None,
            "input_sha256": rep.get("custody", {}).get("input_sha256_before"),
            "duration_s": rep.get("duration_s"),
            "file_score": (rep.get("file_score") or {}).get("score"),
            "flagged_segments": (rep.get("summary") or {}).get("flagged_segments"),
        })
    return {
        "case_dir": str(Path(case_dir).resolve()),
        "n_files": len(files),
        "n_done": sum(f["status"] == "done" for f in files),
        "n_failed": sum(f["status"] == "failed" for f in files),
        "files": files,
        "ignored": ignored,
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
