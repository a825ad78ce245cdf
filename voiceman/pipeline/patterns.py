"""Rule ``patterns``: crime-language pattern hits in each segment's text, scanned on the CPU in
the rule job with the pattern database the rule declares as input (results/patterns/<file>.json)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import atomic
from .failures import upstream_failure
from .jobkit import RuleJob, job_logging


def run(job: RuleJob) -> None:
    with job_logging(job):
        transcript = atomic.read_json(job.input.transcript)
        database = os.path.commonpath(list(job.input.database))  # the folder the rule declares
        atomic.write_json(
            job.output.hits, patterns(transcript, job.settings["patterns"]["language"], database=database)
        )


def patterns(transcript: dict[str, Any], language: str = "auto", database: str | Path | None = None) -> dict[str, Any]:
    """Crime-language hits per segment (offsets into the segment's text), scanned with the
    database in ``database`` (the folder the rule declares as input; None = config/patterns)."""
    from ..patterns import load_database

    failure = upstream_failure(transcript)
    if failure:
        return {"file": transcript["file"], **failure}
    from ..patterns.language import model_info

    db = load_database(database)
    # "auto": the language is chosen per segment (mixed Korean/English calls), not per file.
    scanned = [db.scan_segment(s["text"], lang=language) for s in transcript["segments"]]
    return {
        "file": transcript["file"],
        "status": "ok",
        "database": db.to_dict(),
        "language": language,
        "language_id": model_info() if language == "auto" else None,
        "segment_languages": [record for _, record in scanned],
        "segments": [[h.to_dict() for h in hits] for hits, _ in scanned],
    }
