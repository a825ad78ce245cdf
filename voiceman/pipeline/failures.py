"""Failure records, the way a file's failure travels down the pipeline.

When a file cannot be decoded (or the daemon rejects it as input), the failing stage writes a
record that carries the reason instead of results, and every later stage writes a record that
passes it on unchanged, so the case summary lists the file as failed and every other file goes
on (U4).  Infrastructure failures (no daemon, daemon lost) are raised instead: nothing is wrong
with the evidence, and ``--rerun-incomplete`` completes the file later.
"""

from __future__ import annotations

from typing import Any


def failed(stage: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"status": "failed", "failed_stage": stage, "reason": reason, **extra}


def upstream_failure(*records: dict[str, Any]) -> dict[str, Any] | None:
    """The first failed upstream record, passed on unchanged (its stage and reason stay)."""
    for rec in records:
        if rec.get("status") == "failed":
            return {k: rec[k] for k in ("status", "failed_stage", "reason") if k in rec}
    return None
